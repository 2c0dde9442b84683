"""Tests of the numeric kernels against float64 brute-force references."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sk_meanclf import _kernels
from sk_meanclf._kernels import (
    class_medians,
    class_moments,
    class_scatter,
    distances,
)

REPO = Path(__file__).resolve().parents[1]

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False

PATHS = [
    pytest.param(
        True,
        id="numba",
        marks=pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed"),
    ),
    pytest.param(False, id="numpy"),
]


@pytest.fixture(params=PATHS)
def use_numba(request, monkeypatch):
    """Run the test once with the compiled kernels and once with plain numpy."""
    monkeypatch.setattr(_kernels, "_USE_NUMBA", request.param)
    return request.param


def _reference_distances(X, centroids, norm):
    """Float64 brute force, one class at a time."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], centroids.shape[0]))
    for k, c in enumerate(np.asarray(centroids, dtype=np.float64)):
        diff = X - c
        if norm == "l1":
            out[:, k] = np.mean(np.abs(diff), axis=1)
        else:
            out[:, k] = np.sqrt(np.mean(diff * diff, axis=1))
    return out


def _reference_centroids(X, y, n_classes, centroid):
    X = np.asarray(X, dtype=np.float64)
    if centroid == "mean":
        return np.array([X[y == k].mean(axis=0) for k in range(n_classes)])
    return np.array([np.median(X[y == k], axis=0) for k in range(n_classes)])


def _centroids(X, y, n_classes, centroid):
    if centroid == "mean":
        sums, weights, _ = class_moments(X, y, n_classes)
        return sums / weights[:, None]
    return class_medians(X, y, n_classes)


@pytest.fixture(scope="module")
def t10k(mnist_t10k):
    images, labels = mnist_t10k
    X = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
    return X, labels.astype(np.intp)


def _read_folder(root, split):
    from PIL import Image

    rows, labels = [], []
    for k, name in enumerate(["3", "7"]):
        for path in sorted((root / split / name).glob("*.png")):
            with Image.open(path) as image:
                rows.append(np.asarray(image, dtype=np.uint8).reshape(-1))
            labels.append(k)
    X = np.stack(rows).astype(np.float32) / np.float32(255)
    return X, np.array(labels, dtype=np.intp)


@pytest.fixture(scope="module")
def mnist_sample(mnist_sample_path):
    return _read_folder(mnist_sample_path, "train"), _read_folder(
        mnist_sample_path, "valid"
    )


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("centroid", ["mean", "median"])
def test_distances_match_float64_reference_on_mnist_t10k(
    t10k, use_numba, norm, centroid
):
    """Check that nearest centroids on the MNIST test set equal float64 brute force."""
    X, y = t10k
    centroids = _centroids(X, y, 10, centroid)
    assert_allclose(centroids, _reference_centroids(X, y, 10, centroid), rtol=1e-12)

    D = distances(X, centroids, norm)
    reference = _reference_distances(X, centroids, norm)
    assert D.dtype == np.float32
    assert_array_equal(D.argmin(axis=1), reference.argmin(axis=1))
    assert_allclose(D, reference, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("centroid", ["mean", "median"])
def test_distances_match_float64_reference_on_mnist_sample(
    mnist_sample, use_numba, norm, centroid
):
    """Check that MNIST_SAMPLE valid predictions equal float64 brute force."""
    (X_train, y_train), (X_valid, _) = mnist_sample
    centroids = _centroids(X_train, y_train, 2, centroid)
    D = distances(X_valid, centroids, norm)
    reference = _reference_distances(X_valid, centroids, norm)
    assert_array_equal(D.argmin(axis=1), reference.argmin(axis=1))
    assert_allclose(D, reference, rtol=2e-6, atol=1e-7)


def test_book_figures_on_mnist_sample(mnist_sample, use_numba):
    """Check the book's l1 accuracies and distances of the second training 3."""
    (X_train, y_train), (X_valid, y_valid) = mnist_sample
    sums, weights, _ = class_moments(X_train, y_train, 2)
    centroids = sums / weights[:, None]
    predicted = distances(X_valid, centroids, "l1").argmin(axis=1)
    assert round(np.mean(predicted[y_valid == 0] == 0), 4) == 0.9168
    assert round(np.mean(predicted[y_valid == 1] == 1), 4) == 0.9854

    second_three = X_train[1:2]
    assert_allclose(
        distances(second_three, centroids, "l1"), [[0.1114, 0.1586]], atol=5e-5
    )
    assert_allclose(
        distances(second_three, centroids, "l2"), [[0.2021, 0.3021]], atol=5e-5
    )


def _near_ties(norm, n_rows=400, n_features=784, seed=0):
    """Rows of float32 that lie as close as float32 allows to a tie of two centroids.

    Along the line ``x + t (c1 - c0)`` the difference of the two distances grows
    monotonically with ``t``, so bisection in float64 finds the tie on each line.
    """
    rng = np.random.default_rng(seed)
    centroids = rng.uniform(0.2, 0.8, size=(2, n_features))
    step = centroids[1] - centroids[0]
    rows = np.empty((n_rows, n_features), dtype=np.float32)
    for i in range(n_rows):
        start = rng.uniform(0.0, 1.0, size=n_features)

        def gap(t, start=start):
            d = _reference_distances((start + t * step)[None], centroids, norm)[0]
            return d[0] - d[1]

        low, high = -4.0, 4.0
        for _ in range(80):
            middle = (low + high) / 2
            low, high = (middle, high) if gap(middle) < 0 else (low, middle)
        rows[i] = start + low * step
    return rows, centroids


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_distances_settle_near_ties_exactly(use_numba, norm):
    """Check that rows at a float32 near tie get the float64 nearest centroid."""
    X, centroids = _near_ties(norm)
    reference = _reference_distances(X, centroids, norm).argmin(axis=1)

    # The plain float32 computation gets some of these rows wrong.
    X64 = X.astype(np.float64)
    c32 = centroids.astype(np.float32)
    if norm == "l1":
        naive = np.stack([np.abs(X - c).sum(axis=1) for c in c32], axis=1)
    else:
        naive = (X * X).sum(axis=1)[:, None] - 2 * X @ c32.T + (c32 * c32).sum(axis=1)
    assert np.any(naive.argmin(axis=1) != reference)
    assert np.any(reference == 0) and np.any(reference == 1)

    assert_array_equal(distances(X, centroids, norm).argmin(axis=1), reference)
    # float64 input takes the float64 fast pass and settles its own near ties.
    assert_array_equal(distances(X64, centroids, norm).argmin(axis=1), reference)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_ties_go_to_the_first_centroid(use_numba, norm, dtype):
    """Check that a row equidistant from two centroids gets the first one."""
    X = np.array([[1.0, 1.0], [1.0, 3.0], [0.0, 0.0]], dtype=dtype)
    centroids = np.array([[0.0, 2.0], [2.0, 0.0]])
    D = distances(X, centroids, norm)
    assert D.dtype == dtype
    assert_array_equal(D.argmin(axis=1), [0, 0, 0])
    assert_array_equal(distances(X, centroids[::-1], norm).argmin(axis=1), [0, 1, 0])


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distances_keep_dtype_and_values(use_numba, norm, dtype):
    """Check float32 stays float32, float64 stays float64, at any row count."""
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(7, 33))
    for n_rows in [0, 1, 3, 4, 5, 258]:
        X = rng.normal(size=(n_rows, 33)).astype(dtype)
        D = distances(X, centroids.astype(dtype), norm)
        assert D.dtype == dtype
        assert D.shape == (n_rows, 7)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        assert_allclose(D, _reference_distances(X, centroids, norm), rtol=rtol)


def test_numba_and_numpy_paths_agree(t10k, monkeypatch):
    """Check that both l1 paths give the same nearest centroids and close values."""
    pytest.importorskip("numba")
    X, y = t10k
    centroids = _centroids(X, y, 10, "mean")
    # Large enough to be shared over threads, and not a multiple of four rows.
    rows = X[:2999]
    assert rows.size * len(centroids) >= _kernels._PARALLEL_WORK
    monkeypatch.setattr(_kernels, "_USE_NUMBA", True)
    compiled = distances(rows, centroids, "l1")
    monkeypatch.setattr(_kernels, "_USE_NUMBA", False)
    plain = distances(rows, centroids, "l1")
    assert_array_equal(compiled.argmin(axis=1), plain.argmin(axis=1))
    assert_allclose(compiled, plain, rtol=1e-6)


def test_missing_numba_falls_back_to_numpy(monkeypatch):
    """Check that without numba the l1 distances come from numpy, unchanged."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setattr(_kernels, "_NUMBA_KERNELS", None)
    monkeypatch.setattr(_kernels, "_USE_NUMBA", True)
    X = np.array([[0.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    D = distances(X, np.array([[0.0, 0.0], [1.0, 1.0]]), "l1")
    assert_array_equal(D, np.array([[0.0, 1.0], [2.0, 1.0]], dtype=np.float32))
    assert _kernels._NUMBA_KERNELS is False


def test_numba_is_imported_only_for_l1_and_compiled_once():
    """Check that fit-side kernels and l2 never import numba, and l1 builds once."""
    pytest.importorskip("numba")
    code = """
import sys
import numpy as np
from sk_meanclf import _kernels
X = np.random.default_rng(0).random((50, 12)).astype(np.float32)
y = np.arange(50) % 3
sums, weights, _ = _kernels.class_moments(X, y, 3)
_kernels.class_medians(X, y, 3)
_kernels.distances(X, sums / weights[:, None], "l2")
assert "numba" not in sys.modules, "numba imported before any l1 distance"
_kernels.distances(X, sums / weights[:, None], "l1")
assert "numba" in sys.modules
first = _kernels._numba_kernels()
_kernels.distances(X, sums / weights[:, None], "l1")
assert _kernels._numba_kernels() is first
"""
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def _one_class_median(X, sample_weight=None):
    """The weighted median of the columns of `X`, taken as a single class."""
    y = np.zeros(X.shape[0], dtype=np.intp)
    return class_medians(X, y, 1, sample_weight)[0]


def test_weighted_median_equals_numpy_median(t10k):
    """Check the unweighted and unit-weight medians against numpy.median."""
    X, y = t10k
    for k in [0, 1]:
        rows = X[y == k]
        expected = np.median(rows.astype(np.float64), axis=0)
        assert_array_equal(_one_class_median(rows), expected)
        assert_array_equal(_one_class_median(rows, np.ones(len(rows))), expected)
    odd = X[:999]
    expected = np.median(odd.astype(np.float64), axis=0)
    assert_array_equal(_one_class_median(odd), expected)


def test_weighted_median_equals_median_of_repeated_rows():
    """Check integer weights against the median of rows repeated that often."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        n_rows = rng.integers(1, 40)
        X = rng.integers(0, 6, size=(n_rows, 5)).astype(np.float32)
        counts = rng.integers(0, 4, size=n_rows)
        counts[rng.integers(n_rows)] += 1
        expected = np.median(np.repeat(X, counts, axis=0).astype(np.float64), axis=0)
        assert_array_equal(_one_class_median(X, counts.astype(np.float64)), expected)


def test_class_medians_equal_weighted_median_per_class(t10k):
    """Check that all-classes medians equal the median of each class's rows."""
    X, y = t10k
    X, y = X[:3000], y[:3000]
    medians = class_medians(X, y, 10)
    assert medians.dtype == np.float64
    for k in range(10):
        expected = np.median(X[y == k].astype(np.float64), axis=0)
        assert_array_equal(medians[k], expected)

    counts = np.random.default_rng(4).integers(0, 3, size=len(y)).astype(np.float64)
    counts[:10] = 1.0
    medians = class_medians(X, y, 10, counts)
    for k in range(10):
        mask = y == k
        repeated = np.repeat(X[mask], counts[mask].astype(int), axis=0)
        expected = np.median(repeated.astype(np.float64), axis=0)
        assert_array_equal(medians[k], expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_scatter_matches_float64_scatter(t10k, dtype):
    """Check per-class weighted squared deviations from the class means."""
    X, y = t10k
    X = X[:5000].astype(dtype)
    y = y[:5000]
    X64 = X.astype(np.float64)
    means = np.array([X64[y == k].mean(axis=0) for k in range(10)])
    sample_weight = np.random.default_rng(5).uniform(0.0, 2.0, size=len(y))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for w in [None, sample_weight]:
        unit = np.ones(len(y)) if w is None else w
        expected = [
            unit[y == k] @ ((X64[y == k] - means[k]) ** 2).sum(axis=1)
            for k in range(10)
        ]
        assert_allclose(class_scatter(X, y, means, w), expected, rtol=rtol)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_predictions_of_200000_rows_run_in_bounded_chunks(use_numba, norm, monkeypatch):
    """Check that the estimator's chunks bound the memory of scoring 200,000 rows."""
    import tracemalloc

    from sk_meanclf import NearestMeanImageClassifier, _classifier

    n_rows, n_features, n_classes = 200_000, 64, 10
    rng = np.random.default_rng(6)
    X = rng.random((n_rows, n_features), dtype=np.float32)
    y = np.arange(n_rows) % n_classes
    model = NearestMeanImageClassifier(norm=norm).fit(X, y)

    chunk = _classifier._chunk_n_rows(n_rows, n_features, n_classes, np.float32)
    assert chunk < n_rows
    # One float32 row and 128 bytes per class, within 23 of the 32 MiB.
    assert chunk * (n_features * 4 + 128 * n_classes) <= 23 * 2**20

    seen = []
    distances_of_chunk = _kernels.distances

    def spy(rows, centroids, norm):
        seen.append(rows.shape[0])
        return distances_of_chunk(rows, centroids, norm)

    monkeypatch.setattr(_kernels, "distances", spy)
    model.predict(X[:1000])  # compiles the l1 kernel outside the measurement
    for method in ["predict", "predict_proba", "transform"]:
        seen.clear()
        tracemalloc.start()
        result = getattr(model, method)(X)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sum(seen) == n_rows
        assert max(seen) <= chunk
        extra = peak - result.nbytes
        # An (n_rows, n_classes, n_features) float32 array would take 488 MiB.
        assert extra <= 32 * 2**20, (method, extra / 2**20)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("centroid", ["mean", "median"])
def test_estimator_predictions_equal_float64_brute_force(
    t10k, mnist_sample, use_numba, norm, centroid
):
    """Check the estimator's predictions on real data against float64 brute force."""
    from sk_meanclf import NearestMeanImageClassifier

    (X_train, y_train), (X_valid, _) = mnist_sample
    X_test, y_test = t10k
    for X_fit, y_fit, X_new in [(X_train, y_train, X_valid), (X_test, y_test, X_test)]:
        n_classes = len(np.unique(y_fit))
        centroids = _reference_centroids(X_fit, y_fit, n_classes, centroid)
        expected = _reference_distances(X_new, centroids, norm).argmin(axis=1)
        model = NearestMeanImageClassifier(norm=norm, centroid=centroid)
        predicted = model.fit(X_fit, y_fit).predict(X_new)
        assert_array_equal(predicted, expected)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_distances_to_100_centroids_match_float64_reference(t10k, use_numba, norm):
    """Check nearest centroids among 100 classes."""
    X, y = t10k
    y = y * 10 + np.arange(len(y)) % 10
    centroids = _centroids(X, y, 100, "mean")
    D = distances(X, centroids, norm)
    reference = _reference_distances(X, centroids, norm)
    assert D.dtype == np.float32
    assert_array_equal(D.argmin(axis=1), reference.argmin(axis=1))
    assert_allclose(D, reference, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("n_classes", [10, 100])
def test_distances_of_a_row_do_not_depend_on_its_chunk(
    t10k, use_numba, norm, n_classes
):
    """Check that a row gets the same nearest class in any chunk of rows.

    l1 sums each row alone, so its distances are bit-identical; the l2 products
    go through BLAS, which may round a row differently by the size of the call
    and the row's place in it, so those agree to float32 rounding.
    """
    X, y = t10k
    X = X[:3000]
    y = y[:3000] * 10 + np.arange(3000) % 10 if n_classes == 100 else y[:3000]
    centroids = _centroids(X, y, n_classes, "mean")
    whole = distances(X, centroids, norm)
    for size in [1, 7, 333, 1000, 2999]:
        rows = 300 if size == 1 else len(X)
        parts = np.concatenate(
            [
                distances(X[start : min(start + size, rows)], centroids, norm)
                for start in range(0, rows, size)
            ]
        )
        assert_array_equal(parts.argmin(axis=1), whole[:rows].argmin(axis=1))
        if norm == "l1":
            assert_array_equal(parts, whole[:rows], err_msg=str(size))
        else:
            assert_allclose(parts, whole[:rows], rtol=1e-5, err_msg=str(size))


def test_class_moments_match_float64_sums(t10k):
    """Check one-pass class sums and squared norms on grouped and shuffled rows."""
    X, y = t10k
    X64 = X.astype(np.float64)
    sample_weight = np.random.default_rng(7).uniform(0.0, 3.0, size=len(y))
    order = np.argsort(y, kind="stable")
    for w in [None, sample_weight]:
        unit = np.ones(len(y)) if w is None else w
        expected_sums = [unit[y == k] @ X64[y == k] for k in range(10)]
        expected_squares = [unit[y == k] @ (X64[y == k] ** 2).sum(1) for k in range(10)]
        for rows in [slice(None), order]:
            sums, weights, squares = class_moments(
                X[rows], y[rows], 11, None if w is None else w[rows]
            )
            assert sums.dtype == squares.dtype == np.float64
            assert_allclose(sums[:10], expected_sums, rtol=1e-12)
            assert_array_equal(sums[10], 0.0)
            assert_allclose(weights, [unit[y == k].sum() for k in range(10)] + [0])
            assert_allclose(squares, expected_squares + [0.0], rtol=1e-6)


@pytest.mark.parametrize("exponent", [-200, 0, 200])
def test_class_moments_scale_rows_by_a_power_of_two(exponent):
    """Check that `scale` divides huge or tiny rows back to a squarable range."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-1.0, 1.0, size=(300, 40))
    y = np.arange(300) % 3
    expected = class_moments(X, y, 3)
    scaled = class_moments(np.ldexp(X, exponent), y, 3, scale=np.ldexp(1.0, -exponent))
    assert_array_equal(scaled[0], expected[0])
    assert_array_equal(scaled[1], expected[1])
    assert_array_equal(scaled[2], expected[2])


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("exponent", [-1000, -600, 0, 600, 1000])
def test_exact_distances_neither_overflow_nor_underflow(norm, exponent):
    """Check that the float64 fallback scales differences, and is exact when it can."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-1.0, 1.0, size=(50, 30))
    C = rng.uniform(-1.0, 1.0, size=(4, 30))
    reference = _reference_distances(X, C, norm)
    D = _kernels._exact_distances(np.ldexp(X, exponent), np.ldexp(C, exponent), norm)
    assert_allclose(np.ldexp(D, -exponent), reference, rtol=1e-14)
    if exponent == 0:
        assert_array_equal(D, _kernels._exact_distances(X, C, norm))


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize(
    ("exponent", "dtype"), [(-110, np.float32), (-1000, np.float64)]
)
def test_distances_of_tiny_rows_pick_the_nearest_centroid(
    use_numba, norm, exponent, dtype
):
    """Check that products below the normal range do not hide the nearest centroid."""
    rng = np.random.default_rng(5)
    X = rng.uniform(0.0, 1.0, size=(200, 30))
    C = rng.uniform(0.0, 1.0, size=(5, 30))
    Xs = np.ldexp(X, exponent).astype(dtype)
    D = distances(Xs, np.ldexp(C, exponent), norm)
    reference = _reference_distances(X, C, norm)
    assert_array_equal(D.argmin(axis=1), reference.argmin(axis=1))
