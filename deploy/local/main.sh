#!/usr/bin/env bash
# Duet's main job on one machine: installs dependencies if missing, builds, makes the
# Shapes world data (once), pretrains the tiny base model (once; an interrupted run
# resumes), then runs dual self-reward RL with `duet local`: a learner, 2 rollout and
# 1 scorer processes on loopback, the default recipe (150 GRPO steps training both
# directions, judged by the frozen base model), ShapesEval before and after, and a report
# folder whose summary.md gives both directions. About 20 minutes from a built tree on a
# 2-core AMD EPYC machine (data 5 s, pretraining 7 min 48 s, RL 766 s, evaluations ~1 min).
#   DUET_OUT     output root (default out): data/, base/model, run/report/summary.md
#   DUET_RECIPE  RL recipe (default configs/recipes/default.yaml; configs/recipes/quick.yaml
#                is a 10-step first look)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/build.sh
BUILD_DIR="${DUET_BUILD_DIR:-build}"
OUT="${DUET_OUT:-out}"
RECIPE="${DUET_RECIPE:-configs/recipes/default.yaml}"
DUET="$BUILD_DIR/tools/duet"
if [[ ! -f "$OUT/data/manifest.json" ]]; then
  "$DUET" world make-data --out="$OUT/data"
fi
if [[ ! -f "$OUT/base/model/model.safetensors" ]]; then
  "$DUET" pretrain --data="$OUT/data" --out="$OUT/base"
fi
"$DUET" eval --model="$OUT/base/model" --data="$OUT/data" --report_dir="$OUT/base/eval"
# --overwrite: a rerun repeats the RL run in out/run (duet local refuses a folder that holds
# a run without it); the data and the base model are reused.
"$DUET" local --recipe="$RECIPE" --model="$OUT/base/model" --data="$OUT/data" --out="$OUT/run" --overwrite
