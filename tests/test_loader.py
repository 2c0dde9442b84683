"""Tests for sk_meanclf.datasets: image folders to X, y, and the fastai fetchers."""

import os
import re
import subprocess
import sys
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sk_meanclf.datasets import (
    _decode,
    fetch_fastai,
    fetch_mnist,
    fetch_mnist_sample,
    fetch_mnist_tiny,
    load_image_folder,
)

SAMPLE_COUNTS = {("train", 3): 6131, ("train", 7): 6265, ("valid", 3): 1010}
SAMPLE_COUNTS[("valid", 7)] = 1028
# Names whose sorted order as text differs from their order as numbers.
NAMES = ["7.png", "10.png", "2.png", "100.png"]


def _png(path, array, **save_options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    image.save(path, **save_options)
    return path


def _pillow_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def digits(mnist_t10k):
    """Four MNIST test images of each digit, keyed by the digit."""
    images, labels = mnist_t10k
    return {d: images[labels == d][:4] for d in range(10)}


def _write_classes(folder, digits, classes):
    """Write ``NAMES`` for each class; return the expected (images, labels)."""
    expected, labels = [], []
    for c in classes:
        order = sorted(range(len(NAMES)), key=lambda i: NAMES[i])
        for i, name in enumerate(NAMES):
            _png(folder / str(c) / name, digits[c][i])
        expected.extend(digits[c][i] for i in order)
        labels.extend([c] * len(NAMES))
    return np.array(expected), np.array(labels)


@pytest.fixture
def sample_layout(tmp_path, digits):
    """A small folder laid out like MNIST_SAMPLE, with hidden and non-image files."""
    root = tmp_path / "mnist_sample"
    expected = {}
    for split in ("train", "valid"):
        expected[split] = _write_classes(root / split, digits, [3, 7])
        (root / split / "3" / ".ipynb_checkpoints").mkdir()
        _png(root / split / "3" / ".ipynb_checkpoints" / "1.png", digits[1][0])
        (root / split / "7" / ".DS_Store").write_bytes(b"\0\0")
        (root / split / "7" / "notes.txt").write_text("not an image")
        _png(root / split / ".ipynb_checkpoints" / "1.png", digits[1][1])
        (root / split / "README.txt").write_text("3s and 7s")
        _png(root / split / "7" / ".hidden.png", digits[8][0])
    (root / "labels.csv").write_text("name,label\ntrain/3/7.png,0\n")
    (root / ".ipynb_checkpoints").mkdir()
    return root, expected


# Real MNIST_SAMPLE ------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid"])
def test_mnist_sample_counts_and_shapes(mnist_sample_path, split):
    """Check that each split of MNIST_SAMPLE loads with its known counts."""
    bunch = load_image_folder(mnist_sample_path, split=split)
    n3, n7 = SAMPLE_COUNTS[(split, 3)], SAMPLE_COUNTS[(split, 7)]
    assert bunch.data.shape == (n3 + n7, 784)
    assert bunch.data.dtype == np.float32
    assert bunch.images.shape == (n3 + n7, 28, 28)
    assert bunch.image_shape == (28, 28)
    assert 0.0 <= bunch.data.min() and bunch.data.max() == 1.0
    assert set(bunch.target.tolist()) == {3, 7}
    assert np.issubdtype(bunch.target.dtype, np.integer)
    assert (bunch.target == 3).sum() == n3 and (bunch.target == 7).sum() == n7
    assert bunch.target_names == ["3", "7"]
    assert len(bunch.filenames) == n3 + n7


def test_mnist_sample_order_and_pixels(mnist_sample_path, mnist_t10k):
    """Check sorted-Path order and pixels against Pillow and the MNIST test set."""
    bunch = load_image_folder(mnist_sample_path, split="valid")
    reference = [
        str(p)
        for c in ("3", "7")
        for p in sorted((mnist_sample_path / "valid" / c).iterdir())
    ]
    assert bunch.filenames == reference
    t10k_images, t10k_labels = mnist_t10k
    for name in ["valid/3/1020.png", "valid/3/9996.png", "valid/7/0.png"]:
        path = str(mnist_sample_path / name)
        i = bunch.filenames.index(path)
        pixels = _pillow_pixels(path)
        np.testing.assert_array_equal(bunch.images[i], pixels.astype(np.float32) / 255)
        # valid/<digit>/<k>.png is image k of the MNIST test set.
        k = int(name.split("/")[2][:-4])
        np.testing.assert_array_equal(pixels, t10k_images[k])
        assert bunch.target[i] == int(name.split("/")[1]) == t10k_labels[k]


def test_mnist_sample_equals_book_tensors(mnist_sample_path):
    """Check that X equals the book's stacked tensors divided by 255, bit for bit."""
    torch = pytest.importorskip("torch")
    try:
        from fastai.torch_core import tensor
    except ImportError:

        def tensor(image):
            return torch.as_tensor(np.array(image))

    X, y = load_image_folder(
        mnist_sample_path, split="valid", classes=["7"], return_X_y=True
    )
    sevens = sorted((mnist_sample_path / "valid" / "7").iterdir())
    book = torch.stack([tensor(Image.open(o)) for o in sevens]).float() / 255
    np.testing.assert_array_equal(X, book.reshape(len(sevens), -1).numpy())
    assert set(y.tolist()) == {7}


def test_mnist_sample_book_distances(mnist_sample_path):
    """Check the book's distances of the second training 3 from the mean 3 and 7."""
    X, y = load_image_folder(mnist_sample_path, split="train", return_X_y=True)
    mean3, mean7 = X[y == 3].mean(axis=0), X[y == 7].mean(axis=0)
    a_3 = X[y == 3][1]
    assert np.abs(a_3 - mean3).mean() == pytest.approx(0.1114, abs=5e-5)
    assert np.sqrt(((a_3 - mean3) ** 2).mean()) == pytest.approx(0.2021, abs=5e-5)
    assert np.abs(a_3 - mean7).mean() == pytest.approx(0.1586, abs=5e-5)
    assert np.sqrt(((a_3 - mean7) ** 2).mean()) == pytest.approx(0.3021, abs=5e-5)


def test_mnist_sample_without_split_hints_at_split(mnist_sample_path):
    """Check that reading MNIST_SAMPLE without a split suggests passing one."""
    train = re.escape(str(mnist_sample_path / "train"))
    with pytest.raises(ValueError, match=f"{train}.*split='train'"):
        load_image_folder(mnist_sample_path)


def test_fetch_mnist_sample_offline(fastai_home, monkeypatch):
    """Check that fetch_mnist_sample returns the seeded folder without downloading."""
    pytest.importorskip("fastai")
    import fastdownload.core

    def no_download(*args, **kwargs):
        raise AssertionError("fetch_mnist_sample tried to download")

    monkeypatch.setattr(fastdownload.core.FastDownload, "download", no_download)
    monkeypatch.setenv("FASTAI_HOME", str(fastai_home))
    path = fetch_mnist_sample()
    assert isinstance(path, Path)
    assert path == fastai_home / "data" / "mnist_sample"
    assert fetch_fastai("mnist_Sample") == path


# fastai fetchers without the real data ----------------------------------------


@pytest.mark.parametrize(
    "fetch, attribute",
    [
        (fetch_mnist_sample, "MNIST_SAMPLE"),
        (fetch_mnist_tiny, "MNIST_TINY"),
        (fetch_mnist, "MNIST"),
    ],
)
def test_fetchers_call_untar_data(fetch, attribute, tmp_path, monkeypatch):
    """Check that each fetcher hands fastai's URL and FASTAI_HOME to untar_data."""
    external = pytest.importorskip("fastai.data.external")
    calls = []

    def fake_untar_data(url, base=None, **kwargs):
        calls.append((url, base))
        return str(tmp_path / "extracted")

    monkeypatch.setattr(external, "untar_data", fake_untar_data)
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path))
    assert fetch() == tmp_path / "extracted"
    assert calls == [(getattr(external.URLs, attribute), str(tmp_path))]


def test_fetch_without_network_says_how_to_work_offline(tmp_path, monkeypatch):
    """Check that a failed download names the folder to fill by hand."""
    pytest.importorskip("fastai")
    import fastdownload.core

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(fastdownload.core.FastDownload, "download", offline)
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path))
    folder = re.escape(str(tmp_path / "data" / "mnist_tiny"))
    with pytest.raises(OSError, match=f"offline.*{folder}.*load_image_folder"):
        fetch_mnist_tiny()


def test_fetch_without_fastai_names_the_extra(monkeypatch):
    """Check that a missing fastai gives an ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "fastai.data.external", None)
    with pytest.raises(
        ImportError, match=re.escape('pip install "sk_meanclf[fastai]"')
    ):
        fetch_fastai("MNIST")


@pytest.mark.parametrize("name", ["CIFAR", "MNIST-SAMPLE", "", None])
def test_fetch_bad_name(name):
    """Check that an unknown dataset name lists the accepted ones."""
    with pytest.raises(
        ValueError, match=f"'MNIST_SAMPLE'.*got {re.escape(repr(name))}"
    ):
        fetch_fastai(name)


# Layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid"])
def test_sample_and_tiny_layout(sample_layout, split):
    """Check a MNIST_SAMPLE/MNIST_TINY layout: labels, order, pixels, ignored files."""
    root, expected = sample_layout
    images, labels = expected[split]
    bunch = load_image_folder(root, split=split)
    np.testing.assert_array_equal(bunch.images, images.astype(np.float32) / 255)
    np.testing.assert_array_equal(bunch.data, bunch.images.reshape(len(images), -1))
    np.testing.assert_array_equal(bunch.target, labels)
    assert bunch.target_names == ["3", "7"]
    assert bunch.filenames[:4] == [
        str(root / split / "3" / n) for n in ["10.png", "100.png", "2.png", "7.png"]
    ]
    X, y = load_image_folder(root, split=split, return_X_y=True, scale=False)
    assert X.dtype == np.uint8
    np.testing.assert_array_equal(X, images.reshape(len(images), -1))
    np.testing.assert_array_equal(y, labels)


def test_full_mnist_layout(tmp_path, digits):
    """Check the full MNIST layout, training|testing/0..9, and a classes subset."""
    root = tmp_path / "mnist_png"
    for split in ("training", "testing"):
        images, labels = _write_classes(root / split, digits, range(10))
    bunch = load_image_folder(root, split="testing")
    assert bunch.target_names == [str(d) for d in range(10)]
    np.testing.assert_array_equal(bunch.target, labels)
    np.testing.assert_array_equal(bunch.images * 255, images)
    for classes in (["3", "7"], [7, 3]):
        X, y = load_image_folder(
            root, split="testing", classes=classes, return_X_y=True, scale=False
        )
        keep = (labels == 3) | (labels == 7)
        np.testing.assert_array_equal(y, labels[keep])
        np.testing.assert_array_equal(X, images[keep].reshape(keep.sum(), -1))


def test_classes_directly_under_path(tmp_path, digits):
    """Check that without split the sub-folders of path are the classes."""
    images, labels = _write_classes(tmp_path, digits, [0, 1])
    X, y = load_image_folder(tmp_path, return_X_y=True, scale=False)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X, images.reshape(len(images), -1))


def test_integer_classes_sort_by_value(tmp_path, digits):
    """Check that integer class names sort as numbers, so 9 comes before 10."""
    _png(tmp_path / "10" / "a.png", digits[1][0])
    _png(tmp_path / "9" / "a.png", digits[9][0])
    bunch = load_image_folder(tmp_path, scale=False)
    assert bunch.target_names == ["9", "10"]
    np.testing.assert_array_equal(bunch.target, [9, 10])
    np.testing.assert_array_equal(bunch.images, [digits[9][0], digits[1][0]])


def test_text_classes_give_string_targets(tmp_path, digits):
    """Check that class names that are not all integers stay strings."""
    _png(tmp_path / "seven" / "a.png", digits[7][0])
    _png(tmp_path / "3" / "a.png", digits[3][0])
    _png(tmp_path / "3" / "b.png", digits[3][1])
    bunch = load_image_folder(tmp_path)
    assert bunch.target_names == ["3", "seven"]
    assert bunch.target.tolist() == ["3", "3", "seven"]


@pytest.mark.parametrize(
    "names",
    [["03", "3"], ["3", "07"], ["0", "00"], ["+3", "7"], ["3", " 7"], ["3_0", "7"]],
)
def test_non_canonical_integer_names_stay_strings(tmp_path, digits, names):
    """Check that names that are not canonical integers keep string labels."""
    for k, name in enumerate(names):
        _png(tmp_path / name / "a.png", digits[k][0])
    bunch = load_image_folder(tmp_path)
    assert bunch.target_names == sorted(names)
    assert bunch.target.tolist() == sorted(names)
    assert len(set(bunch.target.tolist())) == len(names)


def test_canonical_integer_names_give_integer_targets(tmp_path, digits):
    """Check that 0 and multi-digit names without leading zeros give integers."""
    for name in ["0", "10", "3"]:
        _png(tmp_path / name / "a.png", digits[int(name) % 10][0])
    bunch = load_image_folder(tmp_path)
    assert bunch.target_names == ["0", "3", "10"]
    assert bunch.target.tolist() == [0, 3, 10]


def test_symlinked_class_folder_is_followed(tmp_path, digits):
    """Check that a class folder that is a symbolic link is read like a folder."""
    _png(tmp_path / "elsewhere" / "a.png", digits[7][0])
    _png(tmp_path / "root" / "3" / "a.png", digits[3][0])
    os.symlink(tmp_path / "elsewhere", tmp_path / "root" / "7")
    bunch = load_image_folder(tmp_path / "root", scale=False)
    np.testing.assert_array_equal(bunch.images, [digits[3][0], digits[7][0]])
    assert bunch.filenames[1] == str(tmp_path / "root" / "7" / "a.png")


# Grey levels ------------------------------------------------------------------


def _load_one(folder, image, **save_options):
    _png(folder / "c" / "a.png", image, **save_options)
    return load_image_folder(folder, scale=False).images[0]


def test_grey_plain_8bit(tmp_path, digits):
    """Check that plain 8-bit greyscale is read as is."""
    np.testing.assert_array_equal(_load_one(tmp_path, digits[5][0]), digits[5][0])


def test_grey_fast_decoder_matches_pillow(sample_layout, monkeypatch):
    """Check that the libspng path gives exactly Pillow's pixels."""
    pytest.importorskip("pyspng")
    root, _ = sample_layout
    data = (root / "train" / "3" / "2.png").read_bytes()
    assert _decode.is_plain_grey_png(data, Image.MAX_IMAGE_PIXELS)
    fast = load_image_folder(root, split="train", scale=False)
    monkeypatch.setattr(_decode, "pyspng", None)
    slow = load_image_folder(root, split="train", scale=False)
    np.testing.assert_array_equal(fast.images, slow.images)
    for i, path in enumerate(slow.filenames):
        np.testing.assert_array_equal(slow.images[i], _pillow_pixels(path))


def test_grey_sixteen_bit_is_scaled_not_clipped(tmp_path, digits):
    """Check that 16-bit greyscale maps 0..65535 to 0..255 with rounding."""
    wide = digits[2][0].astype(np.uint16) * 257
    wide[0, :3] = [65535, 300, 128]
    grey = _load_one(tmp_path, wide)
    expected = digits[2][0].copy()
    expected[0, :3] = [255, 1, 0]
    np.testing.assert_array_equal(grey, expected)


def test_grey_black_digit_on_transparency_stays_visible(tmp_path, digits):
    """Check that alpha is composited on white, so a black inked digit shows."""
    alpha = digits[4][0]
    la = np.stack([np.zeros_like(alpha), alpha], axis=-1)
    grey = _load_one(tmp_path, Image.fromarray(la, mode="LA"))
    np.testing.assert_array_equal(grey, 255 - alpha)


def test_grey_coloured_alpha_is_composited_on_white(tmp_path, digits):
    """Check RGBA against a white composite computed with numpy, then luma."""
    alpha = digits[6][0].astype(np.float64) / 255
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 2] = 90
    rgba[..., 3] = digits[6][0]
    shown = rgba[..., :3] * alpha[..., None] + 255 * (1 - alpha[..., None])
    r, g, b = shown[..., 0], shown[..., 1], shown[..., 2]
    expected = (r * 299 + g * 587 + b * 114) / 1000
    grey = _load_one(tmp_path, Image.fromarray(rgba, mode="RGBA"))
    assert np.abs(grey.astype(float) - expected).max() <= 1.0
    assert grey[digits[6][0] == 0].min() == 255


def test_grey_transparent_grey_value_shows_white(tmp_path, digits):
    """Check that a tRNS transparent grey level shows as the white background."""
    digit = digits[0][0]
    grey = _load_one(tmp_path, digit, transparency=0)
    np.testing.assert_array_equal(grey, np.where(digit == 0, 255, digit))


def test_grey_palette_goes_through_its_colours(tmp_path, digits):
    """Check that a palette image gives the grey of its colours, not its indices."""
    digit = digits[8][0]
    image = Image.fromarray(digit, mode="L").convert("P")
    image.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    np.testing.assert_array_equal(_load_one(tmp_path, image), 255 - digit)


def test_grey_rgb_and_bilevel(tmp_path, digits):
    """Check RGB (Pillow's luma) and 1-bit images (0 or 255)."""
    digit = digits[9][0]
    rgb = np.stack([digit, digit // 2, 255 - digit], axis=-1)
    r, g, b = (rgb[..., k].astype(int) for k in range(3))
    luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    np.testing.assert_array_equal(_load_one(tmp_path / "rgb", rgb), luma)
    bilevel = Image.fromarray(digit > 127).convert("1")
    expected = np.where(digit > 127, 255, 0)
    np.testing.assert_array_equal(_load_one(tmp_path / "1", bilevel), expected)


# Bad inputs -------------------------------------------------------------------


def _escaped(path):
    return re.escape(repr(str(path)))


def test_missing_path(tmp_path):
    """Check that a missing folder raises FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match=_escaped(tmp_path / "nope")):
        load_image_folder(tmp_path / "nope")


def test_path_is_a_file(tmp_path):
    """Check that a file given as the folder raises NotADirectoryError."""
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=_escaped(tmp_path / "file.png")):
        load_image_folder(tmp_path / "file.png")


def test_missing_split(sample_layout):
    """Check that a missing split names its folder and lists the existing ones."""
    root, _ = sample_layout
    match = f"{_escaped(root / 'test')}.*'train', 'valid'"
    with pytest.raises(FileNotFoundError, match=match):
        load_image_folder(root, split="test")
    with pytest.raises(NotADirectoryError, match=_escaped(root / "labels.csv")):
        load_image_folder(root, split="labels.csv")


def test_missing_class(sample_layout):
    """Check that a requested class without a folder names the missing folder."""
    root, _ = sample_layout
    match = f"{_escaped(root / 'train' / '9')}.*\\['3', '7'\\]"
    with pytest.raises(FileNotFoundError, match=match):
        load_image_folder(root, split="train", classes=["3", "9"])


@pytest.mark.parametrize(
    "classes, error",
    [
        ("37", TypeError),
        ([], ValueError),
        (["3", 3], ValueError),
        ([None], TypeError),
        (["3", True], TypeError),
        ([3.0], TypeError),
        ([b"3"], TypeError),
    ],
)
def test_bad_classes_argument(sample_layout, classes, error):
    """Check that a malformed classes argument is refused with its value."""
    root, _ = sample_layout
    with pytest.raises(error, match=re.escape(repr(classes))):
        load_image_folder(root, split="train", classes=classes)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("path", None, TypeError),
        ("on_error", "ignore", ValueError),
        ("cache", 1.5, TypeError),
        ("split", 0, TypeError),
        ("split", "../train", ValueError),
        ("split", os.sep + "train", ValueError),
        ("split", "..", ValueError),
        ("split", "", ValueError),
        ("scale", "yes", TypeError),
        ("scale", None, TypeError),
        ("return_X_y", "no", TypeError),
        ("progress", "x", TypeError),
    ],
)
def test_bad_arguments(sample_layout, name, value, error):
    """Check that a bad argument is refused by name, with its value."""
    root, _ = sample_layout
    kwargs = {"path": root, name: value}
    with pytest.raises(error, match=f"`{name}`.*{re.escape(repr(value))}") as info:
        load_image_folder(**kwargs)
    assert info.type is error


@pytest.mark.parametrize("name", ["", ".", "..", "./3", "../valid/3"])
def test_class_names_that_are_paths(sample_layout, name):
    """Check that a class given as a path, not a folder name, is refused."""
    root, _ = sample_layout
    match = f"`classes` to name folders directly inside .*got {re.escape(repr(name))}"
    with pytest.raises(ValueError, match=match):
        load_image_folder(root, split="train", classes=["3", name])


def test_dangling_class_link(sample_layout):
    """Check that a class folder link to nothing is named, not passed over."""
    root, _ = sample_layout
    link = root / "train" / "8"
    link.symlink_to(root / "nowhere")
    match = f"{_escaped(link)} points to {_escaped(root / 'nowhere')}, which does not"
    with pytest.raises(ValueError, match=match):
        load_image_folder(root, split="train")
    load_image_folder(root, split="valid")


def test_hidden_class_requested(sample_layout):
    """Check that asking for a hidden folder as a class says it is hidden."""
    root, _ = sample_layout
    hidden = root / "train" / ".ipynb_checkpoints"
    assert hidden.is_dir()
    with pytest.raises(ValueError, match=f"{_escaped(hidden)} is hidden"):
        load_image_folder(root, split="train", classes=["3", ".ipynb_checkpoints"])


def test_no_class_folders(tmp_path, digits):
    """Check that a folder with images but no class folders names the folder."""
    _png(tmp_path / "a.png", digits[1][0])
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.raises(ValueError, match=f"No class folders in {_escaped(tmp_path)}"):
        load_image_folder(tmp_path)


def test_empty_class_folder(sample_layout):
    """Check that a class folder without images names that folder."""
    root, _ = sample_layout
    empty = root / "train" / "5"
    empty.mkdir()
    (empty / "labels.csv").write_text("name,label\n")
    (empty / ".hidden.png").write_bytes(b"")
    match = f"{_escaped(empty)} holds no image files; .* named \\*\\.bmp, .*\\*\\.png"
    with pytest.raises(ValueError, match=match):
        load_image_folder(root, split="train")


@pytest.mark.parametrize("damage", ["truncated", "not_png", "empty", "link_loop"])
def test_unreadable_image(sample_layout, damage):
    """Check that a damaged image raises OSError naming it, and skip mode warns."""
    root, expected = sample_layout
    bad = root / "train" / "7" / "0.png"
    good = (root / "train" / "7" / "2.png").read_bytes()
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "not_png":
        bad.write_text("this is not an image")
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        os.symlink(bad, bad)
    with pytest.raises(OSError, match=f"Cannot read the image {_escaped(bad)}"):
        load_image_folder(root, split="train")
    with pytest.warns(UserWarning, match=f"Skipped 1 unreadable .*{_escaped(bad)}"):
        bunch = load_image_folder(root, split="train", on_error="skip")
    assert str(bad) not in bunch.filenames
    np.testing.assert_array_equal(bunch.images * 255, expected["train"][0])
    np.testing.assert_array_equal(bunch.target, expected["train"][1])


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n broken", b"text", b""])
def test_unidentified_image_message_names_the_file(sample_layout, content):
    """Check that an unidentifiable file's error names its path and no object repr."""
    root, _ = sample_layout
    bad = root / "valid" / "3" / "2.png"
    bad.write_bytes(content)
    match = (
        f"^Cannot read the image {_escaped(bad)}: Pillow cannot identify it as an "
        "image \\(the file is damaged or not an image\\)\\.$"
    )
    with pytest.raises(OSError, match=match) as info:
        load_image_folder(root, split="valid")
    assert "object at 0x" not in str(info.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="file permissions do not bind the root user",
)
def test_unreadable_permissions(sample_layout):
    """Check that an image without read permission raises OSError naming it."""
    root, _ = sample_layout
    bad = root / "train" / "3" / "2.png"
    bad.chmod(0)
    with pytest.raises(OSError, match=_escaped(bad)):
        load_image_folder(root, split="train")


def test_skip_warning_counts_and_shows_first_names(tmp_path, digits):
    """Check that skip mode counts every bad file and lists only the first ones."""
    _png(tmp_path / "3" / "ok.png", digits[3][0])
    bad = [tmp_path / "3" / f"bad{i}.png" for i in range(7)]
    for path in bad:
        path.write_bytes(b"broken")
    match = f"Skipped 7 unreadable .*{_escaped(bad[0])}.*{_escaped(bad[4])}, \\.\\.\\."
    with pytest.warns(UserWarning, match=match):
        X, y = load_image_folder(tmp_path, on_error="skip", return_X_y=True)
    assert X.shape == (1, 784) and y.tolist() == [3]


def test_skipping_every_image_of_a_class_raises(tmp_path, digits):
    """Check that skip mode does not return a class that lost all its images."""
    _png(tmp_path / "3" / "ok.png", digits[3][0])
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "bad.png").write_bytes(b"broken")
    match = f"Every image file of the class folder {_escaped(tmp_path / '7')} is"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            load_image_folder(tmp_path, on_error="skip")
    X, y = load_image_folder(tmp_path, classes=["3"], on_error="skip", return_X_y=True)
    assert y.tolist() == [3]
    cache = tmp_path.parent / f"{tmp_path.name}_cache"
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, on_error="skip", cache=cache)
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def test_all_images_unreadable(tmp_path):
    """Check that skip mode with nothing readable raises rather than return empty."""
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "a.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=_escaped(tmp_path / "3" / "a.png")):
        load_image_folder(tmp_path, on_error="skip")


def test_images_of_different_sizes(sample_layout):
    """Check that the first image of another size is named with both sizes."""
    root, _ = sample_layout
    odd = _png(root / "train" / "7" / "5.png", np.zeros((20, 30), dtype=np.uint8))
    first = root / "train" / "3" / "10.png"
    match = f"{_escaped(odd)} has shape \\(20, 30\\).*{_escaped(first)}.*\\(28, 28\\)"
    with pytest.raises(ValueError, match=match):
        load_image_folder(root, split="train")


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_decompression_bomb(tmp_path, digits, monkeypatch, on_error):
    """Check that Pillow's decompression-bomb limit holds, even in skip mode."""
    bomb = _png(tmp_path / "3" / "big.png", np.zeros((40, 40), dtype=np.uint8))
    _png(tmp_path / "3" / "small.png", digits[3][0])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 700)
    with pytest.raises(Image.DecompressionBombError, match=_escaped(bomb)):
        load_image_folder(tmp_path, on_error=on_error)


def test_symlink_loop_class_folder(tmp_path, digits):
    """Check that a class link to itself raises ValueError, not a hang."""
    _png(tmp_path / "3" / "a.png", digits[3][0])
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(ValueError, match=f"{_escaped(tmp_path / 'loop')} is a loop"):
        load_image_folder(tmp_path)


def test_symlink_to_parent_class_folder(sample_layout):
    """Check that a class link back to its own split folder is refused."""
    root, _ = sample_layout
    link = root / "train" / "up"
    os.symlink(root / "train", link)
    with pytest.raises(ValueError, match=f"{_escaped(link)}.*symbolic link loop"):
        load_image_folder(root, split="train")


# Cache ------------------------------------------------------------------------


def _count_decodes(monkeypatch):
    calls = []
    decode = _decode.decode_file

    def counting(path, *args, **kwargs):
        calls.append(path)
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(_decode, "decode_file", counting)
    return calls


def _assert_same(a, b):
    for key in ("data", "images", "target"):
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == b[key].dtype
    assert a.filenames == b.filenames and a.target_names == b.target_names


def test_cache_reload_is_equal_and_decodes_nothing(
    sample_layout, tmp_path, monkeypatch
):
    """Check that a cached reload equals the first load without decoding."""
    root, _ = sample_layout
    cache = tmp_path / "cache"
    first = load_image_folder(root, split="train", cache=cache)
    calls = _count_decodes(monkeypatch)
    second = load_image_folder(root, split="train", cache=cache)
    assert calls == []
    _assert_same(first, second)
    raw = load_image_folder(root, split="train", cache=cache, scale=False)
    np.testing.assert_array_equal(raw.images, first.images * 255)
    assert len(list((cache / "image_folders").glob("*.npy"))) == 1


def test_cache_touched_file_is_reread(sample_layout, tmp_path, monkeypatch, digits):
    """Check that rewriting a file, keeping its size, or touching it invalidates."""
    root, _ = sample_layout
    cache = tmp_path / "cache"
    load_image_folder(root, split="train", cache=cache)
    target = root / "train" / "3" / "2.png"
    stat = target.stat()
    _png(target, 255 - _pillow_pixels(target))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    calls = _count_decodes(monkeypatch)
    bunch = load_image_folder(root, split="train", cache=cache, scale=False)
    assert len(calls) == len(bunch.filenames)
    i = bunch.filenames.index(str(target))
    np.testing.assert_array_equal(bunch.images[i], _pillow_pixels(target))
    calls.clear()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    load_image_folder(root, split="train", cache=cache)
    assert len(calls) == len(bunch.filenames)
    assert len(list((cache / "image_folders").glob("*.npy"))) == 1


def test_cache_added_file_is_seen(sample_layout, tmp_path, digits):
    """Check that a file added after caching appears in the next load."""
    root, _ = sample_layout
    cache = tmp_path / "cache"
    before = load_image_folder(root, split="valid", cache=cache)
    added = _png(root / "valid" / "7" / "99.png", digits[7][3])
    after = load_image_folder(root, split="valid", cache=cache, scale=False)
    assert len(after.filenames) == len(before.filenames) + 1
    i = after.filenames.index(str(added))
    np.testing.assert_array_equal(after.images[i], digits[7][3])


def test_cache_keeps_skipped_files_out(sample_layout, tmp_path, monkeypatch):
    """Check that a cached skip-mode load skips and warns the same way again."""
    root, _ = sample_layout
    bad = root / "train" / "3" / "0.png"
    bad.write_bytes(b"broken")
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match=_escaped(bad)):
        first = load_image_folder(root, split="train", cache=cache, on_error="skip")
    calls = _count_decodes(monkeypatch)
    with pytest.warns(UserWarning, match=_escaped(bad)):
        second = load_image_folder(root, split="train", cache=cache, on_error="skip")
    assert calls == []
    _assert_same(first, second)
    with pytest.raises(OSError, match=_escaped(bad)):
        load_image_folder(root, split="train", cache=cache)


def test_cache_true_uses_environment_folder(sample_layout, tmp_path, monkeypatch):
    """Check that cache=True writes under $SK_MEANCLF_CACHE."""
    root, _ = sample_layout
    monkeypatch.setenv("SK_MEANCLF_CACHE", str(tmp_path / "env_cache"))
    load_image_folder(root, split="valid", cache=True)
    assert len(list((tmp_path / "env_cache" / "image_folders").glob("*.npy"))) == 1


# Progress bar -----------------------------------------------------------------


def test_progress_bar_only_when_asked_or_on_a_terminal(sample_layout, capsys):
    """Check that the bar is off off-terminal by default and shown when forced."""
    root, _ = sample_layout
    load_image_folder(root, split="train")
    assert capsys.readouterr().err == ""
    load_image_folder(root, split="train", progress=True)
    assert "img" in capsys.readouterr().err
    load_image_folder(root, split="train", progress=False)
    assert capsys.readouterr().err == ""


# Benchmark script ---------------------------------------------------------------


def test_bench_loader_rows(sample_layout):
    """Check that the loader benchmark gives one row per loader, book first."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loader.py"
    spec = importlib.util.spec_from_file_location("bench_loader", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root, _ = sample_layout
    rows = bench.run(root, repeats=1)
    names = [name for name, _, _ in rows]
    assert names[-1] == "load_image_folder, cached"
    assert "load_image_folder, cold" in names
    if importlib.util.find_spec("torch") is not None:
        assert names[0] == bench.BOOK and rows[0][2] == 1.0
    for _, seconds, ratio in rows:
        assert seconds > 0 and (ratio is None or ratio > 0)


def test_docstring_names_existing_extras():
    """Check that every extra the loader's docstring names is one pyproject declares."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    named = re.findall(r"the ``([\w-]+)`` extra", load_image_folder.__doc__)
    assert named == ["fast"]
    assert set(named) <= set(extras)


def test_fetch_silences_only_torch_jit_warning(fastai_home):
    """Check that fetching shows no torch.jit.script FutureWarning, and others pass."""
    pytest.importorskip("fastai")
    code = (
        "import warnings\n"
        "from sk_meanclf.datasets import fetch_mnist_sample\n"
        "print(fetch_mnist_sample())\n"
        "warnings.warn('`torch.jit.script` is deprecated (after)', FutureWarning)\n"
    )
    env = dict(os.environ, FASTAI_HOME=str(fastai_home))
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-W", "always::FutureWarning", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{fastai_home / 'data' / 'mnist_sample'}\n"
    warned = [line for line in result.stderr.splitlines() if "FutureWarning" in line]
    assert len(warned) == 1
    assert "is deprecated (after)" in warned[0]
