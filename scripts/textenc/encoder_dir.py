"""Write a text-encoder directory (`encoder.toml` + `text_encoder.onnx`), the layout of
docs/model-bundle.md ("Text encoders"). The tokenizer is written by each exporter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx


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


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    raise TypeError(f"unsupported TOML value {value!r}")


def encoder_toml(info: EncoderInfo) -> str:
    """Render `encoder.toml`; keys in a fixed order so rebuilds are byte-identical."""
    top = {
        "kind": info.kind,
        "name": info.name,
        "pooling": info.pooling,
        "max_length": info.max_length,
        "dim": info.dim,
        "normalize": info.normalize,
    }
    if info.eot_token_id is not None:
        top["eot_token_id"] = info.eot_token_id
    top["pad_token_id"] = info.pad_token_id
    lines = ["# Text encoder for dosod; layout in docs/model-bundle.md (\"Text encoders\")."]
    lines += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    lines += ["", "[provenance]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in
              {"producer": info.producer, "source": info.source, "license": info.license}.items()]
    return "\n".join(lines) + "\n"


def write_encoder_dir(out: Path, model: onnx.ModelProto, info: EncoderInfo) -> None:
    """Create `out` and write `text_encoder.onnx` and `encoder.toml` into it."""
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "text_encoder.onnx"))
    (out / "encoder.toml").write_text(encoder_toml(info), encoding="utf-8")
