#!/usr/bin/env bash
# A short job run from the container image (deploy/docker/Dockerfile, built by
# deploy/docker/build-image.sh when it is missing): the image's own `duet` makes the tiny
# world (tests/tiny_world.sh: make_tiny_world), then the learner, two rollout workers and a
# scorer run as four separate containers with the command lines, environment, mounts and
# security settings of deploy/k8s/base/{learner,rollout,scorer}.yaml: user 65532 (the
# image's), read-only root, all capabilities dropped, no privilege escalation, the assets
# and secrets mounted read-only where the pods mount them, /tmp a tmpfs. Only what names the
# cluster is mapped onto this machine: the service names and 0.0.0.0 listen addresses onto
# 127.0.0.1 (host network), the pod name, and GLOO_SOCKET_IFNAME eth0 onto lo.
# Passes when the learner container exits 0 with final_state.json at the recipe's step, every
# worker that did work on its checksum (tests/tiny_world.sh: check_ledger), and prints the
# checksum.
#
# Not part of the default test command: it needs root (or sudo) and podman, and takes
# minutes with the image built (half an hour and more without). tests/CMakeLists.txt
# registers it, label `image`, only with -DDUET_IMAGE_TEST=ON; or run it directly:
#   bash tests/docker_image_test.sh SOURCE_DIR [IMAGE]        (IMAGE: duet:latest)
# KEEP_TMP=1 keeps the work folder; DUET_IMAGE_TEST_STEPS (3) sets the job's steps.
#
# Podman flags (Debian 12's podman on a VM/container host, see deploy/docker/build-image.sh):
# runc and cgroupfs instead of crun/systemd, the host network, and rlimits it may set.
set -euo pipefail
SRC="$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)"
IMAGE="${2:-duet:latest}"
STEPS="${DUET_IMAGE_TEST_STEPS:-3}"
# shellcheck source=tests/tiny_world.sh
source "$SRC/tests/tiny_world.sh"

SUDO=""
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs)
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; PODMAN=(sudo "${PODMAN[@]}"); fi
# runc cannot raise rlimits here (no CAP_SYS_RESOURCE), so they are set below the host's:
# nproc counts uid 65532's threads in all four containers together (LibTorch, gRPC, Gloo).
RUN_FLAGS=(--network=host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096
  --read-only --read-only-tmpfs=false --tmpfs /tmp
  --cap-drop=all --security-opt=no-new-privileges)
command -v podman >/dev/null || { echo "podman not installed (deploy/docker/build-image.sh installs it)"; exit 1; }

if ! "${PODMAN[@]}" image exists "$IMAGE"; then
  echo "docker_image_test: $IMAGE missing, building it (deploy/docker/build-image.sh)"
  DUET_IMAGE="$IMAGE" bash "$SRC/deploy/docker/build-image.sh"
fi

echo "docker_image_test: $IMAGE $("${PODMAN[@]}" image inspect --format '{{.Id}} created {{.Created}}, {{.Size}} bytes' "$IMAGE")"
TMP="$(mktemp -d /var/tmp/duet-image-test.XXXXXX)"
chmod 755 "$TMP"
TAG="duet-image-test-$$"
NAMES=()
cleanup() {
  local n
  for n in "${NAMES[@]}"; do "${PODMAN[@]}" rm -f -t 2 "$n" >/dev/null 2>&1 || true; done
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP"; else $SUDO rm -rf "$TMP"; fi
}
trap cleanup EXIT
t0=$(date +%s)

# The volumes, owned by the image's user as the pods' fsGroup makes them: assets (written
# once here, read-only in the job), the checkpoint volume, the recipe and the token.
mkdir -p "$TMP/assets" "$TMP/var-lib-duet" "$TMP/recipe" "$TMP/auth"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/auth/token"
read -r PORT < <(free_ports 1)
tiny_recipe "$TMP/recipe/recipe.yaml" "$STEPS" 30
chmod 0444 "$TMP/recipe/recipe.yaml"
chmod 0440 "$TMP/auth/token"
$SUDO chown -R 65532:65532 "$TMP/assets" "$TMP/var-lib-duet" "$TMP/auth"

# The tiny world, by the image's duet (as user 65532, read-only root): tests/tiny_world.sh's
# own make_tiny_world, given a duet that runs in a container with the assets folder at /assets.
duet_in_image() {
  "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" -v "$TMP/assets:/assets" "$IMAGE" duet "$@"
}
make_tiny_world duet_in_image /assets
[[ -d "$TMP/assets/base/model" && -f "$TMP/assets/data/rl_gen_prompts.jsonl" ]] || {
  echo "the image's duet made no tiny world"; ls -lR "$TMP/assets"; exit 1; }
t_world=$(($(date +%s) - t0))
echo "docker_image_test: tiny world made in the image in ${t_world} s"

# The containers' command lines and environment, from the manifests (the base has no
# patches, so its files are what kustomize renders for these fields).
python3 - "$SRC/deploy/k8s/base" "$TMP" "$PORT" <<'PY'
import json, sys, yaml
base, tmp, port = sys.argv[1:]
mapping = {
    "duet-learner:50051": f"127.0.0.1:{port}", "0.0.0.0:50051": f"127.0.0.1:{port}",
    "duet-learner-store": "127.0.0.1", "0.0.0.0:8080": "127.0.0.1:0", "0.0.0.0:8081": "127.0.0.1:0",
}
seen = set()
for f in ("learner.yaml", "rollout.yaml", "scorer.yaml"):
    for doc in yaml.safe_load_all(open(f"{base}/{f}")):
        if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            name = c["command"][0]
            args = []
            for a in c.get("args", []):
                flag, eq, value = a.partition("=")
                args.append(flag + eq + mapping.get(value, value))
            env = []
            for e in c.get("env", []):
                if "value" not in e:
                    continue  # fieldRef (POD_NAME): the test sets it
                value = "lo" if e["name"] == "GLOO_SOCKET_IFNAME" else e["value"]
                env.append(f"{e['name']}={value}")
            mounts = [(m["mountPath"], bool(m.get("readOnly"))) for m in c.get("volumeMounts", [])]
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False, (name, sc)
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (name, sc)
            json.dump({"command": c["command"] + args, "env": env, "mounts": mounts}, open(f"{tmp}/{name}.json", "w"))
            seen.add(name)
assert seen == {"duet-learner", "duet-rollout", "duet-scorer"}, seen
PY

# launch NAME ROLE: a detached container with ROLE's manifest command line.
launch() {
  local name="$1" role="$2" spec="$TMP/$2.json" arg m path ro
  local -a args=() vols=() envs=()
  while IFS= read -r arg; do args+=("${arg//\$(POD_NAME)/$name}"); done < <(python3 -c \
    'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["command"]))' "$spec")
  while IFS= read -r arg; do envs+=(-e "$arg"); done < <(python3 -c \
    'import json,sys; [print(e) for e in json.load(open(sys.argv[1]))["env"]]' "$spec")
  while IFS=' ' read -r path ro; do
    case "$path" in
      /tmp) continue ;;  # --tmpfs /tmp (the pods' emptyDir)
      /var/lib/duet) m="$TMP/var-lib-duet" ;;
      /assets) m="$TMP/assets" ;;
      /etc/duet/recipe) m="$TMP/recipe" ;;
      /etc/duet/auth) m="$TMP/auth" ;;
      *) echo "docker_image_test: unmapped mount $path in $role"; exit 1 ;;
    esac
    [[ "$ro" == 1 ]] && vols+=(-v "$m:$path:ro") || vols+=(-v "$m:$path")
  done < <(python3 -c \
    'import json,sys; [print(p, int(r)) for p, r in json.load(open(sys.argv[1]))["mounts"]]' "$spec")
  NAMES+=("$TAG-$name")
  echo "docker_image_test: $name: ${args[*]}"
  "${PODMAN[@]}" run -d --name "$TAG-$name" "${RUN_FLAGS[@]}" -e "POD_NAME=$name" "${envs[@]}" \
    "${vols[@]}" "$IMAGE" "${args[@]}" > /dev/null
}
t1=$(date +%s)
launch learner duet-learner
launch duet-rollout-0 duet-rollout
launch duet-rollout-1 duet-rollout
launch duet-scorer-0 duet-scorer
logs() {
  local n
  for n in "${NAMES[@]}"; do echo "---- $n"; "${PODMAN[@]}" logs --tail 30 "$n" 2>&1 || true; done
}

# The learner ends by itself after the recipe's steps.
rc="$(timeout 900 "${PODMAN[@]}" wait "$TAG-learner")" || { echo "learner did not end in 900 s"; logs; exit 1; }
t_job=$(($(date +%s) - t1))
"${PODMAN[@]}" logs "$TAG-learner" > "$TMP/learner.log" 2>&1 || true
if [[ "$rc" != 0 ]]; then echo "the learner container exited $rc"; logs; exit 1; fi
RUN="$TMP/var-lib-duet/run"
[[ -f "$RUN/final_state.json" ]] || { echo "no final_state.json"; logs; exit 1; }
checksum="$(check_ledger "$RUN" "$STEPS" "$RUN/ledger.jsonl")" || { logs; exit 1; }
grep "^step $STEPS/$STEPS" "$TMP/learner.log" || { echo "no last step line in the learner's log"; logs; exit 1; }
# The workers end on their own once the learner is gone (or are stopped by the cleanup).
for n in duet-rollout-0 duet-rollout-1 duet-scorer-0; do
  w="$(timeout 60 "${PODMAN[@]}" wait "$TAG-$n" 2>/dev/null)" || w="still running after 60 s"
  echo "docker_image_test: $n exit: $w"
done
echo "docker_image_test: job of $STEPS steps in ${t_job} s (world ${t_world} s), checksum $checksum"
echo "docker_image_test: OK"
