"""configs/demo/classes.json is what dosod_tools.demo.emoji_classes writes (its rules need the Debian font and emoji data)."""

from __future__ import annotations

import json

import pytest

from dosod_tools import REPO_ROOT
from dosod_tools.demo import emoji_classes

CLASSES = REPO_ROOT / "configs" / "demo" / "classes.json"


def test_committed_file_is_rendered_by_the_writer() -> None:
    text = CLASSES.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert emoji_classes.render(doc) == text
    assert doc["num_seen"] + doc["num_unseen"] == len(doc["classes"])
    names = {c["name"] for c in doc["classes"] if c["split"] == "seen"}
    assert set(doc["default_vocabulary"]) <= names


def test_rules_build_the_committed_file() -> None:
    for path, package in ((emoji_classes.FONT, "fonts-noto-color-emoji"), (emoji_classes.EMOJI_TEST, "unicode-data")):
        if not path.exists():
            pytest.skip(f"{path} is missing (apt-get install {package})")
    assert emoji_classes.render(emoji_classes.build(emoji_classes.FONT, emoji_classes.EMOJI_TEST)) == CLASSES.read_text(
        encoding="utf-8"
    )
