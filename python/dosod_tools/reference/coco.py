"""pycocotools' COCOeval on a COCO dataset and a results file: the reference `dosod eval` is
checked against (tests/eval.rs).

Prints one JSON object: the twelve `summarize()` numbers and, per evaluated category,
AP@[.5:.95] and AP@.5 (mean of the valid precision entries, -1 without ground truth).

    .venv/bin/python -m dosod_tools.reference.coco GT.json DETECTIONS.json [--cat-ids 1,2,3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def mean_valid(a: np.ndarray) -> float:
    v = a[a > -1]
    return float(v.mean()) if v.size else -1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gt")
    ap.add_argument("detections")
    ap.add_argument("--cat-ids", help="comma-separated category ids to evaluate (default: all)")
    args = ap.parse_args()

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.gt)
        with open(args.detections) as f:
            results = json.load(f)
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, iouType="bbox")
        if args.cat_ids:
            ev.params.catIds = sorted(int(c) for c in args.cat_ids.split(","))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        per_class[str(cat)] = [mean_valid(precision[:, :, k, 0, -1]), mean_valid(precision[0, :, k, 0, -1])]
    print(json.dumps({"stats": [float(s) for s in ev.stats], "per_class": per_class}))


if __name__ == "__main__":
    main()
