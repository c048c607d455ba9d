#!/usr/bin/env bash
# Multi-process test of the RL service: real duet-learner, duet-rollout and duet-scorer
# processes on loopback (gRPC + one Gloo group), started by `duet local` on a tiny world.
# Checks: 3 steps run; every worker ends on the learner's policy version and checksum;
# the same run with `broadcast: chain` ends on the same checksum, every sync by the chain;
# a checkpoint is written; a rerun on the finished run's folder that fails (a typo in
# --model or --data) or is refused (neither --resume nor --overwrite) changes none of its
# files; --resume continues at the next step; a second duet local on a running job's folder
# is refused, naming the holder; Ctrl-C stops the run with exit 130, no "after"
# evaluation, and the command that resumes it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"      # build dir
SRC="$2"      # source dir
DUET="$BIN/tools/duet"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
make_tiny_world "$DUET" "$TMP"
cat > "$TMP/recipe.yaml" <<YAML
steps: 3
directions: joint
frozen_scorer: false
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: 2
YAML
run_local() {
  "$DUET" local --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
    --out="$TMP/run" --limit=2 --rollout_workers=2 --scorer_workers=1 "$@"
}
run_local > "$TMP/first.log" 2>&1 || { cat "$TMP/first.log"; exit 1; }
/usr/bin/python3 - "$TMP/run" 3 <<'PY'
import json, os, sys
run, steps = sys.argv[1], int(sys.argv[2])
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["step"] == steps, state
assert state["policy_version"] == steps, state
assert len(state["workers"]) == 3, state
for w in state["workers"]:
    assert w["policy_version"] == state["policy_version"], (w, state)
    assert w["checksum"] == state["checksum"], (w, state)
    assert w["rank"] > 0, w
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == list(range(1, steps + 1)), lines
assert open(os.path.join(run, "checkpoints", "LATEST")).read().strip() == "step-%08d" % steps
assert os.path.exists(os.path.join(run, "report", "summary.md"))
print("first run ok: %d steps, %d workers on v%d checksum %d" % (steps, len(state["workers"]), state["policy_version"], state["checksum"]))
PY
# The same run with the weights down the chain (recipe key broadcast: chain): every sync
# over the c10d group (none falls back to the gRPC stream), and the same final weights.
"$DUET" local --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
  --out="$TMP/chain" --limit=2 --rollout_workers=2 --scorer_workers=1 --set broadcast=chain \
  > "$TMP/chain.log" 2>&1 || { cat "$TMP/chain.log"; exit 1; }
grep -q "^broadcast: chain" "$TMP/chain/recipe.yaml" || { echo "FAIL: the chain run's recipe.yaml has no 'broadcast: chain'"; exit 1; }
if grep -q "falling back to the gRPC stream" "$TMP/chain/logs/learner.log"; then
  grep "broadcast epoch" "$TMP/chain/logs/learner.log"; echo "FAIL: a chain sync fell back to the gRPC stream"; exit 1
fi
/usr/bin/python3 - "$TMP/run" "$TMP/chain" <<'PY'
import json, os, sys
a, b = (json.load(open(os.path.join(d, "final_state.json"))) for d in sys.argv[1:3])
assert a["checksum"] == b["checksum"], (a["checksum"], b["checksum"])
assert all(w["checksum"] == b["checksum"] and w["rank"] > 0 for w in b["workers"]), b
print("chain run ok: the same checksum %d, %d workers on it" % (b["checksum"], len(b["workers"])))
PY
# A finished run is never lost to a rerun: every file of it is the same after each of these.
snapshot() { (cd "$TMP/run" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
snapshot > "$TMP/run.sha256"
[[ "$(cat "$TMP/run/.lock")" =~ ^[0-9]+$ ]] || { echo "FAIL: .lock does not name the run's pid"; exit 1; }
rerun_fails() {  # WHAT EXPECTED-TEXT ARGS...: run_local ARGS fails, saying EXPECTED-TEXT, and changes nothing
  local what="$1" expect="$2"; shift 2
  local rc=0
  run_local "$@" > "$TMP/rerun.log" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] && grep -q -- "$expect" "$TMP/rerun.log" ||
    { cat "$TMP/rerun.log"; echo "FAIL: a rerun $what: exit $rc, want 1 saying: $expect"; exit 1; }
  snapshot | diff "$TMP/run.sha256" - || { echo "FAIL: a rerun $what changed the finished run's files"; exit 1; }
}
rerun_fails "with a typo in --model" "NOT_FOUND" --model="$TMP/base/modle"
rerun_fails "with a typo in --model, --overwrite" "NOT_FOUND" --model="$TMP/base/modle" --overwrite
rerun_fails "with a typo in --data, --overwrite" "NOT_FOUND" --data="$TMP/dta" --overwrite
rerun_fails "without --resume or --overwrite" \
  "FAILED_PRECONDITION: $TMP/run holds a run (final_state.json): continue it with --resume, or start afresh with --overwrite"
rerun_fails "with both --resume and --overwrite" "INVALID_ARGUMENT" --resume --overwrite
echo "rerun ok: failed and refused reruns left every file of the finished run as it was"
# ShapesEval over 3 evaluation seeds: the pooled counts, and each seed's figure with spread.
"$DUET" eval --model="$TMP/base/model" --data="$TMP/data" --limit=2 --eval_seeds=3 --seed=5 \
  --report_dir="$TMP/eval3" > "$TMP/eval3.log" 2>&1 || { cat "$TMP/eval3.log"; exit 1; }
grep -q "3 seeds: mean" "$TMP/eval3.log" || { cat "$TMP/eval3.log"; exit 1; }
/usr/bin/python3 - "$TMP/eval3/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["settings"]["eval_seeds"] == 3 and r["seeds"]["seeds"] == [5, 6, 7], r["settings"]
n = r["settings"]["generation_items"]
assert r["generation"]["overall"]["total"] == 3 * n, (r["generation"]["overall"], n)
for d in ("generation", "understanding"):
    per = r["seeds"][d]["overall"]["per_seed"]
    assert len(per) == 3 and abs(sum(per) / 3 - r[d]["overall"]["accuracy"]) < 1e-9, (d, per)
print("eval over 3 seeds ok")
PY
run_local --local_steps=5 --resume > "$TMP/second.log" 2>&1 || { cat "$TMP/second.log"; exit 1; }
grep -q "resumed from .*step-00000003" "$TMP/second.log" || { echo "no resume message"; cat "$TMP/second.log"; exit 1; }
/usr/bin/python3 - "$TMP/run" <<'PY'
import json, os, sys
run = sys.argv[1]
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == [1, 2, 3, 4, 5], [l["step"] for l in lines]
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["policy_version"] == 5 and all(w["checksum"] == state["checksum"] for w in state["workers"]), state
print("resume ok: continued at step 4, ended at v5 on every worker")
PY

# SIGTERM to duet-learner mid-run (the real binaries, started by hand as an operator
# would): it finishes its step, checkpoints, writes final_state.json and exits 0; the
# workers then leave cleanly. (It used to die by the signal: OpenBLAS's threads, started
# before main(), did not block it.)
echo "sigterm-token" > "$TMP/token"
cat > "$TMP/long.yaml" <<YAML
steps: 1000
directions: joint
frozen_scorer: false
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: 1000
workers: {rollout: 1, scorer: 1}
YAML
"$BIN/learner/service/duet-learner" --config="$TMP/long.yaml" --model="$TMP/base/model" --data="$TMP/data" \
  --out="$TMP/sig" --address=127.0.0.1:0 --port_file="$TMP/port" --auth_token_file="$TMP/token" \
  > "$TMP/learner.log" 2>&1 &
LEARNER=$!
for _ in $(seq 600); do [[ -s "$TMP/port" ]] && break; sleep 0.1; done
[[ -s "$TMP/port" ]] || { cat "$TMP/learner.log"; echo "learner did not serve"; exit 1; }
TARGET="127.0.0.1:$(cat "$TMP/port")"
"$BIN/rollout/duet-rollout" --learner="$TARGET" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
  --name=rollout-0 > "$TMP/rollout.log" 2>&1 &
ROLLOUT=$!
"$BIN/scorer/duet-scorer" --learner="$TARGET" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
  --name=scorer-0 > "$TMP/scorer.log" 2>&1 &
SCORER=$!
for _ in $(seq 1200); do
  [[ -f "$TMP/sig/metrics.jsonl" && $(wc -l < "$TMP/sig/metrics.jsonl") -ge 2 ]] && break
  sleep 0.1
done
kill -TERM "$LEARNER"
rc=0; wait "$LEARNER" || rc=$?
[[ $rc -eq 0 ]] || { cat "$TMP/learner.log"; echo "learner exited with $rc after SIGTERM"; exit 1; }
for pid in $ROLLOUT $SCORER; do
  wrc=0; wait "$pid" || wrc=$?
  [[ $wrc -eq 0 ]] || { cat "$TMP/rollout.log" "$TMP/scorer.log"; echo "a worker exited with $wrc"; exit 1; }
done
/usr/bin/python3 - "$TMP/sig" <<'PY'
import json, os, sys
run = sys.argv[1]
state = json.load(open(os.path.join(run, "final_state.json")))
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert 2 <= state["step"] < 1000 and state["step"] == len(lines), (state, len(lines))
assert open(os.path.join(run, "checkpoints", "LATEST")).read().strip() == "step-%08d" % state["step"]
assert sorted(w["id"] for w in state["workers"]) == ["rollout-0", "scorer-0"], state["workers"]
print("sigterm ok: stopped after step %d with a checkpoint; worker ids follow their names" % state["step"])
PY

# A worker whose TLS settings do not match the learner's says so within seconds (it used
# to wait 61 s in silence, then exit with "Socket closed").
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2> /dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/other.key" -out "$TMP/other.pem" -days 1 \
  -subj /CN=other 2> /dev/null
rm -f "$TMP/port"
"$BIN/learner/service/duet-learner" --config="$TMP/long.yaml" --model="$TMP/base/model" --data="$TMP/data" \
  --out="$TMP/tls" --address=127.0.0.1:0 --port_file="$TMP/port" --auth_token_file="$TMP/token" \
  --tls_cert="$TMP/cert.pem" --tls_key="$TMP/key.pem" > "$TMP/tls-learner.log" 2>&1 &
LEARNER=$!
for _ in $(seq 600); do [[ -s "$TMP/port" ]] && break; sleep 0.1; done
TARGET="127.0.0.1:$(cat "$TMP/port")"
check_tls_refusal() {  # $1: what, $2: expected text; rest: worker flags
  local what="$1" expect="$2"; shift 2
  local rc=0
  timeout 20 "$BIN/rollout/duet-rollout" --learner="$TARGET" --model="$TMP/base/model" \
    --auth_token_file="$TMP/token" "$@" > "$TMP/tls-worker.log" 2>&1 || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$TMP/tls-worker.log"; echo "FAIL: $what: exit $rc"; kill "$LEARNER"; exit 1; }
  grep -q -- "$expect" "$TMP/tls-worker.log" || { cat "$TMP/tls-worker.log"; echo "FAIL: $what: no hint"; kill "$LEARNER"; exit 1; }
}
check_tls_refusal "plaintext worker, TLS learner" "it may require TLS (give --tls_ca)"
check_tls_refusal "worker trusting another CA" "TLS handshake with the learner failed" --tls_ca="$TMP/other.pem"
echo "tls ok: mismatched workers exit within seconds, naming TLS"
# SIGTERM while the learner still waits for its pools: it stops at once, exit 0.
kill -TERM "$LEARNER"
rc=0; wait "$LEARNER" || rc=$?
[[ $rc -eq 0 ]] || { cat "$TMP/tls-learner.log"; echo "learner waiting for workers exited with $rc"; exit 1; }
grep -q '"stopped_before_pools_formed": true' "$TMP/tls/final_state.json" || { echo "no final state"; exit 1; }
echo "sigterm while waiting ok"

# A second SIGTERM aborts a learner that cannot finish its step: every worker is killed
# (kill -9; the lease, 60 s, keeps the learner waiting for them), so the first SIGTERM's
# "finish the step, checkpoint" cannot happen; the second ends it at once, exit 128+15,
# saying why; the last checkpoint stands and no final state is written.
sed -e 's/checkpoint_every: 1000/checkpoint_every: 1/' -e 's/^workers:.*/&\nlease_seconds: 60/' "$TMP/long.yaml" > "$TMP/stuck.yaml"
rm -f "$TMP/port"
"$BIN/learner/service/duet-learner" --config="$TMP/stuck.yaml" --model="$TMP/base/model" --data="$TMP/data" \
  --out="$TMP/stuck" --address=127.0.0.1:0 --port_file="$TMP/port" --auth_token_file="$TMP/token" \
  > "$TMP/stuck-learner.log" 2>&1 &
LEARNER=$!
for _ in $(seq 600); do [[ -s "$TMP/port" ]] && break; sleep 0.1; done
TARGET="127.0.0.1:$(cat "$TMP/port")"
"$BIN/rollout/duet-rollout" --learner="$TARGET" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
  --name=rollout-0 > "$TMP/stuck-rollout.log" 2>&1 &
ROLLOUT=$!
"$BIN/scorer/duet-scorer" --learner="$TARGET" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
  --name=scorer-0 > "$TMP/stuck-scorer.log" 2>&1 &
SCORER=$!
for _ in $(seq 1200); do [[ -s "$TMP/stuck/checkpoints/LATEST" ]] && break; sleep 0.1; done
[[ -s "$TMP/stuck/checkpoints/LATEST" ]] || { cat "$TMP/stuck-learner.log"; echo "no checkpoint"; exit 1; }
kill -9 "$ROLLOUT" "$SCORER"; wait "$ROLLOUT" "$SCORER" 2>/dev/null || true
kill -TERM "$LEARNER"
for _ in $(seq 300); do grep -q "finishing the step" "$TMP/stuck-learner.log" && break; sleep 0.1; done
grep -q "finishing the step" "$TMP/stuck-learner.log" || { cat "$TMP/stuck-learner.log"; echo "no first signal"; exit 1; }
kill -0 "$LEARNER" 2>/dev/null || { cat "$TMP/stuck-learner.log"; echo "the learner ended without its workers"; exit 1; }
kill -TERM "$LEARNER"
for _ in $(seq 100); do kill -0 "$LEARNER" 2>/dev/null || break; sleep 0.1; done
kill -0 "$LEARNER" 2>/dev/null && { kill -9 "$LEARNER"; cat "$TMP/stuck-learner.log"; echo "a second SIGTERM did not abort the learner"; exit 1; }
rc=0; wait "$LEARNER" || rc=$?
[[ $rc -eq 143 ]] || { cat "$TMP/stuck-learner.log"; echo "the aborted learner exited with $rc, want 143"; exit 1; }
grep -q "second signal 15 while stopping: aborting now" "$TMP/stuck-learner.log" || { cat "$TMP/stuck-learner.log"; echo "no reason given"; exit 1; }
[[ ! -f "$TMP/stuck/final_state.json" ]] || { echo "an aborted learner wrote a final state"; exit 1; }
/usr/bin/python3 - "$TMP/stuck" <<'PY'
import json, os, sys
run = sys.argv[1]
steps = len(open(os.path.join(run, "metrics.jsonl")).readlines())
latest = int(open(os.path.join(run, "checkpoints", "LATEST")).read().strip()[len("step-"):])
assert 1 <= latest <= steps and os.path.isdir(os.path.join(run, "checkpoints", "step-%08d" % latest)), (latest, steps)
print("second sigterm ok: a learner stuck without workers aborted at once (exit 143); checkpoint of step %d stands" % latest)
PY

# duet pool: the operator scales a running duet local job as `kubectl scale` would. The
# rollout pool goes 1 -> 3 (one of them killed with -9 and replaced by duet local) -> 1
# while the run goes on; bad requests are refused. Stopped by SIGTERM at step N, the run
# ends on the checksum of an unscaled N-step run of the same recipe.
cat > "$TMP/pool.yaml" <<YAML
steps: 1000
directions: joint
frozen_scorer: false
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: 1
lease_seconds: 3
workers: {rollout: 1, scorer: 1}
YAML
POOL_LOCAL=("$DUET" local --recipe="$TMP/pool.yaml" --model="$TMP/base/model" --data="$TMP/data" --limit=2)
"${POOL_LOCAL[@]}" --out="$TMP/pool" > "$TMP/pool.log" 2>&1 &
LOCAL=$!
stop_local() {  # on failure: SIGTERM twice (the learner aborts, duet local stops its workers), then -9
  local kids; kids=$(ps -o pid= --ppid "$LOCAL" 2>/dev/null || true)
  kill -TERM "$LOCAL" 2>/dev/null || return 0
  kill -TERM "$LOCAL" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$LOCAL" 2>/dev/null || break; sleep 0.1; done
  # shellcheck disable=SC2086
  kill -9 "$LOCAL" $kids 2>/dev/null || true
}
trap 'stop_local; rm -rf "$TMP"' EXIT
wait_for() {  # FILE PATTERN WHAT
  for _ in $(seq 1200); do grep -q -- "$2" "$1" 2>/dev/null && return 0; kill -0 "$LOCAL" 2>/dev/null || break; sleep 0.1; done
  grep -q -- "$2" "$1" 2>/dev/null || { tail -n 40 "$TMP/pool.log"; echo "FAIL: $3"; exit 1; }
}
wait_for "$TMP/pool.log" "^step 1/" "the pooled run did not train"
refused() {  # WHAT EXPECTED-TEXT ARGS...: duet pool fails, saying EXPECTED-TEXT
  local what="$1" expect="$2"; shift 2
  local rc=0
  "$DUET" pool "$@" > "$TMP/pool-cmd.log" 2>&1 || rc=$?
  [[ $rc -ne 0 ]] && grep -q -- "$expect" "$TMP/pool-cmd.log" || { cat "$TMP/pool-cmd.log"; echo "FAIL: duet pool $what (exit $rc)"; exit 1; }
}
refused "with no rollout workers" "a run needs between 1 and 64 rollout workers" --out="$TMP/pool" --rollout=0
refused "with negative scorers" "a run needs between 1 and 64 scorer workers" --out="$TMP/pool" --scorer=-2
refused "on a folder with no job" "no running duet local in" --out="$TMP/nothing" --rollout=2
refused "on a finished run" "no running duet local in $TMP/run (no process holds" --out="$TMP/run" --rollout=2
# A second duet local on the running job's folder is refused at once, naming the holder;
# even --overwrite does not let it in.
for flags in "" --overwrite --resume; do
  rc=0
  # shellcheck disable=SC2086
  "${POOL_LOCAL[@]}" --out="$TMP/pool" $flags > "$TMP/second-local.log" 2>&1 || rc=$?
  [[ $rc -eq 1 ]] && grep -q "FAILED_PRECONDITION: $TMP/pool is in use by another duet local (pid $LOCAL," "$TMP/second-local.log" ||
    { cat "$TMP/second-local.log"; echo "FAIL: a second duet local $flags on a running job: exit $rc"; exit 1; }
done
[[ "$(cat "$TMP/pool/.lock")" == "$LOCAL" ]] || { echo "FAIL: $TMP/pool/.lock does not hold pid $LOCAL"; exit 1; }
kill -0 "$LOCAL" || { tail -n 40 "$TMP/pool.log"; echo "FAIL: the running job ended"; exit 1; }
echo "second duet local ok: refused, naming pid $LOCAL"
"$DUET" pool --out="$TMP/pool" --rollout=3 > "$TMP/pool-cmd.log" 2>&1 || { cat "$TMP/pool-cmd.log"; exit 1; }
grep -q "desired: rollout 3, scorer 1 (was rollout 1, scorer 1)" "$TMP/pool-cmd.log" || { cat "$TMP/pool-cmd.log"; exit 1; }
for name in rollout-1 rollout-2; do wait_for "$TMP/pool/logs/$name.log" "registered as $name" "$name did not join"; done
# A worker that dies is replaced (a ReplicaSet keeps its count): rollout-1 by rollout-3.
kill -9 "$(python3 -c 'import json,sys; print([w["pid"] for w in json.load(open(sys.argv[1]))["workers"] if w["name"] == "rollout-1"][0])' "$TMP/pool/pool_status.json")"
wait_for "$TMP/pool.log" "rollout-1 (pid [0-9]*) was killed by signal 9, unexpectedly; a replacement keeps rollout at 3" "no replacement"
wait_for "$TMP/pool/logs/rollout-3.log" "registered as rollout-3" "rollout-3 did not join"
wait_for "$TMP/pool.log" "broadcast epoch [0-9]* formed: 5 ranks" "no broadcast epoch with 3 rollout workers"
"$DUET" pool --out="$TMP/pool" --rollout=1 > "$TMP/pool-cmd.log" 2>&1 || { cat "$TMP/pool-cmd.log"; exit 1; }
for name in rollout-3 rollout-2; do  # the newest leave first
  wait_for "$TMP/pool.log" "$name (pid [0-9]*) exited with 0 after leaving the pool" "$name did not leave"
  grep -q "$name: deregistered" "$TMP/pool/logs/$name.log" || { tail "$TMP/pool/logs/$name.log"; echo "FAIL: $name did not deregister"; exit 1; }
done
"$DUET" pool --out="$TMP/pool" > "$TMP/pool-cmd.log" 2>&1
grep -q "running: rollout 1, scorer 1" "$TMP/pool-cmd.log" || { cat "$TMP/pool-cmd.log"; echo "FAIL: pool not back to 1"; exit 1; }
N=$(wc -l < "$TMP/pool/metrics.jsonl")
wait_for "$TMP/pool.log" "^step $((N + 1))/" "no step after scaling down"
# Ctrl-C: the learner finishes its step and checkpoints; duet local exits 130, runs no
# "after" evaluation of the partial model, and prints the command that resumes the run.
kill -INT "$LOCAL"
rc=0; wait "$LOCAL" || rc=$?
[[ $rc -eq 130 ]] || { tail -n 40 "$TMP/pool.log"; echo "FAIL: the pooled duet local exited with $rc after Ctrl-C, want 130"; exit 1; }
grep -q "duet local: stopped by signal 2 at step [0-9]* of 1000; no \"after\" evaluation" "$TMP/pool.log" ||
  { tail -n 20 "$TMP/pool.log"; echo "FAIL: no stop message"; exit 1; }
grep -A1 "Continue the run with:" "$TMP/pool.log" | grep -q -- "--out=$TMP/pool --resume$" ||
  { tail -n 20 "$TMP/pool.log"; echo "FAIL: no resume command"; exit 1; }
[[ ! -e "$TMP/pool/report/after" && ! -e "$TMP/pool/report/summary.md" ]] || { echo "FAIL: a stopped run was evaluated"; exit 1; }
if grep -q "ShapesEval after RL" "$TMP/pool.log"; then echo "FAIL: a stopped run was evaluated"; exit 1; fi
[[ ! -f "$TMP/pool/pool_status.json" ]] || { echo "FAIL: pool_status.json outlived the run"; exit 1; }
N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$TMP/pool/final_state.json")
"${POOL_LOCAL[@]}" --out="$TMP/unscaled" --local_steps="$N" > "$TMP/unscaled.log" 2>&1 || { tail -n 40 "$TMP/unscaled.log"; exit 1; }
/usr/bin/python3 - "$TMP/pool" "$TMP/unscaled" <<'PY'
import collections, json, os, sys
scaled, unscaled = (json.load(open(os.path.join(r, "final_state.json"))) for r in sys.argv[1:3])
n = scaled["step"]
assert unscaled["step"] == n and scaled["checksum"] == unscaled["checksum"], (scaled, unscaled)
assert sorted(w["name"] for w in scaled["workers"]) == ["rollout-0", "scorer-0"], scaled["workers"]
ledgers = [collections.Counter((e["step"], e["direction"], e["input"]) for e in map(json.loads, open(os.path.join(r, "ledger.jsonl"))))
           for r in sys.argv[1:3]]
assert ledgers[0] == ledgers[1] and set(ledgers[0].values()) == {1} and len(ledgers[0]) == 6 * n, ledgers
print("duet pool ok: rollout 1 -> 3 (one killed and replaced) -> 1 over %d steps; checksum %d as the unscaled run's" % (n, scaled["checksum"]))
PY
