#!/usr/bin/env bash
# Metrics overhead: the same short `duet local` run (same data, base model, recipe and
# seed) with metrics off and with every process serving /metrics while the real
# Prometheus scrapes them every second; mean step time of each. Runs alternate (off, on,
# on, off, ...) in PAIRS pairs so that drift of a shared machine falls on both sides.
# Step time: the learner's phases of the step (metrics.jsonl rollout_s + score_s +
# update_s + sync_s), the first step (warm-up) left out. Also checks that both sides end
# with the same weights checksum (metrics never touch training).
#
# Usage: tools/bench/run_metrics_overhead_bench.sh [BUILD_DIR [PAIRS [STEPS]]]
#   defaults: build, 3 pairs, 40 steps per run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tiny_world.sh"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${1:-${DUET_BUILD_DIR:-build}}"
PAIRS="${2:-3}"
STEPS="${3:-40}"
DUET="$BUILD_DIR/tools/duet"
[[ -x "$DUET" ]] || { echo "no $DUET: build first" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus missing (deploy/local/install-deps.sh)" >&2; exit 1; }

TMP="$(mktemp -d)"
PROM_PID=""
cleanup() {
  if [[ -n "$PROM_PID" ]]; then kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

make_tiny_world "$DUET" "$TMP"
cat > "$TMP/recipe.yaml" <<YAML
steps: $STEPS
directions: joint
frozen_scorer: false
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: $STEPS
YAML

# Prometheus for the "on" runs: 1 s scrapes of whatever targets file is in place.
PROM_PORT="$(free_ports 1)"
mkdir -p "$TMP/targets"
cat > "$TMP/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: duet
    file_sd_configs: [{files: ["$TMP/targets/*.json"], refresh_interval: 1s}]
YAML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address="127.0.0.1:$PROM_PORT" > "$TMP/prometheus.log" 2>&1 &
PROM_PID=$!

run() {  # $1: on|off, $2: run index
  local out="$TMP/run-$2-$1" extra=() copier="" base=0
  rm -f "$TMP/targets/run.json"
  if [[ "$1" == on ]]; then
    base="$(free_ports 4)"
    extra=(--metrics_base_port="$base")
    # Scraped from the moment the processes start: the file is written before they are.
    ( for _ in $(seq 300); do
        [[ -f "$out/prometheus_targets.json" ]] && { cp "$out/prometheus_targets.json" "$TMP/targets/.t" &&
          mv "$TMP/targets/.t" "$TMP/targets/run.json"; break; }
        sleep 0.1
      done ) &
    copier=$!
  fi
  "$DUET" local --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" --out="$out" \
    --limit=2 --rollout_workers=2 --scorer_workers=1 "${extra[@]}" > "$out.log" 2>&1 ||
    { tail -20 "$out.log"; exit 1; }
  if [[ -n "$copier" ]]; then wait "$copier"; fi
  if [[ "$1" == on ]]; then
    local scrapes
    scrapes="$(curl -sf "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode \
      "query=sum(sum_over_time(up{instance=~\"127.0.0.1:($base|$((base + 1))|$((base + 2))|$((base + 3)))\"}[10m]))" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')"
    echo "$scrapes" > "$out.scrapes"
    # The server-side cost bound: how long each scrape took (Prometheus's own measure).
    curl -sf "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode \
      "query=max(max_over_time(scrape_duration_seconds{instance=~\"127.0.0.1:($base|$((base + 1))|$((base + 2))|$((base + 3)))\"}[10m])) * 1000" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("%.2f" % float(r[0]["value"][1]) if r else "nan")' \
      > "$out.scrape_ms"
    curl -sf "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode \
      "query=avg(avg_over_time(scrape_duration_seconds{instance=~\"127.0.0.1:($base|$((base + 1))|$((base + 2))|$((base + 3)))\"}[10m])) * 1000" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("%.2f" % float(r[0]["value"][1]) if r else "nan")' \
      >> "$out.scrape_ms"
  fi
  echo "$1 $out" >> "$TMP/runs.txt"
}

for ((i = 0; i < PAIRS; ++i)); do
  if ((i % 2 == 0)); then run off "$i"; run on "$i"; else run on "$i"; run off "$i"; fi
done

python3 - "$TMP/runs.txt" "$STEPS" <<'PY'
import json, os, statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
steps = int(sys.argv[2])
side = {"on": [], "off": []}
checksums = set()
print("%-4s %-7s %12s %8s %16s" % ("run", "metrics", "mean step s", "scrapes", "scrape ms avg/max"))
scrape_ms = []
for k, (mode, out) in enumerate(runs):
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    assert len(recs) == steps, (out, len(recs))
    t = [r["rollout_s"] + r["score_s"] + r["update_s"] + r["sync_s"] for r in recs[1:]]
    side[mode].append(statistics.mean(t))
    checksums.add(recs[-1]["checksum"])
    scrapes = open(out + ".scrapes").read().strip() if mode == "on" else "-"
    ms = "-"
    if mode == "on":
        mx, avg = [float(x) for x in open(out + ".scrape_ms").read().split()]
        scrape_ms.append(avg)
        ms = "%.2f/%.2f" % (avg, mx)
    print("%-4d %-7s %12.4f %8s %16s" % (k, mode, statistics.mean(t), scrapes, ms))
assert len(checksums) == 1, "final weights differ between runs: %s" % checksums
on, off = statistics.mean(side["on"]), statistics.mean(side["off"])
print("mean step time: metrics off %.4f s, on %.4f s (%d runs each, %d steps, first left out)"
      % (off, on, len(side["on"]), steps))
print("overhead: %+.2f%% (goal < 1%%); run-to-run spread of the off runs: %.2f%%"
      % (100 * (on - off) / off, 100 * (max(side["off"]) - min(side["off"])) / off))
print("scrape: %.2f ms on average per scrape of one process (wall time, request to last byte), "
      "once a second: at most %.2f%% of one core per process" % (statistics.mean(scrape_ms), statistics.mean(scrape_ms) / 10))
print("final weights checksum identical in every run: %d" % checksums.pop())
PY
