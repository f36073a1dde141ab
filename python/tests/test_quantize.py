"""dosod_tools.bundle.quantize: an INT8 bundle whose region-text product stays float, for any vocabulary."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dosod_tools import REPO_ROOT
from dosod_tools.bundle import quantize
from dosod_tools.fixtures import make_test_bundles
from dosod_tools.reference.detect import letterbox, load_rgb

PHOTOS = REPO_ROOT / "tests/fixtures/images"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    make_test_bundles.main(["--out", str(out)])
    return out


def joint_of(bundle: Path, k: int, seed: int) -> np.ndarray:
    """k random unit text embeddings through the bundle's adaptor."""
    t = tomllib.loads((bundle / "model.toml").read_text())["embedding"]["text_dim"]
    text = np.random.default_rng(seed).standard_normal((k, t)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    sess = ort.InferenceSession(str(bundle / "adaptor.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"text": text})[0]


@pytest.fixture(scope="module")
def int8(bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("int8")
    vocab = scratch / "vocab.npz"
    np.savez(vocab, names=np.array(["a", "b", "c"]), joint=joint_of(bundles / "random", 3, 0))
    out = scratch / "random-int8"
    quantize.main([str(bundles / "random"), "--images", str(PHOTOS), "--vocab", str(vocab), "--out", str(out)])
    return out


def test_manifest_records_precision_and_calibration(bundles: Path, int8: Path) -> None:
    doc = tomllib.loads((int8 / "model.toml").read_text())
    src = tomllib.loads((bundles / "random" / "model.toml").read_text())
    p = doc["precision"]
    assert (p["weights"], p["activations"], p["calibration_images"]) == ("int8", "uint8", 3)
    assert p["source_bundle"] == "random" and len(p["calibration_sha256"]) == 64
    assert doc["model"]["name"] == "random-int8"
    # Everything the engine reads is kept; the default vocabulary's files come along.
    for table in ("input", "embedding", "postprocess", "default_vocabulary"):
        assert doc[table] == src[table]
    assert (int8 / "vocab.npy").is_file() and (int8 / "adaptor.onnx").read_bytes() == (bundles / "random" / "adaptor.onnx").read_bytes()
    with pytest.raises(SystemExit, match="already int8"):
        quantize.main([str(int8), "--images", str(PHOTOS), "--vocab", "x.npz", "--out", str(int8) + "-again"])


def test_vocabulary_path_stays_float(int8: Path) -> None:
    model = onnx.load(str(int8 / "detector.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # Nothing quantises the vocabulary, and the product with it is a float MatMul.
    users = [n for n in model.graph.node if "vocab" in n.input]
    assert users and all(n.op_type not in ("QuantizeLinear", "MatMulInteger", "QLinearMatMul") for n in users)
    # The first convolution (the stem) reads the image in float.
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    producers = {o: n for n in model.graph.node for o in n.output}
    assert first_conv.input[0] not in producers or producers[first_conv.input[0]].op_type != "DequantizeLinear"


def test_any_vocabulary_scores_like_float(bundles: Path, int8: Path) -> None:
    # Vocabularies of other sizes and values than the calibration one: the INT8 scores follow
    # the float32 ones (the convolutions carry the quantisation error, the product adds none).
    spec = tomllib.loads((bundles / "random" / "model.toml").read_text())["input"]
    x, _ = letterbox(load_rgb(PHOTOS / "bus.jpg"), spec, np.float32)
    f32 = ort.InferenceSession(str(bundles / "random" / "detector.onnx"), providers=["CPUExecutionProvider"])
    q8 = ort.InferenceSession(str(int8 / "detector.onnx"), providers=["CPUExecutionProvider"])
    for k, seed in ((1, 1), (7, 2), (40, 3)):
        joint = joint_of(bundles / "random", k, seed)
        (ws, wb), (gs, gb) = (s.run(None, {"images": x, "vocab": joint}) for s in (f32, q8))
        assert gs.shape == ws.shape == (1, 8400, k)
        assert np.corrcoef(gs.ravel(), ws.ravel())[0, 1] > 0.95
        assert np.abs(gb - wb).mean() < 4.0


def test_float_nodes_choices(bundles: Path, tmp_path: Path) -> None:
    model = onnx.load(str(bundles / "random" / "detector.onnx"))
    for i, n in enumerate(model.graph.node):
        n.name = n.name or f"n{i}"
    tail, head, ends = (set(quantize.float_nodes(model, c)) for c in ("tail", "head", "ends"))
    assert quantize.float_nodes(model, "none") == []
    assert tail < head < ends
    by_name = {n.name: n for n in model.graph.node}
    assert all(by_name[n].op_type != "Conv" for n in tail)
    assert {by_name[n].op_type for n in head - tail} == {"Conv"}
    assert len(ends - head) == 1
    # The tail holds every node that reads the vocabulary and the output sigmoid.
    assert all(n.name in tail for n in model.graph.node if "vocab" in n.input)


def test_concats_share_their_inputs_range() -> None:
    """Every quantised Concat of the shipped demo INT8 bundle (the test bundles have none) reads
    and writes one scale and zero point: a copy, not a requantisation."""
    graph = onnx.load(str(REPO_ROOT / "models/demo-int8/detector.onnx")).graph
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def params(node: onnx.NodeProto) -> tuple[float, int]:
        return float(consts[node.input[1]]), int(consts[node.input[2]])

    checked = 0
    for node in graph.node:
        if node.op_type != "Concat" or not all(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in node.input):
            continue
        quant = [c for c in consumers[node.output[0]] if c.op_type == "QuantizeLinear"]
        assert len(quant) == 1, node.name
        assert {params(made_by[i]) for i in node.input} == {params(quant[0])}, node.name
        checked += 1
    assert checked >= 4
