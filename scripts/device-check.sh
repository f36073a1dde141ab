#!/usr/bin/env bash
# The GPU check (docs/acceleration.md): on a machine with an NVIDIA GPU, a driver, Rust and
# network access to the package registries, one command that
#   1. installs ONNX Runtime for CUDA 13 with cuDNN, and TensorRT's libraries, from PyPI into
#      .venv-gpu (versions pinned below; the C API of onnxruntime-gpu 1.31 is the one ort targets),
#   2. builds dosod with the cuda and tensorrt features,
#   3. prints the precision table of docs/benchmarks.md with CUDA and TensorRT rows added
#      (python -m dosod_tools.bench.precision --gpu-lib ...), for every bundle that exists.
# The INT8 bundles run on TensorRT as QDQ graphs; CUDA runs their QDQ nodes as float.
#   scripts/device-check.sh                 # everything
#   RUNS=10 ONLY=DOSOD-S scripts/device-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_GPU=1.31.1
TENSORRT=10.16.1.11
VENV=${VENV:-.venv-gpu}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  || { echo "no NVIDIA GPU / driver here: nothing to check"; exit 2; }
make setup
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "onnxruntime-gpu[cuda,cudnn]==$ORT_GPU"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "tensorrt-cu13-libs==$TENSORRT" \
  || echo "TensorRT libraries could not be installed: the TensorRT rows will fail"
SITE=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
GPU_LIB=$SITE/onnxruntime/capi/libonnxruntime.so.$ORT_GPU
# CUDA, cuDNN and TensorRT come as wheels: their libraries must be on the loader's path.
LIBS=$( { find "$SITE/nvidia" "$SITE/tensorrt_libs" -name 'lib*.so*' -printf '%h\n' 2>/dev/null || true; } | sort -u | paste -sd:)
export LD_LIBRARY_PATH=${LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cargo build --release --features cuda,tensorrt
# Smoke test: one detection through each provider; a provider that fails makes the script fail
# (after the table), never a CPU fallback.
fail=0
for ep in cuda tensorrt; do
  target/release/dosod --ort-lib "$GPU_LIB" --execution-provider "$ep" detect --model models/demo \
    --classes "dog face, pizza" tests/fixtures/demo-heldout/images/heldout_000000.jpg >/dev/null \
    && echo "$ep: ok" || { echo "$ep: FAILED"; fail=1; }
done
.venv/bin/python -m dosod_tools.bench.precision --gpu-lib "$GPU_LIB" --runs "${RUNS:-30}" ${ONLY:+--only "$ONLY"}
exit "$fail"
