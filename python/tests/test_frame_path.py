"""The Python + OpenCV pipeline of the frame-path benchmark does the whole job: its letterbox and
its vectorised NMS give what the independent reference (dosod_tools.reference.detect) gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dosod_tools.bench.frame_path import OpenCvPipeline
from dosod_tools.reference import detect as reference

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models/demo"
IMAGE = ROOT / "tests/fixtures/images/zidane.jpg"


def pipeline() -> OpenCvPipeline:
    text = np.random.default_rng(0).standard_normal((12, 384)).astype(np.float32)
    return OpenCvPipeline(BUNDLE, text, threads=1, spin=False)


def test_letterbox_equals_the_reference_on_the_same_pixels() -> None:
    pipe = pipeline()
    jpeg = np.frombuffer(IMAGE.read_bytes(), dtype=np.uint8)
    tensor, (sx, sy, left, top), size = pipe.preprocess(jpeg)
    assert size == (1280, 720) and tensor.shape == (1, 3, 320, 320)
    import cv2

    rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    canvas, lb = reference.letterbox_u8(rgb, {"width": 320, "height": 320})
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (320, 180, left, top)
    assert (sx, sy) == (320 / 1280, 180 / 720)
    np.testing.assert_allclose(tensor[0].transpose(1, 2, 0), canvas.astype(np.float32) / 255.0, atol=1e-7)


def test_vectorised_nms_keeps_what_the_reference_keeps() -> None:
    pipe = pipeline()
    rng = np.random.default_rng(1)
    scores = rng.random((2100, 12)).astype(np.float32) * 0.2
    scores[rng.integers(0, 2100, 60), rng.integers(0, 12, 60)] = rng.random(60).astype(np.float32) * 0.8 + 0.2
    centres = rng.random((10, 2)) * 280
    pick = centres[rng.integers(0, 10, 2100)] + rng.random((2100, 2)) * 12
    boxes = np.concatenate([pick, pick + 25 + rng.random((2100, 2)) * 20], axis=1).astype(np.float32)
    got = pipe.postprocess(scores, boxes, (1.0, 1.0, 0, 0), (320, 320))
    want = reference.postprocess(scores, boxes, np.float32(pipe.score_threshold), pipe.iou_threshold, pipe.max_detections, False)
    assert len(got) == len(want) > 5
    assert sorted((k, round(s, 6)) for k, s, _ in got) == sorted((k, round(s, 6)) for _, k, s, _ in want)
