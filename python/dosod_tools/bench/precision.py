"""One table of precisions and execution providers, measured in one run with `dosod bench`.

    python -m dosod_tools.bench.precision [--dosod target/release/dosod] [--runs 20] [--json OUT]

Rows: each bundle that exists of DOSOD-N (models/demo, 320), DOSOD-S/M/L and YOLO-World-v2-S
(models/generated/, 640) x {CPU EP float32, CPU EP INT8, OpenVINO float32, OpenVINO INT8,
CPU EP float16} (with --gpu-lib also CUDA and TensorRT x {float32, float16, INT8}), and DOSOD-S float16 once more with `--graph-optimization layout` (what ort's
`Level3` gives) next to the default `all`. Columns: end-to-end median ms and bare
`session.run` median ms (`dosod bench`, interleaved), frames/s of the pipelined path
(`--pipeline`), bundle MB (detector + adaptor). Then DOSOD-S / YOLO-World-v2-S per column and
INT8 / float32 speed-ups. The same image (1280x720 zidane.jpg), 80 random text embeddings
(`--classes`), and
threads (the physical cores) for every row.

Bundles: `make int8-bundles` (the INT8 ones), scripts/make_family_bundles.sh (DOSOD-S/M/L),
`python -m dosod_tools.model.export_yolo_world` (YOLO-World-v2-S); the OpenVINO library from
`make openvino-lib` (.venv-openvino). A missing bundle or library leaves its rows out, said so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import tomllib
from pathlib import Path

from .frame_path import ROOT, run_dosod, write_vocabulary

OPENVINO_LIB = ROOT / ".venv-openvino/onnxruntime/capi/libonnxruntime.so.1.24.1"
GEN = ROOT / "models/generated"

# (label, input side, float32 bundle, INT8 bundle, float16 bundle)
FAMILY = [
    ("DOSOD-N (demo)", 320, ROOT / "models/demo", ROOT / "models/demo-int8", None),
    ("DOSOD-S", 640, GEN / "dosod-s", GEN / "dosod-s-int8", GEN / "dosod-s-fp16"),
    ("DOSOD-M", 640, GEN / "dosod-m", GEN / "dosod-m-int8", GEN / "dosod-m-fp16"),
    ("DOSOD-L", 640, GEN / "dosod-l", GEN / "dosod-l-int8", GEN / "dosod-l-fp16"),
    ("YOLO-World-v2-S", 640, GEN / "yolo-world-v2-s", GEN / "yolo-world-v2-s-int8", GEN / "yolo-world-v2-s-fp16"),
]


def bundle_mb(bundle: Path) -> float:
    files = tomllib.loads((bundle / "model.toml").read_text()).get("files", {})
    names = [files.get("detector", "detector.onnx"), files.get("adaptor", "adaptor.onnx")]
    return sum((bundle / n).stat().st_size for n in names) / 1e6


def configurations(openvino: bool, gpu_lib: Path | None) -> list[tuple[str, str, int, Path, list[str]]]:
    """(model, configuration, side, bundle, global flags) for every row whose parts exist."""
    ov = ["--ort-lib", str(OPENVINO_LIB), "--execution-provider", "openvino"]
    # (execution provider, its flags, which precisions it runs)
    providers: list[tuple[str, list[str], tuple[str, ...]]] = [("CPU EP", [], ("fp32", "INT8"))]
    if openvino:
        providers.append(("OpenVINO", ov, ("fp32", "INT8")))
    else:
        print(f"  skipped the OpenVINO rows: {OPENVINO_LIB.relative_to(ROOT)} does not exist (make openvino-lib)")
    providers.append(("CPU EP", [], ("fp16",)))
    if gpu_lib:
        for ep in ("cuda", "tensorrt"):
            flags = ["--ort-lib", str(gpu_lib), "--execution-provider", ep]
            providers.append(("CUDA" if ep == "cuda" else "TensorRT", flags, ("fp32", "fp16", "INT8")))
    rows = []
    for label, side, fp32, int8, fp16 in FAMILY:
        bundles = {"fp32": fp32, "INT8": int8, "fp16": fp16}
        wanted = [(f"{ep} {p}", bundles[p], flags) for ep, flags, precisions in providers for p in precisions]
        if label == "DOSOD-S":
            wanted.append(("CPU EP fp16, optimisation `layout`", fp16, ["--graph-optimization", "layout"]))
        for name, bundle, flags in wanted:
            if bundle is None:
                continue
            if not (bundle / "model.toml").is_file():
                print(f"  skipped {label} {name}: {bundle.relative_to(ROOT)} does not exist")
            else:
                rows.append((label, name, side, bundle, flags))
    return rows


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dosod", type=Path, default=ROOT / "target/release/dosod")
    ap.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/images/zidane.jpg")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per row (and pipelined frames)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads; 0: physical cores")
    ap.add_argument("--classes", type=int, default=80, help="vocabulary size (random text embeddings)")
    ap.add_argument("--only", default="", help="comma-separated model labels to keep (e.g. DOSOD-S,YOLO-World-v2-S)")
    ap.add_argument("--json", type=Path, default=None, help="also write every report here")
    ap.add_argument(
        "--gpu-lib", type=Path, default=None, help="libonnxruntime.so of onnxruntime-gpu: adds CUDA and TensorRT rows"
    )
    args = ap.parse_args(argv)

    rows = configurations(OPENVINO_LIB.is_file(), args.gpu_lib)
    if args.only:
        keep = {s.strip() for s in args.only.split(",")}
        rows = [r for r in rows if r[0] in keep]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        vocab: dict[int, tuple[Path, Path]] = {}
        for label, name, side, bundle, flags in rows:
            text_dim = tomllib.loads((bundle / "model.toml").read_text())["embedding"]["text_dim"]
            if text_dim not in vocab:
                d = Path(tmp) / str(text_dim)
                d.mkdir()
                vocab[text_dim] = write_vocabulary(d, text_dim, args.classes)
            npy, txt = vocab[text_dim]
            print(f"  {label} {name} ...", flush=True)
            try:
                report = run_dosod(
                    args.dosod, bundle, args.image, npy, txt, args.threads, False, args.runs, args.warmup, True, flags
                )
            except subprocess.CalledProcessError as e:
                # One provider that cannot run (a GPU library missing) costs its row, not the table.
                print(f"  {label} {name}: FAILED ({(e.stderr or '').strip()[-300:]})", flush=True)
                continue
            results.append(
                {
                    "model": label,
                    "configuration": name,
                    "input": side,
                    "bundle": str(bundle.relative_to(ROOT)),
                    "precision": report["precision"],
                    "end_to_end_ms": report["end_to_end"]["median"],
                    "bare_ms": report["bare_session_run"]["median"],
                    "pipelined_fps": report["pipeline"]["pipelined_fps"],
                    "bundle_mb": bundle_mb(bundle),
                    "threads": report["threads"],
                }
            )
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    threads = results[0]["threads"] if results else "?"
    print(f"\n{args.image.name}, {threads} threads, {args.classes} classes, {args.runs} runs per row (medians)\n")
    print("| model | input | configuration | end-to-end ms | bare `session.run` ms | frames/s (pipelined) | bundle MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['input']} | {r['configuration']} | {r['end_to_end_ms']:.1f} | {r['bare_ms']:.1f} "
            f"| {r['pipelined_fps']:.1f} | {r['bundle_mb']:.1f} |"
        )
    at = {(r["model"], r["configuration"]): r for r in results}
    print("\nINT8 speed-up over fp32 (end-to-end; bare):")
    for model in dict.fromkeys(r["model"] for r in results):
        for ep in ("CPU EP", "OpenVINO", "CUDA", "TensorRT"):
            a, b = at.get((model, f"{ep} fp32")), at.get((model, f"{ep} INT8"))
            if a and b:
                print(
                    f"  {model}, {ep}: {ratio(a['end_to_end_ms'], b['end_to_end_ms'])}x; "
                    f"{ratio(a['bare_ms'], b['bare_ms'])}x"
                )
    print("\nDOSOD-S / YOLO-World-v2-S (YOLO-World's time / DOSOD's: how much faster DOSOD-S is):")
    for conf in dict.fromkeys(r["configuration"] for r in results):
        d, y = at.get(("DOSOD-S", conf)), at.get(("YOLO-World-v2-S", conf))
        if d and y:
            print(
                f"  {conf}: end-to-end {ratio(y['end_to_end_ms'], d['end_to_end_ms'])}x, "
                f"bare {ratio(y['bare_ms'], d['bare_ms'])}x, frames/s {ratio(d['pipelined_fps'], y['pipelined_fps'])}x"
            )


if __name__ == "__main__":
    main()
