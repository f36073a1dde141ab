"""The set-up tools import without torch: only dosod_tools.model (but its config), demo.train and the checks that run the PyTorch model need it."""

from __future__ import annotations

import subprocess
import sys

TORCH_FREE = [
    "dosod_tools",
    "dosod_tools.bundle",
    "dosod_tools.bundle.manifest",
    "dosod_tools.bundle.check",
    "dosod_tools.model.config",
    "dosod_tools.textenc.build_text_encoder",
    "dosod_tools.textenc.build_clip_tokenizer",
    "dosod_tools.textenc.export_clip_text",
    "dosod_tools.textenc.minilm_text",
    "dosod_tools.reference.detect",
    "dosod_tools.reference.coco",
    "dosod_tools.fixtures.make_test_bundles",
    "dosod_tools.fixtures.make_odd_images",
    "dosod_tools.fixtures.make_stream_clip",
    "dosod_tools.demo.emoji_classes",
    "dosod_tools.demo.emoji_data",
    "dosod_tools.bench.frame_path",
    "dosod_tools.bench.precision",
    "dosod_tools.bundle.quantize",
    "dosod_tools.checks.quantization",
]


def test_set_up_tools_do_not_import_torch() -> None:
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in TORCH_FREE)
    code += "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
