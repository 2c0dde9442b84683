"""Tests of torch tensors and array-api-strict arrays through array API dispatch."""

import json
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.utils import estimator_checks

from sk_meanclf import NearestMeanImageClassifier

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

REPO = Path(__file__).resolve().parents[1]
METHODS = [
    "predict",
    "transform",
    "decision_function",
    "predict_proba",
    "predict_log_proba",
]
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"
)


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    """Set SCIPY_ARRAY_API=1, which scikit-learn requires for array API dispatch."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@pytest.fixture(scope="module")
def digits(mnist_t10k):
    """3,000 images of the MNIST test set, float32 in [0, 1], and their labels."""
    images, labels = mnist_t10k
    X = images[:3_000].reshape(3_000, -1).astype(np.float32) / 255
    return X, labels[:3_000].astype(np.int64)


def _to_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.cpu().numpy()
    return np.asarray(a)


def _atol(X, method):
    """Absolute tolerance of a method's output against the NumPy path's."""
    if X.dtype == np.float64:
        return 1e-9
    # Scores multiply distances by n_features / scale_ (about 5,000 here), so
    # float32 rounding of a distance shows in the fourth decimal of a score.
    return 1e-6 if method == "transform" else 1e-3


def _check_same_as_numpy(clf, expected, X, X_xp, namespace, device):
    """Compare every method's output with the NumPy fit, and where it lives."""
    assert_allclose(
        _to_numpy(clf.centroids_), expected.centroids_, rtol=1e-5, atol=1e-6
    )
    assert_allclose(_to_numpy(clf.class_count_), expected.class_count_, rtol=1e-12)
    assert clf.scale_ == pytest.approx(expected.scale_, rel=1e-5)
    for method in METHODS:
        with config_context(array_api_dispatch=True):
            result = getattr(clf, method)(X_xp)
        assert type(result).__module__.split(".")[0] == namespace, method
        assert result.device == device, method
        reference = getattr(expected, method)(X)
        if method == "predict":
            assert_array_equal(_to_numpy(result), reference)
            continue
        assert str(result.dtype).endswith(str(reference.dtype)), method
        assert_allclose(
            _to_numpy(result),
            reference,
            rtol=1e-6,
            atol=_atol(X, method),
            err_msg=method,
        )


def _check_device_only(clf, expected, X, X_xp):
    """Outputs on a non-CPU array-api-strict device, compared after a move."""
    import array_api_strict as xp

    cpu = xp.Device("CPU_DEVICE")
    for method in METHODS:
        with config_context(array_api_dispatch=True):
            result = getattr(clf, method)(X_xp)
        assert result.device == X_xp.device, method
        moved = np.asarray(xp.asarray(result, device=cpu))
        reference = getattr(expected, method)(X)
        assert_allclose(moved, reference, rtol=1e-6, atol=_atol(X, method))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("centroid", ["mean", "median"])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_torch_cpu_matches_numpy(digits, norm, centroid, dtype):
    """Check that CPU tensors give the NumPy results, as CPU tensors."""
    X, y = digits
    X = X.astype(dtype)
    expected = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    X_t, y_t = torch.asarray(X), torch.asarray(y)

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X_t, y_t)

    assert isinstance(clf.centroids_, torch.Tensor)
    assert clf.centroids_.dtype == torch.asarray(expected.centroids_).dtype
    if centroid == "median":
        assert_array_equal(clf.centroids_.numpy(), expected.centroids_)
    _check_same_as_numpy(clf, expected, X, X_t, "torch", X_t.device)
    with config_context(array_api_dispatch=True):
        assert clf.score(X_t, y_t) == pytest.approx(expected.score(X, y))


@pytest.mark.parametrize("device_name", ["CPU_DEVICE", "device1"])
@pytest.mark.parametrize("centroid", ["mean", "median"])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_array_api_strict_matches_numpy(digits, norm, centroid, device_name):
    """Check that array-api-strict arrays give the NumPy results on their device."""
    xp = pytest.importorskip("array_api_strict")
    X, y = digits
    device = xp.Device(device_name)
    expected = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    X_xp = xp.asarray(X, device=device)

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(
            X_xp, xp.asarray(y, device=device)
        )

    assert clf.centroids_.device == device
    if device_name == "CPU_DEVICE":
        _check_same_as_numpy(clf, expected, X, X_xp, "array_api_strict", device)
    else:
        _check_device_only(clf, expected, X, X_xp)


@pytest.mark.parametrize("centroid", ["mean", "median"])
def test_torch_sample_weight_matches_numpy(digits, centroid):
    """Check that weighted fits on tensors equal weighted NumPy fits."""
    X, y = digits
    weights = np.random.default_rng(0).uniform(0.0, 2.0, size=len(y))
    weights[::5] = 0.0
    expected = NearestMeanImageClassifier(centroid=centroid, priors="empirical")
    expected.fit(X, y, sample_weight=weights)

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier(centroid=centroid, priors="empirical").fit(
            torch.asarray(X), torch.asarray(y), sample_weight=torch.asarray(weights)
        )

    assert_allclose(clf.class_count_.numpy(), expected.class_count_, rtol=1e-12)
    assert_allclose(clf.class_prior_.numpy(), expected.class_prior_, rtol=1e-12)
    if centroid == "median":
        assert_array_equal(clf.centroids_.numpy(), expected.centroids_)
    X_t = torch.asarray(X)
    _check_same_as_numpy(clf, expected, X, X_t, "torch", X_t.device)


def test_torch_partial_fit_matches_fit(digits):
    """Check that partial_fit over tensor batches gives the NumPy fit."""
    X, y = digits
    expected = NearestMeanImageClassifier(norm="l2").fit(X, y)

    clf = NearestMeanImageClassifier(norm="l2")
    with config_context(array_api_dispatch=True):
        for rows in np.array_split(np.arange(len(y)), 4):
            clf.partial_fit(
                torch.asarray(X[rows]), torch.asarray(y[rows]), classes=range(10)
            )

    assert isinstance(clf._sums, torch.Tensor)
    X_t = torch.asarray(X)
    _check_same_as_numpy(clf, expected, X, X_t, "torch", X_t.device)


def test_torch_string_labels(digits):
    """Check that string labels with tensor images come back as NumPy strings."""
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    expected = NearestMeanImageClassifier().fit(X, names)

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier().fit(torch.asarray(X), names)
        predicted = clf.predict(torch.asarray(X))

    assert_array_equal(predicted, expected.predict(X))


def test_torch_without_dispatch_is_converted_to_numpy(digits):
    """Check that without array API dispatch tensors are read as NumPy arrays."""
    X, y = digits
    expected = NearestMeanImageClassifier().fit(X, y)

    clf = NearestMeanImageClassifier().fit(torch.asarray(X), torch.asarray(y))

    assert isinstance(clf.centroids_, np.ndarray)
    assert_array_equal(clf.predict(torch.asarray(X)), expected.predict(X))


def test_array_api_namespace_mismatch_raises(digits):
    """Check that predicting on another namespace than fit's raises clearly."""
    X, y = digits
    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier().fit(torch.asarray(X), torch.asarray(y))
        with pytest.raises(ValueError, match="must use the same namespace"):
            clf.predict(X)
        numpy_fitted = NearestMeanImageClassifier().fit(X, y)
        with pytest.raises(
            ValueError, match=r"fitted on numpy \(device None\), got torch"
        ):
            numpy_fitted.predict_proba(torch.asarray(X))


@pytest.mark.parametrize(
    "check",
    [
        partial(
            estimator_checks.check_array_api_input_and_values,
            array_namespace="torch",
            device_name="cpu",
            dtype_name=dtype,
            check_sample_weight=True,
        )
        for dtype in ["float32", "float64"]
    ]
    + [
        partial(
            estimator_checks.check_array_api_input_and_values,
            array_namespace="array_api_strict",
            device_name=device,
            dtype_name=dtype,
            check_sample_weight=True,
        )
        for device, dtype in [("CPU_DEVICE", "float64"), ("device1", "float32")]
    ],
    ids=["torch-float32", "torch-float64", "strict-cpu-float64", "strict-device1"],
)
@pytest.mark.parametrize("centroid", ["mean", "median"])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_sklearn_array_api_checks_with_values(check, norm, centroid):
    """Check scikit-learn's array API check, values included, on our estimator."""
    check(
        "NearestMeanImageClassifier",
        NearestMeanImageClassifier(norm=norm, centroid=centroid),
    )


@needs_cuda
@pytest.mark.parametrize("centroid", ["mean", "median"])
@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_torch_cuda_matches_numpy(digits, norm, centroid):
    """Check that CUDA tensors are fitted and scored on the GPU, like NumPy."""
    X, y = digits
    expected = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    X_t = torch.asarray(X, device="cuda")

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(
            X_t, torch.asarray(y, device="cuda")
        )

    assert clf.centroids_.device.type == "cuda"
    _check_same_as_numpy(clf, expected, X, X_t, "torch", X_t.device)


@pytest.mark.parametrize("dispatch", [False, True])
@pytest.mark.parametrize("method", ["fit", "partial_fit", *METHODS, "score"])
def test_torch_unflattened_images_raise_a_clear_error(digits, method, dispatch):
    """Check that a 3-D tensor names its shape and how to flatten it."""
    X, y = digits
    images = torch.zeros((100, 28, 28))
    y_t = torch.asarray(y[:100])
    match = (
        r"Expected a 2-D array of flattened images, got shape \(100, 28, 28\); "
        r"flatten it with X\.reshape\(len\(X\), -1\)\."
    )
    with config_context(array_api_dispatch=dispatch):
        clf = NearestMeanImageClassifier()
        if method not in ("fit", "partial_fit"):
            clf.fit(torch.asarray(X[:100]), y_t)
        with pytest.raises(ValueError, match=match):
            if method == "fit":
                clf.fit(images, y_t)
            elif method == "partial_fit":
                clf.partial_fit(images, y_t, classes=np.unique(y))
            elif method == "score":
                clf.score(images, y_t)
            else:
                getattr(clf, method)(images)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize(
    ("exponent", "dtype"),
    [(70, np.float32), (-120, np.float32), (700, np.float64), (-1000, np.float64)],
)
def test_torch_huge_and_tiny_values_classify_like_numpy(norm, exponent, dtype):
    """Check that tensors too large or small to square are fitted in scaled units."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(dtype)
    base = NearestMeanImageClassifier(norm=norm).fit(X, y)
    Xs = torch.asarray(np.ldexp(X, exponent).astype(dtype))

    with config_context(array_api_dispatch=True):
        clf = NearestMeanImageClassifier(norm=norm).fit(Xs, torch.asarray(y))
        predicted = _to_numpy(clf.predict(Xs))
        proba = _to_numpy(clf.predict_proba(Xs))
        D = _to_numpy(clf.transform(Xs))

    assert clf.scale_ == pytest.approx(np.ldexp(base.scale_, exponent), rel=1e-6)
    assert_array_equal(predicted, base.predict(X))
    assert np.isfinite(proba).all()
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_allclose(proba, base.predict_proba(X), atol=1e-4)
    expected = np.ldexp(base.transform(X).astype(np.float64), exponent)
    assert_allclose(D, expected, rtol=1e-5)


def test_torch_is_not_imported_for_numpy_input():
    """Check that NumPy input never imports torch or the array API packages."""
    code = textwrap.dedent(
        """
        import json, os, sys
        os.environ["SCIPY_ARRAY_API"] = "1"
        import numpy as np
        import sklearn
        from sk_meanclf import NearestMeanImageClassifier
        X = np.random.default_rng(0).random((40, 6))
        y = np.arange(40) % 3
        for dispatch in [False, True]:
            with sklearn.config_context(array_api_dispatch=dispatch):
                for centroid in ["mean", "median"]:
                    clf = NearestMeanImageClassifier(centroid=centroid).fit(X, y)
                    clf.predict_proba(X), clf.transform(X), clf.score(X, y)
                clf = NearestMeanImageClassifier().partial_fit(X, y, classes=[0, 1, 2])
                clf.decision_function(X)
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
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
    loaded = set(json.loads(out.stdout))
    assert {"numpy", "sklearn", "sk_meanclf"} <= loaded
    optional = {"torch", "array_api_compat", "array_api_strict", "dask", "distributed"}
    assert loaded.isdisjoint(optional)
