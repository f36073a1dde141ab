"""Writes the unusual-but-valid and invalid image fixtures the engine's tests decode.

Run once by hand (Pillow from .venv); the outputs are small and committed under
tests/fixtures/odd/:  .venv/bin/python scripts/make_odd_images.py --out tests/fixtures/odd
"""

from __future__ import annotations

import argparse
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(w: int, h: int) -> np.ndarray:
    """A smooth RGB test pattern."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    b = ((x + y) * 127 // max(w + h - 2, 1)).astype(np.uint8)
    return np.stack([r, g, b], axis=-1)


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: a decompression bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    Image.fromarray(gradient(1, 1)).save(out / "one_pixel.png")
    Image.fromarray(gradient(3000, 40)).save(out / "thin_3000x40.png", optimize=True)
    Image.fromarray(gradient(96, 64)).convert("L").save(out / "grey.png")
    rgba = np.dstack([gradient(96, 64), np.full((64, 96), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(out / "rgba.png")
    wide = (gradient(96, 64).astype(np.uint16) * 257).astype(">u2")
    # 16-bit RGB PNG: Pillow cannot write it from an array, so build it by hand.
    raw = b"".join(b"\0" + row.tobytes() for row in wide)
    ihdr = struct.pack(">IIBBBBB", 96, 64, 16, 2, 0, 0, 0)
    (out / "rgb16.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    Image.fromarray(gradient(96, 64)).convert("CMYK").save(out / "cmyk.jpg", quality=90)
    Image.fromarray(gradient(96, 64)).save(out / "progressive.jpg", quality=90, progressive=True)
    # A 96x64 landscape photo stored with EXIF orientation 6 (rotate 90° clockwise to view):
    # decoders that honour EXIF report 64x96.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gradient(96, 64)).save(out / "exif_rotated.jpg", quality=90, exif=exif.tobytes())
    Image.fromarray(gradient(96, 64)).save(out / "plain.webp", lossless=True)
    Image.fromarray(gradient(96, 64)).save(out / "plain.bmp")

    (out / "bomb_30000x30000.png").write_bytes(png_header_only(30000, 30000))
    buf = io.BytesIO()
    Image.fromarray(gradient(200, 150)).save(buf, format="JPEG", quality=90)
    (out / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (out / "empty.jpg").write_bytes(b"")
    (out / "not_an_image.jpg").write_text("this is a text file, not an image\n")
    for p in sorted(out.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
