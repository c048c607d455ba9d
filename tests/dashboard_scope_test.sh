#!/usr/bin/env bash
# The Grafana dashboard is scoped to one run and shows every series in its unit (issue 16
# point 5), checked offline against docs/metrics.md by deploy/check/check.mjs:
#   - dashboard-scope: the template variables namespace -> run -> job exist, are
#     label_values() queries over a catalogued series, each scoped by the ones before it
#     (run: one value; namespace: All = .*, since no series has a namespace outside
#     Kubernetes); every series selector of every panel query is a catalogued series and
#     carries namespace=~"$namespace", run="$run", job=~"$job"; every query's unit, derived
#     from the catalogue's unit column and the rules of docs/metrics.md "## Units" (rate(),
#     histogram_quantile(), x / y, time() - x, * 60), is the panel's unit (or its own
#     byFrameRefID override's), no axis mixes two units, and no two units share one
#     Grafana unit in a panel;
#   - dashboard-scope-selftest: each defect planted into a copy of the shipped dashboard (a
#     query without the selectors, run as a regex, a wrong unit, mixed-unit panels: rows
#     under seconds, streams/s under bytes/s, a lag in versions under seconds, the learning
#     rate on the grad-norm axis; an unknown metric, a sum of two units, a bare timestamp,
#     broken variables, ...) is named, and the shipped dashboard passes.
# tests/metrics_live_test.sh runs the same queries, variables resolved, against a real run.
# Usage: tests/dashboard_scope_test.sh SOURCE_DIR
set -euo pipefail
SRC="$(cd "${1:?usage: $0 SOURCE_DIR}" && pwd)"
CHECK="$SRC/deploy/check"
command -v node >/dev/null || { echo "FAIL: node not found (deploy/local/install-deps.sh installs it)" >&2; exit 1; }
# npm packages pinned by package-lock.json (check.mjs imports yaml), installed once per lock
# file; the lock keeps this test and deploy_manifests_test from installing at once.
(
  flock 9
  stamp="$CHECK/node_modules/.duet-lock.sha256"
  want="$(sha256sum "$CHECK/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    (cd "$CHECK" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
) 9> "${TMPDIR:-/tmp}/duet-deploy-check-npm.lock"
node "$CHECK/check.mjs" dashboard-scope "$SRC/deploy/grafana/duet.json" "$SRC/docs/metrics.md"
node "$CHECK/check.mjs" dashboard-scope-selftest "$SRC/deploy/grafana/duet.json" "$SRC/docs/metrics.md"
echo "dashboard_scope_test: OK"
