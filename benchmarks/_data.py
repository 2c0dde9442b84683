"""Real MNIST data for the benchmarks, read from the shared data folder.

The shared folder is ``../shared/data`` beside the checkout, or
``$SK_MEANCLF_SHARED_DATA``. Nothing is downloaded and nothing is copied into the
repository: MNIST_SAMPLE comes from ``$FASTAI_HOME/data/mnist_sample`` when it
exists, else from the shared archive extracted into a temporary folder.
"""

import gzip
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shared_data():
    """Return the shared data folder."""
    return Path(
        os.environ.get("SK_MEANCLF_SHARED_DATA", REPO.parent / "shared" / "data")
    )


def read_idx(path):
    """Return the array stored in a gzipped IDX file (the MNIST format)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"Expected an IDX file of unsigned bytes, got {str(path)!r}.")
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_t10k():
    """Return the MNIST test set: X (10000, 784) float32 in [0, 1], y (10000,)."""
    folder = shared_data() / "mnist_t10k"
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= np.float32(255)
    return X, labels.astype(np.intp)


def tile(X, y, n_rows):
    """Repeat the rows of `X` and `y` up to `n_rows` rows, without a float copy."""
    out = np.empty((n_rows, X.shape[1]), dtype=X.dtype)
    for start in range(0, n_rows, X.shape[0]):
        stop = min(start + X.shape[0], n_rows)
        out[start:stop] = X[: stop - start]
    return out, np.resize(y, n_rows)


def mnist_sample_folder(stack):
    """Return the MNIST_SAMPLE folder, extracting the archive when needed.

    Parameters
    ----------
    stack : contextlib.ExitStack
        Holds the temporary folder of an extracted archive until it closes.
    """
    home = os.environ.get("FASTAI_HOME")
    if home and (Path(home) / "data" / "mnist_sample").is_dir():
        return Path(home) / "data" / "mnist_sample"
    archive = shared_data() / "mnist_sample.tgz"
    if not archive.is_file():
        raise FileNotFoundError(
            "Expected MNIST_SAMPLE in $FASTAI_HOME/data/mnist_sample or the "
            f"archive {str(archive)!r}; found neither."
        )
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "mnist_sample"


def read_png_classes(root):
    """Return X (n, 784) float32 in [0, 1] and y from the class folders of `root`."""
    from PIL import Image

    rows, labels = [], []
    for k, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(folder.glob("*.png")):
            with Image.open(path) as image:
                rows.append(np.asarray(image, dtype=np.uint8).reshape(-1))
            labels.append(k)
    X = np.stack(rows).astype(np.float32)
    X /= np.float32(255)
    return X, np.array(labels, dtype=np.intp)
