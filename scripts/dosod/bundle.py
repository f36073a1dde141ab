"""Bundle files besides the ONNX graphs: `model.toml` (docs/model-bundle.md) and README.md,
plus the ONNX Runtime helpers the exporters use to check what they wrote."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import STRIDES

# Text encoders the adaptor can be paired with, by the adaptor's input width.
TEXT_ENCODERS = {
    512: ("clip", "openai/clip-vit-base-patch32", "../encoders/clip-vit-base-patch32"),
    384: ("minilm", "all-MiniLM-L6-v2", "../encoders/all-MiniLM-L6-v2"),
}


def _q(s: str) -> str:
    """A TOML basic string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Manifest:
    name: str
    description: str
    input_size: int
    joint_dim: int
    text_dim: int
    producer: str
    source: str
    license: str
    detector: str = "detector.onnx"
    adaptor: str = "adaptor.onnx"
    score_threshold: float = 0.25
    iou_threshold: float = 0.65
    max_detections: int = 100

    def render(self) -> str:
        n = sum((self.input_size // s) ** 2 for s in STRIDES)
        lines = [
            "[model]",
            f"name = {_q(self.name)}",
            f"description = {_q(self.description)}",
            "",
            "[files]",
            f"detector = {_q(self.detector)}",
            f"adaptor = {_q(self.adaptor)}",
            "",
            "[input]",
            f"width = {self.input_size}",
            f"height = {self.input_size}",
            'resize = "keep_ratio"',
            'interpolation = "auto"',
            "pad_value = 114",
            'pad_position = "center"',
            f"strides = [{', '.join(str(s) for s in STRIDES)}]",
            f"anchors = {n}",
            "",
            "[embedding]",
            f"dim = {self.joint_dim}",
            f"text_dim = {self.text_dim}",
            "",
            "[postprocess]",
            f"score_threshold = {self.score_threshold}",
            f"iou_threshold = {self.iou_threshold}",
            f"max_detections = {self.max_detections}",
            "multi_label = false",
            "",
        ]
        if self.text_dim in TEXT_ENCODERS:
            kind, name, rel = TEXT_ENCODERS[self.text_dim]
            lines += ["[text_encoder]", f"kind = {_q(kind)}", f"name = {_q(name)}", f"dir = {_q(rel)}", ""]
        lines += [
            "[provenance]",
            f"producer = {_q(self.producer)}",
            f"source = {_q(self.source)}",
            f"license = {_q(self.license)}",
            f"created = {_q(_dt.date.today().isoformat())}",
            "",
        ]
        return "\n".join(lines)


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Runs the graph once; fails if an output contradicts a static dimension it declares."""
    sess = session(path)
    results = sess.run(None, feeds)
    for meta, value in zip(sess.get_outputs(), results):
        declared = meta.shape
        ok = len(declared) == value.ndim and all(
            not isinstance(d, int) or d == v for d, v in zip(declared, value.shape)
        )
        if not ok:
            raise ValueError(
                f"{path}: output {meta.name} declared {declared}, ONNX Runtime returned {list(value.shape)}"
            )
    return results


def bundle_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
