"""Array API input (torch tensors, array-api-strict): fit and predict on its device.

The class sums, scatter, medians and distances are computed in the namespace and
on the device of `X`, so a CUDA tensor stays on its GPU; only per-class summaries
and labels visit the host, where the classifier's NumPy code derives the fitted
attributes before they move to the device of `X`. Used only when scikit-learn's
``array_api_dispatch`` is on and `X` is not a NumPy array.
"""

import math

import numpy as np
from sklearn import get_config
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from sk_meanclf import _summaries

# Upper bound, in MiB, on the temporaries of one batch of rows.
_MAX_WORKING_MEMORY_MIB = 256


def array_api_namespace(X):
    """Return the array namespace and device of `X`, or None for the NumPy path.

    Parameters
    ----------
    X : object
        The samples given to a method of the classifier.

    Returns
    -------
    (xp, device) or None
        None unless ``array_api_dispatch`` is on and `X` is an array API array
        other than a NumPy array.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._array_api import array_api_namespace
    >>> array_api_namespace(np.zeros((2, 3))) is None
    True
    """
    if not get_config()["array_api_dispatch"] or isinstance(X, np.ndarray):
        return None
    try:
        import array_api_compat
    except ImportError as exc:
        raise ImportError(
            "Array API dispatch on a non-NumPy `X` needs array-api-compat; install "
            "it with `pip install sk_meanclf[torch]`."
        ) from exc
    if not array_api_compat.is_array_api_obj(X) or array_api_compat.is_numpy_array(X):
        return None
    return array_api_compat.array_namespace(X), array_api_compat.device(X)


def _namespace_and_device(obj):
    """Return a printable namespace name and the device of `obj`."""
    if isinstance(obj, np.ndarray):
        return "numpy", None
    import array_api_compat

    if not array_api_compat.is_array_api_obj(obj):
        return "numpy", None
    name = array_api_compat.array_namespace(obj).__name__
    return name.removeprefix("array_api_compat."), array_api_compat.device(obj)


def uses_array_api(estimator, X, method):
    """Tell whether `method` of `estimator` runs on the array API path for `X`.

    With dispatch on, the fitted arrays of `estimator` live in the namespace and
    on the device of the training data; `X` must then match them, as
    scikit-learn requires of its own estimators.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator whose method is called.
    X : object
        The samples passed to the method.
    method : str
        Name of the method; ``"fit"`` starts afresh and checks nothing.

    Returns
    -------
    bool
    """
    namespace = array_api_namespace(X)
    if (
        method != "fit"
        and get_config()["array_api_dispatch"]
        and hasattr(estimator, "centroids_")
    ):
        fitted = _namespace_and_device(estimator.centroids_)
        given = _namespace_and_device(X)
        if fitted[0] != given[0] or fitted[1] != given[1]:
            name = type(estimator).__name__
            raise ValueError(
                f"Inputs passed to {name}.{method}() must use the same namespace "
                "and the same device as those passed to fit(): fitted on "
                f"{fitted[0]} (device {fitted[1]}), got {given[0]} (device "
                f"{given[1]}). Fit again on data in the namespace of `X`."
            )
    return namespace is not None


def to_numpy(a):
    """Return a NumPy copy of the array API array `a`, wherever it lives."""
    import array_api_compat

    if isinstance(a, np.ndarray) or not array_api_compat.is_array_api_obj(a):
        return np.asarray(a)
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(a):
        return a.get()
    xp = array_api_compat.array_namespace(a)
    if xp.__name__ == "array_api_strict":
        a = xp.asarray(a, device=xp.Device("CPU_DEVICE"))
    return np.asarray(a)


def accumulator_dtype(xp, device):
    """Return float64 where the device has it, else float32 (for example MPS)."""
    try:
        xp.zeros(1, dtype=xp.float64, device=device)
    except (TypeError, RuntimeError, ValueError):
        return xp.float32
    return xp.float64


def _batches(n_samples, n_features, itemsize):
    """Yield row slices whose temporaries fit in scikit-learn's working memory.

    The budget is capped at 256 MiB: larger than the NumPy path's cap, since a
    GPU runs fewer, larger batches faster, yet bounded on any device.
    """
    budget = min(get_config()["working_memory"], _MAX_WORKING_MEMORY_MIB) * 2**20
    rows = max(1, int(budget // max(1, 4 * n_features * itemsize)))
    for start in range(0, n_samples, rows):
        yield slice(start, min(start + rows, n_samples))


def weighted_median(X, sample_weight, xp, device):
    """Return the column-wise weighted median of `X`, like the NumPy kernel.

    With `sample_weight` None the two middle values of an even column are
    averaged, in the dtype of `X`, as :func:`numpy.median` does.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Values, in namespace `xp` on `device`.
    sample_weight : array of shape (n_samples,) or None
        Non-negative weight of each row.
    xp : namespace
        Array namespace of `X`.
    device : device
        Device of `X`.

    Returns
    -------
    median : array of shape (n_features,), dtype float64 where available
    """
    dtype = accumulator_dtype(xp, device)
    n_samples = X.shape[0]
    if sample_weight is None:
        ordered = xp.sort(X, axis=0)
        middle = n_samples // 2
        if n_samples % 2:
            return xp.astype(ordered[middle, :], dtype)
        return xp.astype((ordered[middle - 1, :] + ordered[middle, :]) / 2, dtype)
    order = xp.argsort(X, axis=0, stable=True)
    values = xp.astype(xp.take_along_axis(X, order, axis=0), dtype)
    weights = xp.reshape(
        xp.take(xp.astype(sample_weight, dtype), xp.reshape(order, (-1,))),
        order.shape,
    )
    cumulative = xp.cumulative_sum(weights, axis=0)
    half = cumulative[-1, :] / 2.0
    lower = xp.argmax(xp.astype(cumulative >= half[None, :], xp.int8), axis=0)
    # The upper middle value is the next row with a positive weight, if any.
    positions = xp.arange(n_samples, device=device)[:, None]
    later = (positions > lower[None, :]) & (weights > 0)
    upper = xp.where(
        xp.any(later, axis=0),
        xp.argmax(xp.astype(later, xp.int8), axis=0),
        xp.full_like(lower, n_samples - 1),
    )
    at_lower = xp.take_along_axis(cumulative, lower[None, :], axis=0)[0, :]
    low = xp.take_along_axis(values, lower[None, :], axis=0)[0, :]
    high = xp.take_along_axis(values, upper[None, :], axis=0)[0, :]
    at_half = xp.abs(at_lower - half) <= 1e-12 * xp.abs(half)
    return xp.where(at_half, (low + high) / 2.0, low)


def distances(X, centroids, norm, xp):
    """Return the per-feature averaged l1 or l2 distances of rows to centroids.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        One batch of rows, in namespace `xp`; the caller bounds its size.
    centroids : array of shape (n_classes, n_features)
        Centroids, same namespace, device and dtype as `X`.
    norm : {"l1", "l2"}
        The mean absolute error or the root mean squared error.
    xp : namespace
        Array namespace of `X`.

    Returns
    -------
    D : array of shape (n_samples, n_classes), dtype of `X`
    """
    n_features = X.shape[1]
    columns = []
    for k in range(centroids.shape[0]):
        diff = X - centroids[k, :]
        if norm == "l1":
            columns.append(xp.sum(xp.abs(diff), axis=1) / n_features)
        else:
            columns.append(xp.sqrt(xp.sum(diff * diff, axis=1) / n_features))
    return xp.stack(columns, axis=1)


def _work_dtype(X, xp, device):
    """Float32 for float16 and float32 input, float64 (where available) otherwise."""
    # The array API standard has no float16, but torch and NumPy have one.
    if X.dtype == xp.float32 or X.dtype == getattr(xp, "float16", None):
        return xp.float32
    return accumulator_dtype(xp, device)


def _class_summaries(X, y_index, n_classes, sample_weight, xp, device):
    """Return per-class weighted sums, weights and scatter around the class means."""
    dtype = accumulator_dtype(xp, device)
    work = _work_dtype(X, xp, device)
    n_samples, n_features = X.shape
    labels = xp.arange(n_classes, device=device)

    def one_hot(rows):
        encoded = xp.astype(y_index[rows, None] == labels[None, :], dtype)
        if sample_weight is None:
            return encoded
        return encoded * sample_weight[rows, None]

    sums = xp.zeros((n_classes, n_features), dtype=dtype, device=device)
    weights = xp.zeros(n_classes, dtype=dtype, device=device)
    for rows in _batches(n_samples, n_features, 8):
        encoded = one_hot(rows)
        sums = sums + encoded.T @ xp.astype(X[rows, :], dtype)
        weights = weights + xp.sum(encoded, axis=0)

    seen = weights > 0
    safe = xp.where(seen, weights, xp.ones_like(weights))
    means = xp.astype(sums / safe[:, None], work)
    scatter = xp.zeros(n_classes, dtype=dtype, device=device)
    for rows in _batches(n_samples, n_features, 8):
        diff = xp.astype(X[rows, :], work) - xp.take(means, y_index[rows], axis=0)
        squares = xp.astype(xp.sum(diff * diff, axis=1), dtype)
        scatter = scatter + one_hot(rows).T @ squares
    return sums, weights, scatter


def _class_medians(X, y_index, weights, sample_weight, xp, device):
    """Return the weighted median of each class with positive weight, else NaN."""
    work = _work_dtype(X, xp, device)
    n_classes = weights.shape[0]
    medians = np.full((n_classes, X.shape[1]), np.nan)
    for k in np.flatnonzero(weights > 0):
        mask = y_index == int(k)
        Xk = xp.astype(X[mask], work)
        w = None
        if sample_weight is not None:
            w = sample_weight[mask]
            Xk, w = Xk[w > 0], w[w > 0]
        medians[k] = to_numpy(weighted_median(Xk, w, xp, device))
    return medians


def _to_namespace(estimator, xp, device):
    """Move the fitted arrays of `estimator`, except `classes_`, to `xp`."""
    for name, value in list(vars(estimator).items()):
        if isinstance(value, np.ndarray) and name not in {
            "classes_",
            "feature_names_in_",
        }:
            setattr(estimator, name, xp.asarray(value, device=device))


def _to_numpy_state(estimator):
    """Bring the fitted arrays of `estimator` back to NumPy for an update."""
    import array_api_compat

    for name, value in list(vars(estimator).items()):
        if not isinstance(value, np.ndarray) and array_api_compat.is_array_api_obj(
            value
        ):
            setattr(estimator, name, to_numpy(value))


def _summarize(X, y, classes, sample_weight, xp, device):
    """Return the NumPy summaries of `X`, and the labels and weights on `device`.

    The labels and the weights are checked on the host, as the NumPy path
    checks them; the summaries are computed on the device of `X`.
    """
    from sk_meanclf._classifier import _check_sample_weight

    y_index = xp.asarray(_summaries.encode_labels(y, classes), device=device)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(to_numpy(sample_weight), X.shape[0])
        sample_weight = xp.asarray(
            sample_weight, dtype=accumulator_dtype(xp, device), device=device
        )
    n_classes = classes.shape[0]
    summaries = _class_summaries(X, y_index, n_classes, sample_weight, xp, device)
    summaries = tuple(to_numpy(s).astype(np.float64) for s in summaries)
    exponent = 0
    work = _work_dtype(X, xp, device)
    if _out_of_range(*summaries, X.shape[1], work == xp.float32):
        # Squares overflowed or underflowed: summarise X again divided by the
        # power of two just above its largest magnitude, as the NumPy path does.
        largest = float(xp.max(xp.abs(xp.astype(X, work))))
        exponent = int(np.frexp(largest)[1])
        X = _times_power_of_two(xp.astype(X, work), -exponent)
        summaries = _class_summaries(X, y_index, n_classes, sample_weight, xp, device)
        summaries = tuple(to_numpy(s).astype(np.float64) for s in summaries)
    return (*summaries, exponent), y_index, sample_weight


def _out_of_range(sums, weights, scatter, n_features, single):
    """Tell whether the mean square of the rows is too large or small to square.

    The mean square comes from the summaries: the squared norms of the class
    means plus the scatter around them. The limits leave room for the sums of
    squares over features and rows in float32 (`single`) or float64.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        seen = weights > 0
        norms = np.einsum("ij,ij->i", sums[seen], sums[seen]) / weights[seen]
        mean_square = (norms.sum() + scatter.sum()) / (weights.sum() * n_features)
    if not np.isfinite(mean_square):
        return True
    smallest, largest = (2.0**-60, 2.0**80) if single else (2.0**-500, 2.0**800)
    if mean_square > largest:
        return True
    return bool(mean_square < smallest and (mean_square > 0 or sums.any()))


def _times_power_of_two(A, exponent):
    """Return `A` times ``2**exponent`` exactly, in two steps that cannot overflow."""
    if exponent == 0:
        return A
    half = exponent // 2
    return (A * math.ldexp(1.0, half)) * math.ldexp(1.0, exponent - half)


def _numpy_work_dtype(X, xp, device):
    return np.float32 if _work_dtype(X, xp, device) == xp.float32 else np.float64


def fit(estimator, X, y, sample_weight=None):
    """Fit `estimator` on array API `X`, computing on the device of `X`.

    The class sums, scatter and medians are computed in the namespace of `X`;
    only these per-class summaries and the labels visit the host.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator to fit; its parameters are already checked.
    X : array of shape (n_samples, n_features)
        Training samples, such as a torch tensor.
    y : array of shape (n_samples,)
        Labels, in any namespace.
    sample_weight : array of shape (n_samples,), default=None
        Non-negative weights, in any namespace.

    Returns
    -------
    estimator : NearestMeanImageClassifier
        The fitted estimator, its arrays (except `classes_`) in the namespace
        and on the device of `X`.
    """
    xp, device = array_api_namespace(X)
    X, y = validate_data(estimator, X, y, dtype="numeric")
    y = to_numpy(y)
    check_classification_targets(y)
    classes = np.unique(y)
    _summaries.check_classes(classes)

    summaries, y_index, weights = _summarize(X, y, classes, sample_weight, xp, device)
    medians = None
    if estimator.centroid == "median":
        medians = _class_medians(X, y_index, summaries[1], weights, xp, device)

    dtype = _numpy_work_dtype(X, xp, device)
    _summaries.store(estimator, classes, summaries, dtype, True, medians)
    _to_namespace(estimator, xp, device)
    return estimator


def partial_fit(estimator, X, y, classes=None, sample_weight=None):
    """Update `estimator` with array API `X`, computing on the device of `X`.

    Parameters
    ----------
    estimator : NearestMeanImageClassifier
        The estimator to update; its parameters are already checked.
    X : array of shape (n_samples, n_features)
        One batch of training samples.
    y : array of shape (n_samples,)
        Labels of the batch, all in `classes`.
    classes : array-like of shape (n_classes,), default=None
        Every class of the stream; required on the first call.
    sample_weight : array of shape (n_samples,), default=None
        Non-negative weights.

    Returns
    -------
    estimator : NearestMeanImageClassifier
        The updated estimator.
    """
    xp, device = array_api_namespace(X)
    classes, first_call = _summaries.partial_fit_classes(estimator, classes)
    X, y = validate_data(estimator, X, y, dtype="numeric", reset=first_call)
    y = to_numpy(y)
    check_classification_targets(y)

    summaries, _, _ = _summarize(X, y, classes, sample_weight, xp, device)
    _to_numpy_state(estimator)
    dtype = _numpy_work_dtype(X, xp, device)
    _summaries.store(estimator, classes, summaries, dtype, first_call)
    _to_namespace(estimator, xp, device)
    return estimator


def _iter_jll(estimator, X, xp, device, likelihood=True):
    """Yield ``(distances, joint log-likelihood)`` of row batches of `X`."""
    n_samples, n_features = X.shape
    work = _work_dtype(X, xp, device)
    dtype = accumulator_dtype(xp, device)
    seen = estimator._seen
    # Data too large or too small to square were fitted in units of
    # 2**_exponent; rows and centroids are divided by it before any distance.
    exponent = int(estimator._exponent)
    centroids = estimator.centroids_
    if exponent:
        centroids = _times_power_of_two(estimator._exact_centroids, -exponent)
    centroids = xp.where(
        seen[:, None],
        xp.astype(centroids, work),
        xp.zeros(1, dtype=work, device=device),
    )
    eligible = xp.isfinite(estimator._log_prior)
    for rows in _batches(n_samples, n_features, 4):
        Xw = _times_power_of_two(xp.astype(X[rows, :], work), -exponent)
        D = distances(Xw, centroids, estimator._norm, xp)
        D = xp.where(seen[None, :], D, xp.asarray(xp.inf, dtype=work, device=device))
        if not likelihood:
            yield _times_power_of_two(D, exponent), None
            continue
        D = xp.astype(D, dtype)
        D_min = xp.min(
            xp.where(eligible[None, :], D, xp.asarray(xp.inf, device=device)),
            axis=1,
            keepdims=True,
        )
        # Python floats: array-api-strict refuses NumPy scalars. Distances
        # enter as ratios to the scale, as on the NumPy path.
        if estimator._norm == "l2":
            sigma = math.ldexp(float(estimator._sigma), -exponent)
            jll = -(n_features / 2.0) * (((D - D_min) / sigma) * ((D + D_min) / sigma))
        else:
            scale = math.ldexp(float(estimator.scale_), -exponent)
            jll = -float(n_features) * ((D - D_min) / scale)
        jll = xp.where(eligible[None, :], jll, xp.asarray(-xp.inf, device=device))
        if not estimator._uniform_prior:
            jll = jll + estimator._log_prior
        yield D, jll


def _prepare(estimator, X):
    check_is_fitted(estimator)
    xp, device = array_api_namespace(X)
    X = validate_data(estimator, X, dtype="numeric", reset=False)
    return X, xp, device


def _concat(parts, xp, empty):
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def transform(estimator, X):
    """Return the distances of array API `X` to the centroids, on its device."""
    X, xp, device = _prepare(estimator, X)
    parts = [D for D, _ in _iter_jll(estimator, X, xp, device, likelihood=False)]
    n_classes = estimator.classes_.shape[0]
    empty = xp.zeros((0, n_classes), dtype=_work_dtype(X, xp, device), device=device)
    return _concat(parts, xp, empty)


def _scores(estimator, X, reduce):
    X, xp, device = _prepare(estimator, X)
    parts = [reduce(jll, xp) for _, jll in _iter_jll(estimator, X, xp, device)]
    n_classes = estimator.classes_.shape[0]
    empty = xp.zeros((0, n_classes), dtype=accumulator_dtype(xp, device), device=device)
    return _concat(parts, xp, empty), xp, device


def _shifted(jll, xp):
    return jll - xp.max(jll, axis=1, keepdims=True)


def _softmax(jll, xp):
    shifted = _shifted(jll, xp)
    proba = xp.exp(shifted)
    proba = proba / xp.sum(proba, axis=1, keepdims=True)
    best = xp.argmax(jll, axis=1)
    # As in the NumPy path: where rounding ties the best class with another,
    # lift the best by one unit in the last place so arg-max stays the same.
    lifted = (xp.argmax(proba, axis=1) != best)[:, None] & (
        xp.arange(jll.shape[1], device=best.device)[None, :] == best[:, None]
    )
    if xp.any(lifted):
        two = xp.asarray(2.0, dtype=proba.dtype, device=best.device)
        proba = xp.where(lifted, xp.nextafter(proba, two), proba)
    return proba


def _log_softmax(jll, xp):
    shifted = _shifted(jll, xp)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def predict_proba(estimator, X):
    """Return the class probabilities of array API `X`, on its device."""
    return _scores(estimator, X, _softmax)[0]


def predict_log_proba(estimator, X):
    """Return the log-probabilities of array API `X`, on its device."""
    return _scores(estimator, X, _log_softmax)[0]


def decision_function(estimator, X):
    """Return the decision function of array API `X`, on its device."""
    scores, _, _ = _scores(estimator, X, _shifted)
    if estimator.classes_.shape[0] == 2:
        return scores[:, 1] - scores[:, 0]
    return scores


def predict(estimator, X):
    """Return the predicted labels of array API `X`.

    Numeric labels come back in the namespace and on the device of `X`; other
    labels (strings) cannot, and come back as a NumPy array.
    """
    scores, xp, device = _scores(estimator, X, lambda jll, xp: jll)
    best = xp.argmax(scores, axis=1)
    classes = estimator.classes_
    if classes.dtype.kind not in "biuf":
        return classes[to_numpy(best)]
    return xp.take(xp.asarray(classes, device=device), best, axis=0)


def score(estimator, X, y, sample_weight=None):
    """Return the weighted accuracy on array API `X`, in float64.

    The predictions are computed on the device of `X`; only the labels and
    the predicted labels are compared on the host.
    """
    predicted = to_numpy(predict(estimator, X))
    weights = None if sample_weight is None else to_numpy(sample_weight)
    return float(np.average(predicted == to_numpy(y).reshape(-1), weights=weights))
