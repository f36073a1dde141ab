"""YOLOv8 CSP-Darknet (P5) backbone and YOLOv8 PAFPN neck (mmyolo layouts and key names)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import NECK_CSP_BLOCKS, P5_STAGES, STEM_CHANNELS, DosodConfig, make_divisible, make_round
from .layers import ConvModule, CSPLayerWithTwoConv, SPPFBottleneck


class CSPDarknetP5(nn.Module):
    """`stem`, then `stage1`..`stage4` (3x3 s2 ConvModule + C2f [+ SPPF]); returns stages 2-4."""

    def __init__(self, cfg: DosodConfig) -> None:
        super().__init__()
        self.stem = ConvModule(3, make_divisible(STEM_CHANNELS, cfg.widen), 3, 2)
        for i, (cin, cout, blocks, identity, sppf) in enumerate(P5_STAGES):
            cout = cfg.last_stage_channels if cout is None else cout
            cin_w, cout_w = make_divisible(cin, cfg.widen), make_divisible(cout, cfg.widen)
            layers: list[nn.Module] = [
                ConvModule(cin_w, cout_w, 3, 2),
                CSPLayerWithTwoConv(cout_w, cout_w, make_round(blocks, cfg.deepen), identity),
            ]
            if sppf:
                layers.append(SPPFBottleneck(cout_w, cout_w, 5))
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.stem(x)
        x = self.stage1(x)
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        return c3, c4, c5


class YOLOv8PAFPN(nn.Module):
    """Top-down then bottom-up fusion with C2f blocks (no identity), nearest 2x upsampling.

    Module lists mirror mmyolo's base neck: `reduce_layers` and `out_layers` are identities,
    `upsample_layers`, `top_down_layers` (index 0 fuses P5 into P4, index 1 P4 into P3),
    `downsample_layers` and `bottom_up_layers`.
    """

    def __init__(self, cfg: DosodConfig) -> None:
        super().__init__()
        ch = [256, 512, cfg.last_stage_channels]  # in_channels == out_channels in every config
        nb = make_round(NECK_CSP_BLOCKS, cfg.deepen)
        w = cfg.widen
        self.reduce_layers = nn.ModuleList(nn.Identity() for _ in ch)
        self.upsample_layers = nn.ModuleList()
        self.top_down_layers = nn.ModuleList()
        for idx in (2, 1):
            self.upsample_layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.top_down_layers.append(
                CSPLayerWithTwoConv(make_divisible(ch[idx - 1] + ch[idx], w), make_divisible(ch[idx - 1], w), nb, False)
            )
        self.downsample_layers = nn.ModuleList()
        self.bottom_up_layers = nn.ModuleList()
        for idx in (0, 1):
            self.downsample_layers.append(ConvModule(make_divisible(ch[idx], w), make_divisible(ch[idx], w), 3, 2))
            self.bottom_up_layers.append(
                CSPLayerWithTwoConv(make_divisible(ch[idx] + ch[idx + 1], w), make_divisible(ch[idx + 1], w), nb, False)
            )
        self.out_layers = nn.ModuleList(nn.Identity() for _ in ch)

    def forward(self, feats: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        c3, c4, c5 = (layer(f) for layer, f in zip(self.reduce_layers, feats))
        p4 = self.top_down_layers[0](torch.cat([self.upsample_layers[0](c5), c4], dim=1))
        p3 = self.top_down_layers[1](torch.cat([self.upsample_layers[1](p4), c3], dim=1))
        n4 = self.bottom_up_layers[0](torch.cat([self.downsample_layers[0](p3), p4], dim=1))
        n5 = self.bottom_up_layers[1](torch.cat([self.downsample_layers[1](n4), c5], dim=1))
        return tuple(layer(f) for layer, f in zip(self.out_layers, (p3, n4, n5)))  # type: ignore[return-value]
