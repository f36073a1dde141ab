"""The DOSOD head: YOLOv8 decoupled head whose class branch emits joint-space region embeddings,
per-level contrastive scale/bias, and the text MLP adaptor.

Key names follow the DOSOD checkpoints (`bbox_head.head_module.` prefix added by the model):
`cls_preds.{i}`, `reg_preds.{i}` (Sequential: ConvModule, ConvModule, Conv2d),
`cls_contrasts.{i}.bias` / `.logit_scale` (0-d tensors; re-parameterised: `.conv.weight` /
`.conv.bias`), `text_mlp.{j}` (ModuleList; mlp3x: `0.0`, `1.0` Linear+ReLU, `2` Linear).

Neither side is L2-normalised inside the head: the text encoder's output is normalised before
the adaptor, but the adaptor output and the region embeddings are used as they are
(`logit = <region, joint> * exp(logit_scale) + bias`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import REG_MAX, STRIDES, DosodConfig
from .layers import ConvModule


class ContrastiveScale(nn.Module):
    """One level's learned scalars: logits = <region, text> * exp(logit_scale) + bias."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros([]))
        self.logit_scale = nn.Parameter(torch.full([], -1.0))

    def forward(self, embed: Tensor, joint: Tensor) -> Tensor:
        """embed [B, D, h, w], joint [K, D] -> logits [B, K, h, w] (as the official w @ x)."""
        b, d, h, w = embed.shape
        logits = torch.matmul(joint, embed.reshape(b, d, h * w))
        return logits.reshape(b, joint.shape[0], h, w) * self.logit_scale.exp() + self.bias


class RepContrast(nn.Module):
    """A fixed vocabulary folded in: 1x1 conv, weight = joint * exp(logit_scale), bias = bias."""

    def __init__(self, joint_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(joint_dim, num_classes, 1, bias=True)

    def forward(self, embed: Tensor, joint: Tensor | None = None) -> Tensor:
        return self.conv(embed)


def build_text_mlp(text_dim: int, joint_dim: int, layers: int) -> nn.ModuleList:
    """DOSOD's adaptor layout: one layer is a bare Linear; otherwise Linear+ReLU blocks
    (Sequential, keys `.{j}.0.*`) and a bare final Linear (keys `.{last}.*`)."""
    mlp = nn.ModuleList()
    if layers == 1:
        mlp.append(nn.Linear(text_dim, joint_dim))
        return mlp
    for j in range(layers):
        cin = text_dim if j == 0 else joint_dim
        if j == layers - 1:
            mlp.append(nn.Linear(cin, joint_dim))
        else:
            mlp.append(nn.Sequential(nn.Linear(cin, joint_dim), nn.ReLU()))
    return mlp


def _branch(cin: int, width: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvModule(cin, width, 3), ConvModule(width, width, 3), nn.Conv2d(width, cout, 1))


class DosodHeadModule(nn.Module):
    """Per level a DFL box branch (-> 4*reg_max) and a class branch (-> joint_dim).

    rep_classes=None builds the open-vocabulary (training) head with `text_mlp`;
    an integer builds the re-parameterised head (1x1 conv per level, no `text_mlp`).
    """

    def __init__(self, cfg: DosodConfig, rep_classes: int | None = None) -> None:
        super().__init__()
        in_ch = cfg.neck_channels
        self.reg_max = REG_MAX
        self.strides = STRIDES
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.cls_contrasts = nn.ModuleList()
        self.reparameterised = rep_classes is not None
        if not self.reparameterised and cfg.text_mlp_layers > 0:
            self.text_mlp = build_text_mlp(cfg.text_dim, cfg.joint_dim, cfg.text_mlp_layers)
        else:
            self.text_mlp = None
        for cin in in_ch:
            self.reg_preds.append(_branch(cin, cfg.head_reg_width, 4 * REG_MAX))
            self.cls_preds.append(_branch(cin, cfg.head_cls_width, cfg.joint_dim))
            self.cls_contrasts.append(
                RepContrast(cfg.joint_dim, rep_classes) if rep_classes is not None else ContrastiveScale()
            )
        self.register_buffer("proj", torch.arange(REG_MAX, dtype=torch.float32), persistent=False)

    def encode_text(self, text: Tensor) -> Tensor:
        """text [K, T] -> joint [K, D] through the adaptor (identity when it has no layers)."""
        if self.text_mlp is None:
            return text
        for layer in self.text_mlp:
            text = layer(text)
        return text

    def forward(self, feats: tuple[Tensor, ...], joint: Tensor | None) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: class logits [B, K, h, w] and box distances [B, 4, h, w] in stride units
        (left, top, right, bottom), the DFL expectation taken as the official head does."""
        logits, dists = [], []
        for feat, cls_pred, reg_pred, contrast in zip(feats, self.cls_preds, self.reg_preds, self.cls_contrasts):
            b, _, h, w = feat.shape
            logits.append(contrast(cls_pred(feat), joint))
            raw = reg_pred(feat).reshape(b, 4, self.reg_max, h * w).permute(0, 3, 1, 2)
            dist = raw.softmax(3).matmul(self.proj.view(-1, 1)).squeeze(-1)  # [B, hw, 4]
            dists.append(dist.transpose(1, 2).reshape(b, 4, h, w))
        return logits, dists


class DosodHead(nn.Module):
    """Holds `head_module` so keys read `bbox_head.head_module.*` as in the checkpoints."""

    def __init__(self, cfg: DosodConfig, rep_classes: int | None = None) -> None:
        super().__init__()
        self.head_module = DosodHeadModule(cfg, rep_classes)


def grid_points(sizes: list[tuple[int, int]], strides: tuple[int, ...], dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Anchor centres (x, y) = ((i + 0.5) * s, (j + 0.5) * s), row-major per level, and the
    stride of each anchor: ([N, 2], [N])."""
    points, per_anchor = [], []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
        points.append(torch.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s], dim=1))
        per_anchor.append(torch.full((h * w,), float(s), dtype=dtype))
    return torch.cat(points), torch.cat(per_anchor)


def distance_to_box(points: Tensor, dist: Tensor, stride: Tensor) -> Tensor:
    """mmyolo's DistancePointBBoxCoder.decode: distances [B, N, 4] (ltrb, stride units) -> x1y1x2y2."""
    d = dist * stride[None, :, None]
    return torch.cat([points[None] - d[..., :2], points[None] + d[..., 2:]], dim=-1)
