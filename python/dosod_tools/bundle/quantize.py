"""Turns a float32 bundle into an INT8 bundle: static QDQ quantisation with onnxruntime (no torch).

    .venv/bin/python -m dosod_tools.bundle.quantize models/demo --images CALIB_DIR \\
        --vocab VOCAB.npz --out models/demo-int8

* Weights: int8, per output channel (symmetric); activations: uint8 (asymmetric), ranges from
  `--count` calibration images letterboxed exactly as the engine does (dosod_tools.reference).
* The calibration graph also needs a `vocab` input; `--vocab` is a `.npz` from `dosod vocab
  encode` (names + joint). In a DOSOD graph its values never shape a quantisation range (below),
  so any vocabulary used at run time gets the same arithmetic as the one used here. (YOLO-World-v2's
  neck is gated by the vocabulary before its convolutions, so there the ranges follow the
  calibration vocabulary: its INT8 bundle is a speed baseline only.)
* What stays float32 (`--keep-float`; docs/acceleration.md has the figures behind the default):
  - `tail`: every node after the last convolution on each path: the region-text product (MatMul
    with `vocab`, * exp(logit_scale), + bias), the sigmoid, the DFL softmax and the box decoding.
    Quantising it would put the scores on a uint8 grid fitted to the calibration vocabulary.
  - `head`: also the last convolutions (the 1x1 convs that emit region embeddings and box bins).
  - `ends` (default): also the first convolution, the stem on the image; on the narrow demo
    network it carries most of the error (mean score error 0.05 -> 0.012).
  - `none`: everything that can be quantised is.
  The other convolutions, nearly all of the time, run in int8.
* Each Concat shares one uint8 range with its inputs (the union of their calibrated ranges, carried
  through Split, Resize and MaxPool), so ONNX Runtime copies bytes instead of requantising every
  input (QLinearConcat 4.1 -> 1.9 ms on DOSOD-S 640; the score error does not change).
* `adaptor.onnx` stays float32: it runs once per vocabulary, not per frame.
* `model.toml` gains a `[precision]` table (weights, activations, method, what stayed float,
  calibration images and their digest); the rest of the manifest is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator
from onnxruntime.quantization.shape_inference import quant_pre_process

from .. import invocation
from ..reference.detect import letterbox, load_rgb
from .check import bundle_size, run
from .manifest import build_date, toml_text

FLOAT_DESCRIPTION = {
    "ends": "stem convolution, last convolutions, region-text product, sigmoid, DFL and box decoding",
    "head": "last convolutions, region-text product, sigmoid, DFL and box decoding",
    "tail": "region-text product, sigmoid, DFL and box decoding",
    "none": "nothing",
}
# Ops whose uint8 output is their input's bytes moved (ONNX Runtime keeps one scale through them).
MOVES_BYTES = {"Split", "Resize", "MaxPool", "Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path, help="float32 bundle directory")
    ap.add_argument("--images", type=Path, required=True, help="calibration images (a folder; sorted by name)")
    ap.add_argument("--count", type=int, default=128, help="calibration images used (the first N by name)")
    ap.add_argument("--vocab", type=Path, required=True, help="`dosod vocab encode` .npz (names + joint [K, D])")
    ap.add_argument("--out", type=Path, required=True, help="INT8 bundle directory (created)")
    ap.add_argument("--method", choices=sorted(METHODS), default="minmax", help="activation range calibration")
    ap.add_argument(
        "--keep-float", choices=["ends", "head", "tail", "none"], default="ends", help="what stays float32 (see above)"
    )
    ap.add_argument("--name", default=None, help="model.toml [model] name (default: NAME-int8)")
    return ap.parse_args(argv)


def calibration_images(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:count]


def digest(files: list[Path]) -> str:
    """sha256 over the calibration images' bytes, in order (provenance)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def load_joint(path: Path, dim: int) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        if "joint" not in z:
            raise SystemExit(f"{path}: no `joint` array (make it with `dosod vocab encode ... --out FILE.npz`)")
        joint = np.asarray(z["joint"], dtype=np.float32)
    if joint.ndim != 2 or joint.shape[1] != dim or not len(joint):
        raise SystemExit(f"{path}: joint is {joint.shape}; expected [K, {dim}]")
    return joint


class Letterboxed(CalibrationDataReader):
    """Feeds each calibration image, letterboxed as the engine does, with one fixed vocabulary."""

    def __init__(self, files: list[Path], spec: dict, joint: np.ndarray) -> None:
        self.files, self.spec, self.joint = files, spec, joint
        self.at = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.at >= len(self.files):
            return None
        tensor, _ = letterbox(load_rgb(self.files[self.at]), self.spec, np.float32)
        self.at += 1
        if self.at % 32 == 0 or self.at == len(self.files):
            print(f"  calibration {self.at}/{len(self.files)}", flush=True)
        return {"images": tensor, "vocab": self.joint}

    def rewind(self) -> None:
        self.at = 0

    def first_only(self) -> "Letterboxed":
        """A reader of the first image alone (a pass whose ranges are all overridden)."""
        return Letterboxed(self.files[:1], self.spec, self.joint)


def float_nodes(model: onnx.ModelProto, keep: str) -> list[str]:
    """Names of the nodes that stay float32. `tail`: the nodes from which no Conv can be reached
    (everything after the last convolution on every path to an output); `head`: those and the
    last convolutions themselves (the 1x1 convs that emit region embeddings and box
    distributions); `ends`: those and the first convolution (the stem, on the image); `none`:
    nothing."""
    if keep == "none":
        return []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    reaches_conv: dict[int, bool] = {}

    def reaches(node: onnx.NodeProto) -> bool:
        key = id(node)
        if key not in reaches_conv:
            reaches_conv[key] = False  # a DAG: no cycles, this only guards re-entry
            reaches_conv[key] = any(
                nxt.op_type == "Conv" or reaches(nxt) for out in node.output for nxt in consumers.get(out, [])
            )
        return reaches_conv[key]

    tail = [n for n in model.graph.node if n.op_type != "Conv" and not reaches(n)]
    if keep in ("head", "ends"):
        tail += [n for n in model.graph.node if n.op_type == "Conv" and not reaches(n)]
    if keep == "ends":
        tail += [next(n for n in model.graph.node if n.op_type == "Conv")]  # nodes are in topological order
    names = [n.name for n in tail]
    if any(not name for name in names):
        raise SystemExit("the detector graph has unnamed nodes; re-export it")
    return names


def shared_ranges(model: onnx.ModelProto, exclude: set[str], ranges: TensorsData) -> dict[str, list[dict]]:
    """Range overrides (onnxruntime's TensorQuantOverrides) for every calibrated tensor: its own
    range, except that the inputs and output of each quantised Concat, and the tensors that reach
    them through byte-moving ops, all take the union of their ranges. Equal scales and zero points
    turn QLinearConcat into a copy."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for node in model.graph.node:
        if node.name in exclude or node.op_type not in MOVES_BYTES | {"Concat"}:
            continue
        ends = list(node.input) if node.op_type == "Concat" else list(node.input[:1])
        tensors = [t for t in ends + list(node.output) if t in ranges.data]
        for t in tensors[1:]:
            parent[find(t)] = find(tensors[0])

    def bounds(name: str) -> tuple[float, float]:
        lo, hi = ranges.data[name].range_value
        return float(np.min(lo)), float(np.max(hi))

    union: dict[str, tuple[float, float]] = {}
    for name in ranges.data:
        lo, hi = bounds(name)
        root = find(name)
        old = union.get(root, (lo, hi))
        union[root] = (min(old[0], lo), max(old[1], hi))
    return {
        name: [{"rmin": np.float32(union[find(name)][0]), "rmax": np.float32(union[find(name)][1])}]
        for name in ranges.data
    }


def quantize_detector(
    src: Path, dst: Path, reader: Letterboxed, method: str, keep_float: str
) -> list[str]:
    """Writes the QDQ INT8 detector; returns the names of the nodes kept in float32."""
    model = onnx.load(str(src))
    if {i.name for i in model.graph.input} != {"images", "vocab"}:
        raise SystemExit(f"{src}: expected inputs images and vocab (docs/model-bundle.md)")
    if any(i.type.tensor_type.elem_type != onnx.TensorProto.FLOAT for i in model.graph.input):
        raise SystemExit(f"{src}: quantise a float32 bundle (this one is not float32)")
    with tempfile.TemporaryDirectory() as tmp:
        # Constants folded and shapes inferred (onnxruntime's recommended pre-pass; the symbolic
        # shape pass is skipped: the graphs' only symbolic dims are B and K).
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(src, prepared, skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        exclude = float_nodes(graph, keep_float)
        # Calibrated once here, so that the Concat ranges can be shared; every tensor's range is
        # then an override, and quantize_static's own pass (it always runs one) sees one image.
        calibrator = create_calibrator(
            prepared, augmented_model_path=str(Path(tmp) / "augmented.onnx"), calibrate_method=METHODS[method]
        )
        calibrator.collect_data(reader)
        overrides = shared_ranges(graph, set(exclude), calibrator.compute_data())
        del calibrator
        quantize_static(
            prepared,
            dst,
            reader.first_only(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=METHODS[method],
            extra_options={
                "CalibTensorRangeSymmetric": False,
                "WeightSymmetric": True,
                "TensorQuantOverrides": overrides,
            },
        )
    return exclude


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    src: Path = args.bundle
    manifest = tomllib.loads((src / "model.toml").read_text(encoding="utf-8"))
    files = {"detector": "detector.onnx", "adaptor": "adaptor.onnx", **manifest.get("files", {})}
    if manifest.get("precision", {}).get("weights", "float32") != "float32":
        raise SystemExit(f"{src}: already {manifest['precision']['weights']}; quantise the float32 bundle")
    spec = manifest["input"]
    joint = load_joint(args.vocab, int(manifest["embedding"]["dim"]))
    images = calibration_images(args.images, args.count)
    out: Path = args.out
    if out.resolve() == src.resolve():
        raise SystemExit("--out must differ from the source bundle")
    out.mkdir(parents=True, exist_ok=True)
    print(f"quantising {src / files['detector']} with {len(images)} images from {args.images} ({args.method})")
    kept = quantize_detector(
        src / files["detector"], out / files["detector"], Letterboxed(images, spec, joint), args.method, args.keep_float
    )
    shutil.copyfile(src / files["adaptor"], out / files["adaptor"])
    # Files the manifest points at besides the graphs (a default vocabulary's embeddings).
    for key in ("embeddings", "names"):
        rel = manifest.get("default_vocabulary", {}).get(key)
        if rel:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, out / rel)
    # The same encoder directory, relative to the new bundle.
    enc = manifest.get("text_encoder", {}).get("dir")
    if enc and not Path(enc).is_absolute():
        target = (src / enc).resolve()
        manifest["text_encoder"]["dir"] = os.path.relpath(target, out.resolve())

    # The graph runs, and declares what it returns.
    tensor, _ = letterbox(load_rgb(images[0]), spec, np.float32)
    run(out / files["detector"], {"images": tensor, "vocab": joint})

    source_name = manifest["model"]["name"]
    name = args.name or f"{source_name}-int8"
    manifest["model"] = {
        "name": name,
        "description": f"{manifest['model'].get('description', '')} -- INT8 (static QDQ, per-channel weights)".strip(),
    }
    manifest["precision"] = {
        "weights": "int8",
        "activations": "uint8",
        "method": f"onnxruntime static QDQ, per-channel symmetric int8 weights, {args.method} activation ranges",
        "float": FLOAT_DESCRIPTION[args.keep_float],
        "calibration_images": len(images),
        "calibration_source": str(args.images),
        "calibration_sha256": digest(images),
        "calibration_vocabulary": args.vocab.name,
        "source_bundle": source_name,
    }
    provenance = manifest.setdefault("provenance", {})
    provenance["producer"] = invocation(__spec__.name, argv)
    provenance["created"] = build_date().isoformat()
    (out / "model.toml").write_text(toml_text(manifest), encoding="utf-8")
    write_card(out, src, name, args, kept, len(images))
    size = bundle_size(out) / 1e6
    print(f"wrote {out}/ ({size:.1f} MB; {len(kept)} nodes kept float32)")


def write_card(out: Path, src: Path, name: str, args: argparse.Namespace, kept: list[str], count: int) -> None:
    lines = [
        f"# {name}",
        "",
        f"INT8 version of `{src.name}` made by `python -m dosod_tools.bundle.quantize` (static QDQ,",
        "per-channel int8 weights, uint8 activations).",
        "",
        f"* Calibration: the first {count} images of `{args.images}` ({args.method} ranges), vocabulary `{args.vocab.name}`.",
        f"* Float32 ({len(kept)} nodes): {FLOAT_DESCRIPTION[args.keep_float]}.",
        "* `adaptor.onnx` is the float32 adaptor of the source bundle.",
        "* Accuracy and speed against float32: docs/acceleration.md and docs/benchmarks.md.",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
