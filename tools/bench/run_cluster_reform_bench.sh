#!/usr/bin/env bash
# A failed broadcast epoch on the emulated cluster (tools/bench/cluster_netns.sh): the
# real learner in namespace r0 and 8 real workers (6 rollout, 2 scorer) in r1..r8, each
# behind its own shaped link (1 Gbit/s by default), running the default recipe cut to a
# few steps on the given base model, twice: with the learner's default re-form (issue 18:
# a failed epoch re-forms with the members that report their failed c10d call and
# broadcasts the version again within the same sync) and with --reform_window_s=0 (the
# behaviour before: they all fetch over the gRPC stream, and the sync waits for every
# member's answer). In each, the worker that holds rank 1 of the broadcast epoch is
# killed (SIGKILL) 1 s after the epoch formed. Prints the learner's lines about the
# failure, timed from the kill, and every step's sync time (metrics.jsonl).
#
# Usage (root): tools/bench/run_cluster_reform_bench.sh BUILD_DIR MODEL_DIR DATA_DIR
#   e.g. tools/bench/run_cluster_reform_bench.sh build out/base/model out/data
# Environment: as cluster_netns.sh (RATE, LATENCY, SUBNET; RANKS is 9 here), BROADCAST
# (the recipe's broadcast, default collective), KEEP_LOGS=DIR copies the logs there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$(realpath "$1")"; MODEL="$(realpath "$2")"; DATA="$(realpath "$3")"
for b in learner/service/duet-learner rollout/duet-rollout scorer/duet-scorer; do
  [[ -x "$BIN/$b" ]] || { echo "no $BIN/$b: build first" >&2; exit 1; }
done
RANKS=9
source "$ROOT/tools/bench/cluster_netns.sh"
cleanup_extra() { [[ -z "${KEEP_LOGS:-}" ]] || { mkdir -p "$KEEP_LOGS"; cp -r "$TMP"/*/ "$KEEP_LOGS"/; }; }
cluster_up
echo "== emulated cluster: $RANKS namespaces, links of $RATE and $LATENCY each way"

TIMEOUT_S=30
sed -e 's/^steps: .*/steps: 4/' -e 's/^generation_inputs: .*/generation_inputs: 4/' \
    -e 's/^understanding_inputs: .*/understanding_inputs: 4/' -e 's/^k: .*/k: 4/' \
    -e 's/^workers: .*/workers: {rollout: 6, scorer: 2}/' \
    -e "s/^broadcast: .*/broadcast: ${BROADCAST:-collective}/" \
    "$ROOT/configs/recipes/default.yaml" > "$TMP/recipe.yaml"
grep -q "^steps: 4" "$TMP/recipe.yaml" && grep -q "rollout: 6" "$TMP/recipe.yaml"
echo "reform-bench-token" > "$TMP/token"

# one_run NAME LEARNER_FLAGS...: a run of 4 steps; the rank-1 worker is killed during the
# first sync of epoch 1's group (1 s after it formed: a sync of this small model takes
# milliseconds, so the kill lands between syncs, and the next sync's broadcast finds the
# dead member, the common case at scale). Prints each step's sync_s (metrics.jsonl) and
# the learner's lines about the failure.
one_run() {
  local run="$1"; shift
  local dir="$TMP/$run" port=50151 r role name victim vpid killed
  mkdir -p "$dir"
  ip netns exec "$NS-r0" "$BIN/learner/service/duet-learner" --config="$TMP/recipe.yaml" \
    --model="$MODEL" --data="$DATA" --out="$dir/run" --address="$SUBNET.1:$port" \
    --store_host="$SUBNET.1" --auth_token_file="$TMP/token" \
    --collective_timeout_s=$TIMEOUT_S "$@" > "$dir/learner.log" 2>&1 &
  local learner=$!
  for ((r = 1; r < RANKS; r++)); do
    if ((r <= 6)); then role=rollout; name="rollout-$r"; else role=scorer; name="scorer-$r"; fi
    ip netns exec "$NS-r$r" "$BIN/$role/duet-$role" --learner="$SUBNET.1:$port" \
      --model="$MODEL" --auth_token_file="$TMP/token" --name="$name" \
      --collective_address="$SUBNET.$((r + 1))" --collective_timeout_s=$TIMEOUT_S \
      > "$dir/$name.log" 2>&1 &
  done
  wait_for "$dir/learner.log" "broadcast epoch 1 formed" 900
  victim=""
  for _ in $(seq 100); do
    victim=$(grep -l "joined broadcast epoch 1 as rank 1 of" "$dir"/*-*.log 2>/dev/null | head -n 1 || true)
    [[ -n "$victim" ]] && break; sleep 0.1
  done
  [[ -n "$victim" ]] || { echo "no worker joined epoch 1 as rank 1" >&2; exit 1; }
  victim=$(basename "$victim" .log)
  sleep 1
  vpid=$(pgrep -f -- "--name=$victim " | head -n 1)
  kill -9 "$vpid"; killed=$(date +%H:%M:%S.%N)
  wait "$learner" || { tail -n 20 "$dir/learner.log"; echo "$run: the learner failed" >&2; exit 1; }
  echo "== $run: killed $victim (rank 1 of epoch 1) at $killed"
  python3 - "$dir/learner.log" "$dir/run/metrics.jsonl" "$killed" <<'PY'
import json, re, sys
from datetime import datetime
lines = open(sys.argv[1]).read().splitlines()
killed = datetime.strptime(sys.argv[3][:15], "%H:%M:%S.%f")
for line in lines:
    m = re.match(r"[IWE]\d{8} (\d\d:\d\d:\d\d\.\d+)", line)
    if m and re.search(r"epoch \d+ (failed|re-formed|formed)|did not answer|failed over c10d|dropped from", line):
        t = datetime.strptime(m.group(1)[:15], "%H:%M:%S.%f")
        print(f"  {(t - killed).total_seconds():+7.2f} s  {line.split('] ', 1)[-1][:150]}")
steps = [json.loads(l) for l in open(sys.argv[2])]
print("  sync_s by step: " + ", ".join(f"{s['step']}: {s['sync_s']:.2f}" for s in steps))
PY
}
wait_for() {  # FILE PATTERN SECONDS
  for _ in $(seq $(($3 * 10))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  tail -n 20 "$1"; echo "timed out waiting for '$2' in $1" >&2; exit 1
}
one_run reform
one_run no-reform --reform_window_s=0
