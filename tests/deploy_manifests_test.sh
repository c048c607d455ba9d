#!/usr/bin/env bash
# Offline checks of the deployment files (the operations issue, offline half):
#   - Prometheus: scrape config and rules (promtool check), the alerts' unit tests
#     (promtool test rules), Alertmanager's config (amtool check-config);
#   - Kubernetes: every overlay renders with `kubectl kustomize`, every object validates
#     against the Kubernetes / Prometheus Operator schemas (npm kubernetes-models, run by
#     node) and type-checks against their interfaces (tsc: no unknown fields); the
#     PrometheusRule carries the rules file; the recipe ConfigMap is configs/recipes/default.yaml;
#     container args are flags of the real programs (their --help) or listed as proposed;
#     no deprecated kustomize field (and no warning from kustomize); the policy the schemas
#     cannot see (check.mjs k8s-policy: selectors match their templates, every secret,
#     configMap and claim exists or is a documented out-of-band secret that is not rendered,
#     every container can read what it mounts under its uid/gid/fsGroup and the modes, pod
#     security, declared probe/NetworkPolicy/Service/PodMonitor ports, a PodDisruptionBudget
#     per workload), and k8s-policy-selftest: each of those defects, planted into a copy of
#     the tls render, makes the check fail naming it, and the shipped render passes;
#   - Grafana: the dashboard type-checks against @grafana/schema's Dashboard, every query
#     names only catalogued series (docs/metrics.md), every alert links to a panel and its
#     runbook section (docs/operations.md) names that panel (the run selectors and the units
#     of every query: tests/dashboard_scope_test.sh);
#   - Slurm scripts, the image scripts and this script: bash -n and shellcheck; the
#     Dockerfile's stages and its build context's ignore files.
# npm packages are pinned by deploy/check/package-lock.json and installed with `npm ci`
# into deploy/check/node_modules (ignored by git) when the lock file changed; everything
# else runs offline.
# Usage: tests/deploy_manifests_test.sh SOURCE_DIR [BUILD_DIR]
set -euo pipefail
SRC="$(cd "${1:?usage: $0 SOURCE_DIR [BUILD_DIR]}" && pwd)"
BUILD="${2:-$SRC/build}"
CHECK="$SRC/deploy/check"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

failures=0
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found (deploy/local/install-deps.sh installs it)" >&2; exit 1; }; }
for c in node npm kubectl promtool amtool shellcheck sha256sum; do need "$c"; done

step "npm ci (deploy/check, pinned by package-lock.json)"
stamp="$CHECK/node_modules/.duet-lock.sha256"
want="$(sha256sum "$CHECK/package-lock.json" | cut -d' ' -f1)"
# The lock keeps this test and dashboard_scope_test from installing at once.
exec 9> "${TMPDIR:-/tmp}/duet-deploy-check-npm.lock"
flock 9
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  (cd "$CHECK" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
flock -u 9
run_check() { node "$CHECK/check.mjs" "$@"; }
GEN="$CHECK/node_modules/.duet-gen"
rm -rf "$GEN" && mkdir -p "$GEN"

step "Prometheus config, rules, rule unit tests; Alertmanager config"
P="$SRC/deploy/prometheus"
promtool check config "$P/prometheus.yml" || fail "promtool check config"
promtool check rules "$P/rules/duet.rules.yml" || fail "promtool check rules"
(cd "$P/tests" && promtool test rules duet.rules.test.yml) || fail "promtool test rules"
# Every alert has a unit test in which it fires.
for a in $(grep -E '^\s+- alert:' "$P/rules/duet.rules.yml" | awk '{print $3}'); do
  grep -A1 -E "alertname: $a\$" "$P/tests/duet.rules.test.yml" | grep -q 'exp_alerts:$' ||
    fail "alert $a has no unit test in which it fires"
done
amtool check-config "$P/alertmanager.yml" >/dev/null || fail "amtool check-config"

step "recipe copy and PrometheusRule are in sync with their sources"
cmp "$SRC/configs/recipes/default.yaml" "$SRC/deploy/k8s/base/recipe.yaml" ||
  fail "deploy/k8s/base/recipe.yaml differs from configs/recipes/default.yaml (copy it)"
run_check rules-sync "$P/rules/duet.rules.yml" "$SRC/deploy/k8s/base/prometheusrule.yaml" || fail "rules-sync"

step "kubectl kustomize ($(kubectl version --client 2>/dev/null | head -1))"
# The kustomizations use `resources` and `patches`, which kubectl's embedded kustomize
# reads from kubectl 1.21 on (v4); Debian bookworm's kubernetes-client (1.20) cannot.
minor="$(kubectl version --client -o json 2>/dev/null | sed -nE 's/.*"minor": *"([0-9]+).*/\1/p')"
mapfile -t kustomizations < <(find "$SRC/deploy/k8s" -name kustomization.yaml | sort)
run_check kustomize-fields "${kustomizations[@]}" || fail "deprecated kustomize fields"
OLD_KUBECTL=""
if [[ -z "$minor" || "$minor" -lt 21 ]]; then
  # A machine with only Debian's kubectl (1.20) cannot render them: say so loudly and check
  # the rest (the Kubernetes checks below need kubectl 1.21 or later).
  OLD_KUBECTL=1
  echo "WARNING: kubectl 1.${minor:-?} renders no current kustomization (resources/patches): the rendered" \
    "Kubernetes checks are SKIPPED; install kubectl 1.21 or later to run them" >&2
fi
if [[ -z "$OLD_KUBECTL" ]]; then
rendered=()
for dir in overlays/cpu overlays/gpu overlays/autoscale overlays/tls prometheus-adapter; do
  out="$TMP/$(echo "$dir" | tr / -).yaml"
  if kubectl kustomize "$SRC/deploy/k8s/$dir" > "$out" 2> "$TMP/err"; then
    rendered+=("$out")
    if grep -i 'warning' "$TMP/err" >&2; then fail "kubectl kustomize $dir warns"; fi
  else
    cat "$TMP/err" >&2; fail "kubectl kustomize $dir"
  fi
done
kinds() { grep -E '^kind: ' "$1" | sort | uniq -c | awk '{print $3 "=" $1}' | tr '\n' ' '; }
# No Secret: duet-auth (and duet-tls) are created out of band (docs/operations.md).
expect_kinds="ConfigMap=1 Deployment=2 Namespace=1 NetworkPolicy=2 PersistentVolumeClaim=1 PodDisruptionBudget=3 PodMonitor=1 PrometheusRule=1 Service=3 StatefulSet=1 "
for o in cpu gpu; do
  [[ "$(kinds "$TMP/overlays-$o.yaml")" == "$expect_kinds" ]] || fail "overlay $o renders $(kinds "$TMP/overlays-$o.yaml")"
done
[[ "$(grep -c '^kind: HorizontalPodAutoscaler' "$TMP/overlays-autoscale.yaml")" == 2 ]] || fail "autoscale overlay: not 2 HPAs"
[[ "$(grep -c 'nvidia.com/gpu: 1' "$TMP/overlays-gpu.yaml")" == 6 ]] || fail "gpu overlay: not one GPU requested and limited per pod"
grep -q -- '--collective=nccl' "$TMP/overlays-gpu.yaml" || fail "gpu overlay: learner not on NCCL"
grep -q 'NCCL_SOCKET_IFNAME' "$TMP/overlays-gpu.yaml" || fail "gpu overlay: no NCCL env"
[[ "$(grep -c -- '--tls_ca=' "$TMP/overlays-tls.yaml")" == 2 ]] || fail "tls overlay: workers do not verify the learner"
grep -q -- '--tls_cert=' "$TMP/overlays-tls.yaml" || fail "tls overlay: learner serves no certificate"
grep -q 'namespace: duet' "$TMP/overlays-cpu.yaml" || fail "cpu overlay: no namespace"
if grep -q -- '--tls_' "$TMP/overlays-cpu.yaml"; then fail "cpu overlay has TLS flags"; fi
grep -q -- '- --resume' "$TMP/overlays-cpu.yaml" || fail "learner does not --resume"
if grep -qE -- '--store_port|29500' "$TMP"/overlays-*.yaml; then fail "a c10d store port is back (the rendezvous runs over the gRPC port)"; fi

step "Kubernetes policy: references, readability of mounts, pod security, ports, disruption budgets"
k8s_renders=("$TMP"/overlays-{cpu,gpu,autoscale,tls}.yaml)
run_check k8s-policy "$SRC/docs/operations.md" "${k8s_renders[@]}" || fail "k8s-policy"
run_check k8s-policy-selftest "$SRC/docs/operations.md" "$TMP/overlays-tls.yaml" || fail "k8s-policy-selftest"

step "Kubernetes objects against the schemas"
run_check k8s "$GEN/k8s.ts" "${rendered[@]}" || fail "Kubernetes schema validation"
run_check promql "$SRC/docs/metrics.md" "$P/rules/duet.rules.yml" "$TMP/prometheus-adapter.yaml" || fail "series not in docs/metrics.md"

step "Grafana dashboard"
run_check dashboard "$GEN/dash.ts" "$SRC/deploy/grafana/duet.json" "$SRC/docs/metrics.md" \
  "$P/rules/duet.rules.yml" "$SRC/docs/operations.md" || fail "dashboard"

step "tsc: objects and dashboard against their TypeScript schemas"
cat > "$GEN/tsconfig.json" <<'JSON'
{"compilerOptions": {"strict": true, "noEmit": true, "module": "esnext", "moduleResolution": "bundler",
 "target": "es2020", "skipLibCheck": true, "types": []}, "include": ["*.ts"]}
JSON
"$CHECK/node_modules/typescript/bin/tsc" -p "$GEN/tsconfig.json" || fail "tsc"

step "the validators catch what they must (a broken object, an unknown field, a bad panel)"
mkdir -p "$GEN/neg"
cp "$GEN/tsconfig.json" "$GEN/neg/"
sed 's/replicas: 2/replicas: "two"/' "$TMP/overlays-cpu.yaml" > "$TMP/neg-replicas.yaml"
if run_check k8s "$GEN/neg/a.ts" "$TMP/neg-replicas.yaml" >/dev/null 2>&1; then fail "schema accepted replicas: \"two\""; fi
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/' "$TMP/overlays-cpu.yaml" > "$TMP/neg-field.yaml"
sed 's/"gridPos"/"gridPoz"/' "$SRC/deploy/grafana/duet.json" > "$TMP/neg-dash.json"
run_check k8s "$GEN/neg/b.ts" "$TMP/neg-field.yaml" >/dev/null 2>&1 || true
run_check dashboard "$GEN/neg/c.ts" "$TMP/neg-dash.json" "$SRC/docs/metrics.md" "$P/rules/duet.rules.yml" \
  "$SRC/docs/operations.md" >/dev/null 2>&1 || true
rm -f "$GEN/neg/a.ts"
tsc_out="$("$CHECK/node_modules/typescript/bin/tsc" -p "$GEN/neg/tsconfig.json" 2>&1 || true)"
grep -q "b.ts.*readOnlyRootFilesytem" <<< "$tsc_out" || fail "tsc accepted an unknown container field"
grep -q "c.ts.*gridPoz" <<< "$tsc_out" || fail "tsc accepted an unknown panel field"
# A kustomization with a deprecated field (planted into a copy of deploy/k8s): kustomize-fields
# names it, and kustomize warns (kubectl 1.27 on: kustomize v5).
cp -r "$SRC/deploy/k8s" "$TMP/k8s-old"
printf 'namespace: duet\nbases:\n  - ../../base\nresources:\n  - namespace.yaml\n' > "$TMP/k8s-old/overlays/cpu/kustomization.yaml"
if ((${minor:-0} >= 27)); then
  kubectl kustomize "$TMP/k8s-old/overlays/cpu" > /dev/null 2> "$TMP/err" || true
  grep -qi 'warning.*bases' "$TMP/err" || fail "kubectl kustomize did not warn of a planted bases: field"
fi
if run_check kustomize-fields "$TMP/k8s-old/overlays/cpu/kustomization.yaml" > /dev/null 2>&1; then fail "kustomize-fields accepted bases:"; fi
sed 's/duet_learner_kl/duet_learner_kl_typo/' "$P/rules/duet.rules.yml" > "$TMP/neg-rules.yml"
if run_check promql "$SRC/docs/metrics.md" "$TMP/neg-rules.yml" >/dev/null 2>&1; then fail "promql check accepted an uncatalogued series"; fi

step "container args against the programs' --help"
help="$TMP/help.txt"
: > "$help"
for prog in learner/service/duet-learner rollout/duet-rollout scorer/duet-scorer; do
  bin="$BUILD/$prog"
  [[ -x "$bin" ]] || { fail "$bin not built"; continue; }
  "$bin" --help 2>&1 | sed -nE "s/^  --([a-z_]+) \(.*/$(basename "$prog") \1/p" >> "$help"
done
[[ "$(wc -l < "$help")" -gt 20 ]] || fail "too few flags read from --help"
run_check flags "$help" "$CHECK/proposed_flags.txt" "$TMP/overlays-cpu.yaml" "$TMP/overlays-gpu.yaml" \
  "$TMP/overlays-tls.yaml" || fail "container args"
fi  # OLD_KUBECTL

step "Slurm scripts and shell: bash -n, shellcheck"
for f in "$SRC"/deploy/slurm/*.sbatch "$SRC/tests/deploy_manifests_test.sh" \
         "$SRC/deploy/docker/build-image.sh" "$SRC/tests/docker_image_test.sh"; do
  bash -n "$f" || fail "bash -n $f"
  shellcheck -S warning "$f" || fail "shellcheck $f"
done
grep -q -- '--resume' "$SRC/deploy/slurm/duet.sbatch" || fail "duet.sbatch does not --resume"

step "Dockerfile"
D="$SRC/deploy/docker/Dockerfile"
[[ "$(grep -c '^FROM debian:bookworm' "$D")" -ge 2 ]] || fail "Dockerfile: not multi-stage on debian:bookworm"
grep -q 'deploy/local/install-deps.sh' "$D" || fail "Dockerfile does not use deploy/local/install-deps.sh"
grep -q -- '--from=build' "$D" || fail "Dockerfile: runtime stage copies nothing from the build"
# The build context (podman reads .containerignore, docker .dockerignore) leaves out the
# build and run folders: without it `COPY . .` sends gigabytes and a stale build/.
for ig in .containerignore .dockerignore; do
  for d in build out runs; do
    grep -qx "$d" "$SRC/$ig" || fail "$ig does not exclude $d/"
  done
done

if ((failures)); then echo "deploy_manifests_test: $failures failure(s)" >&2; exit 1; fi
echo "deploy_manifests_test: OK"
