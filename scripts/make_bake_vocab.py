#!/usr/bin/env python3
"""Builds the `--bake` input of export_dosod.py: joint-space class embeddings for one vocabulary.

The joint embeddings are the checkpoint's text MLP applied to L2-normalised text-encoder
embeddings, exactly what `adaptor.onnx` computes; the output npz holds `joint` [K, D] float32 and
`names` [K]. Text embeddings come from --text-npy ([K, T], one row per name, e.g. CLIP
`text_embeds`; rows are L2-normalised here) or, for random-weight tests, --random-text SEED.

    /work/devvenv/bin/python scripts/make_bake_vocab.py dosod_mlp3x_s.pth --size s \\
        --names configs/vocabularies/coco_class_texts.json --text-npy coco_clip.npy --out coco.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dosod.checkpoint import load_detector  # noqa: E402
from dosod.config import PRESETS  # noqa: E402


def read_names(path: Path) -> list[str]:
    """One name per line, or a JSON list of names / of lists whose first item is the name
    (the `configs/vocabularies/*.json` format)."""
    if path.suffix == ".json":
        items = json.loads(path.read_text())
        return [str(i[0] if isinstance(i, list) else i) for i in items]
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--size", choices=sorted(PRESETS), required=True)
    ap.add_argument("--names", type=Path, required=True, help="names file (.txt one per line, or .json)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--text-npy", type=Path, help="text-encoder embeddings [K, T]")
    src.add_argument("--random-text", type=int, metavar="SEED", help="random unit vectors instead (tests only)")
    ap.add_argument("--out", type=Path, required=True, help="output .npz")
    args = ap.parse_args()

    model, _ = load_detector(args.checkpoint, args.size)
    names = read_names(args.names)
    if args.text_npy is not None:
        text = torch.from_numpy(np.load(args.text_npy).astype(np.float32))
    else:
        text = torch.randn(len(names), model.cfg.text_dim, generator=torch.Generator().manual_seed(args.random_text))
    if text.ndim != 2 or text.shape != (len(names), model.cfg.text_dim):
        raise SystemExit(f"text embeddings {tuple(text.shape)}; expected [{len(names)}, {model.cfg.text_dim}]")
    text = torch.nn.functional.normalize(text, dim=1)
    with torch.no_grad():
        joint = model.encode_text(text).numpy().astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, joint=joint, names=np.array(names))
    print(f"wrote {args.out}: {len(names)} classes, joint {joint.shape}")


if __name__ == "__main__":
    main()
