"""Reference embeddings of the tiny random CLIP text encoder, for the Rust encoder test.

Token ids come from the reference OpenAI tokenizer (tests/fixtures/clip_tokens.json), the
graph runs in onnxruntime, pooling (first <|endoftext|>) and L2 normalisation in numpy, so the
Rust side is checked against an independent tokenizer and pooling.

    .venv/bin/python scripts/dev/make_clip_tiny_reference.py
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EOT = 49407
COUNT = 40


def main() -> None:
    rows = json.loads((FIXTURES / "clip_tokens.json").read_text())
    # a spread of phrases, plus every phrase longer than the context (truncation) and the
    # edge cases at the end of the file (unicode, punctuation, the empty string)
    spread = rows[:: max(1, len(rows) // COUNT)][:COUNT]
    long = [r for r in rows if "ids_truncated" in r]
    chosen = spread + long + rows[-20:]
    session = ort.InferenceSession(str(FIXTURES / "clip-tiny" / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for row in chosen:
        ids = np.array([row.get("ids_truncated", row["ids"])], dtype=np.int64)
        tok = session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        e = tok[int(np.argmax(ids[0] == EOT))]
        out.append(e / max(np.linalg.norm(e), 1e-12))
    np.save(FIXTURES / "clip-tiny" / "reference.npy", np.stack(out).astype(np.float32))
    (FIXTURES / "clip-tiny" / "reference_phrases.json").write_text(
        json.dumps([r["text"] for r in chosen], ensure_ascii=False, indent=1) + "\n"
    )
    print(f"{len(out)} reference embeddings written")


if __name__ == "__main__":
    main()
