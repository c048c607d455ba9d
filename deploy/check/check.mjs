// Offline checks of Duet's deployment files, run by tests/deploy_manifests_test.sh.
//   node check.mjs catalogue  <docs/metrics.md>                        print the metric names
//   node check.mjs k8s        <out.ts> <rendered.yaml>...              validate every object; write a TS file for tsc
//   node check.mjs dashboard  <out.ts> <duet.json> <metrics.md> <rules.yml> <operations.md>
//   node check.mjs promql     <metrics.md> <file>...                  every duet_ series in rules/adapter config is catalogued
//   node check.mjs rules-sync <rules.yml> <prometheusrule.yaml> [--write]
//   node check.mjs flags      <help.txt> <proposed.txt> <rendered.yaml>...   container args are real flags
//   node check.mjs k8s-policy <operations.md> <rendered.yaml>...      what the schemas cannot see (below)
//   node check.mjs k8s-policy-selftest <operations.md> <rendered.yaml>  plants each defect, expects k8s-policy to name it
//   node check.mjs kustomize-fields <kustomization.yaml>...          no deprecated kustomize fields
// Each prints what is wrong and exits 1.
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
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
  // Series the dashboard must show (the issue's list).
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

// ---- Kubernetes policy: what the schemas cannot see -----------------------------------------
// Over one rendered overlay (its objects refer to each other by name and by label):
//   - a workload's selector matches its own template's labels, and no other workload's;
//   - every secret, configMap and claim a pod uses is defined by an object of the render or,
//     for a secret, documented as created out of band: docs/operations.md's "Kubernetes"
//     section has `create secret generic NAME --from-file=KEY=...` (or --from-literal). Such
//     a secret must not be rendered (every apply would overwrite the operator's value), and
//     no rendered Secret has an empty value; a file argument (--flag=/path) into a mounted
//     secret or configMap names one of its keys, and every file argument lies on a mounted
//     volume (the root file system is read-only), a written one (--out) on a writable one;
//   - every container can read every file it mounts from a secret, configMap or projected
//     volume, under its securityContext (readable() below);
//   - pod security: runAsNonRoot with a non-root runAsUser, seccompProfile RuntimeDefault (or
//     Localhost), no service-account token; per container allowPrivilegeEscalation false,
//     capabilities drop ALL, readOnlyRootFilesystem, not privileged;
//   - ports: container ports in 1..65535 with unique names; every probe port in 1..65535 and
//     declared by its container (a named one resolves against the container's own ports);
//     every --*address=HOST:PORT a container listens on is one of its declared ports;
//   - NetworkPolicy, Service, PodMonitor: each selects some workload's pods; a NetworkPolicy
//     or PodMonitor port name is declared by every workload it selects, a Service's
//     targetPort by some; a NetworkPolicy's peer podSelector selects some workload;
//   - every workload is covered by exactly one PodDisruptionBudget; an HPA scales a workload.
// Inputs are rendered YAML (`kubectl kustomize`), where modes are decimal numbers.
const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);
// Flags whose file the program writes (the rest it only reads).
const WRITTEN_FLAGS = new Set(['out', 'port_file']);
const octal = (m) => `0${m.toString(8).padStart(3, '0')}`;

function selects(selector, labels) {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels?.[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = labels != null && Object.hasOwn(labels, e.key);
    const ok = { In: has && (e.values ?? []).includes(labels[e.key]), NotIn: !has || !(e.values ?? []).includes(labels[e.key]),
      Exists: has, DoesNotExist: !has }[e.operator];
    if (!ok) return false;
  }
  return true;
}
const emptySelector = (s) => !s || (!Object.keys(s.matchLabels ?? {}).length && !(s.matchExpressions ?? []).length);

// Secrets that docs/operations.md ("### Kubernetes") tells the operator to create, with their keys.
function outOfBandSecrets(opsMd) {
  const text = fs.readFileSync(opsMd, 'utf8');
  const start = text.search(/^### Kubernetes\s*$/m);
  if (start < 0) { fail(`${opsMd}: no "### Kubernetes" section`); return new Map(); }
  const rest = text.slice(start + 5);
  const end = rest.search(/^##{1,2} /m);
  const section = (end < 0 ? rest : rest.slice(0, end)).replace(/\\\n\s*/g, ' ');
  const secrets = new Map();
  for (const m of section.matchAll(/create secret generic\s+([a-z0-9][a-z0-9.-]*)([^\n]*)/g)) {
    const keys = secrets.get(m[1]) ?? new Set();
    for (const f of m[2].matchAll(/--from-(file|literal)=("[^"]*"|'[^']*'|\S+)/g)) {
      const v = f[2].replace(/^["']|["']$/g, '');
      keys.add(f[1] === 'literal' || v.includes('=') ? v.split('=')[0] : path.basename(v));
    }
    secrets.set(m[1], keys);
  }
  return secrets;
}

// Can the process read a file of a secret/configMap/projected volume? The files are owned by
// root (uid 0) and by group fsGroup when the pod sets one (else gid 0); their mode is the
// item's `mode`, else the volume's defaultMode, else 0644. The process runs as
// runAsUser:runAsGroup (the container's over the pod's) with fsGroup and supplementalGroups
// as further groups. It reads the file if it is the owner and the owner may read, is in the
// file's group and the group may read, or others may read: with every capability dropped
// even uid 0 has no DAC override. (Kubelets also add group read to such files when fsGroup
// is set; the check does not count on that.)
function readable(mode, uid, groups, fileGid) {
  if (uid === 0) return (mode & 0o400) !== 0;
  if (groups.has(fileGid) && (mode & 0o040)) return true;
  return (mode & 0o004) !== 0;
}

function k8sPolicy(opsMd, files, quiet = false) {
  const oob = outOfBandSecrets(opsMd);
  let nChecked = 0;
  for (const file of files) {
    const docs = readYamlDocs(file);
    const id = (d) => `${file}: ${d.kind}/${d.metadata?.name}`;
    const secrets = new Map();   // name -> Set(keys)
    const configMaps = new Map();
    const claims = new Set();
    for (const d of docs) {
      const keys = new Set([...Object.keys(d.data ?? {}), ...Object.keys(d.stringData ?? {}), ...Object.keys(d.binaryData ?? {})]);
      if (d.kind === 'Secret') {
        secrets.set(d.metadata.name, keys);
        if (oob.has(d.metadata.name)) {
          fail(`${id(d)} is rendered by the manifests, but docs/operations.md has the operator create it out of band: every apply would overwrite the operator's value`);
        }
        for (const [k, v] of [...Object.entries(d.stringData ?? {}), ...Object.entries(d.data ?? {})]) {
          if (v == null || v === '') fail(`${id(d)} has an empty value for ${k}: an apply would replace the real one with it`);
        }
      } else if (d.kind === 'ConfigMap') configMaps.set(d.metadata.name, keys);
      else if (d.kind === 'PersistentVolumeClaim') claims.add(d.metadata.name);
    }
    for (const [name, keys] of oob) if (!secrets.has(name)) secrets.set(name, keys);
    const workloads = docs.filter((d) => WORKLOAD_KINDS.has(d.kind) && d.spec?.template);
    const portNames = (w) => new Set((w.spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.name).filter(Boolean)));
    const portNumbers = (w) => new Set((w.spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)));
    const selected = (sel) => workloads.filter((w) => selects(sel, w.spec.template.metadata?.labels));

    for (const w of workloads) {
      nChecked++;
      const wid = id(w);
      const labels = w.spec.template.metadata?.labels ?? {};
      // Selector.
      if (emptySelector(w.spec.selector)) fail(`${wid}: empty spec.selector`);
      else if (!selects(w.spec.selector, labels)) {
        fail(`${wid}: spec.selector ${JSON.stringify(w.spec.selector)} does not match its template's labels ${JSON.stringify(labels)}`);
      }
      for (const o of workloads) {
        if (o !== w && selects(w.spec.selector, o.spec.template.metadata?.labels)) fail(`${wid}: spec.selector also selects the pods of ${o.kind}/${o.metadata.name}`);
      }
      const pod = w.spec.template.spec;
      const psc = pod.securityContext ?? {};
      // Pod security.
      if (pod.automountServiceAccountToken !== false) fail(`${wid}: automountServiceAccountToken is not false (Duet pods do not talk to the Kubernetes API)`);
      if (pod.hostNetwork || pod.hostPID || pod.hostIPC) fail(`${wid}: uses the host's network, PID or IPC namespace`);
      const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
      const templates = new Set((w.spec.volumeClaimTemplates ?? []).map((t) => t.metadata?.name));
      // Volumes that refer to other objects.
      for (const v of pod.volumes ?? []) {
        const refs = [];
        if (v.secret) refs.push(['secret', v.secret.secretName, v.secret.optional, v.secret.items]);
        if (v.configMap) refs.push(['configMap', v.configMap.name, v.configMap.optional, v.configMap.items]);
        for (const s of v.projected?.sources ?? []) {
          if (s.secret) refs.push(['secret', s.secret.name, s.secret.optional, s.secret.items]);
          if (s.configMap) refs.push(['configMap', s.configMap.name, s.configMap.optional, s.configMap.items]);
        }
        for (const [kind, name, optional, items] of refs) {
          const keys = (kind === 'secret' ? secrets : configMaps).get(name);
          if (!keys) { if (!optional) fail(`${wid}: volume ${v.name} uses ${kind} ${name}, which is defined by no manifest${kind === 'secret' ? ' and not created out of band in docs/operations.md' : ''}`); continue; }
          for (const it of items ?? []) if (keys.size && !keys.has(it.key)) fail(`${wid}: volume ${v.name}: ${kind} ${name} has no key ${it.key}`);
        }
        if (v.persistentVolumeClaim && !claims.has(v.persistentVolumeClaim.claimName)) {
          fail(`${wid}: volume ${v.name} uses PersistentVolumeClaim ${v.persistentVolumeClaim.claimName}, which is defined by no manifest`);
        }
      }
      // The files of a volume as the container sees them: [{path, mode}] or null (not a secret/configMap).
      const volumeFiles = (v) => {
        const out = [];
        const add = (kind, name, items, defaultMode) => {
          const keys = (kind === 'secret' ? secrets : configMaps).get(name) ?? new Set();
          if (items?.length) for (const it of items) out.push({ path: it.path, key: it.key, mode: it.mode ?? defaultMode ?? 0o644, what: `${kind} ${name}` });
          else for (const k of keys) out.push({ path: k, key: k, mode: defaultMode ?? 0o644, what: `${kind} ${name}` });
          if (!keys.size && !items?.length) out.push({ path: null, mode: defaultMode ?? 0o644, what: `${kind} ${name}` });
        };
        if (v.secret) add('secret', v.secret.secretName, v.secret.items, v.secret.defaultMode);
        else if (v.configMap) add('configMap', v.configMap.name, v.configMap.items, v.configMap.defaultMode);
        else if (v.projected) {
          for (const s of v.projected.sources ?? []) {
            if (s.secret) add('secret', s.secret.name, s.secret.items, v.projected.defaultMode);
            if (s.configMap) add('configMap', s.configMap.name, s.configMap.items, v.projected.defaultMode);
          }
        } else return null;
        return out;
      };
      const envRefs = [];
      for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
        const cid = `${wid} container ${c.name}`;
        const csc = c.securityContext ?? {};
        const uid = csc.runAsUser ?? psc.runAsUser;
        const gid = csc.runAsGroup ?? psc.runAsGroup;
        if ((csc.runAsNonRoot ?? psc.runAsNonRoot) !== true) fail(`${cid}: runAsNonRoot is not true`);
        if (uid === undefined) fail(`${cid}: no runAsUser (the image's user): what it can read cannot be checked`);
        else if (uid === 0) fail(`${cid}: runs as root (runAsUser 0)`);
        const seccomp = (csc.seccompProfile ?? psc.seccompProfile)?.type;
        if (!['RuntimeDefault', 'Localhost'].includes(seccomp)) fail(`${cid}: seccompProfile is ${seccomp ?? 'unset'}, not RuntimeDefault`);
        if (csc.allowPrivilegeEscalation !== false) fail(`${cid}: allowPrivilegeEscalation is not false`);
        if (!(csc.capabilities?.drop ?? []).includes('ALL')) fail(`${cid}: capabilities do not drop ALL`);
        if ((csc.capabilities?.add ?? []).length) fail(`${cid}: adds capabilities ${csc.capabilities.add.join(',')}`);
        if (csc.readOnlyRootFilesystem !== true) fail(`${cid}: readOnlyRootFilesystem is not true`);
        if (csc.privileged) fail(`${cid}: privileged`);
        // Mounts, and what the process can read from them.
        const groups = new Set([gid, psc.fsGroup, ...(psc.supplementalGroups ?? [])].filter((g) => g !== undefined));
        const fileGid = psc.fsGroup ?? 0;
        for (const m of c.volumeMounts ?? []) {
          const v = volumes.get(m.name);
          if (!v) { if (!templates.has(m.name)) fail(`${cid}: mounts ${m.name}, which is no volume of the pod`); continue; }
          const vf = volumeFiles(v);
          if (!vf || uid === undefined) continue;
          for (const f of vf) {
            if (m.subPath && f.path !== m.subPath && !f.path?.startsWith(`${m.subPath}/`)) continue;
            if (!readable(f.mode, uid, groups, fileGid)) {
              fail(`${cid} cannot read ${f.what}${f.path ? ` file ${f.path}` : ''} at ${m.mountPath}: mode ${octal(f.mode)}, owner 0:${fileGid}${psc.fsGroup === undefined ? ' (no fsGroup)' : ''}, the process runs as ${uid}:${gid ?? '?'} in groups [${[...groups].join(',')}]`);
            }
          }
        }
        // File arguments.
        for (const a of c.args ?? []) {
          const m = a.match(/^--([a-z_]+)=(\/.*)$/);
          if (!m) continue;
          const [, flag, p] = m;
          const mount = (c.volumeMounts ?? []).filter((vm) => p === vm.mountPath || p.startsWith(`${vm.mountPath.replace(/\/$/, '')}/`))
            .sort((x, y) => y.mountPath.length - x.mountPath.length)[0];
          if (!mount) { fail(`${cid}: --${flag}=${p} is on no mounted volume (the root file system holds only the image)`); continue; }
          const v = volumes.get(mount.name);
          const rel = p.slice(mount.mountPath.replace(/\/$/, '').length + 1);
          const vf = v && volumeFiles(v);
          if (vf && vf.some((f) => f.path) && !vf.some((f) => f.path === rel || f.path?.startsWith(`${rel}/`))) {
            fail(`${cid}: --${flag}=${p}: the volume ${mount.name} mounted at ${mount.mountPath} (${vf[0].what}) has no key ${rel} (it has ${vf.map((f) => f.path).join(', ')})`);
          }
          if (WRITTEN_FLAGS.has(flag) && (mount.readOnly || vf || v?.persistentVolumeClaim?.readOnly)) {
            fail(`${cid}: --${flag}=${p} is written, but ${mount.mountPath} is mounted read-only`);
          }
        }
        // Ports.
        const declared = new Map();
        for (const p of c.ports ?? []) {
          if (!(p.containerPort >= 1 && p.containerPort <= 65535)) fail(`${cid}: containerPort ${p.containerPort} outside 1..65535`);
          if (p.name) {
            if (declared.has(p.name)) fail(`${cid}: port name ${p.name} twice`);
            declared.set(p.name, p.containerPort);
          }
        }
        const numbers = new Set((c.ports ?? []).map((p) => p.containerPort));
        for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          const pr = c[kind];
          if (!pr) continue;
          const port = pr.grpc?.port ?? pr.httpGet?.port ?? pr.tcpSocket?.port;
          if (port === undefined) continue;
          if (typeof port === 'number') {
            if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) fail(`${cid}: ${kind} port ${port} outside 1..65535`);
            else if (!numbers.has(port)) fail(`${cid}: ${kind} port ${port} is not one of the container's ports (${[...numbers].join(', ')})`);
          } else if (!declared.has(port)) {
            fail(`${cid}: ${kind} port ${port} names no port of the container (it declares ${[...declared.keys()].join(', ')})`);
          }
        }
        for (const a of c.args ?? []) {
          const m = a.match(/^--([a-z_]*address)=.*:(\d+)$/);
          if (m && Number(m[2]) !== 0 && !numbers.has(Number(m[2]))) fail(`${cid}: --${m[1]} listens on ${m[2]}, which is not one of the container's ports`);
        }
        for (const e of c.env ?? []) {
          if (e.valueFrom?.secretKeyRef) envRefs.push(['secret', e.valueFrom.secretKeyRef]);
          if (e.valueFrom?.configMapKeyRef) envRefs.push(['configMap', e.valueFrom.configMapKeyRef]);
        }
        for (const e of c.envFrom ?? []) {
          if (e.secretRef) envRefs.push(['secret', e.secretRef]);
          if (e.configMapRef) envRefs.push(['configMap', e.configMapRef]);
        }
      }
      for (const [kind, ref] of envRefs) {
        const keys = (kind === 'secret' ? secrets : configMaps).get(ref.name);
        if (!keys) { if (!ref.optional) fail(`${wid}: env uses ${kind} ${ref.name}, which is defined by no manifest`); }
        else if (ref.key && keys.size && !keys.has(ref.key) && !ref.optional) fail(`${wid}: env uses ${kind} ${ref.name} key ${ref.key}, which it does not have`);
      }
      const pdbs = docs.filter((d) => d.kind === 'PodDisruptionBudget' && selects(d.spec?.selector, labels));
      if (pdbs.length !== 1) fail(`${wid}: ${pdbs.length ? `${pdbs.length} PodDisruptionBudgets select it` : 'no PodDisruptionBudget selects its pods'}`);
    }

    const checkPorts = (d, port, sel, every) => {
      if (typeof port === 'number') { if (!(port >= 1 && port <= 65535)) fail(`${id(d)}: port ${port} outside 1..65535`); return; }
      if (port === undefined) return;
      const ws = selected(sel);
      const lacking = ws.filter((w) => !portNames(w).has(port));
      if (every ? lacking.length : lacking.length === ws.length) {
        fail(`${id(d)}: port ${port}: no container of ${lacking.map((w) => `${w.kind}/${w.metadata.name}`).join(', ')} (selected) declares it`);
      }
    };
    for (const d of docs) {
      if (d.kind === 'NetworkPolicy') {
        nChecked++;
        const sel = d.spec?.podSelector ?? {};
        if (!selected(sel).length) fail(`${id(d)}: podSelector selects no workload's pods`);
        for (const rule of [...(d.spec?.ingress ?? []), ...(d.spec?.egress ?? [])]) {
          for (const p of rule.ports ?? []) checkPorts(d, p.port, sel, true);
          for (const peer of [...(rule.from ?? []), ...(rule.to ?? [])]) {
            if (peer.podSelector && !peer.namespaceSelector && !emptySelector(peer.podSelector) && !selected(peer.podSelector).length) {
              fail(`${id(d)}: peer podSelector ${JSON.stringify(peer.podSelector)} selects no workload's pods`);
            }
          }
        }
      } else if (d.kind === 'Service' && d.spec?.selector) {
        nChecked++;
        const sel = { matchLabels: d.spec.selector };
        if (!selected(sel).length) fail(`${id(d)}: selector selects no workload's pods`);
        for (const p of d.spec.ports ?? []) {
          const t = p.targetPort ?? p.port;
          if (typeof t === 'number') {
            if (!(t >= 1 && t <= 65535)) fail(`${id(d)}: targetPort ${t} outside 1..65535`);
            else if (!selected(sel).some((w) => portNumbers(w).has(t))) fail(`${id(d)}: targetPort ${t}: no selected pod declares it`);
          } else checkPorts(d, t, sel, false);
        }
      } else if (d.kind === 'PodMonitor') {
        nChecked++;
        if (!selected(d.spec?.selector).length) fail(`${id(d)}: selector selects no workload's pods`);
        for (const e of d.spec?.podMetricsEndpoints ?? []) checkPorts(d, e.port, d.spec.selector, true);
      } else if (d.kind === 'PodDisruptionBudget') {
        nChecked++;
        if (d.spec?.minAvailable === undefined && d.spec?.maxUnavailable === undefined) fail(`${id(d)}: neither minAvailable nor maxUnavailable`);
        if (emptySelector(d.spec?.selector) || !selected(d.spec.selector).length) fail(`${id(d)}: selector selects no workload's pods`);
      } else if (d.kind === 'HorizontalPodAutoscaler') {
        nChecked++;
        const r = d.spec?.scaleTargetRef ?? {};
        if (!workloads.some((w) => w.kind === r.kind && w.metadata.name === r.name)) fail(`${id(d)}: scaleTargetRef ${r.kind}/${r.name} is not in the render`);
      }
    }
  }
  if (!quiet) console.log(`k8s-policy: ${nChecked} objects checked in ${files.length} renders; out-of-band secrets (docs/operations.md): ${[...oob].map(([n, k]) => `${n} [${[...k].join(', ')}]`).join(', ') || 'none'}`);
}

// ---- kustomization files use current fields ----------------------------------------------
const DEPRECATED_KUSTOMIZE = { bases: 'resources', patchesStrategicMerge: 'patches', patchesJson6902: 'patches',
  commonLabels: 'labels', vars: 'replacements', imageTags: 'images' };
function kustomizeFields(files, quiet = false) {
  for (const file of files) {
    const k = readYamlDocs(file)[0] ?? {};
    for (const [old, now] of Object.entries(DEPRECATED_KUSTOMIZE)) if (old in k) fail(`${file}: deprecated kustomize field ${old} (use ${now})`);
  }
  if (!quiet) console.log(`kustomize-fields: ${files.length} kustomization files`);
}

// ---- the policy check catches each defect when it is planted --------------------------------
// Each plant mutates a copy of the rendered objects (the tls overlay: all three workloads,
// both secrets mounted), writes it to a temporary file and must make the check fail with a
// message that matches. The checks run in this process (a node start per plant would take
// most of the test's time); the test runs the command line itself on the shipped renders.
function k8sPolicySelftest(opsMd, file) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'duet-policy-'));
  // Runs a check, and returns its failures instead of keeping them.
  const run = (check, ...a) => {
    const before = errors.length;
    try { check(...a, /*quiet=*/true); } catch (e) { errors.push(e.stack ?? String(e)); }
    return errors.splice(before);
  };
  try {
    const shipped = run(k8sPolicy, opsMd, [file]);
    if (shipped.length) fail(`k8s-policy fails on the shipped render ${file}:\n${shipped.join('\n')}`);
    const original = readYamlDocs(file);
    const get = (docs, kind, name) => {
      const d = docs.find((x) => x.kind === kind && x.metadata?.name === name);
      if (!d) throw new Error(`selftest: ${kind}/${name} not in ${file}`);
      return d;
    };
    const pod = (docs, kind, name) => get(docs, kind, name).spec.template.spec;
    const ctr = (docs, kind, name) => pod(docs, kind, name).containers[0];
    const vol = (docs, kind, name, v) => pod(docs, kind, name).volumes.find((x) => x.name === v);
    const L = ['StatefulSet', 'duet-learner'];
    const R = ['Deployment', 'duet-rollout'];
    const S = ['Deployment', 'duet-scorer'];
    const plants = [
      ['selector differs from the template labels', (d) => { get(d, ...L).spec.selector.matchLabels['app.kubernetes.io/name'] = 'duet-learnr'; },
        /StatefulSet\/duet-learner: spec\.selector .* does not match its template's labels/],
      ['selector also selects another workload', (d) => { get(d, ...S).spec.selector = { matchLabels: { 'app.kubernetes.io/part-of': 'duet' } }; },
        /Deployment\/duet-scorer: spec\.selector also selects the pods of StatefulSet\/duet-learner/],
      ['dangling secret name', (d) => { vol(d, ...R, 'auth').secret.secretName = 'duet-auht'; },
        /Deployment\/duet-rollout: volume auth uses secret duet-auht, which is defined by no manifest/],
      ['dangling configMap name', (d) => { vol(d, ...L, 'recipe').configMap.name = 'duet-recipe'; },
        /StatefulSet\/duet-learner: volume recipe uses configMap duet-recipe, which is defined by no manifest/],
      ['NetworkPolicy port name no container has', (d) => { get(d, 'NetworkPolicy', 'duet-workers').spec.ingress[1].ports[0].port = 'metrix'; },
        /NetworkPolicy\/duet-workers: port metrix: no container of Deployment\/duet-rollout, Deployment\/duet-scorer/],
      ['probe port 99999', (d) => { ctr(d, ...R).readinessProbe.grpc.port = 99999; },
        /Deployment\/duet-rollout container rollout: readinessProbe port 99999 outside 1\.\.65535/],
      ['probe on a port the container does not declare', (d) => { ctr(d, ...L).startupProbe.grpc.port = 8082; },
        /StatefulSet\/duet-learner container learner: startupProbe port 8082 is not one of the container's ports/],
      ['named probe port no container declares', (d) => { ctr(d, ...S).livenessProbe = { httpGet: { path: '/healthz', port: 'healthz' } }; },
        /Deployment\/duet-scorer container scorer: livenessProbe port healthz names no port of the container/],
      ['secret unreadable: no fsGroup (files root:root 0440)', (d) => { delete pod(d, ...R).securityContext.fsGroup; },
        /Deployment\/duet-rollout container rollout cannot read secret duet-auth file token at \/etc\/duet\/auth: mode 0440, owner 0:0 \(no fsGroup\)/],
      ['secret unreadable: mode 0400 (the TLS CA)', (d) => { vol(d, ...S, 'tls').secret.defaultMode = 0o400; },
        /Deployment\/duet-scorer container scorer cannot read secret duet-tls file ca\.crt at \/etc\/duet\/tls: mode 0400/],
      ['secret unreadable: item mode 0600', (d) => { vol(d, ...L, 'auth').secret.items = [{ key: 'token', path: 'token', mode: 0o600 }]; },
        /StatefulSet\/duet-learner container learner cannot read secret duet-auth file token at \/etc\/duet\/auth: mode 0600/],
      ['secret unreadable: container runs in another group without fsGroup', (d) => {
        delete pod(d, ...S).securityContext.fsGroup; ctr(d, ...S).securityContext.runAsGroup = 1000; },
        /Deployment\/duet-scorer container scorer cannot read secret duet-auth file token .* runs as 65532:1000/],
      ['secret rendered with an empty token (a re-apply empties it)', (d) => {
        d.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'duet-auth', namespace: 'duet' }, type: 'Opaque', stringData: { token: '' } }); },
        /Secret\/duet-auth is rendered by the manifests, but docs\/operations\.md has the operator create it out of band/],
      ['a rendered Secret with an empty value', (d) => {
        d.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'other', namespace: 'duet' }, type: 'Opaque', data: { password: '' } }); },
        /Secret\/other has an empty value for password/],
      ['argument names a key the secret lacks', (d) => {
        const c = ctr(d, ...R); c.args = c.args.map((a) => a.replace('/etc/duet/auth/token', '/etc/duet/auth/tokn')); },
        /Deployment\/duet-rollout container rollout: --auth_token_file=\/etc\/duet\/auth\/tokn: .* has no key tokn/],
      ['file argument on the read-only root file system', (d) => {
        const c = ctr(d, ...L); c.args = c.args.map((a) => a.replace('--out=/var/lib/duet/run', '--out=/var/run/duet')); },
        /StatefulSet\/duet-learner container learner: --out=\/var\/run\/duet is on no mounted volume/],
      ['--out on a read-only mount', (d) => { ctr(d, ...L).volumeMounts.find((m) => m.name === 'checkpoints').readOnly = true; },
        /StatefulSet\/duet-learner container learner: --out=\/var\/lib\/duet\/run is written, but \/var\/lib\/duet is mounted read-only/],
      ['no seccompProfile', (d) => { delete pod(d, ...L).securityContext.seccompProfile; },
        /StatefulSet\/duet-learner container learner: seccompProfile is unset, not RuntimeDefault/],
      ['seccomp Unconfined', (d) => { pod(d, ...S).securityContext.seccompProfile = { type: 'Unconfined' }; },
        /Deployment\/duet-scorer container scorer: seccompProfile is Unconfined/],
      ['allowPrivilegeEscalation', (d) => { ctr(d, ...R).securityContext.allowPrivilegeEscalation = true; },
        /Deployment\/duet-rollout container rollout: allowPrivilegeEscalation is not false/],
      ['capabilities not dropped', (d) => { ctr(d, ...S).securityContext.capabilities = {}; },
        /Deployment\/duet-scorer container scorer: capabilities do not drop ALL/],
      ['writable root file system', (d) => { ctr(d, ...L).securityContext.readOnlyRootFilesystem = false; },
        /StatefulSet\/duet-learner container learner: readOnlyRootFilesystem is not true/],
      ['runs as root', (d) => { pod(d, ...R).securityContext.runAsUser = 0; delete pod(d, ...R).securityContext.runAsNonRoot; },
        /Deployment\/duet-rollout container rollout: runs as root/],
      ['no runAsUser', (d) => { delete pod(d, ...S).securityContext.runAsUser; },
        /Deployment\/duet-scorer container scorer: no runAsUser/],
      ['service-account token mounted', (d) => { delete pod(d, ...R).automountServiceAccountToken; },
        /Deployment\/duet-rollout: automountServiceAccountToken is not false/],
      ['no PodDisruptionBudget', (d) => { d.splice(d.indexOf(get(d, 'PodDisruptionBudget', 'duet-scorer')), 1); },
        /Deployment\/duet-scorer: no PodDisruptionBudget selects its pods/],
      ['PodDisruptionBudget selecting nothing', (d) => { get(d, 'PodDisruptionBudget', 'duet-learner').spec.selector.matchLabels['app.kubernetes.io/name'] = 'learner'; },
        /PodDisruptionBudget\/duet-learner: selector selects no workload's pods/],
      ['listening port not declared', (d) => { const c = ctr(d, ...L); c.ports = c.ports.filter((p) => p.name !== 'metrics'); },
        /StatefulSet\/duet-learner container learner: --metrics_address listens on 8080, which is not one of the container's ports/],
      ['Service targetPort name no pod declares', (d) => { get(d, 'Service', 'duet-learner').spec.ports[0].targetPort = 'grpcc'; },
        /Service\/duet-learner: port grpcc: no container of StatefulSet\/duet-learner \(selected\) declares it/],
      ['PodMonitor port name', (d) => { get(d, 'PodMonitor', 'duet').spec.podMetricsEndpoints[0].port = 'metric'; },
        /PodMonitor\/duet: port metric: no container/],
      ['mount of a volume the pod lacks', (d) => { ctr(d, ...S).volumeMounts.push({ name: 'cache', mountPath: '/cache' }); },
        /Deployment\/duet-scorer container scorer: mounts cache, which is no volume of the pod/],
    ];
    let n = 0;
    for (const [name, plant, want] of plants) {
      const docs = structuredClone(original);
      try { plant(docs); } catch (e) { fail(`selftest "${name}": ${e.message}`); continue; }
      const f = path.join(tmp, `plant-${n++}.yaml`);
      fs.writeFileSync(f, docs.map((x) => YAML.stringify(x, { lineWidth: 0 })).join('---\n'));
      const r = run(k8sPolicy, opsMd, [f]);
      const hit = r.find((l) => want.test(l));
      if (!hit) fail(`planted "${name}": k8s-policy ${r.length ? 'failed' : 'passed'} without a message matching ${want}${r.map((l) => `\n  ${l}`).join('')}`);
      else console.log(`planted ${name}: caught: ${hit.replace(/^[^:]*: /, '')}`);
    }
    // Deprecated kustomize fields.
    for (const [old] of Object.entries(DEPRECATED_KUSTOMIZE).slice(0, 3)) {
      const f = path.join(tmp, `kustomization-${old}.yaml`);
      fs.writeFileSync(f, `${old}:\n  - ../base\n`);
      const r = run(kustomizeFields, [f]);
      const hit = r.find((l) => new RegExp(`deprecated kustomize field ${old} `).test(l));
      if (!hit) fail(`planted "${old}" in a kustomization: kustomize-fields did not name it${r.map((l) => `\n  ${l}`).join('')}`);
      else console.log(`planted ${old}: caught: ${hit.replace(/^[^:]*: /, '')}`);
    }
    console.log(`k8s-policy-selftest: ${plants.length + 3} planted defects, each caught; the shipped render passes`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'catalogue') console.log([...catalogue(args[0]).keys()].join('\n'));
  else if (cmd === 'k8s') k8s(args[0], args.slice(1));
  else if (cmd === 'dashboard') dashboard(...args);
  else if (cmd === 'promql') promql(args[0], args.slice(1));
  else if (cmd === 'rules-sync') rulesSync(args[0], args[1], args[2] === '--write');
  else if (cmd === 'flags') flags(args[0], args[1], args.slice(2));
  else if (cmd === 'k8s-policy') k8sPolicy(args[0], args.slice(1));
  else if (cmd === 'k8s-policy-selftest') k8sPolicySelftest(args[0], args[1]);
  else if (cmd === 'kustomize-fields') kustomizeFields(args);
  else { console.error(`unknown command ${cmd}`); process.exit(2); }
} catch (e) {
  fail(e.stack ?? String(e));
}
if (errors.length) {
  for (const e of errors) console.error(`FAIL ${e}`);
  process.exit(1);
}
