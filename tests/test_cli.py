"""Tests of the main job, ``sk-meanclf`` and ``python -m sk_meanclf``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid

from sk_meanclf._cli import main
from sk_meanclf.datasets import load_image_folder

REPO = Path(__file__).resolve().parents[1]


def _accuracy_rows(text):
    """Map each row label of the accuracy table to its (n, l1, l2) strings."""
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("accuracy")))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        label, n, l1, l2 = line.split()
        rows[label] = (n, l1, l2)
    return rows


def _timing_rows(text):
    """Map each row label of the timing table to its list of seconds."""
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("seconds")))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        label, *values = line.split()
        rows[label] = [float(value) for value in values]
    return rows


def _write_splits(root, sizes, classes=("3", "7")):
    """Write one black PNG per class and split; `sizes` maps split to (h, w)."""
    for split, (height, width) in sizes.items():
        for label in classes:
            folder = root / split / label
            folder.mkdir(parents=True)
            Image.new("L", (width, height), 0).save(folder / "0.png")


def _expected_rows(X_train, y_train, X_valid, y_valid, centroid=np.mean):
    """Accuracy rows computed by brute force in float64, formatted as the job does."""
    classes = np.unique(y_train)
    centroids = np.stack(
        [centroid(X_train[y_train == c].astype(np.float64), axis=0) for c in classes]
    )
    diff = X_valid.astype(np.float64)[:, None, :] - centroids[None, :, :]
    predictions = {
        "l1": classes[np.abs(diff).mean(axis=2).argmin(axis=1)],
        "l2": classes[np.sqrt((diff**2).mean(axis=2)).argmin(axis=1)],
    }
    rows = {}
    for c in classes:
        mask = y_valid == c
        rows[str(c)] = (
            str(mask.sum()),
            *(f"{np.mean(predictions[n][mask] == c):.4f}" for n in ("l1", "l2")),
        )
    rows["overall"] = (
        str(len(y_valid)),
        *(f"{np.mean(predictions[n] == y_valid):.4f}" for n in ("l1", "l2")),
    )
    return rows


def _digits_split():
    digits = load_digits()
    keep = np.isin(digits.target, [3, 7])
    X = (digits.data[keep] / 16.0).astype(np.float32)
    return train_test_split(
        X,
        digits.target[keep],
        test_size=0.25,
        stratify=digits.target[keep],
        random_state=0,
    )


def _run_module(args, env_extra=None, prelude=""):
    """Run ``python -m sk_meanclf`` (after `prelude`) from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(env_extra or {})
    code = (
        f"{prelude}\nimport runpy\nrunpy.run_module('sk_meanclf', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_digits_table_matches_brute_force(capsys):
    """Check that --dataset digits prints a brute-force nearest mean's accuracies."""
    status = main(["--dataset", "digits", "-q"])
    out, err = capsys.readouterr()
    assert status == 0
    assert err == ""
    X_train, X_valid, y_train, y_valid = _digits_split()
    assert _accuracy_rows(out) == _expected_rows(X_train, y_train, X_valid, y_valid)
    assert "271 training and 91 validation images, 8x8 pixels" in out
    rows = _timing_rows(out)
    assert list(rows) == ["read", "warm-up", "fit", "predict"]
    assert [len(values) for values in rows.values()] == [1, 2, 2, 2]
    assert "read: loading scikit-learn's bundled digits and splitting them" in out
    assert "warm-up: a first fit on one image per class and predict of one image," in (
        out.splitlines()
    )


def test_cv_and_grid_search(capsys):
    """Check that --cv K prints each norm's K-fold accuracy and the ranked grid."""
    from sklearn.model_selection import cross_val_score

    from sk_meanclf import NearestMeanImageClassifier

    assert main(["--dataset", "digits", "--cv", "3", "-q"]) == 0
    out = capsys.readouterr().out
    X_train, _, y_train, _ = _digits_split()
    lines = out.splitlines()
    assert "3-fold cross-validation on the training split" in lines
    for norm in ("l1", "l2"):
        scores = cross_val_score(
            NearestMeanImageClassifier(norm=norm), X_train, y_train, cv=3
        )
        assert f"{norm:<10}{scores.mean():>10.4f}{scores.std():>10.4f}" in lines
    header = lines.index(next(line for line in lines if line.startswith("rank")))
    grid = [line.split() for line in lines[header + 1 : header + 5]]
    assert [row[0] for row in grid] == sorted(row[0] for row in grid)
    assert sorted((row[1], row[2]) for row in grid) == [
        ("l1", "mean"),
        ("l1", "median"),
        ("l2", "mean"),
        ("l2", "median"),
    ]


def test_figure_is_written(tmp_path, capsys):
    """Check that --out writes a PNG figure and names it on stdout."""
    out_dir = tmp_path / "new" / "folder"
    assert main(["--dataset", "digits", "--out", str(out_dir), "-q"]) == 0
    path = out_dir / "sk_meanclf.png"
    assert f"figure: {path}" in capsys.readouterr().out
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 600 and image.height >= 600
        pixels = np.asarray(image.convert("L"))
    # The mean images and the confusion matrices are drawn in dark ink.
    assert (pixels < 64).mean() > 0.01


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_:UserWarning")
def test_real_mnist_sample_book_figures(mnist_sample_path, tmp_path, capsys):
    """Check that the job on MNIST_SAMPLE prints the book's l1 figures and l2's."""
    status = main(["--data", str(mnist_sample_path), "--out", str(tmp_path), "-q"])
    out = capsys.readouterr().out
    assert status == 0
    rows = _accuracy_rows(out)
    assert rows["3"][:2] == ("1010", "0.9168")
    assert rows["7"][:2] == ("1028", "0.9854")
    assert "12396 training and 2038 validation images, 28x28 pixels" in out

    X_train, y_train = load_image_folder(
        mnist_sample_path, split="train", return_X_y=True
    )
    X_valid, y_valid = load_image_folder(
        mnist_sample_path, split="valid", return_X_y=True
    )
    predicted = NearestCentroid(metric="euclidean").fit(X_train, y_train)
    predicted = predicted.predict(X_valid)
    for label in ("3", "7"):
        mask = y_valid == int(label)
        assert rows[label][2] == f"{np.mean(predicted[mask] == int(label)):.4f}"
    assert rows["overall"][2] == f"{np.mean(predicted == y_valid):.4f}"
    assert (tmp_path / "sk_meanclf.png").stat().st_size > 10_000


def test_default_data_is_fetched_through_fastai(fastai_home):
    """Check that python -m sk_meanclf fetches MNIST_SAMPLE from FASTAI_HOME."""
    env = {"FASTAI_HOME": str(fastai_home), "PYTHONWARNINGS": "always::FutureWarning"}
    result = _run_module(["-v"], env)
    assert result.returncode == 0, result.stderr
    assert "torch.jit.script" not in result.stderr
    rows = _accuracy_rows(result.stdout)
    assert rows["3"][1] == "0.9168"
    assert rows["7"][1] == "0.9854"
    assert "Nearest class mean on MNIST_SAMPLE" in result.stdout
    assert "INFO: fitting the l1 classifier" in result.stderr
    rows = _timing_rows(result.stdout)
    assert list(rows) == ["fetch", "read", "warm-up", "fit", "predict"]
    assert "fetch: fastai's untar_data, importing fastai included" in result.stdout
    assert "read: listing and decoding the 14434 image files" in result.stdout


def test_ten_classes_in_training_testing_layout(mnist_t10k, tmp_path, capsys):
    """Check that --data reads fastai's training/testing layout with ten classes."""
    images, labels = mnist_t10k
    chosen = {}
    for digit in range(10):
        ids = np.flatnonzero(labels == digit)
        chosen["training", digit] = ids[:40]
        chosen["testing", digit] = ids[40:60]
        for split in ("training", "testing"):
            folder = tmp_path / "mnist_png" / split / str(digit)
            folder.mkdir(parents=True)
            for i in chosen[split, digit]:
                Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    status = main(["--data", str(tmp_path / "mnist_png"), "-q"])
    assert status == 0

    def arrays(split):
        ids = np.concatenate([chosen[split, d] for d in range(10)])
        X = images[ids].reshape(len(ids), -1).astype(np.float32) / 255
        return X, labels[ids].astype(np.int64)

    X_train, y_train = arrays("training")
    X_valid, y_valid = arrays("testing")
    expected = _expected_rows(X_train, y_train, X_valid, y_valid)
    assert _accuracy_rows(capsys.readouterr().out) == expected


def test_missing_data_folder(tmp_path, capsys):
    """Check that a missing --data folder fails with one line naming it."""
    missing = tmp_path / "nowhere"
    assert main(["--data", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"sk-meanclf: error: Data folder {str(missing)!r} does not exist.\n"


def test_data_is_a_dangling_link(tmp_path, capsys):
    """Check that a --data link to nothing names the link and its target."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert main(["--data", str(link)]) == 1
    assert capsys.readouterr().err == (
        f"sk-meanclf: error: Data folder {str(link)!r} is a symbolic link to "
        f"{str(tmp_path / 'gone')!r}, which does not exist.\n"
    )


def test_relative_data_folder_is_named_in_full(tmp_path, monkeypatch, capsys):
    """Check that --data "" (the current folder) is reported by its full path."""
    _write_splits(tmp_path, {"train": (4, 4), "valid": (4, 4)})
    monkeypatch.chdir(tmp_path)
    assert main(["--data", "", "-q"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"Nearest class mean on {tmp_path.name} ({tmp_path})"


def test_data_is_a_file(tmp_path, capsys):
    """Check that a --data path naming a file says it is not a folder."""
    path = tmp_path / "afile.txt"
    path.write_text("not a folder")
    assert main(["--data", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"sk-meanclf: error: Data folder {str(path)!r} is not a folder; expected a "
        "folder holding train/ and valid/ (or training/ and testing/) folders of "
        "class folders.\n"
    )


def test_one_class_only(tmp_path, capsys):
    """Check that splits holding a single class fail with one line, before fitting."""
    _write_splits(tmp_path, {"train": (4, 4), "valid": (4, 4)}, classes=("3",))
    assert main(["--data", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    train = str(tmp_path / "train")
    assert err == (
        f"sk-meanclf: error: The training split {train!r} holds only the class "
        "'3'; a nearest class mean needs at least two classes.\n"
    )


def test_image_sizes_differ_between_splits(tmp_path, capsys):
    """Check that splits of different image sizes fail naming both folders and sizes."""
    _write_splits(tmp_path, {"train": (4, 4), "valid": (5, 6)})
    assert main(["--data", str(tmp_path), "-q"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    train, valid = str(tmp_path / "train"), str(tmp_path / "valid")
    assert err == (
        f"sk-meanclf: error: The images in {train!r} are 4x4 pixels but those in "
        f"{valid!r} are 5x6 pixels (height x width); both splits must hold images "
        "of one size.\n"
    )


def test_more_folds_than_the_smallest_class(tmp_path, capsys):
    """Check that --cv K above the smallest class fails before any output."""
    assert main(["--dataset", "digits", "--cv", "135", "-q"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "sk-meanclf: error: Expected --cv K to be at most 134, the number of "
        "training images of the smallest class ('7'), got 135.\n"
    )
    assert main(["--dataset", "digits", "--cv", "134", "-q"]) == 0
    assert "134-fold cross-validation on the training split" in capsys.readouterr().out

    _write_splits(tmp_path, {"train": (4, 4), "valid": (4, 4)})
    out_dir = tmp_path / "figure"
    assert main(["--data", str(tmp_path), "--cv", "2", "--out", str(out_dir)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "sk-meanclf: error: Expected --cv K to be at most 1, the number of training "
        "images of the smallest class ('3'), got 2.\n"
    )
    assert not out_dir.exists()


def _out_cases(tmp_path):
    afile = tmp_path / "afile.png"
    afile.write_bytes(b"")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    return {
        "existing file": (afile, f"--out {str(afile)!r} exists and is not a folder"),
        "under a file": (
            afile / "sub",
            f"--out {str(afile / 'sub')!r} cannot be created: {str(afile)!r} is not "
            "a folder.",
        ),
        "under a dangling link": (
            dangling / "sub",
            f"--out {str(dangling / 'sub')!r} cannot be created: {str(dangling)!r} "
            "is not a folder.",
        ),
    }


@pytest.mark.parametrize(
    "case", ["existing file", "under a file", "under a dangling link"]
)
def test_out_cannot_be_written(tmp_path, capsys, case):
    """Check that an --out path that cannot be a folder fails before any output."""
    path, message = _out_cases(tmp_path)[case]
    before = sorted(tmp_path.iterdir())
    assert main(["--dataset", "digits", "--out", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"sk-meanclf: error: {message}")
    assert err.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before


def test_figure_write_error_is_one_line(monkeypatch, tmp_path, capsys):
    """Check that a figure that fails to save late still ends in one error line."""
    import sk_meanclf._cli

    def full_disk(data, results, out_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sk_meanclf._cli, "save_figure", full_disk)
    out_dir = tmp_path / "fig"
    assert main(["--dataset", "digits", "--out", str(out_dir), "-q"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"sk-meanclf: error: Could not write the figure into {str(out_dir)!r}: "
        "[Errno 28] No space left on device.\n"
    )


def test_folder_without_splits(tmp_path, capsys):
    """Check that a folder lacking a split says which folders it holds."""
    (tmp_path / "train" / "3").mkdir(parents=True)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    expected = (
        f"sk-meanclf: error: Expected {str(tmp_path)!r} to hold train/ and valid/ "
        "(or training/ and testing/) folders of class folders; it holds {}.\n"
    )
    assert main(["--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err == expected.format("only the folder train/")
    (tmp_path / "test").mkdir()
    assert main(["--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err == expected.format("the folders test/, train/")
    empty = tmp_path / "test"
    assert main(["--data", str(empty)]) == 1
    assert capsys.readouterr().err == expected.replace(
        repr(str(tmp_path)), repr(str(empty))
    ).format("no folders")


def test_output_to_a_closed_pipe(tmp_path):
    """Check that a reader that stops early gets no traceback; the figure is written."""
    out_dir = tmp_path / "fig"
    job = subprocess.Popen(
        [sys.executable, "-m", "sk_meanclf", "--dataset", "digits", "--cv", "2"]
        + ["-q", "--out", str(out_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert job.stdout.readline().startswith(b"Nearest class mean on")
    job.stdout.close()
    err = job.stderr.read()
    assert job.wait(timeout=300) == 0
    assert err == b""
    assert (out_dir / "sk_meanclf.png").stat().st_size > 0


def test_unreadable_image(tmp_path, capsys):
    """Check that a broken PNG fails with one line that names the file."""
    for split in ("train", "valid"):
        for label in ("3", "7"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            Image.new("L", (4, 4), 255).save(folder / "0.png")
    broken = tmp_path / "valid" / "7" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["--data", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "1.png" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_device():
    """Check that a failed write of the table ends in one error line, status 1."""
    with open("/dev/full", "w") as full:
        job = subprocess.run(
            [sys.executable, "-m", "sk_meanclf", "--dataset", "digits", "-q"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=300,
        )
    assert job.returncode == 1
    assert job.stderr == (
        "sk-meanclf: error: Could not write to standard output: [Errno 28] No space "
        "left on device.\n"
    )


def test_without_fastai():
    """Check that without fastai the job says to install the extra or use --data."""
    result = _run_module([], prelude="import sys; sys.modules['fastai'] = None")
    assert result.returncode == 1
    assert result.stdout == ""
    err = result.stderr.strip()
    assert "\n" not in err
    assert err.startswith("sk-meanclf: error: ")
    for hint in ("sk_meanclf[fastai]", "--data PATH", "--dataset digits"):
        assert hint in err


def test_without_network(tmp_path):
    """Check that with no dataset and no network the job says how to run offline."""
    pytest.importorskip("fastai")
    # A proxy on a closed local port makes every download fail at once.
    proxy = "http://127.0.0.1:9"
    env = {"FASTAI_HOME": str(tmp_path / "empty_home"), "HOME": str(tmp_path)}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = proxy
    env["no_proxy"] = env["NO_PROXY"] = ""
    result = _run_module([], env)
    assert result.returncode == 1
    assert result.stdout == ""
    err = result.stderr.strip()
    assert "\n" not in err
    assert err.startswith("sk-meanclf: error: Could not fetch MNIST_SAMPLE")
    assert repr(str(tmp_path / "empty_home" / "data" / "mnist_sample")) in err
    for hint in ("$FASTAI_HOME/data/mnist_sample", "--data PATH", "--dataset digits"):
        assert hint in err
    assert not (tmp_path / "empty_home" / "data" / "mnist_sample").exists()


def test_fetch_error_is_one_line(monkeypatch, capsys):
    """Check that a failing fetch is reported as one line with its reason."""
    import sk_meanclf.datasets

    def fail():
        raise OSError("No route to host\nwhile fetching the archive")

    monkeypatch.setattr(sk_meanclf.datasets, "fetch_mnist_sample", fail)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "OSError: No route to host while fetching the archive" in err
    assert "--dataset digits" in err


def test_without_matplotlib(monkeypatch, tmp_path, capsys):
    """Check that --out without matplotlib names the plot extra and writes nothing."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--dataset", "digits", "--out", str(tmp_path / "fig")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "sk_meanclf[plot]" in err
    assert not (tmp_path / "fig").exists()


def test_help_documents_every_option(capsys):
    """Check that --help exits 0 and documents every option and the data sources."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in (
        "--dataset {mnist_sample,digits}",
        "--data PATH",
        "--out DIR",
        "--cv K",
        "--verbose",
        "--quiet",
        "--version",
        "FASTAI_HOME",
        "exit status",
    ):
        assert word in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cv", "1"], "'1'"),
        (["--cv", "many"], "'many'"),
        (["--dataset", "cifar"], "'cifar'"),
        (["--dataset", "digits", "--data", "x"], "exclude each other"),
        (["-v", "-q"], "argument -q/--quiet: not allowed with argument -v/--verbose"),
        (["-q", "-vv"], "argument -v/--verbose: not allowed with argument -q/--quiet"),
    ],
)
def test_bad_command_line(argv, message, capsys):
    """Check that a bad command line exits with status 2 and names the value."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_verbosity(capsys):
    """Check that -v logs progress to stderr and -q keeps stderr empty."""
    assert main(["--dataset", "digits", "-v"]) == 0
    out, err = capsys.readouterr()
    assert "sk-meanclf: INFO: fitting the l1 classifier" in err
    assert "INFO" not in out
    assert main(["--dataset", "digits", "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "overall" in out


def test_module_entry_point():
    """Check that python -m sk_meanclf runs the job and exits with status 0."""
    result = _run_module(["--dataset", "digits", "-q"])
    assert result.returncode == 0, result.stderr
    assert _accuracy_rows(result.stdout)["overall"][0] == "91"
