# Sourced by the emulated-cluster bench scripts: an emulated cluster of RANKS network
# namespaces $NS-r0 ... $NS-r<RANKS-1>, each with eth0 at $SUBNET.<r+1>/24, joined by veth
# links to one bridge in $NS-sw ("the switch") and shaped with tc in both directions (a
# full-duplex NIC of RATE, LATENCY one way where the kernel has netem).
# Environment: RATE (default 1gbit), LATENCY (default 100us), RANKS (default 9), SUBNET
# (default 10.213.0; refused if any interface here already has an address in it).
# cluster_up [TOOL...]: checks root and the tools (ip, tc and TOOL...), sets NS, TMP and
# an EXIT trap that kills everything in the namespaces, deletes them and removes TMP
# (whatever else the caller adds to cleanup_extra runs first), then builds the cluster.
# No address is added outside the namespaces.

cluster_up() {
  [[ $(id -u) == 0 ]] || { echo "needs root (network namespaces and tc)" >&2; exit 1; }
  local tool
  for tool in ip tc "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool missing (deploy/local/install-deps.sh)" >&2; exit 1; }
  done
  RATE="${RATE:-1gbit}"
  LATENCY="${LATENCY:-100us}"
  RANKS="${RANKS:-9}"
  SUBNET="${SUBNET:-10.213.0}"
  if ip -o -4 addr show | awk '{print $4}' | grep -q "^${SUBNET//./\\.}\."; then
    echo "an interface here already has an address in $SUBNET.0/24: set SUBNET" >&2
    exit 1
  fi
  NS="duetb$$"
  TMP="$(mktemp -d)"
  trap cluster_down EXIT INT TERM
  # The switch: a bridge in its own namespace.
  ip netns add "$NS-sw"
  ip -n "$NS-sw" link add br0 type bridge
  ip -n "$NS-sw" link set br0 up
  # tbf: RATE with a burst of at least one 64 KiB segment (GSO); netem adds LATENCY where
  # this kernel has it (sch_netem is a module some kernels lack: then no delay, and the
  # table says so).
  if ip netns exec "$NS-sw" tc qdisc add dev br0 root netem delay 1us 2>/dev/null; then
    ip netns exec "$NS-sw" tc qdisc del dev br0 root
    HAVE_NETEM=1
  else
    HAVE_NETEM=0
    echo "note: this kernel has no netem qdisc: links get RATE but no added latency" >&2
    LATENCY="0 (no netem)"
  fi
  local r ns
  for ((r = 0; r < RANKS; r++)); do
    ns="$NS-r$r"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "duetb$$r$r" type veth peer name "p$r" netns "$NS-sw"
    ip link set "duetb$$r$r" netns "$ns"
    ip -n "$ns" link set "duetb$$r$r" name eth0
    ip -n "$ns" addr add "$SUBNET.$((r + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$NS-sw" link set "p$r" master br0
    ip -n "$NS-sw" link set "p$r" up
    cluster_shape "$ns" eth0        # the rank's uplink
    cluster_shape "$NS-sw" "p$r"    # its downlink
  done
}

cluster_shape() {  # namespace device
  if [[ $HAVE_NETEM == 1 ]]; then
    ip netns exec "$1" tc qdisc add dev "$2" root handle 1: netem delay "$LATENCY" limit 100000
    ip netns exec "$1" tc qdisc add dev "$2" parent 1: handle 2: tbf rate "$RATE" burst 256kb latency 50ms
  else
    ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$RATE" burst 256kb latency 50ms
  fi
}

cluster_down() {
  local ns
  if declare -F cleanup_extra >/dev/null; then cleanup_extra || true; fi
  for ns in $(ip netns list | awk '{print $1}' | grep "^$NS-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
