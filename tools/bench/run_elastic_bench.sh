#!/usr/bin/env bash
# Elastic timings with the real binaries on loopback (tiny model, lease_seconds 3), each
# repeated REPS times (default 3), printed as mean and range:
#   death -> re-issue   kill -9 a rollout worker while a step runs; until the learner logs
#                       it lost (the moment its items go back to the queue);
#   join -> first item  a rollout worker started mid-run; from its start until it logs its
#                       first item;
#   restart -> step     kill -9 the learner, start it again with --resume on the same
#                       port; until metrics.jsonl gains its next step (the workers
#                       reconnect by themselves).
# Usage: tools/bench/run_elastic_bench.sh [BUILD_DIR] [REPS]   (DUET_KEEP=DIR keeps the logs there)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tiny_world.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$(cd "${1:-$ROOT/build}" && pwd)"
REPS="${2:-3}"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ -n "${DUET_KEEP:-}" ]]; then rm -rf "$DUET_KEEP"; mv "$TMP" "$DUET_KEEP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
make_tiny_world "$BIN/tools/duet" "$TMP"
echo "elastic-token" > "$TMP/token"
cat > "$TMP/recipe.yaml" <<YAML
steps: 1000
directions: joint
frozen_scorer: false
generation_inputs: 8
understanding_inputs: 4
k: 4
checkpoint_every: 1
lease_seconds: 3
workers: {rollout: 1, scorer: 1}
YAML
now() { date +%s.%N; }
start_learner() {  # RUN PORT [flags]
  local run="$1" port="$2"; shift 2
  "$BIN/learner/service/duet-learner" --config="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
    --out="$run" --address="127.0.0.1:$port" --auth_token_file="$TMP/token" --collective_timeout_s=10 "$@" \
    >> "$run.learner.log" 2>&1 &
  LEARNER=$!; PIDS+=("$LEARNER")
}
start_worker() {  # RUN PORT ROLE NAME
  "$BIN/$3/duet-$3" --learner="127.0.0.1:$2" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
    --name="$4" --collective_timeout_s=10 >> "$1.$4.log" 2>&1 &
  WORKER=$!; PIDS+=("$WORKER")
}
steps_of() { [[ -f "$1/metrics.jsonl" ]] && wc -l < "$1/metrics.jsonl" || echo 0; }
wait_steps() { for _ in $(seq 1200); do (( $(steps_of "$1") >= $2 )) && return 0; sleep 0.05; done; exit 1; }
wait_log() { for _ in $(seq 1200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.02; done; echo "no '$2' in $1"; exit 1; }
# glog's timestamp of the first line matching $2 in $1, as epoch seconds.
log_time() {
  python3 - "$1" "$2" <<'PY'
import datetime, re, sys
for line in open(sys.argv[1]):
    if re.search(sys.argv[2], line):
        m = re.match(r"[IWE](\d{8}) (\d\d:\d\d:\d\d\.\d+)", line)
        t = datetime.datetime.strptime(m.group(1) + " " + m.group(2), "%Y%m%d %H:%M:%S.%f")
        print(t.replace(tzinfo=datetime.timezone.utc).timestamp()); break
PY
}

DEATH=(); JOIN=(); RESTART=()
for rep in $(seq "$REPS"); do
  PORT=$(free_ports 1); RUN="$TMP/run$rep"
  start_learner "$RUN" "$PORT"
  start_worker "$RUN" "$PORT" rollout rollout-0; R0=$WORKER
  start_worker "$RUN" "$PORT" rollout rollout-1; R1=$WORKER
  start_worker "$RUN" "$PORT" scorer scorer-0
  wait_steps "$RUN" 3
  # death -> re-issue
  t0=$(now); kill -9 "$R1"
  wait_log "$RUN.learner.log" "worker rollout-1 lost"
  DEATH+=("$(python3 -c "print($(log_time "$RUN.learner.log" 'worker rollout-1 lost') - $t0)")")
  # join -> first item
  t0=$(now); start_worker "$RUN" "$PORT" rollout rollout-2
  wait_log "$RUN.rollout-2.log" "first item"
  JOIN+=("$(python3 -c "print($(log_time "$RUN.rollout-2.log" 'first item') - $t0)")")
  # restart -> first completed step
  wait_steps "$RUN" $(( $(steps_of "$RUN") + 1 ))
  kill -9 "$LEARNER"; wait "$LEARNER" 2>/dev/null || true
  n=$(steps_of "$RUN")
  # The resumed run re-runs the steps after its checkpoint (every step here), so the log
  # grows again from the checkpoint's step.
  t0=$(now); start_learner "$RUN" "$PORT" --resume
  wait_log "$RUN.learner.log" "resumed from"
  wait_steps "$RUN" $(( n + 1 ))
  RESTART+=("$(python3 -c "print($(now) - $t0)")")
  kill -9 "$LEARNER" "${PIDS[@]}" 2>/dev/null || true
done
python3 - "${DEATH[*]}" "${JOIN[*]}" "${RESTART[*]}" <<'PY'
import sys
print("| interval (lease_seconds 3) | mean s | min s | max s |\n|---|---|---|---|")
for name, v in zip(["worker death -> its items re-issued", "worker start -> first item", "learner restart -> next step done"], sys.argv[1:]):
    xs = [float(x) for x in v.split()]
    print("| %s | %.2f | %.2f | %.2f |" % (name, sum(xs) / len(xs), min(xs), max(xs)))
PY
