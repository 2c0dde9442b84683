"""Tests that run each example script to the end on real MNIST images."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import StratifiedKFold

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

pytestmark = pytest.mark.slow


def _run_script(name, fastai_home, cwd, **env_extra):
    """Run one example script as a user would and return the finished process."""
    env = dict(os.environ, MPLBACKEND="Agg", FASTAI_HOME=str(fastai_home))
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _run_example(name, fastai_home, cwd, **env_extra):
    """Run one example script to the end and return the lines it printed."""
    result = _run_script(name, fastai_home, cwd, **env_extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def _nearest_mean_predict(X_train, y_train, X_test, norm, centroid):
    """Predict by brute force in float64: the label of the nearest class centroid."""
    classes = np.unique(y_train)
    reduce = np.mean if centroid == "mean" else np.median
    centroids = np.stack(
        [reduce(X_train[y_train == c].astype(np.float64), axis=0) for c in classes]
    )
    distances = np.empty((len(X_test), len(classes)))
    for k, c in enumerate(centroids):
        diff = X_test.astype(np.float64) - c
        if norm == "l1":
            distances[:, k] = np.abs(diff).mean(axis=1)
        else:
            distances[:, k] = np.sqrt((diff**2).mean(axis=1))
    return classes[distances.argmin(axis=1)]


def _value(lines, prefix):
    """The text after `prefix` on the one printed line that starts with it."""
    found = [line[len(prefix) :].strip() for line in lines if line.startswith(prefix)]
    assert len(found) == 1, f"expected one line starting with {prefix!r} in {lines}"
    return found[0]


@pytest.fixture(scope="module")
def mnist_sample_arrays(mnist_sample_path):
    """MNIST_SAMPLE read file by file with Pillow, in sorted order, scaled to [0, 1]."""

    def read(split):
        X, y = [], []
        for label in ("3", "7"):
            for path in sorted((mnist_sample_path / split / label).glob("*.png")):
                with Image.open(path) as image:
                    X.append(np.asarray(image).reshape(-1))
                y.append(int(label))
        return np.stack(X).astype(np.float32) / 255, np.array(y)

    return (*read("train"), *read("valid"))


@pytest.fixture(scope="module")
def mnist_png_home(mnist_t10k, tmp_path_factory):
    """A FASTAI_HOME whose data/mnist_png is fastai's MNIST layout, cut from t10k.

    Per digit, the first 300 test images are written to ``training/<digit>`` and the
    next 100 to ``testing/<digit>``; the full MNIST is not available offline.
    """
    images, labels = mnist_t10k
    home = tmp_path_factory.mktemp("mnist_png_home")
    split_ids = {"training": [], "testing": []}
    for digit in range(10):
        ids = np.flatnonzero(labels == digit)
        for split, chosen in (("training", ids[:300]), ("testing", ids[300:400])):
            folder = home / "data" / "mnist_png" / split / str(digit)
            folder.mkdir(parents=True)
            for i in chosen:
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
            split_ids[split].append(chosen)
    arrays = {}
    for split, ids in split_ids.items():
        ids = np.concatenate(ids)
        X = images[ids].reshape(len(ids), -1).astype(np.float32) / 255
        arrays[split] = (X, labels[ids].astype(np.int64))
    return home, arrays


def test_book_walkthrough(fastai_home, mnist_sample_arrays, tmp_path):
    """Check that the walk-through prints the book's distances and accuracies."""
    lines = _run_example("plot_book_walkthrough.py", fastai_home, tmp_path)
    assert "training images: 12396, validation images: 2038" in lines
    assert (
        "l1 distance of the second 3 to the mean 3: 0.1114, to the mean 7: 0.1586"
        in lines
    )
    assert (
        "l2 distance of the second 3 to the mean 3: 0.2021, to the mean 7: 0.3021"
        in lines
    )
    assert "l1 accuracy on the validation 3s: 0.9168" in lines
    assert "l1 accuracy on the validation 7s: 0.9854" in lines

    X_train, y_train, X_valid, y_valid = mnist_sample_arrays
    for norm in ("l1", "l2"):
        predicted = _nearest_mean_predict(X_train, y_train, X_valid, norm, "mean")
        for label in (3, 7):
            expected = np.mean(predicted[y_valid == label] == label)
            printed = _value(lines, f"{norm} accuracy on the validation {label}s:")
            assert printed == f"{expected:.4f}"
        printed = _value(lines, f"{norm} accuracy overall:")
        assert printed == f"{np.mean(predicted == y_valid):.4f}"


def test_grid_search(fastai_home, mnist_sample_arrays, tmp_path):
    """Check that the grid-search example's scores match a brute-force recount."""
    lines = _run_example("plot_grid_search.py", fastai_home, tmp_path)
    X_train, y_train, X_valid, y_valid = mnist_sample_arrays

    scores = []
    for train, test in StratifiedKFold(n_splits=5).split(X_train, y_train):
        predicted = _nearest_mean_predict(
            X_train[train], y_train[train], X_train[test], "l1", "mean"
        )
        scores.append(np.mean(predicted == y_train[test]))
    assert _value(lines, "5-fold accuracy of the book's setting:") == (
        f"{np.mean(scores):.4f} +/- {np.std(scores):.4f}"
    )

    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["rank"])
    table = [line.split() for line in lines[header + 1 : header + 9]]
    assert sorted((row[1], row[2], row[3]) for row in table) == sorted(
        (b, n, c)
        for b in ("no", "yes")
        for n in ("l1", "l2")
        for c in ("mean", "median")
    )
    best = _value(lines, "best setting:")
    match = re.fullmatch(
        r"binarize=(no|yes), norm=(l1|l2), centroid=(mean|median)", best
    )
    assert match is not None
    binarize, norm, centroid = match.groups()
    assert table[0][1:4] == [binarize, norm, centroid]

    if binarize == "yes":
        X_train, X_valid = (X_train > 0.5) * 1.0, (X_valid > 0.5) * 1.0
    predicted = _nearest_mean_predict(X_train, y_train, X_valid, norm, centroid)
    assert _value(lines, "validation accuracy of the best setting:") == (
        f"{np.mean(predicted == y_valid):.4f}"
    )


def test_ten_digits(mnist_png_home, tmp_path):
    """Check that the ten-digit example's accuracies match a brute-force recount."""
    home, arrays = mnist_png_home
    lines = _run_example("plot_ten_digits.py", home, tmp_path)
    assert "training images: 3000, test images: 1000" in lines
    X_train, y_train = arrays["training"]
    X_test, y_test = arrays["testing"]
    quoted = {}
    for centroid in ("mean", "median"):
        for norm in ("l1", "l2"):
            predicted = _nearest_mean_predict(X_train, y_train, X_test, norm, centroid)
            printed = _value(lines, f"test accuracy, {centroid} centroid, {norm} norm:")
            assert printed == f"{np.mean(predicted == y_test):.4f}"
            quoted[centroid, norm] = printed

    # The README's Limits quote these figures for this very subset.
    limits = (REPO / "README.md").read_text().split("## Limits")[1]
    limits = " ".join(limits.split())
    found = re.findall(r"(\d\.\d{4}) \((mean|median), (l1|l2)\)", limits)
    assert {(c, n): value for value, c, n in found} == quoted
    assert "first 300 images for training and the next 100 for testing" in limits


def test_ten_digits_without_data_stops_with_one_line(tmp_path):
    """Check that the ten-digit example without MNIST at hand exits with one line."""
    pytest.importorskip("fastai")
    home = tmp_path / "empty_home"
    # A proxy on a closed local port makes every download fail at once.
    proxy = "http://127.0.0.1:9"
    env = {name: proxy for name in ("http_proxy", "https_proxy", "HTTP_PROXY")}
    env.update(HTTPS_PROXY=proxy, no_proxy="", NO_PROXY="", HOME=str(tmp_path))
    result = _run_script("plot_ten_digits.py", home, tmp_path, **env)
    assert result.returncode == 1
    err = result.stderr.strip()
    assert "\n" not in err
    assert err.startswith("Could not fetch MNIST from ")
    folder = home / "data" / "mnist_png"
    assert f"To work offline, put the extracted folder at {str(folder)!r}" in err
    assert not folder.exists()


def test_dask_cluster(fastai_home, mnist_sample_arrays, tmp_path):
    """Check that the dask example counts its drawn labels and scores the book means."""
    pytest.importorskip("distributed")
    n_rows = 60_000
    lines = _run_example(
        "plot_dask_cluster.py",
        fastai_home,
        tmp_path,
        SK_MEANCLF_EXAMPLE_ROWS=str(n_rows),
    )
    assert "X: 60,000 x 784 float32, 0.2 GB lazily" in lines
    assert any(line.startswith("fit on 60,000 images in ") for line in lines)
    assert "predict: (60000,), 2 blocks, lazy" in lines

    # Each block of 50,000 rows (then the rest) draws its training images with a
    # generator seeded by (0, block number); count the labels drawn that way.
    _, y_train, _, _ = mnist_sample_arrays
    drawn = [
        y_train[np.random.default_rng([0, block]).integers(0, len(y_train), size)]
        for block, size in enumerate([50_000, n_rows - 50_000])
    ]
    drawn = np.concatenate(drawn)
    for label in (3, 7):
        assert f"images of {label}: {np.sum(drawn == label):,}" in lines
    first = _value(lines, "first labels:")
    assert first == str(drawn[:10])

    assert "book means: accuracy on the valid 3s = 0.9168" in lines
    assert "book means: accuracy on the valid 7s = 0.9854" in lines
    for label in (3, 7):
        accuracy = float(
            _value(lines, f"shifted means: accuracy on the valid {label}s =")
        )
        assert 0.5 < accuracy <= 1.0


def test_every_example_is_tested():
    """Check that each example script has a test in this module."""
    names = sorted(path.name for path in EXAMPLES.glob("plot_*.py"))
    assert names == [
        "plot_book_walkthrough.py",
        "plot_dask_cluster.py",
        "plot_grid_search.py",
        "plot_ten_digits.py",
    ]
    assert (EXAMPLES / "README.txt").is_file()


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("plot_*.py")), ids=lambda path: path.name
)
def test_example_layout(path):
    """Check that an example has a reST title, a two-sentence summary and # %% cells."""
    text = path.read_text()
    docstring = text.split('"""')[1].strip().splitlines()
    assert set(docstring[0]) == {"="} and set(docstring[2]) == {"="}
    assert len(docstring[0]) == len(docstring[2]) >= len(docstring[1])
    summary = " ".join(docstring[3:]).strip()
    assert len(re.findall(r"[.?] |[.?]$", summary)) == 2, summary
    cells = text.split("# %%\n")[1:]
    assert len(cells) >= 3
    for cell in cells:
        assert cell.startswith("# "), cell[:80]
    assert "print(__doc__)" not in text
