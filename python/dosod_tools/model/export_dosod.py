"""Exports a DOSOD checkpoint (official `dosod_mlp3x_{s,m,l}.pth` or a synthetic one) to a bundle.

Writes, in --out:
  detector.onnx          images [B,3,H,W] + vocab [K,512] -> scores [B,N,K], boxes [B,N,4]
  adaptor.onnx           text [K,T] -> joint [K,512] (the checkpoint's text_mlp)
  detector_baked.onnx    with --bake VOCAB.npz: images -> scores, boxes for that vocabulary
                         (the official re-parameterisation), plus detector_baked.txt (names)
  model.toml, README.md  manifest and model card (docs/model-bundle.md)

Every graph is run once with ONNX Runtime and compared with the PyTorch model before the
manifest is written (float32: 1e-4 on scores, 1e-2 px on boxes; --fp16: 1e-2 on scores).

    /work/devvenv/bin/python -m dosod_tools.model.export_dosod dosod_mlp3x_s.pth --size s --out models/dosod-s
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from .. import invocation
from ..bundle.check import bundle_size, run
from ..bundle.manifest import Manifest
from .checkpoint import load_detector
from .config import PRESETS
from .export import Adaptor, BakedDetector, DecoupledDetector, export
from .model import DosodDetector
from .synthetic import random_scenes

FP32_TOL = {"scores": 1e-4, "boxes": 1e-2, "joint": 1e-4}
FP16_TOL = {"scores": 1e-2, "joint": 1e-2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--size", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", type=Path, required=True, help="bundle directory (created)")
    ap.add_argument("--text-dim", type=int, default=None, help="adaptor input width; checked against the checkpoint")
    ap.add_argument("--input-size", type=int, default=640, help="square input side, a multiple of 32")
    ap.add_argument("--bake", type=Path, default=None, help="npz with joint [K,512] float32 and names [K]")
    ap.add_argument("--fp16", action="store_true", help="float16 weights, inputs and outputs")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--name", default=None, help="model.toml [model] name (default dosod-SIZE)")
    ap.add_argument("--license", default=None, help="default: GPL-3.0, or Apache-2.0 for synthetic checkpoints")
    ap.add_argument("--producer", default=None, help="[provenance] producer (default: this command)")
    return ap.parse_args(argv)


def load_bake(path: Path, joint_dim: int) -> tuple[np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as z:
        joint = np.asarray(z["joint"], dtype=np.float32)
        names = [str(n) for n in z["names"]]
    if joint.ndim != 2 or joint.shape[1] != joint_dim or joint.shape[0] != len(names) or not len(names):
        raise SystemExit(f"{path}: joint {joint.shape} and {len(names)} names; expected [K, {joint_dim}] and K names")
    return joint, names


def compare(
    label: str, got: list[np.ndarray], want: list[torch.Tensor], names: list[str], tol: dict[str, float], dtype: type
) -> dict[str, float]:
    """Max abs differences; exits when an output has the wrong dtype or shape, or a difference
    is over its tolerance."""
    diffs = {}
    for name, g, w in zip(names, got, want):
        w = w.detach().float().numpy()
        if g.shape != w.shape or g.dtype != dtype:
            raise SystemExit(f"{label}: {name} is {g.dtype} {g.shape}; expected {np.dtype(dtype)} {w.shape}")
        diffs[name] = float(np.abs(g.astype(np.float32) - w).max())
    line = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    bad = [k for k, v in diffs.items() if k in tol and v > tol[k]]
    print(f"  check {label}: max |ONNX - PyTorch|: {line}" + (f"  OVER TOLERANCE {bad}" if bad else ""))
    if bad:
        raise SystemExit(f"{label}: ONNX Runtime disagrees with PyTorch ({line})")
    return diffs


def export_detector_and_adaptor(
    detector: torch.nn.Module,
    adaptor: torch.nn.Module,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    out: Path,
    opset: int,
    anchors: int,
    joint_dim: int,
    meta: dict[str, str],
    fp16: bool,
) -> None:
    """Writes out/detector.onnx (images + vocab -> scores, boxes) and out/adaptor.onnx (text ->
    joint) of the bundle contract, runs each with ONNX Runtime and compares it with PyTorch
    (`inputs`: images, text and joint = adaptor(text); `reference`: PyTorch's scores and boxes
    for images and joint)."""
    images, text, joint = inputs
    dtype = torch.float16 if fp16 else torch.float32
    npdt = np.float16 if fp16 else np.float32
    tol = FP16_TOL if fp16 else FP32_TOL
    export(
        detector.to(dtype),
        (images.to(dtype), joint.to(dtype)),
        out / "detector.onnx",
        {"images": {0: "B"}, "vocab": {0: "K"}},
        {"scores": {0: "B", 2: "K"}, "boxes": {0: "B"}},
        opset,
        {"scores": ["B", anchors, "K"], "boxes": ["B", anchors, 4]},
        meta,
    )
    got = run(out / "detector.onnx", {"images": images.numpy().astype(npdt), "vocab": joint.numpy().astype(npdt)})
    compare("detector.onnx", got, list(reference), ["scores", "boxes"], tol, npdt)
    export(
        adaptor.to(dtype),
        (text.to(dtype),),
        out / "adaptor.onnx",
        {"text": {0: "K"}},
        {"joint": {0: "K"}},
        opset,
        {"joint": ["K", joint_dim]},
        meta,
    )
    got = run(out / "adaptor.onnx", {"text": text.numpy().astype(npdt)})
    compare("adaptor.onnx", got, [joint], ["joint"], tol, npdt)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model, info = load_detector(args.checkpoint, args.size, args.text_dim)
    cfg = model.cfg
    size = args.input_size
    if size % 32:
        raise SystemExit(f"--input-size {size} is not a multiple of 32")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    anchors = sum((size // s) ** 2 for s in model.head.strides)
    dtype = torch.float16 if args.fp16 else torch.float32
    npdt = np.float16 if args.fp16 else np.float32
    what = f"DOSOD-{args.size.upper()} from {info['name']} (sha256 {info['sha256'][:16]}...)"
    print(f"{what}, text {cfg.text_dim} -> joint {cfg.joint_dim}")
    if info["dropped_keys"]:
        print(f"  ignored {len(info['dropped_keys'])} text-tower keys (backbone_text.*)")

    # Check inputs: one photo-like random scene, and a vocabulary from unit text embeddings.
    gen = torch.Generator().manual_seed(0)
    images = random_scenes(gen, 1, size)
    text = torch.nn.functional.normalize(torch.randn(4, cfg.text_dim, generator=gen), dim=1)
    with torch.no_grad():
        joint = model.encode_text(text)
        ref_scores, ref_boxes = model.predict(images, joint)
    tol = FP16_TOL if args.fp16 else FP32_TOL
    meta = {"dosod.size": args.size, "dosod.checkpoint": info["name"], "dosod.checkpoint_sha256": info["sha256"]}

    def copy_in(precision: torch.dtype) -> DosodDetector:
        """A private copy of the model, so that no graph wrapper converts the reference in place."""
        return copy.deepcopy(model).to(precision).eval()

    graphs = (DecoupledDetector(copy_in(dtype), size, size), Adaptor(copy_in(dtype)))
    inputs = (images, text, joint)
    export_detector_and_adaptor(*graphs, inputs, (ref_scores, ref_boxes), out, args.opset, anchors, cfg.joint_dim, meta, args.fp16)

    baked_names: list[str] = []
    if args.bake:
        bake_joint, baked_names = load_bake(args.bake, cfg.joint_dim)
        vocab = torch.from_numpy(bake_joint)
        with torch.no_grad():
            b_scores, b_boxes = model.predict(images, vocab)
        export(
            BakedDetector(copy_in(torch.float32), vocab, size, size).to(dtype),  # folded in float32
            (images.to(dtype),),
            out / "detector_baked.onnx",
            {"images": {0: "B"}},
            {"scores": {0: "B"}, "boxes": {0: "B"}},
            args.opset,
            {"scores": ["B", anchors, len(baked_names)], "boxes": ["B", anchors, 4]},
            {**meta, "dosod.vocabulary": ",".join(baked_names)},
        )
        got = run(out / "detector_baked.onnx", {"images": images.numpy().astype(npdt)})
        compare("detector_baked.onnx", got, [b_scores, b_boxes], ["scores", "boxes"], tol, npdt)
        (out / "detector_baked.txt").write_text("\n".join(baked_names) + "\n")
    else:
        for stale in ("detector_baked.onnx", "detector_baked.txt"):
            (out / stale).unlink(missing_ok=True)

    synthetic = info["synthetic"]
    licence = args.license or ("Apache-2.0" if synthetic else "GPL-3.0")
    kind = "random weights, synthetic checkpoint" if synthetic else "checkpoint"
    source = f"{kind} {info['name']} (sha256 {info['sha256']})"
    producer = args.producer or invocation(__spec__.name, argv)
    precision = "float16" if args.fp16 else "float32"
    manifest = Manifest(
        name=args.name or f"dosod-{args.size}",
        description=f"DOSOD-{args.size.upper()}, {size}x{size}, {precision}, from {info['name']}",
        input_size=size,
        joint_dim=cfg.joint_dim,
        text_dim=cfg.text_dim,
        producer=producer,
        source=source,
        license=licence,
    )
    manifest.write(out)
    write_readme(out, args, info, manifest, baked_names, licence)
    print(f"wrote {out}/ ({bundle_size(out) / 1e6:.1f} MB)")


def write_readme(out: Path, args: argparse.Namespace, info: dict, m: Manifest, baked: list[str], licence: str) -> None:
    lines = [
        f"# {m.name}",
        "",
        f"DOSOD-{args.size.upper()} (arXiv 2412.14680) exported by `python -m dosod_tools.model.export_dosod`.",
        "",
        f"* Source: {m.source}",
        f"* Licence of the weights: {licence}",
        f"* Input {m.input_size}x{m.input_size}, joint space {m.joint_dim}-d, text embeddings {m.text_dim}-d, "
        f"{'float16' if args.fp16 else 'float32'}, ONNX opset {args.opset}",
        f"* Produced by: `{m.producer}`",
        "",
        "`detector.onnx` takes any vocabulary (`vocab` = `adaptor.onnx` outputs).",
    ]
    if baked:
        lines += [
            "`detector_baked.onnx` has this vocabulary folded in (official re-parameterisation; input `images` only;",
            f"class order in `detector_baked.txt`): {', '.join(baked)}.",
        ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
