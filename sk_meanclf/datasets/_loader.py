"""Loading of image folders (``<root>/[<split>/]<class>/<image>``) into arrays."""

import errno
import logging
import os
import re
import struct
import sys
import warnings
import zlib

import numpy as np
from sklearn.utils import Bunch

from sk_meanclf.datasets import _cache, _decode

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {
        ".bmp",
        ".gif",
        ".jpeg",
        ".jpg",
        ".pbm",
        ".pgm",
        ".png",
        ".pnm",
        ".ppm",
        ".tif",
        ".tiff",
        ".webp",
    }
)
# A canonical decimal integer: no sign, no leading zero, no space or underscore,
# so that two folder names never stand for the same integer label.
_INTEGER = re.compile(r"0|[1-9][0-9]*")
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_PROGRESS_STEP = 256
_SHOWN_SKIPPED = 5


def _is_hidden(name):
    return name.startswith(".")


def _is_plain_name(name):
    """Tell whether ``name`` names an entry of a folder, not a path."""
    separators = {os.sep, os.altsep} - {None}
    return name not in ("", ".", "..") and not any(sep in name for sep in separators)


def _subfolders(folder, strict=False):
    """Return the names of the visible sub-folders of ``folder``, sorted.

    With ``strict``, a visible symbolic link to nothing raises a ValueError
    instead of being passed over, since it may stand for a class folder.
    """
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise ValueError(
                        f"The symbolic link {entry.path!r} is a loop "
                        "(it never reaches a folder)."
                    ) from exc
                raise
            if is_dir:
                names.append(entry.name)
            elif strict and entry.is_symlink() and not os.path.exists(entry.path):
                raise ValueError(
                    f"The symbolic link {entry.path!r} points to "
                    f"{os.readlink(entry.path)!r}, which does not exist; repair "
                    "or remove it."
                )
    return sorted(names)


def _check_not_a_loop(class_dir, base):
    """Refuse a class folder that is a link back to ``base`` or one of its parents."""
    if not os.path.islink(class_dir):
        return
    target = os.path.realpath(class_dir)
    here = os.path.realpath(base)
    if here == target or here.startswith(target.rstrip(os.sep) + os.sep):
        raise ValueError(
            f"The class folder {class_dir!r} is a symbolic link to {target!r}, "
            f"which contains it: a symbolic link loop."
        )


def _list_images(class_dir, with_stat):
    """Return the image file names of ``class_dir``, sorted, and their signature.

    The signature is a string holding the name, size, modification and status
    change times and inode of every file (or the error met reading them;
    decoding then reports the file), or None when ``with_stat`` is False. The
    change time and inode catch a rewrite within the file system's timestamp
    resolution when it changes them.
    """
    extensions = IMAGE_EXTENSIONS
    found = []
    with os.scandir(class_dir) as entries:
        for entry in entries:
            name = entry.name
            if name[0] == "." or name[name.rfind(".") :].lower() not in extensions:
                continue
            try:
                if entry.is_dir():
                    continue
            except OSError:
                pass  # a link loop named like an image: decoding reports it
            if with_stat:
                try:
                    st = entry.stat()
                    found.append(
                        (name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                    )
                except OSError as exc:
                    found.append((name, -1, exc.errno, 0, 0))
            else:
                found.append(name)
    found.sort()
    if not with_stat:
        return found, None
    signature = "\n".join(f"{n}\0{s}\0{m}\0{c}\0{i}" for n, s, m, c, i in found)
    return [item[0] for item in found], signature


def _class_order(names):
    """Sort class folder names: by value when all are integers, else as text.

    Only canonical integers (``"0"``, ``"7"``, ``"10"``, not ``"03"``) count, so
    that names and integer labels map one to one.
    """
    if names and all(_INTEGER.fullmatch(n) for n in names):
        return sorted(names, key=int), True
    return sorted(names), False


def _resolve_classes(base, classes):
    available = _subfolders(base, strict=True)
    if classes is None:
        if not available:
            raise ValueError(
                f"No class folders in {base!r}: expected images in "
                "<folder>/<class>/<image>."
            )
        return _class_order(available)
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise TypeError(
            f"Expected `classes` to be None or a list of class folder names, "
            f"got {classes!r}."
        )
    wanted = []
    for name in classes:
        if isinstance(name, (bool, np.bool_)) or not isinstance(
            name, (str, int, np.integer)
        ):
            raise TypeError(
                "Expected `classes` to hold class folder names (str or int), got "
                f"{name!r} in {classes!r}."
            )
        wanted.append(str(name))
    if not wanted:
        raise ValueError(
            f"Expected `classes` to name at least one class, got {classes!r}."
        )
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"Expected distinct names in `classes`, got {classes!r}.")
    for name in wanted:
        folder = os.path.join(base, name)
        if not _is_plain_name(name):
            raise ValueError(
                "Expected `classes` to name folders directly inside "
                f"{base!r}, got {name!r}."
            )
        if _is_hidden(name):
            raise ValueError(
                f"The class folder {folder!r} is hidden (its name starts with a "
                "dot); hidden folders are never read as classes."
            )
        if name not in available:
            raise FileNotFoundError(
                f"Class folder {folder!r} not found; the classes in {base!r} "
                f"are {available!r}."
            )
    return _class_order(wanted)


def _reason(exc):
    """Say why a file could not be decoded, without Pillow's in-memory file repr."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        # Pillow's message names the in-memory buffer it was given, not the file.
        return (
            "Pillow cannot identify it as an image (the file is damaged or not "
            "an image)."
        )
    reason = " ".join(str(exc).split()).rstrip(".")
    return f"{reason or type(exc).__name__}."


def _progress_bar(progress, total):
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="Loading images", leave=False)


def _decode_all(paths, on_error, progress):
    """Decode ``paths`` into one (n, h, w) uint8 array and a mask of kept files."""
    from PIL import Image

    n = len(paths)
    kept = np.ones(n, dtype=bool)
    images = None
    first = None
    skipped = []
    max_pixels = Image.MAX_IMAGE_PIXELS
    decode = _decode.decode_file
    bar = _progress_bar(progress, n)
    try:
        for i, path in enumerate(paths):
            try:
                grey = decode(path, max_pixels)
            except Image.DecompressionBombError as exc:
                raise Image.DecompressionBombError(
                    f"Refusing to decode {path!r}: {exc}"
                ) from exc
            except _UNREADABLE as exc:
                if on_error == "raise":
                    raise OSError(
                        f"Cannot read the image {path!r}: {_reason(exc)}"
                    ) from exc
                kept[i] = False
                skipped.append(path)
                continue
            if images is None:
                first = path
                images = np.empty((n, *grey.shape), dtype=np.uint8)
            elif grey.shape != images.shape[1:]:
                raise ValueError(
                    f"The image {path!r} has shape {grey.shape} (height, width), "
                    f"but the first image read, {first!r}, has shape "
                    f"{images.shape[1:]}; all images must have the same size."
                )
            images[i] = grey
            if bar is not None and i % _PROGRESS_STEP == _PROGRESS_STEP - 1:
                bar.update(_PROGRESS_STEP)
        if bar is not None:
            bar.update(n - bar.n)
    finally:
        if bar is not None:
            bar.close()
    if images is None:
        raise ValueError(f"None of the {n} image files could be read: {skipped[:3]!r}.")
    if skipped:
        images = images[kept]
    return images, kept


def load_image_folder(
    path,
    *,
    split=None,
    classes=None,
    return_X_y=False,
    scale=True,
    cache=False,
    on_error="raise",
    progress=None,
):
    """Load a folder of images, one sub-folder per class, into ``X, y`` arrays.

    Reads ``path/<class>/<image>``, or ``path/<split>/<class>/<image>`` when
    ``split`` is given: the layout of fastai's MNIST_SAMPLE and MNIST_TINY
    (``train`` and ``valid`` holding ``3`` and ``7``) and of its full MNIST
    (``training`` and ``testing`` holding ``0`` to ``9``). Every image becomes a
    row of grey levels, in the order of the book's ``.ls().sorted()``: classes
    sorted, files sorted by name within a class.

    Parameters
    ----------
    path : str or path-like
        The dataset folder.
    split : str, default=None
        Sub-folder of ``path`` to read, such as ``"train"`` or ``"valid"``.
        None reads the class folders directly under ``path``.
    classes : list of str or int, default=None
        Class folder names to read, for instance ``["3", "7"]`` from full MNIST.
        None reads every visible sub-folder.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    scale : bool, default=True
        Scale the grey levels to float32 in [0, 1] (divided by 255, as the book
        does). False keeps them as uint8 in 0..255.
    cache : bool or str or path-like, default=False
        Keep the decoded images in an on-disk cache and reuse them while no
        image file of the folder was added, removed, renamed, resized or
        touched. True uses ``$SK_MEANCLF_CACHE`` when set, else
        ``$XDG_CACHE_HOME/sk_meanclf``, else ``~/.cache/sk_meanclf``; a path
        uses that folder.
    on_error : {"raise", "skip"}, default="raise"
        What to do with an image file that cannot be read (damaged, truncated,
        not an image): raise an ``OSError`` naming it, or leave it out and warn
        with their count and first names.
    progress : bool, default=None
        Show a tqdm progress bar. None shows it only when standard error is a
        terminal.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_images, height * width)
            One flattened image per row, float32 in [0, 1] (uint8 when
            ``scale=False``).
        target : ndarray of shape (n_images,)
            The class of each image: integers when every class folder name is
            an integer written without sign or leading zero (as in MNIST), so
            that names and integers map one to one; else the folder names as
            strings (``"03"`` and ``"3"`` stay two classes).
        target_names : list of str
            The class folder names, in the order read.
        images : ndarray of shape (n_images, height, width)
            The same pixels as ``data``, as images.
        filenames : list of str
            The full path of each image.
        image_shape : tuple of int
            ``(height, width)``.

    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        ``path``, the ``split`` folder or a folder named in ``classes`` does not
        exist.
    NotADirectoryError
        ``path`` or the ``split`` folder is not a folder.
    TypeError
        ``path``, ``split``, ``classes``, ``cache`` or a switch is of the wrong
        type.
    ValueError
        No class folders, an empty class folder (or one whose every image is
        unreadable, with ``on_error="skip"``), images of different sizes, a
        class folder that is hidden, a symbolic link loop or a link to nothing,
        or a ``split`` or class that is not a single folder name.
    OSError
        An image file cannot be read (with ``on_error="raise"``).
    PIL.Image.DecompressionBombError
        An image exceeds Pillow's ``MAX_IMAGE_PIXELS`` twice over, whatever
        ``on_error`` says.

    See Also
    --------
    sklearn.datasets.load_files : Load text files with categories as sub-folders.
    fetch_mnist_sample : Fetch fastai's MNIST_SAMPLE folder.

    Notes
    -----
    Hidden entries (names starting with a dot, such as ``.ipynb_checkpoints``)
    and files that are not images by their extension (such as ``labels.csv``)
    are ignored. A class folder may be a symbolic link; it is read once, and a
    link back to a folder that contains it is refused.

    Grey levels are the ones a person sees: 8-bit greyscale is taken as is,
    16-bit greyscale is scaled to 0..255 (rounded, not clipped), transparent
    pixels are shown on a white background, and colour and palette images go
    through Pillow's conversion to luma. Plain 8-bit greyscale PNGs are decoded
    with libspng when ``pyspng`` is installed (the ``fast`` extra), which
    gives Pillow's pixels faster.

    The cache checks the name, size, modification time, status change time and
    inode of every image file on each load, so a changed folder is never served
    from it. That check costs one ``stat`` call per file, which bounds the speed
    of a cached load (50 to 120 ms for the 14,434 files of MNIST_SAMPLE on the
    two-core machines of the benchmarks). Cache files (``.npy``) hold the uint8
    images; an older version for the same folder and arguments is deleted when
    a new one is written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from sk_meanclf.datasets import load_image_folder
    >>> root = Path(tempfile.mkdtemp())
    >>> for label, grey in [("3", 0), ("3", 255), ("7", 51)]:
    ...     (root / "train" / label).mkdir(parents=True, exist_ok=True)
    ...     name = f"{grey}.png"
    ...     Image.new("L", (4, 2), grey).save(root / "train" / label / name)
    >>> bunch = load_image_folder(root, split="train")
    >>> bunch.data.shape, bunch.image_shape
    ((3, 8), (2, 4))
    >>> bunch.target
    array([3, 3, 7])
    >>> bunch.data[:, 0]
    array([0. , 1. , 0.2], dtype=float32)
    >>> X, y = load_image_folder(root, split="train", return_X_y=True, scale=False)
    >>> X[:, 0], y
    (array([  0, 255,  51], dtype=uint8), array([3, 3, 7]))
    >>> import shutil
    >>> shutil.rmtree(root)
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"Expected `on_error` to be 'raise' or 'skip', got {on_error!r}."
        )
    if cache is not False and not isinstance(cache, (bool, str, os.PathLike)):
        raise TypeError(
            f"Expected `cache` to be a bool or a folder path, got {cache!r}."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected `path` to be a folder path, got {path!r}.")
    for name, value in (("return_X_y", return_X_y), ("scale", scale)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"Expected `{name}` to be True or False, got {value!r}.")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(
            f"Expected `progress` to be None, True or False, got {progress!r}."
        )
    root = os.path.abspath(os.fspath(path))
    if not os.path.exists(root):
        raise FileNotFoundError(f"The image folder {root!r} does not exist.")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"The image folder {root!r} is not a folder.")
    base = root
    if split is not None:
        if not isinstance(split, str):
            raise TypeError(
                f"Expected `split` to be None or a folder name, got {split!r}."
            )
        if not _is_plain_name(split):
            raise ValueError(
                "Expected `split` to name a folder directly inside `path`, such as "
                f"'train', got {split!r}."
            )
        base = os.path.join(root, split)
        if not os.path.exists(base):
            raise FileNotFoundError(
                f"The split folder {base!r} does not exist; the folders in "
                f"{root!r} are {_subfolders(root)!r}."
            )
        if not os.path.isdir(base):
            raise NotADirectoryError(f"The split folder {base!r} is not a folder.")

    class_names, integer_labels = _resolve_classes(base, classes)
    paths = []
    labels = []
    listing = []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(base, name)
        _check_not_a_loop(class_dir, base)
        names, signature = _list_images(class_dir, with_stat=cache is not False)
        if not names:
            inner = _subfolders(class_dir)
            hint = (
                f"; it holds the folders {inner!r}: pass `split={name!r}` if "
                "it is a split"
                if inner
                else ""
            )
            raise ValueError(
                f"The class folder {class_dir!r} holds no image files{hint}; "
                f"image files are named *{', *'.join(sorted(IMAGE_EXTENSIONS))}."
            )
        prefix = class_dir + os.sep
        paths.extend([prefix + n for n in names])
        labels.append(np.full(len(names), label, dtype=np.intp))
        if cache is not False:
            listing.append(f"{name}\n{signature}")
    labels = np.concatenate(labels)
    logger.debug(
        "Found %d image files in %d classes under %s",
        len(paths),
        len(class_names),
        base,
    )

    images = None
    if cache is not False:
        home = _cache.get_cache_home(cache)
        cache_file, stem = _cache.cache_paths(
            home, root, split, class_names, on_error, listing
        )
        stored = _cache.read(cache_file, len(paths)) if cache_file.exists() else None
        if stored is not None:
            logger.debug("Loaded %s from the cache %s", base, cache_file)
            images, kept = stored
    if images is None:
        images, kept = _decode_all(paths, on_error, progress)
        # Checked before caching, so that a cached load never holds an empty class.
        emptied = np.flatnonzero(
            np.bincount(labels[kept], minlength=len(class_names)) == 0
        )
        if emptied.size:
            raise ValueError(
                "Every image file of the class folder "
                f"{os.path.join(base, class_names[emptied[0]])!r} is unreadable, "
                "so the class would be empty; repair or remove its files, or "
                "leave it out of `classes`."
            )
        if cache is not False:
            _cache.write(cache_file, stem, images, kept)
            logger.debug("Wrote the cache %s", cache_file)
    if not kept.all():
        skipped = [p for p, k in zip(paths, kept, strict=True) if not k]
        shown = ", ".join(repr(p) for p in skipped[:_SHOWN_SKIPPED])
        more = "" if len(skipped) <= _SHOWN_SKIPPED else ", ..."
        warnings.warn(
            f"Skipped {len(skipped)} unreadable image file(s): {shown}{more}.",
            UserWarning,
            stacklevel=2,
        )
        paths = [p for p, k in zip(paths, kept, strict=True) if k]
        labels = labels[kept]

    n, height, width = images.shape
    if scale:
        # One pass, and the same float32 division as the book's .float() / 255.
        images = np.divide(images, np.float32(255), dtype=np.float32)
    data = images.reshape(n, height * width)
    if integer_labels:
        target = np.array([int(c) for c in class_names])[labels]
    else:
        target = np.array(class_names)[labels]
    if return_X_y:
        return data, target
    return Bunch(
        data=data,
        target=target,
        target_names=list(class_names),
        images=images,
        filenames=paths,
        image_shape=(height, width),
    )
