"""Decode one image file, whatever state it is in, into a uint8 RGB square at training size.

Every way a real folder can be broken ends here either as a converted image or as `SkipItem`
with a reason a person can act on.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sslstudio.core.data.scan import not_regular_reason, os_error_reason, register_file_kind

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
register_file_kind("image", IMAGE_EXTENSIONS)

# Below this, an image carries too little to crop two views from.
MIN_SIDE = 8
# Pillow's own bomb threshold is 89 Mpx (warning) / 179 Mpx (error); we refuse at the warning,
# since a legitimate photo of that size is rare and a hostile one can exhaust memory.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class SkipItem(Exception):
    """This file cannot be used; the message is the reason shown in the scan report."""


# O_NONBLOCK: a file swapped for a named pipe after it was listed must not block the open
# waiting for a writer; regular files ignore the flag.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def open_image_file(path: Path):
    """The one place an image file is opened (never blocking on a pipe or a device): what
    tests replace to play a failing disk."""
    return os.fdopen(os.open(path, _OPEN_FLAGS), "rb")


def open_regular_file(path: Path):
    """(binary handle, fstat) for a regular file; raises SkipItem for anything else, before
    opening it when the path already says so, and again on the descriptor in case the file was
    replaced between the two."""
    problem = not_regular_reason(os.stat(path).st_mode)
    if problem is not None:
        raise SkipItem(problem)
    handle = open_image_file(path)
    try:
        info = os.fstat(handle.fileno())
        problem = not_regular_reason(info.st_mode)
        if problem is not None:
            raise SkipItem(problem)
    except BaseException:
        handle.close()
        raise
    return handle, info


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_context = None


@contextmanager
def pillow_warnings_silenced():
    """No Pillow warning reaches the user: what matters about a file ends up as its skip reason.

    The filter list is global to the process and `catch_warnings` is not thread-safe: decoder
    threads that each entered and left their own would restore one another's filters out of
    order, letting warnings through or leaving filters behind. So the first thread in installs
    the filter and the last one out removes it.
    """
    global _quiet_depth, _quiet_context
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_context = warnings.catch_warnings()
            _quiet_context.__enter__()
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _quiet_context.__exit__(None, None, None)
                _quiet_context = None


def decode_image(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """Return (uint8 array of shape (size, size, 3), is_grey) or raise SkipItem."""
    try:
        handle, info = open_regular_file(path)
        with handle, pillow_warnings_silenced():
            if info.st_size == 0:
                raise SkipItem("empty file (0 bytes)")
            image = Image.open(handle)
            width, height = image.size
            # Checked here rather than through DecompressionBombWarning: the warning is
            # silenced, and turning it into an error per thread is what the lock above avoids.
            if width * height > MAX_PIXELS:
                raise SkipItem(_bomb_reason())
            if min(width, height) < MIN_SIDE:
                raise SkipItem(f"too small ({width}x{height} px; at least {MIN_SIDE} per side)")
            if image.format == "JPEG":
                # Decode huge JPEGs at a reduced scale straight away: far less work and memory.
                image.draft("RGB", (size * 2, size * 2))
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb, grey = _to_rgb8(image)
            array = _resize_center_crop(rgb, size)
    except SkipItem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SkipItem(_bomb_reason()) from None
    except UnidentifiedImageError:
        raise SkipItem("not an image, or a format Pillow cannot read") from None
    except OSError as error:
        reason = os_error_reason(error)
        if reason is not None:
            raise SkipItem(reason) from None
        raise SkipItem(f"truncated or corrupt: {_error_text(error)}") from None
    except (SyntaxError, ValueError, EOFError, IndexError) as error:
        # Pillow reports truncation and corrupt streams through these.
        raise SkipItem(f"truncated or corrupt: {_error_text(error)}") from None
    return array, grey or looks_grey(array)


def _error_text(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def _bomb_reason() -> str:
    return (f"decompression bomb: the file claims more than {MAX_PIXELS / 1e6:.0f} megapixels, "
            "too many to decode safely")


def _to_rgb8(image: Image.Image) -> tuple[Image.Image, bool]:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return Image.fromarray(_scale_high_bit_depth(np.asarray(image))).convert("RGB"), True
    if mode == "F":
        return Image.fromarray(_scale_float(np.asarray(image, dtype=np.float32))).convert("RGB"), True
    if mode in ("1", "L"):
        return image.convert("L").convert("RGB"), True
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        # Transparent pixels have arbitrary colours underneath; show them on white as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return image, False


def _scale_high_bit_depth(values: np.ndarray) -> np.ndarray:
    # Cameras often fill 10, 12 or 14 of 16 bits; scaling by the depth actually used keeps a
    # 12-bit microscope image from coming out nearly black.
    values = values.astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if top <= 255:
        return np.clip(values, 0, 255).astype(np.uint8)
    bits = min(32, max(8, 2 * math.ceil(math.log2(top + 1) / 2)))
    return np.clip(values / (2**bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, np.uint8)
    low, high = float(finite.min()), float(finite.max())
    scaled = (np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12)
    return np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _resize_center_crop(image: Image.Image, size: int) -> np.ndarray:
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array


def looks_grey(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]))
