#!/usr/bin/env bash
# The learner owns the run's rewards (issue 15, acceptance 2): the role binaries started
# with exactly the command lines of the shipped Kubernetes manifests (deploy/k8s/base,
# rendered with `kubectl kustomize`; only cluster paths, addresses and the pod name are
# mapped onto this machine), on a recipe whose self_reward AND reward differ from the
# defaults (pmi images, joint captions, half the self-reward plus twice the Shapes oracle of
# a real `duet reward-server`), compute the recipe's rewards: each step's mean rewards in
# metrics.jsonl equal those of `duet rl`, which computes the same recipe in one process.
# The scorer's manifest passes no reward flag, so before the learner sent the rewards at
# registration this run scored with the default kinds and no oracle, and failed here.
# Usage: role_command_lines_test.sh BUILD_DIR SOURCE_DIR. KEEP_TMP=1 keeps the work folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tiny_world.sh"
BIN="$1"; SRC="$2"
DUET="$BIN/tools/duet"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
command -v kubectl >/dev/null || { echo "kubectl not installed (deploy/local/install-deps.sh)"; exit 1; }

make_tiny_world "$DUET" "$TMP"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/judge_token"
chmod 600 "$TMP/token" "$TMP/judge_token"
read -r PORT < <(free_ports 2)
JUDGE_PORT=$((PORT + 1))

"$DUET" reward-server --model="$TMP/base/model" --port="$JUDGE_PORT" --auth_token_file="$TMP/judge_token" \
  > "$TMP/judge.log" 2>&1 &
PIDS+=("$!")
# Generation only, as configs/recipes/oracle_reward.yaml: the Shapes oracle refuses some
# of the tiny model's sampled captions (a text-range id that is no word of the grammar).
tiny_recipe "$TMP/recipe.yaml" 2 30 \
  'self_reward: {image: pmi, caption: joint}' \
  "reward: {self: 0.5, external: 2.0, external_address: \"127.0.0.1:$JUDGE_PORT\", timeout_ms: 30000, auth_token_file: \"$TMP/judge_token\"}"
sed -i 's/^directions: joint/directions: generation/' "$TMP/recipe.yaml"

# The three containers' command lines, from the rendered manifests.
kubectl kustomize "$SRC/deploy/k8s/base" > "$TMP/rendered.yaml"
python3 - "$TMP/rendered.yaml" "$TMP" "$PORT" "$BIN" <<'PY'
import shlex, sys, yaml
rendered, tmp, port, bin_dir = sys.argv[1:]
paths = {"duet-learner": f"{bin_dir}/learner/service/duet-learner", "duet-rollout": f"{bin_dir}/rollout/duet-rollout",
         "duet-scorer": f"{bin_dir}/scorer/duet-scorer"}
# Cluster names onto this machine: nothing else of the command line changes.
mapping = {
    "/etc/duet/recipe/recipe.yaml": f"{tmp}/recipe.yaml", "/assets/base/model": f"{tmp}/base/model",
    "/assets/data": f"{tmp}/data", "/var/lib/duet/run": f"{tmp}/k8s-run", "/etc/duet/auth/token": f"{tmp}/token",
    "duet-learner:50051": f"127.0.0.1:{port}", "0.0.0.0:50051": f"127.0.0.1:{port}",
    "duet-learner-store": "127.0.0.1", "0.0.0.0:8080": "127.0.0.1:0",
    "0.0.0.0:8081": "127.0.0.1:0",
}
seen = set()
for doc in yaml.safe_load_all(open(rendered)):
    if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
        continue
    for c in doc["spec"]["template"]["spec"]["containers"]:
        name = c["command"][0]
        args = []
        for a in c.get("args", []):
            flag, eq, value = a.partition("=")
            value = mapping.get(value, value)
            args.append(flag + eq + value)
        if name == "duet-scorer":
            assert not any("reward" in a for a in args), f"the scorer's manifest passes reward flags: {args}"
        with open(f"{tmp}/{name}.args", "w") as f:
            f.write(" ".join(shlex.quote(x) for x in [paths[name]] + args))
        seen.add(name)
assert seen == set(paths), f"rendered manifests lack containers: {set(paths) - seen}"
PY
echo "learner: $(cat "$TMP/duet-learner.args")"
echo "scorer:  $(cat "$TMP/duet-scorer.args")"
mkdir -p "$TMP/k8s-run"
launch() {  # NAME LOG: the container's command line, with $(POD_NAME) as NAME
  local cmd
  cmd="$(sed "s/\$(POD_NAME)/$1/g" "$TMP/${2}.args")"
  eval "$cmd" > "$TMP/$1.log" 2>&1 &
  PIDS+=("$!")
}
launch learner duet-learner
launch duet-rollout-0 duet-rollout
launch duet-rollout-1 duet-rollout
launch duet-scorer-0 duet-scorer
RUN="$TMP/k8s-run"
for _ in $(seq 1800); do
  [[ -f "$RUN/final_state.json" ]] && break
  kill -0 "${PIDS[1]}" 2>/dev/null || { echo "the learner exited early"; tail -n 30 "$TMP"/*.log; exit 1; }
  sleep 0.1
done
[[ -f "$RUN/final_state.json" ]] || { echo "no final_state.json after 180 s"; tail -n 30 "$TMP"/*.log; exit 1; }
grep -q "the run's rewards: image pmi, caption joint, self weight 0.5, external weight 2" "$TMP/duet-scorer-0.log" || {
  echo "the scorer did not take the recipe's rewards"; tail -n 30 "$TMP/duet-scorer-0.log"; exit 1; }

# The same recipe in one process.
"$DUET" rl --recipe="$TMP/recipe.yaml" --model="$TMP/base/model" --data="$TMP/data" --out="$TMP/in-process" \
  --limit=4 > "$TMP/rl.log" 2>&1 || { tail -n 30 "$TMP/rl.log"; exit 1; }
python3 - "$RUN/metrics.jsonl" "$TMP/in-process/rl_report.json" <<'PY'
import json, math, sys
dist = [json.loads(l) for l in open(sys.argv[1])]
ref = json.load(open(sys.argv[2]))["curve"]
assert len(dist) == len(ref) == 2, (len(dist), len(ref))
for d, r in zip(dist, ref):
    for key in ("generation_reward",):
        a, b = d[key], r[key]
        print(f"step {d['step']} {key}: roles {a:.6f}, in-process {b:.6f}")
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4), f"step {d['step']} {key}: {a} != {b}"
PY
echo "role_command_lines_test: OK"
