"""Class-phrase embeddings from the project's MiniLM text encoder (models/encoders/all-MiniLM-L6-v2),
computed exactly as the engine computes them (docs/model-bundle.md, "Tokenising and pooling"):
tokenizer.json with special tokens, truncation to encoder.toml's max_length, right padding to the
longest phrase, text_encoder.onnx on ONNX Runtime, attention-masked mean pooling, L2
normalisation. Each phrase is the class name put into the prompt template (the engine's default
template is "{}").

`cached_embeddings` computes them once and keeps them in a .npy with a .json sidecar (phrases,
template, sha256 of the encoder files); a cache whose sidecar does not match is recomputed.
Needs `tokenizers` (dev venv, python/requirements/dev.txt) unless the cache is valid.

    /work/devvenv/bin/python -m dosod_tools.textenc.minilm_text --classes configs/demo/classes.json \
        --out data/demo/text_minilm.npy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .. import REPO_ROOT

ENCODER = REPO_ROOT / "models/encoders/all-MiniLM-L6-v2"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def embed_phrases(phrases: list[str], encoder_dir: Path = ENCODER, batch_size: int = 64) -> np.ndarray:
    """L2-normalised sentence embeddings [K, T] (float32) of `phrases`."""
    from tokenizers import Tokenizer  # dev venv only; imported here so a valid cache needs no tokenizers

    info = tomllib.loads((encoder_dir / "encoder.toml").read_text())
    if info.get("pooling") != "mean":
        raise ValueError(f"{encoder_dir}: pooling {info.get('pooling')!r}; this helper does mean pooling only")
    tok = Tokenizer.from_file(str(encoder_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=int(info["max_length"]))
    tok.enable_padding(pad_id=int(info["pad_token_id"]))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(encoder_dir / "text_encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    rows = []
    for start in range(0, len(phrases), batch_size):
        enc = tok.encode_batch(phrases[start : start + batch_size])
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        (tokens,) = sess.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask})
        m = mask[..., None].astype(np.float32)
        pooled = (tokens * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        rows.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
    out = np.concatenate(rows).astype(np.float32)
    if out.shape[1] != int(info["dim"]):
        raise ValueError(f"{encoder_dir}: embeddings are {out.shape[1]}-d, encoder.toml says {info['dim']}")
    return out


def cached_embeddings(cache: Path, names: list[str], template: str = "{}", encoder_dir: Path = ENCODER) -> np.ndarray:
    """Embeddings of template.format(name) for every name, from `cache` when it matches."""
    phrases = [template.replace("{}", n, 1) for n in names]
    key = {
        "phrases": phrases,
        "template": template,
        "encoder": encoder_dir.name,
        "text_encoder_sha256": _sha256(encoder_dir / "text_encoder.onnx"),
        "tokenizer_sha256": _sha256(encoder_dir / "tokenizer.json"),
    }
    sidecar = cache.with_suffix(".json")
    if cache.exists() and sidecar.exists() and json.loads(sidecar.read_text()) == key:
        emb = np.load(cache)
        if emb.shape[0] == len(phrases):
            return emb
    emb = embed_phrases(phrases, encoder_dir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    sidecar.write_text(json.dumps(key, indent=1, ensure_ascii=False))
    return emb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=Path, default=REPO_ROOT / "configs/demo/classes.json")
    ap.add_argument("--template", default=None, help="default: the class file's template")
    ap.add_argument("--encoder", type=Path, default=ENCODER)
    ap.add_argument("--out", type=Path, required=True, help=".npy [K, T]; names go to OUT with .txt")
    args = ap.parse_args()
    doc = json.loads(args.classes.read_text(encoding="utf-8"))
    names = [c["name"] for c in doc["classes"]]
    emb = cached_embeddings(args.out, names, args.template or doc.get("template", "{}"), args.encoder)
    args.out.with_suffix(".txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"{args.out}: {emb.shape[0]} x {emb.shape[1]} embeddings; names in {args.out.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
