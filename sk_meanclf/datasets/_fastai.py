"""Fetching fastai's MNIST datasets through fastai's own ``untar_data``."""

import logging
import os
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

# fastai's URLs attribute -> the folder its archive extracts to.
FASTAI_DATASETS = {
    "MNIST_SAMPLE": "mnist_sample",
    "MNIST_TINY": "mnist_tiny",
    "MNIST": "mnist_png",
}


def _fastai_home():
    return Path(os.path.expanduser(os.environ.get("FASTAI_HOME", "~/.fastai")))


def fetch_fastai(name):
    """Return the folder of a fastai MNIST dataset, downloading it if needed.

    Calls fastai's ``untar_data(URLs.<name>)``, which honours ``$FASTAI_HOME``
    (default ``~/.fastai``) as read at call time and downloads nothing when the
    extracted folder already sits in its ``data`` folder; that is how it works
    without network.

    Parameters
    ----------
    name : {"MNIST_SAMPLE", "MNIST_TINY", "MNIST"}
        The dataset, in any case. MNIST_SAMPLE and MNIST_TINY hold ``train``
        and ``valid`` folders of 3s and 7s; MNIST (``mnist_png``) holds
        ``training`` and ``testing`` folders of ``0`` to ``9``.

    Returns
    -------
    path : pathlib.Path
        The extracted dataset folder, for :func:`load_image_folder`.

    Raises
    ------
    ValueError
        ``name`` is not one of the accepted names.
    ImportError
        fastai is not installed.
    OSError
        The download failed (for instance without network); the message says
        where to put the extracted folder to work offline.

    See Also
    --------
    load_image_folder : Load the fetched folder into ``X, y``.

    Examples
    --------
    >>> from sk_meanclf.datasets import fetch_fastai
    >>> fetch_fastai("CIFAR")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Expected `name` to be one of 'MNIST_SAMPLE', ..., got 'CIFAR'.
    >>> path = fetch_fastai("mnist_sample")  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
    ['labels.csv', 'train', 'valid']
    """
    key = name.upper() if isinstance(name, str) else None
    if key not in FASTAI_DATASETS:
        accepted = ", ".join(repr(n) for n in FASTAI_DATASETS)
        raise ValueError(
            f"Expected `name` to be one of {accepted} (in any case), got {name!r}."
        )
    try:
        # Importing fastai makes torch warn that torch.jit.script is deprecated,
        # which users of this function cannot act on; silence that warning only.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"`torch\.jit\.script` is deprecated",
                category=FutureWarning,
            )
            from fastai.data.external import URLs, untar_data
    except ImportError as exc:
        raise ImportError(
            f"fetch_fastai({name!r}) needs fastai; install it with "
            'pip install "sk_meanclf[fastai]".'
        ) from exc

    home = _fastai_home()
    url = getattr(URLs, key)
    try:
        # Passing base reads $FASTAI_HOME now rather than fastai's cached config.
        path = untar_data(url, base=str(home))
    except OSError as exc:
        folder = home / "data" / FASTAI_DATASETS[key]
        raise OSError(
            f"Could not fetch {key} from {url!r} with fastai's untar_data: {exc}. "
            f"To work offline, put the extracted folder at {str(folder)!r} "
            "($FASTAI_HOME/data/<folder>, with FASTAI_HOME defaulting to "
            "~/.fastai), or pass the folder's path to load_image_folder."
        ) from exc
    logger.debug("fastai's %s is at %s", key, path)
    return Path(path)


def fetch_mnist_sample():
    """Return fastai's MNIST_SAMPLE folder (3s and 7s), downloading it if needed.

    Same as ``fetch_fastai("MNIST_SAMPLE")``: ``train`` and ``valid`` folders
    holding ``3`` and ``7`` (6131, 6265, 1010 and 1028 images of 28x28 pixels)
    and a ``labels.csv``.

    Returns
    -------
    path : pathlib.Path
        ``$FASTAI_HOME/data/mnist_sample``.

    See Also
    --------
    fetch_fastai : Fetch any of the fastai MNIST datasets.

    Examples
    --------
    >>> from sk_meanclf.datasets import fetch_mnist_sample, load_image_folder
    >>> path = fetch_mnist_sample()  # doctest: +SKIP
    >>> X, y = load_image_folder(path, split="train", return_X_y=True)  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (12396, 784)
    """
    return fetch_fastai("MNIST_SAMPLE")


def fetch_mnist_tiny():
    """Return fastai's MNIST_TINY folder (3s and 7s), downloading it if needed.

    Same as ``fetch_fastai("MNIST_TINY")``: ``train`` and ``valid`` folders
    holding ``3`` and ``7``, plus a ``labels.csv``.

    Returns
    -------
    path : pathlib.Path
        ``$FASTAI_HOME/data/mnist_tiny``.

    See Also
    --------
    fetch_fastai : Fetch any of the fastai MNIST datasets.

    Examples
    --------
    >>> from sk_meanclf.datasets import fetch_mnist_tiny, load_image_folder
    >>> path = fetch_mnist_tiny()  # doctest: +SKIP
    >>> bunch = load_image_folder(path, split="valid")  # doctest: +SKIP
    >>> bunch.target_names  # doctest: +SKIP
    ['3', '7']
    """
    return fetch_fastai("MNIST_TINY")


def fetch_mnist():
    """Return fastai's full MNIST folder (``mnist_png``), downloading it if needed.

    Same as ``fetch_fastai("MNIST")``: ``training`` and ``testing`` folders
    holding ``0`` to ``9``.

    Returns
    -------
    path : pathlib.Path
        ``$FASTAI_HOME/data/mnist_png``.

    See Also
    --------
    fetch_fastai : Fetch any of the fastai MNIST datasets.

    Examples
    --------
    >>> from sk_meanclf.datasets import fetch_mnist, load_image_folder
    >>> path = fetch_mnist()  # doctest: +SKIP
    >>> X, y = load_image_folder(  # doctest: +SKIP
    ...     path, split="testing", classes=["3", "7"], return_X_y=True
    ... )
    """
    return fetch_fastai("MNIST")
