#!/usr/bin/env bash
# Distributed overhead and step-time breakdown, both measured in this run:
#   in-process: `duet rl` (rollout, scoring and update call each other directly), and
#   distributed: `duet local` (learner + 2 rollout + 1 scorer processes, gRPC, Gloo
#   broadcast every step), same model, data, recipe and number of steps.
# Prints mean seconds per step by phase (first step excluded) and the overhead.
#
# Usage: tools/bench/run_overhead_bench.sh [BUILD_DIR] [MODEL_DIR] [DATA_DIR] [STEPS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${1:-build}"
MODEL="${2:-out/base/model}"
DATA="${3:-out/data}"
STEPS="${4:-12}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/recipe.yaml" <<YAML
steps: $STEPS
directions: joint
frozen_scorer: false
generation_inputs: 16
understanding_inputs: 8
k: 8
checkpoint_every: 1000
YAML
"$BUILD_DIR/tools/duet" rl --model="$MODEL" --data="$DATA" --out="$TMP/inproc" --rl_steps="$STEPS" \
  --gen_inputs=16 --und_inputs=8 --k=8 --limit=1 > /dev/null 2>&1
"$BUILD_DIR/tools/duet" local --recipe="$TMP/recipe.yaml" --model="$MODEL" --data="$DATA" \
  --out="$TMP/dist" --limit=1 > /dev/null 2>&1
/usr/bin/python3 - "$TMP/inproc/rl_report.json" "$TMP/dist/metrics.jsonl" <<'PY'
import json, sys
inproc = json.load(open(sys.argv[1]))["curve"][1:]
dist = [json.loads(l) for l in open(sys.argv[2])][1:]
def mean(rows, key):
    return sum(r.get(key, 0.0) for r in rows) / len(rows)
print("| phase (s/step) | in-process | distributed |")
print("|---|---|---|")
for key, name in [("rollout_s", "rollout"), ("score_s", "scoring"), ("update_s", "learner update"), ("sync_s", "weight broadcast")]:
    print(f"| {name} | {mean(inproc, key):.3f} | {mean(dist, key):.3f} |")
ti = sum(mean(inproc, k) for k in ("rollout_s", "score_s", "update_s"))
td = sum(mean(dist, k) for k in ("rollout_s", "score_s", "update_s", "sync_s"))
print(f"| **step** | **{ti:.3f}** | **{td:.3f}** |")
print(f"\ndistributed / in-process = {td / ti:.2f} ({100 * (td / ti - 1):+.0f}%)")
samples = inproc[0]["rollout_s"] and 16 * 8
print(f"scoring cost per sample / generation cost per sample (in-process, both directions): {mean(inproc, 'score_s') / mean(inproc, 'rollout_s'):.3f}")
PY
