"""The frame path side by side: `dosod bench` against a Python + OpenCV pipeline on the same bundle,
the same image, the same vocabulary and the same number of ONNX Runtime threads, in one run.

    python -m dosod_tools.bench.frame_path --model models/demo --image tests/fixtures/images/zidane.jpg \\
        [--dosod target/release/dosod] [--runs 200] [--warmup 10] [--threads 2] [--json OUT]
    python -m dosod_tools.bench.frame_path --opencv-stages [--image ...]   # OpenCV's stage times only
    python -m dosod_tools.bench.frame_path --model M --camera tests/fixtures/streams/scenes.mp4 \
        [--read-rate 20] [--seconds 40]     # one camera's frames/s against 1 / bare session.run

The Python pipeline is written as people write it (no tricks that a first version lacks, none
that make it slower than it needs to be): `cv2.imdecode` (BGR) and `cv2.cvtColor` to RGB; the
keep-ratio letterbox with `cv2.resize(..., INTER_AREA)` into a `np.full` canvas; `/ 255` in
float32 and a transpose to NCHW; `session.run`; per-anchor best class, threshold, and class-aware
greedy NMS in numpy (vectorised IoU against the remaining boxes); boxes mapped back. Its
vocabulary goes through the bundle's adaptor once, as dosod's does.

Printed (and with --json, written): per pipeline the median end-to-end ms and its ratio to the
bare `session.run` median measured in the same process, frames/s of the serial loop, and for
dosod also reduced JPEG decoding and the pipelined path (`dosod bench --pipeline`); then the
speed-ups of dosod over Python + OpenCV. The vocabulary is 80 random text embeddings named after
the COCO classes (speed does not depend on the values), written beside --json or to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[3]
COCO_NAMES = ROOT / "configs/vocabularies/coco_class_texts.json"


def median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e3


def timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def write_vocabulary(directory: Path, text_dim: int, classes: int = 80) -> tuple[Path, Path]:
    """`classes` random unit text embeddings (seed 0) and names (COCO's, then `class N`):
    vocab.npy, vocab.txt."""
    names = [entry[0] for entry in json.loads(COCO_NAMES.read_text())][:classes]
    names += [f"class {i}" for i in range(len(names), classes)]
    rng = np.random.default_rng(0)
    text = rng.standard_normal((len(names), text_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    npy, txt = directory / "vocab.npy", directory / "vocab.txt"
    np.save(npy, text)
    txt.write_text("\n".join(names) + "\n")
    return npy, txt


class OpenCvPipeline:
    """The pipeline people write around an exported detector with OpenCV and numpy."""

    def __init__(self, bundle: Path, text: np.ndarray, threads: int, spin: bool) -> None:
        manifest = tomllib.loads((bundle / "model.toml").read_text())
        self.width, self.height = manifest["input"]["width"], manifest["input"]["height"]
        self.pad = manifest["input"].get("pad_value", 114)
        post = manifest.get("postprocess", {})
        self.score_threshold = post.get("score_threshold", 0.25)
        self.iou_threshold = post.get("iou_threshold", 0.65)
        self.max_detections = post.get("max_detections", 100)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # dosod's `[runtime] spin`; onnxruntime's Python default is to spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        files = manifest.get("files", {})
        cpu = ["CPUExecutionProvider"]
        self.detector = ort.InferenceSession(str(bundle / files.get("detector", "detector.onnx")), options, providers=cpu)
        adaptor = ort.InferenceSession(str(bundle / files.get("adaptor", "adaptor.onnx")), options, providers=cpu)
        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        self.image_dtype = dtype[self.detector.get_inputs()[0].type]
        vocab_dtype = dtype[next(i.type for i in self.detector.get_inputs() if i.name == "vocab")]
        text_dtype = dtype[adaptor.get_inputs()[0].type]
        (joint,) = adaptor.run(["joint"], {"text": text.astype(text_dtype)})
        self.vocab = joint.astype(vocab_dtype)

    def preprocess(self, jpeg: np.ndarray) -> tuple[np.ndarray, tuple[float, float, int, int], tuple[int, int]]:
        bgr = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        r = min(self.width / w, self.height / h)
        new_w, new_h = int(w * r), int(h * r)
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        canvas = np.full((self.height, self.width, 3), self.pad, dtype=np.uint8)
        left, top = (self.width - new_w) // 2, (self.height - new_h) // 2
        canvas[top : top + new_h, left : left + new_w] = resized
        tensor = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(tensor, dtype=self.image_dtype), (new_w / w, new_h / h, left, top), (w, h)

    def infer(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, boxes = self.detector.run(["scores", "boxes"], {"images": tensor, "vocab": self.vocab})
        return scores[0].astype(np.float32), boxes[0].astype(np.float32)

    def postprocess(self, scores: np.ndarray, boxes: np.ndarray, geometry, size) -> list[tuple[int, float, list[float]]]:
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(scores)), best]
        keep = best_score >= self.score_threshold
        cls, conf, b = best[keep], best_score[keep], boxes[keep]
        order = np.argsort(-conf)
        cls, conf, b = cls[order], conf[order], b[order]
        # Class-aware NMS: boxes of different classes never overlap after an offset per class.
        offset = b + (cls * 4096.0)[:, None]
        area = (offset[:, 2] - offset[:, 0]) * (offset[:, 3] - offset[:, 1])
        kept = []
        idx = np.arange(len(offset))
        while idx.size and len(kept) < self.max_detections:
            i = idx[0]
            kept.append(i)
            rest = idx[1:]
            xx1 = np.maximum(offset[i, 0], offset[rest, 0])
            yy1 = np.maximum(offset[i, 1], offset[rest, 1])
            xx2 = np.minimum(offset[i, 2], offset[rest, 2])
            yy2 = np.minimum(offset[i, 3], offset[rest, 3])
            inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
            iou = inter / (area[i] + area[rest] - inter + 1e-9)
            idx = rest[iou <= self.iou_threshold]
        sx, sy, left, top = geometry
        w, h = size
        out = []
        for i in kept:
            x1, y1, x2, y2 = b[i]
            out.append(
                (
                    int(cls[i]),
                    float(conf[i]),
                    [
                        float(np.clip((x1 - left) / sx, 0, w)),
                        float(np.clip((y1 - top) / sy, 0, h)),
                        float(np.clip((x2 - left) / sx, 0, w)),
                        float(np.clip((y2 - top) / sy, 0, h)),
                    ],
                )
            )
        return out

    def detect(self, jpeg: np.ndarray):
        tensor, geometry, size = self.preprocess(jpeg)
        scores, boxes = self.infer(tensor)
        return self.postprocess(scores, boxes, geometry, size)


def run_python(bundle: Path, image: Path, text: np.ndarray, threads: int, spin: bool, runs: int, warmup: int) -> dict:
    pipe = OpenCvPipeline(bundle, text, threads, spin)
    jpeg = np.frombuffer(image.read_bytes(), dtype=np.uint8)
    tensor, _, _ = pipe.preprocess(jpeg)
    for _ in range(warmup):
        pipe.detect(jpeg)
        pipe.infer(tensor)
    e2e, bare = [], []
    for _ in range(runs):  # interleaved, as dosod bench does
        start = time.perf_counter()
        pipe.detect(jpeg)
        e2e.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipe.detector.run(["scores", "boxes"], {"images": tensor, "vocab": pipe.vocab})
        bare.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(runs):
        pipe.detect(jpeg)
    serial_fps = runs / (time.perf_counter() - start)
    return {
        "end_to_end_ms": median_ms(e2e),
        "bare_session_run_ms": median_ms(bare),
        "ratio": median_ms(e2e) / median_ms(bare),
        "serial_fps": serial_fps,
        "detections": len(pipe.detect(jpeg)),
    }


def run_dosod(
    dosod: Path, bundle: Path, image: Path, npy: Path, txt: Path, threads: int, spin: bool, runs: int, warmup: int, pipeline: bool = True,
    runtime: list[str] | None = None,
) -> dict:
    """`dosod bench --json` (its report); `runtime`: more global flags (--execution-provider ...)."""
    cmd = [
        str(dosod), "--model", str(bundle), "--intra-threads", str(threads), "--spin", str(spin).lower(), *(runtime or []),
        "bench", "--image", str(image), "--vocab", str(npy), "--names", str(txt), "--runs", str(runs), "--warmup", str(warmup), "--json",
    ] + (["--pipeline"] if pipeline else [])  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def with_text_encoder(bundle: Path, scratch: Path) -> Path:
    """The bundle itself when its text encoder is there; else a copy (links to its ONNX files)
    whose encoder is the tiny random CLIP fixture of the same width (a camera names its classes
    in words, and the generated DOSOD-S/M/L point at a CLIP folder this machine lacks). The
    encoder runs once per vocabulary, never per frame: frame speed is the bundle's."""
    manifest = tomllib.loads((bundle / "model.toml").read_text())
    encoder = manifest.get("text_encoder", {})
    if (bundle / encoder.get("dir", "")).is_dir():
        return bundle
    tiny = ROOT / "tests/fixtures/clip-tiny"
    tiny_dim = tomllib.loads((tiny / "encoder.toml").read_text())["dim"]
    if encoder.get("kind") != "clip" or manifest["embedding"]["text_dim"] != tiny_dim:
        raise SystemExit(f"{bundle}: its text encoder {encoder.get('dir')} is missing")
    scratch.mkdir(parents=True)
    for f in bundle.glob("*.onnx"):
        (scratch / f.name).symlink_to(f.resolve())
    text = (bundle / "model.toml").read_text().replace(f'dir = "{encoder["dir"]}"', f'dir = "{tiny}"')
    text = text.replace(f'name = "{encoder["name"]}"', 'name = "clip-tiny"')
    (scratch / "model.toml").write_text(text)
    return scratch


def run_camera(
    dosod: Path, bundle: Path, clip: Path, npy: Path, txt: Path, threads: int, spin: bool, read_rate: float, seconds: float
) -> dict:
    """One camera through `dosod stream` (a looping file read at `read_rate` x its frame rate,
    full frames, no fps cap): processed frames/s after a warm-up third, against 1 / bare
    session.run from `dosod bench` on a frame of the same size, measured just before."""
    names = ", ".join(line for line in txt.read_text().splitlines() if line)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = with_text_encoder(bundle, Path(tmp) / "bundle")
        frame = Path(tmp) / "frame.png"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-frames:v", "1", str(frame)], check=True)
        bench = run_dosod(dosod, bundle, frame, npy, txt, threads, spin, 100, 10, pipeline=False)
        config = Path(tmp) / "camera.toml"
        config.write_text(
            f"[model]\ndir = {json.dumps(str(bundle))}\n\n[runtime]\nintra_threads = {threads}\nspin = {str(spin).lower()}\n\n"
            f"[[streams]]\nname = \"bench\"\nurl = {json.dumps(str(clip))}\nloop = true\nrealtime = true\n"
            f"read_rate = {read_rate}\nfps = 0\ndetect_width = 0\nclasses = {json.dumps(names)}\n"
        )
        proc = subprocess.Popen(
            [str(dosod), "--config", str(config), "stream", "--status-interval-s", "1"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        samples: list[tuple[float, dict]] = []
        start = time.monotonic()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("["):
                    continue
                samples.append((time.monotonic() - start, json.loads(line)[0]))
                if samples[-1][0] >= seconds:
                    break
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    warm = [s for s in samples if s[0] >= seconds / 3]
    if len(warm) < 2:
        raise SystemExit(f"dosod stream gave {len(samples)} status lines in {seconds} s")
    (t0, first), (t1, last) = warm[0], warm[-1]
    fps = (last["frames_processed"] - first["frames_processed"]) / (t1 - t0)
    input_fps = (last["frames_received"] - first["frames_received"]) / (t1 - t0)
    bare_fps = 1e3 / bench["bare_session_run"]["median"]
    return {
        "input_fps": input_fps,
        "processed_fps": fps,
        "bare_fps": bare_fps,
        "ratio": fps / bare_fps,
        "latency_ms": last.get("latency_ms"),
    }


def opencv_stages(image: Path, runs: int) -> dict[str, float]:
    """OpenCV's (and numpy's) time for the steps criterion measures in Rust, 1 thread and default."""
    jpeg = np.frombuffer(image.read_bytes(), dtype=np.uint8)
    rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    out: dict[str, float] = {}
    default_threads = cv2.getNumThreads()
    for threads in (1, default_threads):
        cv2.setNumThreads(threads)
        tag = f"{threads} thread{'s' if threads > 1 else ''}"
        out[f"imdecode ({tag})"] = median_ms(timed(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), runs, 10))
        for flag, name in ((cv2.IMREAD_REDUCED_COLOR_2, "1/2"), (cv2.IMREAD_REDUCED_COLOR_4, "1/4")):
            out[f"imdecode reduced {name} ({tag})"] = median_ms(timed(lambda f=flag: cv2.imdecode(jpeg, f), runs, 10))
        for side in (320, 640):
            r = min(side / w, side / h)
            size = (int(w * r), int(h * r))
            out[f"resize INTER_AREA to {size[0]}x{size[1]} ({tag})"] = median_ms(
                timed(lambda s=size: cv2.resize(rgb, s, interpolation=cv2.INTER_AREA), runs, 10)
            )

            def letterbox(side=side, size=size):
                resized = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                canvas = np.full((side, side, 3), 114, dtype=np.uint8)
                top, left = (side - size[1]) // 2, (side - size[0]) // 2
                canvas[top : top + size[1], left : left + size[0]] = resized
                return np.ascontiguousarray((canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])

            out[f"letterbox to {side} (resize, canvas, /255, NCHW) ({tag})"] = median_ms(timed(letterbox, runs, 10))
    cv2.setNumThreads(default_threads)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models/demo")
    ap.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/images/zidane.jpg")
    ap.add_argument("--dosod", type=Path, default=ROOT / "target/release/dosod")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads, both pipelines")
    ap.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False, help="intra-op threads spin (dosod's [runtime] spin), both pipelines")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--opencv-stages", action="store_true", help="only OpenCV's stage times")
    ap.add_argument("--camera", type=Path, help="only one camera's frames/s: this clip through dosod stream")
    ap.add_argument("--read-rate", type=float, default=20.0, help="--camera: times the clip's frame rate")
    ap.add_argument("--seconds", type=float, default=40.0, help="--camera: how long")
    args = ap.parse_args()

    if args.camera:
        manifest = tomllib.loads((args.model / "model.toml").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            npy, txt = write_vocabulary(Path(tmp), manifest["embedding"]["text_dim"])
            cam = run_camera(args.dosod, args.model, args.camera, npy, txt, args.threads, args.spin, args.read_rate, args.seconds)
        print(
            f"model {args.model.name}, one camera ({args.camera.name} at {args.read_rate}x, full frames): "
            f"input {cam['input_fps']:.1f} frames/s, processed {cam['processed_fps']:.1f} frames/s, "
            f"1 / bare session.run {cam['bare_fps']:.1f} -> {cam['ratio']:.3f} x (1 / bare); last latency {cam['latency_ms']} ms"
        )
        if args.json:
            args.json.write_text(json.dumps({"camera": cam}, indent=2))
        return

    if args.opencv_stages:
        stages = opencv_stages(args.image, args.runs)
        width = max(map(len, stages))
        for name, value in stages.items():
            print(f"{name:<{width}}  {value:8.3f} ms")
        if args.json:
            args.json.write_text(json.dumps({"opencv_stages": stages}, indent=2))
        return

    manifest = tomllib.loads((args.model / "model.toml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        npy, txt = write_vocabulary(Path(tmp), manifest["embedding"]["text_dim"])
        text = np.load(npy)
        rust = run_dosod(args.dosod, args.model, args.image, npy, txt, args.threads, args.spin, args.runs, args.warmup)
        py = run_python(args.model, args.image, text, args.threads, args.spin, args.runs, args.warmup)
    pipeline = rust["pipeline"]
    reduced = rust.get("reduced")
    rows = [
        ("Python + OpenCV", py["end_to_end_ms"], py["bare_session_run_ms"], py["ratio"], py["serial_fps"], None),
        ("dosod", rust["end_to_end"]["median"], rust["bare_session_run"]["median"], rust["ratio"], pipeline["serial_fps"], pipeline["pipelined_fps"]),
    ]  # fmt: skip
    if reduced:
        rows.append(
            (
                f"dosod, reduced JPEG decoding (to {reduced['decoded']})",
                reduced["end_to_end"]["median"],
                rust["bare_session_run"]["median"],
                reduced["ratio"],
                pipeline["reduced_serial_fps"],
                pipeline["reduced_pipelined_fps"],
            )
        )
    spin = "spinning" if args.spin else "not spinning"
    print(f"model {rust['model']} ({rust['input']}), {rust['classes']} classes, {args.threads} threads ({spin}), image {args.image.name}, {args.runs} runs")
    print("| pipeline | end-to-end median ms | bare session.run ms | end-to-end / bare | serial frames/s | pipelined frames/s |")
    print("|---|---|---|---|---|---|")
    for name, e2e, bare, ratio, serial, piped in rows:
        piped_text = "—" if piped is None else f"{piped:.1f} ({piped * bare / 1e3:.2f} × 1 / bare)"
        print(f"| {name} | {e2e:.2f} | {bare:.2f} | {ratio:.3f} | {serial:.1f} | {piped_text} |")
    speedups = {
        "latency, full decoding": py["end_to_end_ms"] / rust["end_to_end"]["median"],
        "serial frames/s, full decoding": pipeline["serial_fps"] / py["serial_fps"],
        "pipelined frames/s, full decoding": pipeline["pipelined_fps"] / py["serial_fps"],
    }
    if reduced:
        speedups["latency, reduced decoding"] = py["end_to_end_ms"] / reduced["end_to_end"]["median"]
        speedups["pipelined frames/s, reduced decoding"] = pipeline["reduced_pipelined_fps"] / py["serial_fps"]
    print("dosod over Python + OpenCV: " + ", ".join(f"{k} {v:.2f}×" for k, v in speedups.items()))
    if args.json:
        args.json.write_text(json.dumps({"dosod": rust, "python_opencv": py, "speedups": speedups}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
