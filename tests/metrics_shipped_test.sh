#!/usr/bin/env bash
# Metrics as shipped (issue 16): what an operator meets with the repository's own files.
#   1. A learner waiting for its pools publishes the recipe's worker counts
#      (duet_pool_desired_workers) and target steps within 2 s of its start (of its first
#      /metrics answer): the real duet-learner, no worker ever started.
#   2. The real Prometheus with deploy/prometheus/prometheus.yml as shipped (15 s scrapes
#      and evaluations) and rules/duet.rules.yml as shipped (every `for:` unchanged) scrapes
#      a `duet local` run (learner, 2 rollout, 1 scorer) for 5 scrapes (more than 4 scrape
#      intervals): every target is up on every scrape, no alert fires, and none is pending
#      or firing at the end. The config is rewritten only where it must be: the file_sd
#      folder (the run's targets), the rules file's path (the shipped file itself);
#      storage and listen address are command-line flags.
# tests/metrics_live_test.sh covers the catalogue, the dashboard and the alerts' delivery at
# 1 s scrapes.
# Usage: metrics_shipped_test.sh BUILD_DIR SOURCE_DIR. KEEP_TMP=1 keeps the work folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"; SRC="$2"
DUET="$BIN/tools/duet"
TMP="$(mktemp -d)"
PIDS=()
RUN=""
cleanup() {
  # duet local stops its processes on SIGTERM; past 20 s they are killed.
  if [[ -n "$RUN" ]] && kill -TERM "$RUN" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$RUN" 2>/dev/null || break; sleep 0.2; done
    # shellcheck disable=SC2046
    kill -9 $(ps -o pid= --ppid "$RUN") "$RUN" 2>/dev/null || true
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
for tool in prometheus curl; do
  command -v "$tool" >/dev/null || { echo "$tool not installed (deploy/local/install-deps.sh)"; exit 1; }
done
now_ms() { date +%s%3N; }

make_tiny_world "$DUET" "$TMP"
echo "test-token" > "$TMP/token"
tiny_recipe "$TMP/recipe.yaml" 2000 3  # 2 rollout + 1 scorer; the test stops the run

# 1. The pool signal from the learner's first second. The 2 s count from the first answer
# of its /metrics: the process's own start before that (loading LibTorch, about 1 s on an
# idle 2-core machine, several under load) is not what is tested.
MPORT="$(free_ports 1)"
WANT='duet_learner_target_steps 2000 duet_pool_desired_workers{role="rollout"} 2 duet_pool_desired_workers{role="scorer"} 1 '
T0="$(now_ms)"
start_learner "$TMP/waiting" 0 --metrics_address="127.0.0.1:$MPORT"
WAITING=$LEARNER
got=""; T_SERVE=""
while (( $(now_ms) - T0 <= 30000 )) && [[ -z "$T_SERVE" || $(( $(now_ms) - T_SERVE )) -le 2000 ]]; do
  if body="$(curl -sf "http://127.0.0.1:$MPORT/metrics" 2>/dev/null)"; then
    [[ -n "$T_SERVE" ]] || T_SERVE="$(now_ms)"
    got="$(grep -E '^(duet_pool_desired_workers\{role="(rollout|scorer)"\}|duet_learner_target_steps) ' <<< "$body" |
      sort | tr '\n' ' ')" || true
    [[ "$got" == "$WANT" ]] && break
  fi
  kill -0 "$WAITING" 2>/dev/null || { cat "$TMP/waiting.learner.log"; echo "FAIL: the learner exited"; exit 1; }
  sleep 0.05
done
NOW="$(now_ms)"
[[ -n "$T_SERVE" && "$got" == "$WANT" ]] || {
  cat "$TMP/waiting.learner.log"
  echo "FAIL: ${T_SERVE:+$(( NOW - T_SERVE )) ms after its first /metrics answer, }$(( NOW - T0 )) ms after its start, the waiting learner publishes: $got"
  exit 1
}
echo "pool signal ok: a learner waiting for its pools published rollout 2, scorer 1, 2000 target steps $(( NOW - T_SERVE )) ms after its first /metrics answer ($(( NOW - T0 )) ms after its start)"
kill -TERM "$WAITING"
rc=0; wait "$WAITING" || rc=$?
[[ $rc -eq 0 ]] || { cat "$TMP/waiting.learner.log"; echo "FAIL: the waiting learner exited with $rc on SIGTERM"; exit 1; }

# 2. The shipped scrape config and rules against a duet local run.
BASE="$(free_ports 4)"
"$DUET" local --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" --out="$TMP/run" \
  --limit=2 --metrics_base_port="$BASE" > "$TMP/run.log" 2>&1 &
RUN=$!
alive() { kill -0 $RUN 2>/dev/null || { cat "$TMP/run.log"; echo "FAIL: duet local ended early"; exit 1; }; }
# Scraped once every process serves (an operator adds a run's targets once it runs; a
# target listed before its process binds is down for that scrape, rightly).
for _ in $(seq 600); do
  body="$(curl -sf "http://127.0.0.1:$BASE/metrics" 2>/dev/null || true)"
  grep -q '^duet_coordinator_live_workers{role="rollout"} 2' <<< "$body" &&
    grep -q '^duet_coordinator_live_workers{role="scorer"} 1' <<< "$body" && break
  alive; sleep 0.2
done
mkdir -p "$TMP/targets"
cp "$TMP/run/prometheus_targets.json" "$TMP/targets/run.json"
PROM_PORT="$(free_ports 1)"
python3 - "$SRC/deploy/prometheus/prometheus.yml" "$SRC/deploy/prometheus/rules/duet.rules.yml" "$TMP" \
  > "$TMP/prometheus.yml" <<'PY'
import sys, yaml
shipped, rules, tmp = sys.argv[1:4]
cfg = yaml.safe_load(open(shipped))
assert cfg["global"]["scrape_interval"] == "15s" and cfg["global"]["evaluation_interval"] == "15s", cfg["global"]
assert cfg["rule_files"] == ["rules/duet.rules.yml"], cfg["rule_files"]
cfg["rule_files"] = [rules]
(job,) = cfg["scrape_configs"]
(sd,) = job["file_sd_configs"]
assert sd["files"] == ["targets/*.json"], sd
sd["files"] = [tmp + "/targets/*.json"]
print(yaml.safe_dump(cfg))
PY
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address="127.0.0.1:$PROM_PORT" > "$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
T_PROM="$(date +%s)"
export PROM="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 100); do curl -sf "$PROM/-/ready" > /dev/null && break; sleep 0.2; done
curl -sf "$PROM/-/ready" > /dev/null || { cat "$TMP/prometheus.log"; exit 1; }
# Until every target has been scraped 5 times: 4 full intervals between the first and the
# last (60-75 s at 15 s).
count_min() {
  curl -sf "$PROM/api/v1/query" --data-urlencode "query=min(count_over_time(up{job=~\"duet-.*\"}[$(( $(date +%s) - T_PROM + 5 ))s]))" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)'
}
n=0
for _ in $(seq 120); do
  n="$(count_min)"
  (( n >= 5 )) && break
  alive; sleep 1
done
(( n >= 5 )) || { tail -n 20 "$TMP/prometheus.log"; echo "FAIL: Prometheus scraped some target only $n times in $(( $(date +%s) - T_PROM )) s"; exit 1; }
export WINDOW="$(( $(date +%s) - T_PROM + 5 ))s"
python3 - <<'PY'
import json, os, urllib.parse, urllib.request
prom, window = os.environ["PROM"], os.environ["WINDOW"]
def query(q):
    with urllib.request.urlopen(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})) as r:
        body = json.load(r)
    assert body["status"] == "success", (q, body)
    return body["data"]["result"]
scrapes = {(r["metric"]["job"], r["metric"]["instance"]): int(float(r["value"][1]))
           for r in query('count_over_time(up{job=~"duet-.*"}[%s])' % window)}
up = {(r["metric"]["job"], r["metric"]["instance"]): int(float(r["value"][1]))
      for r in query('sum_over_time(up{job=~"duet-.*"}[%s])' % window)}
jobs = sorted(j for j, _ in scrapes)
assert jobs == ["duet-learner", "duet-rollout", "duet-rollout", "duet-scorer"], scrapes
bad = {t: (up.get(t), n) for t, n in scrapes.items() if up.get(t) != n or n < 5}
assert not bad, "targets not up on every scrape (up, scrapes): %s" % bad
fired = query('count_over_time(ALERTS{alertstate="firing"}[%s])' % window)
assert not fired, "alerts fired in a healthy run: %s" % fired
active = query("ALERTS")
assert not active, "alerts pending or firing at the end of a healthy run: %s" % active
targets = json.load(urllib.request.urlopen(prom + "/api/v1/targets"))["data"]["activeTargets"]
assert all(t["health"] == "up" for t in targets) and len(targets) == 4, targets
print("shipped scrape config ok: %d targets, every one up on all of its %s scrapes in %s; no alert fired"
      % (len(scrapes), sorted(set(scrapes.values())), window))
PY
echo "metrics shipped test ok"
