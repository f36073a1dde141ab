"""The one writer of `model.toml` (docs/model-bundle.md), and of TOML in general, with tomli-w."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..model.config import STRIDES

# Text encoders an adaptor can be paired with, by the adaptor's input width (bundles in models/).
TEXT_ENCODERS = {
    512: {"kind": "clip", "name": "openai/clip-vit-base-patch32", "dir": "../encoders/clip-vit-base-patch32"},
    384: {"kind": "minilm", "name": "all-MiniLM-L6-v2", "dir": "../encoders/all-MiniLM-L6-v2"},
}


def build_date() -> datetime.date:
    """Today in UTC, or the day of SOURCE_DATE_EPOCH when that is set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else datetime.datetime.now(datetime.timezone.utc)
    return now.date()


def toml_text(doc: dict[str, Any], comment: str | None = None) -> str:
    """`doc` as TOML (tables in insertion order), after a `# comment` line when given."""
    text = tomli_w.dumps(doc)
    return f"# {comment}\n{text}" if comment else text


@dataclass
class Manifest:
    """The fields of a bundle's `model.toml`; `text_encoder` None pairs the adaptor with the
    encoder of TEXT_ENCODERS for `text_dim` (no [text_encoder] table when there is none)."""

    name: str
    description: str
    input_size: int
    joint_dim: int
    text_dim: int
    producer: str
    source: str
    license: str
    text_encoder: dict[str, str] | None = None
    default_vocabulary: dict[str, Any] | None = None
    detector: str = "detector.onnx"
    adaptor: str = "adaptor.onnx"
    score_threshold: float = 0.25
    iou_threshold: float = 0.65
    max_detections: int = 100
    created: datetime.date = field(default_factory=build_date)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's tables, in the order docs/model-bundle.md lists them."""
        doc: dict[str, Any] = {
            "model": {"name": self.name, "description": self.description},
            "files": {"detector": self.detector, "adaptor": self.adaptor},
            "input": {
                "width": self.input_size,
                "height": self.input_size,
                "resize": "keep_ratio",
                "interpolation": "auto",
                "pad_value": 114,
                "pad_position": "center",
                "strides": list(STRIDES),
                "anchors": sum((self.input_size // s) ** 2 for s in STRIDES),
            },
            "embedding": {"dim": self.joint_dim, "text_dim": self.text_dim},
            "postprocess": {
                "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "multi_label": False,
            },
        }
        text_encoder = self.text_encoder if self.text_encoder is not None else TEXT_ENCODERS.get(self.text_dim)
        if text_encoder is not None:
            doc["text_encoder"] = dict(text_encoder)
        if self.default_vocabulary is not None:
            doc["default_vocabulary"] = dict(self.default_vocabulary)
        doc["provenance"] = {
            "producer": self.producer,
            "source": self.source,
            "license": self.license,
            "created": self.created.isoformat(),
        }
        return doc

    def render(self, comment: str | None = None) -> str:
        return toml_text(self.to_dict(), comment)

    def write(self, directory: Path, comment: str | None = None) -> Path:
        """Writes `directory/model.toml` and returns its path."""
        path = directory / "model.toml"
        path.write_text(self.render(comment), encoding="utf-8")
        return path
