"""Random but well-conditioned DOSOD weights, for exporter tests without the official files.

An untrained deep network with random weights is chaotic: tiny input or rounding differences
grow layer by layer, and scores or boxes would then differ between two correct implementations
by more than any useful tolerance. The weights here are random yet tame:

* convolutions and linear layers: He-normal; the last 1x1 conv of every head branch scaled by
  `out_gain` (moderate class logits and DFL logits);
* BatchNorm: random gamma in `bn_gamma`, beta around `bn_beta` > 0, so SiLU mostly works in its
  near-linear range (the network stays ordered rather than chaotic);
* BatchNorm running statistics: measured on photo-like random scenes (plus any given images) with
  those affine parameters in place, so activations stay O(1) through the whole depth, then
  perturbed at random (mean, variance, num_batches_tracked);
* per-level `logit_scale` / `bias`: uniform in the given ranges.

Everything is driven by one seed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import DosodConfig
from .head import ContrastiveScale
from .model import DosodDetector


def random_scenes(gen: torch.Generator, batch: int, size: int, shapes: int = 300) -> Tensor:
    """ "Dead leaves" images in 0..1, RGB, [B, 3, S, S]: random-coloured rectangles with a
    power-law size distribution painted over each other, plus a little noise. Their statistics
    (flat regions, sharp edges, structure at every scale) resemble photographs'."""
    img = torch.empty(batch, 3, size, size)
    for i in range(batch):
        img[i] = torch.rand(3, 1, 1, generator=gen)
        sides = (size * 0.6 * torch.rand(shapes, 2, generator=gen) ** 3).long().clamp(min=2)
        corners = (torch.rand(shapes, 2, generator=gen) * size).long()
        colours = torch.rand(shapes, 3, generator=gen)
        for (h, w), (y, x), c in zip(sides.tolist(), corners.tolist(), colours):
            img[i, :, y : y + h, x : x + w] = c[:, None, None]
    img += 0.02 * torch.randn(img.shape, generator=gen)
    return img.clamp(0, 1)


@torch.no_grad()
def randomise(
    model: DosodDetector,
    seed: int,
    logit_scale: tuple[float, float] = (-1.5, 0.0),
    bias: tuple[float, float] = (-5.0, -2.0),
    calib_size: int = 320,
    calib_images: Tensor | None = None,
    bn_gamma: tuple[float, float] = (0.3, 0.6),
    bn_beta: float = 2.5,
    out_gain: float = 0.3,
) -> DosodDetector:
    """Fills `model` with seeded random weights and statistics; returns it in eval mode.

    BatchNorm statistics are measured on random scenes of `calib_size` px plus, when given,
    `calib_images` [M, 3, S, S] (e.g. letterboxed photos), in batches of at most 4."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1, generator=gen)
        elif isinstance(m, ContrastiveScale):
            m.logit_scale.fill_(float(torch.empty([]).uniform_(*logit_scale, generator=gen)))
            m.bias.fill_(float(torch.empty([]).uniform_(*bias, generator=gen)))
    for branch in list(model.head.cls_preds) + list(model.head.reg_preds):
        branch[-1].weight.mul_(out_gain)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        c = bn.num_features
        bn.weight.copy_(torch.empty(c).uniform_(*bn_gamma, generator=gen))
        bn.bias.copy_(bn_beta + 0.1 * torch.randn(c, generator=gen))
    # Measure the running statistics (cumulative average over a few batches) with the affine
    # parameters already in place, so that every layer sees the inputs it will see in eval mode,
    # then perturb them slightly (large perturbations compound through the depth).
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    joint = torch.randn(4, model.cfg.joint_dim, generator=gen)
    batches = [random_scenes(gen, 2, calib_size) for _ in range(3)]
    if calib_images is not None:
        batches += list(calib_images.split(4))
    for batch in batches:
        model.forward_levels(batch, joint)
    model.eval()
    for bn in bns:
        c = bn.num_features
        bn.momentum = 0.03
        bn.running_var.mul_(torch.empty(c).uniform_(0.9, 1.1, generator=gen))
        bn.running_mean.add_(0.05 * torch.randn(c, generator=gen) * bn.running_var.sqrt())
        bn.num_batches_tracked.fill_(int(torch.randint(1, 10**6, [], generator=gen)))
    return model


def random_detector(cfg: DosodConfig, seed: int, **kw) -> DosodDetector:
    """A new open-vocabulary detector of configuration `cfg` with random weights (eval mode)."""
    torch.manual_seed(seed)
    return randomise(DosodDetector(cfg), seed, **kw)


def save_checkpoint(model: DosodDetector, path, meta: dict) -> dict:
    """Writes `{"state_dict": ..., "meta": {"dosod_synthetic": meta}}` (the official layout plus a
    marker that exporters read to label the weights as random); returns the state dict."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "meta": {"dosod_synthetic": meta}}, path)
    return sd
