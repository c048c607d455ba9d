#!/usr/bin/env bash
# The probes see the role's own state (issue 16 point 4; common/rpc/health_server.h), asked with
# `duet health` of the real binaries' health servers, as the kubelet's grpc probes ask:
#   1. a learner waiting for its workers: live (service ""), not ready (service duet.ready);
#   2. once its pools formed and it steps: ready; each worker once registered: ready;
#   3. a learner whose training loop makes no progress for longer than --stall_timeout_s
#      (3 s here; the shipped default, 1800 s, is the flag's default, shown by
#      `duet-learner --help`): its only rollout worker is stopped (SIGSTOP) mid-run, the
#      step cannot finish, liveness turns NOT_SERVING while the process still answers;
#      the worker continued (SIGCONT), the step ends and liveness is SERVING again;
#   4. the learner killed: its workers, unable to reach it, are no longer ready, but live.
# Usage: probes_test.sh BUILD_DIR SOURCE_DIR. KEEP_TMP=1 keeps the work folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"
DUET="$BIN/tools/duet"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
make_tiny_world "$DUET" "$TMP"
echo "probes-token" > "$TMP/token"
tiny_recipe "$TMP/recipe.yaml" 1000 10
sed -i 's/workers: {rollout: 2, scorer: 1}/workers: {rollout: 1, scorer: 1}/' "$TMP/recipe.yaml"
RUN="$TMP/run"
PORT=$(free_ports 1)

# health_port LOG: the health server's port, once LOG names it (at most 60 s).
health_port() {
  for _ in $(seq 600); do
    local p
    p=$(grep -oE '(grpc.health.v1 \(plaintext\)|health and status service) on port [0-9]+' "$1" 2>/dev/null |
      grep -oE '[0-9]+$' | head -n 1) || true
    [[ -n "$p" ]] && { echo "$p"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$1"; echo "no health port in $1" >&2; exit 1
}
probe() {  # PORT SERVICE: prints what the probe sees
  "$DUET" health --address="127.0.0.1:$1" --service="$2" --timeout_s=5 2>&1 || true
}
expect() {  # PORT SERVICE STATUS WHAT: until the probe sees STATUS (at most 60 s)
  local seen=""
  for _ in $(seq 300); do
    seen=$(probe "$1" "$2")
    [[ "$seen" == "$3" ]] && { echo "ok: $4: $3"; return 0; }
    sleep 0.2
  done
  tail -n 20 "$RUN".*.log; echo "FAIL: $4: want $3, the probe sees $seen"; exit 1
}

start_learner "$RUN" "$PORT" --health_address=127.0.0.1:0 --stall_timeout_s=3
L=$(health_port "$RUN.learner.log")
expect "$L" "" SERVING "learner waiting for its pools, liveness"
expect "$L" duet.ready NOT_SERVING "learner waiting for its pools, readiness"
# It stays live while it waits, longer than its stall timeout: waiting for workers is
# progress of its loop.
sleep 4
expect "$L" "" SERVING "learner waiting 4 s (stall timeout 3 s), liveness"

start_worker "$RUN" "$PORT" rollout rollout-0; R0=$WORKER
start_worker "$RUN" "$PORT" scorer scorer-0
R=$(health_port "$RUN.rollout-0.log")
S=$(health_port "$RUN.scorer-0.log")
expect "$R" duet.ready SERVING "rollout worker registered, readiness"
expect "$S" duet.ready SERVING "scorer worker registered, readiness"
wait_steps "$RUN" 2
expect "$L" duet.ready SERVING "learner stepping, readiness"
expect "$L" "" SERVING "learner stepping, liveness"

kill -STOP "$R0"
expect "$L" "" NOT_SERVING "learner whose step cannot finish (its rollout worker stopped), liveness"
expect "$L" duet.ready NOT_SERVING "learner whose step cannot finish, readiness"
kill -CONT "$R0"
expect "$L" "" SERVING "learner stepping again, liveness"

kill -9 "$LEARNER"
expect "$R" duet.ready NOT_SERVING "rollout worker without its learner, readiness"
expect "$R" "" SERVING "rollout worker without its learner, liveness"
"$DUET" health --address="127.0.0.1:$L" --timeout_s=2 > /dev/null 2>&1 &&
  { echo "FAIL: duet health exits 0 for a dead learner"; exit 1; }
echo "probes test ok"
