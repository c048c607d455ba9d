#!/usr/bin/env bash
# Installs every Debian bookworm package that Duet's build, tests, benchmarks and tools
# need. Idempotent: packages already present are skipped, and apt is not touched at all
# when everything is installed.
#   install-deps.sh            everything (build, tests, benchmarks, deployment checks)
#   install-deps.sh --build    only what configuring and compiling the tree needs (the
#                              container image's build stage, deploy/docker/Dockerfile)
set -euo pipefail

BUILD_ONLY=0
if [[ "${1:-}" == "--build" ]]; then BUILD_ONLY=1; fi

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  # LibTorch (CPU) + c10d Gloo headers; OpenBLAS or torch runs ~20x slower.
  libtorch-dev libgloo-dev libopenblas0-pthread libopenblas-dev
  # RPC, serialization, errors, logging, flags, metrics; OpenSSL's libcrypto (the
  # weight broadcast's keyed checksum).
  libssl-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev prometheus-cpp-dev
  # Formats: JSON, YAML, PNG.
  nlohmann-json3-dev libyaml-cpp-dev libpng-dev
  # Tests and benchmarks (CMake requires them at configure time).
  libgtest-dev libgmock-dev libbenchmark-dev
)

PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  # Independent PyTorch reference (parity test) and the Python decode-loop baseline.
  python3 python3-torch python3-numpy
  # Loopback throughput baseline for the broadcast benchmark; Prometheus for metric tests
  # (tests/metrics_live_test.sh also needs curl and PyYAML; Alertmanager comes by command).
  iperf3 prometheus curl python3-yaml
  # Certificates for the TLS tests.
  openssl
  # A single-node Slurm for tests/slurm_test.sh: it starts its own munged, slurmctld and
  # slurmd with a private configuration and needs none of the packages' services.
  slurmctld slurmd slurm-client munge
  # The sanitizer runtimes of clang 14 (tests/sanitizers.sh: ASan, UBSan, LSan, TSan).
  libclang-rt-14-dev
)

# Tools found by their command: the package is installed only when the command is
# missing, since a machine may have it from elsewhere (node from NodeSource, kubectl from
# Google's repository) and the Debian package would conflict with it.
# Deployment checks (tests/deploy_manifests_test.sh): node and npm run the schema
# validators, kubectl renders the kustomizations, amtool checks the Alertmanager config,
# and ShellCheck lints the Slurm scripts; prometheus-alertmanager receives the alerts of
# tests/metrics_live_test.sh.
COMMANDS=(
  node:nodejs npm:npm kubectl:kubernetes-client amtool:prometheus-alertmanager
  prometheus-alertmanager:prometheus-alertmanager shellcheck:shellcheck
  # clang 14 checks the lock annotations (tests/thread_safety_check.sh) and the format.
  clang++:clang clang-format:clang-format
)

if ((BUILD_ONLY)); then
  PACKAGES=("${BUILD_PACKAGES[@]}")
  COMMANDS=()
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

for cp in ${COMMANDS[@]+"${COMMANDS[@]}"}; do
  if ! command -v "${cp%%:*}" >/dev/null 2>&1; then
    missing+=("${cp#*:}")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
