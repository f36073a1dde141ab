#!/usr/bin/env python3
"""Generate the test model bundles (docs/model-bundle.md) without torch, deterministically.

    scripts/make_test_bundles.py --out models/generated [--seed 0] [--make-png-fixtures]

writes three bundles, each with model.toml, detector.onnx and adaptor.onnx (opset 17):

* ``random/``      a tiny YOLOv8/DOSOD-shaped detector with random weights at 640x640
                   (strides 8/16/32, N = 8400, D = 512, T = 384, MiniLM text encoder): strided
                   3x3 conv + SiLU stages make P3/P4/P5, per level a 1x1 conv to L2-normalised
                   512-d region embeddings and a 1x1 conv to 4 x 16 DFL logits; DFL decode and
                   the contrastive score ``sigmoid(<region, vocab> * exp(logit_scale_l) + bias_l)``
                   are in the graph. The adaptor is DOSOD's mlp3x (384->512->512->512).
* ``random-fp16/`` the same network and weights built in float16 throughout.
* ``exact/``       a hand-built detector whose output is known exactly (D = T = 4, identity
                   adaptor); ``exact/expected.json`` lists its rows.

Each bundle also gets ``vocab.npy`` / ``vocab.txt`` (precomputed text embeddings and names) for
tests. ``--make-png-fixtures`` additionally writes lossless PNG copies of the JPEG fixtures
(tests/fixtures/images/*.jpg, decoded by Pillow, EXIF orientation applied) next to them, so
engine-vs-reference tests need not depend on JPEG decoders agreeing. Running it again overwrites
everything with identical ONNX/npy files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # opset 17 needs IR >= 8; onnxruntime 1.32 loads it
INPUT_SIZE = 640
STRIDES = (8, 16, 32)
REG_MAX = 16
NORM_EPS = 1e-6  # representable in float16 (subnormal), unlike F.normalize's 1e-12
LICENSE = "Apache-2.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "images"
PNG_DIR_NAME = "fixtures-png"

# Random detector sizes: a deliberately narrow backbone keeps the file small.
STAGE_CHANNELS = (8, 16, 24, 32, 48)  # five stride-2 stages: P3 = stage 3, P4 = 4, P5 = 5
JOINT_DIM = 512
TEXT_DIM = 384
RANDOM_CLASSES = ("person", "dog", "car", "bicycle", "traffic light")
# Contrastive scalars per level (P3, P4, P5), tuned by hand with the seed-0 weights and vocabulary:
# the three fixture photos give 25-85 anchor x class pairs above 0.25 (best scores 0.4-0.55,
# none saturated), more than half of all scores exceed 0.01, and a flat image stays below 0.21.
LOGIT_SCALES = (math.log(36.0), math.log(32.0), math.log(28.0))
LOGIT_BIASES = (-4.9, -4.1, -3.9)
FLAT_EMBEDDING_NORM = 0.5  # |region embedding| of flat image regions, before normalisation

# The exact bundle.
EXACT_DIM = 4
EXACT_CLASSES = ("alpha", "beta", "gamma", "delta")
EXACT_OFFSET = -4.0  # scores = sigmoid(E . vocab^T + EXACT_OFFSET)
COLOUR_GAIN, COLOUR_OFFSET = 30.0, -25.0  # image rows: logit = 30 * mean(channel) - 25


@dataclass(frozen=True)
class ExactRow:
    """One non-zero row of the exact detector's embedding and box tables."""

    anchor: int
    class_id: int
    embedding: float  # the row's value in column `class_id` (constant rows)
    box: tuple[float, float, float, float]
    channel: str | None = None  # "red" / "blue": the value is 30 * mean(channel) - 25 + 4
    note: str = ""


EXACT_ROWS = (
    ExactRow(100, 0, 8.0, (100, 120, 300, 360), note="always detected"),
    ExactRow(200, 0, 6.0, (110, 130, 310, 370), note="same class as anchor 100, IoU 0.84: removed by NMS"),
    ExactRow(5000, 1, 7.0, (320, 320, 480, 400), note="always detected"),
    ExactRow(6000, 2, 5.0, (100, 120, 300, 360), note="same box as anchor 100, other class: kept by class-aware NMS"),
    ExactRow(7000, 3, 9.0, (0, 0, 640, 640), channel="red", note="score sigmoid(30*mean(R) - 25)"),
    ExactRow(7001, 3, 9.0, (16, 16, 624, 624), channel="blue", note="score sigmoid(30*mean(B) - 25)"),
)
CHANNEL_INDEX = {"red": 0, "green": 1, "blue": 2}


class GraphBuilder:
    """Collects nodes and initializers; every float initializer is stored in `dtype`."""

    def __init__(self, dtype: type[np.floating]) -> None:
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()

    @property
    def elem_type(self) -> int:
        return helper.np_dtype_to_tensor_dtype(self.dtype)

    def _name(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._used:
            name, i = f"{hint}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, value: np.ndarray | float, hint: str) -> str:
        """A float initializer in the graph's dtype."""
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=self.dtype), name))
        return name

    def ints(self, value: list[int], hint: str) -> str:
        """An int64 initializer (shapes, axes, pads)."""
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attrs: object) -> str:
        out = output if output is not None else self._name(hint)
        self._used.add(out)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._name(f"{hint}_node"), **attrs))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, stride: int, hint: str) -> str:
        k = weight.shape[-1]
        w = self.const(weight, f"{hint}.weight")
        b = self.const(bias, f"{hint}.bias")
        pad = k // 2
        return self.op("Conv", [x, w, b], hint, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def silu(self, x: str, hint: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x], f"{hint}.sigmoid")], f"{hint}.silu")

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dosod-test-bundles")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


# --------------------------------------------------------------------------------------------
# The random detector


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def random_weights(seed: int) -> dict[str, np.ndarray]:
    """All weights of the random detector and adaptor (float32, PyTorch layouts).

    Three choices keep the random scores informative rather than dominated by a common mode:
    every 3x3 kernel of the first conv sums to zero per input channel, so flat regions of any
    colour (the letterbox padding included) give one fixed feature vector per level; each
    level's embedding conv maps that vector to a fixed short random vector, so flat regions
    score low and texture decides; and the adaptor's last bias removes the mean of its output
    over random unit texts, so the joint vectors of unrelated classes are nearly orthogonal.
    """
    rng = np.random.default_rng(seed)
    w: dict[str, np.ndarray] = {}

    def he(shape: tuple[int, ...], fan_in: int, gain: float = 2.0) -> np.ndarray:
        return rng.standard_normal(shape) * math.sqrt(gain / fan_in)

    c_in = 3
    flat = np.zeros(3)  # the feature vector of a flat region, propagated stage by stage
    flat_levels = []
    for i, c in enumerate(STAGE_CHANNELS):
        k = he((c, c_in, 3, 3), c_in * 9)
        if i == 0:
            k -= k.mean(axis=(2, 3), keepdims=True)
        b = rng.standard_normal(c) * 0.1
        flat = silu(k.sum(axis=(2, 3)) @ flat + b)
        if i >= 2:
            flat_levels.append(flat)
        w[f"stage{i}.weight"], w[f"stage{i}.bias"] = k, b
        c_in = c
    for level, c in enumerate(STAGE_CHANNELS[2:]):
        emb = he((JOINT_DIM, c, 1, 1), c, gain=1.0)
        flat_target = rng.standard_normal(JOINT_DIM) * FLAT_EMBEDDING_NORM / math.sqrt(JOINT_DIM)
        w[f"cls{level}.weight"] = emb
        w[f"cls{level}.bias"] = flat_target - emb[:, :, 0, 0] @ flat_levels[level]
        w[f"reg{level}.weight"] = he((4 * REG_MAX, c, 1, 1), c, gain=0.5)
        w[f"reg{level}.bias"] = rng.standard_normal(4 * REG_MAX) * 0.3

    dims = (TEXT_DIM, JOINT_DIM, JOINT_DIM, JOINT_DIM)
    for i in range(3):
        w[f"mlp{i}.weight"] = he((dims[i + 1], dims[i]), dims[i], 2.0 if i < 2 else 1.0)
        w[f"mlp{i}.bias"] = rng.standard_normal(dims[i + 1]) * 0.01
    probe = rng.standard_normal((1024, TEXT_DIM))
    h = probe / np.linalg.norm(probe, axis=1, keepdims=True)
    for i in range(2):
        h = np.maximum(h @ w[f"mlp{i}.weight"].T + w[f"mlp{i}.bias"], 0.0)
    w["mlp2.bias"] = -(h @ w["mlp2.weight"].T).mean(axis=0)
    # Rounded so that last-bit differences between BLAS builds cannot change the files.
    return {k: np.round(v, 6).astype(np.float32) for k, v in w.items()}


def anchor_centres(stride: int) -> np.ndarray:
    """[h*w, 4] rows (cx, cy, cx, cy) in input pixels, row-major over the feature map."""
    n = INPUT_SIZE // stride
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    cx = (xs.reshape(-1) + 0.5) * stride
    cy = (ys.reshape(-1) + 0.5) * stride
    return np.stack([cx, cy, cx, cy], axis=1)


def build_random_detector(w: dict[str, np.ndarray], dtype: type[np.floating]) -> onnx.ModelProto:
    """The tiny DOSOD-shaped detector; `dtype` sets every input, output and initializer."""
    g = GraphBuilder(dtype)
    x = "images"
    feats = []
    for i in range(len(STAGE_CHANNELS)):
        x = g.silu(g.conv(x, w[f"stage{i}.weight"], w[f"stage{i}.bias"], 2, f"stage{i}.conv"), f"stage{i}")
        if i >= 2:
            feats.append(x)

    vocab_t = g.op("Transpose", ["vocab"], "vocab_t", perm=[1, 0])  # [D, K]
    bins = g.const(np.arange(REG_MAX), "dfl_bins")
    logits, boxes = [], []
    for level, (feat, stride) in enumerate(zip(feats, STRIDES)):
        p = f"level{level}"
        # Region embeddings: [B, D, h, w] -> [B, h*w, D], L2-normalised per anchor.
        emb = g.conv(feat, w[f"cls{level}.weight"], w[f"cls{level}.bias"], 1, f"{p}.cls")
        emb = g.op("Reshape", [emb, g.ints([0, JOINT_DIM, -1], f"{p}.emb_shape")], f"{p}.emb_flat")
        emb = g.op("Transpose", [emb], f"{p}.emb_t", perm=[0, 2, 1])
        norm = g.op("ReduceL2", [emb], f"{p}.emb_norm", axes=[-1], keepdims=1)
        norm = g.op("Max", [norm, g.const(NORM_EPS, f"{p}.eps")], f"{p}.emb_norm_eps")
        emb = g.op("Div", [emb, norm], f"{p}.emb_unit")
        sim = g.op("MatMul", [emb, vocab_t], f"{p}.sim")  # [B, h*w, K]
        scaled = g.op("Mul", [sim, g.const(math.exp(LOGIT_SCALES[level]), f"{p}.scale")], f"{p}.scaled")
        logits.append(g.op("Add", [scaled, g.const(LOGIT_BIASES[level], f"{p}.bias")], f"{p}.logits"))

        # DFL: [B, 64, h, w] -> softmax over 16 bins -> expected distance (l, t, r, b) * stride.
        reg = g.conv(feat, w[f"reg{level}.weight"], w[f"reg{level}.bias"], 1, f"{p}.reg")
        reg = g.op("Reshape", [reg, g.ints([0, 4, REG_MAX, -1], f"{p}.reg_shape")], f"{p}.reg_bins")
        reg = g.op("Softmax", [reg], f"{p}.reg_prob", axis=2)
        reg = g.op("Transpose", [reg], f"{p}.reg_t", perm=[0, 3, 1, 2])  # [B, h*w, 4, 16]
        dist = g.op("MatMul", [reg, bins], f"{p}.dist")  # [B, h*w, 4]
        # x1 = cx - l * s, y1 = cy - t * s, x2 = cx + r * s, y2 = cy + b * s.
        ltrb = g.const(stride * np.array([-1.0, -1.0, 1.0, 1.0]), f"{p}.signed_stride")
        dist = g.op("Mul", [dist, ltrb], f"{p}.offsets")
        boxes.append(g.op("Add", [dist, g.const(anchor_centres(stride), f"{p}.centres")], f"{p}.boxes"))

    logits_all = g.op("Concat", logits, "logits", axis=1)
    g.op("Sigmoid", [logits_all], "scores", output="scores")
    g.op("Concat", boxes, "boxes", output="boxes", axis=1)
    n = sum((INPUT_SIZE // s) ** 2 for s in STRIDES)
    et = g.elem_type
    return g.model(
        "dosod_random_detector",
        [
            helper.make_tensor_value_info("images", et, ["batch", 3, INPUT_SIZE, INPUT_SIZE]),
            helper.make_tensor_value_info("vocab", et, ["classes", JOINT_DIM]),
        ],
        [
            helper.make_tensor_value_info("scores", et, ["batch", n, "classes"]),
            helper.make_tensor_value_info("boxes", et, ["batch", n, 4]),
        ],
    )


def build_mlp_adaptor(w: dict[str, np.ndarray], dtype: type[np.floating]) -> onnx.ModelProto:
    """DOSOD's mlp3x: Linear T->D, ReLU, Linear D->D, ReLU, Linear D->D."""
    g = GraphBuilder(dtype)
    x = "text"
    for i in range(3):
        wt = g.const(w[f"mlp{i}.weight"].T, f"mlp{i}.weight_t")  # MatMul wants [in, out]
        x = g.op("MatMul", [x, wt], f"mlp{i}.matmul")
        x = g.op("Add", [x, g.const(w[f"mlp{i}.bias"], f"mlp{i}.bias")], f"mlp{i}.out", output="joint" if i == 2 else None)
        if i < 2:
            x = g.op("Relu", [x], f"mlp{i}.relu")
    et = g.elem_type
    return g.model(
        "dosod_mlp3x_adaptor",
        [helper.make_tensor_value_info("text", et, ["classes", TEXT_DIM])],
        [helper.make_tensor_value_info("joint", et, ["classes", JOINT_DIM])],
    )


def random_vocab(seed: int) -> np.ndarray:
    """[5, 384] float32 unit rows: stand-in text embeddings for RANDOM_CLASSES."""
    rng = np.random.default_rng([seed, 1])  # a stream separate from the weights'
    v = rng.standard_normal((len(RANDOM_CLASSES), TEXT_DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The exact detector


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def exact_tables() -> tuple[np.ndarray, np.ndarray]:
    """The constant embedding table E [N, 4] (image rows zero) and box table [N, 4]."""
    n = sum((INPUT_SIZE // s) ** 2 for s in STRIDES)
    emb = np.zeros((n, EXACT_DIM), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    for row in EXACT_ROWS:
        if row.channel is None:
            emb[row.anchor, row.class_id] = row.embedding
        boxes[row.anchor] = row.box
    return emb, boxes


def build_exact_detector() -> onnx.ModelProto:
    """scores = sigmoid(E(images) . vocab^T - 4), boxes = a constant table per batch item.

    E is a constant table plus the image rows: 30 * mean(channel) - 21 in column 3 of anchors
    7000 (red) and 7001 (blue), the means taken over each batch item's whole input tensor.
    """
    g = GraphBuilder(np.float32)
    emb, box_table = exact_tables()
    n = emb.shape[0]
    image_rows = [r for r in EXACT_ROWS if r.channel is not None]
    first = image_rows[0].anchor
    assert [r.anchor for r in image_rows] == list(range(first, first + len(image_rows)))
    assert len({r.class_id for r in image_rows}) == 1

    means = g.op("ReduceMean", ["images"], "channel_means", axes=[2, 3], keepdims=0)  # [B, 3]
    chans = g.ints([CHANNEL_INDEX[r.channel] for r in image_rows], "image_row_channels")
    picked = g.op("Gather", [means, chans], "image_row_means", axis=1)  # [B, rows]
    value = g.op("Mul", [picked, g.const(COLOUR_GAIN, "colour_gain")], "image_row_scaled")
    value = g.op("Add", [value, g.const(COLOUR_OFFSET - EXACT_OFFSET, "colour_offset")], "image_row_values")
    value = g.op("Unsqueeze", [value, g.ints([2], "unsqueeze_axis")], "image_row_col")  # [B, rows, 1]
    onehot = np.zeros((1, 1, EXACT_DIM), np.float32)
    onehot[..., image_rows[0].class_id] = 1.0
    value = g.op("Mul", [value, g.const(onehot, "image_row_onehot")], "image_row_emb")  # [B, rows, 4]
    pads = g.ints([0, first, 0, 0, n - first - len(image_rows), 0], "image_row_pads")
    dynamic = g.op("Pad", [value, pads], "image_rows_full")  # [B, N, 4], zeros elsewhere
    table = g.op("Add", [dynamic, g.const(emb, "embedding_table")], "embeddings")

    vocab_t = g.op("Transpose", ["vocab"], "vocab_t", perm=[1, 0])
    sim = g.op("MatMul", [table, vocab_t], "similarity")
    logits = g.op("Add", [sim, g.const(EXACT_OFFSET, "logit_offset")], "logits")
    g.op("Sigmoid", [logits], "scores", output="scores")

    batch = g.op("Shape", ["images"], "batch_dim", start=0, end=1)
    shape = g.op("Concat", [batch, g.ints([n, 4], "box_dims")], "boxes_shape", axis=0)
    g.op("Expand", [g.const(box_table[None], "box_table"), shape], "boxes", output="boxes")
    return g.model(
        "dosod_exact_detector",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE]),
            helper.make_tensor_value_info("vocab", TensorProto.FLOAT, ["classes", EXACT_DIM]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n, "classes"]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", n, 4]),
        ],
    )


def build_identity_adaptor() -> onnx.ModelProto:
    """joint = text @ I4, a real MatMul."""
    g = GraphBuilder(np.float32)
    g.op("MatMul", ["text", g.const(np.eye(EXACT_DIM), "identity")], "joint", output="joint")
    return g.model(
        "dosod_identity_adaptor",
        [helper.make_tensor_value_info("text", TensorProto.FLOAT, ["classes", EXACT_DIM])],
        [helper.make_tensor_value_info("joint", TensorProto.FLOAT, ["classes", EXACT_DIM])],
    )


def exact_expected() -> dict:
    """The truth for exact/: every non-zero row, and what survives NMS on which image."""

    def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    rows = []
    for r in EXACT_ROWS:
        entry: dict = {
            "anchor": r.anchor,
            "class_id": r.class_id,
            "label": EXACT_CLASSES[r.class_id],
            "box": [float(v) for v in r.box],
            "note": r.note,
        }
        if r.channel is None:
            entry["logit"] = r.embedding + EXACT_OFFSET
            entry["score"] = sigmoid(r.embedding + EXACT_OFFSET)
            entry["when"] = "always"
        else:
            entry["logit"] = COLOUR_GAIN + COLOUR_OFFSET
            entry["score"] = sigmoid(COLOUR_GAIN + COLOUR_OFFSET)
            entry["when"] = f"pure {r.channel} 640x640 image (score given for mean({r.channel[0].upper()}) = 1)"
            entry["channel"] = r.channel
            entry["logit_formula"] = f"{COLOUR_GAIN:g} * mean({r.channel[0].upper()}) {COLOUR_OFFSET:+g}"
        rows.append(entry)
    rows[1]["suppressed_by_anchor"] = 100
    rows[1]["iou_with_suppressor"] = iou(EXACT_ROWS[0].box, EXACT_ROWS[1].box)

    always = sorted((e for e in rows if e["when"] == "always" and "suppressed_by_anchor" not in e), key=lambda e: -e["score"])
    by_anchor = {e["anchor"]: e for e in rows}
    pick = lambda extra: sorted(always + [by_anchor[extra]], key=lambda e: -e["score"])  # noqa: E731
    brief = lambda es: [{k: e[k] for k in ("anchor", "class_id", "label", "score", "box")} for e in es]  # noqa: E731
    return {
        "description": "exact/ detector: scores = sigmoid(E . vocab^T - 4) with vocab = I4; boxes in input (640x640) pixels",
        "input": {"width": INPUT_SIZE, "height": INPUT_SIZE},
        "background_score": sigmoid(EXACT_OFFSET),
        "default_score_threshold": 0.25,
        "default_iou_threshold": 0.65,
        "rows": rows,
        "detections_in_input_pixels": {
            "photo": brief(always),
            "pure_red_640": brief(pick(7000)),
            "pure_blue_640": brief(pick(7001)),
        },
    }


# --------------------------------------------------------------------------------------------
# Writing bundles


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def manifest(
    name: str,
    description: str,
    dim: int,
    text_dim: int,
    text_encoder: dict[str, str],
    source: str,
) -> str:
    n = sum((INPUT_SIZE // s) ** 2 for s in STRIDES)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    created = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date()
        if epoch
        else datetime.datetime.now(datetime.timezone.utc).date()
    )
    tables: list[tuple[str, dict[str, object]]] = [
        ("model", {"name": name, "description": description}),
        ("files", {"detector": "detector.onnx", "adaptor": "adaptor.onnx"}),
        (
            "input",
            {
                "width": INPUT_SIZE,
                "height": INPUT_SIZE,
                "resize": "keep_ratio",
                "interpolation": "auto",
                "pad_value": 114,
                "pad_position": "center",
                "strides": list(STRIDES),
                "anchors": n,
            },
        ),
        ("embedding", {"dim": dim, "text_dim": text_dim}),
        ("postprocess", {"score_threshold": 0.25, "iou_threshold": 0.65, "max_detections": 100, "multi_label": False}),
        ("text_encoder", text_encoder),
        ("default_vocabulary", {"embeddings": "vocab.npy", "names": "vocab.txt"}),
        (
            "provenance",
            {
                "producer": shlex.join(sys.argv),
                "source": source,
                "license": LICENSE,
                "created": created.isoformat(),
            },
        ),
    ]
    lines = [f"# dosod test bundle `{name}`, generated by scripts/make_test_bundles.py; see docs/model-bundle.md."]
    for table, values in tables:
        lines.append(f"\n[{table}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def write_bundle(
    out: Path,
    manifest_text: str,
    detector: onnx.ModelProto,
    adaptor: onnx.ModelProto,
    vocab: np.ndarray,
    names: tuple[str, ...],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.toml").write_text(manifest_text)
    onnx.save(detector, str(out / "detector.onnx"))
    onnx.save(adaptor, str(out / "adaptor.onnx"))
    np.save(out / "vocab.npy", vocab)
    (out / "vocab.txt").write_text("".join(f"{n}\n" for n in names))


def summary(out: Path) -> str:
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.1f} KiB" for p in sorted(out.iterdir()) if p.suffix == ".onnx")
    return f"{out}: {sizes}"


def make_png_fixtures(directory: Path, out: Path) -> list[Path]:
    """Lossless PNG copies of every JPEG fixture in ``directory``, as Pillow decodes it (EXIF
    orientation applied), written to ``out``: the Rust-vs-Python agreement test reads these so
    that no JPEG-decoder difference enters the comparison."""
    from PIL import Image, ImageOps

    written = []
    for jpeg in sorted(directory.glob("*.jpg")):
        with Image.open(jpeg) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        out.mkdir(parents=True, exist_ok=True)
        png = out / jpeg.with_suffix(".png").name
        rgb.save(png, format="PNG", optimize=True)
        written.append(png)
        # The same photo already at the input size's long side (Pillow BOX), so that neither
        # pipeline resizes it: the strict agreement test compares on these.
        r = INPUT_SIZE / max(rgb.size)
        small = rgb.resize((int(rgb.width * r + 0.5), int(rgb.height * r + 0.5)), Image.Resampling.BOX)
        png = out / f"{jpeg.stem}-{INPUT_SIZE}.png"
        small.save(png, format="PNG", optimize=True)
        written.append(png)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="parent directory of the bundles")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and vocabulary")
    ap.add_argument(
        "--make-png-fixtures",
        action="store_true",
        help=f"also write PNG copies of the JPEG fixtures in {FIXTURE_DIR.relative_to(REPO_ROOT)} to OUT/{PNG_DIR_NAME}",
    )
    args = ap.parse_args()

    weights = random_weights(args.seed)
    vocab = random_vocab(args.seed)
    minilm = {"kind": "minilm", "name": "all-MiniLM-L6-v2", "dir": "../../encoders/all-MiniLM-L6-v2"}
    source = f"random weights, seed {args.seed}"
    for name, dtype in (("random", np.float32), ("random-fp16", np.float16)):
        precision = "float16" if dtype == np.float16 else "float32"
        text = manifest(
            name,
            f"random-weight DOSOD-shaped detector for tests ({precision}); detects nothing meaningful",
            JOINT_DIM,
            TEXT_DIM,
            minilm,
            source,
        )
        out = args.out / name
        write_bundle(out, text, build_random_detector(weights, dtype), build_mlp_adaptor(weights, dtype), vocab, RANDOM_CLASSES)
        print(summary(out))

    out = args.out / "exact"
    text = manifest(
        "exact",
        "hand-built detector with exactly known outputs (see expected.json)",
        EXACT_DIM,
        EXACT_DIM,
        {"kind": "none"},
        "hand-built",
    )
    write_bundle(out, text, build_exact_detector(), build_identity_adaptor(), np.eye(EXACT_DIM, dtype=np.float32), EXACT_CLASSES)
    (out / "expected.json").write_text(json.dumps(exact_expected(), indent=2) + "\n")
    print(summary(out))

    if args.make_png_fixtures:
        for png in make_png_fixtures(FIXTURE_DIR, args.out / PNG_DIR_NAME):
            print(f"{png}: {png.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
