"""The main job: the fastai book's mean-image experiment from the command line."""

import argparse
import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

import sk_meanclf

logger = logging.getLogger("sk_meanclf.cli")

NORMS = ("l1", "l2")
NORM_NAMES = {"l1": "mean absolute error", "l2": "root mean squared error"}
DIGITS_SPLIT_SEED = 0
FIGURE_NAME = "sk_meanclf.png"
SPLIT_NAMES = (("train", "valid"), ("training", "testing"))

OFFLINE_HINT = (
    "To run offline, extract fastai's mnist_sample archive so that "
    "$FASTAI_HOME/data/mnist_sample exists (FASTAI_HOME defaults to ~/.fastai), "
    "or pass --data PATH (a folder holding train/ and valid/), "
    "or run on scikit-learn's bundled digits with --dataset digits."
)

DESCRIPTION = """\
Reproduce the fastai book's pixel-similarity baseline: average the training
images of each class into a mean image, label each validation image with the
class of the nearest mean, by mean absolute error (l1) and by root mean squared
error (l2), and print the accuracy of each class and overall.
"""

EPILOG = """\
data:
  By default MNIST_SAMPLE (3s and 7s) is fetched with fastai's untar_data, which
  needs the fastai extra (pip install "sk_meanclf[fastai]") and either a network
  or the dataset already in $FASTAI_HOME/data/mnist_sample. --data PATH reads any
  folder laid out as PATH/train/<class>/*.png and PATH/valid/<class>/*.png (or
  PATH/training/ and PATH/testing/, as in fastai's full MNIST). --dataset digits
  uses scikit-learn's bundled 8x8 digits, 3 versus 7, split 75/25 stratified with
  random_state=0; it needs nothing from outside.

output:
  The table goes to standard output; log messages go to standard error. With
  --out DIR the figure DIR/sk_meanclf.png shows the mean image of each class and
  the confusion matrix of each norm (needs the plot extra: matplotlib).

exit status:
  0 on success, 1 when the data, a dependency or the --out folder is missing or
  unusable (with a one-line reason on standard error, checked before any output
  where possible), 2 for a bad command line.

examples:
  sk-meanclf --out results
  sk-meanclf --data ~/.fastai/data/mnist_sample --cv 5
  sk-meanclf --dataset digits -v
"""


class JobError(Exception):
    """A failure the user can fix, reported as one line on standard error."""


def build_parser():
    """Return the argument parser of ``sk-meanclf``.

    Returns
    -------
    parser : argparse.ArgumentParser
        The parser, with every option documented in its help.

    Examples
    --------
    >>> from sk_meanclf._cli import build_parser
    >>> args = build_parser().parse_args(["--dataset", "digits", "--cv", "3"])
    >>> args.dataset, args.cv, args.out
    ('digits', 3, None)
    """
    parser = argparse.ArgumentParser(
        prog="sk-meanclf",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=["mnist_sample", "digits"],
        default="mnist_sample",
        help="data to run on when --data is not given (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        type=Path,
        help="folder with train/ and valid/ folders of class folders of images "
        "(PNG, JPEG, ...); nothing is fetched",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help=f"write the figure {FIGURE_NAME} (mean images, confusion matrices) "
        "into DIR, created if missing",
    )
    parser.add_argument(
        "--cv",
        metavar="K",
        type=_fold_count,
        help="also run K-fold cross_val_score for each norm and a GridSearchCV "
        "over norm and centroid on the training split",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log progress (-v) or details (-vv) to standard error",
    )
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="log errors only and show no progress bar",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {sk_meanclf.__version__}"
    )
    return parser


def _fold_count(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 2:
        raise argparse.ArgumentTypeError(
            f"expected an integer of at least 2 folds, got {text!r}."
        )
    return value


def _configure_logging(verbose, quiet):
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sk-meanclf: %(levelname)s: %(message)s"))
    package_logger = logging.getLogger("sk_meanclf")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False
    return package_logger


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise JobError(
            "--out needs matplotlib, which is missing: install the plot extra "
            '(pip install "sk_meanclf[plot]") or leave out --out.'
        ) from exc


def _check_out_dir(out_dir):
    """Fail before any work when the figure cannot be written into `out_dir`."""
    out_dir = Path(out_dir)
    if os.path.lexists(out_dir):
        if not out_dir.is_dir():
            raise JobError(
                f"--out {str(out_dir)!r} exists and is not a folder; pass a folder, "
                "or a path where one can be created."
            )
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise JobError(f"--out {str(out_dir)!r} is a folder without write access.")
        figure = out_dir / FIGURE_NAME
        if os.path.lexists(figure) and not figure.is_file():
            raise JobError(
                f"--out {str(out_dir)!r} holds {FIGURE_NAME}, which is not a file; "
                "the figure cannot be written there."
            )
        return
    # The folder is created only once the figure is drawn, so that a failed run
    # leaves nothing behind; here the nearest existing parent must allow it.
    ancestor = out_dir
    while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise JobError(
            f"--out {str(out_dir)!r} cannot be created: {str(ancestor)!r} is not a "
            "folder."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise JobError(
            f"--out {str(out_dir)!r} cannot be created: no write access to "
            f"{str(ancestor)!r}."
        )


def _check_folds(data, n_folds):
    """Fail before fitting when a class has fewer training images than folds."""
    labels, counts = np.unique(np.asarray(data["y_train"]), return_counts=True)
    smallest = int(np.argmin(counts))
    if n_folds > counts[smallest]:
        raise JobError(
            f"Expected --cv K to be at most {counts[smallest]}, the number of "
            f"training images of the smallest class ({str(labels[smallest])!r}), "
            f"got {n_folds}."
        )


def _load_digits_3_7():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    keep = np.isin(digits.target, [3, 7])
    # The pixels hold 0..16; divide so that they lie in [0, 1] like MNIST's.
    X = (digits.data[keep] / 16.0).astype(np.float32)
    y = digits.target[keep]
    X_train, X_valid, y_train, y_valid = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=DIGITS_SPLIT_SEED
    )
    return {
        "name": "scikit-learn digits (3 versus 7)",
        "short_name": "digits",
        "read_note": "loading scikit-learn's bundled digits and splitting them",
        "X_train": X_train,
        "y_train": y_train,
        "X_valid": X_valid,
        "y_valid": y_valid,
        "image_shape": digits.images.shape[1:],
    }


def _fetch_mnist_sample():
    from sk_meanclf.datasets import fetch_mnist_sample

    logger.info("fetching MNIST_SAMPLE through fastai")
    # fastai prints a download bar to stdout, which holds only the table here.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return fetch_mnist_sample()
    except ImportError as exc:
        raise JobError(
            "MNIST_SAMPLE is fetched with fastai, which is not installed: install "
            'the fastai extra (pip install "sk_meanclf[fastai]"), or pass '
            "--data PATH, or run --dataset digits."
        ) from exc
    except Exception as exc:
        # The fetcher wraps the download error in advice meant for library users;
        # the job names its own ways out, so it reports the underlying error.
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        reason = " ".join(str(cause).split()).rstrip(".")
        home = Path(os.environ.get("FASTAI_HOME", "~/.fastai")).expanduser()
        folder = home / "data" / "mnist_sample"
        raise JobError(
            f"Could not fetch MNIST_SAMPLE ({type(cause).__name__}: {reason}). "
            f"{OFFLINE_HINT} Here that folder is {str(folder)!r}."
        ) from exc
    finally:
        logger.debug("fastai printed %r", printed.getvalue())


def _pixels(shape):
    height, width = shape
    return f"{height}x{width} pixels"


def _split_names(path):
    for train, valid in SPLIT_NAMES:
        if (path / train).is_dir() and (path / valid).is_dir():
            return train, valid
    folders = sorted(
        entry.name + "/"
        for entry in path.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not folders:
        holds = "no folders"
    elif len(folders) == 1:
        holds = f"only the folder {folders[0]}"
    else:
        holds = f"the folders {', '.join(folders)}"
    raise JobError(
        f"Expected {str(path)!r} to hold train/ and valid/ (or training/ and "
        f"testing/) folders of class folders; it holds {holds}."
    )


def _load_folder(path, progress):
    from sk_meanclf.datasets import load_image_folder

    path = Path(path).expanduser().absolute()
    if not os.path.lexists(path):
        raise JobError(f"Data folder {str(path)!r} does not exist.")
    if not path.exists():
        raise JobError(
            f"Data folder {str(path)!r} is a symbolic link to "
            f"{os.readlink(path)!r}, which does not exist."
        )
    if not path.is_dir():
        raise JobError(
            f"Data folder {str(path)!r} is not a folder; expected a folder holding "
            "train/ and valid/ (or training/ and testing/) folders of class folders."
        )
    train_split, valid_split = _split_names(path)
    logger.info("reading %s/ and %s/ in %s", train_split, valid_split, path)
    try:
        train = load_image_folder(path, split=train_split, progress=progress)
        valid = load_image_folder(path, split=valid_split, progress=progress)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        raise JobError(f"Could not load images from {str(path)!r}: {reason}.") from exc
    train_dir, valid_dir = str(path / train_split), str(path / valid_split)
    if len(train.target_names) < 2:
        raise JobError(
            f"The training split {train_dir!r} holds only the class "
            f"{train.target_names[0]!r}; a nearest class mean needs at least two "
            "classes."
        )
    if list(train.target_names) != list(valid.target_names):
        raise JobError(
            f"The classes of {train_split}/ ({list(train.target_names)!r}) and "
            f"{valid_split}/ ({list(valid.target_names)!r}) in {str(path)!r} differ."
        )
    if tuple(train.image_shape) != tuple(valid.image_shape):
        raise JobError(
            f"The images in {train_dir!r} are {_pixels(train.image_shape)} but "
            f"those in {valid_dir!r} are {_pixels(valid.image_shape)} "
            "(height x width); both splits must hold images of one size."
        )
    n_files = len(train.filenames) + len(valid.filenames)
    return {
        "name": f"{path.name} ({path})",
        "short_name": path.name,
        "read_note": f"listing and decoding the {n_files} image files",
        "X_train": train.data,
        "y_train": train.target,
        "X_valid": valid.data,
        "y_valid": valid.target,
        "image_shape": tuple(train.image_shape),
    }


def load_data(args):
    """Load the training and validation arrays that `args` asks for.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`build_parser`.

    Returns
    -------
    data : dict
        ``name``, ``short_name``, ``X_train``, ``y_train``, ``X_valid``, ``y_valid``,
        ``image_shape``; ``fetch_s``, the seconds spent fetching the dataset
        through fastai (None when nothing was fetched), ``read_s``, the seconds
        spent reading it, and ``read_note``, what reading it involved.

    Examples
    --------
    >>> from sk_meanclf._cli import build_parser, load_data
    >>> data = load_data(build_parser().parse_args(["--dataset", "digits"]))
    >>> data["X_train"].shape, data["X_valid"].shape, data["image_shape"]
    ((271, 64), (91, 64), (8, 8))
    """
    progress = False if args.quiet else None
    fetch_s = None
    if args.data is None and args.dataset == "digits":
        start = time.perf_counter()
        data = _load_digits_3_7()
        read_s = time.perf_counter() - start
    elif args.data is not None:
        start = time.perf_counter()
        data = _load_folder(args.data, progress=progress)
        read_s = time.perf_counter() - start
    else:
        start = time.perf_counter()
        path = _fetch_mnist_sample()
        fetch_s = time.perf_counter() - start
        logger.info("MNIST_SAMPLE is in %s", path)
        start = time.perf_counter()
        data = _load_folder(path, progress=progress)
        read_s = time.perf_counter() - start
        data["name"] = f"MNIST_SAMPLE ({path})"
        data["short_name"] = "MNIST_SAMPLE"
    data["fetch_s"] = fetch_s
    data["read_s"] = read_s
    return data


def evaluate(data):
    """Fit one classifier per norm on the training split and score the validation.

    Parameters
    ----------
    data : dict
        As returned by :func:`load_data`.

    Returns
    -------
    results : dict
        Per norm: the fitted ``estimator``, the predictions ``y_pred`` and the
        ``warmup_s``, ``fit_s`` and ``predict_s`` wall-clock seconds.

    Notes
    -----
    Before the timed fit and predict, a first fit on one training image per class
    and a predict of one validation image pay the one-off costs of a fresh
    process (numba compiling or loading its kernels, lazy imports); ``warmup_s``
    is their time, so that ``fit_s`` and ``predict_s`` are steady figures.

    Examples
    --------
    >>> from sk_meanclf._cli import build_parser, evaluate, load_data
    >>> data = load_data(build_parser().parse_args(["--dataset", "digits"]))
    >>> sorted(evaluate(data))
    ['l1', 'l2']
    """
    from sk_meanclf import NearestMeanImageClassifier

    X_train, y_train = data["X_train"], np.asarray(data["y_train"])
    X_valid = data["X_valid"]
    _, first_of_class = np.unique(y_train, return_index=True)
    results = {}
    for norm in NORMS:
        logger.info("fitting the %s classifier", norm)
        start = time.perf_counter()
        NearestMeanImageClassifier(norm=norm).fit(
            X_train[first_of_class], y_train[first_of_class]
        ).predict(X_valid[:1])
        warmed = time.perf_counter()
        estimator = NearestMeanImageClassifier(norm=norm).fit(X_train, y_train)
        fitted = time.perf_counter()
        y_pred = estimator.predict(X_valid)
        predicted = time.perf_counter()
        results[norm] = {
            "estimator": estimator,
            "y_pred": y_pred,
            "warmup_s": warmed - start,
            "fit_s": fitted - warmed,
            "predict_s": predicted - fitted,
        }
    return results


def format_table(data, results):
    """Return the accuracy table, one row per class and one overall, and timings.

    Parameters
    ----------
    data : dict
        As returned by :func:`load_data`.
    results : dict
        As returned by :func:`evaluate`.

    Returns
    -------
    table : str
        Lines of text, ending with a newline. Under the timings, a note says what
        each row measured.
    """
    y_valid = np.asarray(data["y_valid"])
    classes = results[NORMS[0]]["estimator"].classes_
    height, width = data["image_shape"]
    lines = [
        f"Nearest class mean on {data['name']}",
        f"{len(data['y_train'])} training and {len(y_valid)} validation images, "
        f"{height}x{width} pixels",
        "",
        f"{'accuracy':<10}{'n':>7}" + "".join(f"{norm:>10}" for norm in NORMS),
    ]
    for label in classes:
        mask = y_valid == label
        row = f"{str(label):<10}{int(mask.sum()):>7}"
        for norm in NORMS:
            correct = results[norm]["y_pred"][mask] == label
            row += f"{correct.mean():>10.4f}"
        lines.append(row)
    row = f"{'overall':<10}{len(y_valid):>7}"
    for norm in NORMS:
        row += f"{np.mean(results[norm]['y_pred'] == y_valid):>10.4f}"
    lines.append(row)
    lines += ["", f"{'seconds':<17}" + "".join(f"{norm:>10}" for norm in NORMS)]
    notes = []
    if data["fetch_s"] is not None:
        lines.append(f"{'fetch':<17}{data['fetch_s']:>10.3f}")
        notes.append("fetch: fastai's untar_data, importing fastai included")
    lines.append(f"{'read':<17}{data['read_s']:>10.3f}")
    notes.append(f"read: {data['read_note']}")
    for row, key in (
        ("warm-up", "warmup_s"),
        ("fit", "fit_s"),
        ("predict", "predict_s"),
    ):
        lines.append(
            f"{row:<17}" + "".join(f"{results[norm][key]:>10.3f}" for norm in NORMS)
        )
    notes += [
        "warm-up: a first fit on one image per class and predict of one image,",
        "  paying one-off start-up costs (such as compiling or loading numba's",
        "  kernels); fit and predict are timed after it, on all the images",
    ]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def cross_validate(data, n_folds):
    """Return the text of a K-fold cross-validation on the training split.

    Parameters
    ----------
    data : dict
        As returned by :func:`load_data`.
    n_folds : int
        Number of folds, at least 2.

    Returns
    -------
    text : str
        ``cross_val_score`` of each norm, then the ``GridSearchCV`` results over
        ``norm`` and ``centroid``, ranked.
    """
    from sklearn.model_selection import GridSearchCV, cross_val_score

    from sk_meanclf import NearestMeanImageClassifier

    X, y = data["X_train"], data["y_train"]
    lines = [f"{n_folds}-fold cross-validation on the training split", ""]
    lines.append(f"{'norm':<10}{'mean':>10}{'std':>10}")
    for norm in NORMS:
        logger.info("cross-validating the %s classifier", norm)
        scores = cross_val_score(
            NearestMeanImageClassifier(norm=norm), X, y, cv=n_folds
        )
        lines.append(f"{norm:<10}{scores.mean():>10.4f}{scores.std():>10.4f}")
    logger.info("grid search over norm and centroid")
    search = GridSearchCV(
        NearestMeanImageClassifier(),
        param_grid={"norm": list(NORMS), "centroid": ["mean", "median"]},
        cv=n_folds,
    ).fit(X, y)
    cv = search.cv_results_
    lines += [
        "",
        f"{'rank':<6}{'norm':<6}{'centroid':<10}{'mean':>10}{'std':>10}",
    ]
    for i in np.argsort(cv["rank_test_score"], kind="stable"):
        params = cv["params"][i]
        lines.append(
            f"{cv['rank_test_score'][i]:<6}{params['norm']:<6}"
            f"{params['centroid']:<10}{cv['mean_test_score'][i]:>10.4f}"
            f"{cv['std_test_score'][i]:>10.4f}"
        )
    return "\n".join(lines) + "\n"


def save_figure(data, results, out_dir):
    """Draw the mean image of each class and the confusion matrix of each norm.

    Parameters
    ----------
    data : dict
        As returned by :func:`load_data`.
    results : dict
        As returned by :func:`evaluate`.
    out_dir : path-like
        Folder to write ``sk_meanclf.png`` into; created if missing.

    Returns
    -------
    path : pathlib.Path
        The PNG file written.
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    estimator = results[NORMS[0]]["estimator"]
    classes = estimator.classes_
    n_classes = len(classes)
    shape = data["image_shape"]

    # Size the row of mean images to their width so that ten classes leave no gap.
    width = max(7.0, 1.1 * n_classes)
    top_height = min(2.6, width / n_classes + 0.9)
    fig = Figure(figsize=(width, top_height + 4.8), layout="constrained")
    fig.suptitle(
        f"Nearest class mean on {data['short_name']}\n{len(data['y_train'])} "
        f"training and {len(data['y_valid'])} validation images",
        fontweight="bold",
    )
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_height, 4.8])
    top.suptitle("Mean image of each class (training split)")
    for ax, label, centroid in zip(
        top.subplots(1, n_classes, squeeze=False)[0],
        classes,
        estimator.centroids_,
        strict=True,
    ):
        ax.imshow(centroid.reshape(shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"mean {label}")
        ax.set_axis_off()

    bottom.suptitle("Confusion matrices on the validation split")
    y_valid = np.asarray(data["y_valid"])
    for ax, norm in zip(bottom.subplots(1, len(NORMS)), NORMS, strict=True):
        y_pred = results[norm]["y_pred"]
        ConfusionMatrixDisplay.from_predictions(
            y_valid,
            y_pred,
            labels=classes,
            ax=ax,
            colorbar=False,
            cmap="Blues",
            text_kw={"fontsize": 10 if n_classes <= 4 else 7},
        )
        ax.set_title(
            f"{norm} ({NORM_NAMES[norm]})\naccuracy {np.mean(y_pred == y_valid):.4f}"
        )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FIGURE_NAME
    fig.savefig(path, dpi=100)
    return path


def _write(text):
    """Write `text` to standard output, which its reader may have closed.

    When the reader stops early, as ``sk-meanclf | head -1`` does, the rest of
    the output is dropped and the job goes on to write its figure. Any other
    write error (a full disk, say) ends the job with a JobError.
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        # Point the descriptor at /dev/null so that the interpreter's final
        # flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if not isinstance(exc, BrokenPipeError):
            reason = " ".join(str(exc).split()).rstrip(".")
            raise JobError(f"Could not write to standard output: {reason}.") from exc


def main(argv=None):
    """Run the main job and return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments without the program name; ``sys.argv[1:]`` when
        None.

    Returns
    -------
    status : int
        0 on success, 1 when the data, a dependency or the ``--out`` folder is
        missing or unusable.

    Examples
    --------
    >>> from sk_meanclf._cli import main
    >>> main(["--dataset", "digits", "--quiet"])  # doctest: +ELLIPSIS
    Nearest class mean on scikit-learn digits (3 versus 7)
    271 training and 91 validation images, 8x8 pixels
    ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data is not None and args.dataset != "mnist_sample":
        parser.error("--data and --dataset digits exclude each other.")
    _configure_logging(args.verbose, args.quiet)

    try:
        if args.out is not None:
            _require_matplotlib()
            _check_out_dir(args.out)
        data = load_data(args)
        if args.cv is not None:
            _check_folds(data, args.cv)
        results = evaluate(data)
        _write(format_table(data, results))
        if args.cv is not None:
            _write("\n" + cross_validate(data, args.cv))
        if args.out is not None:
            try:
                path = save_figure(data, results, args.out)
            except OSError as exc:
                reason = " ".join(str(exc).split()).rstrip(".")
                raise JobError(
                    f"Could not write the figure into {str(args.out)!r}: {reason}."
                ) from exc
            _write(f"\nfigure: {path}\n")
    except JobError as exc:
        sys.stderr.write(f"sk-meanclf: error: {exc}\n")
        return 1
    return 0
