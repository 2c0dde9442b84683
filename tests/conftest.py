"""Shared fixtures: the real MNIST data, found or extracted at run time.

Nothing here downloads. MNIST_SAMPLE comes from ``$FASTAI_HOME/data/mnist_sample``
when it exists (as ``.ci/run`` arranges), else from the archive in the shared data
folder beside the checkout, extracted once per session into a temporary folder.
Outside CI a missing dataset skips the tests that need it, saying so; under
``CI=true`` it fails them.
"""

import gzip
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("SK_MEANCLF_SHARED_DATA", REPO.parent / "shared" / "data")
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(reason):
    where = "set SK_MEANCLF_SHARED_DATA to the folder holding the real data"
    if IN_CI:
        pytest.fail(f"{reason} ({where}); under CI=true the real data must be present.")
    pytest.skip(f"{reason} ({where}); real-data tests run under CI.")


@pytest.fixture(scope="session")
def fastai_home(tmp_path_factory):
    """A FASTAI_HOME folder whose ``data/mnist_sample`` holds the real MNIST_SAMPLE."""
    home = os.environ.get("FASTAI_HOME")
    if home and (Path(home) / "data" / "mnist_sample").is_dir():
        return Path(home)
    archive = SHARED_DATA / "mnist_sample.tgz"
    if not archive.is_file():
        _missing(
            "MNIST_SAMPLE not found: neither $FASTAI_HOME/data/mnist_sample "
            f"nor {archive} exists"
        )
    home = tmp_path_factory.mktemp("fastai_home")
    with tarfile.open(archive) as tar:
        tar.extractall(home / "data", filter="data")
    return home


@pytest.fixture(scope="session")
def mnist_sample_path(fastai_home):
    """The real MNIST_SAMPLE folder (``train``, ``valid``, ``labels.csv``)."""
    return fastai_home / "data" / "mnist_sample"


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="session")
def mnist_t10k():
    """The MNIST test set: images (10000, 28, 28) uint8 and labels (10000,) uint8."""
    folder = SHARED_DATA / "mnist_t10k"
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        _missing(f"The MNIST test set was not found in {folder}")
    return _read_idx(images), _read_idx(labels)
