"""Tests of NearestMeanImageClassifier on toy arrays and on the real MNIST_SAMPLE."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_meanclf import NearestMeanImageClassifier
from sk_meanclf._classifier import (
    _MAX_WORKING_MEMORY_MIB,
    _chunk_n_rows,
    _class_summaries,
    _distances,
    _encode_targets,
    _softmax,
)

NORMS = ["l1", "l2"]
CENTROIDS = ["mean", "median"]

# Two hand-checkable classes of 2-pixel images: mean 3 is (0.1, 0.1), mean 7 is
# (0.95, 0.9).
X_TOY = np.array([[0.0, 0.1], [0.2, 0.1], [0.9, 1.0], [1.0, 0.8]])
Y_TOY = np.array([3, 3, 7, 7])


def _blobs(n_samples=300, n_features=6, n_classes=4, seed=0):
    """Overlapping Gaussian classes, so that some predictions are wrong."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(n_classes, n_features))
    y = rng.integers(n_classes, size=n_samples)
    X = centers[y] + rng.normal(size=(n_samples, n_features))
    return X, y


def _brute_force(X, centroids, norm):
    """Distances from float64 broadcasting, the book's formulas written out."""
    diff = X[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)
    if norm == "l1":
        return np.abs(diff).mean(axis=2)
    return np.sqrt((diff**2).mean(axis=2))


# Toy data


@pytest.mark.parametrize("norm", NORMS)
def test_toy_centroids_and_labels(norm):
    """Check that centroids are the class means and the labels are exact."""
    clf = NearestMeanImageClassifier(norm=norm).fit(X_TOY, Y_TOY)

    assert_array_equal(clf.classes_, [3, 7])
    assert_allclose(clf.centroids_, [[0.1, 0.1], [0.95, 0.9]])
    assert_array_equal(clf.class_count_, [2.0, 2.0])
    assert clf.n_features_in_ == 2
    assert_array_equal(clf.predict([[0.1, 0.0], [0.8, 0.9], [0.6, 0.5]]), [3, 7, 7])
    assert clf.score(X_TOY, Y_TOY) == 1.0


@pytest.mark.parametrize(
    "norm, expected",
    [("l1", [[0.05, 0.875]]), ("l2", [[np.sqrt(0.005), np.sqrt(0.766250)]])],
)
def test_toy_transform_values(norm, expected):
    """Check that transform gives the book's per-pixel mean distances."""
    clf = NearestMeanImageClassifier(norm=norm).fit(X_TOY, Y_TOY)

    assert_allclose(clf.transform([[0.1, 0.0]]), expected)


def test_toy_scale():
    """Check that scale_ comes from the pooled within-class variance."""
    # Squared deviations from the class means: 0.02 in class 3, 0.025 + 0.04 in
    # class 7, over 4 rows and 2 features.
    variance = (0.01 + 0.01 + 0.0025 + 0.01 + 0.0025 + 0.01) / 8
    l2 = NearestMeanImageClassifier(norm="l2").fit(X_TOY, Y_TOY)
    l1 = NearestMeanImageClassifier(norm="l1").fit(X_TOY, Y_TOY)

    assert l2.scale_ == pytest.approx(np.sqrt(variance))
    assert l1.scale_ == pytest.approx(np.sqrt(variance / 2))


@pytest.mark.parametrize("norm", NORMS)
def test_predictions_match_brute_force(norm):
    """Check that predict and transform match a float64 brute-force argmin."""
    X, y = _blobs()
    X_test, _ = _blobs(seed=1)
    clf = NearestMeanImageClassifier(norm=norm).fit(X, y)
    means = np.stack([X[y == k].mean(axis=0) for k in range(4)])
    D = _brute_force(X_test, means, norm)

    assert_allclose(clf.centroids_, means)
    assert_allclose(clf.transform(X_test), D)
    assert_array_equal(clf.predict(X_test), D.argmin(axis=1))
    # The classes overlap, so the test is not trivially all correct.
    assert 0.5 < clf.score(X, y) < 1.0


def test_l2_matches_nearest_centroid():
    """Check that l2 predictions equal NearestCentroid's Euclidean ones."""
    X, y = _blobs()
    X_test, _ = _blobs(seed=1)
    ours = NearestMeanImageClassifier(norm="l2").fit(X, y)
    theirs = NearestCentroid(metric="euclidean").fit(X, y)

    assert_allclose(ours.centroids_, theirs.centroids_)
    assert_array_equal(ours.predict(X_test), theirs.predict(X_test))


def test_median_l1_matches_nearest_centroid_manhattan():
    """Check that centroid='median' with l1 is NearestCentroid(metric='manhattan')."""
    X, y = _blobs(n_samples=301)
    X_test, _ = _blobs(seed=1)
    ours = NearestMeanImageClassifier(norm="l1", centroid="median").fit(X, y)
    theirs = NearestCentroid(metric="manhattan").fit(X, y)
    medians = np.stack([np.median(X[y == k], axis=0) for k in range(4)])

    assert_allclose(ours.centroids_, medians)
    assert_allclose(theirs.centroids_, medians)
    assert_array_equal(ours.predict(X_test), theirs.predict(X_test))


def test_distances_function():
    """Check that the private _distances matches the formulas and keeps float32."""
    X, _ = _blobs(n_samples=20)
    C = X[:3] + 0.5
    for norm in NORMS:
        assert_allclose(_distances(X, C, norm), _brute_force(X, C, norm))
        D32 = _distances(X.astype(np.float32), C, norm)
        assert D32.dtype == np.float32
        assert_allclose(D32, _brute_force(X, C, norm), rtol=1e-5)


# Labels


def test_string_and_non_contiguous_labels():
    """Check that arbitrary labels come back as predictions, in sorted classes_."""
    X, y = _blobs()
    names = np.array(["seven", "three", "one", "nine"])
    y_str = names[y]
    y_int = np.array([-5, 2, 40, 1000])[y]
    by_index = NearestMeanImageClassifier().fit(X, y).predict(X)

    clf = NearestMeanImageClassifier().fit(X, y_str)
    assert_array_equal(clf.classes_, ["nine", "one", "seven", "three"])
    assert_array_equal(clf.predict(X), names[by_index])
    clf = NearestMeanImageClassifier().fit(X, y_int)
    assert_array_equal(clf.predict(X), np.array([-5, 2, 40, 1000])[by_index])


@pytest.mark.parametrize(
    "y",
    [
        np.array([7, 3, 7, 3, 3], dtype=np.uint8),
        np.array([-5, 2, 40, 1000, 2, -5]),
        np.array([10**12, -(10**12), 0, 10**12]),
        np.array([2**63 - 1, 2**63 + 5, 2**63 - 1], dtype=np.uint64),
        np.array([-(2**63), 2**63 - 1]),
        np.array([True, False, True]),
        np.array(["seven", "three", "seven"]),
        np.array([3.0, 7.0, 3.0]),
    ],
)
def test_encode_targets_equals_unique(y):
    """Check that the labels are encoded as np.unique does, whatever their range."""
    classes, y_index = _encode_targets(y)
    expected_classes, expected_index = np.unique(y, return_inverse=True)
    assert classes.dtype == expected_classes.dtype
    assert_array_equal(classes, expected_classes)
    assert_array_equal(y_index, expected_index)
    assert_array_equal(classes[y_index], y)


def test_ties_go_to_first_class():
    """Check that a row equidistant from two centroids gets the first class."""
    X = np.array([[0.0], [0.0], [2.0], [2.0]])
    y = np.array(["b", "b", "a", "a"])
    for norm in NORMS:
        clf = NearestMeanImageClassifier(norm=norm).fit(X, y)
        # classes_ is ["a", "b"]: "a" sits at 2 and "b" at 0.
        assert_array_equal(
            clf.predict([[1.0], [1.0 + 1e-12], [1.0 - 1e-12]]), list("aab")
        )
        assert_array_equal(clf.predict_proba([[1.0]]), [[0.5, 0.5]])
        assert_array_equal(clf.decision_function([[1.0]]), [0.0])


# Probabilities and decision function


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("priors", ["uniform", "empirical"])
def test_proba_consistency(norm, priors):
    """Check that probabilities sum to 1 and their argmax is the prediction."""
    X, y = _blobs()
    clf = NearestMeanImageClassifier(norm=norm, priors=priors).fit(X, y)
    X_test = np.vstack([_blobs(seed=2)[0], 1e6 * X[:5], -1e150 * np.ones((1, 6))])
    proba = clf.predict_proba(X_test)
    pred = clf.predict(X_test)

    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    log_proba = clf.predict_log_proba(X_test)
    assert not np.isnan(log_proba).any()
    assert_allclose(np.exp(log_proba), proba, atol=1e-12)
    assert_array_equal(clf.classes_[clf.decision_function(X_test).argmax(axis=1)], pred)
    if priors == "uniform":
        D = _brute_force(X_test, clf.centroids_, norm)
        assert_array_equal(pred, D.argmin(axis=1))


@pytest.mark.parametrize("norm", NORMS)
def test_far_samples_get_nearest_class(norm):
    """Check that samples far from every centroid get finite, exact probabilities."""
    X, y = _blobs(n_classes=2)
    clf = NearestMeanImageClassifier(norm=norm).fit(X, y)
    c0, c1 = clf.centroids_
    # At 1e100 the two centroids are no longer apart in float64: a tie.
    t = np.array([[-1e6], [1e6], [-1e100], [1e100]])
    far = (c0 + c1) / 2 + t * (c1 - c0)
    proba = clf.predict_proba(far)
    scores = clf.decision_function(far)

    assert np.isfinite(proba).all() and np.isfinite(scores).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    if norm == "l2":
        # Gaussian log-odds grow with the distance: the nearest class takes all.
        assert_array_equal(proba, [[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]])
        assert_array_equal(clf.predict(far), [0, 1, 0, 0])
        assert_array_equal(np.sign(scores), [-1, 1, 0, 0])
    else:
        # Laplace log-odds tend to a finite limit, p * mean(|c1 - c0|) / b.
        limit = X.shape[1] * np.abs(c1 - c0).mean() / clf.scale_
        assert_allclose(scores[:2], [-limit, limit], rtol=1e-6)
        assert_allclose(proba[1, 1], 1 / (1 + np.exp(-limit)), rtol=1e-6)
        assert_array_equal(clf.predict(far[:2]), [0, 1])


def test_near_ties_keep_argmax_of_proba_equal_to_predict():
    """Check that rounding ties in predict_proba never change its argmax."""
    # A huge spread makes every log-likelihood tiny, so distances that differ in
    # the last bits give exp() values that round to the same probability.
    X = np.array([[-1e3], [1e3], [-999.0], [1001.0], [-998.0], [1002.0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    clf = NearestMeanImageClassifier().fit(X, y)
    X_test = 0.5 + np.arange(-20, 21)[:, None] * 2.0**-53
    proba = clf.predict_proba(X_test)
    pred = clf.predict(X_test)

    D = np.abs(X_test - clf.centroids_.ravel())
    assert_array_equal(pred, D.argmin(axis=1))
    assert_array_equal(proba.argmax(axis=1), pred)
    assert_allclose(proba.sum(axis=1), 1.0)
    # A plain softmax of the distances ties on some rows: the case is not vacuous.
    plain = np.exp(-(D - D.min(axis=1, keepdims=True)) / clf.scale_)
    plain /= plain.sum(axis=1, keepdims=True)
    assert (plain.argmax(axis=1) != pred).sum() > 0


def test_softmax_lifts_rounding_ties():
    """Check that _softmax keeps the argmax of the log-likelihoods."""
    jll = np.array([[0.0, 1e-17, -1.0], [-np.inf, 0.0, -3.0], [5.0, 5.0, 5.0]])
    proba = _softmax(jll)

    assert_array_equal(proba.argmax(axis=1), [1, 1, 0])
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(proba[2], [1 / 3, 1 / 3, 1 / 3])
    assert proba[1, 0] == 0.0


def test_decision_function_binary_convention():
    """Check that the binary decision is the log-odds of classes_[1]."""
    X, y = _blobs(n_classes=2)
    clf = NearestMeanImageClassifier().fit(X, y)
    scores = clf.decision_function(X)
    log_proba = clf.predict_log_proba(X)

    assert scores.shape == (X.shape[0],)
    assert_array_equal(scores > 0, clf.predict(X) == 1)
    assert_allclose(scores, log_proba[:, 1] - log_proba[:, 0], atol=1e-9)


def test_roc_auc_and_roc_curve_display():
    """Check that scoring='roc_auc' and RocCurveDisplay work with the scores."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from sklearn.metrics import RocCurveDisplay

    X, y = _blobs(n_samples=400, n_classes=2)
    X, X_test, y, y_test = X[:200], X[200:], y[:200], y[200:]
    clf = NearestMeanImageClassifier().fit(X, y)
    expected = roc_auc_score(y_test, clf.decision_function(X_test))
    display = RocCurveDisplay.from_estimator(clf, X_test, y_test)

    assert display.roc_auc == pytest.approx(expected)
    assert 0.5 < expected < 1.0
    cv = StratifiedKFold(3)
    scores = cross_val_score(
        NearestMeanImageClassifier(), X, y, cv=cv, scoring="roc_auc"
    )
    manual = [
        roc_auc_score(
            y[test],
            NearestMeanImageClassifier()
            .fit(X[train], y[train])
            .decision_function(X[test]),
        )
        for train, test in cv.split(X, y)
    ]
    assert_allclose(scores, manual)


def test_priors():
    """Check the class_prior_ of each option and its effect on predict."""
    X = np.array([[0.0], [0.0], [0.0], [2.0]])
    y = np.array([0, 0, 0, 1])
    uniform = NearestMeanImageClassifier().fit(X, y)
    empirical = NearestMeanImageClassifier(priors="empirical").fit(X, y)
    given = NearestMeanImageClassifier(priors=[0.1, 0.9]).fit(X, y)

    assert_allclose(uniform.class_prior_, [0.5, 0.5])
    assert_allclose(empirical.class_prior_, [0.75, 0.25])
    assert_allclose(given.class_prior_, [0.1, 0.9])
    # At the midpoint the prior decides.
    assert_array_equal(uniform.predict([[1.0]]), [0])
    assert_array_equal(empirical.predict([[1.0]]), [0])
    assert_array_equal(given.predict([[1.0]]), [1])
    assert_allclose(given.predict_proba([[1.0]]), [[0.1, 0.9]])
    assert_allclose(empirical.predict_proba([[1.0]]), [[0.75, 0.25]])


# Memory and dtypes


def test_chunk_size_bounds_memory():
    """Check that a chunk never needs more than the capped working memory."""
    n, p, k = 200_000, 784, 10
    rows = _chunk_n_rows(n, p, k, np.float32)
    assert 1 <= rows < n
    # One copy of each row and 128 bytes per class, beside 9 MiB of scratch.
    assert rows * (p * 4 + 128 * k) <= (_MAX_WORKING_MEMORY_MIB - 9) * 2**20
    assert (rows + 1) * (p * 4 + 128 * k) > (_MAX_WORKING_MEMORY_MIB - 9) * 2**20
    with config_context(working_memory=4):
        small = _chunk_n_rows(n, p, k, np.float64)
    assert 1 <= small * (p * 8 + 128 * k) <= 4 * 2**20
    assert _chunk_n_rows(5, p, k, np.float64) == 5
    assert _chunk_n_rows(n, 10**9, k, np.float64) == 1


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_class_scatter_equals_squared_deviations(offset, dtype):
    """Check the scatter, also where the means dwarf the spread around them."""
    X, y = _blobs(n_samples=400, n_features=20)
    if dtype == np.uint8:
        X = np.clip(X * 20 + 128, 0, 255)
    X = (X + offset).astype(dtype)
    w = np.random.default_rng(2).uniform(0.0, 2.0, size=len(y))
    X64 = X.astype(np.float64)
    for sample_weight in [None, w]:
        unit = np.ones(len(y)) if sample_weight is None else sample_weight
        sums, weights, scatter, exponent = _class_summaries(X, y, 5, sample_weight)
        assert exponent == 0
        means = [unit[y == k] @ X64[y == k] / unit[y == k].sum() for k in range(4)]
        expected = [
            unit[y == k] @ ((X64[y == k] - means[k]) ** 2).sum(axis=1) for k in range(4)
        ]
        assert_allclose(sums[:4], [unit[y == k] @ X64[y == k] for k in range(4)])
        assert_allclose(weights, [unit[y == k].sum() for k in range(4)] + [0])
        rtol = 1e-3 if dtype == np.float32 else 1e-9
        assert_allclose(scatter, expected + [0.0], rtol=rtol)


def test_chunked_prediction_equals_one_chunk():
    """Check that tiny row chunks give exactly the same outputs as one chunk."""
    X, y = _blobs(n_samples=500)
    clf = NearestMeanImageClassifier().fit(X, y)
    expected = [clf.transform(X), clf.predict_proba(X), clf.decision_function(X)]
    with config_context(working_memory=0.001):
        assert _chunk_n_rows(500, 6, 4, np.float64) < 10
        actual = [clf.transform(X), clf.predict_proba(X), clf.decision_function(X)]
        refit = NearestMeanImageClassifier().fit(X, y)
    for a, b in zip(actual, expected, strict=True):
        assert_array_equal(a, b)
    assert_allclose(refit.centroids_, clf.centroids_, rtol=1e-14)


@pytest.mark.parametrize("norm", NORMS)
def test_uint8_does_not_wrap(norm):
    """Check that uint8 images give the distances of their float values."""
    X = np.array([[10, 200], [10, 200], [250, 5], [250, 5]], dtype=np.uint8)
    y = np.array([0, 0, 1, 1])
    clf = NearestMeanImageClassifier(norm=norm).fit(X, y)
    X_test = np.array([[5, 255]], dtype=np.uint8)

    assert clf.transform(X_test).dtype == np.float64
    # |5 - 10| and |255 - 200|, or |5 - 250| and |255 - 5|, never 251.
    expected = [[30.0, 247.5]] if norm == "l1" else [[np.sqrt(1525), np.sqrt(61262.5)]]
    assert_allclose(clf.transform(X_test), expected)


def test_float32_stays_float32_and_float16_is_upcast():
    """Check the computation dtypes of float32 and float16 input."""
    X, y = _blobs()
    clf32 = NearestMeanImageClassifier().fit(X.astype(np.float32), y)
    clf16 = NearestMeanImageClassifier(norm="l2").fit(X.astype(np.float16), y)

    assert clf32.centroids_.dtype == np.float32
    assert clf32.transform(X.astype(np.float32)).dtype == np.float32
    assert clf16.centroids_.dtype == np.float32
    assert clf16.transform(X.astype(np.float16)).dtype == np.float32
    assert_allclose(
        clf32.centroids_, NearestMeanImageClassifier().fit(X, y).centroids_, rtol=1e-6
    )


@pytest.mark.parametrize("norm", NORMS)
def test_float16_and_float32_far_values_stay_finite(norm):
    """Check that large float16 and float32 values do not overflow distances."""
    X = np.array([[0.0, 0.0], [1.0, 1.0], [60000.0, -60000.0], [60001.0, -60000.0]])
    y = np.array([0, 0, 1, 1])
    clf = NearestMeanImageClassifier(norm=norm).fit(X.astype(np.float16), y)
    X_test = np.array([[-65504.0, 65504.0]])
    D = clf.transform(X_test.astype(np.float16))

    assert np.isfinite(D).all()
    assert_allclose(D, _brute_force(X_test, clf.centroids_, norm), rtol=1e-3)
    proba = clf.predict_proba(X_test.astype(np.float16))
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)

    big = np.array([[1e30, -1e30]], dtype=np.float32)
    clf32 = NearestMeanImageClassifier(norm=norm).fit(X.astype(np.float32), y)
    D32 = clf32.transform(big)
    assert D32.dtype == np.float32
    assert np.isfinite(D32).all()
    assert_allclose(D32, _brute_force(big, clf32.centroids_, norm), rtol=1e-6)


def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def _check_consistent(clf, X):
    """Assert that predict is the nearest centroid and probabilities are sound."""
    predicted = clf.predict(X)
    proba = clf.predict_proba(X)
    assert_array_equal(predicted, clf.classes_[clf.transform(X).argmin(axis=1)])
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted)
    assert np.isfinite(clf.scale_) and clf.scale_ > 0
    return predicted, proba


@pytest.mark.parametrize("centroid", CENTROIDS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(
    ("factor", "dtype"),
    [(1e20, np.float32), (1e30, np.float32), (1e200, np.float64), (10**17, np.int64)],
)
def test_huge_values_predict_the_nearest_centroid(norm, centroid, factor, dtype):
    """Check that values too large to square in their dtype still classify right."""
    X, y = _digits()
    Xs = (X * factor).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(Xs, y)
        predicted, _ = _check_consistent(clf, Xs)

    # Float64 centroids, as fitted (centroids_ rounds them to float32), and a
    # division by a power of two, which is exact, so that ties stay ties.
    reduce = np.mean if centroid == "mean" else np.median
    power = np.ldexp(1.0, int(np.round(np.log2(factor))))
    X64 = Xs.astype(np.float64) / power
    centroids = np.stack([reduce(X64[y == k], axis=0) for k in clf.classes_])
    reference = _brute_force(X64, centroids, norm)
    assert_array_equal(predicted, clf.classes_[reference.argmin(axis=1)])
    base = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    assert clf.scale_ / factor == pytest.approx(base.scale_, rel=1e-6)


@pytest.mark.parametrize("centroid", CENTROIDS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(
    ("exponent", "dtype"),
    [
        (70, np.float32),
        (100, np.float32),
        (-100, np.float32),
        (-120, np.float32),
        (700, np.float64),
        (1000, np.float64),
        (-700, np.float64),
        (-1000, np.float64),
    ],
)
def test_model_is_scale_equivariant(norm, centroid, exponent, dtype):
    """Check that scaling X by a power of two scales the model and keeps its output."""
    X, y = _digits()
    X = X.astype(dtype)
    Xs = np.ldexp(X, exponent).astype(dtype)
    base = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(Xs, y)
        predicted, proba = _check_consistent(clf, Xs)

    # Centroids below the normal range keep fewer bits.
    atol = np.finfo(dtype).smallest_subnormal
    expected = np.ldexp(base.centroids_.astype(np.float64), exponent)
    assert_allclose(clf.centroids_, expected, rtol=1e-7, atol=atol)
    assert clf.scale_ == pytest.approx(np.ldexp(base.scale_, exponent), rel=1e-6)
    assert_array_equal(predicted, base.predict(X))
    assert_allclose(proba, base.predict_proba(X), atol=1e-4)


def test_partial_fit_merges_batches_of_different_magnitudes():
    """Check that batches summarised in different units merge as one fit does."""
    X, y = _digits()
    Xs = np.ldexp(X, 700)
    # A row of the last batch is larger by 2**100, so its batch is rescaled by
    # another power of two than the others.
    Xs[-1, 10] = np.ldexp(1.0, 800)
    full = NearestMeanImageClassifier(norm="l2").fit(Xs, y)
    streamed = NearestMeanImageClassifier(norm="l2")
    for batch in np.array_split(np.arange(len(y)), 3):
        streamed.partial_fit(Xs[batch], y[batch], classes=np.arange(10))

    assert_allclose(streamed.centroids_, full.centroids_, rtol=1e-12)
    assert streamed.scale_ == pytest.approx(full.scale_, rel=1e-10)
    assert np.isfinite(full.scale_)


# Sample weights


@pytest.mark.parametrize("centroid", CENTROIDS)
@pytest.mark.parametrize("norm", NORMS)
def test_integer_weights_equal_repeated_rows(norm, centroid):
    """Check that integer sample weights act like repeated rows."""
    X, y = _blobs(n_samples=60)
    weights = np.random.default_rng(5).integers(0, 4, size=60)
    weighted = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(
        X, y, sample_weight=weights
    )
    repeated = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights)
    )
    X_test, _ = _blobs(seed=4)

    assert_allclose(weighted.centroids_, repeated.centroids_)
    assert_allclose(weighted.class_count_, repeated.class_count_)
    assert weighted.scale_ == pytest.approx(repeated.scale_)
    assert_allclose(weighted.predict_proba(X_test), repeated.predict_proba(X_test))


@pytest.mark.parametrize("norm", NORMS)
def test_common_weight_factor_changes_only_class_count(norm):
    """Check that weights scaled by one factor give the same model."""
    X, y = _blobs()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    base = NearestMeanImageClassifier(norm=norm, priors="empirical")
    plain = clone(base).fit(X, y, sample_weight=weights)
    for factor in (2.0**-90, 2.0**90):
        scaled = clone(base).fit(X, y, sample_weight=weights * factor)
        assert_allclose(scaled.class_count_, plain.class_count_ * factor)
        assert_allclose(scaled.centroids_, plain.centroids_, rtol=1e-12)
        assert_allclose(scaled.scale_, plain.scale_, rtol=1e-12)
        assert_allclose(scaled.predict_proba(X), plain.predict_proba(X), atol=1e-12)


def test_weighted_centroids_by_hand():
    """Check a weighted mean centroid computed by hand."""
    clf = NearestMeanImageClassifier().fit(X_TOY, Y_TOY, sample_weight=[3, 1, 1, 1])

    assert_allclose(clf.centroids_, [[0.05, 0.1], [0.95, 0.9]])
    assert_array_equal(clf.class_count_, [4.0, 2.0])


def test_zero_weight_class_is_never_predicted():
    """Check that a class whose weights sum to zero gets no probability."""
    X, y = _blobs(n_classes=3)
    clf = NearestMeanImageClassifier().fit(X, y, sample_weight=(y != 1).astype(float))

    assert np.isnan(clf.centroids_[1]).all()
    assert not np.isnan(clf.centroids_[[0, 2]]).any()
    assert_array_equal(np.unique(clf.predict(X)), [0, 2])
    assert_array_equal(clf.predict_proba(X)[:, 1], 0.0)
    assert np.isinf(clf.transform(X)[:, 1]).all()


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        ([1.0, -2.0, 1.0, 1.0], r"non-negative `sample_weight`, got -2\.0"),
        ([0, 0, 0, 0], r"positive sum, got all zeros"),
        ([1.0, 1.0, 1.0], r"shape \(4,\), got shape \(3,\)"),
        ([1.0, np.nan, 1.0, 1.0], r"finite `sample_weight`"),
        ("a", r"`sample_weight` to be None, a number or an array .* got 'a'\."),
        ([1, 1, 1, "x"], r"array of numbers, got 'x' at index 3\."),
        ([1.0, 1e307, 1.0, 1.0], r"between 7\.89e-31 and 1\.27e\+30, got 1e\+307 at "),
        ([1.0, 0.0, 1e-320, 1.0], r"got 1e-320 at index 2; multiplying every weight"),
    ],
)
def test_bad_sample_weight(sample_weight, match):
    """Check that bad sample weights raise a ValueError naming them."""
    with pytest.raises(ValueError, match=match) as error:
        NearestMeanImageClassifier().fit(X_TOY, Y_TOY, sample_weight=sample_weight)
    assert error.type is ValueError


# partial_fit


def test_partial_fit_batches_equal_fit_exactly():
    """Check that batches of integer images give exactly the centroids of fit."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(400, 30)).astype(np.uint8)
    y = rng.integers(3, size=400)
    full = NearestMeanImageClassifier(norm="l2").fit(X, y)
    streamed = NearestMeanImageClassifier(norm="l2")
    for batch in np.array_split(np.arange(400), 7):
        streamed.partial_fit(X[batch], y[batch], classes=[0, 1, 2])

    assert_array_equal(streamed.centroids_, full.centroids_)
    assert_array_equal(streamed.class_count_, full.class_count_)
    assert streamed.scale_ == pytest.approx(full.scale_, rel=1e-12)
    assert_array_equal(streamed.predict(X), full.predict(X))


def test_partial_fit_weighted_float_batches_equal_fit():
    """Check that weighted float batches match one weighted fit."""
    X, y = _blobs(n_samples=200)
    w = np.random.default_rng(1).uniform(0.1, 3.0, size=200)
    full = NearestMeanImageClassifier().fit(X, y, sample_weight=w)
    streamed = NearestMeanImageClassifier()
    # The first batch holds no row of class 3: it is filled in later.
    order = np.argsort(y == 3, kind="stable")
    for batch in np.array_split(order, 5):
        streamed.partial_fit(
            X[batch], y[batch], classes=np.arange(4), sample_weight=w[batch]
        )

    assert_allclose(streamed.centroids_, full.centroids_, rtol=1e-12)
    assert streamed.scale_ == pytest.approx(full.scale_, rel=1e-10)


def test_partial_fit_continues_after_fit():
    """Check that partial_fit after fit adds to what fit saw."""
    X, y = _blobs()
    clf = (
        NearestMeanImageClassifier().fit(X[:150], y[:150]).partial_fit(X[150:], y[150:])
    )

    assert_allclose(clf.centroids_, NearestMeanImageClassifier().fit(X, y).centroids_)


def test_partial_fit_errors():
    """Check partial_fit's errors: no classes, other classes, unknown labels."""
    with pytest.raises(ValueError, match="Expected `classes` on the first call"):
        NearestMeanImageClassifier().partial_fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match=r"labels in `y` among .* got \[7\]"):
        NearestMeanImageClassifier().partial_fit(X_TOY, Y_TOY, classes=[3, 5])
    clf = NearestMeanImageClassifier().partial_fit(X_TOY, Y_TOY, classes=[3, 7])
    with pytest.raises(ValueError, match=r"got \[3, 7, 9\]"):
        clf.partial_fit(X_TOY, Y_TOY, classes=[3, 7, 9])


def test_partial_fit_exists_only_for_mean_centroids():
    """Check that centroid='median' has no partial_fit, and the error says why."""
    assert hasattr(NearestMeanImageClassifier(), "partial_fit")
    median = NearestMeanImageClassifier(centroid="median")
    assert not hasattr(median, "partial_fit")
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as error:
        median.partial_fit(X_TOY, Y_TOY, classes=[3, 7])
    assert str(error.value.__cause__) == (
        "partial_fit is available only with centroid='mean', got "
        "centroid='median': a median cannot be updated from per-batch summaries; "
        "call fit with all rows, or use centroid='mean'."
    )
    assert not hasattr(median.fit(X_TOY, Y_TOY), "partial_fit")
    assert hasattr(median.set_params(centroid="mean"), "partial_fit")


# Bad input


@pytest.mark.parametrize(
    "params, match",
    [
        ({"norm": "l3"}, r"Expected `norm` to be 'l1' or 'l2', got 'l3'\."),
        ({"norm": None}, r"got None\."),
        ({"centroid": "mode"}, r"`centroid` to be 'mean' or 'median', got 'mode'\."),
        ({"priors": "flat"}, r"`priors` to be 'uniform', 'empirical' .* got 'flat'\."),
        ({"priors": [0.2, 0.2]}, r"sum to 1, got a sum of 0\.4"),
        (
            {"priors": [0.5, 0.25, 0.25]},
            r"shape \(2,\), one per class, got shape \(3,\)",
        ),
        ({"priors": [1.5, -0.5]}, r"non-negative finite `priors`, got \[1\.5, -0\.5\]"),
        ({"priors": None}, r"`priors` to be 'uniform', 'empirical' .* got None\."),
        ({"priors": {"a": 1}}, r"class probabilities, got \{'a': 1\}\."),
        ({"priors": [[0.5, 0.5]]}, r"class probabilities, got \[\[0\.5, 0\.5\]\]\."),
    ],
)
def test_bad_parameters(params, match):
    """Check that a bad parameter raises a ValueError naming the bad value."""
    clf = NearestMeanImageClassifier(**params)
    with pytest.raises(ValueError, match=match) as error:
        clf.fit(X_TOY, Y_TOY)
    assert error.type is ValueError


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.array([[0.0, np.nan]] * 4), Y_TOY, "Input X contains NaN"),
        (np.array([[0.0, np.inf]] * 4), Y_TOY, "Input X contains infinity"),
        (np.arange(4.0), Y_TOY, "Expected 2D array, got 1D array"),
        (X_TOY, Y_TOY[:3], r"inconsistent numbers of samples: \[4, 3\]"),
        (X_TOY, np.array([3, 3, 3, 3]), r"at least two classes in `y`, got 1 class: 3"),
        (X_TOY, np.array([0.5, 1.5, 2.5, 3.5]), "Unknown label type"),
    ],
)
def test_bad_fit_input(X, y, match):
    """Check that bad training data raises a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=match) as error:
        NearestMeanImageClassifier().fit(X, y)
    assert error.type is ValueError


UNFLATTENED = (
    r"Expected a 2-D array of flattened images, got shape \(4, 2, 2\); flatten it "
    r"with X\.reshape\(len\(X\), -1\)\."
)
ALL_METHODS = [
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score",
]


def _call(clf, method, X):
    if method == "score":
        return clf.score(X, [3, 3, 7, 7])
    return getattr(clf, method)(X)


@pytest.mark.parametrize("container", [np.asarray, lambda X: X.tolist()])
@pytest.mark.parametrize("method", ["fit", "partial_fit", *ALL_METHODS])
def test_unflattened_images_raise_a_clear_error(method, container):
    """Check that 3-D input names its shape and how to flatten it, in every method."""
    images = container(np.zeros((4, 2, 2)))
    clf = NearestMeanImageClassifier()
    with pytest.raises(ValueError, match=UNFLATTENED) as error:
        if method == "fit":
            clf.fit(images, Y_TOY)
        elif method == "partial_fit":
            clf.partial_fit(images, Y_TOY, classes=[3, 7])
        else:
            _call(clf.fit(X_TOY, Y_TOY), method, images)
    assert error.type is ValueError


def test_image_batches_with_a_channel_axis_raise_a_clear_error():
    """Check that 4-D batches (n, channels, height, width) get the same message."""
    clf = NearestMeanImageClassifier().fit(X_TOY, Y_TOY)
    match = r"got shape \(100, 1, 28, 28\); flatten it with X\.reshape"
    with pytest.raises(ValueError, match=match):
        clf.predict(np.zeros((100, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"got shape \(100, 28, 28\)"):
        NearestMeanImageClassifier().fit(np.zeros((100, 28, 28)), np.arange(100) % 2)


def test_failed_fit_changes_nothing():
    """Check that a failed fit leaves a fitted estimator as it was."""
    clf = NearestMeanImageClassifier().fit(X_TOY, Y_TOY)
    before = {k: np.copy(v) for k, v in vars(clf).items()}

    with pytest.raises(ValueError, match="got 1 class"):
        clf.fit(np.zeros((3, 5)), [1, 1, 1])
    with pytest.raises(ValueError, match="contains NaN"):
        clf.fit(np.full((4, 5), np.nan), Y_TOY)
    with pytest.raises(ValueError, match="non-negative"):
        clf.partial_fit(X_TOY, Y_TOY, sample_weight=[1, 1, -1, 1])

    assert vars(clf).keys() == before.keys()
    for key, value in vars(clf).items():
        assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize(
    "params",
    [{"norm": "l2"}, {"norm": "l5"}, {"priors": [0.99, 0.01]}, {"priors": "empirical"}],
)
def test_set_params_after_fit_takes_effect_on_refit(params):
    """Check that predictions follow the parameters of the last fit only."""
    X, y = _blobs(n_classes=2)
    y[:200] = 0
    clf = NearestMeanImageClassifier().fit(X, y)
    before = [clf.transform(X), clf.predict_proba(X), clf.decision_function(X)]

    clf.set_params(**params)
    after = [clf.transform(X), clf.predict_proba(X), clf.decision_function(X)]
    for old, new in zip(before, after, strict=True):
        assert_array_equal(new, old)

    if params.get("norm") == "l5":
        with pytest.raises(ValueError, match="got 'l5'"):
            clf.fit(X, y)
        return
    clf.fit(X, y)
    reference = NearestMeanImageClassifier(**params).fit(X, y)
    assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    assert not np.array_equal(clf.predict_proba(X), before[1])


@pytest.mark.parametrize(
    "method",
    ["predict", "predict_proba", "predict_log_proba", "decision_function", "transform"],
)
def test_prediction_errors(method):
    """Check NotFittedError before fit and errors on bad rows after it."""
    with pytest.raises(NotFittedError) as error:
        getattr(NearestMeanImageClassifier(), method)(X_TOY)
    assert error.type is NotFittedError
    clf = NearestMeanImageClassifier().fit(X_TOY, Y_TOY)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2"):
        getattr(clf, method)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        getattr(clf, method)(np.zeros(2))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        getattr(clf, method)(np.array([[np.nan, 0.0]]))
    rows = np.zeros((3000, 2), dtype=np.float32)
    rows[2500, 1] = -np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        getattr(clf, method)(rows)


# scikit-learn integration


def test_pipeline_and_fit_transform():
    """Check use in a Pipeline and that fit_transform equals fit then transform."""
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), NearestMeanImageClassifier(norm="l2"))
    pipe.fit(X, y)
    Xs = StandardScaler().fit_transform(X)

    assert_array_equal(
        pipe.predict(X), NearestMeanImageClassifier(norm="l2").fit(Xs, y).predict(Xs)
    )
    clf = NearestMeanImageClassifier()
    assert_array_equal(clf.fit_transform(X, y), clf.transform(X))
    # As a transformer inside a pipeline, followed by another classifier.
    features = make_pipeline(NearestMeanImageClassifier(), NearestCentroid()).fit(X, y)
    assert features.score(X, y) > 0.5


def test_cross_val_score_matches_manual_folds():
    """Check that cross_val_score gives the accuracies of hand-made folds."""
    X, y = _blobs()
    cv = StratifiedKFold(4)
    scores = cross_val_score(NearestMeanImageClassifier(), X, y, cv=cv)
    manual = [
        NearestMeanImageClassifier().fit(X[tr], y[tr]).score(X[te], y[te])
        for tr, te in cv.split(X, y)
    ]

    assert_allclose(scores, manual)


def test_grid_search_over_norm_and_centroid():
    """Check that GridSearchCV scores each norm and centroid like cross_val_score."""
    X, y = _blobs()
    grid = {"norm": ["l1", "l2"], "centroid": ["mean", "median"]}
    search = GridSearchCV(NearestMeanImageClassifier(), grid, cv=3).fit(X, y)

    assert len(search.cv_results_["params"]) == 4
    for params, score in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        expected = cross_val_score(NearestMeanImageClassifier(**params), X, y, cv=3)
        assert score == pytest.approx(expected.mean())
    assert search.best_estimator_.norm == search.best_params_["norm"]


def test_clone_and_pickle():
    """Check that clone keeps parameters only and pickling keeps the fitted model."""
    X, y = _blobs()
    clf = NearestMeanImageClassifier(norm="l2", centroid="median", priors="empirical")
    clf.fit(X, y)
    copy = clone(clf)

    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "centroids_")
    restored = pickle.loads(pickle.dumps(clf))
    assert_array_equal(restored.centroids_, clf.centroids_)
    assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_pandas_input_and_output():
    """Check feature names from a DataFrame and pandas output of transform."""
    pd = pytest.importorskip("pandas")
    X, y = _blobs()
    columns = [f"pixel{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    clf = NearestMeanImageClassifier().fit(df, pd.Series(y))

    assert_array_equal(clf.feature_names_in_, columns)
    assert_array_equal(
        clf.predict(df), NearestMeanImageClassifier().fit(X, y).predict(X)
    )
    names = [f"nearestmeanimageclassifier{i}" for i in range(4)]
    assert_array_equal(clf.get_feature_names_out(), names)
    out = clf.set_output(transform="pandas").transform(df)
    assert list(out.columns) == names
    assert_allclose(out.to_numpy(), clf.set_output(transform="default").transform(df))
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(df.rename(columns={"pixel0": "other"}))


# Real data: the fastai book's MNIST_SAMPLE


def _load_split(root, split):
    """Read one split's 3s and 7s with Pillow, in sorted file order, as floats."""
    from PIL import Image

    X, y = [], []
    for label in ("3", "7"):
        for path in sorted((root / split / label).iterdir()):
            with Image.open(path) as image:
                X.append(np.asarray(image, dtype=np.float32).ravel() / 255)
            y.append(int(label))
    return np.stack(X), np.array(y)


@pytest.fixture(scope="module")
def mnist_sample(mnist_sample_path):
    """Train and valid arrays of MNIST_SAMPLE, read once per module."""
    return _load_split(mnist_sample_path, "train") + _load_split(
        mnist_sample_path, "valid"
    )


def test_mnist_sample_book_accuracies(mnist_sample):
    """Check the book's l1 accuracies on the valid 3s (0.9168) and 7s (0.9854)."""
    X_train, y_train, X_valid, y_valid = mnist_sample
    clf = NearestMeanImageClassifier(norm="l1").fit(X_train, y_train)
    pred = clf.predict(X_valid)

    assert X_train.shape == (12396, 784)
    assert round(float((pred[y_valid == 3] == 3).mean()), 4) == 0.9168
    assert round(float((pred[y_valid == 7] == 7).mean()), 4) == 0.9854


def test_mnist_sample_book_distances(mnist_sample):
    """Check the book's distances of the second training 3 to the mean 3 and 7."""
    X_train, y_train, _, _ = mnist_sample
    second_three = X_train[y_train == 3][1:2]
    l1 = NearestMeanImageClassifier(norm="l1").fit(X_train, y_train)
    l2 = NearestMeanImageClassifier(norm="l2").fit(X_train, y_train)

    l1_distances = l1.transform(second_three).astype(np.float64)
    l2_distances = l2.transform(second_three).astype(np.float64)
    assert_array_equal(l1_distances.round(4), [[0.1114, 0.1586]])
    assert_array_equal(l2_distances.round(4), [[0.2021, 0.3021]])


# NearestCentroid warns that some MNIST pixels are constant within a class.
@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_:UserWarning")
def test_mnist_sample_matches_references(mnist_sample):
    """Check l2 against NearestCentroid and l1 against a float64 brute force."""
    X_train, y_train, X_valid, _ = mnist_sample
    l1 = NearestMeanImageClassifier(norm="l1").fit(X_train, y_train)
    l2 = NearestMeanImageClassifier(norm="l2").fit(X_train, y_train)
    reference = NearestCentroid(metric="euclidean").fit(X_train, y_train)
    X64 = X_train.astype(np.float64)
    means = np.stack([X64[y_train == c].mean(axis=0) for c in (3, 7)])
    D = np.stack(
        [np.abs(X_valid.astype(np.float64) - m).mean(axis=1) for m in means], axis=1
    )

    assert_array_equal(l2.predict(X_valid), reference.predict(X_valid))
    assert_array_equal(l1.predict(X_valid), np.array([3, 7])[D.argmin(axis=1)])
    proba = l1.predict_proba(X_valid)
    assert_array_equal(l1.classes_[proba.argmax(axis=1)], l1.predict(X_valid))
    assert_array_equal(l1.decision_function(X_valid) > 0, l1.predict(X_valid) == 7)
