"""Write a text-encoder directory (`encoder.toml` + `text_encoder.onnx`), the layout of
docs/model-bundle.md ("Text encoders"). The tokenizer is written by each exporter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from ..bundle.manifest import toml_text


@dataclass
class EncoderInfo:
    """The fields of `encoder.toml`."""

    kind: str  # "minilm" | "clip"
    name: str
    pooling: str  # "mean" | "eot"
    max_length: int  # tokens, special tokens included
    dim: int  # T, last dim of token_embeddings
    pad_token_id: int
    producer: str  # command that made the directory
    source: str  # weights it came from (package + version, or "random weights ...")
    license: str
    eot_token_id: int | None = None  # clip only
    normalize: bool = True


def encoder_toml(info: EncoderInfo) -> str:
    """Render `encoder.toml`; keys in a fixed order so rebuilds are byte-identical."""
    doc: dict[str, object] = {
        "kind": info.kind,
        "name": info.name,
        "pooling": info.pooling,
        "max_length": info.max_length,
        "dim": info.dim,
        "normalize": info.normalize,
    }
    if info.eot_token_id is not None:
        doc["eot_token_id"] = info.eot_token_id
    doc["pad_token_id"] = info.pad_token_id
    doc["provenance"] = {"producer": info.producer, "source": info.source, "license": info.license}
    return toml_text(doc, 'Text encoder for dosod; layout in docs/model-bundle.md ("Text encoders").')


def write_encoder_dir(out: Path, model: onnx.ModelProto, info: EncoderInfo) -> None:
    """Create `out` and write `text_encoder.onnx` and `encoder.toml` into it."""
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "text_encoder.onnx"))
    (out / "encoder.toml").write_text(encoder_toml(info), encoding="utf-8")
