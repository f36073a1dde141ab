#!/usr/bin/env python3
"""ONNX exports vs the PyTorch model, for every size of the family, on random checkpoints.

For each size: a synthetic checkpoint (scripts/make_synthetic_checkpoint.py's generator), exported
by scripts/export_dosod.py with a baked 5-class vocabulary, in float32 and float16. Inputs: two
random photo-like scenes and the letterboxed fixture photos (tests/fixtures/images, PNG copies
preferred; docs/model-bundle.md pre-processing), as one batch. Compared:

* detector.onnx (ONNX Runtime) vs DosodDetector.predict (PyTorch, mmyolo's inference path):
  max |diff| of scores (limit 1e-4) and boxes (limit 1e-2 px);
* adaptor.onnx vs the PyTorch text MLP (limit 1e-4);
* detector_baked.onnx vs detector.onnx with the same vocabulary (limit 1e-4 on scores);
* the float16 detector vs PyTorch float32 (limit 1e-2 on scores).

Each level's bias is shifted so that 5 % of the scores on these inputs are above 0.5.

S, M and L run at 640 px, N at 320 px.

    /work/devvenv/bin/python scripts/check_dosod_agreement.py | tee docs/dosod-agreement.txt
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import export_dosod  # noqa: E402
import reference_detect as rd  # noqa: E402
from dosod.bundle import bundle_size, run  # noqa: E402
from dosod.checkpoint import load_detector  # noqa: E402
from dosod.config import preset  # noqa: E402
from dosod.synthetic import random_detector, random_scenes, save_checkpoint  # noqa: E402

SIZES = {"n": 320, "s": 640, "m": 640, "l": 640}
LIMITS = {"scores": 1e-4, "boxes": 1e-2, "joint": 1e-4, "baked": 1e-4, "fp16": 1e-2}
NAMES = ["person", "bus", "car", "dog", "tie"]


def fixture_batch(size: int, gen: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    names, tensors = ["scene-1", "scene-2"], [random_scenes(gen, 2, size)]
    for jpg in sorted((ROOT / "tests/fixtures/images").glob("*.jpg")):
        path = jpg.with_suffix(".png") if jpg.with_suffix(".png").exists() else jpg
        spec = {"width": size, "height": size, "pad_value": 114, "pad_position": "center"}
        tensors.append(torch.from_numpy(rd.letterbox(rd.load_rgb(path), spec, np.float32)[0]))
        names.append(path.name)
    return torch.cat(tensors), names


def mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f}"


def export_quietly(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        export_dosod.main(argv)
    return buf.getvalue()


@torch.no_grad()
def spread_scores(model, images: torch.Tensor, text: torch.Tensor) -> None:
    """Shifts each level's bias so that 5 % of its logits on these inputs are above 0 (score 0.5):
    scores then reach the steep middle of the sigmoid, where differences show most."""
    logits, _ = model.forward_levels(images, model.encode_text(text))
    for level, contrast in zip(logits, model.head.cls_contrasts):
        contrast.bias.sub_(level.flatten().quantile(0.95))


def check_size(size: str, px: int, work: Path) -> tuple[list[str], bool]:
    t0 = time.time()
    gen = torch.Generator().manual_seed(100)
    ckpt = work / f"dosod_{size}_random.pth"
    images, image_names = fixture_batch(px, gen)
    text = torch.nn.functional.normalize(torch.randn(len(NAMES), 512, generator=gen), dim=1)
    synthetic = random_detector(preset(size), 0)
    spread_scores(synthetic, images, text)
    save_checkpoint(synthetic, ckpt, {"size": size, "seed": 0, "text_dim": 512})
    model, _ = load_detector(ckpt, size)  # the strict loading path every export takes
    with torch.no_grad():
        joint = model.encode_text(text)
        ref_scores, ref_boxes = model.predict(images, joint)
    bake = work / "vocab.npz"
    np.savez(bake, joint=joint.numpy(), names=np.array(NAMES))

    d32, d16 = work / f"{size}-fp32", work / f"{size}-fp16"
    common = [str(ckpt), "--size", size, "--input-size", str(px), "--bake", str(bake)]
    export_quietly(common + ["--out", str(d32)])
    export_quietly(common + ["--out", str(d16), "--fp16"])

    x, v = images.numpy(), joint.numpy()
    scores, boxes = run(d32 / "detector.onnx", {"images": x, "vocab": v})
    (ort_joint,) = run(d32 / "adaptor.onnx", {"text": text.numpy()})
    b_scores, b_boxes = run(d32 / "detector_baked.onnx", {"images": x})
    h_scores, h_boxes = run(d16 / "detector.onnx", {"images": x.astype(np.float16), "vocab": v.astype(np.float16)})
    hb_scores, _ = run(d16 / "detector_baked.onnx", {"images": x.astype(np.float16)})

    rs, rb = ref_scores.numpy(), ref_boxes.numpy()
    m = {
        "scores": float(np.abs(scores - rs).max()),
        "boxes": float(np.abs(boxes - rb).max()),
        "joint": float(np.abs(ort_joint - v).max()),
        "baked": float(np.abs(b_scores - scores).max()),
        "baked_boxes": float(np.abs(b_boxes - boxes).max()),
        "fp16": float(np.abs(h_scores.astype(np.float32) - rs).max()),
        "fp16_boxes": float(np.abs(h_boxes.astype(np.float32) - rb).max()),
        "fp16_baked": float(np.abs(hb_scores.astype(np.float32) - rs).max()),
    }
    per_image = [float(np.abs(scores[i] - rs[i]).max()) for i in range(len(image_names))]
    ok = all(m[k] <= lim for k, lim in LIMITS.items()) and m["fp16_baked"] <= LIMITS["fp16"]
    n_anchors = scores.shape[1]
    lines = [
        f"DOSOD-{size.upper()} @ {px}x{px}: batch of {len(image_names)} ({', '.join(image_names)}), "
        f"K={len(NAMES)}, N={n_anchors}, scores in [{rs.min():.3g}, {rs.max():.3g}], "
        f"{int((rs.max(2) >= 0.25).sum())} anchors >= 0.25",
        f"  detector.onnx vs PyTorch      scores {m['scores']:.2e} (<= 1e-4)   boxes {m['boxes']:.2e} px (<= 1e-2)",
        f"    per image, scores: {', '.join(f'{d:.1e}' for d in per_image)}",
        f"  adaptor.onnx vs PyTorch       joint  {m['joint']:.2e} (<= 1e-4)",
        f"  baked vs decoupled (ORT)      scores {m['baked']:.2e} (<= 1e-4)   boxes {m['baked_boxes']:.2e} px",
        f"  fp16 detector vs PyTorch fp32 scores {m['fp16']:.2e} (<= 1e-2)   boxes {m['fp16_boxes']:.2e} px; "
        f"fp16 baked scores {m['fp16_baked']:.2e}",
        f"  bundle sizes: float32 {bundle_size(d32) / 1e6:.1f} MB (detector.onnx {mb(d32 / 'detector.onnx')}, "
        f"detector_baked.onnx {mb(d32 / 'detector_baked.onnx')}, adaptor.onnx {mb(d32 / 'adaptor.onnx')}); "
        f"float16 {bundle_size(d16) / 1e6:.1f} MB",
        f"  {'ok' if ok else 'FAIL'} ({time.time() - t0:.0f} s)",
    ]
    return lines, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args()
    import onnxruntime

    versions = f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    print(f"DOSOD ONNX agreement ({versions}, CPU, opset 17, legacy exporter)")
    print("Random-weight checkpoints (scripts/dosod/synthetic.py, seed 0);")
    print("max |difference| over every anchor, class and image of the batch.")
    print()
    failures = 0
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            lines, ok = check_size(size, SIZES[size], Path(tmp))
        failures += not ok
        print("\n".join(lines), flush=True)
        print()
    print("RESULT:", "all sizes agree" if not failures else f"{failures} size(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
