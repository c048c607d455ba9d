#!/usr/bin/env bash
# Multi-process test of the RL service: real duet-learner, duet-rollout and duet-scorer
# processes on loopback (gRPC + one Gloo group), started by `duet local` on a tiny world.
# Checks: 3 steps run; every worker ends on the learner's policy version and checksum;
# a checkpoint is written; --resume continues at the next step.
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
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: 1000
workers: {rollout: 1, scorer: 1}
YAML
"$BIN/coordinator/duet-learner" --config="$TMP/long.yaml" --model="$TMP/base/model" --data="$TMP/data" \
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
"$BIN/coordinator/duet-learner" --config="$TMP/long.yaml" --model="$TMP/base/model" --data="$TMP/data" \
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
