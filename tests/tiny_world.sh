# Sourced by the script tests and benches that run the real binaries on a tiny world.
#   make_tiny_world DUET DIR   writes DIR/data (a small Shapes world) and DIR/base/model
#                              (10 pretraining steps): seconds, enough for the service to run
#   free_ports N               prints the first of N consecutive free loopback ports
#   tiny_recipe, start_learner, start_worker, wait_steps, check_ledger: see below

make_tiny_world() {
  local duet="$1" dir="$2"
  "$duet" world make-data --out="$dir/data" --sft_pairs=256 --rl_prompts=32 --rl_images=32 \
    --eval_per_category=4 --codebook_size=64 > /dev/null
  "$duet" pretrain --data="$dir/data" --out="$dir/base" --steps=10 --batch_size=16 \
    --checkpoint_every=10 > /dev/null 2>&1
}

free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}

# tiny_recipe FILE STEPS LEASE [YAML LINE...]: the script tests' joint recipe (the scorer
# judging with the policy's weights, frozen_scorer: false, as when these tests were written,
# so that it swaps every broadcast in as the rollout workers do; 4 prompts and
# 2 images a step, K 2, a checkpoint every step, lease_seconds LEASE, the extra lines, and
# at least 2 rollout workers and 1 scorer before the first step).
tiny_recipe() {
  local file="$1" steps="$2" lease="$3"; shift 3
  {
    printf 'steps: %s\ndirections: joint\nfrozen_scorer: false\ngeneration_inputs: 4\nunderstanding_inputs: 2\nk: 2\n' "$steps"
    printf 'checkpoint_every: 1\nlease_seconds: %s\n' "$lease"
    local line
    for line in "$@"; do echo "$line"; done
    echo 'workers: {rollout: 2, scorer: 1}'
  } > "$file"
}

# The real learner and workers on loopback, for the scripts that start them by hand. They
# need BIN (the build folder), TMP (with base/model, data, token and recipe.yaml) and a
# PIDS array (every process started is appended, for the script's cleanup).
# start_learner RUN PORT [flags...]: the learner in the background, logging to RUN.learner.log;
# LEARNER is its pid.
start_learner() {
  local run="$1" port="$2"; shift 2
  "$BIN/learner/service/duet-learner" --config="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" \
    --out="$run" --address="127.0.0.1:$port" --auth_token_file="$TMP/token" --collective_timeout_s=10 "$@" \
    >> "$run.learner.log" 2>&1 &
  LEARNER=$!
  PIDS+=("$LEARNER")
}
# start_worker RUN PORT ROLE NAME [flags...]: a worker in the background, logging to
# RUN.NAME.log; WORKER is its pid.
start_worker() {
  local run="$1" port="$2" role="$3" name="$4"; shift 4
  "$BIN/$role/duet-$role" --learner="127.0.0.1:$port" --model="$TMP/base/model" --auth_token_file="$TMP/token" \
    --name="$name" --collective_timeout_s=10 "$@" >> "$run.$name.log" 2>&1 &
  WORKER=$!
  PIDS+=("$WORKER")
}
# wait_steps RUN N: until RUN/metrics.jsonl has N lines (at most 120 s, then the logs and exit 1).
wait_steps() {
  for _ in $(seq 1200); do
    [[ -f "$1/metrics.jsonl" && $(wc -l < "$1/metrics.jsonl") -ge $2 ]] && return 0
    sleep 0.1
  done
  echo "$1: fewer than $2 steps after 120 s"; tail -n 30 "$1".*.log; exit 1
}
# check_ledger RUN STEPS REFERENCE_LEDGER: the run ended at STEPS (final_state.json, every
# worker that did work on the learner's checksum), metrics.jsonl has every step once, and ledger.jsonl
# every prompt group of a tiny_recipe step (4 prompts, 2 images, K 2) exactly once: the
# reference's groups when RUN is not the reference itself. Prints the final checksum.
check_ledger() {
  python3 - "$1" "$2" "$3" <<'PY'
import collections, json, os, sys
run, steps, reference = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state = json.load(open(os.path.join(run, "final_state.json")))
assert state["step"] == steps and state["policy_version"] == steps, state
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
assert [l["step"] for l in lines] == list(range(1, steps + 1)), [l["step"] for l in lines]
# Every worker that did work ends on the learner's weights (one registered that never
# pulled is sent no sync: issue 17).
for w in state["workers"]:
    assert w["items_completed"] == 0 or w["checksum"] == state["checksum"], (w, state["checksum"])
# The ledger: each prompt group trained exactly once, K samples each, from a work item;
# 4 prompts and 2 images a step (the recipe); the same groups as the uninterrupted run.
def groups(path):
    entries = [json.loads(l) for l in open(path)]
    for e in entries:
        assert e["samples"] == 2 and e["item"] and e["input"] >= 0, (path, e)
    return collections.Counter((e["step"], e["direction"], e["input"]) for e in entries)
trained = groups(os.path.join(run, "ledger.jsonl"))
twice = [g for g, n in trained.items() if n > 1]
assert not twice, "%s: groups trained more than once: %s" % (run, twice)
per_step = collections.Counter((s, d) for s, d, _ in trained)
assert per_step == {(s, d): n for s in range(1, steps + 1) for d, n in (("generation", 4), ("understanding", 2))}, per_step
if os.path.abspath(run) != os.path.dirname(os.path.abspath(reference)):
    expected = groups(reference)
    assert trained == expected, "%s: missing %s, unexpected %s" % (run, expected - trained, trained - expected)
print(state["checksum"])
PY
}
