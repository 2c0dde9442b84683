"""Overhead of fitting on a dask array on a local cluster against fitting in memory.

Both fits see the same rows: random float32 images in memory, and the same array
persisted on a two-process ``distributed.LocalCluster`` in chunks of 10,000 rows,
as it would be when the data already live on the workers. Run on its own with
``python benchmarks/bench_dask.py [n_rows]``.
"""

import statistics
import sys
import time

import numpy as np

N_FEATURES = 784
N_CLASSES = 10
CHUNK_ROWS = 10_000


def _median_seconds(func, repeat):
    func()  # warm up: imports, numba compilation, worker caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(n_rows=100_000, repeat=5):
    """Time a dask fit on a local cluster and an in-memory fit of the same rows.

    Parameters
    ----------
    n_rows : int, default=100_000
        Number of 784-pixel float32 images.
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

    rng = np.random.default_rng(0)
    X = rng.random((n_rows, N_FEATURES), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, n_rows)

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
        Xd = lazy[0].rechunk((CHUNK_ROWS, N_FEATURES))
        yd = lazy[1].rechunk(CHUNK_ROWS)
        Xd, yd = client.persist([Xd, yd])
        distributed.wait([Xd, yd])
        on_cluster = _median_seconds(
            lambda: NearestMeanImageClassifier().fit(Xd, yd), repeat
        )
    return [
        (f"fit in memory, {n_rows:,} x {N_FEATURES} float32", in_memory),
        (
            f"fit dask, LocalCluster 2 processes, {n_rows:,} x {N_FEATURES} float32",
            on_cluster,
        ),
    ]


if __name__ == "__main__":
    n_rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for name, seconds in run(n_rows):
        print(f"{name:<70} {seconds:8.3f} s")
