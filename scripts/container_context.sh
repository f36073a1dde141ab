#!/usr/bin/env bash
# Lays out what `docker build --build-arg ARTIFACTS=prebuilt` takes from the context, in
# .container/ (gitignored): the release binary (debug info stripped), the ONNX Runtime library of
# .venv and the MiniLM text encoder, at the paths the image uses. Needs `make build encoders`.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 | head -n1)
test -x target/release/dosod || { echo "target/release/dosod missing: make build"; exit 1; }
test -d models/encoders/all-MiniLM-L6-v2 || { echo "models/encoders missing: make encoders"; exit 1; }
rm -rf .container
mkdir -p .container/usr/local/bin .container/usr/local/lib .container/srv/dosod/models/encoders
objcopy --strip-debug target/release/dosod .container/usr/local/bin/dosod
cp "$lib" .container/usr/local/lib/libonnxruntime.so.1.32.0
cp -r models/encoders/all-MiniLM-L6-v2 .container/srv/dosod/models/encoders/
du -sh .container
