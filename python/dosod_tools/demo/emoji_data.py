"""Synthetic open-vocabulary detection data: scenes of colour emoji on varied backgrounds.

This file owns the scene recipe and the COCO-format writer. The classes come from
configs/demo/classes.json (dosod_tools.demo.emoji_classes); each class is one emoji of Noto Color
Emoji (Debian package `fonts-noto-color-emoji`). That font is a bitmap (CBDT) font which Pillow
renders only at size 109, so every glyph is rendered once at 109, cropped to its alpha bounding
box, and resized per object.

A scene (`SceneGenerator.scene(index)`), all randomness from one generator seeded by
(seed, split, index), so image `index` of a stream is the same whoever asks for it:

* background: procedural textures, gradients, noise or a random crop of a fixture photo. The
  `train` and `heldout` splits use *different* background families and photos (train: linear
  gradients, value noise, stripes, checkerboards, "dead leaves", crops of bus.jpg and zidane.jpg;
  heldout: radial gradients, plasma, Voronoi cells, scribbles, crops of coco_000000162415.jpg);
* 1-12 emoji (log-uniform long side 16-200 px on a 320 canvas, scaled with --size), aspect
  jitter +-25 %, rotation (most within +-20 degrees, some anywhere), brightness/contrast/
  saturation jitter (no hue change: "red apple" must stay red), occasionally semi-transparent;
  up to 25 % of an object may leave the canvas; objects may overlap, but every annotated object
  keeps at least 55 % of its pixels visible (placements that would hide more are retried);
* 0-3 non-emoji occluders (flat or noisy shapes) painted over the objects, same visibility rule;
* image-level colour jitter, sensor noise, blur and JPEG artefacts.

Boxes are the tight box of the *visible* pixels (alpha > 0.5) of each object (COCO convention).
The train split draws only `seen` classes; heldout draws all classes (seen and unseen) unless
--classes says otherwise.

    .venv/bin/python -m dosod_tools.demo.emoji_data generate --split train --count 2000 --out data/demo/train
    .venv/bin/python -m dosod_tools.demo.emoji_data generate --split heldout --count 500 --out data/demo/heldout
    .venv/bin/python -m dosod_tools.demo.emoji_data bench --count 200
    .venv/bin/python -m dosod_tools.demo.emoji_data sheet --out /tmp/emoji-sheet.jpg   # every glyph, for review

Output of `generate`: OUT/images/<split>_<index:06d>.jpg and OUT/annotations.json (COCO:
images, annotations with bbox [x, y, w, h] in pixels and area = visible pixels, categories with
`id` = the class id of classes.json (0-based), `name`, `supercategory` = emoji subgroup, `split`).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .. import REPO_ROOT, invocation
from ..fixtures.photos import FIXTURE_DIR as PHOTOS

CLASSES = REPO_ROOT / "configs/demo/classes.json"
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size at which Pillow renders this CBDT font
SPLIT_CODE = {"train": 1, "heldout": 2}  # part of every image's seed: the streams never meet
BASE_SIZE = 320  # object sizes below are for a canvas of this side and scale with --size


@dataclass(frozen=True)
class SplitRecipe:
    """What differs between the splits: background families (with weights) and photos."""

    backgrounds: dict[str, float]
    photos: tuple[str, ...]
    jpeg_quality: tuple[int, int]
    blur_radius: tuple[float, float]


RECIPES = {
    "train": SplitRecipe(
        backgrounds={
            "gradient": 1.0,
            "value_noise": 1.5,
            "stripes": 1.0,
            "checker": 1.0,
            "dead_leaves": 1.5,
            "photo": 2.0,
        },
        photos=("bus.jpg", "zidane.jpg"),
        jpeg_quality=(30, 95),
        blur_radius=(0.3, 1.5),
    ),
    "heldout": SplitRecipe(
        backgrounds={"radial": 1.0, "plasma": 1.5, "cells": 1.5, "scribbles": 1.0, "photo": 2.0},
        photos=("coco_000000162415.jpg",),
        jpeg_quality=(40, 90),
        blur_radius=(0.4, 1.2),
    ),
}


@dataclass(frozen=True)
class EmojiClass:
    id: int
    name: str
    codepoint: int
    subgroup: str
    split: str


def load_classes(path: Path = CLASSES) -> tuple[list[EmojiClass], dict]:
    """The classes of classes.json (in id order) and the whole document."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    classes = [
        EmojiClass(c["id"], c["name"], int(c["codepoint"].removeprefix("U+"), 16), c["subgroup"], c["split"])
        for c in doc["classes"]
    ]
    if [c.id for c in classes] != list(range(len(classes))):
        raise ValueError(f"{path}: class ids must be 0..K-1 in order")
    return classes, doc


def class_ids(classes: list[EmojiClass], which: str) -> list[int]:
    """Ids of the `seen`, `unseen` or `all` classes."""
    if which == "all":
        return [c.id for c in classes]
    return [c.id for c in classes if c.split == which]


def render_glyphs(classes: list[EmojiClass], font_path: Path = FONT) -> list[Image.Image]:
    """Each class's emoji at size 109, RGBA, cropped to the alpha bounding box."""
    if not font_path.exists():
        raise SystemExit(f"{font_path} not found: apt-get install fonts-noto-color-emoji")
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    glyphs = []
    for c in classes:
        canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((4, 4), chr(c.codepoint), font=font, embedded_color=True)
        bbox = canvas.getchannel("A").getbbox()
        if bbox is None:
            raise ValueError(f"{c.name} (U+{c.codepoint:04X}) renders empty with {font_path}")
        glyphs.append(canvas.crop(bbox))
    return glyphs


# ---------------------------------------------------------------------------------------------
# Backgrounds: each returns float32 [S, S, 3] in 0..255.


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


_COORDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y grids [S, S] (cached; callers must not modify them)."""
    if size not in _COORDS:
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        _COORDS[size] = (x, y)
    return _COORDS[size]


def _lerp(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """c1 + (c2 - c1) * t for colours [3] and weights [S, S] -> [S, S, 3]."""
    return c1 + (c2 - c1) * t[..., None]


def bg_gradient(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    x, y = _coords(size)
    a = rng.uniform(0, 2 * math.pi)
    t = (x * math.cos(a) + y * math.sin(a)) / size
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    stops = np.stack([_colour(rng) for _ in range(rng.integers(2, 4))])
    where = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(t, where, stops[:, c]).astype(np.float32) for c in range(3)], axis=2)


def bg_value_noise(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((size, size, 3), np.float32)
    grid, weight, total = int(rng.integers(2, 6)), 1.0, 0.0
    for _ in range(int(rng.integers(2, 5))):
        small = Image.fromarray(rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8))
        out += weight * np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), np.float32)
        total += weight
        grid, weight = grid * 2, weight * rng.uniform(0.35, 0.7)
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) * (255.0 / max(float(hi - lo), 1.0))


def bg_stripes(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    x, y = _coords(size)
    a = rng.uniform(0, math.pi)
    period = rng.uniform(6, 60) * size / BASE_SIZE
    wave = np.sin((x * math.cos(a) + y * math.sin(a)) * (2 * math.pi / period))
    t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
    return _lerp(_colour(rng), _colour(rng), t)


def bg_checker(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    x, y = _coords(size)
    a = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else 0.0
    cell = rng.uniform(8, 64) * size / BASE_SIZE
    u = (x * math.cos(a) + y * math.sin(a)) / cell
    v = (-x * math.sin(a) + y * math.cos(a)) / cell
    return _lerp(_colour(rng), _colour(rng), (np.floor(u) + np.floor(v)) % 2)


def bg_dead_leaves(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in _colour(rng)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(30, 120))):
        r = size * 0.35 * rng.random() ** 2.5 + 2
        cx, cy = rng.uniform(-r, size + r, 2)
        box = [cx - r * rng.uniform(0.5, 1.5), cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r]
        fill = tuple(int(v) for v in _colour(rng))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return np.asarray(img, np.float32)


def bg_radial(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    x, y = _coords(size)
    cx, cy = rng.uniform(-0.2, 1.2, 2) * size
    r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / size
    if rng.random() < 0.4:  # rings
        t = (np.sin(r * rng.uniform(10, 60)) + 1) / 2
    else:
        t = np.clip(r / rng.uniform(0.5, 1.5), 0, 1)
    return _lerp(_colour(rng), _colour(rng), t)


def bg_plasma(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    x, y = _coords(size)
    field_ = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 6))):
        a = rng.uniform(0, 2 * math.pi)
        freq = rng.uniform(1, 12) * 2 * math.pi / size
        field_ += np.sin((x * math.cos(a) + y * math.sin(a)) * freq + rng.uniform(0, 2 * math.pi))
    phase = rng.uniform(0, 2 * math.pi, 3).astype(np.float32)
    gain = rng.uniform(0.5, 2.0)
    return 127.5 + 127.5 * np.cos(field_[..., None] * gain + phase)


def bg_cells(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    low = max(size // 4, 8)
    n = int(rng.integers(6, 40))
    seeds = rng.uniform(0, low, (n, 2)).astype(np.float32)
    y, x = np.mgrid[0:low, 0:low].astype(np.float32)
    d = (x[..., None] - seeds[:, 0]) ** 2 + (y[..., None] - seeds[:, 1]) ** 2
    part = np.argmin(d, axis=-1)
    colours = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    img = Image.fromarray(colours[part]).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(img, np.float32)


def bg_scribbles(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in _colour(rng)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(15, 60))):
        pts = [tuple(p) for p in rng.uniform(-0.1, 1.1, (int(rng.integers(2, 6)), 2)) * size]
        width = int(rng.integers(1, max(2, size // 20)))
        draw.line(pts, fill=tuple(int(v) for v in _colour(rng)), width=width)
    return np.asarray(img, np.float32)


def bg_photo(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    src = photos[int(rng.integers(len(photos)))]
    h, w = src.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(src[y0 : y0 + side, x0 : x0 + side])
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    resample = Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR
    return np.asarray(crop.resize((size, size), resample), np.float32)


BACKGROUNDS = {
    "gradient": bg_gradient,
    "value_noise": bg_value_noise,
    "stripes": bg_stripes,
    "checker": bg_checker,
    "dead_leaves": bg_dead_leaves,
    "radial": bg_radial,
    "plasma": bg_plasma,
    "cells": bg_cells,
    "scribbles": bg_scribbles,
    "photo": bg_photo,
}


# ---------------------------------------------------------------------------------------------
# Scenes


@dataclass
class Scene:
    image: np.ndarray  # uint8 [S, S, 3] RGB
    boxes: np.ndarray  # float32 [n, 4] x1, y1, x2, y2 (pixels; x2 = last visible column + 1)
    labels: np.ndarray  # int64 [n] class ids
    areas: np.ndarray  # int64 [n] visible pixels
    jpeg_quality: int | None = None  # when set, the JPEG step is still to be applied (by the writer)


@dataclass
class _Placed:
    label: int
    full: int  # pixels of the object (alpha > 0.5), whether on the canvas or not
    visible: int
    rect: tuple[int, int, int, int] = field(default=(0, 0, 0, 0))  # y0, y1, x0, x1 on the canvas


MIN_VISIBLE = 0.55  # an annotated object keeps at least this fraction of its pixels visible
MIN_INSIDE = 0.75  # and at least this fraction inside the canvas
MIN_BOX = 4  # px: smaller visible boxes are not annotated (the object is hidden instead)


class SceneGenerator:
    """Deterministic scene stream: `scene(i)` depends only on (seed, split, i) and the class list."""

    def __init__(
        self,
        split: str = "train",
        size: int = 320,
        seed: int = 0,
        which: str | None = None,
        classes_path: Path = CLASSES,
        font_path: Path = FONT,
        photos_dir: Path = PHOTOS,
    ) -> None:
        if split not in RECIPES:
            raise ValueError(f"unknown split {split!r}")
        self.split, self.size, self.seed = split, size, seed
        self.recipe = RECIPES[split]
        self.classes, self.doc = load_classes(classes_path)
        self.allowed = np.array(class_ids(self.classes, which or ("seen" if split == "train" else "all")))
        self.glyphs = render_glyphs(self.classes, font_path)
        self.photos = [np.asarray(Image.open(photos_dir / p).convert("RGB")) for p in self.recipe.photos]
        names = list(self.recipe.backgrounds)
        weights = np.array([self.recipe.backgrounds[n] for n in names])
        self.bg_names, self.bg_p = names, weights / weights.sum()
        self.scale = size / BASE_SIZE

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, SPLIT_CODE[self.split], index]))

    def scene(self, index: int, encode_jpeg: bool = True) -> Scene:
        """Scene `index`. encode_jpeg=False leaves the JPEG step to the caller (`jpeg_quality`)."""
        rng = self.rng(index)
        s = self.size
        name = self.bg_names[int(rng.choice(len(self.bg_names), p=self.bg_p))]
        canvas = BACKGROUNDS[name](rng, s, self.photos).astype(np.float32)
        if rng.random() < 0.3:
            canvas += rng.uniform(3, 15) * rng.standard_normal((s, s, 1 if rng.random() < 0.5 else 3), dtype=np.float32)
        owner = np.full((s, s), -1, np.int16)
        placed: list[_Placed] = []

        n_objects = int(np.clip(round(rng.gamma(2.2, 2.2)), 1, 12))
        labels = self.allowed[rng.integers(len(self.allowed), size=n_objects)]
        if n_objects > 2 and rng.random() < 0.25:  # a few instances of one class together
            labels[1 : int(rng.integers(2, min(n_objects, 4) + 1))] = labels[0]
        for label in labels:
            rgba = self._object(rng, int(label))
            if rgba is not None:
                self._paste(rng, canvas, owner, placed, rgba, int(label))
        for _ in range(int(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))):
            self._paste(rng, canvas, owner, placed, self._occluder(rng), -1)

        boxes, keep_labels, areas = [], [], []
        for k, p in enumerate(placed):
            if p.label < 0:
                continue
            y0, y1, x0, x1 = p.rect
            ys, xs = np.nonzero(owner[y0:y1, x0:x1] == k)
            if len(ys) == 0:
                continue
            box = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
            if box[2] - box[0] < MIN_BOX or box[3] - box[1] < MIN_BOX:
                continue
            boxes.append(box)
            keep_labels.append(p.label)
            areas.append(len(ys))

        image, quality = self._degrade(rng, canvas, encode_jpeg)
        return Scene(
            image=image,
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            labels=np.array(keep_labels, np.int64),
            areas=np.array(areas, np.int64),
            jpeg_quality=quality,
        )

    def _object(self, rng: np.random.Generator, label: int) -> np.ndarray | None:
        """One emoji, resized, jittered and rotated: float32 [h, w, 4] (RGB 0..255, alpha 0..1)."""
        glyph = self.glyphs[label]
        long_side = math.exp(rng.uniform(math.log(16), math.log(200))) * self.scale
        aspect = math.exp(rng.uniform(-0.25, 0.25))
        k = long_side / max(glyph.size)
        w = max(3, round(glyph.width * k * aspect))
        h = max(3, round(glyph.height * k / aspect))
        im = glyph.resize((w, h), Image.Resampling.BOX if k < 1 else Image.Resampling.BILINEAR)
        r = rng.random()
        if r < 0.55:
            im = im.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR, expand=True)
        elif r < 0.65:
            im = im.rotate(rng.uniform(-180, 180), Image.Resampling.BILINEAR, expand=True)
        arr = np.asarray(im, np.float32)
        rgb, alpha = arr[..., :3], arr[..., 3:] / 255.0
        # brightness, contrast and saturation; hue kept (colour is part of some class names)
        grey = rgb.mean(axis=2, keepdims=True)
        rgb = grey + (rgb - grey) * rng.uniform(0.6, 1.3)
        mean = float((rgb * alpha).sum() / max(alpha.sum() * 3, 1.0))
        rgb = (rgb - mean) * rng.uniform(0.75, 1.2) + mean * rng.uniform(0.7, 1.25)
        if rng.random() < 0.1:
            alpha = alpha * rng.uniform(0.75, 0.95)
        if rng.random() < 0.15:
            alpha = np.where(alpha > 0.5, 1.0, 0.0).astype(np.float32)  # hard (aliased) edges
        return np.concatenate([np.clip(rgb, 0, 255), alpha], axis=2)

    def _occluder(self, rng: np.random.Generator) -> np.ndarray:
        """A non-emoji shape (ellipse, rectangle or polygon), flat or noisy: [h, w, 4]."""
        side = int(rng.uniform(10, 70) * self.scale)
        w, h = max(4, int(side * rng.uniform(0.4, 1.6))), max(4, int(side * rng.uniform(0.4, 1.6)))
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse([0, 0, w - 1, h - 1], fill=255)
        elif kind == 1:
            draw.rectangle([0, 0, w - 1, h - 1], fill=255)
        else:
            draw.polygon([tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * (w - 1, h - 1)], fill=255)
        rgb = np.broadcast_to(_colour(rng), (h, w, 3)).astype(np.float32)
        if rng.random() < 0.5:
            rgb = np.clip(rgb + rng.normal(0, rng.uniform(10, 60), (h, w, 1)), 0, 255).astype(np.float32)
        return np.concatenate([rgb, np.asarray(mask, np.float32)[..., None] / 255.0], axis=2)

    def _paste(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        owner: np.ndarray,
        placed: list[_Placed],
        rgba: np.ndarray,
        label: int,
    ) -> bool:
        """Composites `rgba` at a random position that keeps every earlier object at least
        MIN_VISIBLE visible and this one MIN_INSIDE inside the canvas; False when 10 tries fail."""
        s = self.size
        h, w = rgba.shape[:2]
        solid = rgba[..., 3] > 0.5
        full = int(solid.sum())
        if full < 12:
            return False
        for _ in range(10):
            x0 = int(rng.integers(-w // 4, s - (3 * w) // 4 + 1))
            y0 = int(rng.integers(-h // 4, s - (3 * h) // 4 + 1))
            cy0, cy1, cx0, cx1 = max(y0, 0), min(y0 + h, s), max(x0, 0), min(x0 + w, s)
            if cy1 <= cy0 or cx1 <= cx0:
                continue
            sub = solid[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            inside = int(sub.sum())
            if label >= 0 and inside < MIN_INSIDE * full:
                continue
            under = owner[cy0:cy1, cx0:cx1][sub]
            covered = np.bincount(under[under >= 0], minlength=len(placed)) if len(placed) else np.zeros(0, np.int64)
            if any(p.label >= 0 and p.visible - c < MIN_VISIBLE * p.full for p, c in zip(placed, covered)):
                continue
            for p, c in zip(placed, covered):
                p.visible -= int(c)
            a = rgba[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, 3:]
            region = canvas[cy0:cy1, cx0:cx1]
            region *= 1.0 - a
            region += rgba[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, :3] * a
            owner[cy0:cy1, cx0:cx1][sub] = len(placed)
            placed.append(_Placed(label, full, inside, (cy0, cy1, cx0, cx1)))
            return True
        return False

    def _degrade(
        self, rng: np.random.Generator, canvas: np.ndarray, encode_jpeg: bool
    ) -> tuple[np.ndarray, int | None]:
        """Image-level colour jitter, noise, blur and JPEG artefacts -> uint8."""
        r = self.recipe
        img = canvas
        if rng.random() < 0.8:
            # saturation s, contrast c, brightness b and white balance w as one affine map:
            # out = w * (c * (grey + s * (x - grey) - 127.5) + 127.5 + b)
            sat, con, bri = rng.uniform(0.7, 1.3), rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
            wb = rng.uniform(0.9, 1.1, 3)
            mix = sat * np.eye(3) + (1 - sat) / 3 * np.ones((3, 3))  # row vector x -> x @ mix
            mat = (con * mix * wb[None, :]).astype(np.float32)
            off = (wb * (127.5 * (1 - con) + bri)).astype(np.float32)
            img = img.reshape(-1, 3) @ mat
            img += off
            img = img.reshape(canvas.shape)
        if rng.random() < 0.25:
            img = img + rng.uniform(2, 8) * rng.standard_normal(img.shape, dtype=np.float32)
        out = Image.fromarray(np.clip(img, 0, 255, out=img).astype(np.uint8))
        if rng.random() < 0.3:
            out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*r.blur_radius) * self.scale))
        elif rng.random() < 0.1:  # low-resolution capture
            f = rng.uniform(0.4, 0.8)
            small = out.resize((max(8, int(self.size * f)),) * 2, Image.Resampling.BILINEAR)
            out = small.resize((self.size, self.size), Image.Resampling.BILINEAR)
        quality = int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1)) if rng.random() < 0.7 else None
        if quality is not None and encode_jpeg:
            buf = io.BytesIO()
            out.save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            out = Image.open(buf).convert("RGB")
            quality = None
        return np.asarray(out), quality


# ---------------------------------------------------------------------------------------------
# COCO writer


_WORKER: SceneGenerator | None = None


def _init_worker(kwargs: dict) -> None:
    global _WORKER
    _WORKER = SceneGenerator(**kwargs)


def _write_one(args: tuple[int, str]) -> dict:
    index, path = args
    assert _WORKER is not None
    sc = _WORKER.scene(index, encode_jpeg=False)
    # The recipe's JPEG step is the file's own encoding; images without it are stored at 95.
    Image.fromarray(sc.image).save(path, format="JPEG", quality=sc.jpeg_quality or 95)
    return {"boxes": sc.boxes.tolist(), "labels": sc.labels.tolist(), "areas": sc.areas.tolist()}


def generate(args: argparse.Namespace) -> None:
    global _WORKER
    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    kwargs = {
        "split": args.split,
        "size": args.size,
        "seed": args.seed,
        "which": args.classes,
        "classes_path": args.class_file,
    }
    gen = SceneGenerator(**kwargs)
    jobs = [(i, str(out / "images" / f"{args.split}_{i:06d}.jpg")) for i in range(args.start, args.start + args.count)]
    t0 = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("fork").Pool(args.workers, _init_worker, (kwargs,)) as pool:
            results = pool.map(_write_one, jobs, chunksize=16)
    else:
        _WORKER = gen
        results = [_write_one(j) for j in jobs]
    dt = time.perf_counter() - t0
    images, annotations = [], []
    for (index, path), res in zip(jobs, results):
        images.append({"id": index, "file_name": f"images/{Path(path).name}", "width": args.size, "height": args.size})
        for (x1, y1, x2, y2), label, area in zip(res["boxes"], res["labels"], res["areas"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(area),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": c.id, "name": c.name, "supercategory": c.subgroup, "split": c.split, "codepoint": f"U+{c.codepoint:04X}"}
        for c in gen.classes
    ]
    info = {
        "description": "Synthetic emoji detection data (dosod_tools.demo.emoji_data); category ids are classes.json ids (0-based)",
        "producer": invocation(__spec__.name),
        "split": args.split,
        "seed": args.seed,
        "size": args.size,
        "classes_drawn": args.classes or ("seen" if args.split == "train" else "all"),
        "font": gen.doc.get("font", ""),
    }
    doc = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    (out / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    print(
        f"wrote {len(images)} images, {len(annotations)} boxes to {out} in {dt:.1f} s "
        f"({len(images) / dt:.1f} images/s with {args.workers} worker(s))"
    )


def bench(args: argparse.Namespace) -> None:
    gen = SceneGenerator(split=args.split, size=args.size, seed=args.seed)
    gen.scene(0)
    for encode in (True, False):
        t0 = time.perf_counter()
        n_boxes = sum(len(gen.scene(i, encode_jpeg=encode).boxes) for i in range(args.count))
        dt = time.perf_counter() - t0
        what = "with in-memory JPEG round trip" if encode else "JPEG step left to the writer"
        print(
            f"{args.split} {args.size}px, {what}: {args.count / dt:.1f} images/s, {n_boxes / args.count:.2f} boxes/image"
        )


def sheet(args: argparse.Namespace) -> None:
    """A contact sheet of every class glyph with its id, for reviewing the class list."""
    classes, _ = load_classes(args.class_file)
    glyphs = render_glyphs(classes)
    cell, cols = 48, 32
    rows = math.ceil(len(glyphs) / cols)
    img = Image.new("RGB", (cols * cell, rows * (cell + 10)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, (c, g) in enumerate(zip(classes, glyphs)):
        x, y = (i % cols) * cell, (i // cols) * (cell + 10)
        k = (cell - 8) / max(g.size)
        small = g.resize((max(1, int(g.width * k)), max(1, int(g.height * k))), Image.Resampling.BOX)
        img.paste(small, (x + 4, y + 2), small)
        draw.text((x + 2, y + cell - 4), f"{c.id}{'*' if c.split == 'unseen' else ''}", fill=(200, 0, 0))
    img.save(args.out, quality=90)
    print(f"wrote {args.out} ({len(classes)} glyphs; * = unseen)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="write a COCO-format dataset")
    g.add_argument("--split", choices=sorted(RECIPES), required=True)
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--size", type=int, default=320)
    g.add_argument("--start", type=int, default=0, help="first image index of the stream")
    g.add_argument(
        "--classes",
        choices=("seen", "unseen", "all"),
        default=None,
        help="classes drawn (default: seen for train, all for heldout)",
    )
    g.add_argument("--class-file", type=Path, default=CLASSES)
    g.add_argument("--workers", type=int, default=1, help="processes (default 1: the CPU is shared)")
    g.set_defaults(func=generate)
    b = sub.add_parser("bench", help="time the generator on one core")
    b.add_argument("--split", choices=sorted(RECIPES), default="train")
    b.add_argument("--count", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--size", type=int, default=320)
    b.set_defaults(func=bench)
    s = sub.add_parser("sheet", help="contact sheet of all class glyphs")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--class-file", type=Path, default=CLASSES)
    s.set_defaults(func=sheet)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
