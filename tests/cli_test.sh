#!/usr/bin/env bash
# The `duet` command refuses what it would silently ignore (issue 15, point 5): a flag of
# another command (`duet local --steps=3`), a stray word (`lr=1e-3`), an empty recipe
# file. Each is refused with exit code 2 (or the command's error) and a message naming
# it, before anything is written.
# Usage: cli_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
DUET="$1/tools/duet"; SRC="$2"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
refused() {  # WHAT EXPECTED_MESSAGE ARGS...: the command fails, says so, writes no --out
  local what="$1" message="$2"; shift 2
  local rc=0
  "$DUET" "$@" > "$TMP/out.txt" 2>&1 || rc=$?
  [[ $rc -ne 0 ]] || { cat "$TMP/out.txt"; echo "FAIL: $what was accepted"; exit 1; }
  grep -qF -- "$message" "$TMP/out.txt" || { cat "$TMP/out.txt"; echo "FAIL: $what: no '$message'"; exit 1; }
  [[ ! -e "$TMP/run" ]] || { echo "FAIL: $what wrote $TMP/run"; exit 1; }
  echo "ok: $what (exit $rc)"
}
refused "a flag of another command" "--steps is not a flag of this command" \
  local --recipe="$SRC/configs/recipes/quick.yaml" --steps=3 --out="$TMP/run"
refused "a stray word" "unexpected argument 'lr=1e-3'" \
  local --recipe="$SRC/configs/recipes/quick.yaml" lr=1e-3 --out="$TMP/run"
refused "a pretraining flag given to duet rl" "--batch_size is not a flag of this command" \
  rl --batch_size=4 --out="$TMP/run"
: > "$TMP/empty.yaml"
refused "an empty recipe file" "the recipe file is empty" local --recipe="$TMP/empty.yaml" --out="$TMP/run"
refused "an empty recipe file (duet rl)" "the recipe file is empty" rl --recipe="$TMP/empty.yaml" --out="$TMP/run"
# And a command's own flags still pass (--help exits 0 without running anything).
"$DUET" local --recipe="$SRC/configs/recipes/quick.yaml" --help > /dev/null
echo "cli_test: OK"
