"""Tests of fitting and predicting on dask arrays, on a real local cluster."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sk_meanclf import NearestMeanImageClassifier

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 4_000


@pytest.fixture(scope="module")
def client():
    """A client of a two-process local cluster without a dashboard."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def tiled_mnist(mnist_t10k):
    """The MNIST test set tiled three times: float32 pixels in [0, 1] and labels."""
    images, labels = mnist_t10k
    X = images.reshape(len(images), -1).astype(np.float32) / 255
    return np.tile(X, (3, 1)), np.tile(labels.astype(np.int64), 3)


def _assert_matches_in_memory(computed, expected, method):
    """Assert that a dask result equals the in-memory one, to float32 rounding.

    The dask blocks cut the rows into other chunks than the in-memory path, and
    BLAS may round the l2 products of a row differently in another chunk, so
    distances agree to a few units in the last place of float32. The decision
    function and the log-probabilities scale squared distances by
    ``n_features / (2 * scale_**2)``, which magnifies that rounding in
    proportion to the largest magnitude of their row; a probability ``p`` moves
    by at most ``p * (1 - p)`` times that change, below 1e-4 here.
    """
    if method == "predict":
        assert_array_equal(computed, expected)
    elif method in ("decision_function", "predict_log_proba"):
        row_size = np.abs(expected).max(axis=-1, keepdims=True)
        assert np.all(np.abs(computed - expected) <= 1e-5 * row_size + 1e-6), method
    elif method == "predict_proba":
        assert_allclose(computed, expected, rtol=0, atol=1e-4, err_msg=method)
    else:
        assert_allclose(computed, expected, rtol=1e-5, atol=1e-6, err_msg=method)


def _on_cluster(client, *arrays, rows=CHUNK_ROWS, columns=-1):
    """Dask arrays of `arrays`, sent once to the workers and chunked by rows."""
    dask_arrays = []
    for array, future in zip(arrays, client.scatter(list(arrays)), strict=True):
        lazy = da.from_delayed(future, shape=array.shape, dtype=array.dtype)
        chunks = (rows,) if array.ndim == 1 else (rows, columns)
        dask_arrays.append(lazy.rechunk(chunks))
    return dask_arrays


@pytest.fixture(scope="module")
def tiled_mnist_dask(client, mnist_t10k):
    """The tiled MNIST test set as dask arrays: one copy on the cluster, read 3x."""
    images, labels = mnist_t10k
    X = images.reshape(len(images), -1).astype(np.float32) / 255
    Xd, yd = _on_cluster(client, X, labels.astype(np.int64))
    return da.concatenate([Xd] * 3), da.concatenate([yd] * 3)


@pytest.mark.parametrize("centroid", ["mean", "median"])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_dask_fit_matches_in_memory_fit(tiled_mnist, tiled_mnist_dask, norm, centroid):
    """Check that a dask fit on tiled MNIST gives the in-memory centroids."""
    X, y = tiled_mnist
    Xd, yd = tiled_mnist_dask
    expected = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)

    clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(Xd, yd)

    assert Xd.numblocks[0] == 9
    assert_array_equal(clf.classes_, np.arange(10))
    assert_array_equal(clf.class_count_, expected.class_count_)
    assert clf.n_features_in_ == 784
    assert clf.centroids_.dtype == expected.centroids_.dtype == np.float32
    if centroid == "median":
        assert_array_equal(clf.centroids_, expected.centroids_)
    else:
        assert_allclose(clf.centroids_, expected.centroids_, rtol=1e-6, atol=1e-7)
    assert clf.scale_ == pytest.approx(expected.scale_, rel=1e-6)
    assert_array_equal(clf.predict(X), expected.predict(X))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_dask_outputs_are_lazy_and_equal(tiled_mnist, tiled_mnist_dask, norm):
    """Check that every method returns a dask array equal to the in-memory result."""
    X, y = tiled_mnist
    Xd, yd = tiled_mnist_dask
    clf = NearestMeanImageClassifier(norm=norm).fit(X, y)

    for method, shape in [
        ("predict", (len(X),)),
        ("transform", (len(X), 10)),
        ("decision_function", (len(X), 10)),
        ("predict_proba", (len(X), 10)),
        ("predict_log_proba", (len(X), 10)),
    ]:
        result = getattr(clf, method)(Xd)
        assert isinstance(result, da.Array), method
        assert result.shape == shape
        assert result.chunks[0] == Xd.chunks[0]
        expected = getattr(clf, method)(X)
        computed = result.compute()
        assert computed.dtype == expected.dtype, method
        _assert_matches_in_memory(computed, expected, method)
    accuracy = np.mean(clf.predict(X) == y)
    assert clf.score(Xd, yd) == pytest.approx(accuracy, abs=1e-12)
    weights = np.arange(len(y)) % 4
    assert clf.score(Xd, yd, sample_weight=weights) == pytest.approx(
        np.average(clf.predict(X) == y, weights=weights), abs=1e-12
    )


def test_dask_binary_decision_function_is_one_dimensional(client, tiled_mnist):
    """Check that a two-class dask decision function has one value per row."""
    X, y = tiled_mnist
    mask = np.isin(y, [3, 7])
    Xd, yd = _on_cluster(client, X[mask], y[mask])
    clf = NearestMeanImageClassifier().fit(Xd, yd)

    result = clf.decision_function(Xd)

    assert_array_equal(clf.classes_, [3, 7])
    assert isinstance(result, da.Array)
    assert result.shape == (mask.sum(),)
    assert_allclose(result.compute(), clf.decision_function(X[mask]), rtol=1e-6)
    assert_array_equal(result.compute() > 0, clf.predict(X[mask]) == 7)


def test_dask_fit_runs_blockwise_on_the_workers(client, tiled_mnist_dask):
    """Check that the class summaries are computed by tasks on the workers."""
    Xd, yd = tiled_mnist_dask

    with distributed.get_task_stream(client) as stream:
        NearestMeanImageClassifier().fit(Xd, yd)

    workers = set(client.scheduler_info()["workers"])
    # One task per block of rows, then a tree of merges (dask may fuse a block
    # task into a merge); each hands on per-class summaries, never rows.
    summary_tasks = [
        task
        for task in stream.data
        if isinstance(task["key"], tuple)
        and task["key"][0].startswith("sk-meanclf-class-summaries-")
    ]
    assert len(summary_tasks) >= Xd.numblocks[0]
    assert {task["worker"] for task in summary_tasks} <= workers
    # Per class: the sums, the weight, the scatter and the unit exponent.
    assert max(task["nbytes"] for task in summary_tasks) == 10 * (784 + 3) * 8


def test_dask_sample_weight_and_numpy_y(client, tiled_mnist):
    """Check that dask weights and numpy labels give the in-memory weighted fit."""
    X, y = tiled_mnist
    weights = np.random.default_rng(0).uniform(0.0, 2.0, size=len(y))
    weights[::7] = 0.0
    Xd, wd = _on_cluster(client, X, weights, columns=392)
    wd = wd.rechunk(7_000)

    for centroid in ["mean", "median"]:
        expected = NearestMeanImageClassifier(centroid=centroid).fit(
            X, y, sample_weight=weights
        )
        clf = NearestMeanImageClassifier(centroid=centroid).fit(Xd, y, sample_weight=wd)
        assert_allclose(clf.class_count_, expected.class_count_, rtol=1e-12)
        if centroid == "median":
            assert_array_equal(clf.centroids_, expected.centroids_)
        else:
            assert_allclose(clf.centroids_, expected.centroids_, rtol=1e-6, atol=1e-7)


def test_dask_uint8_images(client, mnist_t10k):
    """Check that raw uint8 images on dask fit like the same images in memory."""
    images, labels = mnist_t10k
    X = images.reshape(len(images), -1)
    Xd, yd = _on_cluster(client, X, labels)
    expected = NearestMeanImageClassifier().fit(X, labels)

    clf = NearestMeanImageClassifier().fit(Xd, yd)

    assert clf.centroids_.dtype == expected.centroids_.dtype == np.float64
    assert_allclose(clf.centroids_, expected.centroids_, rtol=1e-12)
    assert_array_equal(clf.predict(Xd).compute(), expected.predict(X))


def test_dask_string_labels(client, tiled_mnist):
    """Check that string labels on dask give the in-memory classes and labels."""
    X, y = tiled_mnist
    names = np.array(["zero", "one", "two", "three", "four"] + list("56789"))
    Xd, yd = _on_cluster(client, X[:5_000], names[y[:5_000]])
    expected = NearestMeanImageClassifier().fit(X[:5_000], names[y[:5_000]])

    clf = NearestMeanImageClassifier().fit(Xd, yd)

    assert_array_equal(clf.classes_, expected.classes_)
    assert_array_equal(clf.predict(Xd).compute(), expected.predict(X[:5_000]))


def test_dask_partial_fit_matches_fit(client, tiled_mnist):
    """Check that partial_fit over dask batches gives the same model as fit."""
    X, y = tiled_mnist
    expected = NearestMeanImageClassifier(norm="l2").fit(X, y)

    clf = NearestMeanImageClassifier(norm="l2")
    for rows in np.array_split(np.arange(len(y)), 3):
        clf.partial_fit(*_on_cluster(client, X[rows], y[rows]), classes=range(10))

    assert_allclose(clf.class_count_, expected.class_count_)
    assert_allclose(clf.centroids_, expected.centroids_, rtol=1e-6, atol=1e-7)
    assert clf.scale_ == pytest.approx(expected.scale_, rel=1e-6)
    assert_allclose(clf.predict_proba(X), expected.predict_proba(X), atol=1e-6)


def test_dask_ml_incremental(tiled_mnist, tiled_mnist_dask):
    """Check that dask-ml's Incremental feeds partial_fit and predicts lazily."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = tiled_mnist
    Xd, yd = tiled_mnist_dask
    expected = NearestMeanImageClassifier().fit(X, y)

    model = wrappers.Incremental(NearestMeanImageClassifier(), random_state=0)
    model.fit(Xd, yd, classes=np.arange(10))

    assert_allclose(model.estimator_.class_count_, expected.class_count_)
    assert_allclose(model.estimator_.centroids_, expected.centroids_, rtol=1e-6)
    predicted = model.predict(Xd)
    assert isinstance(predicted, da.Array)
    assert_array_equal(predicted.compute(), expected.predict(X))
    assert model.score(Xd, yd) == pytest.approx(expected.score(X, y))


def test_dask_ml_incremental_refuses_median_centroids(tiled_mnist_dask):
    """Check that Incremental says a median estimator has no partial_fit."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    Xd, yd = tiled_mnist_dask
    model = wrappers.Incremental(NearestMeanImageClassifier(centroid="median"))
    with pytest.raises(ValueError, match="does not implement 'partial_fit'"):
        model.fit(Xd, yd, classes=np.arange(10))


def test_dask_fit_of_huge_values_matches_in_memory_fit():
    """Check that blocks summarised in different units merge as one fit does."""
    import dask

    rng = np.random.default_rng(0)
    X = np.ldexp(rng.uniform(size=(600, 20)), 700)
    # The last block has a value larger by 2**100, so it is rescaled by
    # another power of two than the others.
    X[-1, 3] = np.ldexp(1.0, 800)
    y = np.arange(600) % 3
    expected = NearestMeanImageClassifier(norm="l2").fit(X, y)
    with dask.config.set(scheduler="synchronous"):
        clf = NearestMeanImageClassifier(norm="l2").fit(
            da.from_array(X, chunks=(200, 20)), y
        )
        predicted = clf.predict(da.from_array(X, chunks=(200, 20))).compute()

    assert_allclose(clf.centroids_, expected.centroids_, rtol=1e-12)
    assert clf.scale_ == pytest.approx(expected.scale_, rel=1e-10)
    assert np.isfinite(clf.scale_)
    assert_array_equal(predicted, expected.predict(X))


def test_dask_ml_parallel_post_fit(tiled_mnist, tiled_mnist_dask):
    """Check that dask-ml's ParallelPostFit fits on dask and predicts blockwise."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = tiled_mnist
    Xd, yd = tiled_mnist_dask
    expected = NearestMeanImageClassifier(norm="l2").fit(X, y)

    model = wrappers.ParallelPostFit(NearestMeanImageClassifier(norm="l2"))
    model.fit(Xd, yd)

    assert_allclose(model.estimator.centroids_, expected.centroids_, rtol=1e-6)
    for method in ["predict", "predict_proba", "transform"]:
        result = getattr(model, method)(Xd)
        assert isinstance(result, da.Array)
        _assert_matches_in_memory(
            result.compute(), getattr(expected, method)(X), method
        )


def test_dask_bad_input(tiled_mnist_dask):
    """Check that bad dask input raises a clear error and leaves the model as is."""
    Xd, yd = tiled_mnist_dask

    with pytest.raises(ValueError, match="2-D dask array"):
        NearestMeanImageClassifier().fit(Xd[:, 0], yd)
    with pytest.raises(ValueError, match=r"`y` of shape \(30000,\)"):
        NearestMeanImageClassifier().fit(Xd, yd[:-1])
    with pytest.raises(ValueError, match="got 1 class: 0"):
        NearestMeanImageClassifier().fit(Xd, da.zeros_like(yd))
    with_nan = da.where(da.arange(Xd.shape[0])[:, None] == 12_345, np.nan, Xd)
    with pytest.raises(ValueError, match="NaN"):
        NearestMeanImageClassifier().fit(with_nan, yd)
    with pytest.raises(ValueError, match="non-negative `sample_weight`, got -1.0"):
        NearestMeanImageClassifier().fit(Xd, yd, sample_weight=-da.ones_like(yd))
    huge = da.where(da.arange(Xd.shape[0]) == 20_001, 1e307, 1.0)
    with pytest.raises(ValueError, match=r"got 1e\+307 at index 20001; multiplying"):
        NearestMeanImageClassifier().fit(Xd, yd, sample_weight=huge)

    clf = NearestMeanImageClassifier().fit(Xd, yd)
    fitted = clf.centroids_.copy(), clf.class_count_.copy()
    with pytest.raises(ValueError, match="expecting 784 features"):
        clf.predict(Xd[:, :700])
    with pytest.raises(ValueError, match=r"got \[10, 11\]"):
        clf.partial_fit(Xd, yd + 2, classes=np.arange(10))
    assert_array_equal(clf.centroids_, fitted[0])
    assert_array_equal(clf.class_count_, fitted[1])
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as error:
        NearestMeanImageClassifier(centroid="median").partial_fit(
            Xd, yd, classes=np.arange(10)
        )
    assert "a median cannot be updated" in str(error.value.__cause__)


@pytest.mark.parametrize(
    "method",
    [
        "fit",
        "partial_fit",
        "predict",
        "predict_proba",
        "predict_log_proba",
        "decision_function",
        "transform",
        "score",
    ],
)
def test_dask_unflattened_images_raise_a_clear_error(method):
    """Check that a 3-D dask array names its shape and how to flatten it."""
    images = da.zeros((100, 28, 28), chunks=(50, 28, 28))
    y = np.arange(100) % 2
    clf = NearestMeanImageClassifier()
    if method not in ("fit", "partial_fit"):
        clf.fit(np.random.default_rng(0).random((100, 784)), y)
    match = (
        r"Expected a 2-D array of flattened images, got shape \(100, 28, 28\); "
        r"flatten it with X\.reshape\(len\(X\), -1\)\."
    )
    with pytest.raises(ValueError, match=match):
        if method == "fit":
            clf.fit(images, y)
        elif method == "partial_fit":
            clf.partial_fit(images, y, classes=[0, 1])
        elif method == "score":
            clf.score(images, y)
        else:
            getattr(clf, method)(images)


def test_dask_is_not_imported_for_numpy_input():
    """Check that fitting and predicting on numpy arrays never imports dask."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from sk_meanclf import NearestMeanImageClassifier
        X = np.random.default_rng(0).random((40, 6))
        y = np.arange(40) % 3
        for centroid in ["mean", "median"]:
            clf = NearestMeanImageClassifier(centroid=centroid).fit(X, y)
            clf.predict_proba(X), clf.transform(X), clf.score(X, y)
        clf = NearestMeanImageClassifier().partial_fit(X, y, classes=[0, 1, 2])
        clf.decision_function(X)
        print(sorted({m.split(".")[0] for m in sys.modules}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(out.stdout.replace("'", '"')))
    assert "numpy" in loaded
    assert loaded.isdisjoint({"dask", "distributed", "dask_ml", "toolz"})


# The client builds, fits and scores a lazily generated dask array of 2,000,000 x
# 784 float32 (about 6.3 GB) on a two-worker cluster and reports its own peak
# memory. The images of each block come from a seed, so the test process can
# regenerate the labels (and which class template drew each image) without the
# pixels, and check the results against them.
_LARGE_RUN = """
import json, resource, sys
import numpy as np
import dask
import dask.array as da
import distributed
from sk_meanclf import NearestMeanImageClassifier

N_ROWS, N_FEATURES, CHUNK, SEED, NOISE = {n_rows}, 784, 50_000, 7, 0.5


def templates():
    return np.random.default_rng(SEED).random((2, N_FEATURES), dtype=np.float32)


def draw_labels(rng, n):
    labels = rng.integers(0, 2, n)
    drawn_from = np.where(rng.random(n) < 0.05, 1 - labels, labels)
    return labels, drawn_from


def images(block_info=None):
    n = block_info[None]["chunk-shape"][0]
    rng = np.random.default_rng([SEED, block_info[None]["chunk-location"][0]])
    _, drawn_from = draw_labels(rng, n)
    X = rng.random((n, N_FEATURES), dtype=np.float32)
    X *= NOISE
    X += templates()[drawn_from]
    return X


def peak_rss():
    # On Linux, ru_maxrss survives exec and so counts the parent at fork time;
    # VmHWM is the peak of this process's own memory.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def labels(block_info=None):
    n = block_info[None]["chunk-shape"][0]
    rng = np.random.default_rng([SEED, block_info[None]["chunk-location"][0]])
    return draw_labels(rng, n)[0]


if __name__ == "__main__":
    rows = (CHUNK,) * (N_ROWS // CHUNK)
    X = da.map_blocks(
        images, chunks=(rows, (N_FEATURES,)), dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )
    y = da.map_blocks(
        labels, chunks=(rows,), dtype=np.int64, meta=np.empty((0,), np.int64)
    )
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        clf = NearestMeanImageClassifier(norm="{norm}").fit(X, y)
        stages = dict(fit=peak_rss())
        accuracy = clf.score(X, y)
        stages["score"] = peak_rss()
        proba_sums = clf.predict_proba(X).sum(axis=1)
        low, high = dask.compute(proba_sums.min(), proba_sums.max())
        stages["predict_proba"] = peak_rss()
    peak = peak_rss()
    json.dump(
        dict(
            nbytes=int(X.nbytes), peak=peak, stages=stages, accuracy=accuracy,
            class_count=clf.class_count_.tolist(),
            centroids=clf.centroids_.astype(float).tolist(),
            templates=templates().astype(float).tolist(),
            proba_sums=[float(low), float(high)], noise=NOISE, seed=SEED, chunk=CHUNK,
        ),
        sys.stdout,
    )
"""


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform == "win32", reason="peak memory is read with the POSIX resource module"
)
def test_dask_fit_and_score_beyond_client_memory(tmp_path):
    """Check that the client fits and scores 6.3 GB of dask images in < 1 GiB."""
    n_rows = 2_000_000
    script = tmp_path / "large_run.py"
    script.write_text(_LARGE_RUN.format(n_rows=n_rows, norm="l1"))

    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = json.loads(out.stdout)

    assert run["nbytes"] == n_rows * 784 * 4
    assert run["peak"] < 2**30, f"client peak memory (bytes) by stage: {run['stages']}"

    # Regenerate the labels and the template that drew each image, block by block.
    labels, drawn_from = [], []
    for block in range(n_rows // run["chunk"]):
        rng = np.random.default_rng([run["seed"], block])
        block_labels = rng.integers(0, 2, run["chunk"])
        flipped = rng.random(run["chunk"]) < 0.05
        labels.append(block_labels)
        drawn_from.append(np.where(flipped, 1 - block_labels, block_labels))
    labels, drawn_from = np.concatenate(labels), np.concatenate(drawn_from)

    assert_array_equal(run["class_count"], np.bincount(labels))
    # Every image lies far nearer its own template, so the prediction is the
    # template that drew it and the accuracy is the share of unflipped labels.
    assert run["accuracy"] == pytest.approx(np.mean(labels == drawn_from), abs=1e-12)
    assert 0.94 < run["accuracy"] < 0.96
    # The mean of class k mixes the two templates in the drawn proportions, plus
    # the mean of the uniform noise; the noise mean of a million rows is within
    # 6 standard errors of it.
    templates = np.asarray(run["templates"])
    for k in range(2):
        share = np.bincount(drawn_from[labels == k], minlength=2) / np.sum(labels == k)
        expected = share @ templates + run["noise"] / 2
        tolerance = 6 * run["noise"] / np.sqrt(12 * np.sum(labels == k)) + 1e-6
        assert_allclose(run["centroids"][k], expected, rtol=0, atol=tolerance)
    assert_allclose(run["proba_sums"], [1.0, 1.0], rtol=0, atol=1e-5)
