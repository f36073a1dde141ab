"""Export a CLIP text tower as a dosod text encoder (ONNX, no torch).

From a Hugging Face CLIP model folder (config.json + model.safetensors, e.g. a copy of
openai/clip-vit-base-patch32; a `CLIPModel` or a `CLIPTextModelWithProjection`):

    python -m dosod_tools.textenc.export_clip_text --hf-dir /path/to/clip-vit-base-patch32 \
        --out models/encoders/clip-vit-base-patch32

or a small random-weight model for tests (weights stored as float16, computed in float32):

    python -m dosod_tools.textenc.export_clip_text --random-config tiny --out tests/fixtures/clip-tiny

The graph (dosod_tools.textenc.graph) is token + position embeddings, pre-LN layers with a causal
mask combined with `attention_mask`, quick GELU, the final LayerNorm and the text projection
applied to every token, so `token_embeddings` is [B, S, projection_dim]; the consumer takes the
row at the first `<|endoftext|>` (eot_token_id) and L2-normalises it (docs/model-bundle.md,
"Text encoders"). The tokenizer.json is not written here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import invocation
from .encoder_dir import EncoderInfo, write_encoder_dir
from .graph import EncoderLayer, Linear, Norm, TransformerSpec, build_encoder_graph
from .tensors import read_safetensors, write_safetensors

EOT_TOKEN_ID = 49407  # `<|endoftext|>` in CLIP's BPE vocabulary (bpe_simple_vocab_16e6)
PAD_TOKEN_ID = 49407  # the openai CLIP tokenizer pads with `<|endoftext|>` too

# CLIPTextConfig defaults, used for keys a config.json leaves out.
TEXT_DEFAULTS: dict[str, object] = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "projection_dim": 512,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

RANDOM_CONFIGS: dict[str, dict[str, object]] = {
    # Full vocabulary and context so real CLIP token ids work; hidden 32 keeps the float16
    # file at about 3.3 MB (the token table is 49408 x 32).
    "tiny": {"hidden_size": 32, "intermediate_size": 128, "projection_dim": 512,
             "num_hidden_layers": 2, "num_attention_heads": 4},
}


def text_config(config: dict) -> dict:
    """The text-tower settings of a `CLIPModel` or `CLIPTextModelWithProjection` config.json."""
    text = dict(config.get("text_config") or config)
    if "projection_dim" in config:  # CLIPModel keeps it at the top level
        text["projection_dim"] = config["projection_dim"]
    return {**TEXT_DEFAULTS, **{k: v for k, v in text.items() if v is not None}}


def load_weights(hf_dir: Path) -> dict[str, np.ndarray]:
    """Tensors of model.safetensors, or of every shard listed in model.safetensors.index.json."""
    index = hf_dir / "model.safetensors.index.json"
    if index.exists():
        weights: dict[str, np.ndarray] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            weights.update(read_safetensors(hf_dir / shard))
        return weights
    return read_safetensors(hf_dir / "model.safetensors")


def clip_spec(weights: dict[str, np.ndarray], cfg: dict) -> TransformerSpec:
    """Map Hugging Face CLIP text-tower tensors (`text_model.*`, `text_projection.weight`)."""
    eps = float(cfg["layer_norm_eps"])

    def lin(name: str, bias: bool = True) -> Linear:
        return Linear(weights[f"{name}.weight"], weights[f"{name}.bias"] if bias else None)

    def norm(name: str) -> Norm:
        return Norm(weights[f"{name}.weight"], weights[f"{name}.bias"], eps)

    act = cfg["hidden_act"]
    if act not in ("quick_gelu", "gelu"):
        raise ValueError(f"unsupported hidden_act {act!r}")
    layers = []
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"text_model.encoder.layers.{i}"
        layers.append(EncoderLayer(
            query=lin(f"{p}.self_attn.q_proj"),
            key=lin(f"{p}.self_attn.k_proj"),
            value=lin(f"{p}.self_attn.v_proj"),
            attn_out=lin(f"{p}.self_attn.out_proj"),
            attn_norm=norm(f"{p}.layer_norm1"),
            fc1=lin(f"{p}.mlp.fc1"),
            fc2=lin(f"{p}.mlp.fc2"),
            mlp_norm=norm(f"{p}.layer_norm2"),
        ))
    return TransformerSpec(
        token_embedding=weights["text_model.embeddings.token_embedding.weight"],
        position_embedding=weights["text_model.embeddings.position_embedding.weight"],
        layers=layers,
        num_heads=int(cfg["num_attention_heads"]),
        norm_first=True,
        activation=act,  # type: ignore[arg-type]
        causal=True,
        final_norm=norm("text_model.final_layer_norm"),
        projection=lin("text_projection", bias=False),
    )


def random_clip(preset: str, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """A `CLIPTextModelWithProjection` config.json and random weights, every value exactly
    representable in float16 (so float16 storage is lossless)."""
    cfg = {**TEXT_DEFAULTS, **RANDOM_CONFIGS[preset]}
    rng = np.random.default_rng(seed)
    h, m, p = int(cfg["hidden_size"]), int(cfg["intermediate_size"]), int(cfg["projection_dim"])

    def normal(shape: tuple[int, ...], std: float, mean: float = 0.0) -> np.ndarray:
        return (mean + std * rng.standard_normal(shape)).astype(np.float16).astype(np.float32)

    w: dict[str, np.ndarray] = {
        "text_model.embeddings.token_embedding.weight": normal((int(cfg["vocab_size"]), h), 0.5),
        "text_model.embeddings.position_embedding.weight": normal((int(cfg["max_position_embeddings"]), h), 0.5),
    }

    def add_linear(name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        w[f"{name}.weight"] = normal((n_out, n_in), n_in**-0.5)
        if bias:
            w[f"{name}.bias"] = normal((n_out,), 0.1)

    def add_norm(name: str) -> None:
        w[f"{name}.weight"] = normal((h,), 0.1, mean=1.0)
        w[f"{name}.bias"] = normal((h,), 0.1)

    for i in range(int(cfg["num_hidden_layers"])):
        pre = f"text_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add_linear(f"{pre}.self_attn.{proj}", h, h)
        add_linear(f"{pre}.mlp.fc1", m, h)
        add_linear(f"{pre}.mlp.fc2", h, m)
        add_norm(f"{pre}.layer_norm1")
        add_norm(f"{pre}.layer_norm2")
    add_norm("text_model.final_layer_norm")
    add_linear("text_projection", p, h, bias=False)

    config = {
        "architectures": ["CLIPTextModelWithProjection"],
        "model_type": "clip_text_model",
        **cfg,
        "bos_token_id": 49406,
        "eos_token_id": EOT_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }
    return config, w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf-dir", type=Path, help="Hugging Face CLIP folder: config.json + model.safetensors")
    src.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS), help="random weights of this size, for tests")
    parser.add_argument("--out", type=Path, required=True, help="encoder directory to write")
    parser.add_argument("--name", default=None, help="encoder name (default: the Hugging Face id in config.json, else the folder name, or clip-<preset>)")
    parser.add_argument("--weights-dtype", choices=["float32", "float16"], default=None,
                        help="parameter storage (default float32; float16 for --random-config)")
    parser.add_argument("--seed", type=int, default=0, help="--random-config seed")
    parser.add_argument("--save-hf", type=Path, default=None,
                        help="--random-config: also write its config.json + model.safetensors here")
    parser.add_argument("--source", default=None, help="provenance source (default: describes the input)")
    parser.add_argument("--license", default=None, help="provenance licence (default: MIT for CLIP weights)")
    parser.add_argument("--eot-token-id", type=int, default=EOT_TOKEN_ID)
    parser.add_argument("--pad-token-id", type=int, default=PAD_TOKEN_ID)
    args = parser.parse_args()

    start = time.perf_counter()
    if args.random_config:
        config, weights = random_clip(args.random_config, args.seed)
        name = args.name or f"clip-{args.random_config}"
        source = args.source or f"random weights (--random-config {args.random_config}, seed {args.seed})"
        license_ = args.license or "Apache-2.0"
        dtype = args.weights_dtype or "float16"
        if args.save_hf:
            args.save_hf.mkdir(parents=True, exist_ok=True)
            (args.save_hf / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            write_safetensors(args.save_hf / "model.safetensors", weights, {"format": "pt"})
    else:
        if args.save_hf:
            sys.exit("--save-hf only applies to --random-config")
        config = json.loads((args.hf_dir / "config.json").read_text())
        weights = load_weights(args.hf_dir)
        # The Hugging Face model id (`openai/clip-vit-base-patch32`) that bundles name in
        # [text_encoder] name (dosod_tools.bundle.manifest.TEXT_ENCODERS); else the folder's name.
        name = args.name or config.get("_name_or_path") or args.hf_dir.resolve().name
        source = args.source or f"Hugging Face CLIP folder {args.hf_dir.resolve().name}"
        license_ = args.license or "MIT (OpenAI CLIP)"
        dtype = args.weights_dtype or "float32"

    cfg = text_config(config)
    spec = clip_spec(weights, cfg)
    model = build_encoder_graph(spec, graph_name=name, weight_dtype=np.dtype(dtype))
    info = EncoderInfo(
        kind="clip",
        name=name,
        pooling="eot",
        max_length=int(cfg["max_position_embeddings"]),
        dim=spec.output_dim,
        pad_token_id=args.pad_token_id,
        eot_token_id=args.eot_token_id,
        producer=invocation(__spec__.name),
        source=source,
        license=license_,
    )
    write_encoder_dir(args.out, model, info)
    print(f"wrote {args.out} ({dtype} weights, T = {spec.output_dim}) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
