"""dosod_tools.fixtures.make_test_bundles writes bundles that load and give the exact detector's known rows."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dosod_tools.fixtures import make_test_bundles
from dosod_tools.reference.detect import Reference, postprocess


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    make_test_bundles.main(["--out", str(out)])
    return out


def test_manifests(bundles: Path) -> None:
    for name in ("random", "random-fp16", "exact"):
        doc = tomllib.loads((bundles / name / "model.toml").read_text())
        assert doc["model"]["name"] == name
        assert doc["input"]["anchors"] == 8400
        assert doc["default_vocabulary"] == {"embeddings": "vocab.npy", "names": "vocab.txt"}
        assert doc["provenance"]["producer"] == f"python -m dosod_tools.fixtures.make_test_bundles --out {bundles}"
    assert tomllib.loads((bundles / "exact" / "model.toml").read_text())["text_encoder"] == {"kind": "none"}


def test_exact_bundle_detects_its_known_rows(bundles: Path) -> None:
    ref = Reference(bundles / "exact")
    expected = json.loads((bundles / "exact" / "expected.json").read_text())
    joint = ref.joint(np.load(bundles / "exact" / "vocab.npy"))
    for key, colour in (("pure_red_640", (255, 0, 0)), ("pure_blue_640", (0, 0, 255))):
        scores, boxes, _ = ref.infer(Image.new("RGB", (640, 640), colour), joint)
        dets = postprocess(scores, boxes, np.float32(0.25), 0.65, 100, False)
        want = expected["detections_in_input_pixels"][key]
        assert [(int(a), int(k)) for a, k, _, _ in dets] == [(w["anchor"], w["class_id"]) for w in want]
        assert [float(s) for _, _, s, _ in dets] == pytest.approx([w["score"] for w in want], abs=1e-6)


def test_random_bundles_load(bundles: Path) -> None:
    img = Image.new("RGB", (320, 200), (40, 90, 200))
    for name in ("random", "random-fp16"):
        ref = Reference(bundles / name)
        scores, boxes, _ = ref.infer(img, ref.joint(np.load(bundles / name / "vocab.npy")))
        assert scores.shape == (8400, 5) and boxes.shape == (8400, 4)
        assert np.isfinite(scores).all() and np.isfinite(boxes).all()
