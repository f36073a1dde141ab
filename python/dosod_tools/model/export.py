"""ONNX graphs of the bundle contract (docs/model-bundle.md) built from a loaded DosodDetector.

* `DecoupledDetector`: images [B,3,H,W] + vocab [K,D] -> scores [B,N,K] (sigmoid), boxes [B,N,4].
  Per level the class branch's region embeddings are multiplied with the vocabulary, scaled by
  exp(logit_scale_l) and shifted by bias_l; boxes are the DFL expectation decoded around the
  anchor points (x1, y1, x2, y2 in input pixels). B and K are dynamic, H and W fixed.
* `BakedDetector`: the official re-parameterisation for one vocabulary: vocab * exp(logit_scale_l)
  and bias_l folded into a per-level 1x1 conv; input images only.
* `Adaptor`: the text MLP, text [K,T] -> joint [K,D].

The graphs are written with the TorchScript-based exporter (`dynamo=False`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from .head import ContrastiveScale, RepContrast, grid_points
from .model import DosodDetector


class _Body(nn.Module):
    """Backbone, neck, head branches and the fixed anchor grid for one input size."""

    def __init__(self, model: DosodDetector, height: int, width: int) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.neck = model.neck
        head = model.head
        self.cls_preds, self.reg_preds = head.cls_preds, head.reg_preds
        self.reg_max = head.reg_max
        strides = head.strides
        if height % strides[-1] or width % strides[-1]:
            raise ValueError(f"input {width}x{height} is not a multiple of {strides[-1]}")
        points, stride = grid_points([(height // s, width // s) for s in strides], strides)
        self.register_buffer("points", points, persistent=False)  # [N, 2]
        self.register_buffer("anchor_stride", stride[:, None], persistent=False)  # [N, 1]
        self.register_buffer(
            "bins", torch.arange(self.reg_max, dtype=torch.float32).view(1, 1, -1, 1), persistent=False
        )

    def levels(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per level: region embeddings [B, D, h, w] and box distances [B, 4, hw] (stride units)."""
        out = []
        for feat, cls_pred, reg_pred in zip(self.neck(self.backbone(images)), self.cls_preds, self.reg_preds):
            prob = reg_pred(feat).flatten(2).unflatten(1, (4, self.reg_max)).softmax(2)  # [B, 4, R, hw]
            out.append((cls_pred(feat), (prob * self.bins).sum(2)))
        return out

    def boxes(self, dists: list[Tensor]) -> Tensor:
        d = torch.cat(dists, dim=2).transpose(1, 2) * self.anchor_stride  # [B, N, 4]
        return torch.cat([self.points - d[..., :2], self.points + d[..., 2:]], dim=-1)


class DecoupledDetector(nn.Module):
    """Open-vocabulary detector graph: (images, vocab) -> (scores, boxes)."""

    def __init__(self, model: DosodDetector, height: int, width: int) -> None:
        super().__init__()
        self.body = _Body(model, height, width)
        contrasts = model.head.cls_contrasts
        if not all(isinstance(c, ContrastiveScale) for c in contrasts):
            raise ValueError("DecoupledDetector needs the open-vocabulary head")
        self.contrasts = contrasts

    def forward(self, images: Tensor, vocab: Tensor) -> tuple[Tensor, Tensor]:
        logits, dists = [], []
        for (embed, dist), contrast in zip(self.body.levels(images), self.contrasts):
            region = embed.flatten(2).transpose(1, 2)  # [B, hw, D]
            logits.append(torch.matmul(region, vocab.t()) * contrast.logit_scale.exp() + contrast.bias)
            dists.append(dist)
        return torch.cat(logits, dim=1).sigmoid(), self.body.boxes(dists)


class BakedDetector(nn.Module):
    """Fixed-vocabulary detector graph (official re-parameterisation): images -> (scores, boxes)."""

    def __init__(self, model: DosodDetector, vocab: Tensor, height: int, width: int) -> None:
        super().__init__()
        self.body = _Body(model, height, width)
        k, d = vocab.shape
        self.convs = nn.ModuleList()
        with torch.no_grad():
            for contrast in model.head.cls_contrasts:
                rep = RepContrast(d, k)
                rep.conv.weight.copy_((vocab * contrast.logit_scale.exp()).reshape(k, d, 1, 1))
                rep.conv.bias.copy_(contrast.bias.expand(k))
                self.convs.append(rep)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, dists = [], []
        for (embed, dist), rep in zip(self.body.levels(images), self.convs):
            logits.append(rep(embed).flatten(2).transpose(1, 2))
            dists.append(dist)
        return torch.cat(logits, dim=1).sigmoid(), self.body.boxes(dists)


class Adaptor(nn.Module):
    """The DOSOD text MLP: text [K, T] -> joint [K, D]."""

    def __init__(self, model: DosodDetector) -> None:
        super().__init__()
        self.head = model.head

    def forward(self, text: Tensor) -> Tensor:
        return self.head.encode_text(text)


def export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    inputs: dict[str, dict[int, str]],
    outputs: dict[str, dict[int, str]],
    opset: int,
    output_shapes: dict[str, list[int | str]],
    metadata: dict[str, str] | None = None,
) -> None:
    """torch.onnx.export (TorchScript-based, `dynamo=False`), then annotated and checked.

    `inputs` / `outputs` map tensor names (in order) to their dynamic axes. The tracer cannot
    name every output dimension (N comes out symbolic), so the declared outputs are overwritten
    with `output_shapes` (ints static, strings symbolic); `bundle.run` later checks every static
    dimension against what ONNX Runtime actually returns."""
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={**{k: v for k, v in inputs.items() if v}, **{k: v for k, v in outputs.items() if v}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        want = output_shapes[out.name]
        if len(dims) != len(want):
            raise ValueError(f"{path.name}: output {out.name} has rank {len(dims)}, expected {len(want)}")
        for dim, value in zip(dims, want):
            if isinstance(value, int):
                dim.Clear()
                dim.dim_value = value
            else:
                dim.Clear()
                dim.dim_param = value
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
