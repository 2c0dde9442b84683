"""Decoding of image files into the 8-bit grey levels a person sees in them."""

import io
import os
import struct

import numpy as np

try:  # optional accelerator: libspng through pyspng, for plain 8-bit grey PNGs
    import pyspng
except ImportError:  # pragma: no cover - depends on the environment
    pyspng = None

# PNG signature, then the IHDR chunk (13 bytes of data): width, height, bit depth,
# colour type, ...
_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
_SIZE = struct.Struct(">II")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_BACKGROUND = 255  # transparent pixels are shown on white
_READ_SIZE = 1 << 16


def is_plain_grey_png(data, max_pixels):
    """Tell whether ``data`` is an 8-bit greyscale PNG that needs no conversion.

    Such a file (colour type 0, bit depth 8, no ``tRNS`` transparency) decodes to
    the same pixels with any conforming decoder, so a faster one may read it.
    Images above ``max_pixels`` are left to Pillow, which applies its
    decompression-bomb check to them.
    """
    if data[:16] != _PNG_HEAD or data[24:26] != b"\x08\x00" or len(data) < 33:
        return False
    if max_pixels is not None:
        width, height = _SIZE.unpack_from(data, 16)
        if width * height > max_pixels:
            return False
    return b"tRNS" not in data


def pil_to_grey(image):
    """Convert an open Pillow image to a 2-D uint8 array of grey levels.

    Plain 8-bit greyscale is taken as is. 16-bit greyscale is scaled to 0..255
    (rounded, never clipped). Transparent pixels, from an alpha channel or a
    ``transparency`` entry (``tRNS``), are composited on white. Every other mode,
    palette images included, goes through Pillow's own conversion to ``"L"``
    (ITU-R 601-2 luma of the displayed colours).
    """
    from PIL import Image

    mode = image.mode
    transparency = image.info.get("transparency")
    if mode in _SIXTEEN_BIT_MODES:
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        # 65535 / 255 = 257, so this maps 0 -> 0 and 65535 -> 255, rounding.
        grey = ((wide + 128) // 257).astype(np.uint8)
        if isinstance(transparency, int):
            grey[wide == transparency] = _BACKGROUND
        return grey
    if mode in _ALPHA_MODES or transparency is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (_BACKGROUND,) * 3 + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("L"))
    if mode == "L":
        return np.asarray(image)
    return np.asarray(image.convert("L"))


def read_bytes(path):
    """Return the content of the file at ``path`` (with as few calls as it takes)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:
            return data
        chunks = [data]
        while data:
            data = os.read(fd, _READ_SIZE)
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_file(path, max_pixels):
    """Read the image file at ``path`` as a 2-D uint8 array of grey levels.

    ``max_pixels`` is Pillow's ``Image.MAX_IMAGE_PIXELS``, passed in so that it
    is looked up once per load. Errors are Pillow's own (``OSError`` for
    unreadable, truncated or unknown files, ``PIL.Image.DecompressionBombError``
    for oversized images).
    """
    data = read_bytes(path)
    if pyspng is not None and is_plain_grey_png(data, max_pixels):
        try:
            return pyspng.load(data)
        except RuntimeError:
            pass  # damaged or unusual: Pillow decides, and words any error
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return pil_to_grey(image)
