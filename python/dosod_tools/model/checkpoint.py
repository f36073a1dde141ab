"""Reading, checking and transforming DOSOD checkpoints (`{"state_dict": {...}, ...}` `.pth`).

* `read_checkpoint` never runs code from the file: it resolves only the globals torch's
  weights-only loader allows; others (mmengine's `meta` / `message_hub` objects in official
  checkpoints) become inert stand-ins, which the state dict never needs.
* `load_detector` builds the matching `DosodDetector` and loads it strictly: every key and shape
  must match; missing / unexpected / mismatched keys are listed in the error. Keys of the frozen
  CLIP text tower (`backbone_text.*`) are dropped first, as the official re-parameterise tool does.
* `reparameterise_state_dict` is the official re-parameterisation: `text_mlp` removed, each
  level's `logit_scale` / `bias` replaced by a 1x1 conv (`joint * exp(logit_scale)`, `bias`).
"""

from __future__ import annotations

import hashlib
import pickle
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, _weights_only_unpickler

from .config import DosodConfig, preset
from .model import DosodDetector

PREFIX_HEAD = "bbox_head.head_module."
DROPPED_PREFIXES = ("backbone_text.", "data_preprocessor.")


class CheckpointError(ValueError):
    """The checkpoint does not fit the requested model."""


class _Opaque(dict):
    """Inert stand-in for a pickled object of a class this loader does not import: it accepts any
    construction, state, items and list appends, and keeps them without interpreting them."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:
        obj = dict.__new__(cls)
        obj.args, obj.items_appended = args, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_appended.append(item)

    def extend(self, items: Any) -> None:
        self.items_appended.extend(items)


def _stand_in(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name, (_Opaque,), {"__module__": module, "__qualname__": name})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals torch's weights-only loader allows; anything else (mmengine or
    numpy objects in `meta`, `message_hub`, ...) becomes an inert stand-in, so no pickled code runs."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _weights_only_unpickler._get_allowed_globals()
        key = f"{module}.{name}"
        return allowed[key] if key in allowed else _stand_in(key)


_RESTRICTED = types.SimpleNamespace(
    __name__="dosod_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, loaded without executing pickled code.

    First torch's weights-only loader; if the file holds other objects (official checkpoints
    carry mmengine metadata), the same loader with inert stand-ins for the globals it reports;
    if their layout still does not fit (e.g. list subclasses), a restricted unpickler that only
    resolves the weights-only loader's allowed globals."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            with torch.serialization.safe_globals([_stand_in(n) for n in names]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detector_state_dict(ckpt: dict[str, Any]) -> tuple[dict[str, Tensor], list[str]]:
    """(state dict without text-tower keys, the dropped keys)."""
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError("checkpoint has no state_dict")
    kept = {k: v for k, v in sd.items() if not k.startswith(DROPPED_PREFIXES)}
    dropped = [k for k in sd if k not in kept]
    return kept, dropped


def infer_config(sd: dict[str, Tensor], size: str) -> DosodConfig:
    """The preset for `size`, with adaptor depth / widths read from the checkpoint's shapes."""
    cfg = preset(size)
    if PREFIX_HEAD + "cls_contrasts.0.conv.weight" in sd:
        raise CheckpointError(
            "this is a re-parameterised checkpoint (fixed vocabulary, no text_mlp); "
            "export needs the open-vocabulary checkpoint, e.g. dosod_mlp3x_s.pth"
        )
    key = PREFIX_HEAD + "cls_preds.0.0.conv.weight"
    if key not in sd:
        raise CheckpointError(f"missing {key}: not a DOSOD / YOLOv8 head checkpoint")
    layers = sorted(
        {int(k[len(PREFIX_HEAD + "text_mlp.") :].split(".")[0]) for k in sd if k.startswith(PREFIX_HEAD + "text_mlp.")}
    )
    n_layers = len(layers)
    joint_dim = int(sd[PREFIX_HEAD + "cls_preds.0.2.weight"].shape[0])
    text_dim = joint_dim
    if n_layers == 1:
        text_dim = int(sd[PREFIX_HEAD + "text_mlp.0.weight"].shape[1])
    elif n_layers > 1:
        text_dim = int(sd[PREFIX_HEAD + "text_mlp.0.0.weight"].shape[1])
    return cfg.with_(
        text_dim=text_dim,
        joint_dim=joint_dim,
        text_mlp_layers=n_layers,
        cls_width=int(sd[key].shape[0]),
    )


def strict_load(model: torch.nn.Module, sd: dict[str, Tensor], what: str = "checkpoint") -> None:
    """load_state_dict that fails with the full list of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: {tuple(sd[k].shape)} in {what}, {tuple(own[k].shape)} in model"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"{what} does not match the model ({model.cfg.size if hasattr(model, 'cfg') else '?'}):"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


def load_detector(path: str | Path, size: str, text_dim: int | None = None) -> tuple[DosodDetector, dict[str, Any]]:
    """Strictly loads an open-vocabulary DOSOD checkpoint into a fresh model (eval mode).

    Returns the model and info: checkpoint name, sha256, dropped keys, synthetic-ness."""
    ckpt = read_checkpoint(path)
    sd, dropped = detector_state_dict(ckpt)
    cfg = infer_config(sd, size)
    if text_dim is not None and text_dim != cfg.text_dim:
        raise CheckpointError(f"--text-dim {text_dim} but the checkpoint's text_mlp takes {cfg.text_dim}")
    model = DosodDetector(cfg)
    strict_load(model, sd, str(path))
    model.eval()
    meta = ckpt.get("meta")
    synthetic = isinstance(meta, dict) and "dosod_synthetic" in meta
    info = {
        "name": Path(path).name,
        "sha256": sha256_of(path),
        "dropped_keys": dropped,
        "synthetic": synthetic,
        "synthetic_meta": meta.get("dosod_synthetic") if synthetic else None,
    }
    return model, info


def reparameterise_state_dict(sd: dict[str, Tensor], joint: Tensor, levels: int = 3) -> dict[str, Tensor]:
    """The official re-parameterisation for a fixed vocabulary `joint` [K, D] (adaptor outputs)."""
    out = {k: v for k, v in sd.items() if not k.startswith(DROPPED_PREFIXES) and ".text_mlp." not in k}
    k, d = joint.shape
    for i in range(levels):
        base = f"{PREFIX_HEAD}cls_contrasts.{i}."
        scale, bias = out.pop(base + "logit_scale"), out.pop(base + "bias")
        out[base + "conv.weight"] = (joint * scale.exp()).reshape(k, d, 1, 1).clone()
        out[base + "conv.bias"] = bias.expand(k).clone()
    return out


def count_parameters(sd: dict[str, Tensor]) -> int:
    """The repository's counting rule: numel summed over every tensor of the state dict."""
    return sum(int(v.numel()) for v in sd.values())
