"""Checks the PyTorch DOSOD family against the published architecture facts.

For every size it prints the derived widths and depths, the state-dict size, and the parameter
count under the repository's rule (re-parameterised for 80 classes: text_mlp removed, each
level's logit_scale/bias replaced by a [80, 512, 1, 1] conv + [80] bias; numel summed over every
tensor, BatchNorm statistics and num_batches_tracked included). S/M/L must be within 0.5 % of
11.48 M / 26.31 M / 44.19 M. It also checks key names and shapes that the official modules
define, that the re-parameterised state dict loads strictly into the re-parameterised head
(class-branch width in_channels[0]), and that both heads score alike.

    /work/devvenv/bin/python -m dosod_tools.checks.dosod_family | tee docs/dosod-family-check.txt
"""

from __future__ import annotations

import sys

import torch

from ..model.checkpoint import count_parameters, reparameterise_state_dict, strict_load
from ..model.config import NECK_CSP_BLOCKS, P5_STAGES, PRESETS, make_round
from ..model.model import DosodDetector
from ..model.synthetic import random_detector, random_scenes

PUBLISHED = {"s": 11.48e6, "m": 26.31e6, "l": 44.19e6}
TOLERANCE = 0.005
H = "bbox_head.head_module."


def expected_shapes(size: str) -> dict[str, tuple[int, ...]]:
    """Shapes that follow directly from the official module definitions, per size."""
    cfg = PRESETS[size]
    c3, c4, c5 = cfg.neck_channels
    cls_w, reg_w = max(c3, 80), max(16, c3 // 4, 64)
    stem = c3 // 4  # make_divisible(64 * widen)
    return {
        "backbone.stem.conv.weight": (stem, 3, 3, 3),
        "backbone.stem.bn.num_batches_tracked": (),
        "backbone.stage4.2.conv1.conv.weight": (c5 // 2, c5, 1, 1),
        "backbone.stage4.2.conv2.conv.weight": (c5, 2 * c5, 1, 1),
        "neck.top_down_layers.0.main_conv.conv.weight": (c4, c4 + c5, 1, 1),
        "neck.top_down_layers.1.final_conv.conv.weight": (
            c3,
            (2 + make_round(NECK_CSP_BLOCKS, cfg.deepen)) * c3 // 2,
            1,
            1,
        ),
        "neck.downsample_layers.1.conv.weight": (c4, c4, 3, 3),
        "neck.bottom_up_layers.1.final_conv.bn.running_var": (c5,),
        H + "cls_preds.0.0.conv.weight": (cls_w, c3, 3, 3),
        H + "cls_preds.2.2.weight": (512, cls_w, 1, 1),
        H + "cls_preds.2.2.bias": (512,),
        H + "reg_preds.1.0.conv.weight": (reg_w, c4, 3, 3),
        H + "reg_preds.2.2.weight": (64, reg_w, 1, 1),
        H + "cls_contrasts.0.bias": (),
        H + "cls_contrasts.2.logit_scale": (),
        H + "text_mlp.0.0.weight": (512, 512),
        H + "text_mlp.1.0.bias": (512,),
        H + "text_mlp.2.weight": (512, 512),
    }


def main() -> int:
    failures = 0
    print(f"DOSOD family check (torch {torch.__version__})")
    print()
    print(
        "size  deepen widen last  stem  neck/head in     cls  reg  blocks(backbone|neck)  tensors  elements(open-vocab)"
    )
    for size, cfg in PRESETS.items():
        model = DosodDetector(cfg)
        sd = model.state_dict()
        blocks = [make_round(b, cfg.deepen) for _, _, b, _, _ in P5_STAGES]
        print(
            f"{size:<5} {cfg.deepen:<6} {cfg.widen:<5} {cfg.last_stage_channels:<5} {cfg.neck_channels[0] // 4:<5} "
            f"{str(cfg.neck_channels):<16} {cfg.head_cls_width:<4} {cfg.head_reg_width:<4} "
            f"{str(blocks)}|{make_round(NECK_CSP_BLOCKS, cfg.deepen):<12} {len(sd):<8} {count_parameters(sd)}"
        )
    print()
    print("Re-parameterised for 80 classes, counted as the repository counts (tools/count_num_parameters.py):")
    print("size  parameters   published   deviation  result")
    for size, cfg in PRESETS.items():
        sd = DosodDetector(cfg).state_dict()
        rep = reparameterise_state_dict(sd, torch.randn(80, cfg.joint_dim))
        n = count_parameters(rep)
        if size in PUBLISHED:
            dev = n / PUBLISHED[size] - 1
            ok = abs(dev) <= TOLERANCE
            failures += not ok
            print(
                f"{size:<5} {n:>10,}   {PUBLISHED[size] / 1e6:.2f} M     {dev * 100:+.3f} %   {'ok' if ok else 'FAIL'}"
            )
        else:
            print(f"{size:<5} {n:>10,}   (ours, not published)")
    print()
    print("Key names and shapes from the official module definitions:")
    for size in PRESETS:
        sd = DosodDetector(PRESETS[size]).state_dict()
        bad = [
            f"{k}: {'missing' if k not in sd else tuple(sd[k].shape)} != {v}"
            for k, v in expected_shapes(size).items()
            if k not in sd or tuple(sd[k].shape) != v
        ]
        failures += bool(bad)
        print(
            f"  {size}: {len(expected_shapes(size)) - len(bad)}/{len(expected_shapes(size))} ok"
            + "".join(f"\n    {b}" for b in bad)
        )
    print()
    print("Re-parameterised state dict -> RepDOSOD head (class width in_channels[0]), strict load, same scores:")
    gen = torch.Generator().manual_seed(0)
    for size in ("n", "s"):
        cfg = PRESETS[size]
        model = random_detector(cfg, 0, calib_size=128)
        text = torch.nn.functional.normalize(torch.randn(80, cfg.text_dim, generator=gen), dim=1)
        images = random_scenes(gen, 1, 128)
        with torch.no_grad():
            joint = model.encode_text(text)
            rep_sd = reparameterise_state_dict(model.state_dict(), joint)
            rep = DosodDetector(cfg.with_(cls_width=model.cfg.head_cls_width), rep_classes=80)
            strict_load(rep, rep_sd, "re-parameterised state dict")
            a, _ = model.predict(images, joint)
            b, _ = rep.eval().predict(images)
        diff = float((a - b).abs().max())
        rule = (
            "in_channels[0]"
            if model.cfg.head_cls_width == cfg.neck_channels[0]
            else f"{model.cfg.head_cls_width} (max(in_channels[0], 80) of the training head)"
        )
        ok = diff <= 1e-5
        failures += not ok
        print(f"  {size}: loads strictly (class width {rule}); max |score diff| {diff:.2e} {'ok' if ok else 'FAIL'}")
    print()
    print("RESULT:", "all checks passed" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
