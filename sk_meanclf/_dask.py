"""Dask arrays: class summaries reduced blockwise, predictions mapped blockwise.

Every function runs on whatever dask scheduler is active, a
``distributed.Client`` included. Fitting reduces each block of rows to per-class
summaries on the worker that holds it and merges them in a tree, so only arrays
of shape (n_classes, n_features) travel; prediction applies the fitted
estimator to each block and returns a lazy dask array.
"""

import sys

import numpy as np
from sklearn.utils.validation import check_array, check_is_fitted

from sk_meanclf import _summaries

# Largest column strip, in bytes, that one task holds for an exact median.
_MEDIAN_STRIP_BYTES = 128 * 2**20


def is_dask_array(obj):
    """Tell whether `obj` is a dask array, without importing dask.

    A dask array can only exist once ``dask.array`` has been imported, so
    looking in :data:`sys.modules` first keeps dask an optional dependency.

    Parameters
    ----------
    obj : object
        Anything passed as `X`.

    Returns
    -------
    bool
        True when `obj` is a :class:`dask.array.Array`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._dask import is_dask_array
    >>> is_dask_array(np.zeros((2, 3)))
    False
    """
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(obj, module.Array)


def _check_dask_inputs(X, y=None, sample_weight=None):
    """Check shapes, chunk `X` by rows only and align `y` and the weights to it."""
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(
            "Expected a 2-D dask array `X` of shape (n_samples, n_features), got "
            f"a {X.ndim}-D array of shape {X.shape}."
        )
    if np.isnan(X.shape[0]):
        raise ValueError(
            "Expected a dask array `X` with known chunk sizes, got unknown row "
            "chunks; call `X.compute_chunk_sizes()` first."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"Expected a numeric dask array `X`, got dtype {X.dtype}.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    aligned = []
    for name, values in (("y", y), ("sample_weight", sample_weight)):
        if values is None:
            aligned.append(None)
            continue
        if not is_dask_array(values):
            values = np.asarray(values)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values.reshape(-1)
        if values.ndim != 1 or values.shape[0] != X.shape[0]:
            raise ValueError(
                f"Expected `{name}` of shape ({X.shape[0]},), one value per row of "
                f"`X`, got shape {values.shape}."
            )
        if is_dask_array(values):
            values = values.rechunk((X.chunks[0],))
        else:
            values = da.from_array(values, chunks=(X.chunks[0],))
        aligned.append(values)
    return X, aligned[0], aligned[1]


def _check_sample_weight(sample_weight):
    """Check dask weights as the NumPy path does, in one pass over them."""
    import dask
    import dask.array as da

    if sample_weight is None:
        return None
    sample_weight = sample_weight.astype(np.float64)
    low, high = _summaries.WEIGHT_RANGE
    outside = (sample_weight > 0) & ((sample_weight < low) | (sample_weight > high))
    finite, smallest, total, any_outside = dask.compute(
        da.isfinite(sample_weight).all(),
        sample_weight.min(),
        sample_weight.sum(),
        outside.any(),
    )
    if not finite:
        raise ValueError("Expected finite `sample_weight`, got NaN or inf.")
    if smallest < 0:
        index = int(da.argmax(sample_weight < 0).compute())
        raise ValueError(
            f"Expected non-negative `sample_weight`, got {smallest.item()!r} at "
            f"index {index}."
        )
    if total == 0:
        raise ValueError("Expected `sample_weight` with a positive sum, got all zeros.")
    if any_outside:
        index = int(da.argmax(outside).compute())
        raise _summaries.out_of_range_weight(
            sample_weight[index].compute().item(), index
        )
    return sample_weight


def _pack(summaries):
    sums, weights, scatter, exponent = summaries
    exponents = np.full((weights.shape[0], 1), float(exponent))
    return np.concatenate([sums, weights[:, None], scatter[:, None], exponents], axis=1)


def _unpack(packed):
    return packed[:, :-3], packed[:, -3], packed[:, -2], int(packed[0, -1])


def _block_summaries(X, y, sample_weight, classes):
    """Return one block's class summaries, packed as (1, n_classes, n_features + 3).

    The block is checked as `validate_data` checks an in-memory `X`, and reduced
    by the same function as the in-memory fit.
    """
    from sk_meanclf._classifier import _class_summaries

    X = check_array(X, dtype="numeric", ensure_min_samples=0)
    y_index = _summaries.encode_labels(y, classes)
    summaries = _class_summaries(X, y_index, classes.shape[0], sample_weight)
    return _pack(summaries)[np.newaxis]


def _identity(part, axis=None, keepdims=False):
    return part


def _merge_blocks(parts, axis=None, keepdims=False):
    """Merge packed summaries along the first axis (a dask reduction step)."""
    total = _unpack(parts[0])
    for part in parts[1:]:
        total = _summaries.merge_summaries(total, _unpack(part))
    packed = _pack(total)
    return packed[np.newaxis] if keepdims else packed


def class_summaries(X, y, classes, sample_weight=None):
    """Reduce dask `X` to per-class weighted sums, weights and scatter.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Samples, chunked along the rows only.
    y : dask.array.Array of shape (n_samples,)
        Labels, chunked like the rows of `X`; all of them in `classes`.
    classes : ndarray of shape (n_classes,)
        Sorted classes.
    sample_weight : dask.array.Array of shape (n_samples,), default=None
        Checked weights, chunked like the rows of `X`.

    Returns
    -------
    sums : ndarray of shape (n_classes, n_features), dtype=float64
    weights : ndarray of shape (n_classes,), dtype=float64
    scatter : ndarray of shape (n_classes,), dtype=float64
    """
    import dask.array as da

    n_classes, n_features = classes.shape[0], X.shape[1]
    weight_args = (None, None) if sample_weight is None else (sample_weight, "i")
    blocks = da.blockwise(
        _block_summaries,
        "ijk",
        X,
        "ij",
        y,
        "i",
        *weight_args,
        classes=classes,
        new_axes={"k": n_features + 3},
        adjust_chunks={"i": 1, "j": n_classes},
        dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64),
    )
    packed = da.reduction(
        blocks,
        _identity,
        _merge_blocks,
        combine=_merge_blocks,
        axis=0,
        keepdims=False,
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
        name="sk-meanclf-class-summaries",
    )
    return _unpack(packed.compute())


def _strip_medians(X, y, sample_weight, classes, weights):
    """Return the class medians of a strip of whole columns."""
    from sk_meanclf._classifier import _class_medians

    X = check_array(X, dtype="numeric", ensure_min_samples=0)
    y_index = _summaries.encode_labels(y, classes)
    return _class_medians(X, y_index, weights, sample_weight)


def class_medians(X, y, classes, weights, sample_weight=None):
    """Return the exact weighted median of each class and feature of dask `X`.

    A median needs every value of a column at once, so `X` is rechunked into
    strips of whole columns of at most about 128 MiB each (one column when a
    column alone is larger) and each strip is reduced on a worker. The rows move
    between workers but are never gathered in one place.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Samples.
    y : dask.array.Array of shape (n_samples,)
        Labels, all in `classes`.
    classes : ndarray of shape (n_classes,)
        Sorted classes.
    weights : ndarray of shape (n_classes,)
        Summed weight of each class; a class of zero weight has a NaN median.
    sample_weight : dask.array.Array of shape (n_samples,), default=None
        Checked weights.

    Returns
    -------
    medians : ndarray of shape (n_classes, n_features), dtype=float64
    """
    import dask.array as da

    n_samples, n_features = X.shape
    width = int(_MEDIAN_STRIP_BYTES // max(1, 8 * n_samples))
    width = min(n_features, max(1, width))
    X = X.rechunk((n_samples, width))
    y = y.rechunk(n_samples)
    weight_args = (None, None)
    if sample_weight is not None:
        weight_args = (sample_weight.rechunk(n_samples), "i")
    medians = da.blockwise(
        _strip_medians,
        "kj",
        X,
        "ij",
        y,
        "i",
        *weight_args,
        classes=classes,
        weights=weights,
        new_axes={"k": classes.shape[0]},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )
    return medians.compute()


def fit(estimator, X, y, sample_weight=None):
    """Fit `estimator` on dask `X`, as its `fit` does on an in-memory array.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator to fit; its parameters are already checked.
    X : dask.array.Array of shape (n_samples, n_features)
        Training samples.
    y : array-like or dask.array.Array of shape (n_samples,)
        Labels.
    sample_weight : array-like or dask.array.Array of shape (n_samples,), \
            default=None
        Non-negative weights.

    Returns
    -------
    estimator : NearestMeanImageClassifier
        The fitted estimator.
    """
    import dask.array as da

    from sk_meanclf._classifier import _work_dtype

    X, y, sample_weight = _check_dask_inputs(X, y, sample_weight)
    classes = np.unique(da.unique(y).compute())
    _summaries.check_classes(classes)
    sample_weight = _check_sample_weight(sample_weight)

    summaries = class_summaries(X, y, classes, sample_weight)
    medians = None
    if estimator.centroid == "median":
        medians = class_medians(X, y, classes, summaries[1], sample_weight)

    _summaries.check_n_features(estimator, X.shape[1], reset=True)
    _summaries.store(estimator, classes, summaries, _work_dtype(X.dtype), True, medians)
    return estimator


def partial_fit(estimator, X, y, classes=None, sample_weight=None):
    """Update `estimator` with dask `X`, as its `partial_fit` does in memory.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator to update; its parameters are already checked.
    X : dask.array.Array of shape (n_samples, n_features)
        One batch of training samples.
    y : array-like or dask.array.Array of shape (n_samples,)
        Labels of the batch, all in `classes`.
    classes : array-like of shape (n_classes,), default=None
        Every class of the stream; required on the first call.
    sample_weight : array-like or dask.array.Array of shape (n_samples,), \
            default=None
        Non-negative weights.

    Returns
    -------
    estimator : NearestMeanImageClassifier
        The updated estimator.
    """
    from sk_meanclf._classifier import _work_dtype

    classes, first_call = _summaries.partial_fit_classes(estimator, classes)
    X, y, sample_weight = _check_dask_inputs(X, y, sample_weight)
    _summaries.check_n_features(estimator, X.shape[1], reset=first_call)
    sample_weight = _check_sample_weight(sample_weight)

    summaries = class_summaries(X, y, classes, sample_weight)
    _summaries.store(estimator, classes, summaries, _work_dtype(X.dtype), first_call)
    return estimator


def _call(X, estimator, method):
    return getattr(estimator, method)(X)


def _map(estimator, method, X, n_columns, dtype):
    """Apply `method` of the fitted `estimator` to every block of rows of `X`."""
    check_is_fitted(estimator)
    X, _, _ = _check_dask_inputs(X)
    _summaries.check_n_features(estimator, X.shape[1], reset=False)
    if n_columns is None:
        return X.map_blocks(
            _call,
            estimator=estimator,
            method=method,
            drop_axis=1,
            dtype=dtype,
            meta=np.empty((0,), dtype=dtype),
        )
    return X.map_blocks(
        _call,
        estimator=estimator,
        method=method,
        chunks=(X.chunks[0], (n_columns,)),
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
    )


def predict(estimator, X):
    """Return the lazy predicted labels of dask `X`, one block at a time."""
    return _map(estimator, "predict", X, None, estimator.classes_.dtype)


def transform(estimator, X):
    """Return the lazy distances of dask `X` to the centroids."""
    from sk_meanclf._classifier import _work_dtype

    n_classes = estimator.classes_.shape[0]
    return _map(estimator, "transform", X, n_classes, _work_dtype(X.dtype))


def decision_function(estimator, X):
    """Return the lazy decision function of dask `X`."""
    n_classes = estimator.classes_.shape[0]
    n_columns = None if n_classes == 2 else n_classes
    return _map(estimator, "decision_function", X, n_columns, np.float64)


def predict_proba(estimator, X):
    """Return the lazy class probabilities of dask `X`."""
    n_classes = estimator.classes_.shape[0]
    return _map(estimator, "predict_proba", X, n_classes, np.float64)


def predict_log_proba(estimator, X):
    """Return the lazy logarithms of the class probabilities of dask `X`."""
    n_classes = estimator.classes_.shape[0]
    return _map(estimator, "predict_log_proba", X, n_classes, np.float64)


def score(estimator, X, y, sample_weight=None):
    """Return the weighted accuracy on dask `X`, reduced blockwise.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        A fitted estimator.
    X : dask.array.Array of shape (n_samples, n_features)
        Samples.
    y : array-like or dask.array.Array of shape (n_samples,)
        True labels.
    sample_weight : array-like or dask.array.Array of shape (n_samples,), \
            default=None
        Weights.

    Returns
    -------
    score : float
    """
    import dask

    X, y, sample_weight = _check_dask_inputs(X, y, sample_weight)
    correct = predict(estimator, X) == y
    if sample_weight is None:
        return float(correct.mean().compute())
    hits, total = dask.compute((correct * sample_weight).sum(), sample_weight.sum())
    return float(hits / total)
