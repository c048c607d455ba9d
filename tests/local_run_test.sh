#!/usr/bin/env bash
# Multi-process test of the RL service: real duet-learner, duet-rollout and duet-scorer
# processes on loopback (gRPC + one Gloo group), started by `duet local` on a tiny world.
# Checks: 3 steps run; every worker ends on the learner's policy version and checksum;
# a checkpoint is written; --resume continues at the next step.
set -euo pipefail
BIN="$1"      # build dir
SRC="$2"      # source dir
DUET="$BIN/tools/duet"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$DUET" world make-data --out="$TMP/data" --sft_pairs=256 --rl_prompts=32 --rl_images=32 \
  --eval_per_category=4 --codebook_size=64 > /dev/null
"$DUET" pretrain --data="$TMP/data" --out="$TMP/base" --steps=10 --batch_size=16 \
  --checkpoint_every=10 2> /dev/null > /dev/null
cat > "$TMP/recipe.yaml" <<YAML
steps: 3
directions: joint
generation_inputs: 4
understanding_inputs: 2
k: 2
checkpoint_every: 2
YAML
run_local() {
  "$DUET" local --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
    --out="$TMP/run" --limit=2 --rollout_workers=2 --scorer_workers=1 "$@"
}
run_local > "$TMP/first.log" 2>&1 || { cat "$TMP/first.log"; exit 1; }
/usr/bin/python3 - "$TMP/run" 3 <<'PY'
import json, os, sys
run, steps = sys.argv[1], int(sys.argv[2])
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["step"] == steps, state
assert state["policy_version"] == steps, state
assert len(state["workers"]) == 3, state
for w in state["workers"]:
    assert w["policy_version"] == state["policy_version"], (w, state)
    assert w["checksum"] == state["checksum"], (w, state)
    assert w["rank"] > 0, w
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == list(range(1, steps + 1)), lines
assert open(os.path.join(run, "checkpoints", "LATEST")).read().strip() == "step-%08d" % steps
assert os.path.exists(os.path.join(run, "report", "summary.md"))
print("first run ok: %d steps, %d workers on v%d checksum %d" % (steps, len(state["workers"]), state["policy_version"], state["checksum"]))
PY
run_local --local_steps=5 --resume > "$TMP/second.log" 2>&1 || { cat "$TMP/second.log"; exit 1; }
grep -q "resumed from .*step-00000003" "$TMP/second.log" || { echo "no resume message"; cat "$TMP/second.log"; exit 1; }
/usr/bin/python3 - "$TMP/run" <<'PY'
import json, os, sys
run = sys.argv[1]
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == [1, 2, 3, 4, 5], [l["step"] for l in lines]
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["policy_version"] == 5 and all(w["checksum"] == state["checksum"] for w in state["workers"]), state
print("resume ok: continued at step 4, ended at v5 on every worker")
PY
