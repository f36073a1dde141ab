"""Builds (or checks) the demo model's class list, configs/demo/classes.json, from the emoji
that Noto Color Emoji draws.

This file owns the curation: which emoji are detection classes, what each class is called, and
which classes are held out of training ("unseen"). The rules, in order:

1. Candidates: single-code-point, fully-qualified emoji of the Unicode emoji groups
   "Animals & Nature", "Food & Drink", "Travel & Places", "Activities" and "Objects"
   (emoji-test.txt, Debian package `unicode-data`), that the font maps in its cmap. Everything in
   "Smileys & Emotion", "People & Body", "Component", "Symbols" and "Flags" is out, and so are
   skin-tone variants and ZWJ / keycap / flag sequences (they are not single code points).
2. Emoji whose Unicode name Python's `unicodedata` does not know (newer than its Unicode 14
   tables, e.g. U+1FACE MOOSE) are skipped: the phrase must come from the Unicode name.
3. DROP removes symbols, pictograms that are scenes rather than objects (sunset, cityscape),
   faces with expressions, and near-duplicates (clock faces, moon phases, "oncoming" vehicles,
   coloured variants of one glyph, "X with Y" combinations of other classes).
4. The phrase is the Unicode name, lower-cased, with "WOMANS"/"MANS" written "woman's"/"man's"
   and the typographic "LOWER LEFT " prefix dropped; RENAME replaces the few names that are not
   what a person would type (HOCHO -> "kitchen knife", SLICE OF PIZZA -> "pizza", "X and ball"
   sports names -> the object).
5. UNSEEN lists the held-out classes (about 20 %): never drawn in training images, used only to
   measure zero-shot detection. Each has seen relatives of the same kind (zebra face: horse face,
   dog face; hamburger: sandwich, hot dog) and none is a near-duplicate of a seen class (no
   "cat face" unseen while "cat" is seen); configs/demo/README.md gives the reasoning.

    .venv/bin/python -m dosod_tools.demo.emoji_classes --out configs/demo/classes.json
    .venv/bin/python -m dosod_tools.demo.emoji_classes --check configs/demo/classes.json
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
KEEP_GROUPS = ("Animals & Nature", "Food & Drink", "Travel & Places", "Activities", "Objects")
TEMPLATE = "{}"  # the engine's default prompt template (src/vocab_spec.rs), used in training too

# Unicode names (lower case) that are not classes. Grouped by why.
DROP = {
    # symbols, signs and abstract pictograms
    "pig nose", "paw prints", "link symbol", "sparkles", "reminder ribbon", "smoking symbol",
    "nazar amulet", "hamsa", "e-mail symbol", "globe with meridians", "high voltage sign",
    "cyclone", "level slider", "control knobs", "musical score", "musical note",
    "multiple musical notes", "chart with upwards trend", "chart with downwards trend",
    "bar chart", "chart with upwards trend and yen sign", "money with wings", "black spade suit",
    "black heart suit", "black diamond suit", "black club suit", "black chess pawn",
    "playing card black joker", "mahjong tile red dragon", "flower playing cards", "white flower",
    "rosette", "bubbles", "performing arts", "hot springs", "speaker with cancellation stroke",
    "bell with cancellation stroke", "drop of blood", "probing cane", "bookmark tabs",
    "card index dividers", "page with curl", "page facing up", "film frames",
    # scenes and places that are a whole picture rather than an object
    "foggy", "night with stars", "cityscape", "sunrise over mountains", "sunrise",
    "cityscape at dusk", "sunset over buildings", "bridge at night", "milky way", "motorway",
    "railway track", "station", "camping", "beach with umbrella", "national park", "fog",
    "moon viewing ceremony", "fireworks", "wedding", "love hotel", "building construction",
    "mount fuji", "silhouette of japan",
    # faces with expressions
    "new moon with face", "first quarter moon with face", "last quarter moon with face",
    "full moon with face", "sun with face", "wind blowing face",
    # near-duplicates of a kept class (the kept one in the comment)
    "guide dog",  # dog
    "spouting whale",  # whale
    "bactrian camel",  # dromedary camel
    "front-facing baby chick",  # baby chick
    "leaf fluttering in wind",  # fallen leaf
    "shamrock",  # four leaf clover
    "lock with ink pen", "closed lock with key", "open lock",  # lock
    "hammer and pick", "hammer and wrench",  # hammer, pick, wrench
    "crossed swords",  # dagger knife
    "green book", "blue book", "orange book", "ledger", "notebook with decorative cover",  # closed book, notebook
    "helmet with white cross",  # military helmet
    "banknote with yen sign", "banknote with euro sign", "banknote with pound sign",  # dollar banknote
    "clinking beer mugs",  # beer mug
    "clinking glasses", "pouring liquid",  # wine glass, tumbler glass
    "studio microphone",  # microphone
    "speaker with one sound wave", "speaker with three sound waves",  # speaker
    "public address loudspeaker",  # cheering megaphone
    "house buildings", "house with garden",  # house building
    "japanese post office",  # european post office
    "low battery",  # battery
    "minidisc", "dvd",  # optical disc
    "glowing star", "shooting star",  # white medium star
    "sun behind cloud", "thunder cloud and rain", "white sun with small cloud",
    "white sun behind cloud", "white sun behind cloud with rain", "cloud with rain",
    "cloud with snow", "cloud with lightning", "cloud with tornado",  # cloud
    "closed umbrella", "umbrella with rain drops",  # umbrella
    "snowman without snow",  # snowman
    "new moon symbol", "waxing crescent moon symbol", "first quarter moon symbol",
    "waxing gibbous moon symbol", "full moon symbol", "waning gibbous moon symbol",
    "last quarter moon symbol", "waning crescent moon symbol",  # crescent moon
    "hourglass with flowing sand",  # hourglass
    "admission tickets",  # ticket
    "airplane departure", "airplane arriving",  # airplane
    "suspension railway", "mountain cableway",  # aerial tramway
    "high-speed train with bullet nose", "railway car", "train", "light rail",
    "mountain railway",  # high-speed train, metro, tram car
    "oncoming bus", "oncoming police car", "oncoming taxi", "oncoming automobile",  # bus, ...
    "motorized wheelchair",  # manual wheelchair
    "police cars revolving light",  # police car
    "horizontal traffic light",  # vertical traffic light
    "first place medal", "second place medal", "third place medal",  # sports medal
    "camera with flash",  # camera
    "right-pointing magnifying glass",  # left-pointing magnifying glass
    "mobile phone with rightwards arrow at left",  # mobile phone
    "incoming envelope", "envelope with downwards arrow above",  # envelope
    "outbox tray",  # inbox tray
    "closed mailbox with lowered flag", "open mailbox with raised flag",
    "open mailbox with lowered flag",  # closed mailbox with raised flag
    "open file folder", "card index",  # file folder, card file box
    "tear-off calendar", "spiral calendar pad",  # calendar
    "round pushpin",  # pushpin
    "linked paperclips",  # paperclip
    "earth globe europe-africa", "earth globe asia-australia",  # earth globe americas
    "snow capped mountain",  # mountain
    "fork and knife with plate",  # fork and knife
    "black nib",  # lower left fountain pen
}

# Unicode name (lower case) -> phrase, where the name is not what a person would type.
RENAME = {
    "hocho": "kitchen knife",
    "slice of pizza": "pizza",
    "dagger knife": "dagger",
    "dove of peace": "dove",
    "dromedary camel": "camel",
    "kiwifruit": "kiwi fruit",
    "ear of maize": "ear of corn",
    "ear of rice": "sheaf of rice",
    "automobile": "car",
    "racing motorcycle": "motorcycle",
    "scooter": "kick scooter",
    "octagonal sign": "stop sign",
    "vertical traffic light": "traffic light",
    "three button mouse": "computer mouse",
    "personal computer": "laptop",
    "black telephone": "telephone",
    "black scissors": "scissors",
    "teacup without handle": "teacup",
    "sake bottle and cup": "sake",
    "cooking": "frying pan",
    "house building": "house",
    "derelict house building": "derelict house",
    "european castle": "castle",
    "european post office": "post office",
    "earth globe americas": "globe",
    "black sun with rays": "sun",
    "white medium star": "star",
    "umbrella on ground": "beach umbrella",
    "electric light bulb": "light bulb",
    "electric torch": "flashlight",
    "izakaya lantern": "red paper lantern",
    "left-pointing magnifying glass": "magnifying glass",
    "frame with picture": "framed picture",
    "firework sparkler": "sparkler",
    "wrapped present": "wrapped gift",
    "red gift envelope": "red envelope",
    "cheering megaphone": "megaphone",
    "closed mailbox with raised flag": "mailbox",
    "ballot box with ballot": "ballot box",
    "banknote with dollar sign": "dollar banknote",
    "spiral note pad": "spiral notepad",
    "gem stone": "gemstone",
    "billed cap": "baseball cap",
    "thong sandal": "flip-flop",
    "dark sunglasses": "sunglasses",
    "pouch": "clutch bag",
    "school satchel": "backpack",
    "compression": "clamp",
    "scales": "balance scale",
    "moyai": "moai statue",
    "direct hit": "dartboard",
    "pistol": "water pistol",
    "billiards": "pool ball",
    "jigsaw puzzle piece": "puzzle piece",
    "basketball and hoop": "basketball",
    "tennis racquet and ball": "tennis racquet",
    "cricket bat and ball": "cricket bat",
    "field hockey stick and ball": "field hockey stick",
    "ice hockey stick and puck": "ice hockey stick",
    "lacrosse stick and ball": "lacrosse stick",
    "table tennis paddle and ball": "ping pong paddle",
    "badminton racquet and shuttlecock": "badminton racquet",
    "fishing pole and fish": "fishing pole",
    "running shirt with sash": "running shirt",
    "ski and ski boot": "skis",
    "flag in hole": "golf flag",
    "steam locomotive": "locomotive",
    "fish cake with swirl design": "fish cake",
    "curry and rice": "curry rice",
}

# Held-out phrases (after RENAME): never drawn in training images.
UNSEEN = {
    # animals (seen relatives: horse face, dog face, cat, cow, pig, deer, camel, ...)
    "zebra face", "giraffe face", "kangaroo", "hippopotamus", "koala", "hedgehog", "sloth",
    "skunk", "llama", "fox face", "mammoth", "rhinoceros", "gorilla", "beaver",
    "penguin", "owl", "flamingo", "peacock",  # seen: chicken, duck, eagle, parrot, swan
    "crocodile", "turtle",  # seen: lizard, snake, dragon
    "octopus", "dolphin", "shark",  # seen: squid, whale, seal, fish
    "butterfly", "scorpion", "snail",  # seen: bug, ant, honeybee, beetle, spider
    # plants and food (seen: seedling, tulip, rose, melon, cherries, sandwich, burrito, bread, ...)
    "cactus", "sunflower", "mushroom",
    "banana", "pineapple", "strawberry", "watermelon", "lemon", "avocado",
    "carrot", "broccoli", "garlic",
    "hamburger", "hot dog", "taco", "french fries", "popcorn", "croissant", "cheese wedge", "pancakes", "bacon",
    "sushi", "dumpling", "doughnut", "birthday cake", "lollipop",
    "teapot", "wine glass", "beer mug", "baby bottle", "chopsticks",
    # places and vehicles (seen: mosque, house, office building, police car, bus, car, ...)
    "church", "hut", "factory", "volcano", "ferris wheel",
    "ambulance", "fire engine", "tractor", "bicycle", "taxi", "skateboard", "locomotive",
    "sailboat", "canoe", "anchor", "helicopter", "rocket", "parachute",
    # weather, events, sport, games (seen: cloud, beach umbrella, christmas tree, baseball, ...)
    "rainbow", "snowman", "cloud",
    "balloon", "jack-o-lantern", "trophy",
    "soccer ball", "tennis racquet", "bowling", "ice skate", "boxing glove",
    "teddy bear", "kite", "game die",
    # objects (seen: woman's hat, t-shirt, violin, laptop, axe, couch and lamp, watch, ...)
    "necktie", "jeans", "top hat", "high-heeled shoe", "crown", "gloves",
    "guitar", "trumpet", "headphone",
    "desktop computer", "printer", "battery", "television", "candle", "flashlight",
    "scissors", "paperclip", "calendar", "pencil", "briefcase", "globe", "coin",
    "hammer", "ladder", "magnet", "shield",
    "chair", "bathtub", "toothbrush", "broom", "door", "bed", "toilet", "basket",
    "microscope", "syringe", "pill", "alarm clock", "package",
}

# `make run` / the bundle's [default_vocabulary]: seen classes that are easy to recognise.
DEFAULT_VOCABULARY = [
    "dog face", "cat face", "pizza", "red apple", "car", "bus",
    "rose", "soft ice cream", "violin", "light bulb", "key", "duck",
]


@dataclass(frozen=True)
class Candidate:
    codepoint: int
    group: str
    subgroup: str
    unicode_name: str | None


def font_codepoints(path: Path) -> set[int]:
    """The code points a TrueType/OpenType font maps (cmap formats 4 and 12), read with struct."""
    data = path.read_bytes()
    (num_tables,) = struct.unpack_from(">H", data, 4)
    tables = {}
    for i in range(num_tables):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        tables[tag] = (offset, length)
    if b"cmap" not in tables:
        raise ValueError(f"{path}: no cmap table")
    base = tables[b"cmap"][0]
    _, n_sub = struct.unpack_from(">HH", data, base)
    points: set[int] = set()
    for i in range(n_sub):
        _, _, off = struct.unpack_from(">HHI", data, base + 4 + 8 * i)
        sub = base + off
        (fmt,) = struct.unpack_from(">H", data, sub)
        if fmt == 12:
            (n_groups,) = struct.unpack_from(">I", data, sub + 12)
            for g in range(n_groups):
                start, end, _glyph = struct.unpack_from(">III", data, sub + 16 + 12 * g)
                points.update(range(start, end + 1))
        elif fmt == 4:
            (seg_x2,) = struct.unpack_from(">H", data, sub + 6)
            segs = seg_x2 // 2
            ends = struct.unpack_from(f">{segs}H", data, sub + 14)
            starts = struct.unpack_from(f">{segs}H", data, sub + 16 + seg_x2)
            for s, e in zip(starts, ends):
                if s != 0xFFFF:
                    points.update(range(s, e + 1))
    return points


def read_candidates(emoji_test: Path) -> list[Candidate]:
    """Single-code-point fully-qualified emoji of KEEP_GROUPS, in emoji-test.txt order."""
    group = subgroup = ""
    out: list[Candidate] = []
    for line in emoji_test.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
            continue
        if not line.strip() or line.startswith("#") or group not in KEEP_GROUPS:
            continue
        points, rest = line.split(";", 1)
        if rest.split("#", 1)[0].strip() != "fully-qualified":
            continue
        cps = [int(p, 16) for p in points.split() if int(p, 16) != 0xFE0F]
        if len(cps) != 1:  # ZWJ, keycap, flag and skin-tone sequences
            continue
        try:
            name: str | None = unicodedata.name(chr(cps[0])).lower()
        except ValueError:
            name = None
        out.append(Candidate(cps[0], group, subgroup, name))
    return out


def phrase(unicode_name: str) -> str:
    """Unicode name (lower case) -> the class phrase."""
    if unicode_name in RENAME:
        return RENAME[unicode_name]
    words = unicode_name.removeprefix("lower left ").split()
    words = [{"womans": "woman's", "mans": "man's"}.get(w, w) for w in words]
    return " ".join(words)


def build(font: Path, emoji_test: Path) -> dict:
    """The classes.json document."""
    mapped = font_codepoints(font)
    classes, skipped_new, seen_names = [], [], set()
    for c in read_candidates(emoji_test):
        if c.codepoint not in mapped:
            continue
        if c.unicode_name is None:
            skipped_new.append(f"U+{c.codepoint:04X}")
            continue
        if c.unicode_name in DROP or c.unicode_name.startswith("clock face "):
            continue
        name = phrase(c.unicode_name)
        if name in seen_names:
            raise SystemExit(f"duplicate phrase {name!r}")
        seen_names.add(name)
        classes.append(
            {
                "id": len(classes),
                "name": name,
                "codepoint": f"U+{c.codepoint:04X}",
                "unicode_name": c.unicode_name.upper(),
                "group": c.group,
                "subgroup": c.subgroup,
                "split": "unseen" if name in UNSEEN else "seen",
            }
        )
    for label, wanted in (("UNSEEN", UNSEEN), ("DEFAULT_VOCABULARY", set(DEFAULT_VOCABULARY))):
        missing = sorted(wanted - seen_names)
        if missing:
            raise SystemExit(f"{label} names that are not classes: {missing}")
    unseen = {c["name"] for c in classes if c["split"] == "unseen"}
    if unseen & set(DEFAULT_VOCABULARY):
        raise SystemExit(f"default vocabulary has unseen classes: {sorted(unseen & set(DEFAULT_VOCABULARY))}")
    return {
        "description": "Detection classes of the demo model: colour emoji of Noto Color Emoji "
        "(configs/demo/README.md). Built by dosod_tools.demo.emoji_classes; do not edit by hand.",
        "font": "fonts-noto-color-emoji 2.042 (Debian 12): " + str(FONT),
        "emoji_data": "unicode-data 15.0.0 (Debian 12): " + str(EMOJI_TEST),
        "unicodedata_version": unicodedata.unidata_version,
        "template": TEMPLATE,
        "skipped_unnamed": skipped_new,
        "num_seen": len(classes) - len(unseen),
        "num_unseen": len(unseen),
        "default_vocabulary": DEFAULT_VOCABULARY,
        "classes": classes,
    }


def render(doc: dict) -> str:
    """JSON with one class per line (reviewable diffs)."""
    head = {k: v for k, v in doc.items() if k != "classes"}
    text = json.dumps(head, indent=2, ensure_ascii=False)[:-2]
    rows = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in doc["classes"])
    return f'{text},\n  "classes": [\n{rows}\n  ]\n}}\n'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--font", type=Path, default=FONT)
    ap.add_argument("--emoji-test", type=Path, default=EMOJI_TEST, help="Debian package unicode-data")
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="write the class list here")
    out.add_argument("--check", type=Path, help="fail if this file differs from what would be written")
    args = ap.parse_args()
    for path, package in ((args.font, "fonts-noto-color-emoji"), (args.emoji_test, "unicode-data")):
        if not path.exists():
            sys.exit(f"{path} not found: apt-get install {package}")
    text = render(build(args.font, args.emoji_test))
    doc = json.loads(text)
    summary = f"{len(doc['classes'])} classes: {doc['num_seen']} seen, {doc['num_unseen']} unseen"
    if args.check:
        if args.check.read_text(encoding="utf-8") != text:
            sys.exit(f"{args.check} differs from the rules in {__spec__.name}; rebuild it with --out")
        print(f"{args.check}: up to date ({summary})")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({summary})")


if __name__ == "__main__":
    main()
