#!/usr/bin/env bash
# Asynchronous mode (recipe max_lag 2) with the real binaries on loopback: a learner, two
# rollout workers and one scorer, started by hand.
#   run + resume  kill -9 the learner mid-run and restart it with --resume on the same
#               port (the collections it had in flight are collected again, the workers
#               reconnect by themselves). The run: every step once; every sample trained
#               on is at most max_lag versions old and some are older than the policy (the
#               rollouts ran while the learner trained); none was stale (collections run
#               at most max_lag steps ahead, so a healthy run drops nothing); every worker
#               ends on the learner's version and checksum;
#   sigterm     SIGTERM to the learner while collections are in flight: it exits 0 with a
#               checkpoint, and the workers, told after their current item, exit 0 too.
# Usage: tests/async_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
make_tiny_world "$BIN/tools/duet" "$TMP"
echo "async-token" > "$TMP/token"
STEPS=6
MAX_LAG=2
tiny_recipe "$TMP/recipe.yaml" "$STEPS" 5 "max_lag: $MAX_LAG"

start_workers() {  # RUN PORT; WORKERS are their pids
  WORKERS=()
  for name in rollout-0 rollout-1 scorer-0; do
    start_worker "$1" "$2" "${name%-*}" "$name"
    WORKERS+=("$WORKER")
  done
}
# check RUN: the learner exited 0 (waited for), and the run's records hold.
check() {
  local run="$1" rc=0
  wait "$LEARNER" || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 40 "$run".*.log; echo "$run: learner exited with $rc"; exit 1; }
  python3 - "$run" "$STEPS" "$MAX_LAG" <<'PY'
import json, os, sys
run, steps, max_lag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["step"] == steps and state["policy_version"] == steps, state
assert len(state["workers"]) == 3, state["workers"]
for w in state["workers"]:
    assert w["policy_version"] == steps and w["checksum"] == state["checksum"], (w, state["checksum"])
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == list(range(1, steps + 1)), [l["step"] for l in lines]
lags = [l["max_sample_lag"] for l in lines]
dropped = [l["samples_dropped_stale"] for l in lines]
assert all(0 <= x <= max_lag for x in lags), lags
assert all(x == 0 for x in dropped), dropped
assert max(lags) >= 1, ("no sample older than the policy: nothing ran ahead", lags)
assert all(l["samples"] == 12 for l in lines), [l["samples"] for l in lines]
assert all(0 <= l["logprob_samples_checked"] <= l["samples"] for l in lines), lines
# The consistency check covers the samples of the current version only: float noise.
assert all(l["logprob_max_diff"] < 1e-3 for l in lines), [l["logprob_max_diff"] for l in lines]
print("%s ok: %d steps, sample lags %s, 0 dropped, 3 workers on checksum %d"
      % (os.path.basename(run), steps, lags, state["checksum"]))
PY
}

# run + resume
PORT=$(free_ports 1); RUN="$TMP/run"
start_learner "$RUN" "$PORT"
start_workers "$RUN" "$PORT"
wait_steps "$RUN" 3
grep -q "asynchronous mode: collecting 2 steps ahead" "$RUN.learner.log" || { echo "no async mode line"; exit 1; }
kill -9 "$LEARNER"; wait "$LEARNER" 2>/dev/null || true
start_learner "$RUN" "$PORT" --resume
check "$RUN"
grep -q "resumed from" "$RUN.learner.log" || { echo "no resume"; exit 1; }

# sigterm
sed "s/^steps: .*/steps: 1000/" "$TMP/recipe.yaml" > "$TMP/long.yaml"
PORT=$(free_ports 1); RUN="$TMP/sig"
"$BIN/learner/service/duet-learner" --config="$TMP/long.yaml" --model="$TMP/base/model" --data="$TMP/data" \
  --out="$RUN" --address="127.0.0.1:$PORT" --auth_token_file="$TMP/token" > "$RUN.learner.log" 2>&1 &
LEARNER=$!; PIDS+=("$LEARNER")
start_workers "$RUN" "$PORT"
wait_steps "$RUN" 2
kill -TERM "$LEARNER"
rc=0; wait "$LEARNER" || rc=$?
[[ $rc -eq 0 ]] || { tail -n 30 "$RUN".*.log; echo "learner exited with $rc after SIGTERM"; exit 1; }
for pid in "${WORKERS[@]}"; do
  wrc=0; timeout 20 tail --pid="$pid" -f /dev/null || wrc=$?
  [[ $wrc -eq 0 ]] || { tail -n 20 "$RUN".*.log; echo "a worker did not exit after the learner's SIGTERM"; exit 1; }
  wrc=0; wait "$pid" || wrc=$?
  [[ $wrc -eq 0 ]] || { tail -n 20 "$RUN".*.log; echo "a worker exited with $wrc"; exit 1; }
done
python3 - "$RUN" <<'PY'
import json, os, sys
run = sys.argv[1]
state = json.load(open(os.path.join(run, "final_state.json")))
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert 2 <= state["step"] < 1000 and state["step"] == len(lines), (state, len(lines))
assert open(os.path.join(run, "checkpoints", "LATEST")).read().strip() == "step-%08d" % state["step"]
print("sigterm ok: stopped after step %d with collections in flight; every process exited 0" % state["step"])
PY
