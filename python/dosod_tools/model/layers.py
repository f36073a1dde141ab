"""Building blocks of the YOLOv8 body, named so that state-dict keys match mmyolo checkpoints.

Attribute names (`conv`, `bn`, `main_conv`, `final_conv`, `blocks`, `conv1`, `conv2`,
`poolings`) are part of the checkpoint format: `ConvModule.conv.weight`, `ConvModule.bn.*`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import BN_EPS, BN_MOMENTUM


class ConvModule(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d (eps 1e-3, momentum 0.03) -> SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.activate = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class DarknetBottleneck(nn.Module):
    """3x3 -> 3x3 (expansion 1), with a residual add when asked and widths agree."""

    def __init__(self, channels: int, add_identity: bool) -> None:
        super().__init__()
        self.conv1 = ConvModule(channels, channels, 3)
        self.conv2 = ConvModule(channels, channels, 3)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayerWithTwoConv(nn.Module):
    """YOLOv8's C2f: 1x1 to 2*mid, split, chain of bottlenecks on the second half, concat all, 1x1."""

    def __init__(self, cin: int, cout: int, num_blocks: int, add_identity: bool) -> None:
        super().__init__()
        self.mid = int(cout * 0.5)
        self.main_conv = ConvModule(cin, 2 * self.mid, 1)
        self.final_conv = ConvModule((2 + num_blocks) * self.mid, cout, 1)
        self.blocks = nn.ModuleList(DarknetBottleneck(self.mid, add_identity) for _ in range(num_blocks))

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.main_conv(x).split((self.mid, self.mid), dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.final_conv(torch.cat(parts, dim=1))


class SPPFBottleneck(nn.Module):
    """SPPF: 1x1 to half width, three chained 5x5 max-pools, concat the four, 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int = 5) -> None:
        super().__init__()
        mid = int(cin * 0.5)
        self.conv1 = ConvModule(cin, mid, 1)
        self.poolings = nn.MaxPool2d(kernel, stride=1, padding=kernel // 2)
        self.conv2 = ConvModule(4 * mid, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        y1 = self.poolings(x)
        y2 = self.poolings(y1)
        return self.conv2(torch.cat([x, y1, y2, self.poolings(y2)], dim=1))
