"""Numeric kernels behind the classifier: class sums, class medians, distances."""

import numpy as np


def class_sums(X, y_index, n_classes, sample_weight=None):
    """Return the weighted per-class sums of the rows of `X` and the class weights.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows to accumulate.
    y_index : ndarray of shape (n_samples,), dtype=intp
        Class index of each row, in ``range(n_classes)``.
    n_classes : int
        Number of classes.
    sample_weight : ndarray of shape (n_samples,), default=None
        Weight of each row; every row weighs 1 when None.

    Returns
    -------
    sums : ndarray of shape (n_classes, n_features), dtype=float64
        Sum of the weighted rows of each class, accumulated in float64.
    weights : ndarray of shape (n_classes,), dtype=float64
        Summed weight of each class.
    """
    sums = np.zeros((n_classes, X.shape[1]), dtype=np.float64)
    weights = np.zeros(n_classes, dtype=np.float64)
    for k in range(n_classes):
        mask = y_index == k
        if sample_weight is None:
            sums[k] = X[mask].sum(axis=0, dtype=np.float64)
            weights[k] = np.count_nonzero(mask)
        else:
            w = sample_weight[mask].astype(np.float64)
            sums[k] = w @ X[mask].astype(np.float64)
            weights[k] = w.sum()
    return sums, weights


def weighted_median(X, sample_weight=None):
    """Return the column-wise weighted median of `X`.

    With unit weights this equals :func:`numpy.median`: where the cumulative
    weight reaches exactly half the total, the two middle values are averaged.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Values, one column per feature.
    sample_weight : ndarray of shape (n_samples,), default=None
        Non-negative weight of each row; every row weighs 1 when None.

    Returns
    -------
    median : ndarray of shape (n_features,), dtype=float64
    """
    if sample_weight is None:
        return np.median(X, axis=0).astype(np.float64)
    order = np.argsort(X, axis=0, kind="stable")
    values = np.take_along_axis(X, order, axis=0).astype(np.float64)
    cumulative = np.cumsum(sample_weight[order], axis=0, dtype=np.float64)
    half = cumulative[-1] / 2.0
    columns = np.arange(X.shape[1])
    lower = np.argmax(cumulative >= half, axis=0)
    upper = np.minimum(lower + 1, X.shape[0] - 1)
    # Zero-weight rows after `lower` must not take part in the average.
    while True:
        stuck = (upper < X.shape[0] - 1) & (sample_weight[order[upper, columns]] == 0)
        if not stuck.any():
            break
        upper = np.where(stuck, upper + 1, upper)
    at_half = np.isclose(cumulative[lower, columns], half, rtol=1e-12, atol=0.0)
    return np.where(
        at_half,
        (values[lower, columns] + values[upper, columns]) / 2.0,
        values[lower, columns],
    )


def distances(X, centroids, norm):
    """Return the per-feature averaged distances of rows of `X` to `centroids`.

    ``l1`` is the mean absolute error and ``l2`` the root mean squared error,
    as in chapter 4 of the fastai book.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float32 or float64
        One chunk of rows; the caller bounds its size.
    centroids : ndarray of shape (n_classes, n_features), same dtype as `X`
        Class centroids.
    norm : {"l1", "l2"}
        Distance to compute.

    Returns
    -------
    D : ndarray of shape (n_samples, n_classes), same dtype as `X`
    """
    n_features = X.shape[1]
    out = np.empty((X.shape[0], centroids.shape[0]), dtype=X.dtype)
    for k, c in enumerate(centroids):
        diff = X - c
        if norm == "l1":
            np.abs(diff, out=diff)
            out[:, k] = diff.sum(axis=1) / n_features
        else:
            out[:, k] = np.sqrt(np.einsum("ij,ij->i", diff, diff) / n_features)
    return out
