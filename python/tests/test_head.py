"""Head maths: contrastive scoring, DFL expectation, anchor grid and box decoding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dosod_tools.model.config import preset  # noqa: E402
from dosod_tools.model.head import ContrastiveScale, distance_to_box, grid_points  # noqa: E402
from dosod_tools.model.model import DosodDetector  # noqa: E402
from dosod_tools.model.synthetic import random_detector, random_scenes  # noqa: E402


def test_contrastive_formula_no_normalisation() -> None:
    head = ContrastiveScale()
    with torch.no_grad():
        head.logit_scale.fill_(0.3)
        head.bias.fill_(-2.0)
    embed = torch.randn(2, 8, 3, 4)
    joint = torch.randn(5, 8)
    got = head(embed, joint)
    want = torch.einsum("bdhw,kd->bkhw", embed, joint) * torch.exp(torch.tensor(0.3)) - 2.0
    torch.testing.assert_close(got, want)
    # Not normalised: scaling the text side scales the dot product.
    torch.testing.assert_close(head(embed, 2 * joint) + 2.0, 2 * (got + 2.0))


def test_grid_points_row_major_with_offset() -> None:
    points, stride = grid_points([(2, 3), (1, 1)], (8, 16))
    assert points.tolist()[:4] == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0]]
    assert points.tolist()[-1] == [8.0, 8.0]
    assert stride.tolist() == [8.0] * 6 + [16.0]


def test_distance_decoding() -> None:
    points = torch.tensor([[100.0, 50.0]])
    dist = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    box = distance_to_box(points, dist, torch.tensor([8.0]))
    assert box.tolist() == [[[92.0, 34.0, 124.0, 82.0]]]


def test_dfl_expectation_of_one_hot_bins() -> None:
    model = DosodDetector(preset("n")).eval()
    head = model.head
    feats = model.neck(model.backbone(torch.zeros(1, 3, 64, 64)))
    # Replace the last reg conv of level 0 by a constant: bins 3, 5, 7, 9 for l, t, r, b.
    conv = head.reg_preds[0][2]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1e4)
        for side, b in enumerate((3, 5, 7, 9)):
            conv.bias[side * 16 + b] = 1e4
        _, dists = head(feats, torch.zeros(2, 512))
    assert torch.allclose(dists[0][0, :, 0, 0], torch.tensor([3.0, 5.0, 7.0, 9.0]))


def test_predict_shapes_and_ranges() -> None:
    model = random_detector(preset("n"), 0, calib_size=64)
    images = random_scenes(torch.Generator().manual_seed(0), 2, 96)
    with torch.no_grad():
        scores, boxes = model.predict(images, model.encode_text(torch.randn(3, 512)))
    n = (96 // 8) ** 2 + (96 // 16) ** 2 + (96 // 32) ** 2
    assert scores.shape == (2, n, 3) and boxes.shape == (2, n, 4)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    assert bool((boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all())
