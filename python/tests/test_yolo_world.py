"""The YOLO-World-v2 benchmark baseline (dosod_tools.model.yolo_world, export_yolo_world): v2-S
structure, text really wired into the neck and head, BatchNorm folding, the exported bundle."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from dosod_tools.bundle.check import run  # noqa: E402
from dosod_tools.model import export_yolo_world  # noqa: E402
from dosod_tools.model.checkpoint import count_parameters  # noqa: E402
from dosod_tools.model.config import preset  # noqa: E402
from dosod_tools.model.layers import CSPLayerWithTwoConv  # noqa: E402
from dosod_tools.model.synthetic import random_scenes  # noqa: E402
from dosod_tools.model.yolo_world import (  # noqa: E402
    BNContrastiveHead,
    MaxSigmoidCSPLayerWithTwoConv,
    YoloWorldDetector,
    YoloWorldGraph,
    random_yolo_world,
)

SIZE = 160
N = (SIZE // 8) ** 2 + (SIZE // 16) ** 2 + (SIZE // 32) ** 2
H = "bbox_head.head_module."


def unit(k: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(k, 512, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def model() -> YoloWorldDetector:
    return random_yolo_world(preset("n"), 0, calib_size=64)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return random_scenes(torch.Generator().manual_seed(1), 2, SIZE)


def test_v2_s_structure() -> None:
    """Widths of configs/pretrain/yolo_world_v2_s_*: embed (128, 256, 512) and heads (4, 8, 16)
    before widening by 0.5; the backbone and head branches are DOSOD-S's."""
    m = YoloWorldDetector(preset("s"))
    neck = m.neck
    blocks = list(neck.top_down_layers) + list(neck.bottom_up_layers)
    assert all(isinstance(b, MaxSigmoidCSPLayerWithTwoConv) for b in blocks)
    assert not any(type(x) is CSPLayerWithTwoConv for x in neck.modules())  # every neck C2f replaced
    got = [
        (b.mid, b.attn_block.num_heads, b.attn_block.head_channels, tuple(b.attn_block.guide_fc.weight.shape))
        for b in blocks
    ]
    # top-down P5->P4, P4->P3, bottom-up P3->P4, P4->P5
    assert got == [(128, 4, 32, (128, 512)), (64, 2, 32, (64, 512)), (128, 4, 32, (128, 512)), (256, 8, 32, (256, 512))]
    assert all(b.attn_block.embed_conv is None for b in blocks)  # embed == mid in every v2-S block
    assert all(b.final_conv.conv.weight.shape[1] == 4 * b.mid for b in blocks)  # 2 + 1 block + attention
    sd = m.state_dict()
    assert sd["neck.top_down_layers.0.attn_block.project_conv.conv.weight"].shape == (128, 128, 3, 3)
    assert sd[H + "cls_preds.0.2.weight"].shape == (512, 128, 1, 1)
    assert sd[H + "cls_contrasts.2.norm.running_var"].shape == (512,)
    assert not any(".text_mlp." in k for k in sd)
    assert all(isinstance(c, BNContrastiveHead) for c in m.head.cls_contrasts)
    # Re-parameterised for 80 classes as the official rep configs (RepConvMaxSigmoid neck: a bias-free
    # 1x1 conv embed -> 80 per block instead of guide_fc; RepBNContrastiveHead: a 1x1 conv 512 -> 80
    # per level instead of the two scalars), the count is the DOSOD paper's 12.66 M for YOLO-World-v2-S.
    rep = count_parameters(sd)
    for b in blocks:
        rep += b.attn_block.guide_fc.out_features * 80 - sum(p.numel() for p in b.attn_block.guide_fc.parameters())
    rep += 3 * (512 * 80 + 80 - 2)
    assert abs(rep / 12.66e6 - 1) <= 0.005, rep


def test_shapes_and_vocabulary(model: YoloWorldDetector, images: torch.Tensor) -> None:
    with torch.no_grad():
        s3, b3 = model.predict(images, unit(3, 0))
        s5, b5 = model.predict(images, unit(5, 1))
    assert s3.shape == (2, N, 3) and b3.shape == (2, N, 4) and s5.shape == (2, N, 5)
    assert torch.isfinite(s3).all() and torch.isfinite(b3).all()
    assert ((s3 > 0) & (s3 < 1)).all()
    # Scores change with the vocabulary; so do the boxes (the neck is text-guided), unlike DOSOD's.
    assert (s3 - s5[..., :3]).abs().max() > 1e-3
    assert (b3 - b5).abs().max() > 1e-3
    # The same classes in another order: scores permute with them (max over classes is order-free).
    with torch.no_grad():
        sp, bp = model.predict(images, unit(3, 0)[[2, 0, 1]])
    assert torch.allclose(sp, s3[..., [2, 0, 1]], atol=1e-5) and torch.allclose(bp, b3, atol=1e-4)


def test_neck_features_depend_on_text(model: YoloWorldDetector, images: torch.Tensor) -> None:
    with torch.no_grad():
        feats = model.backbone(images)
        a = model.neck(feats, unit(4, 2))
        b = model.neck(feats, unit(4, 3))
        gates = model.neck.top_down_layers[0].attn_block
        x = torch.randn(1, gates.project_conv.conv.in_channels, 5, 5)
        g1, g2 = gates(x, unit(4, 2)), gates(x, unit(4, 3))
    for level, (fa, fb) in enumerate(zip(a, b)):
        assert fa.shape == fb.shape
        assert (fa - fb).abs().max() > 1e-3 * fa.abs().max(), f"neck level {level} ignores the text"
    assert (g1 - g2).abs().max() > 1e-4


def test_fused_graph_equals_model(model: YoloWorldDetector, images: torch.Tensor) -> None:
    graph = YoloWorldGraph(model, SIZE, SIZE).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in graph.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the model is left unfused
    vocab = unit(6, 4)
    with torch.no_grad():
        ref_s, ref_b = model.predict(images, vocab)
        s, b = graph(images, vocab)
    assert (s - ref_s).abs().max() <= 1e-4 and (b - ref_b).abs().max() <= 1e-2


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yw") / "b"
    export_yolo_world.main(["--size", "n", "--input-size", str(SIZE), "--calib-size", "64", "--out", str(out)])
    return out


def io(path: Path) -> dict[str, tuple[int, list]]:
    g = onnx.load(str(path)).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in list(g.input) + list(g.output)}


def test_bundle_contract(bundle: Path) -> None:
    f = onnx.TensorProto.FLOAT
    assert io(bundle / "detector.onnx") == {
        "images": (f, ["B", 3, SIZE, SIZE]),
        "vocab": (f, ["K", 512]),
        "scores": (f, ["B", N, "K"]),
        "boxes": (f, ["B", N, 4]),
    }
    assert io(bundle / "adaptor.onnx") == {"text": (f, ["K", 512]), "joint": (f, ["K", 512])}
    proto = onnx.load(str(bundle / "detector.onnx"))
    assert proto.opset_import[0].version == 17
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Einsum" not in ops and "ReduceMax" in ops
    m = tomllib.loads((bundle / "model.toml").read_text())
    assert m["model"]["name"] == "yolo-world-v2-n-random"
    assert m["embedding"] == {"dim": 512, "text_dim": 512}
    assert m["input"]["anchors"] == N and m["text_encoder"]["kind"] == "clip"
    assert m["provenance"]["license"] == "Apache-2.0"
    assert m["provenance"]["producer"].startswith("python -m dosod_tools.model.export_yolo_world --size n ")
    assert "random weights" in (bundle / "README.md").read_text()


def test_onnx_matches_pytorch(bundle: Path, model: YoloWorldDetector, images: torch.Tensor) -> None:
    """Other batch sizes and vocabularies than the exporter's own check, raw (unnormalised) text
    through the adaptor: `model` has the exported weights (same size, seed and calibration)."""
    x = images.numpy()
    for k in (1, 7):
        raw = np.random.default_rng(k).standard_normal((k, 512)).astype(np.float32)
        (joint,) = run(bundle / "adaptor.onnx", {"text": raw})
        assert np.allclose(np.linalg.norm(joint, axis=1), 1, atol=1e-5)
        scores, boxes = run(bundle / "detector.onnx", {"images": x, "vocab": joint})
        with torch.no_grad():
            ref_s, ref_b = model.predict(images, model.encode_text(torch.from_numpy(raw)))
        assert scores.shape == (2, N, k) and boxes.shape == (2, N, 4)
        assert np.abs(scores - ref_s.numpy()).max() <= 1e-4
        assert np.abs(boxes - ref_b.numpy()).max() <= 1e-2


def test_fp16_bundle(tmp_path: Path) -> None:
    """--fp16: float16 tensors and weights (the exporter checks scores against PyTorch within 1e-2)."""
    export_yolo_world.main(["--size", "n", "--input-size", "96", "--calib-size", "64", "--fp16", "--out", str(tmp_path)])
    for name in ("detector.onnx", "adaptor.onnx"):
        assert all(t == onnx.TensorProto.FLOAT16 for t, _ in io(tmp_path / name).values()), name
        proto = onnx.load(str(tmp_path / name))
        assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer if i.data_type in (1, 10))
