"""Checkpoints: synthetic files, strict loading, official-style extras, re-parameterisation."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dosod_tools.model.checkpoint import (  # noqa: E402
    CheckpointError,
    load_detector,
    read_checkpoint,
    reparameterise_state_dict,
)
from dosod_tools.model.config import preset  # noqa: E402
from dosod_tools.model.model import DosodDetector  # noqa: E402
from dosod_tools.model.synthetic import random_detector, save_checkpoint  # noqa: E402

H = "bbox_head.head_module."


@pytest.fixture(scope="module")
def n_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "dosod_n.pth"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dosod_tools.fixtures.make_synthetic_checkpoint",
            "--size",
            "n",
            "--out",
            str(path),
            "--seed",
            "3",
        ],
        check=True,
        capture_output=True,
    )
    return path


def test_synthetic_checkpoint_structure(n_ckpt: Path) -> None:
    ckpt = torch.load(n_ckpt, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}
    sd = ckpt["state_dict"]
    assert set(sd) == set(DosodDetector(preset("n")).state_dict())
    assert sd["backbone.stem.bn.num_batches_tracked"].dtype == torch.int64
    var = sd["neck.top_down_layers.0.final_conv.bn.running_var"]
    assert not torch.allclose(var, torch.ones_like(var))  # statistics are not the defaults
    scales = [float(sd[f"{H}cls_contrasts.{i}.logit_scale"]) for i in range(3)]
    assert len(set(scales)) == 3 and all(-1.5 <= s <= 0.0 for s in scales)
    model, info = load_detector(n_ckpt, "n")
    assert info["synthetic"] and info["dropped_keys"] == [] and len(info["sha256"]) == 64


def test_seeded_and_deterministic(tmp_path: Path) -> None:
    a = random_detector(preset("n"), 5, calib_size=64).state_dict()
    b = random_detector(preset("n"), 5, calib_size=64).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_strict_loading_lists_keys(tmp_path: Path, n_ckpt: Path) -> None:
    sd = torch.load(n_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    del sd["neck.downsample_layers.0.bn.running_mean"]
    sd["bbox_head.head_module.extra.weight"] = torch.zeros(1)
    sd[H + "reg_preds.0.2.bias"] = torch.zeros(65)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(CheckpointError) as err:
        load_detector(bad, "n")
    text = str(err.value)
    assert "missing keys (1)" in text and "neck.downsample_layers.0.bn.running_mean" in text
    assert "unexpected keys (1)" in text and "bbox_head.head_module.extra.weight" in text
    assert "shape mismatches (1)" in text and "reg_preds.0.2.bias: (65,)" in text


def test_wrong_size_is_refused(n_ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_detector(n_ckpt, "s")


def test_text_dim_is_checked(n_ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="--text-dim 384"):
        load_detector(n_ckpt, "n", text_dim=384)


def test_official_style_checkpoint(tmp_path: Path) -> None:
    """Text-tower keys are dropped; unknown pickled metadata classes never get imported."""
    model = random_detector(preset("n"), 1, calib_size=64)
    sd = dict(model.state_dict())
    sd["backbone_text.model.text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 2)
    mod = types.ModuleType("fake_mmengine_logging")

    class HistoryBuffer:  # stands for mmengine objects in `message_hub`
        def __init__(self) -> None:
            self.values = [1, 2, 3]

    HistoryBuffer.__module__ = mod.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    mod.HistoryBuffer = HistoryBuffer
    sys.modules[mod.__name__] = mod
    path = tmp_path / "official_like.pth"
    try:
        torch.save({"meta": {"epoch": 100}, "state_dict": sd, "message_hub": {"log": HistoryBuffer()}}, path)
    finally:
        del sys.modules[mod.__name__]
    raw = read_checkpoint(path)
    assert type(raw["message_hub"]["log"]).__name__ == "HistoryBuffer"
    loaded, info = load_detector(path, "n")
    assert info["dropped_keys"] == ["backbone_text.model.text_model.embeddings.token_embedding.weight"]
    assert not info["synthetic"]
    assert torch.equal(loaded.state_dict()["backbone.stem.conv.weight"], sd["backbone.stem.conv.weight"])


def test_reparameterised_checkpoint_is_refused(tmp_path: Path) -> None:
    model = random_detector(preset("n"), 1, calib_size=64)
    rep = reparameterise_state_dict(model.state_dict(), torch.randn(80, 512))
    path = tmp_path / "rep.pth"
    torch.save({"state_dict": rep}, path)
    with pytest.raises(CheckpointError, match="re-parameterised checkpoint"):
        load_detector(path, "n")


def test_reparameterisation_matches_official_formula() -> None:
    model = random_detector(preset("n"), 2, calib_size=64)
    joint = torch.randn(4, 512)
    rep = reparameterise_state_dict(model.state_dict(), joint)
    c = model.head.cls_contrasts[2]
    torch.testing.assert_close(rep[H + "cls_contrasts.2.conv.weight"][:, :, 0, 0], joint * c.logit_scale.exp().detach())
    assert torch.equal(rep[H + "cls_contrasts.2.conv.bias"], c.bias.detach().expand(4))
    assert save_checkpoint is not None


def test_checkpoint_with_container_subclasses(tmp_path: Path) -> None:
    """Pickled list/dict subclasses from unknown modules (which the weights-only loader cannot
    fill) go through the restricted unpickler; nothing from them is imported or run."""
    mod = types.ModuleType("fake_mmengine_structs")

    class Buffer(list):
        pass

    class Config(dict):
        pass

    for cls in (Buffer, Config):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    sys.modules[mod.__name__] = mod
    sd = random_detector(preset("n"), 1, calib_size=64).state_dict()
    path = tmp_path / "containers.pth"
    try:
        meta = {"cfg": Config(a=1), "hist": Buffer([1, 2]), "d": collections.defaultdict(list, {"x": [1]})}
        torch.save({"meta": meta, "state_dict": sd}, path)
    finally:
        del sys.modules[mod.__name__]
    raw = read_checkpoint(path)
    assert type(raw["meta"]["hist"]).__name__ == "Buffer" and raw["meta"]["hist"].items_appended == [1, 2]
    loaded, _ = load_detector(path, "n")
    assert torch.equal(
        loaded.state_dict()["neck.downsample_layers.1.conv.weight"], sd["neck.downsample_layers.1.conv.weight"]
    )


def test_restricted_unpickler_never_resolves_unsafe_globals(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "meta": [Evil()]}, path)
    raw = read_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    assert type(raw["meta"][0]).__name__ == "system"
