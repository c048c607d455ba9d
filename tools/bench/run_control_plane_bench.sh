#!/usr/bin/env bash
# The learner's memory and threads under a flood, side by side in one run: the same
# duet-learner (waiting for its scorer pool, so no training starts) is loaded by
# tools/bench/control_plane_bench with 10,000 Register attempts and then concurrent PullWork
# long-polls: 1,000 with the shipped defaults, then 10,000 with --max_workers=10000. While
# the polls wait, GetRunStatus and Heartbeat are timed. Prints tables from
# /proc/<learner>/status samples and the bench's JSON.
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

run_one() {  # NAME REGISTRATIONS POLLS [duet-learner flags...]
  local name="$1" registrations="$2" polls="$3"; shift 3
  rm -f "$TMP/port"
  "$BIN/learner/service/duet-learner" --model="$TMP/base/model" --data="$TMP/data" --out="$TMP/run-$name" \
    --address=127.0.0.1:0 --port_file="$TMP/port" --auth_token_file="$TMP/token" --collective=none \
    --rollout_workers=1 --scorer_workers=1 "$@" > "$TMP/learner-$name.log" 2>&1 &
  LEARNER_PID=$!
  for _ in $(seq 1 200); do [[ -s "$TMP/port" ]] && break; sleep 0.05; done
  [[ -s "$TMP/port" ]] || { cat "$TMP/learner-$name.log"; exit 1; }
  "$BIN/tools/bench/control_plane_bench" --learner="127.0.0.1:$(cat "$TMP/port")" --auth_token=bench-token \
    --learner_pid="$LEARNER_PID" --registrations="$registrations" --polls="$polls" --poll_wait_ms=5000 \
    > "$TMP/result-$name.json"
  kill -9 "$LEARNER_PID"; wait "$LEARNER_PID" 2>/dev/null || true; LEARNER_PID=""
}
# The shipped defaults (a 1,024-worker registry, 256 control threads) under 10,000
# registrations and 1,000 long-polls; then a registry of 10,000 and 10,000 long-polls.
run_one default 10000 1000
run_one 10k 10000 10000 --max_workers=10000
python3 - "$TMP/result-default.json" "$TMP/result-10k.json" <<'PY'
import json, sys
rows = [("defaults, 1,000 long-polls", json.load(open(sys.argv[1]))),
        ("--max_workers=10000, 10,000 long-polls", json.load(open(sys.argv[2])))]
print("| learner | idle threads / RSS | after 10,000 registrations | during the long-polls | after | Register codes | PullWork codes | KiB per waiting poll |")
print("|---|---|---|---|---|---|---|---|")
fmt = lambda s: "%d / %.0f MiB" % (s["threads"], s["rss_mib"])
for name, r in rows:
    per_poll = (r["during_polls"]["rss_mib"] - r["after_registrations"]["rss_mib"]) * 1024 / max(1, r["polls"])
    print("| %s | %s | %s | %s | %s | %s | %s | %.1f |" % (name, fmt(r["learner_idle"]), fmt(r["after_registrations"]),
          fmt(r["during_polls"]), fmt(r["after_polls"]), r["register_codes"], r["poll_codes"], per_poll))
print()
print("| learner | GetRunStatus p50 / p99 / max ms | Heartbeat p50 / p99 / max ms | polls answered after p50 / p99 / max ms |")
print("|---|---|---|---|")
lat = lambda l: "%.1f / %.1f / %.1f %s" % (l["p50_ms"], l["p99_ms"], l["max_ms"], l["codes"])
for name, r in rows:
    print("| %s | %s | %s | %s |" % (name, lat(r["get_run_status_during_polls"]), lat(r["heartbeat_during_polls"]),
          lat(r["polls_answered_after"])))
PY
