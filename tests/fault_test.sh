#!/usr/bin/env bash
# Fault tests of the elastic service with the real binaries on loopback, started by hand
# as an operator (or Kubernetes) would: a learner, two rollout workers, one scorer.
#   reference   an uninterrupted run: its final weights checksum and its ledger (the
#               prompt groups each step trained on);
#   kill-worker kill -9 a rollout worker and the scorer at random moments (seeded:
#               FAULT_SEED, printed) mid-run, start replacements: every step runs, each
#               once; the lost workers' items are re-issued;
#               then SIGTERM another: it finishes its item, deregisters and exits 0;
#   stop-worker SIGSTOP a rollout worker for longer than its lease, then SIGCONT: the run
#               goes on without it, and it registers again by itself;
#   scale       the rollout pool goes 1 -> 4 -> 1 during the run; the broadcast group
#               re-forms for each membership;
#   kill-learner kill -9 the learner mid-run, restart it with --resume on the same port:
#               the workers reconnect by themselves and the run finishes; metrics.jsonl
#               has every step once.
#   stop-broadcast  from kill-learner's checkpoint, a resumed learner (collective timeout
#               3 s) whose first act is a weight broadcast, with a rollout worker SIGSTOPped
#               while a member: the broadcast epoch fails within the timeout and
#               re-forms at once without it (epoch 2, same sync), training goes on;
#               after SIGCONT it registers again and joins a later epoch.
# In synchronous mode the final checksum of each faulty run equals the reference's, and
# its ledger.jsonl has every (step, direction, input) group of the reference exactly once.
# Usage: tests/fault_test.sh BUILD_DIR SOURCE_DIR. KEEP_TMP=1 keeps the work folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
make_tiny_world "$BIN/tools/duet" "$TMP"
echo "fault-token" > "$TMP/token"
STEPS=12
tiny_recipe "$TMP/recipe.yaml" "$STEPS" 3
# The runs with two rollout workers wait for both (the recipe's minimums), so that every
# worker the test kills or stops is in the run by then; the scale run starts with one.
sed 's/workers: {rollout: 2, scorer: 1}/workers: {rollout: 1, scorer: 1}/' "$TMP/recipe.yaml" > "$TMP/one-rollout.yaml"


# finish RUN: waits for the learner (exit 0) and checks the run: every step once, final
# state, the ledger (every group of the reference's once); CHECKSUM is its final weights
# checksum.
finish() {
  local run="$1" rc=0
  wait "$LEARNER" || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 40 "$run".*.log; echo "$run: learner exited with $rc"; exit 1; }
  check_ledger "$run" "$STEPS" "$TMP/reference/ledger.jsonl"
  CHECKSUM=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["checksum"])' "$run/final_state.json")
}
# wait_registered RUN NAME...: until each named worker has registered (at most 60 s).
wait_registered() {
  local run="$1"; shift
  for name in "$@"; do
    for _ in $(seq 600); do grep -q "registered as $name" "$run.$name.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "registered as $name" "$run.$name.log" || { tail -n 20 "$run.$name.log"; echo "$name never registered"; exit 1; }
  done
}
run_workers() {  # RUN PORT: rollout-0, rollout-1, scorer-0
  start_worker "$1" "$2" rollout rollout-0; R0=$WORKER
  start_worker "$1" "$2" rollout rollout-1; R1=$WORKER
  start_worker "$1" "$2" scorer scorer-0; S0=$WORKER
}

# reference
PORT=$(free_ports 1); RUN="$TMP/reference"
start_learner "$RUN" "$PORT"; run_workers "$RUN" "$PORT"
finish "$RUN" > /dev/null; REFERENCE=$CHECKSUM
echo "reference: $STEPS steps, checksum $REFERENCE"

# kill-worker: kill -9 rollout-1 and scorer-0 at seeded random moments, each a step from
# 1..4 and then 0..9 ticks of 100 ms, and start a replacement for each at once.
SEED=${FAULT_SEED:-$RANDOM}
RANDOM=$SEED
KILLS=("rollout $((RANDOM % 4 + 1)) $((RANDOM % 10))" "scorer $((RANDOM % 4 + 1)) $((RANDOM % 10))")
PORT=$(free_ports 1); RUN="$TMP/kill-worker"
start_learner "$RUN" "$PORT"; run_workers "$RUN" "$PORT"
kill_at() {  # ROLE STEP TICKS: kill -9 the role's worker then, start its replacement
  local role="$1" step="$2" ticks="$3"
  wait_steps "$RUN" "$step"; sleep "$(printf '0.%d' "$ticks")"
  [[ ! -f "$RUN/final_state.json" ]] || { echo "the run finished before the kill"; exit 1; }
  if [[ $role == rollout ]]; then kill -9 "$R1"; start_worker "$RUN" "$PORT" rollout rollout-2
  else kill -9 "$S0"; start_worker "$RUN" "$PORT" scorer scorer-1; fi
}
# The earlier moment first.
mapfile -t KILLS < <(printf '%s\n' "${KILLS[@]}" | sort -k2,2n -k3,3n)
for k in "${KILLS[@]}"; do kill_at $k; done
# A graceful leave: SIGTERM finishes the current item, deregisters and exits 0.
wait_steps "$RUN" 8
kill -TERM "$R0"
rc=0; wait "$R0" || rc=$?
[[ $rc -eq 0 ]] || { tail -n 20 "$RUN.rollout-0.log"; echo "rollout-0 exited with $rc after SIGTERM"; exit 1; }
grep -q "rollout-0: deregistered" "$RUN.rollout-0.log" || { tail -n 20 "$RUN.rollout-0.log"; echo "no deregistration"; exit 1; }
finish "$RUN" > /dev/null; KILLED=$CHECKSUM
for name in rollout-1 scorer-0; do
  grep -q "worker $name lost" "$RUN.learner.log" || { tail -n 30 "$RUN.learner.log"; echo "no loss of $name recorded"; exit 1; }
done
echo "kill-worker (FAULT_SEED=$SEED: kill -9 at [step ticks] ${KILLS[*]}): checksum $KILLED, ledger: every group once"

# stop-worker
PORT=$(free_ports 1); RUN="$TMP/stop-worker"
start_learner "$RUN" "$PORT"; run_workers "$RUN" "$PORT"
wait_steps "$RUN" 2
kill -STOP "$R1"
# The learner goes on without it once its lease (3 s) runs out ...
for _ in $(seq 300); do grep -q "worker rollout-1 lost" "$RUN.learner.log" && break; sleep 0.1; done
N=$(wc -l < "$RUN/metrics.jsonl")
wait_steps "$RUN" $((N + 1))
# ... and after SIGCONT it registers again by itself while the run goes on.
kill -CONT "$R1"
for _ in $(seq 300); do grep -q "registering again" "$RUN.rollout-1.log" && break; sleep 0.1; done
finish "$RUN" > /dev/null; STOPPED=$CHECKSUM
grep -q "worker rollout-1 lost" "$RUN.learner.log" || { tail -n 30 "$RUN.learner.log"; echo "no loss recorded"; exit 1; }
grep -q "registering again" "$RUN.rollout-1.log" || { tail -n 20 "$RUN.rollout-1.log"; echo "rollout-1 did not come back"; exit 1; }
echo "stop-worker: checksum $STOPPED"

# scale: the rollout pool goes 1 -> 4 -> 1 while the run goes on (as `kubectl scale`
# would: processes started, then SIGTERM).
PORT=$(free_ports 1); RUN="$TMP/scale"
start_learner "$RUN" "$PORT" --config="$TMP/one-rollout.yaml"
start_worker "$RUN" "$PORT" rollout rollout-0
start_worker "$RUN" "$PORT" scorer scorer-0
wait_steps "$RUN" 2
EXTRA=()
for i in 1 2 3; do start_worker "$RUN" "$PORT" rollout "rollout-$i"; EXTRA+=("$WORKER"); done
wait_registered "$RUN" rollout-1 rollout-2 rollout-3
wait_steps "$RUN" 7
for p in "${EXTRA[@]}"; do kill -TERM "$p"; done
for p in "${EXTRA[@]}"; do wait "$p"; done
finish "$RUN" > /dev/null; SCALED=$CHECKSUM
EPOCHS=$(grep -c "broadcast epoch .* formed" "$RUN.learner.log")
[[ $EPOCHS -ge 3 ]] || { grep "epoch" "$RUN.learner.log"; echo "expected epochs to re-form as the pool scaled"; exit 1; }
echo "scale: checksum $SCALED over $EPOCHS broadcast epochs"

# kill-learner
PORT=$(free_ports 1); RUN="$TMP/kill-learner"
start_learner "$RUN" "$PORT"; run_workers "$RUN" "$PORT"
# Every worker must know the first learner, or there is nothing to reconnect.
wait_registered "$RUN" rollout-0 rollout-1 scorer-0
wait_steps "$RUN" 3
kill -9 "$LEARNER"; wait "$LEARNER" 2>/dev/null || true
[[ ! -f "$RUN/final_state.json" ]] || { echo "the run finished before the learner was killed"; exit 1; }
cp -r "$RUN" "$TMP/stop-broadcast"  # stop-broadcast resumes from the same checkpoint
start_learner "$RUN" "$PORT" --resume
finish "$RUN" > /dev/null; RESUMED=$CHECKSUM
grep -q "resumed from" "$RUN.learner.log" || { echo "no resume"; exit 1; }
for name in rollout-0 rollout-1 scorer-0; do
  grep -q "registering again" "$RUN.$name.log" || { tail -n 20 "$RUN.$name.log"; echo "$name did not re-register"; exit 1; }
done
echo "kill-learner: checksum $RESUMED"

# stop-broadcast: the resumed learner's first act is a weight broadcast to every worker
# registered that has pulled work, in a new epoch. rollout-1 registers and pulls (a bare
# registration is no member: issue 17), then is stopped before the pools are complete
# (scorer-0 completes them), so it is a member that never joins. The lease (10 s) keeps it a member until the broadcast; the collective timeout is
# 3 s for the learner and the workers.
PORT=$(free_ports 1); RUN="$TMP/stop-broadcast"
sed 's/lease_seconds: 3/lease_seconds: 10/' "$TMP/recipe.yaml" > "$TMP/lease10.yaml"
start_learner "$RUN" "$PORT" --config="$TMP/lease10.yaml" --collective_timeout_s=3 --resume
start_worker "$RUN" "$PORT" rollout rollout-0 --collective_timeout_s=3; R0=$WORKER
start_worker "$RUN" "$PORT" rollout rollout-1 --collective_timeout_s=3; R1=$WORKER
wait_log() {  # FILE PATTERN WHAT: until FILE has a line matching PATTERN (at most 120 s)
  for _ in $(seq 1200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  tail -n 30 "$1"; echo "$3"; exit 1
}
wait_log "$RUN.rollout-1.log" "rollout-1: first PullWork answered" "rollout-1 did not register and pull"
kill -STOP "$R1"; STOPPED_AT=$(date +%H:%M:%S.%N)
start_worker "$RUN" "$PORT" scorer scorer-0 --collective_timeout_s=3
for _ in $(seq 1200); do
  grep -q "broadcast epoch 1 failed" "$RUN.learner.log" && break
  # Lost before the broadcast: scorer-0 took longer than the lease to register.
  grep -q "worker rollout-1 lost" "$RUN.learner.log" && { tail -n 30 "$RUN.learner.log" "$RUN.scorer-0.log"; echo "rollout-1 was lost before the broadcast"; exit 1; }
  sleep 0.1
done
wait_log "$RUN.learner.log" "broadcast epoch 1 failed" "the broadcast with a stopped member did not fail"
# Within the same sync the group re-forms with the members that answered (issue 18), and
# sends the version again at once: not after the stopped worker's lease.
# (scorer-0 may not be a member yet, or, slow to join epoch 1 on a loaded machine, be
# backed off to the stream: 1 or 2 of 2 or 3 workers.)
wait_log "$RUN.learner.log" "broadcast epoch 2 re-formed with [12] of [23] workers" "epoch 1 did not re-form without the stopped worker"
wait_log "$RUN.learner.log" "worker rollout-1 lost" "the stopped worker was never lost"
WITHOUT=2
# From here the run needs rollout-1: rollout-0 leaves, and the run waits for a rollout
# worker until rollout-1, continued, registers again.
kill -TERM "$R0"
rc=0; wait "$R0" || rc=$?
[[ $rc -eq 0 ]] || { tail -n 20 "$RUN.rollout-0.log"; echo "rollout-0 exited with $rc after SIGTERM"; exit 1; }
kill -CONT "$R1"
finish "$RUN" > /dev/null; BROADCAST_STOPPED=$CHECKSUM
grep -q "registering again" "$RUN.rollout-1.log" || { tail -n 20 "$RUN.rollout-1.log"; echo "rollout-1 did not register again"; exit 1; }
REJOINED=$(grep -o "joined broadcast epoch [0-9]*" "$RUN.rollout-1.log" | awk -v w="$WITHOUT" '$4 > w {print $4}' | tail -n 1)
[[ -n "$REJOINED" ]] || { tail -n 20 "$RUN.rollout-1.log"; echo "rollout-1 joined no later epoch"; exit 1; }
python3 - "$RUN/final_state.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
assert "rollout-1" in [w["name"] for w in state["workers"]], state["workers"]
PY
TIMES=$(python3 - "$RUN.learner.log" "$RUN.scorer-0.log" "$STOPPED_AT" <<'PY'
import re, sys
from datetime import datetime
def when(path, pattern):  # the glog time of the first line matching pattern
    for line in open(path):
        if re.search(pattern, line):
            return datetime.strptime(line.split()[1], "%H:%M:%S.%f")
pools = when(sys.argv[2], "registered as")
stopped = datetime.strptime(sys.argv[3][:15], "%H:%M:%S.%f")
failed = when(sys.argv[1], "broadcast epoch 1 failed")
reformed = when(sys.argv[1], "broadcast epoch 2 re-formed")
lost = when(sys.argv[1], "worker rollout-1 lost")
print("%.1f s after the pools formed (%.1f s after the stop; timeout 3 s, lease 10 s); "
      "re-formed and sent again %.2f s after the failure (the lease ran out %.1f s after it)" %
      ((failed - pools).total_seconds(), (pools - stopped).total_seconds(),
       (reformed - failed).total_seconds(), (lost - failed).total_seconds()))
PY
)
echo "stop-broadcast: epoch 1 failed $TIMES; epoch $WITHOUT without rollout-1; it rejoined at epoch $REJOINED; checksum $BROADCAST_STOPPED"

for c in "$KILLED" "$STOPPED" "$SCALED" "$RESUMED" "$BROADCAST_STOPPED"; do
  [[ "$c" == "$REFERENCE" ]] || { echo "final weights differ from the uninterrupted run: $c vs $REFERENCE"; exit 1; }
done
echo "fault tests ok: every faulty run ends on the reference checksum $REFERENCE"
