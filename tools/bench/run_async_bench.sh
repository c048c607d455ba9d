#!/usr/bin/env bash
# Samples per second, synchronous vs asynchronous (recipe max_lag 1 and 4), with 1, 2 and
# 4 rollout workers and one scorer: the real binaries on loopback, the tiny model, the
# default recipe's step (generation only, 16 prompts x k 8 = 128 samples).
# Throughput: every sample trained on (STEPS x 128) over the wall time from the first
# work item any worker took (its log line) to the end of the last step (metrics.jsonl,
# watched every 10 ms). Every mode does the same work inside that window: asynchronous
# runs collect nothing past the last step, and a pipeline filled before a later window
# would flatter them (so no warm-up steps are cut). Startup and registration are left
# out. Each configuration runs REPS times, the modes interleaved (sync, lag 1, lag 4,
# sync, ...) so that drift of a shared machine falls on all of them; the table gives the
# mean and the range. Also: mean per step of the learner's wait for its collection
# (wait_s; in sync mode the whole rollout + scoring), update_s, sync_s, the collection's
# own rollout_s and score_s, and the largest sample lag and stale samples seen.
# Usage: tools/bench/run_async_bench.sh [BUILD_DIR [STEPS [REPS]]]   defaults: build, 16, 1
#   (DUET_KEEP=DIR keeps the runs and logs there)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tiny_world.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
STEPS="${2:-16}"
REPS="${3:-1}"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ -n "${DUET_KEEP:-}" ]]; then rm -rf "$DUET_KEEP"; mv "$TMP" "$DUET_KEEP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
# Private copies of the binaries: a build tree shared with others may relink them mid-run.
BIN="$TMP/bin"
for b in tools/duet coordinator/duet-learner rollout/duet-rollout scorer/duet-scorer; do
  mkdir -p "$BIN/$(dirname "$b")"; cp "$BUILD/$b" "$BIN/$b"
done
make_tiny_world "$BIN/tools/duet" "$TMP"
echo "async-bench-token" > "$TMP/token"
cat > "$TMP/recipe.yaml" <<YAML
steps: $STEPS
directions: generation
frozen_scorer: false
generation_inputs: 16
k: 8
checkpoint_every: 1000
YAML

# run NAME WORKERS MAX_LAG: one run; appends its figures to $TMP/results.jsonl.
run() {
  local name="$1" workers="$2" lag="$3" port; port=$(free_ports 1)
  local out="$TMP/$name"
  "$BIN/learner/service/duet-learner" --config="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
    --out="$out" --address="127.0.0.1:$port" --auth_token_file="$TMP/token" --max_lag="$lag" \
    --rollout_workers="$workers" --scorer_workers=1 > "$out.learner.log" 2>&1 &
  local learner=$!; PIDS+=("$learner")
  local names=(scorer-0); for i in $(seq 0 $((workers - 1))); do names+=("rollout-$i"); done
  for n in "${names[@]}"; do
    "$BIN/${n%-*}/duet-${n%-*}" --learner="127.0.0.1:$port" --model="$TMP/base/model" \
      --auth_token_file="$TMP/token" --name="$n" > "$out.$n.log" 2>&1 &
    PIDS+=($!)
  done
  # Watch metrics.jsonl until the learner exits: when each line appeared (wall clock).
  python3 - "$out/metrics.jsonl" "$learner" > "$out.times" <<'PY'
import os, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
seen, times = 0, []
while True:
    alive = os.path.exists("/proc/%d" % pid) and open("/proc/%d/stat" % pid).read().split()[2] != "Z"
    try:
        n = sum(1 for _ in open(path))
    except FileNotFoundError:
        n = 0
    now = time.time()
    while seen < n:
        seen += 1
        times.append(now)
    if not alive:
        break
    time.sleep(0.01)
print(" ".join("%.3f" % t for t in times))
PY
  local rc=0; wait "$learner" || rc=$?
  [[ $rc -eq 0 ]] || { tail -n 30 "$out".*.log; echo "$name: learner exited with $rc"; exit 1; }
  python3 - "$out" "$workers" "$lag" >> "$TMP/results.jsonl" <<'PY'
import datetime, glob, json, os, re, sys
out, workers, lag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
times = [float(t) for t in open(out + ".times").read().split()]
assert len(times) == len(lines), (len(times), len(lines))
state = json.load(open(os.path.join(out, "final_state.json")))
assert all(w["checksum"] == state["checksum"] for w in state["workers"]), state
# glog's local wall-clock time of each worker's first item.
first = []
for log in glob.glob(out + ".*-[0-9].log"):
    for line in open(log):
        if "first item" in line:
            m = re.match(r"[IWE](\d{8}) (\d\d:\d\d:\d\d\.\d+)", line)
            first.append(datetime.datetime.strptime(m.group(1) + " " + m.group(2), "%Y%m%d %H:%M:%S.%f").timestamp())
            break
mean = lambda k: sum(l[k] for l in lines) / len(lines)
print(json.dumps({"workers": workers, "lag": lag,
                  "samples_per_s": sum(l["samples"] for l in lines) / (times[-1] - min(first)),
                  "wait_s": mean("wait_s"), "update_s": mean("update_s"), "sync_s": mean("sync_s"),
                  "rollout_s": mean("rollout_s"), "score_s": mean("score_s"),
                  "max_lag_seen": max(l["max_sample_lag"] for l in lines),
                  "stale": sum(l["samples_dropped_stale"] for l in lines)}))
PY
  # The workers leave on the learner's shutdown notice.
  for p in "${PIDS[@]}"; do
    timeout 30 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}

echo "load before: $(uptime)"
for rep in $(seq "$REPS"); do
  for workers in 1 2 4; do
    for lag in 0 1 4; do
      run "w$workers-lag$lag-$rep" "$workers" "$lag"
    done
  done
done
echo "load after:  $(uptime)"
python3 - "$TMP/results.jsonl" "$STEPS" "$REPS" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps, reps = int(sys.argv[2]), int(sys.argv[3])
by = collections.defaultdict(list)
for r in rows:
    by[(r["workers"], r["lag"])].append(r)
def fig(ws, lag):
    xs = [r["samples_per_s"] for r in by[(ws, lag)]]
    m = sum(xs) / len(xs)
    return m, ("%.1f" % m) + ((" (%.1f-%.1f)" % (min(xs), max(xs))) if len(xs) > 1 else "")
print("\nsamples/s, %d steps x 128 samples, first item to last step, %d rep(s) (mean (range))\n" % (steps, reps))
print("| rollout workers | sync (max_lag 0) | max_lag 1 | max_lag 4 | lag 1 / sync | lag 4 / sync |")
print("|---|---|---|---|---|---|")
for ws in (1, 2, 4):
    s, ts = fig(ws, 0); a, ta = fig(ws, 1); b, tb = fig(ws, 4)
    print("| %d | %s | %s | %s | %.2f | %.2f |" % (ws, ts, ta, tb, a / s, b / s))
print("\nmean per step (s): wait for the collection / update / sync; largest sample lag; stale samples\n")
print("| rollout workers | max_lag | wait_s | update_s | sync_s | rollout_s | score_s | max lag seen | stale |")
print("|---|---|---|---|---|---|---|---|---|")
for ws in (1, 2, 4):
    for lag in (0, 1, 4):
        rs = by[(ws, lag)]
        m = lambda k: sum(r[k] for r in rs) / len(rs)
        print("| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %d |" % (
            ws, lag, m("wait_s"), m("update_s"), m("sync_s"), m("rollout_s"), m("score_s"),
            max(r["max_lag_seen"] for r in rs), sum(r["stale"] for r in rs)))
PY
