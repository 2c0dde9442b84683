"""Class summaries computed from dask or array API input, stored in the classifier.

The NumPy path of :class:`~sk_meanclf.NearestMeanImageClassifier` keeps, per
class, the weighted sum of the rows, their summed weight and their scatter (the
weighted sum of squared differences to the class mean). The dask and array API
paths compute the same summaries their own way; the helpers here check the
arguments and store the summaries exactly as the NumPy path does.
"""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.multiclass import unique_labels as _unique_labels

# Positive sample weights must lie in this range: they multiply sums of squared
# pixel values, which must stay far inside the float64 range (and float32's, on
# array API devices without float64). A common factor of all weights changes
# nothing but `class_count_`, so any weights can be brought into it.
WEIGHT_RANGE = (2.0**-100, 2.0**100)


def out_of_range_weight(value, index):
    """Return the ValueError for a positive sample weight outside `WEIGHT_RANGE`."""
    low, high = WEIGHT_RANGE
    return ValueError(
        f"Expected positive `sample_weight` values between {low:.3g} and "
        f"{high:.3g}, got {value!r} at index {index}; multiplying every weight by "
        "one factor changes only `class_count_`."
    )


def check_classes(y_classes):
    """Check the distinct labels of a fit: classification targets, two or more.

    Parameters
    ----------
    y_classes : ndarray of shape (n_classes,)
        The sorted distinct labels of `y`.
    """
    check_classification_targets(y_classes)
    if y_classes.shape[0] < 2:
        raise ValueError(
            "Expected at least two classes in `y`, got 1 class: "
            f"{y_classes.tolist()[0]!r}."
        )


def partial_fit_classes(estimator, classes):
    """Return the classes of a `partial_fit` call and whether it is the first.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator being updated.
    classes : array-like of shape (n_classes,) or None
        The `classes` argument of `partial_fit`.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        Sorted classes.
    first_call : bool
        Whether the estimator holds no summaries yet.
    """
    first_call = not hasattr(estimator, "_sums")
    if classes is None:
        if first_call:
            raise ValueError(
                "Expected `classes` on the first call to partial_fit, got None."
            )
        return estimator.classes_, first_call
    classes = _unique_labels(np.asarray(classes))
    if classes.shape[0] < 2:
        raise ValueError(
            f"Expected at least two classes in `classes`, got {classes.tolist()!r}."
        )
    if not first_call and not np.array_equal(classes, estimator.classes_):
        raise ValueError(
            f"Expected `classes` to be {estimator.classes_.tolist()!r} as on the "
            f"first call to partial_fit, got {classes.tolist()!r}."
        )
    return classes, first_call


def encode_labels(y, classes):
    """Return the index in the sorted `classes` of each label of `y`.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels.
    classes : ndarray of shape (n_classes,)
        Sorted classes.

    Returns
    -------
    y_index : ndarray of shape (n_samples,), dtype=intp
    """
    index = np.searchsorted(classes, y)
    unknown = classes[np.minimum(index, classes.shape[0] - 1)] != y
    if np.any(unknown):
        raise ValueError(
            f"Expected labels in `y` among `classes` {classes.tolist()!r}, got "
            f"{np.unique(y[unknown]).tolist()!r}."
        )
    return index


def check_n_features(estimator, n_features, reset):
    """Set `n_features_in_` on reset, else check `n_features` against it."""
    if reset:
        estimator.n_features_in_ = n_features
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is "
            f"expecting {estimator.n_features_in_} features as input."
        )


def merge_summaries(a, b):
    """Return the summaries of two disjoint sets of rows taken together.

    Both are first brought to the larger of their two units (an exact division
    by a power of two). Sums and weights add up; scatters add up plus, for each
    class present in both, the weighted squared gap between the two means (the
    pairwise update of Chan, Golub and LeVeque).

    Parameters
    ----------
    a, b : tuple of (sums, weights, scatter, exponent)
        Arrays of shapes (n_classes, n_features), (n_classes,), (n_classes,),
        the sums in units of ``2**exponent`` and the scatter in units of
        ``4**exponent``.

    Returns
    -------
    tuple of (sums, weights, scatter, exponent)
    """
    exponent = max(a[3], b[3])
    sums_a, weights_a, scatter_a = _in_units(a, exponent)
    sums_b, weights_b, scatter_b = _in_units(b, exponent)
    total = weights_a + weights_b
    both = (weights_a > 0) & (weights_b > 0)
    scatter = scatter_a + scatter_b
    if both.any():
        gap = (
            sums_a[both] / weights_a[both, None] - sums_b[both] / weights_b[both, None]
        )
        scatter[both] += (
            np.einsum("ij,ij->i", gap, gap)
            * weights_a[both]
            * weights_b[both]
            / total[both]
        )
    return sums_a + sums_b, total, scatter, exponent


def _in_units(summaries, exponent):
    """Return sums, weights and scatter expressed in units of ``2**exponent``."""
    sums, weights, scatter, own = summaries
    if own == exponent:
        return sums, weights, scatter
    shift = int(own) - int(exponent)
    return np.ldexp(sums, shift), weights, np.ldexp(scatter, 2 * shift)


def store(estimator, classes, summaries, dtype, first_call=True, medians=None):
    """Store the summaries in `estimator` and derive its fitted attributes.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator being fitted or updated.
    classes : ndarray of shape (n_classes,)
        Sorted classes.
    summaries : tuple of (sums, weights, scatter, exponent)
        NumPy float64 summaries of the new rows, in units of ``2**exponent``.
    dtype : dtype
        Working dtype of the rows (float32 or float64).
    first_call : bool, default=True
        Replace the state (`fit`, first `partial_fit`) or merge into it.
    medians : ndarray of shape (n_classes, n_features), default=None
        Class medians, for ``centroid="median"``.
    """
    if first_call:
        estimator.classes_ = classes
        (
            estimator._sums,
            estimator._weights,
            estimator._scatter,
            estimator._exponent,
        ) = summaries
        estimator._dtype = np.dtype(dtype)
    else:
        estimator._merge(summaries)
    estimator._finalize(medians)
