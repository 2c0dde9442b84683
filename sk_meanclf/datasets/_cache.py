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

    ``listing`` holds, per class, the name, size, modification and status
    change times and inode of each image file, so adding, removing, renaming,
    touching or rewriting any file gives another cache file.
    """
    prefix = _digest(_FORMAT, root, str(split), "\n".join(class_names), on_error)
    content = _digest(*listing)
    name = os.path.basename(root.rstrip(os.sep)) or "root"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    stem = f"{safe}-{prefix[:16]}"
    return home / "image_folders" / f"{stem}-{content}.npy", stem


def _kept_path(path):
    return path.with_name(path.stem + ".kept.npy")


def read(path, n_files):
    """Return ``(images, kept)`` stored at ``path``, or None when it is unusable.

    ``kept`` marks the files that were decoded (the others were skipped as
    unreadable); it has its own file only when some were skipped.
    """
    try:
        images = np.load(path, allow_pickle=False)
        if images.shape[0] == n_files:
            kept = np.ones(n_files, dtype=bool)
        else:
            kept = np.load(_kept_path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.debug("Cache file %s unusable: %s", path, exc)
        return None
    if images.ndim != 3 or kept.shape != (n_files,):
        return None
    if images.shape[0] != int(kept.sum()):
        return None
    return images, kept


def _save(path, array):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def write(path, stem, images, kept):
    """Store ``images`` (and ``kept`` when needed) at ``path``; drop older versions."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{stem}-*.npy"):
            old.unlink(missing_ok=True)
        if not kept.all():
            _save(_kept_path(path), kept)
        _save(path, images)
    except OSError as exc:
        warnings.warn(
            f"Could not write the image cache {str(path)!r}: {exc}.",
            RuntimeWarning,
            stacklevel=3,
        )
