#!/usr/bin/env python3
"""Evaluates a bundle on a COCO-format emoji set (scripts/emoji_data.py generate): COCO-style
box AP per class, averaged separately over the seen and the unseen classes of
configs/demo/classes.json.

The bundle runs exactly as deployed: ONNX Runtime, the engine's letterbox
(scripts/reference_detect.py), adaptor.onnx on the cached MiniLM embeddings of the class phrases
(scripts/minilm_text.py; computed with `tokenizers` in the dev venv if the cache is missing).
Detections for AP follow mmyolo's evaluation settings: multi-label, score >= 0.001, at most
`--pre-nms` candidates, class-aware NMS at IoU 0.7, the best 100 kept per image.

AP: for each class and IoU threshold 0.50:0.05:0.95, detections of all images sorted by score,
each matched greedily to the unmatched ground-truth box of its class with the highest IoU
(>= threshold), precision made monotone and sampled at 101 recall points (COCO's rule); classes
without ground truth in the set are left out. No area ranges, no crowd boxes.

`--vocab all` (default) is the generalised zero-shot setting (every class, seen and unseen, in one
vocabulary); `--vocab unseen` asks only for the unseen classes (seen objects are then
unlabelled distractors); `--vocab seen` only for the seen ones.

    .venv/bin/python scripts/eval_demo.py --model models/demo --data data/demo/heldout
    .venv/bin/python scripts/eval_demo.py --model models/demo --data data/demo/heldout --vocab unseen --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import minilm_text  # noqa: E402
import reference_detect as rd  # noqa: E402

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of x1y1x2y2 boxes a [n, 4] and b [m, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def detect(
    scores: np.ndarray, boxes: np.ndarray, threshold: float, pre_nms: int, iou: float, keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-label candidates, class-aware greedy NMS, top `keep`: (boxes, scores, classes)."""
    anchors, classes = np.nonzero(scores >= threshold)
    s = scores[anchors, classes]
    order = np.argsort(-s, kind="stable")[:pre_nms]
    anchors, classes, s = anchors[order], classes[order], s[order]
    b = boxes[anchors].astype(np.float64)
    shifted = b + (classes * (b.max(initial=0.0) + 1.0))[:, None]  # boxes of different classes never overlap
    alive = np.ones(len(s), bool)
    kept: list[int] = []
    for i in range(len(s)):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) == keep:
            break
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if len(rest):
            alive[rest[box_iou(shifted[i : i + 1], shifted[rest])[0] > iou]] = False
    k = np.array(kept, np.int64)
    return b[k], s[k], classes[k]


def average_precision(dets: list[tuple[int, float, np.ndarray]], gts: dict[int, np.ndarray], threshold: float) -> float:
    """COCO AP of one class at one IoU threshold. dets: (image, score, box); gts: image -> [g, 4]."""
    n_gt = sum(len(g) for g in gts.values())
    if n_gt == 0:
        return float("nan")
    if not dets:
        return 0.0
    used = {img: np.zeros(len(g), bool) for img, g in gts.items()}
    tp = np.zeros(len(dets))
    for i, (img, _, box) in enumerate(sorted(dets, key=lambda d: -d[1])):
        g = gts.get(img)
        if g is None or not len(g):
            continue
        ious = box_iou(box[None], g)[0]
        ious[used[img]] = -1.0
        j = int(np.argmax(ious))
        if ious[j] >= threshold:
            used[img][j] = True
            tp[i] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="bundle directory")
    ap.add_argument("--data", type=Path, required=True, help="COCO dir from emoji_data.py generate")
    ap.add_argument("--classes", type=Path, default=ROOT / "configs/demo/classes.json")
    ap.add_argument("--text-cache", type=Path, default=ROOT / "data/demo/text_minilm.npy")
    ap.add_argument("--encoder", type=Path, default=ROOT / "models/encoders/all-MiniLM-L6-v2")
    ap.add_argument("--vocab", choices=("all", "seen", "unseen"), default="all")
    ap.add_argument("--score-threshold", type=float, default=0.001)
    ap.add_argument("--pre-nms", type=int, default=3000)
    ap.add_argument("--iou-threshold", type=float, default=0.7)
    ap.add_argument("--max-detections", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--json", type=Path, default=None, help="write the summary and per-class APs here")
    args = ap.parse_args()

    doc = json.loads(args.classes.read_text(encoding="utf-8"))
    classes = doc["classes"]
    text = minilm_text.cached_embeddings(args.text_cache, [c["name"] for c in classes], doc["template"], args.encoder)
    vocab_ids = [c["id"] for c in classes if args.vocab == "all" or c["split"] == args.vocab]
    split_of = {c["id"]: c["split"] for c in classes}
    coco = json.loads((args.data / "annotations.json").read_text())
    images = coco["images"][: args.limit] if args.limit else coco["images"]
    wanted = set(vocab_ids)
    gts: dict[int, dict[int, list]] = {k: {} for k in vocab_ids}
    for a in coco["annotations"]:
        if a["category_id"] in wanted:
            x, y, w, h = a["bbox"]
            gts[a["category_id"]].setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    ids = {im["id"] for im in images}
    gt_arrays = {k: {i: np.array(v, np.float64) for i, v in per.items() if i in ids} for k, per in gts.items()}

    ref = rd.Reference(args.model)
    joint = ref.joint(text[vocab_ids])
    dets: dict[int, list] = {k: [] for k in vocab_ids}
    t0 = time.perf_counter()
    for im in images:
        scores, boxes, lb = ref.infer(rd.load_rgb(args.data / im["file_name"]), joint)
        b, s, c = detect(scores, boxes, args.score_threshold, args.pre_nms, args.iou_threshold, args.max_detections)
        for box, score, k in zip(b, s, c):
            x1, y1, x2, y2 = lb.to_image(box)
            dets[vocab_ids[int(k)]].append((im["id"], float(score), np.array([x1, y1, x2, y2])))
    dt = time.perf_counter() - t0

    per_class = {}
    for k in vocab_ids:
        if not any(len(g) for g in gt_arrays[k].values()):
            continue
        aps = [average_precision(dets[k], gt_arrays[k], t) for t in IOU_THRESHOLDS]
        per_class[classes[k]["name"]] = {
            "split": split_of[k],
            "ap50": aps[0],
            "ap": float(np.mean(aps)),
            "gt": int(sum(len(g) for g in gt_arrays[k].values())),
        }
    summary = {}
    for group in ("seen", "unseen"):
        rows = [v for v in per_class.values() if v["split"] == group]
        if rows:
            summary[group] = {
                "classes": len(rows),
                "gt_boxes": sum(r["gt"] for r in rows),
                "AP50": float(np.mean([r["ap50"] for r in rows])),
                "AP50:95": float(np.mean([r["ap"] for r in rows])),
            }
    result = {
        "model": str(args.model),
        "data": str(args.data),
        "images": len(images),
        "vocab": args.vocab,
        "vocab_size": len(vocab_ids),
        "seconds": round(dt, 1),
        "summary": summary,
        "per_class": per_class,
    }
    print(
        f"{args.model} on {len(images)} images of {args.data}, vocabulary {args.vocab} ({len(vocab_ids)} classes), "
        f"{len(images) / dt:.1f} images/s"
    )
    for group, v in summary.items():
        print(
            f"  {group:6s}: {v['classes']:3d} classes, {v['gt_boxes']:5d} boxes, "
            f"AP50 {100 * v['AP50']:.1f}, AP50:95 {100 * v['AP50:95']:.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
