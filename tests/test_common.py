"""Run scikit-learn's estimator checks on every norm and centroid."""

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


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    """Check that the estimator passes scikit-learn's estimator checks."""
    check(estimator)
