#!/usr/bin/env bash
# (Re)generates random-weight DOSOD-S/M/L bundles for benchmarking, under models/generated/
# (gitignored): for each size a synthetic checkpoint with the official structure, a baked
# 80-class COCO vocabulary (random text embeddings through the checkpoint's adaptor), and the
# float32 and float16 bundles at 640x640:
#   models/generated/dosod-{s,m,l}/        detector.onnx, detector_baked.onnx (80 classes), adaptor.onnx
#   models/generated/dosod-{s,m,l}-fp16/   the same in float16
#   models/generated/checkpoints/          dosod_{size}_random.pth, coco80_{size}.npz
# Dev-time only (needs torch and this package: python/requirements/dev.txt, then
# `pip install --no-deps -e ./python`): PY defaults to /work/devvenv/bin/python.
#
#   scripts/make_family_bundles.sh            # s m l
#   scripts/make_family_bundles.sh s          # just one size
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/devvenv/bin/python}
SIZES=("${@:-s m l}")
read -r -a SIZES <<<"${SIZES[*]}"
OUT=models/generated
CK=$OUT/checkpoints
mkdir -p "$CK"
for size in "${SIZES[@]}"; do
  ckpt=$CK/dosod_${size}_random.pth
  vocab=$CK/coco80_${size}.npz
  "$PY" -m dosod_tools.fixtures.make_synthetic_checkpoint --size "$size" --seed 0 --out "$ckpt"
  "$PY" -m dosod_tools.fixtures.make_bake_vocab "$ckpt" --size "$size" \
    --names configs/vocabularies/coco_class_texts.json --random-text 0 --out "$vocab"
  "$PY" -m dosod_tools.model.export_dosod "$ckpt" --size "$size" --input-size 640 --bake "$vocab" \
    --name "dosod-$size-random" --out "$OUT/dosod-$size"
  "$PY" -m dosod_tools.model.export_dosod "$ckpt" --size "$size" --input-size 640 --bake "$vocab" --fp16 \
    --name "dosod-$size-random-fp16" --out "$OUT/dosod-$size-fp16"
done
du -sh "$OUT"/dosod-*
