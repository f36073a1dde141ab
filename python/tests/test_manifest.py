"""The model.toml / encoder.toml writer (dosod_tools.bundle.manifest) round-trips through tomllib."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

from dosod_tools.bundle.manifest import Manifest, build_date
from dosod_tools.textenc.encoder_dir import EncoderInfo, encoder_toml


def manifest(**extra: object) -> Manifest:
    fields: dict = {
        "name": 'a "quoted" \\ name',
        "description": "unicode: é 🍕",
        "input_size": 320,
        "joint_dim": 512,
        "text_dim": 384,
        "producer": "python -m x --flag 'a b'",
        "source": "random weights",
        "license": "Apache-2.0",
        "created": datetime.date(2026, 1, 2),
    }
    return Manifest(**{**fields, **extra})


def test_model_toml_round_trips(tmp_path: Path) -> None:
    path = manifest(default_vocabulary={"classes": ["dog face", "pizza"]}).write(tmp_path, "a comment")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# a comment\n")
    doc = tomllib.loads(text)
    assert list(doc) == [
        "model", "files", "input", "embedding", "postprocess", "text_encoder", "default_vocabulary", "provenance"
    ]
    assert doc["model"] == {"name": 'a "quoted" \\ name', "description": "unicode: é 🍕"}
    assert doc["input"]["strides"] == [8, 16, 32] and doc["input"]["anchors"] == 40**2 + 20**2 + 10**2
    assert doc["postprocess"] == {"score_threshold": 0.25, "iou_threshold": 0.65, "max_detections": 100, "multi_label": False}
    assert doc["text_encoder"] == {"kind": "minilm", "name": "all-MiniLM-L6-v2", "dir": "../encoders/all-MiniLM-L6-v2"}
    assert doc["default_vocabulary"] == {"classes": ["dog face", "pizza"]}
    assert doc["provenance"] == {
        "producer": "python -m x --flag 'a b'",
        "source": "random weights",
        "license": "Apache-2.0",
        "created": "2026-01-02",
    }
    assert doc == manifest(default_vocabulary={"classes": ["dog face", "pizza"]}).to_dict()


def test_text_encoder_table() -> None:
    assert "text_encoder" not in manifest(text_dim=100).to_dict()  # no known encoder for T = 100
    assert manifest(text_encoder={"kind": "none"}).to_dict()["text_encoder"] == {"kind": "none"}
    assert manifest(text_dim=512).to_dict()["text_encoder"]["kind"] == "clip"


def test_build_date_honours_source_date_epoch(monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert build_date() == datetime.date(1970, 1, 2)


def test_encoder_toml_round_trips() -> None:
    info = EncoderInfo(
        kind="clip", name="tiny", pooling="eot", max_length=77, dim=64, pad_token_id=0,
        producer="p", source="s", license="MIT", eot_token_id=49407,
    )
    text = encoder_toml(info)
    assert text.startswith("# Text encoder for dosod")
    assert tomllib.loads(text) == {
        "kind": "clip", "name": "tiny", "pooling": "eot", "max_length": 77, "dim": 64, "normalize": True,
        "eot_token_id": 49407, "pad_token_id": 0, "provenance": {"producer": "p", "source": "s", "license": "MIT"},
    }
