"""The whole DOSOD detector (`backbone`, `neck`, `bbox_head`) and its reference forward pass.

`predict` follows mmyolo's inference path step by step (per-level logits, DFL expectation,
grid priors with offset 0.5, distance decoding) and is the PyTorch reference the ONNX exports
are checked against.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .backbone import CSPDarknetP5, YOLOv8PAFPN
from .config import DosodConfig
from .head import DosodHead, distance_to_box, grid_points


class DosodDetector(nn.Module):
    """rep_classes=None: the open-vocabulary detector (checkpoint layout of `DOSODDetector`
    minus `backbone_text`); an integer: the re-parameterised fixed-vocabulary detector."""

    def __init__(self, cfg: DosodConfig, rep_classes: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = CSPDarknetP5(cfg)
        self.neck = YOLOv8PAFPN(cfg)
        self.bbox_head = DosodHead(cfg, rep_classes)

    @property
    def head(self):
        return self.bbox_head.head_module

    def encode_text(self, text: Tensor) -> Tensor:
        """Text-encoder embeddings [K, T] -> joint-space vocabulary [K, D]."""
        return self.head.encode_text(text)

    def forward_levels(self, images: Tensor, joint: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """images [B, 3, H, W] (RGB, 0..1) -> per-level logits [B, K, h, w], distances [B, 4, h, w]."""
        return self.head(self.neck(self.backbone(images)), joint)

    def predict(self, images: Tensor, joint: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """scores [B, N, K] after sigmoid and boxes [B, N, 4] (x1, y1, x2, y2, input pixels)."""
        logits, dists = self.forward_levels(images, joint)
        b = images.shape[0]
        sizes = [(t.shape[2], t.shape[3]) for t in logits]
        points, stride = grid_points(sizes, self.head.strides, images.dtype)
        k = logits[0].shape[1]
        flat_logits = torch.cat([t.permute(0, 2, 3, 1).reshape(b, -1, k) for t in logits], dim=1)
        flat_dists = torch.cat([t.permute(0, 2, 3, 1).reshape(b, -1, 4) for t in dists], dim=1)
        return flat_logits.sigmoid(), distance_to_box(points.to(images.device), flat_dists, stride.to(images.device))

    def forward(self, images: Tensor, joint: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.predict(images, joint)
