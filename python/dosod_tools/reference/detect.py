"""An independent Python reference of the dosod engine pipeline (numpy + onnxruntime + OpenCV).

    python -m dosod_tools.reference.detect --model DIR --vocab V.npy --names V.txt IMAGE... \
        [--score-threshold 0.25] [--iou-threshold 0.65] [--max-detections 100] [--multi-label]

For each image it prints one JSON object per line, as `dosod detect` does (without its
`timings_ms`):

    {"image": path, "width": w, "height": h,
     "detections": [{"label", "class_id", "score", "box": [x1, y1, x2, y2]}, ...]}

The steps follow docs/model-bundle.md: Pillow decode with the EXIF orientation applied, RGB;
mmyolo 0.6.0's keep-ratio letterbox (`int(w * r)`, OpenCV INTER_AREA when shrinking and
INTER_LINEAR when enlarging, as mmcv calls them; centre padding with the odd pixel bottom/right;
boxes mapped back with per-axis factors); value / 255 in the detector's input precision; the adaptor on
the text embeddings; the detector; per-class threshold (score >= threshold), single label per
anchor unless --multi-label, class-aware greedy NMS (suppress when IoU > threshold), top-k; boxes
mapped back to the image and clipped. Thresholds default to the bundle's [postprocess] values.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MAX_CANDIDATES = 30_000  # the engine's cap on candidates entering NMS
ORT_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class Letterbox:
    """Where an image of src_w x src_h sits inside the input tensor."""

    src_w: int
    src_h: int
    new_w: int
    new_h: int
    left: int
    top: int
    scale: float

    @staticmethod
    def fit(src_w: int, src_h: int, width: int, height: int, pad_position: str) -> Letterbox:
        # mmyolo's YOLOv5KeepRatioResize: ratio 1 leaves the image alone, else int() truncates.
        r = min(width / src_w, height / src_h)
        if r == 1:
            new_w, new_h = src_w, src_h
        else:
            new_w = min(max(int(src_w * r), 1), width)
            new_h = min(max(int(src_h * r), 1), height)
        if pad_position == "center":
            left, top = (width - new_w) // 2, (height - new_h) // 2
        elif pad_position == "top_left":
            left, top = 0, 0
        else:
            raise ValueError(f"unknown pad_position {pad_position!r}")
        return Letterbox(src_w, src_h, new_w, new_h, left, top, r)

    def to_image(self, box: np.ndarray) -> list[float]:
        """Input-tensor pixels -> image pixels, clipped to the image."""
        x1, y1, x2, y2 = (float(v) for v in box)
        sx, sy = self.new_w / self.src_w, self.new_h / self.src_h
        fx = lambda v: min(max((v - self.left) / sx, 0.0), float(self.src_w))  # noqa: E731
        fy = lambda v: min(max((v - self.top) / sy, 0.0), float(self.src_h))  # noqa: E731
        return [fx(x1), fy(y1), fx(x2), fy(y2)]


def load_rgb(path: Path) -> Image.Image:
    """Decode, apply the EXIF orientation, convert to 8-bit RGB."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def letterbox_u8(rgb: np.ndarray, spec: dict) -> tuple[np.ndarray, Letterbox]:
    """The letterboxed [H, W, 3] uint8 RGB image (before / 255), and its geometry."""
    width, height = int(spec["width"]), int(spec["height"])
    if spec.get("resize", "keep_ratio") != "keep_ratio":
        raise ValueError(f"unsupported resize {spec['resize']!r}")
    src_h, src_w = rgb.shape[:2]
    lb = Letterbox.fit(src_w, src_h, width, height, spec.get("pad_position", "center"))
    if (lb.new_w, lb.new_h) != (src_w, src_h):
        interpolation = spec.get("interpolation", "auto")
        shrinks = lb.new_w <= src_w and lb.new_h <= src_h
        if interpolation not in ("auto", "area", "bilinear"):
            raise ValueError(f"unknown interpolation {interpolation!r}")
        area = shrinks and (interpolation == "area" or (interpolation == "auto" and lb.scale < 1.0))
        flag = cv2.INTER_AREA if area else cv2.INTER_LINEAR
        rgb = cv2.resize(np.ascontiguousarray(rgb), (lb.new_w, lb.new_h), interpolation=flag)
    canvas = np.full((height, width, 3), int(spec.get("pad_value", 114)), dtype=np.uint8)
    canvas[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = rgb
    return canvas, lb


def letterbox(img: Image.Image, spec: dict, dtype: type[np.floating]) -> tuple[np.ndarray, Letterbox]:
    """The [1, 3, H, W] input tensor for one image, and its geometry."""
    canvas, lb = letterbox_u8(np.asarray(img), spec)
    # The engine converts through a float32 table v / 255, then to the session's precision.
    lut = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(dtype)
    return lut[canvas].transpose(2, 0, 1)[None].copy(), lb


def input_dtype(session: ort.InferenceSession, name: str) -> type[np.floating]:
    for node in session.get_inputs():
        if node.name == name:
            return ORT_FLOAT_TYPES[node.type]
    raise KeyError(f"{name!r} is not an input of the session")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1,y1,x2,y2 boxes on continuous coordinates (no +1); 0 when degenerate."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    area = lambda r: max(r[2] - r[0], 0.0) * max(r[3] - r[1], 0.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return 0.0 if union <= 0.0 else float(inter / union)


def postprocess(
    scores: np.ndarray, boxes: np.ndarray, score_threshold: float, iou_threshold: float, max_detections: int, multi_label: bool
) -> list[tuple[int, int, float, np.ndarray]]:
    """Threshold, class-aware greedy NMS and top-k on one image's [N, K] scores, [N, 4] boxes.

    Returns (anchor, class, score, box in input pixels), best first; ties go to the lower anchor,
    then the lower class.
    """
    if multi_label:
        anchors, classes = np.nonzero(scores >= score_threshold)
    else:
        best = np.argmax(scores, axis=1)  # the first maximum, like the engine
        best_score = scores[np.arange(len(scores)), best]
        anchors = np.nonzero(best_score >= score_threshold)[0]
        classes = best[anchors]
    cand_scores = scores[anchors, classes]
    order = np.lexsort((classes, anchors, -cand_scores.astype(np.float64)))[:MAX_CANDIDATES]

    kept: list[tuple[int, int, float, np.ndarray]] = []
    kept_boxes: dict[int, list[np.ndarray]] = {}
    for i in order:
        a, k = int(anchors[i]), int(classes[i])
        box = boxes[a].astype(np.float64)
        same = kept_boxes.setdefault(k, [])
        if len(same) >= max_detections or any(iou(o, box) > iou_threshold for o in same):
            continue
        same.append(box)
        kept.append((a, k, float(cand_scores[i]), boxes[a]))
    return kept[:max_detections]


def f32(v: float) -> float:
    """The shortest decimal that round-trips the value as float32, as Rust prints an f32."""
    return float(str(np.float32(v)))


class Reference:
    """The two sessions of a bundle and its manifest."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle
        self.manifest = tomllib.loads((bundle / "model.toml").read_text())
        files = self.manifest.get("files", {})
        options = ort.SessionOptions()
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.detector = ort.InferenceSession(str(bundle / files.get("detector", "detector.onnx")), options, providers=providers)
        self.adaptor = ort.InferenceSession(str(bundle / files.get("adaptor", "adaptor.onnx")), options, providers=providers)

    def joint(self, text: np.ndarray) -> np.ndarray:
        """[K, T] text embeddings -> [K, D] joint vocabulary, as float32."""
        (joint,) = self.adaptor.run(["joint"], {"text": text.astype(input_dtype(self.adaptor, "text"))})
        return joint.astype(np.float32)

    def infer(self, img: Image.Image, joint: np.ndarray) -> tuple[np.ndarray, np.ndarray, Letterbox]:
        """Scores [N, K] and boxes [N, 4] (float32, input pixels) for one image."""
        pixels, lb = letterbox(img, self.manifest["input"], input_dtype(self.detector, "images"))
        vocab = joint.astype(input_dtype(self.detector, "vocab"))
        scores, boxes = self.detector.run(["scores", "boxes"], {"images": pixels, "vocab": vocab})
        return scores[0].astype(np.float32), boxes[0].astype(np.float32), lb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="bundle directory")
    ap.add_argument("--vocab", type=Path, required=True, help="text embeddings [K, T] (.npy)")
    ap.add_argument("--names", type=Path, required=True, help="class names, one per line")
    ap.add_argument("images", type=Path, nargs="+")
    ap.add_argument("--score-threshold", type=float, help="default: the bundle's")
    ap.add_argument("--iou-threshold", type=float, help="default: the bundle's")
    ap.add_argument("--max-detections", type=int, help="default: the bundle's")
    ap.add_argument("--multi-label", action="store_true", help="an anchor may report every class above threshold")
    args = ap.parse_args()

    ref = Reference(args.model)
    defaults = ref.manifest.get("postprocess", {})
    score_threshold = args.score_threshold if args.score_threshold is not None else defaults.get("score_threshold", 0.25)
    iou_threshold = args.iou_threshold if args.iou_threshold is not None else defaults.get("iou_threshold", 0.65)
    max_detections = args.max_detections if args.max_detections is not None else defaults.get("max_detections", 100)
    multi_label = args.multi_label or defaults.get("multi_label", False)
    # The engine compares f32 scores with f32 thresholds.
    score_threshold, iou_threshold = np.float32(score_threshold), float(np.float32(iou_threshold))

    text = np.load(args.vocab)
    names = [line.strip() for line in args.names.read_text().splitlines() if line.strip()]
    if text.ndim != 2 or text.shape[0] != len(names):
        sys.exit(f"{args.vocab}: shape {text.shape} does not match {len(names)} names in {args.names}")
    joint = ref.joint(text)

    for path in args.images:
        img = load_rgb(path)
        scores, boxes, lb = ref.infer(img, joint)
        dets = postprocess(scores, boxes, score_threshold, iou_threshold, max_detections, multi_label)
        report = {
            "image": str(path),
            "width": img.width,
            "height": img.height,
            "detections": [
                {"label": names[k], "class_id": k, "score": f32(s), "box": [f32(v) for v in lb.to_image(box)]}
                for _, k, s, box in dets
            ],
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
