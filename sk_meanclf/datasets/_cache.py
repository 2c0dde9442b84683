"""An on-disk cache of decoded image folders, keyed by their file listing."""

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Bump when the decoded pixels of a file could change (new grey conversion, ...).
_FORMAT = "sk_meanclf-image-folder-1"


def get_cache_home(cache=True):
    """Return the cache folder for ``cache`` (``True`` or a folder path).

    ``True`` selects ``$SK_MEANCLF_CACHE`` when set, else
    ``$XDG_CACHE_HOME/sk_meanclf``, else ``~/.cache/sk_meanclf``.

    Examples
    --------
    >>> import os
    >>> from sk_meanclf.datasets._cache import get_cache_home
    >>> str(get_cache_home("/tmp/my_cache")) == os.path.abspath("/tmp/my_cache")
    True
    """
    if cache is True:
        home = os.environ.get("SK_MEANCLF_CACHE")
        if not home:
            xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
            home = os.path.join(xdg, "sk_meanclf")
        return Path(os.path.abspath(os.path.expanduser(home)))
    return Path(os.path.abspath(os.path.expanduser(os.fspath(cache))))


def _digest(*parts):
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def cache_paths(home, root, split, class_names, on_error, listing):
    """Return the cache file for this load and the prefix shared by its versions.

    ``listing`` is one string per image file holding its class, name, size and
    modification time, so adding, removing, renaming, touching or rewriting any
    file gives another cache file.
    """
    prefix = _digest(_FORMAT, root, str(split), "\n".join(class_names), on_error)
    content = _digest(*listing)
    name = os.path.basename(root.rstrip(os.sep)) or "root"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    stem = f"{safe}-{prefix[:16]}"
    return home / "image_folders" / f"{stem}-{content}.npz", stem


def read(path, n_files):
    """Return ``(images, kept)`` stored at ``path``, or None when it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            images = stored["images"]
            kept = stored["kept"]
    except (OSError, ValueError, KeyError) as exc:
        logger.debug("Cache file %s unusable: %s", path, exc)
        return None
    if kept.shape != (n_files,) or images.shape[0] != int(kept.sum()):
        return None
    return images, kept


def write(path, stem, images, kept):
    """Store ``images`` and ``kept`` at ``path`` and drop older versions."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, images=images, kept=kept)
        os.replace(tmp, path)
        for old in folder.glob(f"{stem}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(
            f"Could not write the image cache {str(path)!r}: {exc}.",
            RuntimeWarning,
            stacklevel=3,
        )
