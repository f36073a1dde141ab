"""YOLO-World-v2 (arXiv 2401.17270) on this package's YOLOv8 body, as a speed baseline for DOSOD.

Only for benchmarking DOSOD against YOLO-World-v2 (the DOSOD paper compares the two): random
weights, never loaded from a checkpoint. Both share the CSP-Darknet backbone and the head's box
branch; YOLO-World differs where text enters:

* neck: `YOLOWorldPAFPN`, the YOLOv8 PAFPN whose four C2f blocks are `MaxSigmoidCSPLayerWithTwoConv`:
  the C2f parts plus one more, a `MaxSigmoidAttnBlock` on the last part: text -> Linear -> per head
  (`num_heads` groups of the embedding) the max over classes of <pixel, text>, / sqrt(head width),
  + bias, sigmoid, which gates a 3x3 conv+BN of that part. Widths of the v2 configs: guide 512,
  `embed_channels` (128, 256, last/2) and `num_heads` (4, 8, last/2/32) before widening
  (mmyolo `make_round`), i.e. for v2-S embed (64, 128) top-down and (128, 256) bottom-up, heads
  (2, 4) and (4, 8);
* head: the YOLOv8 decoupled head whose class branch emits 512-d embeddings (same widths as
  DOSOD's), then `BNContrastiveHead`: BatchNorm on the image embedding, L2-normalised text,
  <., .> * exp(logit_scale) + bias per level;
* text: the L2-normalised text-encoder output goes into both the neck and the head (no adaptor
  MLP); `encode_text` is that normalisation, and the detector applies it to its text input too
  (a no-op on unit rows).

The text is one vocabulary [K, 512] for the whole batch (the bundle contract), not the official
per-image [B, K, 512]. `fuse_batchnorms` folds every BatchNorm into the conv before it (the image
BatchNorm of `BNContrastiveHead` into the class branch's last 1x1 conv); `YoloWorldGraph` is the
deploy graph of the bundle contract built from a fused copy, text still an input (the official
re-parameterisation, RepConvMaxSigmoid neck + RepBNContrastiveHead, would fold one vocabulary
into the weights instead; the DOSOD paper times both detectors in that folded form).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backbone import YOLOv8PAFPN
from .config import BN_EPS, BN_MOMENTUM, NECK_CSP_BLOCKS, DosodConfig, make_divisible, make_round
from .export import _Body
from .head import ContrastiveScale, DosodHeadModule
from .layers import ConvModule, CSPLayerWithTwoConv
from .model import DosodDetector
from .synthetic import randomise

GUIDE_CHANNELS = 512  # `text_channels` of the YOLO-World-v2 configs


def neck_embed_channels(cfg: DosodConfig) -> list[int]:
    """`neck_embed_channels` of the v2 configs, before widening."""
    return [128, 256, cfg.last_stage_channels // 2]


def neck_num_heads(cfg: DosodConfig) -> list[int]:
    """`neck_num_heads` of the v2 configs, before widening."""
    return [4, 8, cfg.last_stage_channels // 2 // 32]


class ConvBN(ConvModule):
    """mmcv ConvModule with `act_cfg=None`: Conv2d (no bias) -> BatchNorm2d, no activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__(cin, cout, kernel)
        self.activate = nn.Identity()


class MaxSigmoidAttnBlock(nn.Module):
    """Text-guided gate: per head, sigmoid(max_k <embed_head(x), guide_fc(text_k)_head> / sqrt(c) + bias_head)
    times that head's channels of project_conv(x).

    Computed as the official `use_einsum=False` path (transpose + matmul, no Einsum node)."""

    def __init__(self, cin: int, cout: int, guide_channels: int, embed_channels: int, num_heads: int) -> None:
        super().__init__()
        if cout % num_heads or embed_channels % num_heads:
            raise ValueError(f"out {cout} and embed {embed_channels} channels must be multiples of {num_heads} heads")
        self.num_heads = num_heads
        self.head_channels = embed_channels // num_heads
        self.embed_conv = ConvBN(cin, embed_channels, 1) if embed_channels != cin else None
        self.guide_fc = nn.Linear(guide_channels, embed_channels)
        self.bias = nn.Parameter(torch.zeros(num_heads))
        self.project_conv = ConvBN(cin, cout, 3)

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:
        """x [B, C, h, w], guide [K, G] (one vocabulary for the batch) -> [B, cout, h, w]."""
        b, _, h, w = x.shape
        m, c = self.num_heads, self.head_channels
        text = self.guide_fc(guide).reshape(-1, m, c).permute(1, 2, 0)  # [m, c, K]
        embed = self.embed_conv(x) if self.embed_conv is not None else x
        embed = embed.reshape(b, m, c, h * w).transpose(2, 3)  # [B, m, hw, c]
        attn = torch.matmul(embed, text).amax(dim=-1)  # [B, m, hw]: the best-matching class per pixel
        attn = (attn / math.sqrt(c) + self.bias.view(1, -1, 1)).sigmoid()
        out = self.project_conv(x).reshape(b, m, -1, h * w) * attn.unsqueeze(2)
        return out.reshape(b, -1, h, w)


class MaxSigmoidCSPLayerWithTwoConv(CSPLayerWithTwoConv):
    """C2f whose concatenation gets one more part: the attention block applied to the last part."""

    def __init__(
        self, cin: int, cout: int, num_blocks: int, guide_channels: int, embed_channels: int, num_heads: int
    ) -> None:
        super().__init__(cin, cout, num_blocks, add_identity=False)
        self.final_conv = ConvModule((3 + num_blocks) * self.mid, cout, 1)
        self.attn_block = MaxSigmoidAttnBlock(self.mid, self.mid, guide_channels, embed_channels, num_heads)

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:  # type: ignore[override]
        parts = list(self.main_conv(x).split((self.mid, self.mid), dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        parts.append(self.attn_block(parts[-1], guide))
        return self.final_conv(torch.cat(parts, dim=1))


class YOLOWorldPAFPN(YOLOv8PAFPN):
    """YOLOv8 PAFPN with `MaxSigmoidCSPLayerWithTwoConv` in place of all four C2f blocks; the
    upsample / downsample layers and the fusion order are the parent's."""

    def __init__(self, cfg: DosodConfig, guide_channels: int = GUIDE_CHANNELS) -> None:
        super().__init__(cfg)
        ch = [256, 512, cfg.last_stage_channels]
        nb = make_round(NECK_CSP_BLOCKS, cfg.deepen)
        w = cfg.widen
        embed = [make_round(e, w) for e in neck_embed_channels(cfg)]
        heads = [make_round(n, w) for n in neck_num_heads(cfg)]

        def block(cin: int, cout: int, i: int) -> MaxSigmoidCSPLayerWithTwoConv:
            return MaxSigmoidCSPLayerWithTwoConv(
                make_divisible(cin, w), make_divisible(cout, w), nb, guide_channels, embed[i], heads[i]
            )

        # Same indices as mmyolo's build_top_down_layer(idx) / build_bottom_up_layer(idx).
        self.top_down_layers = nn.ModuleList(block(ch[i - 1] + ch[i], ch[i - 1], i - 1) for i in (2, 1))
        self.bottom_up_layers = nn.ModuleList(block(ch[i] + ch[i + 1], ch[i + 1], i + 1) for i in (0, 1))

    def forward(self, feats: tuple[Tensor, Tensor, Tensor], guide: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        c3, c4, c5 = (layer(f) for layer, f in zip(self.reduce_layers, feats))
        p4 = self.top_down_layers[0](torch.cat([self.upsample_layers[0](c5), c4], dim=1), guide)
        p3 = self.top_down_layers[1](torch.cat([self.upsample_layers[1](p4), c3], dim=1), guide)
        n4 = self.bottom_up_layers[0](torch.cat([self.downsample_layers[0](p3), p4], dim=1), guide)
        n5 = self.bottom_up_layers[1](torch.cat([self.downsample_layers[1](n4), c5], dim=1), guide)
        return tuple(layer(f) for layer, f in zip(self.out_layers, (p3, n4, n5)))  # type: ignore[return-value]


class BNContrastiveHead(ContrastiveScale):
    """BatchNorm on the image embedding, L2-normalised text, then <., .> * exp(logit_scale) + bias.

    After `fuse_batchnorms` the norm is an identity (folded into the class branch's last conv)."""

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.norm: nn.Module = nn.BatchNorm2d(embed_dims, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, embed: Tensor, text: Tensor) -> Tensor:
        return super().forward(self.norm(embed), F.normalize(text, dim=-1))


class YoloWorldHeadModule(DosodHeadModule):
    """DOSOD's head layout (same branch widths: mmyolo's YOLOv8 head rule) without the text MLP,
    with a `BNContrastiveHead` per level (`use_bn_head=True`)."""

    def __init__(self, cfg: DosodConfig) -> None:
        super().__init__(cfg.with_(text_mlp_layers=0))
        self.cls_contrasts = nn.ModuleList(BNContrastiveHead(cfg.joint_dim) for _ in cfg.neck_channels)

    def encode_text(self, text: Tensor) -> Tensor:
        """The text backbone's L2 normalisation (HuggingCLIPLanguageBackbone); no adaptor."""
        return F.normalize(text, dim=-1)


class YoloWorldHead(nn.Module):
    def __init__(self, cfg: DosodConfig) -> None:
        super().__init__()
        self.head_module = YoloWorldHeadModule(cfg)


class YoloWorldDetector(DosodDetector):
    """`backbone` (DOSOD's), `neck` (YOLOWorldPAFPN), `bbox_head.head_module` (YoloWorldHeadModule).

    `predict(images, text)` / `forward` are DOSOD's decoding; `text` [K, 512] is L2-normalised
    (the official text backbone's last step, a no-op on the adaptor's output) and reaches the
    neck's attention blocks and the head's contrast."""

    def __init__(self, cfg: DosodConfig) -> None:
        if cfg.text_dim != GUIDE_CHANNELS or cfg.joint_dim != GUIDE_CHANNELS:
            raise ValueError(f"YOLO-World-v2 takes {GUIDE_CHANNELS}-d CLIP text; got {cfg.text_dim} / {cfg.joint_dim}")
        super().__init__(cfg.with_(text_mlp_layers=0))
        self.neck = YOLOWorldPAFPN(cfg)
        self.bbox_head = YoloWorldHead(cfg)

    def forward_levels(self, images: Tensor, joint: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        if joint is None:
            raise ValueError("YOLO-World needs the text embeddings (its neck is text-guided)")
        text = self.encode_text(joint)  # a no-op on unit rows; keeps the neck's gates in range otherwise
        return self.head(self.neck(self.backbone(images), text), text)


def random_yolo_world(cfg: DosodConfig, seed: int, **kw) -> YoloWorldDetector:
    """A YoloWorldDetector with the seeded random but tame weights of `synthetic.randomise`
    (BatchNorm statistics measured on random scenes, eval mode). The attention biases keep their
    official initial value, 0."""
    torch.manual_seed(seed)
    model = YoloWorldDetector(cfg)
    return randomise(model, seed, **kw)  # type: ignore[return-value]


@torch.no_grad()
def fuse_batchnorms(model: YoloWorldDetector) -> YoloWorldDetector:
    """Folds, in place, every ConvModule's BatchNorm into its conv (bias added) and each level's
    `BNContrastiveHead.norm` into the class branch's last 1x1 conv; returns the model in eval mode."""
    model.eval()
    for m in model.modules():
        if isinstance(m, ConvModule) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv, m.bn = fuse_conv_bn_eval(m.conv, m.bn), nn.Identity()
    head = model.head
    for cls_pred, contrast in zip(head.cls_preds, head.cls_contrasts):
        if isinstance(contrast.norm, nn.BatchNorm2d):
            cls_pred[-1], contrast.norm = fuse_conv_bn_eval(cls_pred[-1], contrast.norm), nn.Identity()
    return model


class YoloWorldGraph(nn.Module):
    """The bundle's detector graph: (images [B,3,H,W], vocab [K,512]) -> (scores [B,N,K], boxes [B,N,4]).

    Built from a BatchNorm-fused copy of `model` (the model itself is left alone). `vocab` (the
    adaptor's output, unit rows), L2-normalised once more as in `YoloWorldDetector`, feeds the
    neck's four attention blocks and the contrast: the same matmul * exp(logit_scale_l) + bias_l as
    DOSOD's DecoupledDetector, so the two graphs differ only in the text-guided neck and that
    normalisation."""

    def __init__(self, model: YoloWorldDetector, height: int, width: int) -> None:
        super().__init__()
        fused = fuse_batchnorms(copy.deepcopy(model))
        self.body = _Body(fused, height, width)
        self.contrasts = fused.head.cls_contrasts

    def forward(self, images: Tensor, vocab: Tensor) -> tuple[Tensor, Tensor]:
        body = self.body
        text = F.normalize(vocab, dim=-1)  # [K, 512]; BNContrastiveHead's normalisation is then a no-op
        logits, dists = [], []
        feats = body.neck(body.backbone(images), text)
        text = text.t()  # [512, K]
        for feat, cls_pred, reg_pred, contrast in zip(feats, body.cls_preds, body.reg_preds, self.contrasts):
            region = cls_pred(feat).flatten(2).transpose(1, 2)  # [B, hw, 512]
            logits.append(torch.matmul(region, text) * contrast.logit_scale.exp() + contrast.bias)
            prob = reg_pred(feat).flatten(2).unflatten(1, (4, body.reg_max)).softmax(2)  # [B, 4, R, hw]
            dists.append((prob * body.bins).sum(2))
        return torch.cat(logits, dim=1).sigmoid(), body.boxes(dists)


class TextNormalise(nn.Module):
    """The bundle's adaptor: text [K, 512] -> joint [K, 512], row-wise L2 normalisation."""

    def forward(self, text: Tensor) -> Tensor:
        return F.normalize(text, dim=-1)
