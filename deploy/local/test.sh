#!/usr/bin/env bash
# The test command: installs dependencies if missing, builds (Release, incremental) and runs
# every test with ctest; then the sanitizer runs, each in its own clang tree beside the
# Release one (tests/sanitizers.sh): AddressSanitizer + UndefinedBehaviorSanitizer over the
# unit tests (build-asan/), ThreadSanitizer over the queue, coordinator, worker and gRPC
# service tests (build-tsan/). Extra arguments go to ctest (e.g. -L unit, -R oracle) and
# skip the sanitizer runs, as does DUET_SANITIZERS=0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/build.sh
BUILD_DIR="${DUET_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900 "$@"
if (($# == 0)) && [[ "${DUET_SANITIZERS:-1}" != 0 ]]; then
  bash tests/sanitizers.sh asan "$ROOT"
  bash tests/sanitizers.sh tsan "$ROOT"
fi
