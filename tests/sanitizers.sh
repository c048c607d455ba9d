#!/usr/bin/env bash
# Sanitizer runs, each in its own clang build tree beside the Release one (the Release
# build is GCC's and stays as it is; these trees build only what their tests need).
#   sanitizers.sh asan SRC [BUILD_DIR]   AddressSanitizer + UndefinedBehaviorSanitizer over
#                                        every unit-labelled gtest binary (default tree:
#                                        SRC/build-asan)
#   sanitizers.sh tsan SRC [BUILD_DIR]   ThreadSanitizer over the queue, coordinator, sync,
#                                        worker and gRPC service tests (SRC/build-tsan)
#   sanitizers.sh selftest SRC           each sanitizer, on a small program with a planted
#                                        heap overflow, signed overflow and data race, must
#                                        fail, and without them pass
# Only Duet's code is instrumented: LibTorch, gRPC, protobuf, Abseil, glog and gflags are
# Debian's uninstrumented builds. What that means, and how it is handled:
#   - ASan/UBSan: errors inside those libraries are not seen; leaks are checked (LSan),
#     with the suppressions of tests/sanitizers/lsan.supp (each one says why).
#   - TSan: accesses inside those libraries are not seen, and Abseil's Mutex, CondVar and
#     Notification (used by Duet and by gRPC) would create no happens-before edge TSan
#     can see, so every access guarded by an absl::Mutex would be reported.
#     tests/sanitizers/tsan_absl_sync.cc, linked into each TSan test binary, interposes
#     those entry points and tells TSan of each edge; tests/sanitizers/tsan.supp holds the
#     suppressions (each one says why). OMP_NUM_THREADS=1 as in every test.
# Any sanitizer report fails the run: the test that produced it stops (halt_on_error), the
# report is kept in BUILD_DIR/sanitizer-reports/, and a test failed for any other reason
# gets one more try (timing under the sanitizers), while a report from any try still fails.
set -euo pipefail
MODE="$1"; SRC="$(cd "$2" && pwd)"
command -v clang++ > /dev/null || { echo "clang++ not installed (deploy/local/install-deps.sh)"; exit 1; }
SUP="$SRC/tests/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:strict_string_checks=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$SUP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$SUP/tsan.supp:print_suppressions=0"

case "$MODE" in
  asan) FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" ;;
  tsan) FLAGS="-fsanitize=thread" ;;
  selftest)
    TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
    ABSL="-labsl_synchronization -labsl_time -labsl_time_zone -labsl_int128 -labsl_base -labsl_raw_logging_internal -labsl_stacktrace -labsl_symbolize -labsl_malloc_internal -ldl -lpthread"
    cat > "$TMP/p.cc" <<'CC'
#include <cstdlib>
#include <cstring>
#include <thread>
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
absl::Mutex mu;
int guarded = 0;
int unguarded = 0;
int main(int argc, char** argv) {
  const char* plant = argc > 1 ? argv[1] : "";
  if (std::strcmp(plant, "overflow") == 0) {
    int* a = new int[4];
    a[argc + 2] = 1;  // a[4]: one past the end
    const int r = a[0];
    delete[] a;
    return r;
  }
  if (std::strcmp(plant, "signed") == 0) {
    int big = std::atoi("2147483647");
    return big + argc > 0 ? 0 : 1;  // INT_MAX + 2: signed overflow
  }
  auto work = [&] {
    for (int i = 0; i < 2000; ++i) {
      { absl::MutexLock l(&mu); ++guarded; }
      if (std::strcmp(plant, "race") == 0) ++unguarded;
    }
  };
  std::thread a(work), b(work);
  a.join(); b.join();
  // A waiter whose condition absl evaluates inside the library, as WorkQueue::Pull's does.
  bool ready = false;
  int payload = 0;
  std::thread waiter([&] {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(&ready));
    guarded += payload;
  });
  absl::SleepFor(absl::Milliseconds(50));  // the waiter has evaluated its condition
  {
    absl::MutexLock l(&mu);
    payload = 1;
    ready = true;
  }
  waiter.join();
  return guarded == 4001 ? 0 : 1;
}
CC
    clang++ -std=c++17 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all "$TMP/p.cc" -o "$TMP/asan" $ABSL
    clang++ -std=c++17 -g -O1 -fsanitize=thread "$TMP/p.cc" "$SUP/tsan_absl_sync.cc" -o "$TMP/tsan" $ABSL
    expect() {  # $1: pass|fail, $2: binary, $3: plant, $4: report text when failing
      if "$TMP/$2" "$3" > "$TMP/out" 2>&1; then
        [[ "$1" == pass ]] || { cat "$TMP/out"; echo "FAIL: $2 did not catch the planted $3"; exit 1; }
      else
        [[ "$1" == fail ]] || { cat "$TMP/out"; echo "FAIL: $2 reported a clean run ($3)"; exit 1; }
        grep -q "$4" "$TMP/out" || { cat "$TMP/out"; echo "FAIL: $2 $3: no '$4'"; exit 1; }
      fi
    }
    expect pass asan clean "" && expect fail asan overflow "heap-buffer-overflow"
    expect fail asan signed "signed integer overflow"
    expect pass tsan clean "" && expect fail tsan race "ThreadSanitizer: data race"
    echo "ok: ASan, UBSan and TSan (with the Abseil support) pass the clean program and catch each planted error"
    exit 0 ;;
  *) echo "usage: $0 asan|tsan|selftest SRC [BUILD_DIR]"; exit 2 ;;
esac

BUILD="${3:-$SRC/build-$MODE}"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  mkdir -p "$BUILD"
  extra=()
  if [[ "$MODE" == tsan ]]; then
    extra=(-DDUET_TEST_EXTRA_SRCS="$SUP/tsan_absl_sync.cc" -DDUET_TEST_EXTRA_LIBS=dl)
  fi
  # -O1: the sanitizers' usual level; -gline-tables-only: file:line in reports, cheaply.
  CC=clang CXX=clang++ cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DCMAKE_CXX_FLAGS="$FLAGS -gline-tables-only" \
    -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" "${extra[@]}" > "$BUILD/duet-configure.log" 2>&1 ||
    { cat "$BUILD/duet-configure.log"; exit 1; }
fi

if [[ "$MODE" == asan ]]; then
  # Every unit-labelled test that is a gtest binary of the tree: its name is an
  # executable target of the build (duet_cc_test registers the target's own name).
  mapfile -t tests < <(ctest --test-dir "$BUILD" -N -L '^unit$' --show-only=json-v1 | python3 -c '
import json, subprocess, sys
targets = {line.split(":")[0] for line in subprocess.run(
    ["ninja", "-C", sys.argv[1], "-t", "targets", "all"], capture_output=True, text=True,
    check=True).stdout.splitlines()}
for t in json.load(sys.stdin)["tests"]:
    if t["name"] in targets:
        print(t["name"])' "$BUILD")
else
  tests=(work_queue_test remote_backends_test queue_metrics_test learner_telemetry_test
         backpressure_test service_test external_reward_test health_server_test
         worker_pool_test scorer_handler_test rendezvous_store_test weight_stream_test
         weight_sync_manager_test)
fi
((${#tests[@]} > 0)) || { echo "no tests selected"; exit 1; }
echo "$MODE: building ${#tests[@]} test binaries in $BUILD"
cmake --build "$BUILD" -j "$(nproc)" --target "${tests[@]}"
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
# Every report goes to a file (log_path), so that none is lost to a retry: a test that fails
# for time (the timing-sensitive gRPC tests run 5-15x slower here) gets one more try, but
# any sanitizer report from any try fails the run.
REPORTS="$BUILD/sanitizer-reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$REPORTS/ubsan"
export TSAN_OPTIONS="$TSAN_OPTIONS:log_path=$REPORTS/tsan"
rc=0
ctest --test-dir "$BUILD" --output-on-failure --timeout 900 --repeat until-pass:2 -R "$regex" || rc=$?
if compgen -G "$REPORTS/*" > /dev/null; then
  for f in "$REPORTS"/*; do echo "== $f"; cat "$f"; done
  echo "$MODE: $(ls "$REPORTS" | wc -l) sanitizer report(s), above"
  exit 1
fi
((rc == 0)) || { echo "$MODE: tests failed twice (no sanitizer report)"; exit "$rc"; }
echo "$MODE: ${#tests[@]} test binaries clean"
