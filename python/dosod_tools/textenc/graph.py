"""Build a transformer text-encoder ONNX graph (opset 17) from numpy weights.

One builder serves both encoders of docs/model-bundle.md ("Text encoders"):

* BERT / MiniLM (sentence-transformers): post-LN layers, erf GELU, padding-only attention
  mask, embedding LayerNorm, no final norm or projection;
* CLIP text tower: pre-LN layers, quick GELU, causal mask combined with the padding mask,
  final LayerNorm and the text projection applied to every token.

The graph takes `input_ids` and `attention_mask` (int64 [B, S], both dims dynamic) and returns
`token_embeddings` (float32 [B, S, T]); pooling and L2 normalisation are left to the caller.
Weights follow the PyTorch `nn.Linear` convention (`weight` is [out, in]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
_MASK_VALUE = float(np.finfo(np.float32).min)


@dataclass
class Linear:
    """An affine map y = x @ weight.T + bias; `weight` is [out, in]."""

    weight: np.ndarray
    bias: np.ndarray | None = None


@dataclass
class Norm:
    """LayerNorm over the last axis."""

    weight: np.ndarray
    bias: np.ndarray
    eps: float


@dataclass
class EncoderLayer:
    """One transformer layer. `attn_norm`/`mlp_norm` are applied after the residual add
    (post-LN, BERT) or before the sub-block (pre-LN, CLIP), per `TransformerSpec.norm_first`."""

    query: Linear
    key: Linear
    value: Linear
    attn_out: Linear
    attn_norm: Norm
    fc1: Linear
    fc2: Linear
    mlp_norm: Norm


@dataclass
class TransformerSpec:
    """Everything needed to emit a text-encoder graph."""

    token_embedding: np.ndarray  # [V, H]
    position_embedding: np.ndarray  # [P, H]; rows 0..S-1 are added (absolute positions)
    layers: list[EncoderLayer]
    num_heads: int
    norm_first: bool  # True: pre-LN (CLIP); False: post-LN (BERT)
    activation: Literal["gelu", "quick_gelu"]
    causal: bool
    embedding_norm: Norm | None = None  # BERT: LayerNorm after the embedding sum
    final_norm: Norm | None = None  # CLIP: final_layer_norm
    projection: Linear | None = None  # CLIP: text_projection, applied per token

    @property
    def hidden(self) -> int:
        return int(self.token_embedding.shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.projection.weight.shape[0]) if self.projection is not None else self.hidden


class _Builder:
    """Accumulates nodes and initialisers; names values automatically."""

    def __init__(self, weight_dtype: np.dtype) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.weight_dtype = np.dtype(weight_dtype)
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: object) -> str:
        out = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n_{out}", **attrs))
        return out

    def constant(self, value: np.ndarray, hint: str) -> str:
        """An exact initialiser (index tensors, shapes, scalars) stored as given."""
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, value: np.ndarray, hint: str) -> str:
        """A float model parameter, stored in `weight_dtype` and cast to float32 if narrower."""
        arr = np.ascontiguousarray(value, dtype=self.weight_dtype)
        name = self.constant(arr, hint)
        if self.weight_dtype != np.float32:
            return self.op("Cast", [name], hint=f"{hint}_f32", to=TensorProto.FLOAT)
        return name

    # --- layers -------------------------------------------------------------------------
    def linear(self, x: str, lin: Linear, hint: str) -> str:
        y = self.op("MatMul", [x, self.weight(lin.weight.T, f"{hint}_w")], hint=hint)
        if lin.bias is not None:
            y = self.op("Add", [y, self.weight(lin.bias, f"{hint}_b")], hint=hint)
        return y

    def layer_norm(self, x: str, norm: Norm, hint: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.weight(norm.weight, f"{hint}_g"), self.weight(norm.bias, f"{hint}_b")],
            hint=hint,
            axis=-1,
            epsilon=float(norm.eps),
        )

    def activation(self, x: str, kind: str) -> str:
        if kind == "gelu":  # 0.5 * x * (1 + erf(x / sqrt(2)))
            e = self.op("Erf", [self.op("Div", [x, self.constant(np.float32(np.sqrt(2.0)), "sqrt2")])])
            e = self.op("Add", [e, self.constant(np.float32(1.0), "one")])
            return self.op("Mul", [self.op("Mul", [x, e]), self.constant(np.float32(0.5), "half")], hint="gelu")
        if kind == "quick_gelu":  # x * sigmoid(1.702 x)
            s = self.op("Sigmoid", [self.op("Mul", [x, self.constant(np.float32(1.702), "k1702")])])
            return self.op("Mul", [x, s], hint="quick_gelu")
        raise ValueError(f"unknown activation {kind!r}")

    def attention(self, x: str, mask: str, layer: EncoderLayer, num_heads: int, hidden: int, hint: str) -> str:
        head_dim = hidden // num_heads
        split = self.constant(np.array([0, 0, num_heads, head_dim], dtype=np.int64), "split_heads")
        merge = self.constant(np.array([0, 0, hidden], dtype=np.int64), "merge_heads")

        def heads(lin: Linear, part: str, perm: list[int]) -> str:
            y = self.op("Reshape", [self.linear(x, lin, f"{hint}_{part}"), split])
            return self.op("Transpose", [y], perm=perm)

        q = heads(layer.query, "q", [0, 2, 1, 3])  # [B, h, S, d]
        k = heads(layer.key, "k", [0, 2, 3, 1])  # [B, h, d, S]
        v = heads(layer.value, "v", [0, 2, 1, 3])  # [B, h, S, d]
        scores = self.op("MatMul", [q, k])
        scores = self.op("Mul", [scores, self.constant(np.float32(head_dim**-0.5), "scale")])
        probs = self.op("Softmax", [self.op("Add", [scores, mask])], axis=-1)
        ctx = self.op("Transpose", [self.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, merge])
        return self.linear(ctx, layer.attn_out, f"{hint}_o")

    def mlp(self, x: str, layer: EncoderLayer, kind: str, hint: str) -> str:
        h = self.activation(self.linear(x, layer.fc1, f"{hint}_fc1"), kind)
        return self.linear(h, layer.fc2, f"{hint}_fc2")


def build_encoder_graph(
    spec: TransformerSpec, graph_name: str, weight_dtype: np.dtype = np.float32
) -> onnx.ModelProto:
    """Emit the ONNX model for `spec`. `weight_dtype` float16 halves the file size; the graph
    casts every parameter back to float32, so all activations and the output stay float32."""
    b = _Builder(weight_dtype)
    hidden = spec.hidden

    # Embeddings: token rows + absolute position rows 0..S-1.
    seq_len = b.op("Shape", ["input_ids"], hint="seq_len", start=1, end=2)  # [1]
    x = b.op("Gather", [b.weight(spec.token_embedding, "token_embedding"), "input_ids"], axis=0)
    table = b.weight(spec.position_embedding, "position_embedding")
    zero = b.constant(np.array([0], np.int64), "zero1")
    positions = b.op("Slice", [table, zero, seq_len, zero])  # rows 0..S-1 along axis 0
    x = b.op("Add", [x, positions], hint="embeddings")
    if spec.embedding_norm is not None:
        x = b.layer_norm(x, spec.embedding_norm, "embeddings_ln")

    # Additive attention mask: 0 where a query may attend to a key, float32 min elsewhere.
    keep = b.op("Cast", ["attention_mask"], to=TensorProto.BOOL)
    axes = b.constant(np.array([1, 2], np.int64), "axes12")
    keep = b.op("Unsqueeze", [keep, axes], hint="keep_keys")  # [B, 1, 1, S]
    if spec.causal:
        start, step = b.constant(np.int64(0), "i0"), b.constant(np.int64(1), "i1")
        idx = b.op("Range", [start, b.op("Squeeze", [seq_len]), step])
        rows = b.op("Unsqueeze", [idx, b.constant(np.array([1], np.int64), "axes1")])  # [S, 1] query
        cols = b.op("Unsqueeze", [idx, b.constant(np.array([0], np.int64), "axes0")])  # [1, S] key
        keep = b.op("And", [keep, b.op("LessOrEqual", [cols, rows])], hint="keep_causal")  # [B,1,S,S]
    open_, closed = b.constant(np.float32(0.0), "zero"), b.constant(np.float32(_MASK_VALUE), "masked")
    mask = b.op("Where", [keep, open_, closed], hint="mask")

    heads = spec.num_heads
    for i, layer in enumerate(spec.layers):
        hint = f"l{i}"
        if spec.norm_first:  # x + attn(LN(x)); x + mlp(LN(x))
            h = b.attention(b.layer_norm(x, layer.attn_norm, f"{hint}_ln1"), mask, layer, heads, hidden, hint)
            x = b.op("Add", [x, h])
            h = b.mlp(b.layer_norm(x, layer.mlp_norm, f"{hint}_ln2"), layer, spec.activation, hint)
            x = b.op("Add", [x, h])
        else:  # LN(x + attn(x)); LN(x + mlp(x))
            h = b.attention(x, mask, layer, heads, hidden, hint)
            x = b.layer_norm(b.op("Add", [x, h]), layer.attn_norm, f"{hint}_ln1")
            h = b.mlp(x, layer, spec.activation, hint)
            x = b.layer_norm(b.op("Add", [x, h]), layer.mlp_norm, f"{hint}_ln2")

    if spec.final_norm is not None:
        x = b.layer_norm(x, spec.final_norm, "final_ln")
    if spec.projection is not None:
        x = b.linear(x, spec.projection, "projection")
    b.nodes.append(helper.make_node("Identity", [x], ["token_embeddings"], name="n_token_embeddings"))

    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        b.nodes,
        graph_name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims)],
        [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, [*dims, spec.output_dim])],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="dosod-textenc")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
