"""dosod_tools.model.export_dosod end to end on a small random checkpoint: graphs, dtypes, shapes, manifest."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from dosod_tools.bundle.check import run  # noqa: E402
from dosod_tools.model import export_dosod  # noqa: E402
from dosod_tools.model.checkpoint import load_detector, sha256_of  # noqa: E402
from dosod_tools.model.config import preset  # noqa: E402
from dosod_tools.model.synthetic import random_detector, random_scenes, save_checkpoint  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    paths = {}
    for dim in (512, 384):
        ckpt = tmp / f"dosod_n_{dim}.pth"
        save_checkpoint(random_detector(preset("n", text_dim=dim), 0, calib_size=SIZE), ckpt, {"size": "n", "seed": 0})
        paths[f"ckpt{dim}"] = ckpt
    model, _ = load_detector(paths["ckpt512"], "n")
    with torch.no_grad():
        joint = model.encode_text(torch.nn.functional.normalize(torch.randn(3, 512), dim=1))
    bake = tmp / "vocab.npz"
    np.savez(bake, joint=joint.numpy(), names=np.array(["cat", "dog", "bird"]))
    paths["bake"] = bake
    common = ["--size", "n", "--input-size", str(SIZE), "--bake", str(bake)]
    export_dosod.main([str(paths["ckpt512"]), "--out", str(tmp / "b32"), *common])
    export_dosod.main([str(paths["ckpt512"]), "--out", str(tmp / "b16"), "--fp16", *common])
    export_dosod.main(
        [
            str(paths["ckpt384"]),
            "--out",
            str(tmp / "m384"),
            "--size",
            "n",
            "--input-size",
            str(SIZE),
            "--text-dim",
            "384",
        ]
    )
    paths.update(b32=tmp / "b32", b16=tmp / "b16", m384=tmp / "m384")
    return paths


def io(path: Path) -> dict[str, tuple[int, list]]:
    g = onnx.load(str(path)).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in list(g.input) + list(g.output)}


def test_contract_shapes_fp32(exported: dict[str, Path]) -> None:
    n = (SIZE // 8) ** 2 + (SIZE // 16) ** 2 + (SIZE // 32) ** 2
    f = onnx.TensorProto.FLOAT
    assert io(exported["b32"] / "detector.onnx") == {
        "images": (f, ["B", 3, SIZE, SIZE]),
        "vocab": (f, ["K", 512]),
        "scores": (f, ["B", n, "K"]),
        "boxes": (f, ["B", n, 4]),
    }
    assert io(exported["b32"] / "adaptor.onnx") == {"text": (f, ["K", 512]), "joint": (f, ["K", 512])}
    assert io(exported["b32"] / "detector_baked.onnx") == {
        "images": (f, ["B", 3, SIZE, SIZE]),
        "scores": (f, ["B", n, 3]),
        "boxes": (f, ["B", n, 4]),
    }
    assert onnx.load(str(exported["b32"] / "detector.onnx")).opset_import[0].version == 17


def test_fp16_everywhere(exported: dict[str, Path]) -> None:
    for name in ("detector.onnx", "adaptor.onnx", "detector_baked.onnx"):
        proto = onnx.load(str(exported["b16"] / name))
        assert all(t == onnx.TensorProto.FLOAT16 for t, _ in io(exported["b16"] / name).values()), name
        assert all(
            i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer if i.data_type in (1, 10)
        ), name


def test_dynamic_batch_and_vocabulary(exported: dict[str, Path]) -> None:
    images = random_scenes(torch.Generator().manual_seed(1), 3, SIZE).numpy()
    model, _ = load_detector(exported["ckpt512"], "n")
    for k in (1, 7):
        vocab = np.random.default_rng(k).standard_normal((k, 512)).astype(np.float32) * 0.1
        scores, boxes = run(exported["b32"] / "detector.onnx", {"images": images, "vocab": vocab})
        with torch.no_grad():
            ref_s, ref_b = model.predict(torch.from_numpy(images), torch.from_numpy(vocab))
        assert scores.shape == (3, ref_s.shape[1], k)
        assert np.abs(scores - ref_s.numpy()).max() <= 1e-4
        assert np.abs(boxes - ref_b.numpy()).max() <= 1e-2


def test_baked_equals_decoupled(exported: dict[str, Path]) -> None:
    images = random_scenes(torch.Generator().manual_seed(2), 2, SIZE).numpy()
    with np.load(exported["bake"]) as z:
        joint = z["joint"]
    s1, b1 = run(exported["b32"] / "detector.onnx", {"images": images, "vocab": joint})
    s2, b2 = run(exported["b32"] / "detector_baked.onnx", {"images": images})
    assert np.abs(s1 - s2).max() <= 1e-4 and np.abs(b1 - b2).max() <= 1e-3
    s3, _ = run(exported["b16"] / "detector_baked.onnx", {"images": images.astype(np.float16)})
    assert np.abs(s3.astype(np.float32) - s1).max() <= 1e-2
    assert (exported["b32"] / "detector_baked.txt").read_text().split() == ["cat", "dog", "bird"]


def test_manifest(exported: dict[str, Path]) -> None:
    m = tomllib.loads((exported["b32"] / "model.toml").read_text())
    assert m["model"]["name"] == "dosod-n"
    assert m["input"] == {
        "width": SIZE,
        "height": SIZE,
        "resize": "keep_ratio",
        "interpolation": "auto",
        "pad_value": 114,
        "pad_position": "center",
        "strides": [8, 16, 32],
        "anchors": 189,
    }
    assert m["embedding"] == {"dim": 512, "text_dim": 512}
    assert m["text_encoder"] == {
        "kind": "clip",
        "name": "openai/clip-vit-base-patch32",
        "dir": "../encoders/clip-vit-base-patch32",
    }
    assert m["postprocess"]["iou_threshold"] == 0.65 and m["postprocess"]["multi_label"] is False
    prov = m["provenance"]
    assert prov["producer"].startswith("python -m dosod_tools.model.export_dosod ")
    assert sha256_of(exported["ckpt512"]) in prov["source"] and "dosod_n_512.pth" in prov["source"]
    assert prov["license"] == "Apache-2.0"  # synthetic weights; official checkpoints get GPL-3.0
    m384 = tomllib.loads((exported["m384"] / "model.toml").read_text())
    assert m384["embedding"]["text_dim"] == 384
    assert m384["text_encoder"]["kind"] == "minilm"
    assert not (exported["m384"] / "detector_baked.onnx").exists()


def test_official_checkpoint_gets_gpl(tmp_path: Path) -> None:
    ckpt = tmp_path / "dosod_mlp3x_n.pth"
    torch.save({"state_dict": random_detector(preset("n"), 0, calib_size=64).state_dict(), "meta": {"epoch": 1}}, ckpt)
    export_dosod.main([str(ckpt), "--size", "n", "--input-size", "64", "--out", str(tmp_path / "b")])
    prov = tomllib.loads((tmp_path / "b" / "model.toml").read_text())["provenance"]
    assert prov["license"] == "GPL-3.0" and prov["source"].startswith("checkpoint dosod_mlp3x_n.pth")
