"""Dev-time check (needs torch + transformers): our CLIP text ONNX export against
transformers' CLIPTextModelWithProjection on the same weights.

Regenerates the tiny random CLIP (`dosod_tools.textenc.export_clip_text --random-config tiny --save-hf`) in a
temporary folder, checks the result is byte-identical to the committed
tests/fixtures/clip-tiny/text_encoder.onnx, loads the saved weights into transformers and
compares, on synthetic token batches of several lengths with padding:

* `text_embeds` (transformers) vs our `token_embeddings` row at the first eot token, both before
  normalisation;
* every unmasked token: transformers' last_hidden_state @ text_projection.T vs ours.

Then exercises the `--hf-dir` path on a full `CLIPModel` layout: a small randomly initialised
transformers CLIPModel (nested text_config with the openai checkpoint's legacy token ids,
vision tower included) is saved with save_pretrained, exported, and compared with
`get_text_features`.

    /work/devvenv/bin/python -m dosod_tools.checks.clip_export
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .. import REPO_ROOT


def synthetic_batch(
    rng: np.random.Generator, lengths: list[int], seq: int, eot: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows `<|startoftext|> w1 .. wn <|endoftext|>` of the given total lengths, right-padded."""
    ids = np.full((len(lengths), seq), pad, dtype=np.int64)
    mask = np.zeros((len(lengths), seq), dtype=np.int64)
    for r, n in enumerate(lengths):
        ids[r, 0] = 49406
        ids[r, 1 : n - 1] = rng.integers(0, 49406, size=n - 2)
        ids[r, n - 1] = eot
        mask[r, :n] = 1
    return ids, mask


def check_clip_model_folder(rng: np.random.Generator, eot: int, pad: int) -> tuple[float, float]:
    """Export a saved random transformers `CLIPModel` with `--hf-dir`; return the max abs
    difference between its `get_text_features` and our eot-pooled rows, and their max abs."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        projection_dim=64,
    )
    model = CLIPModel(config).eval()
    ids, mask = synthetic_batch(rng, [2, 6, 30, 77], 77, eot, pad)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir, enc_dir = Path(tmp) / "hf", Path(tmp) / "enc"
        model.save_pretrained(str(hf_dir), safe_serialization=True)
        export = [sys.executable, "-m", "dosod_tools.textenc.export_clip_text"]
        subprocess.run([*export, "--hf-dir", str(hf_dir), "--out", str(enc_dir)], check=True)
        session = ort.InferenceSession(str(enc_dir / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
        (ours,) = session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        ref = model.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    ref = getattr(ref, "pooler_output", ref).numpy()
    pooled = ours[np.arange(len(ids)), (ids == eot).argmax(axis=1)]
    return float(np.abs(pooled - ref).max()), float(np.abs(ref).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixture", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "clip-tiny")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    import torch
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    info = tomllib.loads((args.fixture / "encoder.toml").read_text())
    eot, pad = info["eot_token_id"], info["pad_token_id"]
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir, enc_dir = Path(tmp) / "hf", Path(tmp) / "enc"
        subprocess.run([sys.executable, "-m", "dosod_tools.textenc.export_clip_text", "--random-config", "tiny",
                        "--out", str(enc_dir), "--save-hf", str(hf_dir)], check=True)
        same = (enc_dir / "text_encoder.onnx").read_bytes() == (args.fixture / "text_encoder.onnx").read_bytes()
        print(f"regenerated ONNX identical to committed fixture: {same}")
        model = CLIPTextModelWithProjection.from_pretrained(str(hf_dir), attn_implementation="eager").eval()

    session = ort.InferenceSession(str(args.fixture / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst_pooled = worst_tokens = 0.0
    for lengths, seq in [([2, 5, 17, 77], 77), ([3, 9, 4], 9), ([2], 2)]:
        ids, mask = synthetic_batch(rng, lengths, seq, eot, pad)
        (ours,) = session.run(["token_embeddings"], {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            ref_tokens = (out.last_hidden_state @ model.text_projection.weight.T).numpy()
        first_eot = (ids == eot).argmax(axis=1)
        pooled = ours[np.arange(len(ids)), first_eot]
        d_pooled = float(np.abs(pooled - out.text_embeds.numpy()).max())
        d_tokens = float(np.abs(ours - ref_tokens)[mask.astype(bool)].max())
        print(f"batch {len(ids)}x{seq}: max |text_embeds - ours@eot| {d_pooled:.2e}, "
              f"max |per-token| {d_tokens:.2e}, |text_embeds| max {np.abs(pooled).max():.2f}")
        worst_pooled, worst_tokens = max(worst_pooled, d_pooled), max(worst_tokens, d_tokens)
    d_full, scale = check_clip_model_folder(rng, eot, pad)
    print(f"CLIPModel folder via --hf-dir: max |get_text_features - ours@eot| {d_full:.2e} "
          f"(features max {scale:.2f})")
    if not same or max(worst_pooled, worst_tokens, d_full) > args.tolerance:
        sys.exit("FAIL")
    print(f"OK (max abs diff pooled {worst_pooled:.2e}, per-token {worst_tokens:.2e}, CLIPModel {d_full:.2e})")


if __name__ == "__main__":
    main()
