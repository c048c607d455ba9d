#!/usr/bin/env bash
# The test command: installs dependencies if missing, builds (Release, incremental) and runs
# every test with ctest. Extra arguments go to ctest (e.g. -L unit, -R oracle).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
bash deploy/local/build.sh
BUILD_DIR="${DUET_BUILD_DIR:-build}"
ctest --test-dir "$BUILD_DIR" --output-on-failure --timeout 900 "$@"
