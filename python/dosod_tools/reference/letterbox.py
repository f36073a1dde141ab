"""The reference letterbox (OpenCV, mmyolo 0.6.0 geometry) of many image sizes, for the engine's
tensor comparison test.

    python -m dosod_tools.reference.letterbox --out DIR [--size 640]

Writes, per case, `CASE.png` (a lossless input: noise over gradients, the hardest content for a
resize kernel) and `CASE.rgb` (the letterboxed [H, W, 3] uint8 image the reference feeds the
detector, before / 255), plus `cases.json` listing `{"name", "width", "height", "new_w",
"new_h", "left", "top"}` per case. Sizes cover integer and fractional shrinks, enlargements,
thin and odd images, and an image already at the input size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dosod_tools.reference.detect import letterbox_u8

SIZES = [
    (1280, 720), (720, 1280), (1280, 1280), (2560, 1440), (810, 1080), (641, 479), (333, 999),
    (1919, 1081), (3000, 40), (40, 3000), (2000, 3), (639, 641), (640, 427), (800, 600),
    (1023, 767), (100, 37), (17, 5), (1, 1), (321, 321), (960, 540),
]


def image(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-60, 61, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=640)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = {"width": args.size, "height": args.size}
    cases = []
    for i, (w, h) in enumerate(SIZES):
        name = f"{w}x{h}"
        rgb = image(w, h, i)
        Image.fromarray(rgb).save(args.out / f"{name}.png")
        canvas, lb = letterbox_u8(rgb, spec)
        (args.out / f"{name}.rgb").write_bytes(canvas.tobytes())
        cases.append({"name": name, "width": w, "height": h, "new_w": lb.new_w, "new_h": lb.new_h,
                      "left": lb.left, "top": lb.top})
    (args.out / "cases.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
