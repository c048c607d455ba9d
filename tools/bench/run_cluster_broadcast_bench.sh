#!/usr/bin/env bash
# The weight broadcast on an emulated cluster: the learner (rank 0) and each receiver in
# its own network namespace, every namespace joined to one bridge ("the switch") by a
# veth link shaped with tc in both directions (a full-duplex NIC of RATE, LATENCY one
# way). Loopback hides what a real NIC shows: Gloo's broadcast makes the root send one
# copy per receiver through its one link, a chain sends each byte once per link.
#
# Runs, in one go: iperf3 over one emulated link (the link's real rate here), then
# broadcast_bench's BM_BroadcastScale (base, keyed, 4 MiB buckets, 1/2/4/8 receivers,
# collective and chain) with every rank in its namespace, then a table: time per
# broadcast, and the ratio to one receiver's time for the same topology. With
# --benchmark_filter=BM_BroadcastWire it runs the wire-dtype rows instead (float32 against
# bfloat16, plain against keyed checksum) and prints their table.
#
# Usage (root: it creates namespaces, links and qdiscs):
#   tools/bench/run_cluster_broadcast_bench.sh [BUILD_DIR] [broadcast_bench flags...]
# Environment: RATE (default 1gbit), LATENCY (default 100us), RANKS (default 9: the
# learner and 8 receivers), SUBNET (default 10.213.0: addresses SUBNET.1 ... SUBNET.RANKS;
# refused if any interface here already has an address in SUBNET.0/24).
# Everything it creates (namespaces duetb<PID>-*, and the links inside them) is removed at
# exit, however it exits; no address is added outside those namespaces.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD_DIR="${DUET_BUILD_DIR:-build}"
if [[ $# -gt 0 && "$1" != --* ]]; then
  BUILD_DIR="$1"
  shift
fi
BENCH="$(realpath "$BUILD_DIR/tools/bench/broadcast_bench")"
[[ -x "$BENCH" ]] || { echo "no $BENCH: run ninja -C $BUILD_DIR broadcast_bench first" >&2; exit 1; }
# The namespaces, the switch and the shaped links (tools/bench/cluster_netns.sh).
source "$ROOT/tools/bench/cluster_netns.sh"
cluster_up iperf3
echo "== emulated cluster: $RANKS namespaces, links of $RATE and $LATENCY each way"
echo "== iperf3 over one link ($SUBNET.2 -> $SUBNET.1), 1 stream, 5 s"
ip netns exec "$NS-r0" iperf3 -s -1 -B "$SUBNET.1" >"$TMP/iperf_server.log" 2>&1 &
for _ in $(seq 1 100); do
  ip netns exec "$NS-r0" ss -ltnH "sport = :5201" | grep -q . && break
  sleep 0.05
done
ip netns exec "$NS-r1" iperf3 -c "$SUBNET.1" -t 5 -J >"$TMP/iperf.json"
wait || true

echo "== broadcast_bench BM_BroadcastScale, rank r in namespace $NS-r<r>"
ip netns exec "$NS-r0" env \
  DUET_BENCH_LAUNCHER="ip netns exec $NS-r{rank}" \
  DUET_BENCH_HOST="$SUBNET.{rank1}" \
  "$BENCH" --benchmark_filter='BM_BroadcastScale' \
  --benchmark_out="$TMP/bench.json" --benchmark_out_format=json "$@"

python3 - "$TMP/iperf.json" "$TMP/bench.json" "$RATE" "$LATENCY" <<'EOF'
import json, re, sys
iperf = json.load(open(sys.argv[1]))
link = iperf["end"]["sum_received"]["bits_per_second"] / 8 / 1e9
bench = json.load(open(sys.argv[2]))
print()
print(f"one emulated link ({sys.argv[3]}, {sys.argv[4]} each way), iperf3: {link:.3f} GB/s")
print()
runs = {}  # (topology, receivers) -> the runs' seconds per broadcast (--benchmark_repetitions)
for b in bench["benchmarks"]:
    m = re.search(r"receivers:(\d+)/topology:(\d)", b["name"])
    if not m or b.get("run_type") == "aggregate":
        continue
    receivers, topology = int(m.group(1)), "chain" if m.group(2) == "1" else "collective"
    if b.get("error_occurred"):
        print(f"{topology} {receivers}: ERROR {b.get('error_message', '')}")
        continue
    runs.setdefault((topology, receivers), []).append(b["s"])
mb = next(b["MB"] for b in bench["benchmarks"] if "MB" in b) / 1e3
print(f"{'topology':<11} {'receivers':>9} {'s / broadcast (runs)':>28} {'x one receiver':>15} "
      f"{'GB/s per receiver':>18} {'/ link':>7}")
mean = lambda xs: sum(xs) / len(xs)
for topology in ("collective", "chain"):
    one = runs.get((topology, 1))
    for receivers in (1, 2, 4, 8):
        xs = runs.get((topology, receivers))
        if xs is None:
            continue
        s = mean(xs)
        ratio = s / mean(one) if one else float("nan")
        each = " ".join(f"{x:.2f}" for x in xs)
        print(f"{topology:<11} {receivers:>9} {s:>8.2f} ({each:>17}) {ratio:>15.2f} "
              f"{mb / s:>18.3f} {mb / s / link:>7.2f}")
# BM_BroadcastWire (when the flags select it): float32 against bfloat16 on the wire,
# plain against keyed checksum.
wire = {}
for b in bench["benchmarks"]:
    m = re.search(r"BM_BroadcastWire/preset:\d/receivers:(\d+)/keyed:(\d)/wire:(\d)", b["name"])
    if m and b.get("run_type") != "aggregate" and not b.get("error_occurred"):
        wire[tuple(int(g) for g in m.groups())] = b
if wire:
    print()
    print(f"{'receivers':>9} {'wire':>9} {'checksum':>9} {'wire MB':>8} {'s / sync':>9} "
          f"{'x float32 plain':>16}")
    for (receivers, keyed, dtype), b in sorted(wire.items()):
        base = wire.get((receivers, 0, 0))
        ratio = b["s"] / base["s"] if base else float("nan")
        print(f"{receivers:>9} {'bfloat16' if dtype else 'float32':>9} "
              f"{'keyed' if keyed else 'plain':>9} {b['wire_MB']:>8.0f} {b['s']:>9.2f} "
              f"{ratio:>16.2f}")
EOF
