"""Dev-time check: our torch-free MiniLM ONNX encoder against the sentence-transformers
reference embeddings in tests/fixtures/minilm_reference*.

Tokenises every reference phrase with the encoder directory's tokenizer.json (Hugging Face
`tokenizers`, truncation to encoder.toml's max_length, padding to the longest in the batch), runs
text_encoder.onnx with onnxruntime, applies the consumer's pooling (attention-masked mean, then
L2 normalisation) in numpy and reports the cosine similarity per phrase. Needs `tokenizers`
(present in the dev venv, no torch used):

    /work/devvenv/bin/python -m dosod_tools.checks.minilm_encoder --encoder models/encoders/all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .. import REPO_ROOT


def mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention-masked mean over the sequence axis, then L2 normalisation (sentence-transformers)."""
    m = mask[..., None].astype(np.float32)
    pooled = (tokens * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, default=REPO_ROOT / "models" / "encoders" / "all-MiniLM-L6-v2")
    parser.add_argument("--fixtures", type=Path, default=REPO_ROOT / "tests" / "fixtures")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--min-cosine", type=float, default=0.999)
    args = parser.parse_args()

    info = tomllib.loads((args.encoder / "encoder.toml").read_text(encoding="utf-8"))
    phrases = json.loads((args.fixtures / "minilm_reference_phrases.json").read_text(encoding="utf-8"))
    reference = np.load(args.fixtures / "minilm_reference.npy")
    tokenizer = Tokenizer.from_file(str(args.encoder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=info["max_length"])
    tokenizer.enable_padding(pad_id=info["pad_token_id"])
    session = ort.InferenceSession(str(args.encoder / "text_encoder.onnx"), providers=["CPUExecutionProvider"])

    rows = []
    for start in range(0, len(phrases), args.batch_size):
        enc = tokenizer.encode_batch(phrases[start : start + args.batch_size])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        (tokens,) = session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask})
        rows.append(mean_pool(tokens, mask))
    ours = np.concatenate(rows)
    cos = (ours * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    worst = int(np.argmin(cos))
    print(f"{len(phrases)} phrases: cosine min {cos.min():.7f} (phrase {worst}: {phrases[worst][:40]!r}), "
          f"mean {cos.mean():.7f}; max |diff| {np.abs(ours - reference).max():.2e}")
    if cos.min() < args.min_cosine:
        sys.exit(f"FAIL: cosine below {args.min_cosine}")
    print("OK")


if __name__ == "__main__":
    main()
