"""Numeric kernels behind the classifier: class moments, class medians, distances.

Distances are computed in the dtype of the data (float32 stays float32) by a fast
pass: a matrix product for ``l2`` and, for ``l1``, a compiled kernel when numba is
installed or blocked numpy otherwise; large chunks are shared over one thread per
CPU. Each entry of the fast pass comes with a rigorous bound on its rounding error.
The rows whose nearest class is not certain within those bounds are recomputed in
float64 against float64 centroids, so the nearest class always equals that of a
float64 brute-force computation, whichever path ran. numba is imported only when
the first ``l1`` distance is computed, and the compiled kernel is kept for the rest
of the process (and cached on disk by numba).
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Private switch: False forces the numpy path even where numba is installed.
_USE_NUMBA = True

# The compiled kernels, built on first use: None until tried, False when numba is
# not importable, else a dict of compiled functions.
_NUMBA_KERNELS = None
_NUMBA_LOCK = threading.Lock()
# Threads that share large kernel calls, started on first use, as
# (process id, number of threads, executor).
_THREAD_POOL = None
_POOL_LOCK = threading.Lock()

# Bytes of scratch memory that one block of rows may take inside a kernel: small
# enough to stay in cache between two passes over the block.
_BLOCK_BYTES = 4 << 20
# Multiply-adds (rows x classes x features) below which a kernel runs on the
# calling thread alone.
_PARALLEL_WORK = 1 << 22
# The BLAS libraries (a threadpoolctl selection), found on first use, and how
# many calls currently hold them to one thread.
_BLAS = None
_BLAS_USERS = 0
_BLAS_LIMITER = None
_BLAS_LOCK = threading.Lock()
# Bytes of the float64 scratch array used to recompute rows near a tie.
_REFINE_BYTES = 8 << 20
# Largest number of columns that row-wise reductions handle column by column.
_FEW_COLUMNS = 16


def _rows_per_block(n_features, itemsize, budget=None):
    budget = _BLOCK_BYTES if budget is None else budget
    return max(1, budget // max(1, n_features * itemsize))


def class_moments(X, y_index, n_classes, sample_weight=None, dtype=None, scale=None):
    """Return per-class weighted sums, weights and sums of squared row norms.

    One pass over the rows, in blocks of bounded size shared over one thread per
    CPU: each block is summed into its classes in float64 while it is in cache,
    and the squared norms of its rows are taken from the same block. The result
    depends only on the input and the number of CPUs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows to accumulate, in any numeric dtype.
    y_index : ndarray of shape (n_samples,), dtype=intp
        Class index of each row, in ``range(n_classes)``.
    n_classes : int
        Number of classes.
    sample_weight : ndarray of shape (n_samples,), default=None
        Weight of each row; every row weighs 1 when None.
    dtype : dtype, default=None
        Floating dtype in which the squared norms of the rows are computed; the
        dtype of `X` when None. The sums are always accumulated in float64.
    scale : float, default=None
        Power of two that multiplies every row (exactly) before it is summed
        and squared, so that rows too large or too small to square in `dtype`
        can be accumulated; 1 when None.

    Returns
    -------
    sums : ndarray of shape (n_classes, n_features), dtype=float64
        Sum of the weighted rows of each class.
    weights : ndarray of shape (n_classes,), dtype=float64
        Summed weight of each class.
    squares : ndarray of shape (n_classes,), dtype=float64
        ``sum(w_i * ||x_i||^2)`` over the rows ``i`` of each class, each squared
        norm rounded in `dtype`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._kernels import class_moments
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]], dtype=np.float32)
    >>> sums, weights, squares = class_moments(X, np.array([0, 0, 1]), 2)
    >>> sums
    array([[ 4.,  6.],
           [10., 20.]])
    >>> weights
    array([2., 1.])
    >>> squares
    array([ 30., 500.])
    """
    n_samples, n_features = X.shape
    dtype = np.dtype(X.dtype if dtype is None else dtype)
    y_index = np.asarray(y_index, dtype=np.intp)
    if sample_weight is None:
        weights = np.bincount(y_index, minlength=n_classes).astype(np.float64)
    else:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        weights = np.bincount(y_index, weights=sample_weight, minlength=n_classes)
    # Rows already grouped by class (as loaded from folders) are summed in place.
    grouped = bool(np.all(y_index[1:] >= y_index[:-1]))
    cast = X.dtype != dtype or scale is not None
    step = _rows_per_block(n_features, 8 if cast or sample_weight is not None else 4)
    partial = {}

    def work(a, b):
        # Non-finite input only makes its class sums non-finite; the caller
        # reports it.
        with np.errstate(invalid="ignore", over="ignore"):
            partial[a] = summarize(a, b)

    def summarize(a, b):
        sums = np.zeros((n_classes, n_features), dtype=np.float64)
        squares = np.zeros(n_classes, dtype=np.float64)
        for start in range(a, b, step):
            stop = min(start + step, b)
            block = X[start:stop].astype(dtype, copy=False)
            if scale is not None:
                block = block * dtype.type(scale)
            labels = y_index[start:stop]
            norms = np.einsum("ij,ij->i", block, block).astype(np.float64)
            if sample_weight is not None:
                w = sample_weight[start:stop]
                norms *= w
                block = block * w[:, None]
            squares += np.bincount(labels, weights=norms, minlength=n_classes)
            if grouped:
                cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
                firsts = np.r_[0, cuts]
                lasts = np.r_[cuts, stop - start]
                for first, last in zip(firsts, lasts, strict=True):
                    part = block[first:last]
                    sums[labels[first]] += part.sum(axis=0, dtype=np.float64)
                continue
            for k in np.flatnonzero(np.bincount(labels, minlength=n_classes)):
                part = block[labels == k]
                sums[k] += part.sum(axis=0, dtype=np.float64)
        return sums, squares

    _in_pieces(work, n_samples, X.size)
    sums = np.zeros((n_classes, n_features), dtype=np.float64)
    squares = np.zeros(n_classes, dtype=np.float64)
    for a in sorted(partial):
        sums += partial[a][0]
        squares += partial[a][1]
    return sums, weights, squares


def class_scatter(X, y_index, means, sample_weight=None):
    """Return the weighted sum of squared differences of each class to its mean.

    One pass over the rows, in blocks of bounded size: each row is compared with
    the mean of its own class only. Squares are summed over features in the dtype
    of `X` and over rows in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float32 or float64
        Rows of all classes.
    y_index : ndarray of shape (n_samples,), dtype=intp
        Class index of each row, in ``range(n_classes)``.
    means : ndarray of shape (n_classes, n_features)
        Mean of each class (any finite values for classes without rows).
    sample_weight : ndarray of shape (n_samples,), default=None
        Weight of each row; every row weighs 1 when None.

    Returns
    -------
    scatter : ndarray of shape (n_classes,), dtype=float64
        ``sum(w_i * ||x_i - means[y_i]||^2)`` over the rows ``i`` of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._kernels import class_scatter
    >>> X = np.array([[0.0, 0.0], [2.0, 2.0], [5.0, 5.0]])
    >>> class_scatter(X, np.array([0, 0, 1]), np.array([[1.0, 1.0], [5.0, 5.0]]))
    array([4., 0.])
    """
    n_samples, n_features = X.shape
    n_classes = means.shape[0]
    y_index = np.asarray(y_index, dtype=np.intp)
    means = np.asarray(means, dtype=X.dtype)
    scatter = np.zeros(n_classes, dtype=np.float64)
    step = _rows_per_block(n_features, X.itemsize, 1 << 20)
    buffer = np.empty((min(step, n_samples), n_features), dtype=X.dtype)
    for start in range(0, n_samples, step):
        block = X[start : start + step]
        labels = y_index[start : start + step]
        diff = buffer[: block.shape[0]]
        np.take(means, labels, axis=0, out=diff)
        np.subtract(block, diff, out=diff)
        squares = np.einsum("ij,ij->i", diff, diff).astype(np.float64)
        if sample_weight is not None:
            squares *= sample_weight[start : start + step]
        scatter += np.bincount(labels, weights=squares, minlength=n_classes)
    return scatter


def _transposed(X, rows=None):
    """Return ``X[rows].T`` as a C-contiguous array, copied in cache-sized blocks."""
    n_rows = X.shape[0] if rows is None else rows.shape[0]
    out = np.empty((X.shape[1], n_rows), dtype=X.dtype)
    step = 256
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        block = X[start:stop] if rows is None else X[rows[start:stop]]
        out[:, start:stop] = block.T
    return out


def _median_of_rows(values, sample_weight=None):
    """Return the weighted median of each row of `values`, sorting it in place."""
    n = values.shape[1]
    if sample_weight is None:
        values.sort(axis=1)
        lower = values[:, (n - 1) // 2].astype(np.float64)
        if n % 2:
            return lower
        return (lower + values[:, n // 2]) / 2.0

    medians = np.empty(values.shape[0], dtype=np.float64)
    # A few features at a time keep the sorted copies and weights in cache.
    step = _rows_per_block(n, 8 + 8 + 8 + values.itemsize, _BLOCK_BYTES)
    for start in range(0, values.shape[0], step):
        block = values[start : start + step]
        order = np.argsort(block, axis=1)
        block = np.take_along_axis(block, order, axis=1)
        weight = sample_weight[order]
        cumulative = np.cumsum(weight, axis=1)
        half = cumulative[:, -1] / 2.0
        features = np.arange(block.shape[0])
        lower = np.argmax(cumulative >= half[:, None], axis=1)
        # The upper middle value is the next one that carries weight.
        ahead = (np.arange(n) > lower[:, None]) & (weight > 0)
        upper = np.where(ahead.any(axis=1), np.argmax(ahead, axis=1), lower)
        at_half = np.isclose(cumulative[features, lower], half, rtol=1e-12, atol=0)
        low_value = block[features, lower].astype(np.float64)
        high_value = block[features, upper].astype(np.float64)
        medians[start : start + step] = np.where(
            at_half, (low_value + high_value) / 2.0, low_value
        )
    return medians


def class_medians(X, y_index, n_classes, sample_weight=None):
    """Return the column-wise weighted median of the rows of each class.

    Where the cumulative weight of a column reaches exactly half its total, the
    two middle values are averaged (in float64, so the average is exact); with
    unit weights this equals ``numpy.median`` of the class's rows in float64.
    One transposed copy of one class is sorted at a time.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows of all classes.
    y_index : ndarray of shape (n_samples,), dtype=intp
        Class index of each row, in ``range(n_classes)``; every class has rows.
    n_classes : int
        Number of classes.
    sample_weight : ndarray of shape (n_samples,), default=None
        Non-negative weight of each row, with a positive total in each class;
        every row weighs 1 when None.

    Returns
    -------
    medians : ndarray of shape (n_classes, n_features), dtype=float64

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._kernels import class_medians
    >>> X = np.array([[1.0], [5.0], [2.0], [7.0], [9.0]])
    >>> class_medians(X, np.array([0, 1, 0, 1, 0]), 2)
    array([[2.],
           [6.]])
    """
    y_index = np.asarray(y_index, dtype=np.intp)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(y_index, kind="stable")
    bounds = np.searchsorted(y_index[order], np.arange(n_classes + 1))
    medians = np.empty((n_classes, X.shape[1]), dtype=np.float64)
    for k in range(n_classes):
        rows = order[bounds[k] : bounds[k + 1]]
        weight = None if sample_weight is None else sample_weight[rows]
        medians[k] = _median_of_rows(_transposed(X, rows), weight)
    return medians


def _compile_numba_kernels():
    """Import numba and return the kernels, compiled on first call per dtype.

    numba caches the machine code on disk, so a later process only loads it.
    """
    import numba

    @numba.njit(nogil=True, cache=True, fastmath={"reassoc", "nsz"})
    def l1_sums(X, C, out, zero):  # pragma: no cover - runs compiled
        n_samples, n_features = X.shape
        # Four rows at a time, so that each centroid value loaded serves four.
        for i in range(0, n_samples - 3, 4):
            for k in range(C.shape[0]):
                t0 = zero
                t1 = zero
                t2 = zero
                t3 = zero
                for j in range(n_features):
                    c = C[k, j]
                    t0 += abs(X[i, j] - c)
                    t1 += abs(X[i + 1, j] - c)
                    t2 += abs(X[i + 2, j] - c)
                    t3 += abs(X[i + 3, j] - c)
                out[i, k] = t0
                out[i + 1, k] = t1
                out[i + 2, k] = t2
                out[i + 3, k] = t3
        for i in range(n_samples - n_samples % 4, n_samples):
            for k in range(C.shape[0]):
                total = zero
                for j in range(n_features):
                    total += abs(X[i, j] - C[k, j])
                out[i, k] = total

    return {"l1_sums": l1_sums}


def _thread_pool():
    """Return ``(n_threads, executor)`` for large kernel calls, one thread per CPU.

    A process forked from this one starts its own threads.
    """
    global _THREAD_POOL
    pid = os.getpid()
    if _THREAD_POOL is None or _THREAD_POOL[0] != pid:
        with _POOL_LOCK:
            if _THREAD_POOL is None or _THREAD_POOL[0] != pid:
                try:
                    n_threads = len(os.sched_getaffinity(0))
                except AttributeError:
                    n_threads = os.cpu_count() or 1
                executor = ThreadPoolExecutor(
                    max_workers=max(1, n_threads), thread_name_prefix="sk_meanclf"
                )
                _THREAD_POOL = (pid, n_threads, executor)
    return _THREAD_POOL[1:]


def _numba_kernels():
    """Return the compiled kernels, or None when numba is off or not installed."""
    global _NUMBA_KERNELS
    if not _USE_NUMBA:
        return None
    if _NUMBA_KERNELS is None:
        with _NUMBA_LOCK:
            if _NUMBA_KERNELS is None:
                try:
                    _NUMBA_KERNELS = _compile_numba_kernels()
                except ImportError:
                    _NUMBA_KERNELS = False
    return _NUMBA_KERNELS or None


def _in_pieces(work, n_samples, size):
    """Call ``work(start, stop)`` over row ranges that cover ``range(n_samples)``.

    Large calls are cut into a few pieces per CPU and shared over threads (the
    work must release the GIL); pieces taken on demand keep every CPU busy even
    when another process holds one for a while. Piece boundaries are multiples of
    four rows. Small calls run on the calling thread alone: waking threads would
    cost more than it saves.
    """
    n_threads, pool = _thread_pool()
    if n_threads == 1 or size < _PARALLEL_WORK or n_samples < 8:
        _quietly(work, 0, n_samples)
        return
    n_pieces = 4 * n_threads
    edges = 4 * np.linspace(0, n_samples / 4, n_pieces + 1).round().astype(int)
    edges[-1] = n_samples
    pieces = [
        pool.submit(_quietly, work, a, b)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if b > a
    ]
    for piece in pieces:
        piece.result()


def _quietly(work, a, b):
    """Call ``work(a, b)`` without floating-point warnings.

    Rows too large for the working dtype overflow to infinite distances, which
    the callers detect and recompute; numpy's error state belongs to each
    thread, so it is set here, in the thread that does the work.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        work(a, b)


@contextlib.contextmanager
def _blas_on_one_thread():
    """Keep BLAS calls on their calling thread while the block runs.

    The limit is process-wide (as threadpoolctl sets it): the first of
    overlapping callers sets it and the last one restores the previous
    setting, so that calls from several threads cannot leave it changed.
    """
    global _BLAS, _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController().select(user_api="blas")
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = _BLAS.limit(limits=1)
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def _l2_products(X, C):
    """Return ``X @ C.T`` and the squared norms of the rows of `X`.

    Pieces of rows are shared over the thread pool, and each piece is cut into
    blocks that stay in cache for their norms. The products go to BLAS on one
    thread per piece: waking its own threads at every call costs more than the
    product when other processes keep the CPUs busy. How BLAS rounds a product
    can depend on the size of the call and on the row's place in it (OpenBLAS's
    Haswell kernels do), so the last bits of a row's distances may change with
    the chunk it comes in; `distances` bounds that rounding, and predictions do
    not depend on it.
    """
    n_samples, n_features = X.shape
    products = np.empty((n_samples, C.shape[0]), dtype=X.dtype)
    squares = np.empty(n_samples, dtype=X.dtype)
    step = _rows_per_block(n_features, X.itemsize, 1 << 20)

    def work(a, b):
        for start in range(a, b, step):
            stop = min(start + step, b)
            block = X[start:stop]
            np.matmul(block, C.T, out=products[start:stop])
            np.einsum("ij,ij->i", block, block, out=squares[start:stop])

    with _blas_on_one_thread():
        _in_pieces(work, n_samples, X.size * (C.shape[0] + 1))
    return products, squares


def _l1_sums(X, C):
    """Sums of absolute differences of each row of `X` to each row of `C`."""
    n_samples, n_features = X.shape
    out = np.empty((n_samples, C.shape[0]), dtype=X.dtype)
    kernels = _numba_kernels()
    if kernels is not None:
        kernel = kernels["l1_sums"]
        zero = X.dtype.type(0)
        _in_pieces(
            lambda a, b: kernel(X[a:b], C, out[a:b], zero),
            n_samples,
            n_samples * C.shape[0] * n_features,
        )
        return out
    step = _rows_per_block(n_features, X.itemsize, 1 << 20)

    def work(a, b):
        buffer = np.empty((min(step, b - a), n_features), dtype=X.dtype)
        for start in range(a, b, step):
            stop = min(start + step, b)
            diff = buffer[: stop - start]
            for k, c in enumerate(C):
                np.subtract(X[start:stop], c, out=diff)
                np.abs(diff, out=diff)
                np.sum(diff, axis=1, out=out[start:stop, k])

    _in_pieces(work, n_samples, n_samples * C.shape[0] * n_features)
    return out


def _exact_distances(X, centroids, norm):
    """Brute-force float64 distances, in blocks of rows of bounded size.

    The differences of a row to a centroid are divided by the power of two
    nearest above their largest magnitude before they are summed or squared,
    and the result multiplied back, so that no value overflows or underflows
    unless the distance itself does; for values of ordinary size this rounds
    exactly as the plain sum would.
    """
    n_classes, n_features = centroids.shape
    out = np.empty((X.shape[0], n_classes), dtype=np.float64)
    step = _rows_per_block(n_classes * n_features, 8, _REFINE_BYTES)
    for start in range(0, X.shape[0], step):
        block = X[start : start + step].astype(np.float64)
        diff = block[:, None, :] - centroids[None, :, :]
        np.abs(diff, out=diff)
        _, exponent = np.frexp(diff.max(axis=2, initial=0.0))
        diff *= np.ldexp(1.0, -exponent)[:, :, None]
        if norm == "l2":
            np.square(diff, out=diff)
        part = diff.sum(axis=2) / n_features
        if norm == "l2":
            np.sqrt(part, out=part)
        out[start : start + step] = np.ldexp(part, exponent)
    return out


def row_min(A):
    """Return the smallest value of each row of the 2-D array `A`.

    numpy reduces a short row one call at a time; with few columns, a pass per
    column over all rows is several times faster, and gives the same values.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._kernels import row_min
    >>> row_min(np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]]))
    array([ 1., -1.])
    """
    if A.shape[1] == 0 or A.shape[1] > _FEW_COLUMNS:
        return A.min(axis=1)
    smallest = A[:, 0].copy()
    for j in range(1, A.shape[1]):
        np.minimum(smallest, A[:, j], out=smallest)
    return smallest


def _settle_near_ties(X, centroids, norm, out, score, bound):
    """Recompute in float64 the rows whose nearest class is uncertain.

    `score` ranks the classes of each row like the distances do, and `bound`
    bounds the rounding error of each score. A row is recomputed when a class other
    than its apparent nearest one could be nearer within those bounds.
    """
    if out.shape[1] < 2 or out.shape[0] == 0:
        return
    best_upper = row_min(score + bound)
    lower = score - bound
    if out.shape[1] > _FEW_COLUMNS:
        candidates = np.count_nonzero(lower <= best_upper[:, None], axis=1)
    else:
        candidates = np.zeros(out.shape[0], dtype=np.intp)
        for j in range(out.shape[1]):
            candidates += lower[:, j] <= best_upper
    rows = np.flatnonzero(candidates > 1)
    if rows.size == 0:
        return
    exact = _exact_distances(X[rows], centroids, norm)
    rounded = exact.astype(out.dtype)
    # Rounding to float32 may tie the nearest class with an earlier one that is
    # farther in float64; nudge those up by one unit in the last place so that
    # argmin still picks the float64 nearest class.
    nearest = np.argmin(exact, axis=1)
    lowest = rounded[np.arange(rows.size), nearest]
    earlier = np.arange(out.shape[1]) < nearest[:, None]
    tied = earlier & (rounded <= lowest[:, None])
    rounded[tied] = np.nextafter(rounded[tied], np.inf)
    out[rows] = rounded


def distances(X, centroids, norm):
    """Return the per-feature averaged distances of rows of `X` to `centroids`.

    ``l1`` is the mean absolute error and ``l2`` the root mean squared error,
    as in chapter 4 of the fastai book. The arithmetic runs in the dtype of `X`;
    rows where that rounding could change the nearest centroid are recomputed in
    float64, so ``distances(...).argmin(axis=1)`` equals the float64 brute-force
    result (ties going to the first centroid).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float32 or float64
        One chunk of rows; the caller bounds its size.
    centroids : ndarray of shape (n_classes, n_features), dtype float32 or float64
        Class centroids; pass them in float64 (as fitted) so that near ties are
        settled against the exact centroids.
    norm : {"l1", "l2"}
        Distance to compute.

    Returns
    -------
    D : ndarray of shape (n_samples, n_classes), same dtype as `X`

    Examples
    --------
    >>> import numpy as np
    >>> from sk_meanclf._kernels import distances
    >>> X = np.array([[0.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    >>> C = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> distances(X, C, "l1")
    array([[0., 1.],
           [2., 1.]], dtype=float32)
    >>> distances(X, C, "l2").round(4)
    array([[0.    , 1.    ],
           [2.2361, 1.4142]], dtype=float32)
    """
    X = np.ascontiguousarray(X)
    dtype = X.dtype
    exact_centroids = np.asarray(centroids, dtype=np.float64)
    C = np.ascontiguousarray(exact_centroids, dtype=dtype)
    n_features = X.shape[1]
    eps = np.finfo(dtype).eps
    # Bounds below use eps (twice the unit roundoff) as a safety factor of 2.
    if norm == "l1":
        score = _l1_sums(X, C)
        magnitude = np.abs(exact_centroids).sum(axis=1).astype(dtype)
        bound = (n_features + 2) * eps * score + eps * magnitude
        out = score / dtype.type(n_features)
    else:
        # ||x - c||^2 = ||x||^2 + (||c||^2 - 2 x.c); the first term is the same
        # for every class, so the classes are ranked by the second.
        squared_norms = np.einsum("ij,ij->i", exact_centroids, exact_centroids)
        score, x_squared = _l2_products(X, C)
        score *= -2
        score += squared_norms.astype(dtype)
        total = score + x_squared[:, None]
        # Every product and partial sum above is at most (||x|| + ||c||)^2.
        x_norm = np.sqrt(x_squared)[:, None]
        c_norm = np.sqrt(squared_norms).astype(dtype)
        bound = (n_features + 4) * eps * np.square(x_norm + c_norm)
        # Rounding of the sum, the division and the square root below.
        bound += 8 * eps * (x_squared[:, None] + np.abs(score))
        np.maximum(total, 0, out=total)
        total /= dtype.type(n_features)
        out = np.sqrt(total, out=total)
    bound = bound.astype(dtype, copy=False)
    # Below the normal range, every product and sum may lose up to the smallest
    # subnormal number in absolute terms, whatever its relative error; the
    # bound adds the smallest normal number instead, since arithmetic on a
    # subnormal operand is many times slower on common CPUs.
    bound += dtype.type((2 * n_features + 8) * np.finfo(dtype).tiny)
    _settle_near_ties(X, exact_centroids, norm, out, score, bound)
    return out
