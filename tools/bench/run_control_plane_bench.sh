#!/usr/bin/env bash
# The learner's memory and threads under a flood, side by side in one run: the same
# duet-learner (waiting for its scorer pool, so no training starts) is loaded by
# bench/control_plane_bench with 10,000 Register attempts and then 1,000 concurrent
# PullWork long-polls, once with --max_rpc_threads=0 (unbounded, the old behaviour) and
# once with the default bound. Prints a table from /proc/<learner>/status samples.
#
# Usage: tools/bench/run_control_plane_bench.sh [BUILD_DIR]   (build control_plane_bench,
# duet-learner and duet first)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$(cd "${1:-$ROOT/build}" && pwd)"
TMP="$(mktemp -d)"
LEARNER_PID=""
cleanup() {
  [[ -n "$LEARNER_PID" ]] && kill -9 "$LEARNER_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# A tiny world and model: the learner needs one to start; the bench never trains.
"$BIN/tools/duet" world make-data --out="$TMP/data" --sft_pairs=64 --rl_prompts=8 --rl_images=8 \
  --eval_per_category=2 --codebook_size=64 > /dev/null
"$BIN/tools/duet" pretrain --data="$TMP/data" --out="$TMP/base" --steps=1 --batch_size=4 \
  --checkpoint_every=1 > /dev/null 2>&1
echo "bench-token" > "$TMP/token"
ulimit -n 65536 2>/dev/null || true

run_one() {  # $1: --max_rpc_threads value
  rm -f "$TMP/port"
  "$BIN/learner/service/duet-learner" --model="$TMP/base/model" --data="$TMP/data" --out="$TMP/run-$1" \
    --address=127.0.0.1:0 --port_file="$TMP/port" --auth_token_file="$TMP/token" --collective=none \
    --rollout_workers=1 --scorer_workers=1 --max_rpc_threads="$1" > "$TMP/learner-$1.log" 2>&1 &
  LEARNER_PID=$!
  for _ in $(seq 1 200); do [[ -s "$TMP/port" ]] && break; sleep 0.05; done
  [[ -s "$TMP/port" ]] || { cat "$TMP/learner-$1.log"; exit 1; }
  "$BIN/tools/bench/control_plane_bench" --learner="127.0.0.1:$(cat "$TMP/port")" --auth_token=bench-token \
    --learner_pid="$LEARNER_PID" --registrations=10000 --polls=1000 --poll_wait_ms=5000 \
    > "$TMP/result-$1.json"
  kill -9 "$LEARNER_PID"; wait "$LEARNER_PID" 2>/dev/null || true; LEARNER_PID=""
}
run_one 0
run_one 256
python3 - "$TMP/result-0.json" "$TMP/result-256.json" <<'PY'
import json, sys
rows = [("unbounded (--max_rpc_threads=0)", json.load(open(sys.argv[1]))),
        ("bounded (--max_rpc_threads=256, default)", json.load(open(sys.argv[2])))]
print("| learner | idle threads / RSS | after 10,000 registrations | during 1,000 long-polls | after | Register codes | PullWork codes |")
print("|---|---|---|---|---|---|---|")
fmt = lambda s: "%d / %.0f MiB" % (s["threads"], s["rss_mib"])
for name, r in rows:
    print("| %s | %s | %s | %s | %s | %s | %s |" % (name, fmt(r["learner_idle"]), fmt(r["after_registrations"]),
          fmt(r["during_polls"]), fmt(r["after_polls"]), r["register_codes"], r["poll_codes"]))
PY
