#!/usr/bin/env bash
# The clock check: the folders below read and wait on time only through an injected
# duet::Clock (common/base/clock.h), so that their unit tests drive time with FakeClock.
# Fails naming FILE:LINE for every direct read or sleep in a non-test .h/.cc file there:
# absl::Now(, absl::SleepFor(, std::chrono::{steady,system,high_resolution}_clock::now(,
# std::this_thread::sleep_for( / sleep_until(. Test files (*_test.cc) and testing/
# folders are exempt. Then a self-test: a copy of one checked file with a planted read
# must fail the same check, so the check cannot pass by checking nothing.
# Usage: clock_check.sh SOURCE_DIR [FOLDER...]   (default: learner/service)
set -euo pipefail
SRC="$(cd "$1" && pwd)"; shift
FOLDERS=("$@")
((${#FOLDERS[@]} > 0)) || FOLDERS=(learner/service)
PATTERN='absl::Now\(|absl::SleepFor\(|(steady|system|high_resolution)_clock::now\(|sleep_for\(|sleep_until\('

# Prints FILE:LINE:TEXT for each direct time read under ROOT/FOLDER...; exit 1 if any.
check() {
  local root="$1"; shift
  local files=() found=0 f
  for folder in "$@"; do
    [[ -d "$root/$folder" ]] || { echo "no folder $root/$folder"; return 2; }
    while IFS= read -r f; do files+=("$f"); done < <(
      cd "$root" && find "$folder" -type f \( -name '*.h' -o -name '*.cc' \) \
        ! -name '*_test.cc' ! -path '*/testing/*' | sort)
  done
  ((${#files[@]} > 0)) || { echo "no C++ files under ${*}"; return 2; }
  for f in "${files[@]}"; do
    # Lines that are only a comment do not count.
    if grep -nE "$PATTERN" "$root/$f" | grep -vE '^[0-9]+:[[:space:]]*//' | sed "s#^#$f:#"; then
      found=1
    fi
  done
  echo "clock: ${#files[@]} files checked under ${*}" >&2
  return "$found"
}

if ! check "$SRC" "${FOLDERS[@]}"; then
  echo "FAIL: direct reads of the time above; take a duet::Clock* and use clock->Now()" \
       "/ SleepFor / AwaitWithDeadline (common/base/clock.h)"
  exit 1
fi
echo "ok: no direct time reads in ${FOLDERS[*]}"

# Self-test: plant a read in a copy of the first checked file of the first folder.
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
first="$(cd "$SRC" && find "${FOLDERS[0]}" -type f -name '*.cc' ! -name '*_test.cc' \
           ! -path '*/testing/*' | sort | head -1)"
mkdir -p "$TMP/${FOLDERS[0]}"
cp "$SRC/$first" "$TMP/$first"
printf 'static auto planted_time_read = std::chrono::steady_clock::now();\n' >> "$TMP/$first"
if out="$(check "$TMP" "${FOLDERS[0]}" 2> /dev/null)"; then
  echo "FAIL: a planted direct time read passed the clock check"; exit 1
fi
grep -q "^$first:" <<< "$out" || { echo "FAIL: the planted read was not named: $out"; exit 1; }
echo "ok: a planted read fails the same check ($(head -1 <<< "$out" | cut -d: -f1,2))"
