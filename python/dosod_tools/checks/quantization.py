"""What to keep float32 in an INT8 bundle, in numbers: each `--keep-float` choice of
dosod_tools.bundle.quantize against the float32 detector, on held-out images; or (--compare)
finished bundles of other precisions against their float32 one.

    .venv/bin/python -m dosod_tools.checks.quantization models/demo --images data/calib/emoji-train \\
        --vocab data/calib/emoji-train/demo-classes.npz --heldout tests/fixtures/demo-heldout/images
    .venv/bin/python -m dosod_tools.checks.quantization models/generated/dosod-s --vocab V.npz \\
        --heldout tests/fixtures/demo-heldout/images --compare models/generated/dosod-s-fp16 models/generated/dosod-s-int8

For each choice (none, tail, head, ends) the detector is quantised with the same calibration
(or each --compare bundle is taken as it is), then run with the float32 one on every held-out image (letterboxed as the engine does, the
same vocabulary): |score difference| over the (anchor, class) pairs whose float32 score is at
least 0.1 (mean, 95th percentile, max), |box coordinate difference| in input pixels over the
anchors with such a score, and the median bare `session.run` ms (`--threads`, interleaved).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..bundle.check import session
from ..reference.detect import input_dtype, letterbox, load_rgb
from ..bundle.quantize import METHODS, Letterboxed, calibration_images, load_joint, quantize_detector

CHOICES = ("none", "tail", "head", "ends")


def detector_of(bundle: Path) -> Path:
    """The bundle's detector graph (`[files] detector`, default detector.onnx)."""
    files = tomllib.loads((bundle / "model.toml").read_text()).get("files", {})
    return bundle / files.get("detector", "detector.onnx")


def feeds(sess: ort.InferenceSession, images: np.ndarray, joint: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs in the element type the session declares (float16 bundles take float16)."""
    return {"images": images.astype(input_dtype(sess, "images")), "vocab": joint.astype(input_dtype(sess, "vocab"))}


def deviation(
    sess: ort.InferenceSession, tensors: list[np.ndarray], want: list[list[np.ndarray]], joint: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """|score differences| where the float32 score is >= 0.1, |box differences| at those anchors."""
    scores, boxes = [], []
    for x, (ws, wb) in zip(tensors, want):
        gs, gb = (o.astype(np.float32) for o in sess.run(None, feeds(sess, x, joint)))
        mask = ws >= 0.1
        scores.append(np.abs(gs - ws)[mask])
        boxes.append(np.abs(gb - wb)[mask.any(-1)].ravel())
    return np.concatenate(scores), np.concatenate(boxes)


def median_ms(sessions: dict[str, ort.InferenceSession], x: np.ndarray, joint: np.ndarray, runs: int) -> dict[str, float]:
    """Median session.run ms of each session on one image, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for name, sess in sessions.items():
            f = feeds(sess, x, joint)
            start = time.perf_counter()
            sess.run(None, f)
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="float32 bundle")
    ap.add_argument("--images", type=Path, default=None, help="calibration images (not with --compare)")
    ap.add_argument("--count", type=int, default=128)
    ap.add_argument("--vocab", type=Path, required=True, help="`dosod vocab encode` .npz, for calibration and the check")
    ap.add_argument("--heldout", type=Path, required=True, help="images to compare on (none of them calibrated)")
    ap.add_argument("--compare", type=Path, nargs="+", default=None, help="finished bundles to compare instead")
    ap.add_argument("--method", choices=sorted(METHODS), default="minmax")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10, help="timed session.run per detector")
    args = ap.parse_args(argv)
    if args.compare is None and args.images is None:
        ap.error("--images is needed to quantise (or pass --compare)")

    manifest = tomllib.loads((args.bundle / "model.toml").read_text())
    spec = manifest["input"]
    detector = detector_of(args.bundle)
    joint = load_joint(args.vocab, int(manifest["embedding"]["dim"]))
    heldout = calibration_images(args.heldout, 10_000)
    tensors = [letterbox(load_rgb(p), spec, np.float32)[0] for p in heldout]
    reference = session(detector, args.threads)
    want = [reference.run(None, {"images": x, "vocab": joint}) for x in tensors]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            candidates = [(str(b), detector_of(b), "-") for b in args.compare]
        else:
            calibration = calibration_images(args.images, args.count)
            candidates = []
            for choice in CHOICES:
                out = Path(tmp) / f"{choice}.onnx"
                kept = quantize_detector(detector, out, Letterboxed(calibration, spec, joint), args.method, choice)
                candidates.append((choice, out, str(len(kept))))
        for label, path, kept in candidates:
            sess = session(path, args.threads)
            s, b = deviation(sess, tensors, want, joint)
            t = median_ms({"float32": reference, "other": sess}, tensors[0], joint, args.runs)
            rows.append((label, kept, s, b, t))

    print(f"\n{args.bundle}: {len(heldout)} held-out images, {args.threads} threads")
    first = "bundle" if args.compare else "keep float32"
    print(f"| {first} | float nodes | score diff mean | p95 | max | box diff mean px | p95 | its ms | float32 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, kept, s, b, t in rows:
        print(
            f"| {label} | {kept} | {s.mean():.4f} | {np.percentile(s, 95):.4f} | {s.max():.3f} | {b.mean():.2f} "
            f"| {np.percentile(b, 95):.2f} | {t['other']:.1f} | {t['float32']:.1f} |"
        )


if __name__ == "__main__":
    main()
