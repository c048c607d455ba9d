#!/usr/bin/env bash
# Duet's main job on one machine. Installs dependencies if missing, builds, makes the
# Shapes world data (once), pretrains the tiny base model (resumes if interrupted; skipped
# when the model exists) and prints its ShapesEval report.
# Outputs go to ${DUET_OUT:-out}: data/, base/model, base/eval/{report.json,gallery.png}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/build.sh
BUILD_DIR="${DUET_BUILD_DIR:-build}"
OUT="${DUET_OUT:-out}"
DUET="$BUILD_DIR/tools/duet"
if [[ ! -f "$OUT/data/manifest.json" ]]; then
  "$DUET" world make-data --out="$OUT/data"
fi
if [[ ! -f "$OUT/base/model/model.safetensors" ]]; then
  "$DUET" pretrain --data="$OUT/data" --out="$OUT/base" "$@"
fi
"$DUET" eval --model="$OUT/base/model" --data="$OUT/data" --report_dir="$OUT/base/eval"
