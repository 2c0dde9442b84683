"""Run scikit-learn's estimator checks on every norm and centroid."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_meanclf import NearestMeanImageClassifier

ESTIMATORS = [
    NearestMeanImageClassifier(norm=norm, centroid=centroid)
    for norm in ("l1", "l2")
    for centroid in ("mean", "median")
] + [NearestMeanImageClassifier(priors="empirical")]


# partial_fit raises a ValueError for centroid="median" by design, and these
# checks call it.
_MEDIAN_PARTIAL_FIT = "partial_fit rejects centroid='median': no streamable median."


def _expected_failed_checks(estimator):
    if estimator.centroid != "median":
        return {}
    return {
        "check_fit_score_takes_y": _MEDIAN_PARTIAL_FIT,
        "check_n_features_in_after_fitting": _MEDIAN_PARTIAL_FIT,
        "check_estimators_partial_fit_n_features": _MEDIAN_PARTIAL_FIT,
    }


def _cuda_missing(check):
    """Return whether `check` runs on a CUDA device that this machine lacks.

    scikit-learn's array API checks ask for torch's CUDA device whenever torch was
    built with CUDA, even on machines without a GPU or driver.
    """
    keywords = getattr(check, "keywords", {})
    devices = {keywords.get("device_name")}
    devices.update(getattr(value, "device", None) for value in keywords.values())
    if "cuda" not in devices:
        return False
    import torch

    return not torch.cuda.is_available()


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    """Check that the estimator passes scikit-learn's estimator checks."""
    if _cuda_missing(check):
        pytest.skip("torch is built with CUDA but no CUDA device is available.")
    check(estimator)
