"""ONNX Runtime helpers the exporters use to check the graphs they wrote, and bundle sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A quiet CPU EP session; `threads`: intra-op threads (0: ONNX Runtime's default)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Runs the graph once; fails if an output contradicts a static dimension it declares."""
    sess = session(path)
    results = sess.run(None, feeds)
    for meta, value in zip(sess.get_outputs(), results):
        declared = meta.shape
        ok = len(declared) == value.ndim and all(
            not isinstance(d, int) or d == v for d, v in zip(declared, value.shape)
        )
        if not ok:
            raise ValueError(
                f"{path}: output {meta.name} declared {declared}, ONNX Runtime returned {list(value.shape)}"
            )
    return results


def bundle_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
