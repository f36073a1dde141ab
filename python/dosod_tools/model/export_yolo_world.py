"""Exports a random-weight YOLO-World-v2 (dosod_tools.model.yolo_world) as a bundle, ONLY to
benchmark DOSOD against YOLO-World-v2 at equal size: its detections mean nothing.

Writes, in --out (the bundle contract, docs/model-bundle.md, as export_dosod does):
  detector.onnx      images [B,3,H,W] + vocab [K,512] -> scores [B,N,K], boxes [B,N,4];
                     BatchNorms folded into the convs, the text still an input (it gates the neck)
  adaptor.onnx       text [K,512] -> joint [K,512]: the row-wise L2 normalisation (no MLP)
  model.toml, README.md

Both graphs are run once with ONNX Runtime and compared with the (unfused) PyTorch model
before the manifest is written (export_dosod's tolerances).

    /work/devvenv/bin/python -m dosod_tools.model.export_yolo_world --size s --input-size 640 \\
        --out models/generated/yolo-world-v2-s
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import invocation
from ..bundle.check import bundle_size
from ..bundle.manifest import Manifest
from .checkpoint import count_parameters
from .config import PRESETS, preset
from .export_dosod import export_detector_and_adaptor
from .synthetic import random_scenes
from .yolo_world import GUIDE_CHANNELS, TextNormalise, YoloWorldGraph, random_yolo_world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", type=Path, required=True, help="bundle directory (created)")
    ap.add_argument("--input-size", type=int, default=640, help="square input side, a multiple of 32")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--calib-size", type=int, default=320, help="side of the scenes measuring BatchNorm statistics")
    ap.add_argument("--fp16", action="store_true", help="float16 weights, inputs and outputs")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--name", default=None, help="model.toml [model] name (default yolo-world-v2-SIZE-random)")
    ap.add_argument("--producer", default=None, help="[provenance] producer (default: this command)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    size = args.input_size
    if size % 32:
        raise SystemExit(f"--input-size {size} is not a multiple of 32")
    cfg = preset(args.size)
    model = random_yolo_world(cfg, args.seed, calib_size=args.calib_size)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    anchors = sum((size // s) ** 2 for s in model.head.strides)
    params = count_parameters(model.state_dict())
    label = f"YOLO-World-v2-{args.size.upper()}"
    print(f"{label}, random weights (seed {args.seed}), {params / 1e6:.2f} M parameters (state-dict numel)")

    # Check inputs as export_dosod's: one photo-like random scene, unit text embeddings.
    gen = torch.Generator().manual_seed(0)
    images = random_scenes(gen, 1, size)
    text = torch.nn.functional.normalize(torch.randn(4, GUIDE_CHANNELS, generator=gen), dim=1)
    with torch.no_grad():
        joint = model.encode_text(text)
        ref_scores, ref_boxes = model.predict(images, joint)
    meta = {"dosod.architecture": "yolo-world-v2", "dosod.size": args.size, "dosod.seed": str(args.seed)}

    graphs = (YoloWorldGraph(model, size, size), TextNormalise())  # fused in float32, then converted
    inputs = (images, text, joint)
    export_detector_and_adaptor(*graphs, inputs, (ref_scores, ref_boxes), out, args.opset, anchors, GUIDE_CHANNELS, meta, args.fp16)
    for stale in ("detector_baked.onnx", "detector_baked.txt"):
        (out / stale).unlink(missing_ok=True)

    precision = "float16" if args.fp16 else "float32"
    manifest = Manifest(
        name=args.name or f"yolo-world-v2-{args.size}-random",
        description=f"{label} (random weights, benchmarking only), {size}x{size}, {precision}",
        input_size=size,
        joint_dim=GUIDE_CHANNELS,
        text_dim=GUIDE_CHANNELS,
        producer=args.producer or invocation(__spec__.name, argv),
        source=f"random weights, seed {args.seed} (dosod_tools.model.yolo_world.random_yolo_world)",
        license="Apache-2.0",
    )
    manifest.write(out)
    write_readme(out, args, manifest, label, params)
    print(f"wrote {out}/ ({bundle_size(out) / 1e6:.1f} MB)")


def write_readme(out: Path, args: argparse.Namespace, m: Manifest, label: str, params: int) -> None:
    lines = [
        f"# {m.name}",
        "",
        f"{label} (YOLO-World, arXiv 2401.17270) with **random weights**, exported by",
        "`python -m dosod_tools.model.export_yolo_world` to benchmark DOSOD against YOLO-World-v2 at equal",
        "size (same YOLOv8 backbone; YOLO-World's neck and head are text-guided). Its detections are noise.",
        "",
        f"* Source: {m.source}; {params / 1e6:.2f} M parameters (state-dict numel, BatchNorms unfused)",
        "* Licence of the weights: Apache-2.0",
        f"* Input {m.input_size}x{m.input_size}, text / joint {m.joint_dim}-d, "
        f"{'float16' if args.fp16 else 'float32'}, ONNX opset {args.opset}",
        f"* Produced by: `{m.producer}`",
        "",
        "`detector.onnx` takes any vocabulary (`vocab` [K,512], the `adaptor.onnx` output: L2-normalised",
        "text embeddings); BatchNorms are folded into the convolutions. The vocabulary enters the neck (max-sigmoid",
        "attention in all four PAFPN blocks) and the head (BNContrastiveHead), so unlike DOSOD's",
        "the image path depends on the vocabulary.",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
