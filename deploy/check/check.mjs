// Offline checks of Duet's deployment files, run by tests/deploy_manifests_test.sh.
//   node check.mjs catalogue  <docs/metrics.md>                        print the metric names
//   node check.mjs k8s        <out.ts> <rendered.yaml>...              validate every object; write a TS file for tsc
//   node check.mjs dashboard  <out.ts> <duet.json> <metrics.md> <rules.yml> <operations.md>
//   node check.mjs promql     <metrics.md> <file>...                  every duet_ series in rules/adapter config is catalogued
//   node check.mjs rules-sync <rules.yml> <prometheusrule.yaml> [--write]
//   node check.mjs flags      <help.txt> <proposed.txt> <rendered.yaml>...   container args are real flags
// Each prints what is wrong and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import YAML from 'yaml';

const require = createRequire(import.meta.url);
const errors = [];
const fail = (msg) => errors.push(msg);
const readYamlDocs = (file) =>
  YAML.parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) fail(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS();
  }).filter((d) => d != null);

// ---- the catalogue: docs/metrics.md tables under "## Catalogue" --------------------------
function catalogue(file) {
  const text = fs.readFileSync(file, 'utf8');
  const start = text.indexOf('## Catalogue');
  if (start < 0) throw new Error(`${file}: no "## Catalogue" section`);
  const end = text.indexOf('\n## ', start + 5);
  const metrics = new Map();
  for (const line of text.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = line.match(/^\|\s*`(duet_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)\b/);
    if (m) {
      if (metrics.has(m[1])) fail(`${file}: ${m[1]} listed twice`);
      metrics.set(m[1], m[2]);
    }
  }
  if (metrics.size < 20) fail(`${file}: only ${metrics.size} metrics parsed from the catalogue`);
  for (const [name, type] of metrics) {
    if (type === 'counter' && !name.endsWith('_total')) fail(`${file}: counter ${name} does not end in _total`);
    if (type !== 'counter' && name.endsWith('_total')) fail(`${file}: ${type} ${name} ends in _total`);
    if (/_(bucket|sum|count)$/.test(name)) fail(`${file}: ${name} ends in a histogram suffix`);
  }
  return metrics;
}

// Every duet_ series an expression names must be in the catalogue (histograms through
// _bucket/_sum/_count only); returns the names it used.
function checkExpr(where, expr, metrics) {
  const used = [];
  for (const [name] of expr.matchAll(/\bduet_[a-z0-9_]+/g)) {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    if (metrics.get(name) && metrics.get(name) !== 'histogram') used.push(name);
    else if (base !== name && metrics.get(base) === 'histogram') used.push(base);
    else if (metrics.get(name) === 'histogram') fail(`${where}: histogram ${name} used without _bucket/_sum/_count`);
    else fail(`${where}: ${name} is not in docs/metrics.md`);
  }
  for (const m of expr.matchAll(/\b(rate|increase|irate)\((duet_[a-z0-9_]+)/g)) {
    const t = metrics.get(m[2]);
    if (t === 'gauge') fail(`${where}: ${m[1]}() of gauge ${m[2]}`);
  }
  return used;
}

// ---- Kubernetes objects ------------------------------------------------------------------
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const candidates = group === 'monitoring.coreos.com'
    ? [`@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`]
    : [group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`];
  for (const c of candidates) {
    try { return { module: c, Model: require(c)[kind] }; } catch { /* next */ }
  }
  return null;
}

function k8s(outTs, files) {
  const lines = [];
  let n = 0;
  for (const file of files) {
    const docs = readYamlDocs(file);
    if (docs.length === 0) fail(`${file}: no objects`);
    for (const doc of docs) {
      const id = `${file}: ${doc.kind}/${doc.metadata?.name}`;
      const found = modelFor(doc.apiVersion ?? '', doc.kind ?? '');
      if (!found || !found.Model) { fail(`${id}: no schema for ${doc.apiVersion} ${doc.kind}`); continue; }
      try { new found.Model(doc).validate(); } catch (e) { fail(`${id}: ${e.message}`); }
      // Types for tsc: an object literal typed with the model's interface, so that a
      // misspelt or misplaced field (which the JSON schemas allow) is an error.
      lines.push(`import type { I${doc.kind} as T${n} } from ${JSON.stringify(found.module)};`);
      lines.push(`// ${id}\nexport const o${n}: T${n} = ${JSON.stringify(doc, null, 1)};`);
      n++;
    }
  }
  fs.writeFileSync(outTs, lines.join('\n') + '\n');
  console.log(`k8s: ${n} objects validated`);
}

// ---- the dashboard -------------------------------------------------------------------------
function dashboard(outTs, file, metricsMd, rulesFile, opsMd) {
  const metrics = catalogue(metricsMd);
  const dash = JSON.parse(fs.readFileSync(file, 'utf8'));
  // String enums of the schema (ThresholdsMode, ...) become their values, as JSON spells them.
  fs.writeFileSync(outTs, `import type { Dashboard } from '@grafana/schema';
type Json<T> = T extends string ? \`\${T}\` : T extends Array<infer U> ? Array<Json<U>> : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
export const dashboard: Json<Dashboard> = ${JSON.stringify(dash, null, 1)};\n`);
  if (dash.uid !== 'duet') fail(`${file}: uid must be "duet" (the alerts link to /d/duet/)`);
  const dsVar = (dash.templating?.list ?? []).find((v) => v.type === 'datasource' && v.query === 'prometheus');
  if (!dsVar) fail(`${file}: no Prometheus datasource variable`);
  const all = [];
  for (const p of dash.panels ?? []) { all.push(p); for (const q of p.panels ?? []) all.push(q); }
  const ids = new Map();
  const occupied = new Set();
  const usedMetrics = new Set();
  for (const p of all) {
    if (ids.has(p.id)) fail(`${file}: panel id ${p.id} twice`);
    ids.set(p.id, p);
    const g = p.gridPos;
    if (!g || g.x < 0 || g.w < 1 || g.x + g.w > 24 || g.h < 1) fail(`${file}: panel ${p.id} gridPos out of the 24 columns`);
    else for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
      if (occupied.has(`${x},${y}`)) { fail(`${file}: panel ${p.id} overlaps another at ${x},${y}`); x = 99; break; }
      occupied.add(`${x},${y}`);
    }
    if (p.type === 'row') continue;
    if (!['timeseries', 'stat', 'table'].includes(p.type)) fail(`${file}: panel ${p.id} type ${p.type}`);
    if (!p.title || !p.description) fail(`${file}: panel ${p.id} needs a title and a description`);
    if (p.datasource?.uid !== '${datasource}') fail(`${file}: panel ${p.id} does not use $datasource`);
    if (!p.targets?.length) fail(`${file}: panel ${p.id} has no query`);
    const refIds = new Set();
    for (const t of p.targets ?? []) {
      if (!t.expr) fail(`${file}: panel ${p.id} target ${t.refId} has no expr`);
      if (refIds.has(t.refId)) fail(`${file}: panel ${p.id} refId ${t.refId} twice`);
      refIds.add(t.refId);
      for (const m of checkExpr(`${file}: panel ${p.id} (${p.title})`, t.expr ?? '', metrics)) usedMetrics.add(m);
      if (!/\bduet_|\bup\b/.test(t.expr ?? '')) fail(`${file}: panel ${p.id} queries no Duet series`);
    }
  }
  // Series the dashboard must show (the list).
  for (const must of ['duet_learner_reward_mean', 'duet_learner_kl', 'duet_learner_loss', 'duet_learner_dlogp',
    'duet_learner_samples_total', 'duet_coordinator_live_workers', 'duet_coordinator_lease_expirations_total',
    'duet_coordinator_items_reissued_total', 'duet_coordinator_worker_version_lag_max_versions',
    'duet_weights_broadcast_seconds', 'duet_rpc_server_handled_total', 'duet_pool_desired_workers']) {
    if (!usedMetrics.has(must)) fail(`${file}: no panel shows ${must}`);
  }
  // Every alert links to a panel that exists, and the runbook's section for the alert
  // names that panel.
  const ops = fs.readFileSync(opsMd, 'utf8');
  for (const group of readYamlDocs(rulesFile)[0].groups) for (const r of group.rules) {
    if (!r.alert) continue;
    const m = (r.annotations?.dashboard_url ?? '').match(/^\/d\/duet\/duet\?viewPanel=(\d+)$/);
    if (!m) { fail(`${rulesFile}: ${r.alert} has no dashboard_url /d/duet/duet?viewPanel=N`); continue; }
    const panel = ids.get(Number(m[1]));
    if (!panel || panel.type === 'row') { fail(`${rulesFile}: ${r.alert} links to panel ${m[1]}, which is not a panel`); continue; }
    const anchor = r.alert.toLowerCase();
    if (r.annotations.runbook_url !== `docs/operations.md#${anchor}`) fail(`${rulesFile}: ${r.alert} runbook_url is not docs/operations.md#${anchor}`);
    const sec = ops.match(new RegExp(`^### ${r.alert}\\s*$([\\s\\S]*?)(?=^##)`, 'm'));
    if (!sec) { fail(`${opsMd}: no "### ${r.alert}" section`); continue; }
    if (!sec[1].includes(`viewPanel=${m[1]}`) || !sec[1].includes(panel.title)) {
      fail(`${opsMd}: section ${r.alert} does not link to panel ${m[1]} "${panel.title}"`);
    }
    for (const word of ['Meaning', 'Do']) if (!sec[1].includes(`**${word}`)) fail(`${opsMd}: section ${r.alert} lacks **${word}**`);
  }
  console.log(`dashboard: ${all.length} panels, ${usedMetrics.size} series`);
}

// ---- PromQL in rules and the adapter config -------------------------------------------------
function promql(metricsMd, files) {
  const metrics = catalogue(metricsMd);
  let n = 0;
  const walk = (file, v, key) => {
    if (typeof v === 'string' && ['expr', 'seriesQuery', 'metricsQuery'].includes(key)) { checkExpr(`${file} ${key}`, v, metrics); n++; }
    else if (Array.isArray(v)) v.forEach((x) => walk(file, x, key));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(file, x, k);
  };
  for (const file of files) for (const doc of readYamlDocs(file)) {
    // A ConfigMap carries the adapter's config as a YAML string.
    if (doc.kind === 'ConfigMap') for (const s of Object.values(doc.data ?? {})) walk(file, YAML.parse(s), '');
    else walk(file, doc, '');
  }
  if (n === 0) fail(`promql: no expressions found in ${files.join(' ')}`);
  console.log(`promql: ${n} expressions checked`);
}

// ---- PrometheusRule == rules file ----------------------------------------------------------
function rulesSync(rulesFile, ruleCr, write) {
  const rules = readYamlDocs(rulesFile)[0];
  if (write) {
    const header = '# GENERATED from deploy/prometheus/rules/duet.rules.yml by\n#   node deploy/check/check.mjs rules-sync deploy/prometheus/rules/duet.rules.yml deploy/k8s/base/prometheusrule.yaml --write\n# Do not edit: edit the rules file and regenerate (the test fails when they differ).\n';
    const cr = {
      apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule',
      metadata: { name: 'duet', labels: { 'app.kubernetes.io/part-of': 'duet', release: 'prometheus' } },
      spec: { groups: rules.groups },
    };
    fs.writeFileSync(ruleCr, header + YAML.stringify(cr, { lineWidth: 0 }));
    return;
  }
  const cr = readYamlDocs(ruleCr)[0];
  if (JSON.stringify(cr?.spec?.groups) !== JSON.stringify(rules.groups)) {
    fail(`${ruleCr}: spec.groups differ from ${rulesFile}; regenerate with: node deploy/check/check.mjs rules-sync ${rulesFile} ${ruleCr} --write`);
  }
}

// ---- container args are flags the programs have (or flags proposed for them) -----------------
function flags(helpFile, proposedFile, files) {
  // help.txt: "program flag" lines; proposed.txt: the same, for flags the C++ side must add.
  const known = new Set();
  const proposed = new Set();
  for (const [f, set] of [[helpFile, known], [proposedFile, proposed]]) {
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      const [prog, flag] = line.split('#')[0].trim().split(/\s+/);
      if (prog && flag) set.add(`${prog} ${flag}`);
    }
  }
  let n = 0;
  const stillProposed = new Set();
  for (const file of files) for (const doc of readYamlDocs(file)) {
    for (const c of doc.spec?.template?.spec?.containers ?? []) {
      const prog = c.command?.[0];
      if (!prog) { fail(`${file}: ${doc.metadata.name}/${c.name} has no command`); continue; }
      for (const a of c.args ?? []) {
        const m = a.match(/^--([a-z_]+)(=|$)/);
        if (!m) { fail(`${file}: ${prog} argument ${a} is not --flag[=value]`); continue; }
        const key = `${prog} ${m[1]}`;
        n++;
        if (known.has(key)) continue;
        if (proposed.has(key)) { stillProposed.add(key); continue; }
        fail(`${file}: ${prog} has no flag --${m[1]} (not in its --help, not proposed)`);
      }
    }
  }
  for (const k of proposed) if (known.has(k)) console.log(`flags: ${k} now exists; remove it from the proposed list`);
  console.log(`flags: ${n} arguments checked; proposed, not yet in the programs: ${[...stillProposed].sort().join(', ') || 'none'}`);
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'catalogue') console.log([...catalogue(args[0]).keys()].join('\n'));
  else if (cmd === 'k8s') k8s(args[0], args.slice(1));
  else if (cmd === 'dashboard') dashboard(...args);
  else if (cmd === 'promql') promql(args[0], args.slice(1));
  else if (cmd === 'rules-sync') rulesSync(args[0], args[1], args[2] === '--write');
  else if (cmd === 'flags') flags(args[0], args[1], args.slice(2));
  else { console.error(`unknown command ${cmd}`); process.exit(2); }
} catch (e) {
  fail(e.stack ?? String(e));
}
if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  process.exit(1);
}
