#!/usr/bin/env python3
"""Writes a random-weight DOSOD checkpoint with exactly the official structure.

The file is `{"state_dict": {...}, "meta": {"dosod_synthetic": {...}}}`: the state dict has the
key names and tensor shapes of `dosod_mlp3x_{size}.pth` (minus the frozen CLIP text tower),
random weights, randomised BatchNorm statistics and random per-level `logit_scale` / `bias`.
The `meta` entry marks the file as synthetic (exporters then label bundles "random weights").

    /work/devvenv/bin/python scripts/make_synthetic_checkpoint.py --size s --out /tmp/dosod_s_random.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dosod.checkpoint import count_parameters  # noqa: E402
from dosod.config import PRESETS, preset  # noqa: E402
from dosod.synthetic import random_detector, save_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(PRESETS), required=True)
    ap.add_argument("--out", type=Path, required=True, help="output .pth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-dim", type=int, default=512, help="adaptor input width (512 CLIP, 384 MiniLM)")
    ap.add_argument("--logit-scale", type=float, nargs=2, default=(-1.5, 0.0), metavar=("LO", "HI"))
    ap.add_argument("--bias", type=float, nargs=2, default=(-5.0, -2.0), metavar=("LO", "HI"))
    args = ap.parse_args()

    cfg = preset(args.size, text_dim=args.text_dim)
    model = random_detector(cfg, args.seed, logit_scale=tuple(args.logit_scale), bias=tuple(args.bias))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sd = save_checkpoint(model, args.out, {"size": args.size, "seed": args.seed, "text_dim": args.text_dim})
    size = f"{len(sd)} tensors, {count_parameters(sd)} elements"
    print(f"wrote {args.out}: DOSOD-{args.size.upper()}, {size}, seed {args.seed}")


if __name__ == "__main__":
    main()
