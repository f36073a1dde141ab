"""Size presets of the DOSOD family and the arithmetic mmyolo uses to derive channel widths.

This module owns the numbers: deepen/widen factors, last-stage widths, head widths, text
adaptor depth. Everything else in the package builds modules from a `DosodConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Backbone stages of the YOLOv8 P5 CSP-Darknet, before widening / deepening:
# (in_channels, out_channels, num_blocks, add_identity, use_sppf); the last stage's
# out_channels is the preset's `last_stage_channels`.
P5_STAGES: tuple[tuple[int, int | None, int, bool, bool], ...] = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, None, 3, True, True),
)
STEM_CHANNELS = 64
NECK_CSP_BLOCKS = 3
STRIDES = (8, 16, 32)
REG_MAX = 16
BN_EPS = 1e-3
BN_MOMENTUM = 0.03
TRAIN_NUM_CLASSES = 80  # `num_training_classes` of the DOSOD configs; sets the class-branch width.


def make_divisible(x: float, widen: float, divisor: int = 8) -> int:
    """Channels after widening, rounded up to a multiple of `divisor` (mmyolo's rule)."""
    return math.ceil(x * widen / divisor) * divisor


def make_round(x: int, deepen: float) -> int:
    """Blocks after deepening: rounded, at least 1 (mmyolo's rule; x == 1 stays 1)."""
    return max(round(x * deepen), 1) if x > 1 else x


@dataclass(frozen=True)
class DosodConfig:
    """Everything needed to build one member of the family."""

    size: str
    deepen: float
    widen: float
    last_stage_channels: int
    text_dim: int = 512
    joint_dim: int = 512
    text_mlp_layers: int = 3
    # Width of the two 3x3 convs of the class branch. None: the training head's rule,
    # max(in_channels[0], TRAIN_NUM_CLASSES).
    cls_width: int | None = None

    @property
    def neck_channels(self) -> list[int]:
        """Widths of the three neck outputs (= head inputs), strides 8/16/32."""
        return [make_divisible(c, self.widen) for c in (256, 512, self.last_stage_channels)]

    @property
    def head_cls_width(self) -> int:
        if self.cls_width is not None:
            return self.cls_width
        return max(self.neck_channels[0], TRAIN_NUM_CLASSES)

    @property
    def head_reg_width(self) -> int:
        return max(16, self.neck_channels[0] // 4, REG_MAX * 4)

    def with_(self, **kw) -> DosodConfig:
        return replace(self, **kw)


# n is ours (there is no official DOSOD-N): YOLOv8-n depth, half of YOLOv8-n's width
# (stem 8 channels, head inputs 32/64/128) so that a committed float32 test bundle, adaptor
# included, stays under 10 MB (1.29 M detector parameters).
PRESETS: dict[str, DosodConfig] = {
    "n": DosodConfig("n", 0.33, 0.125, 1024),
    "s": DosodConfig("s", 0.33, 0.50, 1024),
    "m": DosodConfig("m", 0.67, 0.75, 768),
    "l": DosodConfig("l", 1.00, 1.00, 512),
}


def preset(size: str, **overrides) -> DosodConfig:
    """The preset for `size` ('n', 's', 'm', 'l'), with optional field overrides."""
    try:
        cfg = PRESETS[size]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(PRESETS)}") from None
    return cfg.with_(**overrides) if overrides else cfg
