"""Nearest class-mean classifier on flattened images, with l1 or l2 distances."""

import numbers
import reprlib

import numpy as np
from sklearn import get_config
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sk_meanclf import _array_api, _dask, _kernels, _summaries

# Upper bound, in MiB, on the temporaries of one row chunk, whatever
# ``sklearn.get_config()["working_memory"]`` says (it defaults to 1 GiB).
_MAX_WORKING_MEMORY_MIB = 32
# MiB of that bound left to the kernels' scratch arrays, whose size does not
# depend on the chunk: the float64 block that settles near ties (8 MiB) and the
# block of the numpy l1 kernel (1 MiB).
_KERNEL_SCRATCH_MIB = 9
# Bytes per row and class of the per-chunk results: distances, bounds and
# scores in the working dtype, likelihoods and probabilities in float64.
_BYTES_PER_CLASS = 128

_NORMS = ("l1", "l2")
_CENTROIDS = ("mean", "median")
_PRIORS = ("uniform", "empirical")


def _work_dtype(dtype):
    """Return the floating dtype in which distances to centroids are computed."""
    if dtype in (np.float16, np.float32):
        # float16 would overflow on squared differences above 256.
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _chunk_n_rows(n_samples, n_features, n_classes, dtype):
    """Return how many rows one chunk of prediction or fitting may hold.

    A row is budgeted as what the kernels allocate per row: one copy of the row
    in `dtype` (the cast of integer input) and ``_BYTES_PER_CLASS`` bytes per
    class for the distances, bounds, likelihoods and probabilities. The
    kernels never build an ``(n_rows, n_classes, n_features)`` array; their
    fixed scratch arrays are set aside from the budget.

    Parameters
    ----------
    n_samples : int
        Number of rows to process; no chunk is larger.
    n_features : int
        Number of features of a row.
    n_classes : int
        Number of class centroids.
    dtype : dtype
        Floating dtype of the computation.

    Returns
    -------
    n_rows : int
        Rows per chunk, at least 1.
    """
    itemsize = np.dtype(dtype).itemsize
    row_bytes = itemsize * n_features + _BYTES_PER_CLASS * n_classes
    working_memory = min(get_config()["working_memory"], _MAX_WORKING_MEMORY_MIB)
    # With the default setting, 23 MiB go to the rows; a smaller setting is
    # shared in the same proportion.
    working_memory *= 1 - _KERNEL_SCRATCH_MIB / _MAX_WORKING_MEMORY_MIB
    n_rows = int(working_memory * 2**20 // row_bytes)
    return max(1, min(n_rows, n_samples))


def _distances(X, centroids, norm):
    """Return the l1 (mean absolute) or l2 (root mean squared) distances.

    `X` is one chunk of rows in any numeric dtype; it is cast to the working
    dtype (float32 for float16 and float32 input, float64 otherwise) before any
    subtraction, so unsigned integers cannot wrap around. Rows whose float32
    distances overflow are computed again in float64, and rows whose float64
    squares overflow are computed on rescaled differences.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        One chunk of rows.
    centroids : ndarray of shape (n_classes, n_features)
        Class centroids, all finite; in float64 (as fitted), so that rows near
        a tie are settled against the exact centroids.
    norm : {"l1", "l2"}
        Distance to compute.

    Returns
    -------
    D : ndarray of shape (n_samples, n_classes)
        Distances in the working dtype of `X`, or in float64 when some float32
        rows overflowed; infinite only where a distance exceeds the float64
        range.
    """
    dtype = _work_dtype(X.dtype)
    Xw = X.astype(dtype, copy=False)
    D = _kernels.distances(Xw, centroids, norm)
    if np.isfinite(D).all():
        return D
    overflow = ~np.isfinite(D).all(axis=1)
    # A NaN or infinite value of a row makes its distances NaN or infinite.
    _check_all_finite(X[overflow])
    D = D.astype(np.float64)
    if dtype == np.float32:
        D[overflow] = _kernels.distances(
            Xw[overflow].astype(np.float64), centroids.astype(np.float64), norm
        )
        overflow[overflow] = ~np.isfinite(D[overflow]).all(axis=1)
    if overflow.any():
        # Squares of values above about 1e154 overflow even in float64.
        D[overflow] = _kernels._exact_distances(Xw[overflow], centroids, norm)
    return D


def _check_flat(X):
    """Raise a ValueError if `X` has three or more dimensions, as images do.

    Arrays, tensors and dask arrays are judged by their shape; nested lists by
    their first element, so that a 2-D list is not converted twice.

    Parameters
    ----------
    X : object
        Anything passed as `X`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._classifier import _check_flat
    >>> _check_flat(np.zeros((100, 784)))
    >>> _check_flat(np.zeros((100, 28, 28)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: Expected a 2-D array of flattened images, got shape (100, 28, 28);...
    """
    shape = getattr(X, "shape", None)
    if shape is None and _nested_three_deep(X):
        try:
            shape = np.shape(X)
        except ValueError:
            return
    if shape is None or len(shape) < 3:
        return
    shape = tuple(int(n) if n == n else n for n in shape)
    raise ValueError(
        f"Expected a 2-D array of flattened images, got shape {shape}; flatten it "
        "with X.reshape(len(X), -1)."
    )


def _nested_three_deep(X):
    """Tell whether a list or tuple `X` holds sequences of sequences."""
    first = X
    for _ in range(2):
        if not isinstance(first, (list, tuple)) or len(first) == 0:
            return False
        first = first[0]
    return isinstance(first, (list, tuple)) or getattr(first, "ndim", 0) > 0


def _backend(estimator, X, method):
    """Return the module computing `method` on a dask or array API `X`, or None.

    None means the NumPy path below; dask arrays go to `_dask`, and arrays of
    another namespace, with scikit-learn's ``array_api_dispatch`` on, go to
    `_array_api`. `X` of three or more dimensions raises a ValueError first.
    """
    _check_flat(X)
    if _dask.is_dask_array(X):
        return _dask
    if _array_api.uses_array_api(estimator, X, method):
        return _array_api
    return None


class NearestMeanImageClassifier(
    ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """Nearest class-mean classifier with per-pixel l1 or l2 distances.

    Each class is summarised by one centroid image, the mean of its training
    images, and a new image gets the label of the nearest centroid, as the
    mean 3 and the mean 7 of the fastai book classify handwritten digits.

    Parameters
    ----------
    norm : {"l1", "l2"}, default="l1"
        Distance between an image and a centroid: ``"l1"`` is the mean absolute
        difference over features, ``"l2"`` the root mean squared difference.
    centroid : {"mean", "median"}, default="mean"
        Centroid of each class: the weighted mean of its rows, or the weighted
        per-feature median (the point minimising the l1 distance).
    priors : {"uniform", "empirical"} or array-like of shape (n_classes,), \
            default="uniform"
        Class prior probabilities. ``"uniform"`` makes `predict` exactly the
        nearest centroid; ``"empirical"`` uses the class proportions of the
        training data (weighted); an array gives them in the order of
        `classes_` and must sum to 1.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    centroids_ : ndarray of shape (n_classes, n_features)
        Centroid of each class, in float32 when fitted on float32 or float16
        data and in float64 otherwise. The row of a class whose sample weights
        sum to zero is NaN.
    class_count_ : ndarray of shape (n_classes,)
        Summed sample weight of each class (its number of rows when unweighted).
    class_prior_ : ndarray of shape (n_classes,)
        Prior probability of each class.
    scale_ : float
        Scale of the probability model: the standard deviation of the isotropic
        Gaussian for ``norm="l2"``, the Laplace scale for ``norm="l1"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, defined only when `X` has feature
        names that are all strings.

    See Also
    --------
    sklearn.neighbors.NearestCentroid : Nearest centroid with Euclidean or
        Manhattan distances, without probabilities or streaming.

    Notes
    -----
    Distances are averaged over features, as in the book: the l1 distance of
    ``x`` to ``c`` is ``mean(abs(x - c))`` and the l2 distance is
    ``sqrt(mean((x - c) ** 2))``. They rank classes exactly as the sums of
    absolute or squared differences do. With ``norm="l1"`` the centroid stays
    the class mean and only the distance changes, whereas
    ``NearestCentroid(metric="manhattan")`` switches to the class median; set
    ``centroid="median"`` for that behaviour.

    Probabilities come from a model that matches the norm: an isotropic
    Gaussian around each centroid for l2 and a Laplace model for l1, both with
    one scale pooled over classes and features. The pooled within-class
    variance ``v`` around the class means gives ``scale_ = sqrt(v)`` for l2 and
    ``scale_ = sqrt(v / 2)`` for l1 (the Laplace scale with that variance), so
    the log-likelihood of a class is ``-n_features / 2 * (d / scale_) ** 2``
    or ``-n_features * d / scale_``, formed from the ratios ``d / scale_`` so
    that nothing overflows however large the data. The classes are compared
    through these values plus the log prior, which makes `predict`,
    `decision_function` and `predict_proba` agree: the predicted class is
    always the arg-max of `predict_proba`, and ties go to the class that comes
    first in `classes_`. When two probabilities round to the same float, the
    predicted one is raised by one unit in the last place. The variance is
    floored at ``1e-9`` times the total variance of the training data, so
    classes whose rows are all identical still get a positive scale. Far from
    every centroid the Gaussian model gives all the probability to the nearest
    class, whereas the Laplace log-odds tend to a finite limit.

    `partial_fit` keeps per-class weighted sums, weights and scatter, so
    batches give the same centroids and scale as one call to `fit`. A median
    cannot be updated from such summaries, so with ``centroid="median"`` the
    estimator has no `partial_fit` attribute: ``hasattr`` is False, calling it
    raises an AttributeError caused by one that says why, and dask-ml's
    ``Incremental`` refuses it with a ValueError. Fit it on all rows at once.
    Parameters changed with `set_params` after fitting take effect at the next
    `fit` or `partial_fit`; until then, predictions follow those of the last one.

    Computation dtypes: float16 and float32 input is compared with centroids in
    float32, any other numeric input (unsigned integers included) in float64;
    integers are converted before subtracting, so they never wrap around, and
    float32 distances that overflow are recomputed in float64. Class sums are
    always accumulated in float64. Values whose squares overflow or underflow
    (above about 1e19 or below 1e-9 in float32, beyond 1e150 or below 1e-150
    in float64) are divided by a power of two before squaring, which is
    exact, so any finite input gets finite centroids and scale and `predict`
    is still the nearest centroid; that costs extra passes over such data.
    `predict`, `transform`, `decision_function`
    and `predict_proba` process rows in chunks sized from scikit-learn's
    ``working_memory`` setting, capped at 32 MiB, so their temporaries stay
    bounded however many rows are passed.

    A dask array `X` is fitted block by block on the active dask scheduler
    (a ``distributed.Client`` included): each block is reduced to per-class
    summaries where it lives and only those travel, so `X` is never gathered.
    `predict`, `transform`, `decision_function`, `predict_proba` and
    `predict_log_proba` then return lazy dask arrays, and `score` reduces
    blockwise. With ``centroid="median"`` the rows are regrouped into strips of
    whole columns on the workers, which moves the data between them once.

    Torch tensors and other array API arrays are computed on their own device
    when scikit-learn's ``array_api_dispatch`` is on (it needs the environment
    variable ``SCIPY_ARRAY_API=1``); the fitted arrays then live on that device
    and must match the namespace of later input. Labels that are not numbers
    come back from `predict` as a NumPy array. Without dispatch, tensors are
    read as NumPy arrays.

    References
    ----------
    J. Howard and S. Gugger, "Deep Learning for Coders with fastai and PyTorch",
    O'Reilly, 2020, chapter 4, "Under the Hood: Training a Digit Classifier".

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf import NearestMeanImageClassifier
    >>> X = np.array([[0.0, 0.1], [0.2, 0.1], [0.9, 1.0], [1.0, 0.8]])
    >>> y = np.array([3, 3, 7, 7])
    >>> clf = NearestMeanImageClassifier().fit(X, y)
    >>> clf.centroids_
    array([[0.1 , 0.1 ],
           [0.95, 0.9 ]])
    >>> clf.predict([[0.1, 0.0], [0.8, 0.9]])
    array([3, 7])
    >>> clf.transform([[0.1, 0.0]]).round(3)
    array([[0.05 , 0.875]])
    >>> clf.predict_proba([[0.5, 0.5]]).round(3)
    array([[0.72, 0.28]])
    """

    def __init__(self, norm="l1", centroid="mean", priors="uniform"):
        self.norm = norm
        self.centroid = centroid
        self.priors = priors

    def fit(self, X, y, sample_weight=None):
        """Compute the class centroids and the scale of the probability model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training images, one flattened image per row.
        y : array-like of shape (n_samples,)
            Class labels; at least two distinct values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, not all zero, the positive ones
            between ``2**-100`` and ``2**100``; every row weighs 1 when None.

        Returns
        -------
        self : NearestMeanImageClassifier
            The fitted estimator.
        """
        return self._unchanged_on_error(self._fit, X, y, sample_weight)

    def _unchanged_on_error(self, method, *args):
        """Call `method`, restoring every attribute if it raises."""
        state = self.__dict__.copy()
        try:
            return method(*args)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(state)
            raise

    def _fit(self, X, y, sample_weight):
        self._check_params()
        backend = _backend(self, X, "fit")
        if backend is not None:
            return backend.fit(self, X, y, sample_weight)

        # Non-finite values are detected from the class sums, without a pass.
        X, y = validate_data(self, X, y, dtype="numeric", ensure_all_finite=False)
        classes, y_index = _encode_targets(y)
        sample_weight = _check_sample_weight(sample_weight, X.shape[0])

        summaries = _class_summaries(X, y_index, classes.shape[0], sample_weight)
        medians = None
        if self.centroid == "median":
            medians = _class_medians(X, y_index, summaries[1], sample_weight)

        _summaries.store(self, classes, summaries, _work_dtype(X.dtype), True, medians)
        return self

    def _has_partial_fit(self):
        """Return True with mean centroids; raise an AttributeError saying why not."""
        if self.centroid == "median":
            raise AttributeError(
                "partial_fit is available only with centroid='mean', got "
                f"centroid={self.centroid!r}: a median cannot be updated from "
                "per-batch summaries; call fit with all rows, or use "
                "centroid='mean'."
            )
        return True

    @available_if(_has_partial_fit)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the class centroids with one batch of training rows.

        Available only with ``centroid="mean"``: a median cannot be updated
        from per-batch summaries.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One batch of training images.
        y : array-like of shape (n_samples,)
            Class labels of the batch, all in `classes`.
        classes : array-like of shape (n_classes,), default=None
            Every class that any batch will contain. Required on the first call
            unless the estimator is fitted; later it must equal `classes_`.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, not all zero, the positive ones
            between ``2**-100`` and ``2**100``; every row weighs 1 when None.

        Returns
        -------
        self : NearestMeanImageClassifier
            The updated estimator.
        """
        return self._unchanged_on_error(self._partial_fit, X, y, classes, sample_weight)

    def _partial_fit(self, X, y, classes, sample_weight):
        self._check_params()
        backend = _backend(self, X, "partial_fit")
        if backend is not None:
            return backend.partial_fit(self, X, y, classes, sample_weight)

        classes, first_call = _summaries.partial_fit_classes(self, classes)
        X, y = validate_data(
            self, X, y, dtype="numeric", reset=first_call, ensure_all_finite=False
        )
        check_classification_targets(y)
        y_index = _summaries.encode_labels(y, classes)
        sample_weight = _check_sample_weight(sample_weight, X.shape[0])

        summaries = _class_summaries(X, y_index, classes.shape[0], sample_weight)
        _summaries.store(self, classes, summaries, _work_dtype(X.dtype), first_call)
        return self

    def predict(self, X):
        """Return the class of the nearest centroid (the most probable class).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to classify.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels, taken from `classes_`.
        """
        backend = _backend(self, X, "predict")
        if backend is not None:
            return backend.predict(self, X)
        X = self._validate_for_prediction(X)
        out = np.empty(X.shape[0], dtype=np.intp)
        for rows, _, jll in self._iter_chunks(X):
            out[rows] = np.argmax(jll, axis=1)
        return self.classes_[out]

    def predict_proba(self, X):
        """Return the posterior probability of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of `classes_`; each row sums to 1.
        """
        backend = _backend(self, X, "predict_proba")
        if backend is not None:
            return backend.predict_proba(self, X)
        X = self._validate_for_prediction(X)
        out = np.empty((X.shape[0], self.classes_.shape[0]), dtype=np.float64)
        for rows, _, jll in self._iter_chunks(X):
            out[rows] = _softmax(jll)
        return out

    def predict_log_proba(self, X):
        """Return the logarithm of the posterior probability of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to classify.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities in the order of `classes_`; finite where the
            probability underflows to zero, except for classes with zero prior
            or zero training weight (``-inf``).
        """
        backend = _backend(self, X, "predict_log_proba")
        if backend is not None:
            return backend.predict_log_proba(self, X)
        X = self._validate_for_prediction(X)
        out = np.empty((X.shape[0], self.classes_.shape[0]), dtype=np.float64)
        for rows, _, jll in self._iter_chunks(X):
            shifted = jll - jll.max(axis=1, keepdims=True)
            out[rows] = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return out

    def decision_function(self, X):
        """Return the confidence scores of the classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to classify.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            With two classes, the log-odds of ``classes_[1]`` against
            ``classes_[0]``: positive means ``classes_[1]`` is predicted. With
            more classes, the joint log-likelihood of each class shifted so
            that the largest score of each row is 0.
        """
        backend = _backend(self, X, "decision_function")
        if backend is not None:
            return backend.decision_function(self, X)
        X = self._validate_for_prediction(X)
        n_classes = self.classes_.shape[0]
        out = np.empty((X.shape[0], n_classes), dtype=np.float64)
        for rows, _, jll in self._iter_chunks(X):
            out[rows] = jll - jll.max(axis=1, keepdims=True)
        if n_classes == 2:
            # One of the two shifted scores is 0, so the difference is never NaN.
            return out[:, 1] - out[:, 0]
        return out

    def transform(self, X):
        """Return the distance of each row to each class centroid.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to compare with the centroids.

        Returns
        -------
        D : ndarray of shape (n_samples, n_classes)
            l1 or l2 distances (see `norm`), in float32 for float16 and float32
            input and in float64 otherwise; ``inf`` for a class whose sample
            weights sum to zero.
        """
        backend = _backend(self, X, "transform")
        if backend is not None:
            return backend.transform(self, X)
        X = self._validate_for_prediction(X)
        out = None
        for rows, D, _ in self._iter_chunks(X, likelihood=False):
            if out is None:
                out = np.empty((X.shape[0], D.shape[1]), dtype=_work_dtype(X.dtype))
            out[rows] = D
        if out is None:
            out = np.empty((0, self.classes_.shape[0]), dtype=_work_dtype(X.dtype))
        return out

    def score(self, X, y, sample_weight=None):
        """Return the mean accuracy on the given samples and labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Images to classify; a dask array is scored block by block.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample.

        Returns
        -------
        score : float
            Weighted fraction of correctly classified samples.
        """
        backend = _backend(self, X, "score")
        if backend is not None:
            return backend.score(self, X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    @property
    def _n_features_out(self):
        return self.classes_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _check_params(self):
        """Raise a ValueError for an unknown `norm`, `centroid` or `priors`."""
        if not isinstance(self.norm, str) or self.norm not in _NORMS:
            raise ValueError(f"Expected `norm` to be 'l1' or 'l2', got {self.norm!r}.")
        if not isinstance(self.centroid, str) or self.centroid not in _CENTROIDS:
            raise ValueError(
                f"Expected `centroid` to be 'mean' or 'median', got {self.centroid!r}."
            )
        if isinstance(self.priors, str):
            known = self.priors in _PRIORS
        else:
            try:
                known = np.asarray(self.priors, dtype=np.float64).ndim == 1
            except (TypeError, ValueError):
                known = False
        if not known:
            raise ValueError(
                "Expected `priors` to be 'uniform', 'empirical' or an array of "
                f"class probabilities, got {reprlib.repr(self.priors)}."
            )

    def _class_prior(self):
        """Return the prior of each class from `priors` and the class weights."""
        n_classes = self.classes_.shape[0]
        if isinstance(self.priors, str):
            if self.priors == "uniform":
                return np.full(n_classes, 1.0 / n_classes)
            return self._weights / self._weights.sum()
        priors = np.asarray(self.priors, dtype=np.float64)
        if priors.shape != (n_classes,):
            raise ValueError(
                f"Expected `priors` of shape ({n_classes},), one per class, got "
                f"shape {priors.shape}."
            )
        if not np.isfinite(priors).all() or (priors < 0).any():
            raise ValueError(
                f"Expected non-negative finite `priors`, got {priors.tolist()!r}."
            )
        if not np.isclose(priors.sum(), 1.0):
            raise ValueError(
                f"Expected `priors` to sum to 1, got a sum of {priors.sum().item()!r}."
            )
        return priors / priors.sum()

    def _merge(self, summaries):
        """Add the summaries of one more batch to the streaming state."""
        state = (self._sums, self._weights, self._scatter, self._exponent)
        merged = _summaries.merge_summaries(state, summaries)
        self._sums, self._weights, self._scatter, self._exponent = merged

    def _finalize(self, medians):
        """Derive the centroids, priors and scale from the streaming state.

        Parameters
        ----------
        medians : ndarray of shape (n_classes, n_features) or None
            Class medians to use as centroids; the class means when None.
        """
        seen = self._weights > 0
        n_features = self._sums.shape[1]
        # The summaries are kept in units of 2**_exponent (0 unless the data
        # were too large or too small to square), and so is the variance.
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self._sums / self._weights[:, None]
        if medians is None:
            centroids = np.ldexp(means, self._exponent)
        else:
            centroids = medians
        centroids = np.where(seen[:, None], centroids, np.nan)

        # Pooled within-class variance per feature, floored relative to the
        # total variance so that identical rows do not give a zero scale.
        total_weight = self._weights.sum()
        variance = self._scatter.sum() / (total_weight * n_features)
        grand_mean = self._sums.sum(axis=0) / total_weight
        spread = means[seen] - grand_mean
        between = np.einsum("ij,ij,i->", spread, spread, self._weights[seen])
        total_variance = variance + between / (total_weight * n_features)
        floor = 1e-9 * total_variance if total_variance > 0 else 1.0
        variance = max(variance, floor)

        class_prior = self._class_prior()
        with np.errstate(divide="ignore"):
            log_prior = np.where(seen, np.log(class_prior), -np.inf)
        if not np.isfinite(log_prior).any():
            raise ValueError(
                "Expected `priors` to give a positive probability to a class with "
                f"positive sample weight, got {class_prior.tolist()!r}."
            )

        self.centroids_ = centroids.astype(self._dtype)
        # The float64 centroids settle the rows near a tie exactly.
        self._exact_centroids = np.where(seen[:, None], centroids, 0.0)
        self.class_count_ = self._weights.copy()
        self.class_prior_ = class_prior
        # Standard deviation of the pooled variance, back in the units of X.
        sigma = float(np.ldexp(np.sqrt(variance), self._exponent))
        self.scale_ = sigma if self.norm == "l2" else sigma / np.sqrt(2.0)
        # Predictions follow the norm and priors of the last fit, not later
        # set_params calls, as `scale_` and `class_prior_` do.
        self._norm = self.norm
        self._uniform_prior = isinstance(self.priors, str) and self.priors == "uniform"
        self._sigma = sigma
        self._log_prior = log_prior
        self._seen = seen

    def _validate_for_prediction(self, X):
        check_is_fitted(self)
        # Non-finite values are detected from the distances of each chunk.
        return validate_data(
            self, X, dtype="numeric", reset=False, ensure_all_finite=False
        )

    def _iter_chunks(self, X, likelihood=True):
        """Yield ``(rows, distances, joint log-likelihood)`` over row chunks.

        The joint log-likelihood is float64, finite for every class with
        positive weight and prior, ``-inf`` for the others.
        """
        n_samples, n_features = X.shape
        dtype = _work_dtype(X.dtype)
        centroids = self._exact_centroids
        chunk = _chunk_n_rows(n_samples, n_features, centroids.shape[0], dtype)
        for start in range(0, n_samples, chunk):
            rows = slice(start, min(start + chunk, n_samples))
            # Overflowing rows are detected and recomputed by _distances.
            with np.errstate(over="ignore", invalid="ignore"):
                D = _distances(X[rows], centroids, self._norm)
            if not self._seen.all():
                D[:, ~self._seen] = np.inf
            if not likelihood:
                yield rows, D, None
                continue
            yield rows, D, self._joint_log_likelihood(D)

    def _joint_log_likelihood(self, D):
        """Return the joint log-likelihood of each class up to a row constant.

        The distances enter through their excess over the smallest distance of
        the row, ``D - D_min`` for l1 and ``(D - D_min) * (D + D_min)`` for l2.
        That excess is zero for the nearest class and positive for any farther
        one, so with uniform priors the arg-max is exactly the nearest centroid,
        and it stays finite far from every centroid.
        """
        n_features = self.n_features_in_
        D = D.astype(np.float64)
        eligible = np.isfinite(self._log_prior)
        every = eligible.all()
        D_min = _kernels.row_min(D if every else D[:, eligible])[:, None]
        # Distances enter through ratios to the scale, so that neither their
        # squares nor the variance overflow: for l2, the product of the excess
        # and of D + D_min, each divided by sigma / sqrt(n_features / 2).
        with np.errstate(over="ignore", invalid="ignore"):
            jll = D - D_min
            if self._norm == "l2":
                factor = np.sqrt(n_features / 2.0) / self._sigma
                jll *= -factor
                total = D + D_min
                total *= factor
                jll *= total
                # Only a zero excess (the nearest class) times an infinite
                # ratio gives NaN, and its ratio is 2 * D_min * factor.
                bounded = np.isfinite(2.0 * factor * D_min.max())
            else:
                factor = n_features / self.scale_
                jll *= -factor
                bounded = np.isfinite(factor) and np.isfinite(D_min).all()
        if not bounded:
            # The nearest class of a row farther than the float64 range from
            # it, in units of the scale, keeps a log-likelihood of 0.
            jll[np.isnan(jll)] = 0.0
        if not every:
            jll[:, ~eligible] = -np.inf
        if self._uniform_prior:
            # A constant log prior would only add rounding.
            return jll
        return jll + self._log_prior


def _softmax(jll):
    """Return row-normalised ``exp(jll)`` whose arg-max is that of `jll`."""
    shifted = jll - jll.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    proba /= proba.sum(axis=1, keepdims=True)
    best = np.argmax(jll, axis=1)
    # exp and the division can round a slightly smaller class to the same value
    # as the best one; lift the best by one unit in the last place so that the
    # arg-max of the probabilities is still the predicted class.
    rows = np.flatnonzero(np.argmax(proba, axis=1) != best)
    if rows.size:
        proba[rows, best[rows]] = np.nextafter(proba[rows, best[rows]], 2.0)
    return proba


def _encode_targets(y):
    """Check the labels of a fit; return the sorted classes and each row's index.

    Integer labels are always classification targets and, when they span a
    range no wider than the number of rows (digits, say), are counted with one
    ``bincount`` instead of the sort behind ``np.unique``; the result is the
    same.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Labels, as validated by ``validate_data``.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        The distinct labels, sorted, in the dtype of `y`.
    y_index : ndarray of shape (n_samples,), dtype=intp
        Index of each label in `classes`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._classifier import _encode_targets
    >>> _encode_targets(np.array([7, 3, 7, 9]))
    (array([3, 7, 9]), array([1, 0, 1, 2]))
    >>> _encode_targets(np.array(["b", "a", "b"]))
    (array(['a', 'b'], dtype='<U1'), array([1, 0, 1]))
    """
    classes = None
    if y.dtype.kind in "iu":
        low, high = int(y.min()), int(y.max())
        bounds = np.iinfo(np.intp)
        narrow = high - low < max(y.shape[0], 1024)
        if narrow and bounds.min <= low and high <= bounds.max:
            offset = np.subtract(y, low, dtype=np.intp)
            present = np.flatnonzero(np.bincount(offset))
            index = np.zeros(high - low + 1, dtype=np.intp)
            index[present] = np.arange(present.shape[0])
            classes = (present + low).astype(y.dtype)
            y_index = index[offset]
    else:
        check_classification_targets(y)
    if classes is None:
        classes, y_index = np.unique(y, return_inverse=True)
    _summaries.check_classes(classes)
    return classes, y_index


def _check_all_finite(X):
    """Raise a ValueError if `X` holds NaN or infinite values, as scikit-learn does."""
    if np.isnan(X).any():
        raise ValueError("Input X contains NaN.")
    if not np.isfinite(X).all():
        raise ValueError(
            f"Input X contains infinity or a value too large for {X.dtype!r}."
        )


def _check_sample_weight(sample_weight, n_samples):
    """Return `sample_weight` as a float64 array, or None for unit weights."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "Expected `sample_weight` to be None, a number or an array of "
            f"numbers, got {_first_non_number(sample_weight)}."
        ) from None
    if weights.shape != (n_samples,):
        raise ValueError(
            f"Expected `sample_weight` of shape ({n_samples},), got shape "
            f"{weights.shape}."
        )
    if not np.isfinite(weights).all():
        raise ValueError("Expected finite `sample_weight`, got NaN or inf.")
    if (weights < 0).any():
        raise ValueError(
            "Expected non-negative `sample_weight`, got "
            f"{weights[weights < 0][0].item()!r} at index "
            f"{np.flatnonzero(weights < 0)[0]}."
        )
    if not weights.any():
        raise ValueError("Expected `sample_weight` with a positive sum, got all zeros.")
    low, high = _summaries.WEIGHT_RANGE
    outside = (weights > 0) & ((weights < low) | (weights > high))
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise _summaries.out_of_range_weight(weights[index].item(), index)
    return weights


def _first_non_number(values):
    """Describe the first entry of `values` that is not a number, or `values`."""
    if not isinstance(values, (str, bytes)) and hasattr(values, "__iter__"):
        for index, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                return f"{reprlib.repr(value)} at index {index}"
    return reprlib.repr(values)


def _class_summaries(X, y_index, n_classes, sample_weight):
    """Return per-class weighted sums, weights and scatter of the rows of `X`.

    The scatter of a class is the weighted sum of squared differences between
    its rows and its mean, summed over features. One pass over `X` gives the
    class sums and the sums of squared row norms, whose difference is the
    scatter; a class whose difference could lose more than ``2**-10`` of its
    value to rounding (``2**-30`` for float64 rows), as when its mean is far
    larger than the spread around it, is measured again directly against its
    mean. A NaN or infinite value makes the sums of its class non-finite,
    which raises a ValueError as scikit-learn's check of `X` does.

    Rows whose squares overflow or underflow in the working dtype (float32
    beyond about 1e19 or below 1e-9, float64 beyond 1e150 or below 1e-150)
    are summarised again, in float64, divided by the power of two just above
    their largest magnitude; the summaries are then in units of that power.

    Returns
    -------
    sums : ndarray of shape (n_classes, n_features), dtype=float64
    weights : ndarray of shape (n_classes,), dtype=float64
    scatter : ndarray of shape (n_classes,), dtype=float64
    exponent : int
        The sums are in units of ``2**exponent`` and the scatter in units of
        ``4**exponent``; 0 for data of ordinary size.
    """
    n_samples, n_features = X.shape
    dtype = _work_dtype(X.dtype)
    sums, weights, squares = _kernels.class_moments(
        X, y_index, n_classes, sample_weight, dtype
    )
    finite = np.isfinite(sums).all() and np.isfinite(squares).all()
    if not finite:
        _check_all_finite(X)
    scale = None
    exponent = 0
    if not finite or _underflows(sums, weights, squares, n_features, dtype):
        exponent = _largest_exponent(X)
        scale = np.ldexp(1.0, -exponent)
        dtype = np.dtype(np.float64)
        sums, weights, squares = _kernels.class_moments(
            X, y_index, n_classes, sample_weight, dtype, scale
        )

    seen = weights > 0
    means = np.zeros_like(sums)
    means[seen] = sums[seen] / weights[seen, None]
    scatter = np.zeros(n_classes, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scatter[seen] = squares[seen] - np.einsum("ij,ij->i", sums[seen], means[seen])
        # Each squared norm is rounded in `dtype` with a relative error below
        # (n_features + 2) eps; the float64 sums add far less.
        bound = (n_features + 2) * np.finfo(dtype).eps * squares
    # Within 2**-10 of the scatter for float32 rows (the direct pass sums
    # float32 squares too), within 2**-30 for float64 rows.
    tolerance = 2.0**-10 if dtype == np.float32 else 2.0**-30
    direct = seen & ~(bound <= tolerance * scatter)
    if direct.any():
        scatter[direct] = _direct_scatter(
            X, y_index, means, sample_weight, dtype, scale
        )[direct]
    np.maximum(scatter, 0.0, out=scatter)
    return sums, weights, scatter, exponent


def _underflows(sums, weights, squares, n_features, dtype):
    """Tell whether the squares of the rows fell below the normal range of `dtype`.

    Their mean per feature is compared with the square of a value whose own
    square is still normal with every bit kept (about 1e-9 in float32, 1e-150
    in float64); all-zero rows do not count.
    """
    smallest = 2.0**-60 if dtype == np.float32 else 2.0**-500
    mean_square = squares.sum() / (weights.sum() * n_features)
    return bool(mean_square < smallest and (mean_square > 0 or sums.any()))


def _largest_exponent(X):
    """Return the exponent of the power of two just above the largest ``|X|``."""
    largest = max(abs(float(X.max(initial=0))), abs(float(X.min(initial=0))))
    return int(np.frexp(largest)[1])


def _direct_scatter(X, y_index, means, sample_weight, dtype, scale=None):
    """Return the scatter of each class measured against its mean, row by row.

    The rows are cast to `dtype` and multiplied by `scale` when given.
    """
    if X.dtype == dtype and scale is None:
        return _kernels.class_scatter(X, y_index, means, sample_weight)
    n_samples, n_features = X.shape
    chunk = _chunk_n_rows(n_samples, n_features, 1, dtype)
    scatter = np.zeros(means.shape[0], dtype=np.float64)
    for start in range(0, n_samples, chunk):
        rows = slice(start, start + chunk)
        w = None if sample_weight is None else sample_weight[rows]
        Xw = X[rows].astype(dtype)
        if scale is not None:
            Xw *= dtype.type(scale)
        scatter += _kernels.class_scatter(Xw, y_index[rows], means, w)
    return scatter


def _class_medians(X, y_index, weights, sample_weight):
    """Return the weighted per-feature median of each class with positive weight."""
    medians = _kernels.class_medians(X, y_index, weights.shape[0], sample_weight)
    return np.where((weights > 0)[:, None], medians, np.nan)
