"""Overhead of fitting on a dask array on a local cluster against fitting in memory.

Both fits see the same rows: the MNIST test set tiled to 100,000 float32 images in
memory, and the same array persisted on a two-process ``distributed.LocalCluster``
in chunks of 10,000 rows, as it would be when the data already live on the
workers. ``benchmarks/run.py`` reports it; run it on its own with
``python benchmarks/bench_dask.py [n_rows]``.
"""

import statistics
import sys
import time

CHUNK_ROWS = 10_000


def _median_seconds(func, repeat):
    func()  # warm up: imports, numba compilation, worker caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(X, y, repeat=5):
    """Time a dask fit on a local cluster and an in-memory fit of the same rows.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Flattened images.
    y : ndarray of shape (n_rows,)
        Their labels.
    repeat : int, default=5
        Number of timed fits of each kind; the median is reported.

    Returns
    -------
    rows : list of (str, float)
        Name and median seconds of each fit.
    """
    import dask.array as da
    import distributed

    from sk_meanclf import NearestMeanImageClassifier

    in_memory = _median_seconds(lambda: NearestMeanImageClassifier().fit(X, y), repeat)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # Send the rows once, then keep them on the workers in blocks.
        lazy = [
            da.from_delayed(future, shape=array.shape, dtype=array.dtype)
            for array, future in zip((X, y), client.scatter([X, y]), strict=True)
        ]
        Xd = lazy[0].rechunk((CHUNK_ROWS, X.shape[1]))
        yd = lazy[1].rechunk(CHUNK_ROWS)
        Xd, yd = client.persist([Xd, yd])
        distributed.wait([Xd, yd])
        on_cluster = _median_seconds(
            lambda: NearestMeanImageClassifier().fit(Xd, yd), repeat
        )
    shape = f"{X.shape[0]:,} x {X.shape[1]} {X.dtype}"
    return [
        (f"fit in memory, {shape}", in_memory),
        (f"fit on a dask array, LocalCluster of 2 processes, {shape}", on_cluster),
    ]


if __name__ == "__main__":
    from _data import mnist_t10k, tile

    n_rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    X, y = tile(*mnist_t10k(), n_rows)
    for name, seconds in run(X, y):
        print(f"{name:<70} {seconds:8.3f} s")
