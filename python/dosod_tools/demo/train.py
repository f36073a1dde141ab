"""Trains the demo model, DOSOD-N at 320x320 with the frozen MiniLM text encoder, on synthetic
emoji scenes (dosod_tools.demo.emoji_data) on the CPU, and exports it as a bundle (docs/demo-model.md).

What it trains (the DOSOD recipe, our code):
* network: dosod_tools.model size `n` (deepen 0.33, widen 0.125), text_dim 384, joint 512, mlp3x
  adaptor; the text encoder is frozen and not run during training: the L2-normalised MiniLM
  embeddings of every class phrase are computed once (dosod_tools.textenc.minilm_text, ONNX Runtime) and
  cached in a .npy;
* vocabulary per image, as DOSOD / YOLO-World's RandomLoadText with num_neg_samples = (all, all),
  max_num_samples = 80, padding_to_max: the image's own classes plus negatives drawn without
  replacement from the other seen classes, shuffled, `--vocab-size` (80) in all; no padding is
  needed because there are more seen classes than 80. Unseen classes never appear;
* logits: per level `<region, adaptor(text)> * exp(logit_scale_l) + bias_l` (the exported graph's
  formula); bias_l starts at log(5 / 80 / (320 / stride_l)^2), logit_scale_l at -1 (DOSOD's init);
* assignment: YOLOv8 task-aligned assigner (TAL): candidates are anchors whose centre lies in the
  box, alignment = score^0.5 * CIoU^6, top 10 per box, an anchor claimed by several boxes goes to
  the one with the highest CIoU, targets = alignment normalised per box to its best CIoU;
* losses (mmyolo YOLOv8 / DOSOD weights): BCE on the contrastive logits against those soft
  targets (weight 0.5), CIoU loss (7.5) and distribution focal loss (1.5, mean of the 4 sides;
  mmyolo writes 1.5 / 4 with a sum over sides), all divided by the sum of the targets and
  multiplied by the batch size as mmyolo does;
* optimiser: AdamW, lr 2e-3 (DOSOD's base_lr), weight decay 0.025 on conv / linear weights only
  (none on BatchNorm, biases, logit_scale, bias; DOSOD's paramwise settings), betas (0.9, 0.999),
  gradient norm clipped at 10; linear warm-up from 0 over `--warmup-steps`, then cosine decay to
  1 % of the peak at the last step; EMA of weights and BatchNorm statistics (decay
  0.9999 * (1 - exp(-updates / 2000)), YOLOv8's ExpMomentumEMA), exported instead of the raw
  weights.

Data: scenes generated on the fly in DataLoader workers (every step new images; scene i of the
stream depends only on --seed and i, so a resumed run sees the same data), or a pre-generated
COCO directory (`--data DIR`, images cycled in a seeded order per epoch).

Run control: `--time-budget-min` stops gracefully (checkpoint, then export); without `--steps`
the schedule length is measured on 30 steps and re-fitted every 200 steps to the recent speed
(stored in the checkpoint), so the learning rate reaches its end value at the budget.
Checkpoints (OUT/last.pt) every `--ckpt-every` steps and at the end; `--resume` continues from
OUT/last.pt with the arguments stored there (only --time-budget-min, --workers, --threads, --export,
--no-export may be given anew; --export-only exports OUT/last.pt's EMA weights without training);
the time budget counts training time over all sessions of a run. OUT/train.log gets the exact
command line; OUT/loss.csv the curve. OMP_WAIT_POLICY=PASSIVE is set (unless already set): on
the shared CPU, spinning OpenMP threads made steps ten times slower.

    /work/devvenv/bin/python -m dosod_tools.demo.train --out data/demo/run --time-budget-min 90
    /work/devvenv/bin/python -m dosod_tools.demo.train --out data/demo/run --resume --time-budget-min 120
    /work/devvenv/bin/python -m dosod_tools.demo.train --out data/demo/run --export-only --export models/demo
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

# Before numpy / torch load their thread pools. On a shared CPU, OpenMP threads that spin while
# waiting turn every descheduled thread into a stall: measured here with a compiler running
# beside it, 2 spinning threads took 12 s per step, 2 passive threads 1.35 s.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy work is per-process (data workers)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from .. import REPO_ROOT, invocation  # noqa: E402
from ..bundle.manifest import Manifest  # noqa: E402
from ..model import export_dosod  # noqa: E402
from ..model.checkpoint import sha256_of  # noqa: E402
from ..model.config import REG_MAX, STRIDES, preset  # noqa: E402
from ..model.head import grid_points  # noqa: E402
from ..model.model import DosodDetector  # noqa: E402
from ..textenc import minilm_text  # noqa: E402
from . import emoji_data  # noqa: E402

LOSS_WEIGHTS = {"cls": 0.5, "box": 7.5, "dfl": 1.5}
TAL = {"topk": 10, "alpha": 0.5, "beta": 6.0, "eps": 1e-9}
CKPT_NAME = "last.pt"
EXPORT_NAME = "demo_dosod_n.pth"
RESUMABLE_OVERRIDES = ("time_budget_min", "workers", "threads", "export", "no_export", "export_only")


# ---------------------------------------------------------------------------------------------
# Data


def sample_vocabulary(rng: np.random.Generator, labels: np.ndarray, pool: np.ndarray, size: int) -> np.ndarray:
    """The image's vocabulary (class ids): its own classes (at most `size`) plus negatives drawn
    without replacement from `pool` minus those, shuffled; `size` entries."""
    positives = np.unique(labels)
    if len(positives) > size:
        positives = rng.choice(positives, size, replace=False)
    negatives = np.setdiff1d(pool, positives, assume_unique=False)
    chosen = np.concatenate([positives, rng.choice(negatives, size - len(positives), replace=False)])
    return rng.permutation(chosen)


def to_sample(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, vocab: np.ndarray) -> dict:
    """Boxes whose class is not in the vocabulary are dropped (only when an image has more
    classes than the vocabulary); labels become positions in `vocab`."""
    where = {int(c): i for i, c in enumerate(vocab)}
    keep = np.array([int(lab) in where for lab in labels], bool)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "vocab": torch.from_numpy(vocab.astype(np.int64)),
        "boxes": torch.from_numpy(boxes[keep].astype(np.float32)).reshape(-1, 4),
        "labels": torch.tensor([where[int(lab)] for lab in labels[keep]], dtype=torch.int64),
    }


class StreamDataset(torch.utils.data.Dataset):
    """Items first..first+count-1 of the scene stream of `emoji_data.SceneGenerator`."""

    def __init__(
        self,
        split: str,
        which: str,
        size: int,
        seed: int,
        first: int,
        count: int,
        vocab_size: int,
        vocab_pool: np.ndarray,
    ) -> None:
        self.kw = {"split": split, "size": size, "seed": seed, "which": which}
        self.seed, self.first, self.count = seed, first, count
        self.vocab_size, self.pool = vocab_size, vocab_pool
        self.gen: emoji_data.SceneGenerator | None = None  # built lazily in each worker

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        if self.gen is None:
            self.gen = emoji_data.SceneGenerator(**self.kw)
        index = self.first + i
        sc = self.gen.scene(index)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, index]))
        return to_sample(sc.image, sc.boxes, sc.labels, sample_vocabulary(rng, sc.labels, self.pool, self.vocab_size))


class CocoDataset(torch.utils.data.Dataset):
    """Items first..first+count-1 of an endless, per-epoch shuffled pass over a COCO directory
    written by `python -m dosod_tools.demo.emoji_data generate`."""

    def __init__(
        self, root: Path, seed: int, first: int, count: int, vocab_size: int, vocab_pool: np.ndarray, allowed: set[int]
    ) -> None:
        doc = json.loads((root / "annotations.json").read_text())
        per_image: dict[int, list] = {im["id"]: [] for im in doc["images"]}
        for a in doc["annotations"]:
            per_image[a["image_id"]].append(a)
        self.items = []
        for im in doc["images"]:
            anns = per_image[im["id"]]
            bad = {a["category_id"] for a in anns} - allowed
            if bad:
                raise SystemExit(f"{root}: image {im['file_name']} has classes outside the training set: {sorted(bad)}")
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
            labels = np.array([a["category_id"] for a in anns], np.int64)
            self.items.append((root / im["file_name"], boxes.reshape(-1, 4), labels))
        self.seed, self.first, self.count = seed, first, count
        self.vocab_size, self.pool = vocab_size, vocab_pool

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        index = self.first + i
        epoch, pos = divmod(index, len(self.items))
        order = np.random.default_rng(np.random.SeedSequence([self.seed, 11, epoch])).permutation(len(self.items))
        path, boxes, labels = self.items[int(order[pos])]
        image = np.asarray(Image.open(path).convert("RGB"))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, index]))
        return to_sample(image, boxes, labels, sample_vocabulary(rng, labels, self.pool, self.vocab_size))


def collate(items: list[dict]) -> dict:
    n = max(1, max(len(it["labels"]) for it in items))
    b = len(items)
    boxes, labels, mask = (
        torch.zeros(b, n, 4),
        torch.zeros(b, n, dtype=torch.int64),
        torch.zeros(b, n, dtype=torch.bool),
    )
    for i, it in enumerate(items):
        k = len(it["labels"])
        boxes[i, :k], labels[i, :k], mask[i, :k] = it["boxes"], it["labels"], True
    return {
        "images": torch.stack([it["image"] for it in items]),
        "vocab": torch.stack([it["vocab"] for it in items]),
        "boxes": boxes,
        "labels": labels,
        "mask": mask,
    }


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle


# ---------------------------------------------------------------------------------------------
# Model forward, assignment and losses


def forward_train(model: DosodDetector, images: Tensor, joint: Tensor) -> tuple[Tensor, Tensor]:
    """images [B, 3, S, S] (0..1), joint [B, K, D] (each image's own vocabulary) ->
    logits [B, N, K] and raw DFL logits [B, N, 4, REG_MAX], anchors in the exported graph's order."""
    head = model.head
    logits, raws = [], []
    for feat, cls_pred, reg_pred, contrast in zip(
        model.neck(model.backbone(images)), head.cls_preds, head.reg_preds, head.cls_contrasts
    ):
        b, _, h, w = feat.shape
        region = cls_pred(feat).flatten(2)  # [B, D, hw]
        logits.append((torch.bmm(joint, region) * contrast.logit_scale.exp() + contrast.bias).transpose(1, 2))
        raws.append(reg_pred(feat).reshape(b, 4, REG_MAX, h * w).permute(0, 3, 1, 2))
    return torch.cat(logits, 1), torch.cat(raws, 1)


def decode(raw: Tensor, points: Tensor, stride: Tensor) -> Tensor:
    """DFL expectation (stride units) -> x1, y1, x2, y2 pixels; raw [B, N, 4, R]."""
    bins = torch.arange(REG_MAX, dtype=raw.dtype, device=raw.device)
    d = (raw.softmax(-1) * bins).sum(-1) * stride[None, :, None]
    return torch.cat([points[None] - d[..., :2], points[None] + d[..., 2:]], -1)


def ciou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of x1y1x2y2 boxes (broadcasting): IoU - centre distance^2 / enclosing
    diagonal^2 - alpha * v (aspect term, alpha without gradient)."""
    aw, ah = a[..., 2] - a[..., 0], (a[..., 3] - a[..., 1]).clamp(min=eps)
    bw, bh = b[..., 2] - b[..., 0], (b[..., 3] - b[..., 1]).clamp(min=eps)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    iou = inter / (aw * ah + bw * bh - inter + eps)
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c2 = cw**2 + ch**2 + eps
    rho2 = (
        (b[..., 0] + b[..., 2] - a[..., 0] - a[..., 2]) ** 2 + (b[..., 1] + b[..., 3] - a[..., 1] - a[..., 3]) ** 2
    ) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / bh) - torch.atan(aw / ah)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@torch.no_grad()
def assign(
    scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_mask: Tensor,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
) -> tuple[Tensor, Tensor, Tensor]:
    """YOLOv8 task-aligned assignment. scores [B, N, K] (sigmoid), pred_boxes [B, N, 4], points
    [N, 2], gt_* [B, M, ...]. Returns target boxes [B, N, 4], target scores [B, N, K], fg [B, N]."""
    b, n, k = scores.shape
    m = gt_boxes.shape[1]
    if m == 0 or not gt_mask.any():
        return torch.zeros_like(pred_boxes), torch.zeros_like(scores), torch.zeros(b, n, dtype=torch.bool)
    lt = points[None, None] - gt_boxes[:, :, None, :2]
    rb = gt_boxes[:, :, None, 2:] - points[None, None]
    in_gt = (torch.cat([lt, rb], -1).amin(-1) > eps) & gt_mask[:, :, None]  # [B, M, N]
    cls_scores = scores.transpose(1, 2).gather(1, gt_labels[:, :, None].expand(-1, -1, n))  # [B, M, N]
    overlaps = ciou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]).clamp(min=0) * in_gt
    align = cls_scores.pow(alpha) * overlaps.pow(beta) * in_gt
    top = align.topk(min(topk, n), dim=-1).indices
    pos = torch.zeros_like(in_gt).scatter_(-1, top, True) & in_gt  # [B, M, N]
    multi = pos.sum(1) > 1  # [B, N]
    if multi.any():
        best = F.one_hot(overlaps.argmax(1), m).transpose(1, 2).bool()  # [B, M, N]
        pos = torch.where(multi[:, None, :], best, pos)
    fg = pos.any(1)
    gt_index = pos.float().argmax(1)  # [B, N]
    target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
    target_labels = gt_labels.gather(1, gt_index)
    align = align * pos
    norm = (align * (overlaps * pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + eps)).amax(1)  # [B, N]
    target_scores = F.one_hot(target_labels, k).float() * (norm * fg)[..., None]
    return target_boxes, target_scores, fg


def detection_loss(
    logits: Tensor, raw: Tensor, points: Tensor, stride: Tensor, batch: dict
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (mmyolo's YOLOv8 scaling: weighted, times batch size) and its weighted parts
    per image."""
    pred_boxes = decode(raw, points, stride)
    target_boxes, target_scores, fg = assign(
        logits.detach().sigmoid(), pred_boxes.detach(), points, batch["boxes"], batch["labels"], batch["mask"], **TAL
    )
    score_sum = target_scores.sum().clamp(min=1.0)
    loss_cls = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / score_sum
    if fg.any():
        weight = target_scores.sum(-1)[fg]  # [P]
        s = stride[None, :, None].expand_as(pred_boxes)[fg]
        pb, tb = pred_boxes[fg] / s, target_boxes[fg] / s
        loss_box = ((1.0 - ciou(pb, tb)) * weight).sum() / score_sum
        anchor = (points[None].expand(fg.shape[0], -1, -1)[fg]) / s[:, :2]
        ltrb = torch.cat([anchor - tb[:, :2], tb[:, 2:] - anchor], -1).clamp(0, REG_MAX - 1 - 0.01)
        left = ltrb.floor().long()
        w_right = ltrb - left
        r = raw[fg].reshape(-1, REG_MAX)
        ce_l = F.cross_entropy(r, left.reshape(-1), reduction="none").view(-1, 4)
        ce_r = F.cross_entropy(r, (left + 1).reshape(-1), reduction="none").view(-1, 4)
        dfl = (ce_l * (1 - w_right) + ce_r * w_right).mean(-1)
        loss_dfl = (dfl * weight).sum() / score_sum
    else:
        loss_box = loss_dfl = pred_boxes.sum() * 0.0
    parts = {
        "cls": LOSS_WEIGHTS["cls"] * loss_cls,
        "box": LOSS_WEIGHTS["box"] * loss_box,
        "dfl": LOSS_WEIGHTS["dfl"] * loss_dfl,
    }
    total = sum(parts.values()) * logits.shape[0]
    return total, {k: float(v.detach()) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------
# Model set-up, EMA, optimiser, schedule


def build_model(size: int, vocab_size: int, seed: int) -> DosodDetector:
    """DOSOD-N with text_dim 384 and DOSOD's head initialisation."""
    torch.manual_seed(seed)
    model = DosodDetector(preset("n", text_dim=384))
    head = model.head
    with torch.no_grad():
        for cls_pred, reg_pred, contrast, s in zip(head.cls_preds, head.reg_preds, head.cls_contrasts, STRIDES):
            cls_pred[-1].bias.zero_()
            reg_pred[-1].bias.fill_(1.0)
            contrast.bias.fill_(math.log(5 / vocab_size / (size / s) ** 2))
            contrast.logit_scale.fill_(-1.0)
    return model


class ModelEMA:
    """Exponential moving average of parameters and buffers, decay d * (1 - exp(-updates / tau))."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:
                v.copy_(src[k])


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim > 1 else no_decay).append(p)  # conv / linear weights vs BN, biases, scalars
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.999),
    )


def lr_at(step: int, total: int, warmup: int, peak: float, final_ratio: float = 0.01) -> float:
    """Linear warm-up from 0, then cosine from `peak` to `peak * final_ratio` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


# ---------------------------------------------------------------------------------------------
# Export


def export_bundle(
    run: Path,
    ema_state: dict,
    args: argparse.Namespace,
    out: Path,
    classes_doc: dict,
    steps_done: int,
    images_seen: int,
) -> None:
    """OUT/demo_dosod_n.pth (official checkpoint layout: {"state_dict", "meta"}) -> bundle via
    dosod_tools.model.export_dosod (which checks ONNX against PyTorch), then our manifest with
    [default_vocabulary] and a model card."""
    ckpt = run / EXPORT_NAME
    meta = {"demo_training": {"steps": steps_done, "images": images_seen, "args": vars(args)}}
    torch.save({"state_dict": ema_state, "meta": meta}, ckpt)
    producer = invocation(__spec__.name, getattr(args, "command", None))
    export_dosod.main(
        [
            str(ckpt),
            "--size",
            "n",
            "--input-size",
            str(args.size),
            "--text-dim",
            "384",
            "--out",
            str(out),
            "--name",
            "demo",
            "--license",
            "Apache-2.0",
            "--producer",
            producer,
        ]
    )
    sha = sha256_of(ckpt)
    default = classes_doc["default_vocabulary"]
    manifest = Manifest(
        name="demo",
        description=f"DOSOD-N 320x320 trained here on synthetic emoji scenes ({steps_done} steps, {images_seen} images); "
        "classes: emoji names (configs/demo/classes.json)",
        input_size=args.size,
        joint_dim=512,
        text_dim=384,
        producer=producer,
        source=f"trained by {__spec__.name} on {emoji_data.__spec__.name} scenes; checkpoint {EXPORT_NAME} (sha256 {sha})",
        license="Apache-2.0",
        default_vocabulary={"classes": default},
    )
    manifest.write(out)
    seen = sum(1 for c in classes_doc["classes"] if c["split"] == "seen")
    (out / "README.md").write_text(
        "\n".join(
            [
                "# demo",
                "",
                "DOSOD-N (ours: deepen 0.33, widen 0.125), 320x320, float32, with the frozen all-MiniLM-L6-v2 text",
                f"encoder. Trained from scratch on CPU by `{producer}`",
                f"({steps_done} steps, {images_seen} synthetic images) on scenes of Noto Color Emoji glyphs",
                f"({emoji_data.__spec__.name}): {seen} seen classes; the unseen classes of configs/demo/classes.json were",
                "never drawn in training. Recipe and measured results: docs/demo-model.md.",
                "",
                "* Weights: Apache-2.0 (trained here). Training images were rendered from Noto Color Emoji",
                "  (SIL OFL 1.1 font; Apache-2.0 artwork).",
                f"* Checkpoint: {EXPORT_NAME}, sha256 {sha}",
                f"* Default vocabulary: {', '.join(default)}",
                "",
            ]
        )
    )
    print(f"bundle: {out}/ (model.toml with [default_vocabulary], {len(default)} classes)")


# ---------------------------------------------------------------------------------------------
# Main loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs, checkpoint for export)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt with its stored arguments")
    ap.add_argument("--export-only", action="store_true", help="export OUT/last.pt's EMA weights and stop")
    ap.add_argument("--export", type=Path, default=None, help="bundle directory (default OUT/bundle)")
    ap.add_argument("--no-export", action="store_true", help="do not export at the end")
    ap.add_argument("--time-budget-min", type=float, default=None, help="stop gracefully after this much training time")
    ap.add_argument("--steps", type=int, default=None, help="schedule length (default: estimated from the time budget)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--vocab-size", type=int, default=80, help="classes per image vocabulary (DOSOD: 80)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.025)
    ap.add_argument("--warmup-steps", type=int, default=300, help="capped at a tenth of the schedule")
    ap.add_argument("--clip", type=float, default=10.0, help="gradient norm clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="pre-generated COCO dir (default: scenes on the fly)")
    ap.add_argument("--classes", type=Path, default=REPO_ROOT / "configs/demo/classes.json")
    ap.add_argument("--encoder", type=Path, default=REPO_ROOT / "models/encoders/all-MiniLM-L6-v2")
    ap.add_argument("--text-cache", type=Path, default=REPO_ROOT / "data/demo/text_minilm.npy")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (1 thread each)")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--val-every", type=int, default=500, help="held-out loss every N steps (0: never)")
    ap.add_argument("--val-images", type=int, default=64)
    return ap.parse_args(argv)


class Run:
    """Training state and its files."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir: Path = args.out
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.dir / "train.log", "a", buffering=1)
        self.csv_path = self.dir / "loss.csv"

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        self.log_file.write(line + "\n")

    def save(self, state: dict) -> None:
        tmp = self.dir / (CKPT_NAME + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.dir / CKPT_NAME)


@torch.no_grad()
def validate(model: DosodDetector, batches: list[dict], text: Tensor, points: Tensor, stride: Tensor) -> float:
    """Mean loss per image of `model` (in eval mode) on fixed held-out batches."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for batch in batches:
        joint = model.head.encode_text(text)[batch["vocab"]]
        logits, raw = forward_train(model, batch["images"], joint)
        loss, _ = detection_loss(logits, raw, points, stride, batch)
        total += float(loss) / batch["images"].shape[0]
        n += 1
    model.train(was)
    return total / max(n, 1)


def val_batches(args: argparse.Namespace, which: str, pool: np.ndarray) -> list[dict]:
    """Held-out scenes (heldout split: other backgrounds, other seed stream) of `which` classes,
    each with a vocabulary from `pool`, made once."""
    ds = StreamDataset("heldout", which, args.size, args.seed + 1000, 0, args.val_images, args.vocab_size, pool)
    items = [ds[i] for i in range(len(ds))]
    out = []
    for i in range(0, len(items), args.batch):
        b = collate(items[i : i + args.batch])
        b["images"] = (b["images"].float() / 255).contiguous(memory_format=torch.channels_last)
        out.append(b)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ckpt_path = args.out / CKPT_NAME
    state = None
    if args.resume or args.export_only:
        if not ckpt_path.exists():
            raise SystemExit(f"{ckpt_path} not found")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        stored = argparse.Namespace(**state["args"])
        for key in RESUMABLE_OVERRIDES:  # given anew on the command line: replaces the stored value
            if getattr(args, key) is not None:
                setattr(stored, key, getattr(args, key))
        stored.resume = args.resume
        args = stored
    else:
        args.command = shlex.join(sys.argv[1:] if argv is None else argv)  # the training command, for provenance
    torch.set_num_threads(args.threads)
    run = Run(args)
    run.log(f"command: {shlex.join([sys.executable] + sys.argv)}")
    run.log(
        f"torch {torch.__version__}, threads {args.threads}, workers {args.workers}; args {json.dumps(vars(args), default=str)}"
    )

    classes, doc = emoji_data.load_classes(args.classes)
    seen = np.array(emoji_data.class_ids(classes, "seen"))
    all_ids = np.array(emoji_data.class_ids(classes, "all"))
    if len(seen) < args.vocab_size:
        raise SystemExit(f"{len(seen)} seen classes; --vocab-size {args.vocab_size} needs at least as many")
    text = torch.from_numpy(
        minilm_text.cached_embeddings(args.text_cache, [c.name for c in classes], doc["template"], args.encoder)
    )

    model = build_model(args.size, args.vocab_size, args.seed)
    ema = ModelEMA(model)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    step, elapsed, images_seen, total_steps = 0, 0.0, 0, args.steps
    if state is not None:
        model.load_state_dict(state["model"])
        ema.module.load_state_dict(state["ema"])
        ema.updates = state["ema_updates"]
        opt.load_state_dict(state["optimizer"])
        step, elapsed, images_seen = state["step"], state["elapsed_s"], state["images"]
        total_steps = state["total_steps"]
        run.log(f"resumed at step {step} ({elapsed / 60:.1f} min trained, {images_seen} images)")
    export_dir = args.export or (args.out / "bundle")

    if args.export_only:
        export_bundle(args.out, ema.module.state_dict(), args, export_dir, doc, step, images_seen)
        return

    model = model.to(memory_format=torch.channels_last).train()
    ema.module = ema.module.to(memory_format=torch.channels_last)
    points, stride = grid_points([(args.size // s, args.size // s) for s in STRIDES], STRIDES)

    budget_s = args.time_budget_min * 60 if args.time_budget_min else math.inf
    if total_steps is None and not math.isfinite(budget_s):
        raise SystemExit("give --steps or --time-budget-min")
    horizon = total_steps if total_steps is not None else 10**9  # items the data loader may need
    if args.data:
        dataset: torch.utils.data.Dataset = CocoDataset(
            args.data,
            args.seed,
            step * args.batch,
            (horizon - step) * args.batch,
            args.vocab_size,
            seen,
            {int(i) for i in seen},
        )
    else:
        dataset = StreamDataset(
            "train",
            "seen",
            args.size,
            args.seed,
            step * args.batch,
            (horizon - step) * args.batch,
            args.vocab_size,
            seen,
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=False,
        num_workers=args.workers,
        collate_fn=collate,
        worker_init_fn=_worker_init,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    val_sets = {}
    if args.val_every:
        val_sets = {"seen": val_batches(args, "seen", all_ids), "unseen": val_batches(args, "unseen", all_ids)}

    stop = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def checkpoint() -> None:
        run.save(
            {
                "model": model.state_dict(),
                "ema": ema.module.state_dict(),
                "ema_updates": ema.updates,
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "images": images_seen,
                "total_steps": total_steps,
                "args": vars(args),
            }
        )

    from tqdm import tqdm

    new_csv = not run.csv_path.exists()
    csv = open(run.csv_path, "a", buffering=1)
    if new_csv:
        csv.write("step,images,elapsed_s,lr,loss,cls,box,dfl,images_per_s,val_seen,val_unseen\n")
    bar = tqdm(
        total=total_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=1 if sys.stderr.isatty() else 30
    )
    smooth, window_t0, window_imgs = None, time.perf_counter(), 0
    # Only a time budget: the schedule length is measured (30 steps after 10 of warm-up in this
    # process) and then re-fitted every 200 steps to the recent speed, so that the cosine ends at
    # the budget even when the shared CPU's speed changes.
    fit_schedule = args.steps is None
    speed_mark: tuple[int, float] | None = None
    calib_from = step + 10
    reason = "schedule finished"
    t_last = time.perf_counter()
    for batch in loader:
        if total_steps is not None and step >= total_steps:
            break
        warmup = min(args.warmup_steps, max(1, (total_steps or 10**9) // 10))
        lr = lr_at(step, total_steps or 10**9, warmup, args.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        images = (batch["images"].float() / 255).contiguous(memory_format=torch.channels_last)
        joint = model.head.encode_text(text)[batch["vocab"]]  # [B, K, D]
        logits, raw = forward_train(model, images, joint)
        loss, parts = detection_loss(logits, raw, points, stride, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        ema.update(model)
        step += 1
        images_seen += images.shape[0]
        window_imgs += images.shape[0]
        now = time.perf_counter()
        elapsed += now - t_last
        t_last = now
        per_image = float(loss.detach()) / images.shape[0]
        smooth = per_image if smooth is None else 0.95 * smooth + 0.05 * per_image
        if fit_schedule:
            if step == calib_from:
                speed_mark = (step, elapsed)
            elif speed_mark is not None and step - speed_mark[0] == (30 if total_steps is None else 200):
                sec_per_step = (elapsed - speed_mark[1]) / (step - speed_mark[0])
                total_steps = step + max(1, int((budget_s - elapsed) / sec_per_step))
                bar.total = total_steps
                run.log(
                    f"schedule: {sec_per_step:.3f} s/step over steps {speed_mark[0]}-{step} -> "
                    f"{total_steps} steps in the budget"
                )
                speed_mark = (step, elapsed)
        val = {}
        if args.val_every and step % args.val_every == 0:
            val = {k: validate(ema.module, v, text, points, stride) for k, v in val_sets.items()}
            run.log(
                f"step {step}: held-out loss per image (EMA weights), seen classes {val['seen']:.4f}, unseen classes {val['unseen']:.4f}"
            )
            t_last = time.perf_counter()  # validation time is not training time
        if step % args.log_every == 0 or val:
            ips = window_imgs / max(now - window_t0, 1e-9)
            window_t0, window_imgs = time.perf_counter(), 0
            csv.write(
                f"{step},{images_seen},{elapsed:.1f},{lr:.6g},{per_image:.4f},{parts['cls']:.4f},{parts['box']:.4f},"
                f"{parts['dfl']:.4f},{ips:.2f},{val.get('seen', '')},{val.get('unseen', '')}\n"
            )
            bar.set_postfix(
                loss=f"{smooth:.3f}",
                cls=f"{parts['cls']:.3f}",
                box=f"{parts['box']:.3f}",
                img_s=f"{ips:.1f}",
                lr=f"{lr:.2e}",
            )
            run.log(
                f"step {step} lr {lr:.3g} loss {per_image:.4f} (cls {parts['cls']:.4f} box {parts['box']:.4f} "
                f"dfl {parts['dfl']:.4f}) smoothed {smooth:.4f} {ips:.1f} images/s"
            )
        bar.update(1)
        if step % args.ckpt_every == 0:
            checkpoint()
        if stop["signal"] is not None:
            reason = f"signal {stop['signal']}"
            break
        if elapsed >= budget_s:
            reason = f"time budget ({args.time_budget_min} min) reached"
            break
    bar.close()
    checkpoint()
    run.log(
        f"stopped at step {step}/{total_steps}: {reason}; {elapsed / 60:.1f} min, {images_seen} images, "
        f"{images_seen / max(elapsed, 1e-9):.1f} images/s overall"
    )
    print(f"stopped at step {step}/{total_steps}: {reason}; {images_seen / max(elapsed, 1e-9):.1f} images/s overall")
    if stop["signal"] is None and not args.no_export:
        export_bundle(args.out, ema.module.state_dict(), args, export_dir, doc, step, images_seen)


if __name__ == "__main__":
    main()
