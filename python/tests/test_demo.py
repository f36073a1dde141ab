"""The training pieces of dosod_tools.demo.train (vocabulary sampling, CIoU, task-aligned
assignment, losses, schedule); needs torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dosod_tools.demo import train as train_demo  # noqa: E402


def test_vocabulary_sampling() -> None:
    rng = np.random.default_rng(0)
    pool = np.arange(100, 300)
    labels = np.array([120, 120, 250])
    vocab = train_demo.sample_vocabulary(rng, labels, pool, 80)
    assert len(vocab) == 80 and len(set(vocab.tolist())) == 80
    assert {120, 250} <= set(vocab.tolist()) and set(vocab.tolist()) <= set(pool.tolist())
    sample = train_demo.to_sample(np.zeros((8, 8, 3), np.uint8), np.zeros((3, 4), np.float32), labels, vocab)
    assert [int(vocab[i]) for i in sample["labels"]] == [120, 120, 250]


def test_ciou() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert torch.allclose(train_demo.ciou(a, a), torch.ones(1), atol=1e-5)
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0]])  # IoU 1/3, centres 5 apart, enclosing diagonal^2 = 325
    assert torch.allclose(train_demo.ciou(a, b), torch.tensor([1 / 3 - 25 / 325]), atol=1e-4)


def test_assigner_picks_anchors_inside_the_box() -> None:
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0], [28.0, 28.0]])
    pred = torch.cat([points - 4, points + 4], -1)[None]  # 8x8 boxes around each anchor
    scores = torch.full((1, 5, 3), 0.5)
    gt = torch.tensor([[[0.0, 0.0, 16.0, 16.0]]])
    boxes, targets, fg = train_demo.assign(
        scores, pred, points, gt, torch.tensor([[2]]), torch.tensor([[True]]), topk=10
    )
    assert fg[0].tolist() == [True, True, True, True, False]
    assert (targets[0, :4, 2] > 0).all() and targets[0, :, :2].abs().sum() == 0 and targets[0, 4].sum() == 0
    # normalised to the best CIoU of the box (up to the eps in the normalisation)
    assert torch.allclose(targets[0, :4, 2].max(), train_demo.ciou(gt[0], pred[0, :4]).max(), rtol=1e-3)
    assert torch.equal(boxes[0, 0], gt[0, 0])


def test_loss_is_finite_and_backpropagates() -> None:
    torch.manual_seed(0)
    model = train_demo.build_model(64, 4, seed=0)
    points, stride = train_demo.grid_points([(64 // s, 64 // s) for s in train_demo.STRIDES], train_demo.STRIDES)
    images = torch.rand(2, 3, 64, 64)
    text = torch.nn.functional.normalize(torch.randn(6, 384), dim=1)
    vocab = torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5]])
    batch = {
        "boxes": torch.tensor([[[8.0, 8.0, 40.0, 40.0]], [[0.0, 0.0, 0.0, 0.0]]]),
        "labels": torch.tensor([[1], [0]]),
        "mask": torch.tensor([[True], [False]]),
    }
    logits, raw = train_demo.forward_train(model, images, model.head.encode_text(text)[vocab])
    assert logits.shape == (2, 84, 4) and raw.shape == (2, 84, 4, 16)
    loss, parts = train_demo.detection_loss(logits, raw, points, stride, batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and all(math.isfinite(v) for v in parts.values())
    assert model.head.text_mlp[0][0].weight.grad is not None
    # The exported formula: the contrastive head's bias starts at the DOSOD prior.
    assert math.isclose(float(model.head.cls_contrasts[0].bias.detach()), math.log(5 / 4 / (64 / 8) ** 2), rel_tol=1e-6)


def test_schedule() -> None:
    assert train_demo.lr_at(0, 1000, 100, 1.0) == pytest.approx(0.01)
    assert train_demo.lr_at(99, 1000, 100, 1.0) == pytest.approx(1.0)
    assert train_demo.lr_at(1000, 1000, 100, 1.0) == pytest.approx(0.01)
    assert train_demo.lr_at(550, 1000, 100, 1.0) == pytest.approx(0.505)
