#!/usr/bin/env python3
"""Makes the committed random-weight DOSOD-N bundle and its Rust-vs-Python reference detections.

Writes
  models/dosod-n-random/              DOSOD-N bundle, 320x320, text dim 384 (pairs with MiniLM), float32
  tests/fixtures/dosod-n/vocab.npy    text embeddings [K, 384] (random unit rows), float32
  tests/fixtures/dosod-n/vocab.txt    the K names, one per line
  tests/fixtures/dosod-n/<image>.json reference detections per fixture image, in the shape of
                                      `dosod detect` output: {"image","width","height","detections"};
                                      also <stem>-640.json for models/generated/fixtures-png/<stem>-640.png
                                      (same photo, long side 640: an exact 2x reduction to the input;
                                      `make setup` writes those PNGs, with the recipe of at_640 here)

The checkpoint is synthetic (seed 0), with BatchNorm statistics measured on the letterboxed
fixture photos; the per-level biases are then chosen so that 3 to 8 detections per image clear the 0.25
threshold, keeping the score of every box that NMS could report as far from it as possible.
The reference detections come from the PyTorch model (not from ONNX) on the pre-processing of
docs/model-bundle.md (scripts/reference_detect.py's letterbox: Pillow BOX / BILINEAR) and the
engine's post-processing (single label, class-aware NMS at 0.65, top 100); they are then checked
against the exported bundle run through scripts/reference_detect.py with ONNX Runtime.
PNG copies of the fixtures are used when they exist (no JPEG-decoder differences).

    /work/devvenv/bin/python scripts/make_dosod_n_fixture.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import export_dosod  # noqa: E402
import reference_detect as rd  # noqa: E402
from dosod.config import preset  # noqa: E402
from dosod.synthetic import random_detector, save_checkpoint  # noqa: E402

NAMES = ["person", "bus", "car", "dog", "tie", "handbag"]
SIZE = 320
SEED = 0
THRESHOLD = 0.25
IOU = 0.65
MAX_DET = 100
PNG_DIR = ROOT / "models/generated/fixtures-png"


def fixture_images() -> list[Path]:
    """The fixture photos, PNG copies next to them preferred."""
    out = []
    for jpg in sorted((ROOT / "tests/fixtures/images").glob("*.jpg")):
        png = jpg.with_suffix(".png")
        out.append(png if png.exists() else jpg)
    return out


def at_640(img) -> object:
    """The photo with its long side at 640 px (Pillow BOX, size rounded half up): the recipe of
    the `make setup` copies models/generated/fixtures-png/<stem>-640.png. Letterboxed to 320 it is
    an exact 2x box reduction, so an engine resizes it almost exactly as Pillow does."""
    r = 640 / max(img.size)
    return img.resize((int(img.width * r + 0.5), int(img.height * r + 0.5)), rd.Image.Resampling.BOX)


def check_generated_pngs(names: list[Path], images: list) -> None:
    """Where `make setup` wrote PNG copies, they must hold exactly the pixels used here."""
    for path, img in zip(names, images):
        png = path if path.parent == PNG_DIR else PNG_DIR / f"{path.stem}.png"
        if not png.exists():
            print(f"{png.relative_to(ROOT)}: absent (made by `make setup`); not compared")
            continue
        if not np.array_equal(np.asarray(rd.load_rgb(png)), np.asarray(img)):
            raise SystemExit(f"{png.relative_to(ROOT)} does not have the pixels of {path.name}")
        print(f"{png.relative_to(ROOT)}: identical pixels")


def choose_shift(scores: torch.Tensor, boxes: torch.Tensor, lo: int, hi: int) -> tuple[float, float, list[int]]:
    """A common logit shift for all levels so that every image keeps between `lo` and `hi`
    detections and the detections' logits stay as far as possible from logit(0.25).

    A uniform shift keeps the score order, so greedy NMS at any threshold returns a prefix of the
    list it returns with no threshold: only those survivors can ever be reported, and only their
    distance to the threshold matters. Returns (shift, smallest distance, detections per image)."""
    thr = math.log(THRESHOLD / (1 - THRESHOLD))
    survivors = []
    for s, b in zip(scores.numpy(), boxes.numpy()):
        kept = rd.postprocess(s, b, np.float32(0.0), IOU, 10_000, False)
        survivors.append(np.sort([math.log(p / (1 - p)) for _, _, p, _ in kept])[::-1][:200])
    best = (-1.0, 0.0, [])
    for step in range(-400, 401):
        shift = 0.005 * step
        counts = [int((v + shift >= thr).sum()) for v in survivors]
        if min(counts) < lo or max(counts) > hi:
            continue
        margin = min(float(np.abs(v + shift - thr).min()) for v in survivors)
        if margin > best[0]:
            best = (margin, shift, counts)
    if best[0] < 0:
        raise SystemExit(f"no shift gives {lo}..{hi} detections on every image")
    return best[1], best[0], best[2]


def compare_sets(ref: list, alt: list) -> str:
    """Matches each reference detection to the same-class alternative with the highest IoU."""
    matched, ds, db = 0, 0.0, 0.0
    for _, k, score, box in ref:
        cands = [(rd.iou(box.astype(np.float64), b.astype(np.float64)), s, b) for _, kk, s, b in alt if kk == k]
        if cands and (best := max(cands, key=lambda c: c[0]))[0] > 0.5:
            matched += 1
            ds, db = max(ds, abs(best[1] - score)), max(db, float(np.abs(best[2] - box).max()))
    return f"{matched}/{len(ref)} matched ({len(alt)} found), score +-{ds:.4f}, box +-{db:.2f} px"


def robustness(model, joint: torch.Tensor, img, spec: dict, dets: list, lb) -> None:
    """How much the reference moves under pre-processing differences a Rust engine may have:
    +-1/255 noise on every input value, and Pillow's antialiased BILINEAR instead of BOX."""
    gen = torch.Generator().manual_seed(7)
    base, _ = rd.letterbox(img, spec, np.float32)
    noisy = torch.from_numpy(base) + (torch.rand(base.shape, generator=gen) - 0.5) * (2 / 255)
    resized = img.resize((lb.new_w, lb.new_h), rd.Image.Resampling.BILINEAR) if lb.scale != 1 else img
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    canvas[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = np.asarray(resized)
    other = torch.from_numpy((canvas.astype(np.float32) / 255).transpose(2, 0, 1)[None].copy())
    lines = []
    for label, x in (("+-1/255 noise", noisy.clamp(0, 1)), ("bilinear resize", other)):
        with torch.no_grad():
            s, b = model.predict(x, joint)
        alt = rd.postprocess(s[0].numpy(), b[0].numpy(), np.float32(THRESHOLD), IOU, MAX_DET, False)
        lines.append(f"{label}: {compare_sets(dets, alt)}")
    print("    sensitivity: " + "; ".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models/dosod-n-random")
    ap.add_argument("--fixtures", type=Path, default=ROOT / "tests/fixtures/dosod-n")
    ap.add_argument("--min-detections", type=int, default=3, help="per image, at least")
    ap.add_argument("--max-detections", type=int, default=8, help="per image, at most")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    photos = fixture_images()
    spec = {
        "width": SIZE,
        "height": SIZE,
        "resize": "keep_ratio",
        "interpolation": "auto",
        "pad_value": 114,
        "pad_position": "center",
    }
    loaded = [rd.load_rgb(p) for p in photos]
    images = photos + [PNG_DIR / f"{p.stem}-640.png" for p in photos]
    loaded += [at_640(img) for img in loaded]
    boxed = [rd.letterbox(img, spec, np.float32) for img in loaded]
    batch = torch.from_numpy(np.concatenate([t for t, _ in boxed]))

    cfg = preset("n", text_dim=384)
    calib = batch[: len(photos)]
    model = random_detector(cfg, SEED, calib_images=calib, calib_size=SIZE, logit_scale=(-0.5, 0.5), bias=(0.0, 0.0))
    gen = torch.Generator().manual_seed(SEED + 1)
    text = torch.nn.functional.normalize(torch.randn(len(NAMES), cfg.text_dim, generator=gen), dim=1)
    offsets = torch.empty(3).uniform_(-0.5, 0.5, generator=gen)
    with torch.no_grad():
        joint = model.encode_text(text)
        # First pass: biases at a rough level (the offsets kept), then one common shift.
        raw, _ = model.predict(batch, joint)  # biases are 0 here
        base = math.log(THRESHOLD / (1 - THRESHOLD)) - float(torch.logit(raw.double()).max(2).values.quantile(0.995))
        for contrast, off in zip(model.head.cls_contrasts, offsets):
            contrast.bias.fill_(base + float(off))
        scores, boxes = model.predict(batch, joint)
        shift, margin, counts = choose_shift(scores, boxes, args.min_detections, args.max_detections)
        for contrast, off in zip(model.head.cls_contrasts, offsets):
            contrast.bias.fill_(round(base + shift + float(off), 4))
        scores, boxes = model.predict(batch, joint)

    args.fixtures.mkdir(parents=True, exist_ok=True)
    np.save(args.fixtures / "vocab.npy", text.numpy().astype(np.float32))
    (args.fixtures / "vocab.txt").write_text("\n".join(NAMES) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "dosod_n_random.pth"
        save_checkpoint(
            model,
            ckpt,
            {"size": "n", "seed": SEED, "text_dim": cfg.text_dim, "made_by": "scripts/make_dosod_n_fixture.py"},
        )
        export_dosod.main(
            [
                str(ckpt),
                "--size",
                "n",
                "--out",
                str(args.bundle),
                "--input-size",
                str(SIZE),
                "--name",
                "dosod-n-random",
                "--producer",
                "scripts/make_dosod_n_fixture.py",
            ]
        )

    biases = [round(c.bias.item(), 4) for c in model.head.cls_contrasts]
    scales = [round(c.logit_scale.item(), 4) for c in model.head.cls_contrasts]
    print(
        f"logit_scale {scales}, bias {biases}; detections per image {counts}; "
        f"smallest |logit - logit(0.25)| over every detection NMS could ever keep: {margin:.3f}"
    )
    check_generated_pngs(images, loaded)
    refs = [(p, img, lb, s, b) for p, img, (_, lb), s, b in zip(images, loaded, boxed, scores, boxes)]

    ref = rd.Reference(args.bundle)
    ort_joint = ref.joint(text.numpy())
    for path, img, lb, img_scores, img_boxes in refs:
        dets = rd.postprocess(img_scores.numpy(), img_boxes.numpy(), np.float32(THRESHOLD), IOU, MAX_DET, False)
        rel = path.relative_to(ROOT).as_posix()
        report = {
            "image": rel,
            "width": img.width,
            "height": img.height,
            "detections": [
                {"label": NAMES[k], "class_id": k, "score": rd.f32(s), "box": [rd.f32(v) for v in lb.to_image(box)]}
                for _, k, s, box in dets
            ],
        }
        (args.fixtures / f"{path.stem}.json").write_text(json.dumps(report, indent=1) + "\n")
        # The bundle through the independent ONNX Runtime reference must give the same detections.
        o_scores, o_boxes, _ = ref.infer(img, ort_joint)
        o_dets = rd.postprocess(o_scores, o_boxes, np.float32(THRESHOLD), IOU, MAX_DET, False)
        same = len(o_dets) == len(dets) and all(a[1] == b[1] for a, b in zip(dets, o_dets))
        ds = max((abs(a[2] - b[2]) for a, b in zip(dets, o_dets)), default=0.0)
        db = max((float(np.abs(a[3] - b[3]).max()) for a, b in zip(dets, o_dets)), default=0.0)
        print(
            f"{rel}: {len(dets)} detections ({', '.join(sorted({NAMES[k] for _, k, _, _ in dets}))}); "
            f"ONNX bundle via reference_detect.py: {'same' if same else 'DIFFERENT'} set, "
            f"max |score diff| {ds:.1e}, max |box diff| {db:.1e} px"
        )
        if not same or ds > 1e-4 or db > 1e-2:
            raise SystemExit("the exported bundle disagrees with the PyTorch reference")
        robustness(model, joint, img, spec, dets, lb)


if __name__ == "__main__":
    main()
