"""Run scikit-learn's estimator checks on every norm and centroid."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_meanclf import NearestMeanImageClassifier

ESTIMATORS = [
    NearestMeanImageClassifier(norm=norm, centroid=centroid)
    for norm in ("l1", "l2")
    for centroid in ("mean", "median")
] + [NearestMeanImageClassifier(priors="empirical")]


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


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    """Check that the estimator passes scikit-learn's estimator checks."""
    if _cuda_missing(check):
        pytest.skip("torch is built with CUDA but no CUDA device is available.")
    check(estimator)
