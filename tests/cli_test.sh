#!/usr/bin/env bash
# The programs refuse what they would silently ignore (issue 15, point 5): a flag of
# another command (`duet local --steps=3`), a stray word (`lr=1e-3`), an empty recipe
# file, an unknown recipe key. Each is refused with exit code 2 (or the command's error)
# and a message naming it, before anything is written. Every recipe key is set the same
# way in duet local, duet rl and duet-learner (--set KEY=VALUE), and each one's --help
# lists every key.
# Usage: cli_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BIN="$1"; DUET="$1/tools/duet"; LEARNER="$1/learner/service/duet-learner"; SRC="$2"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
refused() {  # WHAT EXPECTED_MESSAGE ARGS...: `duet ARGS` fails, says so, writes no --out
  local what="$1" message="$2"; shift 2
  refused_by "$what" "$message" "$DUET" "$@"
}
refused_by() {  # WHAT EXPECTED_MESSAGE PROGRAM ARGS...
  local what="$1" message="$2"; shift 2
  local rc=0
  "$@" > "$TMP/out.txt" 2>&1 || rc=$?
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
QUICK="$SRC/configs/recipes/quick.yaml"
refused "an unknown recipe key (duet local)" "unknown key 'grpo.kl_coeff'" \
  local --recipe="$QUICK" --set grpo.kl_coeff=0.05 --out="$TMP/run"
refused "an unknown recipe key (duet rl)" "unknown key 'stepz'" rl --set=stepz=3 --out="$TMP/run"
refused "a setting without a value" "want KEY=VALUE" local --recipe="$QUICK" --set steps --out="$TMP/run"
refused "--set for a command without a recipe" "--set sets a recipe key" eval --set steps=3
refused_by "an unknown recipe key (duet-learner)" "unknown key 'grpo.kl_coeff'" \
  "$LEARNER" --config="$QUICK" --set grpo.kl_coeff=0.05 --allow_insecure_no_auth
refused_by "a stray word (duet-learner)" "unexpected argument 'lr=1e-3'" \
  "$LEARNER" --config="$QUICK" lr=1e-3 --allow_insecure_no_auth
refused_by "a stray word (duet-rollout)" "unexpected argument 'extra'" "$BIN/rollout/duet-rollout" extra
refused_by "a stray word (duet-scorer)" "unexpected argument 'extra'" "$BIN/scorer/duet-scorer" extra
# A setting reaches the recipe in each program: the model it names is the one looked for.
refused "--set model= (duet local)" "$TMP/no-such-model" local --recipe="$QUICK" --set model="$TMP/no-such-model" --out="$TMP/run"
refused "--set model= (duet rl)" "$TMP/no-such-model" rl --set model="$TMP/no-such-model" --out="$TMP/run"
refused_by "--set model= (duet-learner)" "$TMP/no-such-model" \
  "$LEARNER" --config="$QUICK" --set model="$TMP/no-such-model" --set out="$TMP/run" --allow_insecure_no_auth \
  --address=127.0.0.1:0
# --help of each lists every recipe key with its default, the same list.
"$DUET" local --help | grep -E '^      [a-z_.]+=' > "$TMP/keys.local"
"$DUET" rl --help | grep -E '^      [a-z_.]+=' > "$TMP/keys.rl"
"$LEARNER" --help | grep -E '^      [a-z_.]+=' > "$TMP/keys.learner"
n=$(wc -l < "$TMP/keys.learner")
[[ $n -ge 44 ]] || { cat "$TMP/keys.learner"; echo "FAIL: duet-learner --help lists $n recipe keys"; exit 1; }
cmp -s "$TMP/keys.local" "$TMP/keys.learner" && cmp -s "$TMP/keys.rl" "$TMP/keys.learner" ||
  { diff "$TMP/keys.local" "$TMP/keys.learner"; diff "$TMP/keys.rl" "$TMP/keys.learner"; echo "FAIL: the key lists differ"; exit 1; }
grep -qx '      grpo.kl_coef=0.1' "$TMP/keys.learner" || { echo "FAIL: no grpo.kl_coef=0.1"; exit 1; }
echo "ok: --help of duet local, duet rl and duet-learner lists the same $n recipe keys"
# And a command's own flags still pass (--help exits 0 without running anything).
"$DUET" local --recipe="$SRC/configs/recipes/quick.yaml" --help > /dev/null
echo "cli_test: OK"
