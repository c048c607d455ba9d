#!/usr/bin/env bash
# Weight-broadcast throughput next to raw loopback TCP throughput, both measured in this
# run: iperf3 (one TCP stream over 127.0.0.1 for 5 s), then bench/broadcast_bench
# (Gloo over loopback to receiver processes), then a table with the ratio of each.
#
# Usage: tools/bench/run_broadcast_bench.sh [BUILD_DIR] [broadcast_bench flags...]
#   BUILD_DIR defaults to $DUET_BUILD_DIR or build; build it first with
#   ninja -C BUILD_DIR broadcast_bench.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${DUET_BUILD_DIR:-build}"
if [[ $# -gt 0 && "$1" != --* ]]; then
  BUILD_DIR="$1"
  shift
fi
BENCH="$BUILD_DIR/tools/bench/broadcast_bench"
if [[ ! -x "$BENCH" ]]; then
  echo "no $BENCH: run ninja -C $BUILD_DIR broadcast_bench first" >&2
  exit 1
fi
command -v iperf3 >/dev/null || { echo "iperf3 missing (deploy/local/install-deps.sh)" >&2; exit 1; }

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# A free port: bound to 0 by the kernel, released, then handed to iperf3.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
iperf3 -s -1 -p "$PORT" >"$TMP/iperf_server.log" 2>&1 &
SERVER_PID=$!
# iperf3 has no readiness signal: poll until the port listens (at most ~5 s).
for _ in $(seq 1 100); do
  if ss -ltnH "sport = :$PORT" | grep -q .; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$TMP/iperf_server.log" >&2; exit 1; fi
  sleep 0.05
done
echo "== iperf3: loopback TCP, 1 stream, 5 s (port $PORT)"
iperf3 -c 127.0.0.1 -p "$PORT" -t 5 -J >"$TMP/iperf.json"
wait "$SERVER_PID" || true
SERVER_PID=""

echo "== broadcast_bench"
"$BENCH" --benchmark_out="$TMP/bench.json" --benchmark_out_format=json "$@"

python3 - "$TMP/iperf.json" "$TMP/bench.json" <<'EOF'
import json, sys
iperf = json.load(open(sys.argv[1]))
tcp = iperf["end"]["sum_received"]["bits_per_second"] / 8 / 1e9
bench = json.load(open(sys.argv[2]))
print()
print(f"loopback TCP (iperf3, 1 stream): {tcp:.2f} GB/s")
print()
print(f"{'benchmark':<52} {'GB/s':>7} {'agg GB/s':>9} {'GB/s / TCP':>11} {'agg / TCP':>10}")
for b in bench["benchmarks"]:
    if b.get("error_occurred"):
        print(f"{b['name']:<52} ERROR {b.get('error_message', '')}")
        continue
    name = b["run_name"] if "run_name" in b else b["name"]
    name = name.replace("/min_time:1.000", "").replace("/manual_time", "").replace("/real_time", "")
    if "GB/s" in b:  # BM_Broadcast: per receiver and aggregate
        g, agg = b["GB/s"], b["agg_GB/s"]
        print(f"{name:<52} {g:>7.2f} {agg:>9.2f} {g / tcp:>11.2f} {agg / tcp:>10.2f}  {b.get('label', '')}")
    elif "GB" in b:  # BM_Checksum, BM_KeyedChecksum: a rate counter
        print(f"{name:<52} {b['GB']:>7.2f} {'':>9} {'':>11} {'':>10}  checksum (CPU, not network)")
EOF
