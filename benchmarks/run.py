"""Benchmarks of sk_meanclf against its peers, side by side in one run.

Times fit, predict, predict_proba and transform of ``NearestMeanImageClassifier``
against ``sklearn.neighbors.NearestCentroid`` (euclidean and manhattan), the
one-pass floor ``X.sum(axis=0)`` and the fastai book's broadcast code on torch
tensors; measures the peak extra memory of each prediction in a fresh process; shows
how the time grows with the number of rows and of classes; and times the image
loader against the book's per-file loop (``benchmarks/bench_loader.py``).

Data: the real MNIST test set (10 classes) from the shared data folder, tiled to
100,000 x 784 float32 rows, and MNIST_SAMPLE for the 2-class case. Every figure is
the median of interleaved repeats, and every ratio compares two figures of the same
run. Run ``python benchmarks/run.py`` (under 10 minutes on 2 cores) or
``python benchmarks/run.py --quick`` (under a minute, smaller arrays).

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` can force a slow BLAS kernel; when
either is set, the script starts itself again without both (in its own process
only) and says so in its report.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

_BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_RESTARTED = "SK_MEANCLF_BENCH_UNSET_BLAS"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 2**20


def _restart_without_blas_overrides():
    """Start this script again without the OpenBLAS overrides, before numpy loads."""
    present = [name for name in _BLAS_VARIABLES if name in os.environ]
    if not present or os.environ.get(_RESTARTED):
        return
    env = {k: v for k, v in os.environ.items() if k not in _BLAS_VARIABLES}
    env[_RESTARTED] = ",".join(f"{name}={os.environ[name]}" for name in present)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _median_times(candidates, repeats, prepare=None):
    """Return the median seconds of each callable, running them interleaved.

    `prepare`, when given, runs untimed before every timed call: reading the data
    once there puts every case in the same cache state, whatever the case before
    it evicted.
    """
    times = {name: [] for name, _ in candidates}
    for _ in range(repeats):
        for name, function in candidates:
            if prepare is not None:
                prepare()
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
            gc.collect()
    return {name: statistics.median(t) for name, t in times.items()}


# Cases of prediction: name -> (label, peer, method, norm, centroid).
PREDICT_CASES = {
    "nc_euclidean": (
        "`NearestCentroid(metric='euclidean').predict`",
        "nc",
        "predict",
        "euclidean",
        None,
    ),
    "nc_manhattan": (
        "`NearestCentroid(metric='manhattan').predict`",
        "nc",
        "predict",
        "manhattan",
        None,
    ),
    "book_l1": (
        "book: `(x - mean).abs().mean((-1, -2))`, torch",
        "book",
        "predict",
        "l1",
        None,
    ),
    "book_l2": (
        "book: `((x - mean) ** 2).mean((-1, -2)).sqrt()`, torch",
        "book",
        "predict",
        "l2",
        None,
    ),
    "ours_l1": ("ours `predict`, l1, mean", "ours", "predict", "l1", "mean"),
    "ours_l2": ("ours `predict`, l2, mean", "ours", "predict", "l2", "mean"),
    "ours_l1_median": ("ours `predict`, l1, median", "ours", "predict", "l1", "median"),
    "ours_l2_median": ("ours `predict`, l2, median", "ours", "predict", "l2", "median"),
    "ours_proba_l1": (
        "ours `predict_proba`, l1",
        "ours",
        "predict_proba",
        "l1",
        "mean",
    ),
    "ours_proba_l2": (
        "ours `predict_proba`, l2",
        "ours",
        "predict_proba",
        "l2",
        "mean",
    ),
    "ours_transform_l1": ("ours `transform`, l1", "ours", "transform", "l1", "mean"),
    "ours_l1_numpy": (
        "ours `predict`, l1, numpy only (no numba)",
        "ours-numpy",
        "predict",
        "l1",
        "mean",
    ),
}
QUICK_CASES = ["nc_euclidean", "nc_manhattan", "book_l1", "ours_l1", "ours_l2"]
QUICK_MEMORY_CASES = ["ours_l1", "ours_l2"]


def _predictor(case, X, y):
    """Fit the model of `case` on X, y and return a function of new rows."""
    import numpy as np

    _, peer, method, norm, centroid = PREDICT_CASES[case]
    if peer == "nc":
        from sklearn.neighbors import NearestCentroid

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = NearestCentroid(metric=norm).fit(X, y)
        return model.predict
    if peer == "book":
        import torch

        means = torch.stack(
            [
                torch.from_numpy(X[y == k].mean(axis=0)).view(28, 28)
                for k in np.unique(y)
            ]
        )

        def book(rows):
            x = torch.from_numpy(rows).view(-1, 28, 28)
            if norm == "l1":
                d = [(x - m).abs().mean((-1, -2)) for m in means]
            else:
                d = [((x - m) ** 2).mean((-1, -2)).sqrt() for m in means]
            return torch.stack(d).argmin(0)

        return book

    from sk_meanclf import NearestMeanImageClassifier, _kernels

    model = NearestMeanImageClassifier(norm=norm, centroid=centroid).fit(X, y)
    function = getattr(model, method)
    if peer != "ours-numpy":
        return function

    def numpy_only(rows):
        saved = _kernels._USE_NUMBA
        _kernels._USE_NUMBA = False
        try:
            return function(rows)
        finally:
            _kernels._USE_NUMBA = saved

    return numpy_only


def _status_kib():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0])
    return fields


def _memory_case(case, n_rows):
    """Print the peak extra memory of one prediction on `n_rows` rows, as JSON."""
    import resource

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from _data import mnist_t10k, tile

    X, y = tile(*mnist_t10k(), n_rows)
    predict = _predictor(case, X, y)
    # Imports and compiles outside the measurement, on rows too few to leave
    # chunk-sized buffers behind; freed heap memory goes back to the system.
    predict(X[:10])
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set size (VmHWM)
        method = "VmHWM after resetting it"
        baseline = _status_kib()["VmRSS"]
        result = predict(X)
        peak = _status_kib()["VmHWM"]
    except OSError:
        method = "ru_maxrss (includes setting up)"
        baseline = _status_kib()["VmRSS"]
        result = predict(X)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    extra = (peak - baseline) * 1024 / MIB
    record = {"case": case, "rows": n_rows, "extra_mib": extra, "method": method}
    print(json.dumps(record))


def _measure_memory(cases, n_rows):
    records = {}
    for case in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-case", case, "--rows", str(n_rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        records[case] = json.loads(out.stdout.strip().splitlines()[-1])
    return records


def _first_use_costs():
    """Time, in a fresh process, the first and second l1 predictions."""
    code = """
import json, time
t0 = time.perf_counter()
import numpy as np
import sk_meanclf
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.random((200, 784), dtype=np.float32)
y = np.arange(200) % 10
model = sk_meanclf.NearestMeanImageClassifier(norm="l2").fit(X, y)
model.predict(X)
import sys
l2_imports_numba = "numba" in sys.modules
model.set_params(norm="l1").fit(X, y)
t2 = time.perf_counter()
model.predict(X)
t3 = time.perf_counter()
model.predict(X)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_l1": t3 - t2, "second_l1": t4 - t3,
                  "l2_imports_numba": l2_imports_numba}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _versions():
    import numpy as np
    import sklearn

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions["scikit-learn"] = sklearn.__version__
    for name in ["numba", "torch"]:
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    import sk_meanclf

    versions["sk_meanclf"] = sk_meanclf.__version__
    return versions


def _machine():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        memory = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    return f"{cpu}, {os.cpu_count()} CPUs, {memory}, {platform.platform()}"


def _blas():
    from threadpoolctl import threadpool_info

    rows = []
    for info in threadpool_info():
        rows.append(
            f"{info.get('internal_api')} {info.get('version') or ''} "
            f"({info.get('architecture') or info.get('user_api')}, "
            f"{info.get('num_threads')} threads, {Path(info['filepath']).name})"
        )
    return rows


def _commit():
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout.strip()
    return "unknown"


def _verdict(value, target, higher_is_better=True):
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    if higher_is_better:
        return f"missed: {value / target:.0%} of the target"
    return f"missed: {value / target:.1f} times the limit"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small arrays and few repeats (CI)"
    )
    parser.add_argument("--output", help="also write the report to this file")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    if args.memory_case:
        _memory_case(args.memory_case, args.rows)
        return

    import numpy as np
    from _data import (
        mnist_sample_folder,
        mnist_t10k,
        read_png_classes,
        shared_data,
        tile,
    )

    if not (shared_data() / "mnist_t10k").is_dir():
        sys.exit(
            f"benchmarks/run.py: {str(shared_data() / 'mnist_t10k')!r} not found; "
            "set SK_MEANCLF_SHARED_DATA to the folder holding mnist_t10k/ and "
            "mnist_sample.tgz."
        )

    from sk_meanclf import NearestMeanImageClassifier

    warnings.simplefilter("ignore", UserWarning)
    started = time.perf_counter()
    load_before = os.getloadavg()
    quick = args.quick
    n_rows = 20_000 if quick else 100_000
    repeats = 3 if quick else 7
    lines = []

    def emit(text=""):
        lines.append(text)
        print(text, flush=True)

    command = shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]])
    emit(f"## sk_meanclf benchmarks ({'quick' if quick else 'full'} run)")
    emit()
    emit(f"Command: `{command}` (from the repository root, commit {_commit()})")
    emit()
    emit(f"Machine: {_machine()}; load average at start {load_before[0]:.1f}.")
    versions = _versions()
    emit("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    unset = os.environ.get(_RESTARTED)
    emit(
        "BLAS overrides: "
        + (f"unset for this run (were {unset})." if unset else "none set.")
    )
    X10k, y10k = mnist_t10k()
    X, y = tile(X10k, y10k, n_rows)
    shape = f"{n_rows:,} x 784 float32, 10 classes (MNIST test set, tiled)"

    # Fit.
    from sklearn.neighbors import NearestCentroid

    fit_cases = [
        ("`X.sum(axis=0)` (one-pass floor)", lambda: X.sum(axis=0)),
        (
            "`NearestCentroid(metric='euclidean').fit`",
            lambda: NearestCentroid().fit(X, y),
        ),
        (
            "`NearestCentroid(metric='manhattan').fit`",
            lambda: NearestCentroid(metric="manhattan").fit(X, y),
        ),
        ("ours `fit`, mean", lambda: NearestMeanImageClassifier().fit(X, y)),
        (
            "ours `fit`, median",
            lambda: NearestMeanImageClassifier(centroid="median").fit(X, y),
        ),
    ]
    fit = _median_times(fit_cases, repeats, prepare=lambda: X.sum(axis=0))
    names = [name for name, _ in fit_cases]
    floor, nc_euc, nc_man, ours_mean, ours_median = (fit[n] for n in names)
    emit()
    emit(f"### fit, {shape}")
    emit()
    emit("| case | median s | ratio |")
    emit("|---|---:|---|")
    emit(f"| {names[0]} | {floor:.4f} | 1 |")
    emit(f"| {names[1]} | {nc_euc:.4f} | {nc_euc / floor:.1f}x the floor |")
    emit(f"| {names[2]} | {nc_man:.4f} | {nc_man / floor:.1f}x the floor |")
    emit(
        f"| {names[3]} | {ours_mean:.4f} | {nc_euc / ours_mean:.1f}x faster than "
        f"euclidean; {ours_mean / floor:.1f}x the floor |"
    )
    emit(
        f"| {names[4]} | {ours_median:.4f} | {nc_man / ours_median:.1f}x faster than "
        "manhattan |"
    )

    # Predict.
    available = [c for c in PREDICT_CASES if PREDICT_CASES[c][1] != "book"]
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401

        available += ["book_l1", "book_l2"]
    if quick:
        available = [c for c in available if c in QUICK_CASES]
    predictors = {case: _predictor(case, X, y) for case in available}
    for predict in predictors.values():
        predict(X[:1000])  # imports and compiles before timing
    predict_times = _median_times(
        [(case, lambda p=predictors[case]: p(X)) for case in available],
        repeats,
        prepare=lambda: X.sum(axis=0),
    )
    del predictors
    gc.collect()

    memory_cases = QUICK_MEMORY_CASES if quick else available
    memory = _measure_memory(memory_cases, n_rows)
    emit()
    emit(f"### predict, {shape}")
    emit()
    emit(
        "Peak extra memory: peak resident set size minus the resident set size "
        "just before the call, in a fresh process per case, after one warm-up call "
        "on 10 rows."
    )
    emit()
    emit("| case | median s | ratio | peak extra memory |")
    emit("|---|---:|---|---:|")
    peers = {"l1": "nc_manhattan", "l2": "nc_euclidean"}
    for case in available:
        label, peer, method, norm, _ = PREDICT_CASES[case]
        seconds = predict_times[case]
        ratio = ""
        if peer.startswith("ours") and method == "predict":
            other = predict_times[peers[norm]]
            ratio = f"{other / seconds:.1f}x faster than {peers[norm][3:]}"
        elif peer == "book":
            ratio = f"{seconds / predict_times['ours_' + norm]:.1f}x ours"
        mib = f"{memory[case]['extra_mib']:.1f} MiB" if case in memory else "-"
        emit(f"| {label} | {seconds:.4f} | {ratio} | {mib} |")
    methods = {record["method"] for record in memory.values()}
    emit()
    emit(f"Memory method: {', '.join(sorted(methods))}.")
    costs = _first_use_costs()
    emit(
        f"First use, in a fresh process: `import sk_meanclf` {costs['import']:.2f} s; "
        f"first l1 predict (imports numba and loads its compiled kernel) "
        f"{costs['first_l1']:.2f} s, the next one {costs['second_l1']:.4f} s; "
        f"an l2 predict imports numba: {costs['l2_imports_numba']}."
    )

    # Targets.
    ours_memory = [
        r["extra_mib"] for c, r in memory.items() if PREDICT_CASES[c][1] == "ours"
    ]
    targets = [
        (
            "mean fit >= 10x faster than NearestCentroid euclidean fit",
            nc_euc / ours_mean,
            10,
            True,
        ),
        ("mean fit within 2x of `X.sum(axis=0)`", ours_mean / floor, 2, False),
        (
            "median fit >= 2x faster than NearestCentroid manhattan fit",
            nc_man / ours_median,
            2,
            True,
        ),
        (
            "l2 predict >= 4x faster than NearestCentroid euclidean predict",
            predict_times["nc_euclidean"] / predict_times["ours_l2"],
            4,
            True,
        ),
        (
            "l1 predict >= 8x faster than NearestCentroid manhattan predict",
            predict_times["nc_manhattan"] / predict_times["ours_l1"],
            8,
            True,
        ),
        (
            "l1 predict <= 1.5x our l2 predict",
            predict_times["ours_l1"] / predict_times["ours_l2"],
            1.5,
            False,
        ),
        ("peak extra memory of our predictions <= 64 MiB", max(ours_memory), 64, False),
    ]
    emit()
    emit("### targets")
    emit()
    emit("| target | measured | verdict |")
    emit("|---|---:|---|")
    for label, value, target, higher in targets:
        unit = " MiB" if "MiB" in label else "x"
        emit(f"| {label} | {value:.2f}{unit} | {_verdict(value, target, higher)} |")

    # Growth with rows and classes.
    emit()
    emit("### growth with rows and with classes (ours)")
    emit()
    emit("Median seconds, and microseconds per row for fit, l1 and l2.")
    emit()
    emit("| rows | classes | data | fit mean | predict l1 | predict l2 | us/row |")
    emit("|---:|---:|---|---:|---:|---:|---|")
    with contextlib.ExitStack() as stack:
        sample = mnist_sample_folder(stack)
        parts = [read_png_classes(sample / split) for split in ["train", "valid"]]
        X_sample = np.concatenate([part[0] for part in parts])
        y_sample = np.concatenate([part[1] for part in parts])
        row_counts = [5_000, 10_000] if quick else [10_000, 100_000, 1_000_000]
        grid = [(n, 10) for n in row_counts]
        grid += [(row_counts[-1 if quick else 1], k) for k in [2, 100]]
        for rows, n_classes in grid:
            if n_classes == 2:
                Xg, yg = tile(X_sample, y_sample, rows)
                data = "MNIST_SAMPLE 3/7"
            else:
                Xg, yg = tile(X10k, y10k, rows)
                data = "MNIST test set"
                if n_classes == 100:
                    yg = yg * 10 + np.arange(rows) % 10
                    data += ", label x 10 + row % 10"
            models = {
                norm: NearestMeanImageClassifier(norm=norm).fit(Xg, yg)
                for norm in ["l1", "l2"]
            }
            times = _median_times(
                [
                    (
                        "fit",
                        lambda Xg=Xg, yg=yg: NearestMeanImageClassifier().fit(Xg, yg),
                    ),
                    ("l1", lambda Xg=Xg, m=models["l1"]: m.predict(Xg)),
                    ("l2", lambda Xg=Xg, m=models["l2"]: m.predict(Xg)),
                ],
                1 if rows >= 1_000_000 else (2 if quick else 3),
            )
            per_row = ", ".join(
                f"{1e6 * times[k] / rows:.2f}" for k in ["fit", "l1", "l2"]
            )
            emit(
                f"| {rows:,} | {n_classes} | {data} | {times['fit']:.3f} | "
                f"{times['l1']:.3f} | {times['l2']:.3f} | {per_row} |"
            )
            del Xg, yg, models
            gc.collect()

        # Loader.
        emit()
        emit("### loader: MNIST_SAMPLE" + (" valid split" if quick else ""))
        emit()
        try:
            from bench_loader import run as run_loader
        except ImportError:
            emit("benchmarks/bench_loader.py is not available; loader not timed.")
        else:
            folder = sample / "valid" if quick else sample
            emit("| loader | median s | speed-up vs the book's loop |")
            emit("|---|---:|---:|")
            for name, seconds, ratio in run_loader(folder, repeats=1 if quick else 3):
                shown = "n/a" if ratio is None else f"{ratio:.1f}x"
                emit(f"| {name} | {seconds:.3f} | {shown} |")

    # Dask.
    emit()
    emit(f"### fit on a dask array, {shape}")
    emit()
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        emit("dask or distributed is not installed; the dask fit is not timed.")
    else:
        from bench_dask import run as run_dask

        emit(
            "The same rows persisted on a `distributed.LocalCluster` of 2 processes "
            "(one thread each) in chunks of 10,000 rows, against the in-memory fit."
        )
        emit()
        emit("| case | median s | ratio |")
        emit("|---|---:|---|")
        (memory_name, memory_s), (dask_name, dask_s) = run_dask(
            X, y, repeat=1 if quick else 5
        )
        emit(f"| {memory_name} | {memory_s:.3f} | 1 |")
        ratio = dask_s / memory_s
        emit(f"| {dask_name} | {dask_s:.3f} | {ratio:.1f}x the in-memory fit |")

    emit()
    emit(
        f"Finished in {time.perf_counter() - started:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.1f}. Timings come from a shared machine: other "
        "processes ran at the same time, so compare ratios within this run."
    )
    emit("BLAS and OpenMP libraries (threadpoolctl):")
    for row in _blas():
        emit(f"- {row}")
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    _restart_without_blas_overrides()
    main()
