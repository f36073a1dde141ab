#!/usr/bin/env bash
# INT8 bundles (docs/acceleration.md) with dosod_tools.bundle.quantize (onnxruntime, no torch):
#   models/demo-int8 (committed)           from models/demo
#   models/generated/<name>-int8           from each float32 bundle of models/generated/ named
#                                          on the command line that exists (default: dosod-s
#                                          dosod-m dosod-l yolo-world-v2-s)
# Calibration: 128 synthetic training scenes (`emoji_data generate --split train --seed 0`,
# never the held-out split that `make eval-demo` scores), letterboxed as the engine does. The
# calibration vocabulary is the classes of those scenes for the demo, and 80 random text
# embeddings through the bundle's adaptor for the others. In DOSOD graphs it shapes no range (the
# region-text product stays float32), it only has to make the graph run; YOLO-World-v2's neck is
# gated by the vocabulary, so its INT8 ranges follow the calibration vocabulary (a speed baseline only).
#   scripts/make_int8_bundles.sh                  # demo and every generated bundle there is
#   scripts/make_int8_bundles.sh dosod-s          # demo and one generated bundle
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=${BIN:-target/release/dosod}
CALIB=data/calib/emoji-train
COUNT=${COUNT:-128}
GENERATED=("${@:-dosod-s dosod-m dosod-l yolo-world-v2-s}")
read -r -a GENERATED <<<"${GENERATED[*]}"

test -f "$CALIB/annotations.json" \
  || "$PY" -m dosod_tools.demo.emoji_data generate --split train --count "$COUNT" --seed 0 --out "$CALIB"
"$PY" -c 'import json, sys; print("\n".join(sorted({c["name"] for c in json.load(open(sys.argv[1]))["categories"]})))' \
  "$CALIB/annotations.json" >"$CALIB/classes.txt"
"$BIN" --model models/demo vocab encode --file "$CALIB/classes.txt" --out "$CALIB/demo-classes.npz" >/dev/null
"$PY" -m dosod_tools.bundle.quantize models/demo --images "$CALIB" --count "$COUNT" \
  --vocab "$CALIB/demo-classes.npz" --out models/demo-int8

for name in "${GENERATED[@]}"; do
  src=models/generated/$name
  if [ ! -f "$src/model.toml" ]; then
    echo "skipped $name: $src does not exist (scripts/make_family_bundles.sh, export_yolo_world)"
    continue
  fi
  vocab=$CALIB/random80-$name.npz
  "$PY" - "$src" "$vocab" <<'PY'
import sys, tomllib
import numpy as np, onnxruntime as ort
src, out = sys.argv[1], sys.argv[2]
t = tomllib.load(open(f"{src}/model.toml", "rb"))["embedding"]["text_dim"]
text = np.random.default_rng(0).standard_normal((80, t)).astype(np.float32)
text /= np.linalg.norm(text, axis=1, keepdims=True)
joint = ort.InferenceSession(f"{src}/adaptor.onnx", providers=["CPUExecutionProvider"]).run(None, {"text": text})[0]
np.savez(out, names=np.array([f"class {i}" for i in range(80)]), joint=joint.astype(np.float32))
PY
  "$PY" -m dosod_tools.bundle.quantize "$src" --images "$CALIB" --count "$COUNT" --vocab "$vocab" --out "$src-int8"
done
