"""A folder holding every kind of bad or awkward file a real image folder has."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny file whose header claims 1.6 gigapixels: decoding it would exhaust memory."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _png_chunk(b"IEND", b""))


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], -1).astype(np.uint8)


def exif_rotated_jpeg() -> bytes:
    """Stored 48 wide x 24 high, left half red; EXIF orientation 6 says: rotate 90 clockwise."""
    array = np.zeros((24, 48, 3), np.uint8)
    array[:, :24] = (255, 0, 0)
    array[:, 24:] = (0, 0, 255)
    image = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def make_messy_folder(root: Path) -> dict[str, str | None]:
    """Write the folder; returns {relative path: expected skip-reason prefix or None if usable}."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    def save(rel: str, image: Image.Image, fmt: str | None = None, reason=None, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, fmt, **kw)
        expected[rel] = reason

    def write(rel: str, data: bytes, reason):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[rel] = reason

    rgb = Image.fromarray(_gradient(40, 30))
    save("good/rgb.png", rgb)
    save("good/UPPER.PNG", rgb, "PNG")
    save("good/photo.jpg", rgb, quality=90)
    save("good/pic.bmp", rgb)
    save("good/anim.gif", rgb.convert("P"))
    save("good/pic.webp", rgb)
    save("good/pic.tif", rgb)
    save("good/pic.tiff", rgb)
    save("modes/grey.png", rgb.convert("L"))
    save("modes/palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE))
    palette_alpha = rgb.convert("P")
    palette_alpha.info["transparency"] = 0
    save("modes/palette_alpha.png", palette_alpha)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    save("modes/rgba.png", rgba)
    save("modes/cmyk.jpg", rgb.convert("CMYK"))
    sixteen = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 3)  # 12-bit range
    save("modes/sixteen_bit.png", Image.fromarray(sixteen.astype(np.uint16)))
    save("modes/la.png", rgb.convert("LA"))
    save("sizes/huge.jpg", Image.fromarray(_gradient(3000, 2000)), quality=80)
    save("sizes/thin.png", Image.fromarray(_gradient(400, 12)))
    save("sizes/tiny.png", Image.fromarray(_gradient(4, 4)), reason="too small")
    write("sizes/exif_rotated.jpg", exif_rotated_jpeg(), None)
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    write("bad/png_named_jpg.jpg", buffer.getvalue(), None)  # wrong extension, still an image
    write("bad/empty.png", b"", "empty file")
    write("bad/notes.jpg", b"these are my notes, not a picture\n" * 10, "not an image")
    png = buffer.getvalue()
    write("bad/truncated.png", png[: len(png) // 2], "truncated or corrupt")
    jpeg = io.BytesIO()
    Image.fromarray(_gradient(200, 150)).save(jpeg, "JPEG")
    write("bad/truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 3], "truncated or corrupt")
    write("bad/bomb.png", bomb_png(), "decompression bomb")
    write("bad/big_claim.png", bomb_png(11000, 10000), "decompression bomb")
    write("bad/unreadable.png", png, "unreadable")
    # Neither images nor candidates: ignored, never reported as broken.
    (root / "README.txt").write_text("about this folder")
    (root / ".hidden.png").write_bytes(png)
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "t.png").write_bytes(png)
    return expected
