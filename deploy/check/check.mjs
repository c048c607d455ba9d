// Offline checks of Duet's deployment files, run by tests/deploy_manifests_test.sh.
//   node check.mjs catalogue  <docs/metrics.md>                        print the metric names
//   node check.mjs k8s        <out.ts> <rendered.yaml>...              validate every object; write a TS file for tsc
//   node check.mjs dashboard  <out.ts> <duet.json> <metrics.md> <rules.yml> <operations.md>
//   node check.mjs dashboard-scope <duet.json> <metrics.md>          every query carries the run selectors, every panel its series' unit
//   node check.mjs dashboard-scope-selftest <duet.json> <metrics.md> plants each defect, expects dashboard-scope to name it
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

// ---- the dashboard is scoped to one run, and every panel shows its series' unit ---------------
// docs/metrics.md, "## Units": unit -> its Grafana unit, its rate's unit and that one's Grafana unit.
function unitTable(file) {
  const text = fs.readFileSync(file, 'utf8');
  const start = text.indexOf('## Units');
  if (start < 0) throw new Error(`${file}: no "## Units" section`);
  const end = text.indexOf('\n## ', start + 5);
  const grafana = new Map();   // unit (or rate unit) -> Grafana unit
  const rateOf = new Map();    // unit -> unit of its rate()
  const listed = new Set();
  const cell = (c) => { const m = c.trim().match(/^`([^`]+)`$/); return m ? m[1] : null; };
  for (const line of text.slice(start, end < 0 ? undefined : end).split('\n')) {
    if (!line.startsWith('| `')) continue;
    const [u, g, r, rg] = line.split('|').slice(1, 5).map(cell);
    if (!u) continue;
    if (listed.has(u)) fail(`${file}: unit ${u} listed twice under ## Units`);
    listed.add(u);
    if (grafana.has(u) && grafana.get(u) !== g) fail(`${file}: ${u} has two Grafana units`);
    grafana.set(u, g);
    if (r) {
      rateOf.set(u, r);
      if (!rg) fail(`${file}: unit ${u}: its rate ${r} has no Grafana unit`);
      else if (grafana.has(r) && grafana.get(r) !== rg) fail(`${file}: ${r} has two Grafana units`);
      else grafana.set(r, rg);
    }
  }
  if (grafana.size < 10) fail(`${file}: only ${grafana.size} units parsed from ## Units`);
  return { grafana, rateOf };
}

// docs/metrics.md catalogue rows: name -> { type, unit } (duet_ series and Prometheus's `up`).
function catalogueRows(file) {
  const text = fs.readFileSync(file, 'utf8');
  const start = text.indexOf('## Catalogue');
  const end = text.indexOf('\n## ', start + 5);
  const rows = new Map();
  for (const line of text.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = line.match(/^\|\s*`(duet_[a-z0-9_]+|up)`\s*\|\s*(counter|gauge|histogram)[^|]*\|\s*([^|]*?)\s*\|/);
    if (m) rows.set(m[1], { type: m[2], unit: m[3] });
  }
  return rows;
}

// A small PromQL parser: enough of the language for the dashboard (selectors, ranges,
// functions, aggregations with by/without, binary operators with bool/on/ignoring/group_*).
const AGGREGATORS = new Set(['sum', 'min', 'max', 'avg', 'count', 'group', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values']);
const BINARY_PREC = { or: 1, and: 2, unless: 2, '==': 3, '!=': 3, '>': 3, '<': 3, '>=': 3, '<=': 3, '+': 4, '-': 4, '*': 5, '/': 5, '%': 5, '^': 6 };
function tokenize(expr) {
  const toks = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i];
    if (/\s/.test(c)) { i++; continue; }
    let m;
    const rest = expr.slice(i);
    if (c === '[') {   // a range or subquery: kept raw
      const j = expr.indexOf(']', i);
      if (j < 0) throw new Error(`unclosed [ at ${i}`);
      toks.push({ t: 'range', v: expr.slice(i + 1, j).trim() }); i = j + 1; continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1, v = '';
      while (j < expr.length && expr[j] !== c) { if (expr[j] === '\\' && c !== '`') j++; v += expr[j++]; }
      if (j >= expr.length) throw new Error(`unclosed string at ${i}`);
      toks.push({ t: 'str', v }); i = j + 1; continue;
    }
    if ((m = rest.match(/^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/))) { toks.push({ t: 'num', v: Number(m[0]) }); i += m[0].length; continue; }
    if ((m = rest.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/))) { toks.push({ t: 'id', v: m[0] }); i += m[0].length; continue; }
    if ((m = rest.match(/^(==|!=|>=|<=|=~|!~|[-+*/%^<>=(){},])/))) { toks.push({ t: 'op', v: m[0] }); i += m[0].length; continue; }
    throw new Error(`unexpected ${JSON.stringify(c)} at ${i}`);
  }
  return toks;
}
function parsePromql(expr) {
  const toks = tokenize(expr);
  let k = 0;
  const peek = () => toks[k];
  const isOp = (v) => peek()?.t === 'op' && peek().v === v;
  const isId = (v) => peek()?.t === 'id' && peek().v === v;
  const expect = (v) => { if (!isOp(v)) throw new Error(`expected ${v} at token ${k} (${JSON.stringify(peek()?.v)})`); k++; };
  const labelList = () => { expect('('); const ls = []; while (!isOp(')')) { ls.push(toks[k++].v); if (isOp(',')) k++; } expect(')'); return ls; };
  const args = () => { expect('('); const a = []; while (!isOp(')')) { a.push(parse(0)); if (isOp(',')) k++; else break; } expect(')'); return a; };
  function selector(name) {
    const matchers = [];
    let braces = false;
    if (isOp('{')) {
      braces = true; k++;
      while (!isOp('}')) {
        const label = toks[k++];
        const op = toks[k++];
        const val = toks[k++];
        if (label?.t !== 'id' || op?.t !== 'op' || !['=', '!=', '=~', '!~'].includes(op.v) || val?.t !== 'str') throw new Error(`bad label matcher in ${name}{...}`);
        matchers.push({ label: label.v, op: op.v, value: val.v });
        if (isOp(',')) k++; else if (!isOp('}')) throw new Error(`expected , or } in ${name}{...}`);
      }
      k++;
    }
    const node = { type: 'sel', name, matchers, braces };
    if (peek()?.t === 'range') node.range = toks[k++].v;
    if (isId('offset')) { k++; k++; }
    return node;
  }
  function primary() {
    const tk = toks[k];
    if (!tk) throw new Error('unexpected end');
    if (tk.t === 'num') { k++; return { type: 'num', value: tk.v }; }
    if (tk.t === 'str') { k++; return { type: 'str', value: tk.v }; }
    if (tk.t === 'op' && (tk.v === '-' || tk.v === '+')) { k++; return { type: 'neg', expr: parse(BINARY_PREC['*']) }; }
    if (tk.t === 'op' && tk.v === '(') { k++; const e = parse(0); expect(')'); return { type: 'paren', expr: e }; }
    if (tk.t === 'op' && tk.v === '{') return selector('');
    if (tk.t !== 'id') throw new Error(`unexpected ${JSON.stringify(tk.v)}`);
    k++;
    if (AGGREGATORS.has(tk.v) && (isOp('(') || isId('by') || isId('without'))) {
      let grouping = null;
      if (isId('by') || isId('without')) { k++; grouping = labelList(); }
      const a = args();
      if (isId('by') || isId('without')) { k++; grouping = labelList(); }
      return { type: 'agg', op: tk.v, args: a, grouping };
    }
    if (isOp('(')) return { type: 'call', name: tk.v, args: args() };
    return selector(tk.v);
  }
  function parse(minPrec) {
    let lhs = primary();
    for (;;) {
      const tk = peek();
      const op = tk && (tk.t === 'op' || tk.t === 'id') ? tk.v : null;
      const prec = op != null ? BINARY_PREC[op] : undefined;
      if (prec === undefined || prec < minPrec || (tk.t === 'id' && !['and', 'or', 'unless'].includes(op))) return lhs;
      k++;
      let bool = false;
      if (isId('bool')) { k++; bool = true; }
      if (isId('on') || isId('ignoring')) { k++; labelList(); }
      if (isId('group_left') || isId('group_right')) { k++; if (isOp('(')) labelList(); }
      const rhs = parse(op === '^' ? prec : prec + 1);
      lhs = { type: 'bin', op, lhs, rhs, bool };
    }
  }
  const tree = parse(0);
  if (k !== toks.length) throw new Error(`unexpected ${JSON.stringify(toks[k].v)} after the expression`);
  return tree;
}
function selectorsOf(node, out = []) {
  if (!node || typeof node !== 'object') return out;
  if (node.type === 'sel') out.push(node);
  for (const v of Object.values(node)) {
    if (Array.isArray(v)) v.forEach((x) => selectorsOf(x, out));
    else if (v && typeof v === 'object' && v.type) selectorsOf(v, out);
  }
  return out;
}

// The unit of an expression (docs/metrics.md, "## Units"). A value is { unit } for a vector
// or a time, { bucket } for a histogram's _bucket series (or their rates), { num } for a
// number literal. `1` series are `1:<name>`: a number of its own kind. Throws when the unit
// cannot be told or the expression mixes units.
function unitOf(node, rows, units) {
  const u = (n) => unitOf(n, rows, units);
  switch (node.type) {
    case 'num': return { num: node.value };
    case 'paren': return u(node.expr);
    case 'neg': return u(node.expr);
    case 'sel': {
      let name = node.name, hist = null;
      const m = name.match(/^(.*)_(bucket|sum|count)$/);
      if (!rows.has(name) && m && rows.get(m[1])?.type === 'histogram') { name = m[1]; hist = m[2]; }
      const row = rows.get(name);
      if (!row) throw new Error(`${node.name} is not in docs/metrics.md`);
      if (row.type === 'histogram' && !hist) throw new Error(`histogram ${name} used without _bucket/_sum/_count`);
      if (!units.grafana.has(row.unit)) throw new Error(`${name}: unit ${row.unit} is not under ## Units of docs/metrics.md`);
      const unit = row.unit === '1' ? `1:${name}` : row.unit;
      if (hist === 'bucket') return { bucket: unit, counter: true };
      if (hist === 'count') throw new Error(`${node.name}: the unit of a histogram's _count is not catalogued`);
      return { unit, counter: row.type === 'counter' || hist === 'sum', name };
    }
    case 'call': {
      const a = node.args.map(u);
      if (['rate', 'irate', 'increase'].includes(node.name)) {
        const [x] = a;
        if (!x?.counter) throw new Error(`${node.name}() of something that is not a counter`);
        if (x.bucket) return { bucket: x.bucket, counter: true };
        if (node.name === 'increase') return { unit: x.unit };
        const base = x.unit.replace(/^1:.*/, '1');
        const r = units.rateOf.get(base);
        if (!r) throw new Error(`rate() of ${x.unit}: docs/metrics.md gives its rate no unit`);
        return { unit: r };
      }
      if (node.name === 'histogram_quantile') {
        if (!a[1]?.bucket) throw new Error('histogram_quantile() of something that is not a histogram\'s _bucket rates');
        return { unit: a[1].bucket };
      }
      if (node.name === 'time') return { unit: 'Unix s' };
      throw new Error(`the unit check does not know the function ${node.name}()`);
    }
    case 'agg': {
      if (node.op === 'count') throw new Error('count(): a number of series has no catalogued unit (sum a series of the unit instead)');
      if (!['sum', 'min', 'max', 'avg', 'topk', 'bottomk', 'quantile'].includes(node.op)) throw new Error(`the unit check does not know ${node.op}()`);
      const x = u(node.args[node.args.length - 1]);
      if (x.bucket && !(node.grouping ?? []).includes('le') && node.op === 'sum') throw new Error('sum of _bucket rates without le');
      return x;
    }
    case 'bin': {
      const l = u(node.lhs), r = u(node.rhs);
      if (l.bucket || r.bucket) throw new Error(`${node.op} on _bucket series`);
      if (BINARY_PREC[node.op] === 3) {
        if (node.bool) throw new Error('a bool comparison has no unit');
        if (l.unit && r.unit && l.unit !== r.unit) throw new Error(`compares ${l.unit} with ${r.unit}`);
        return l.unit ? { unit: l.unit } : r;
      }
      if (['and', 'unless'].includes(node.op)) return l;
      if (node.op === 'or') { if (l.unit !== r.unit) throw new Error(`or of ${l.unit} and ${r.unit}`); return l; }
      if (node.op === '+' || node.op === '-') {
        if (l.num !== undefined && r.num !== undefined) return { num: 0 };
        if (l.num !== undefined) return r;
        if (r.num !== undefined) return l;
        if (node.op === '-' && l.unit === 'Unix s' && r.unit === 'Unix s') return { unit: 's' };
        if (l.unit !== r.unit) throw new Error(`${node.op === '+' ? 'adds' : 'subtracts'} ${r.unit} ${node.op === '+' ? 'to' : 'from'} ${l.unit}`);
        return l;
      }
      if (node.op === '*') {
        const [n, v] = l.num !== undefined ? [l.num, r] : [r.num, l];
        if (n === undefined) throw new Error(`multiplies ${l.unit} by ${r.unit}`);
        if (v.num !== undefined || n === 1) return v;
        if (n === 60 && /\/s$/.test(v.unit)) return { unit: v.unit.replace(/\/s$/, '/min') };
        throw new Error(`${v.unit} times ${n}: no unit (only a U/s times 60, a U/min)`);
      }
      if (node.op === '/') {
        if (r.num === 1) return l;
        if (l.unit && l.unit === r.unit) return { unit: 'ratio' };
        throw new Error(`divides ${l.unit ?? l.num} by ${r.unit ?? r.num}`);
      }
      throw new Error(`the unit check does not know ${node.op}`);
    }
    default: throw new Error(`cannot tell the unit of ${node.type}`);
  }
}
function grafanaUnitOf(unit, units) {
  const base = unit.replace(/^1:.*/, '1');
  if (units.grafana.has(base)) return units.grafana.get(base);
  const m = base.match(/^(.*)\/min$/);
  const perS = m && units.grafana.get(`${m[1]}/s`);
  if (perS && perS.startsWith('count:')) return perS.replace(/\/s$/, '/min');
  return null;
}

// The template variables that scope the dashboard to one run, in the order they depend on
// each other, and the matcher each query must carry for each.
const SCOPE_VARS = [
  { name: 'namespace', op: '=~', requires: [] },
  { name: 'run', op: '=', requires: ['namespace'] },
  { name: 'job', op: '=~', requires: ['namespace', 'run'] },
];
const varRef = (name) => new RegExp(`^\\$(${name}|\\{${name}\\})$`);

// Returns the problems (strings) of a parsed dashboard against the catalogue and units.
function scopeProblems(dash, rows, units) {
  const out = [];
  const vars = dash.templating?.list ?? [];
  const index = (n) => vars.findIndex((v) => v.name === n);
  // Variables: queries over a catalogued series, chained namespace -> run -> job.
  for (const sv of SCOPE_VARS) {
    const i = index(sv.name);
    const v = vars[i];
    if (!v) { out.push(`no template variable ${sv.name}`); continue; }
    if (v.type !== 'query') out.push(`variable ${sv.name} is of type ${v.type}, not query`);
    if (v.datasource?.uid !== '${datasource}') out.push(`variable ${sv.name} does not query $datasource`);
    if (![1, 2].includes(v.refresh)) out.push(`variable ${sv.name}: refresh ${v.refresh} (1: on load, 2: on time range change)`);
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = (q ?? '').match(/^label_values\((.+),\s*([a-zA-Z_]\w*)\s*\)$/);
    if (!m) { out.push(`variable ${sv.name}: query ${JSON.stringify(q)} is not label_values(<series>, ${sv.name})`); continue; }
    if (m[2] !== sv.name) out.push(`variable ${sv.name}: query lists the values of ${m[2]}`);
    let sel;
    try { sel = parsePromql(m[1]); } catch (e) { out.push(`variable ${sv.name}: ${e.message}`); continue; }
    if (sel.type !== 'sel' || !rows.has(sel.name) || rows.get(sel.name).type === 'histogram') out.push(`variable ${sv.name}: ${m[1]} is not a catalogued series`);
    for (const r of sv.requires) {
      const want = SCOPE_VARS.find((x) => x.name === r);
      if (index(r) > i) out.push(`variable ${sv.name} comes before ${r}, which it depends on`);
      if (!(sel.matchers ?? []).some((x) => x.label === r && x.op === want.op && varRef(r).test(x.value))) {
        out.push(`variable ${sv.name}: its query does not select ${r}${want.op}"$${r}"`);
      }
    }
    if (sv.name === 'run' && (v.multi || v.includeAll)) out.push('variable run is multi-valued or has All: the dashboard shows one run');
    if (sv.name === 'namespace' && !(v.includeAll && v.allValue === '.*')) {
      out.push('variable namespace needs All = ".*" (outside Kubernetes no series has a namespace)');
    }
    if (sv.name === 'job' && !v.includeAll) out.push('variable job needs an All option');
  }
  const all = [];
  for (const p of dash.panels ?? []) { all.push(p); for (const q of p.panels ?? []) all.push(q); }
  for (const p of all) {
    if (p.type === 'row') continue;
    const where = `panel ${p.id} (${p.title})`;
    const defaults = p.fieldConfig?.defaults?.unit;
    if (!defaults) out.push(`${where}: no fieldConfig.defaults.unit`);
    const overrides = new Map();
    for (const o of p.fieldConfig?.overrides ?? []) {
      const unitProp = (o.properties ?? []).find((x) => x.id === 'unit');
      if (!unitProp) continue;
      if (o.matcher?.id !== 'byFrameRefID') { out.push(`${where}: a unit override must match one query (byFrameRefID), not ${o.matcher?.id}`); continue; }
      if (!(p.targets ?? []).some((t) => t.refId === o.matcher.options)) out.push(`${where}: unit override for refId ${o.matcher.options}, which is no query`);
      overrides.set(o.matcher.options, unitProp.value);
    }
    const shown = [];  // { refId, unit, grafana, effective, overridden }
    for (const t of p.targets ?? []) {
      const w = `${where} query ${t.refId}`;
      let tree;
      try { tree = parsePromql(t.expr ?? ''); } catch (e) { out.push(`${w}: does not parse: ${e.message}`); continue; }
      for (const s of selectorsOf(tree)) {
        if (!s.name) { out.push(`${w}: a selector without a metric name`); continue; }
        if (!rows.has(s.name) && !rows.has(s.name.replace(/_(bucket|sum|count)$/, ''))) out.push(`${w}: ${s.name} is not in docs/metrics.md`);
        const missing = SCOPE_VARS.filter((sv) => !s.matchers.some((x) => x.label === sv.name && x.op === sv.op && varRef(sv.name).test(x.value)));
        if (missing.length) out.push(`${w}: ${s.name} without the run selectors (${missing.map((sv) => `${sv.name}${sv.op}"$${sv.name}"`).join(', ')})`);
      }
      let unit;
      try {
        const v = unitOf(tree, rows, units);
        if (!v.unit) throw new Error(v.bucket ? 'raw _bucket series' : 'a number without a unit');
        unit = v.unit;
      } catch (e) { out.push(`${w}: unit: ${e.message}`); continue; }
      const grafana = grafanaUnitOf(unit, units);
      if (!grafana || grafana === '-') { out.push(`${w}: shows ${unit}, which no panel can show as it is (docs/metrics.md, ## Units)`); continue; }
      const overridden = overrides.has(t.refId);
      shown.push({ refId: t.refId, unit, grafana, effective: overridden ? overrides.get(t.refId) : defaults, overridden });
    }
    const underDefault = [...new Set(shown.filter((s) => !s.overridden).map((s) => s.unit))];
    if (underDefault.length > 1) {
      out.push(`${where}: mixes ${underDefault.join(' and ')} on one axis (unit ${defaults}): give each its own panel, or a byFrameRefID unit override`);
    }
    for (const s of shown) {
      if (s.effective !== s.grafana && !(underDefault.length > 1 && !s.overridden)) {
        out.push(`${where} query ${s.refId}: unit ${s.effective}, but it shows ${s.unit} (Grafana unit ${s.grafana}; docs/metrics.md)`);
      }
    }
    const byGrafana = new Map();
    for (const s of shown) {
      const seen = byGrafana.get(s.grafana);
      if (seen && seen !== s.unit) out.push(`${where}: ${seen} and ${s.unit} share the Grafana unit ${s.grafana}, one axis: give one its own panel`);
      byGrafana.set(s.grafana, s.unit);
    }
  }
  return out;
}

function dashboardScope(file, metricsMd) {
  const rows = catalogueRows(metricsMd);
  const units = unitTable(metricsMd);
  for (const [name, r] of rows) if (!units.grafana.has(r.unit)) fail(`${metricsMd}: ${name}: unit ${JSON.stringify(r.unit)} is not under ## Units`);
  const dash = JSON.parse(fs.readFileSync(file, 'utf8'));
  const problems = scopeProblems(dash, rows, units);
  for (const p of problems) fail(`${file}: ${p}`);
  return { dash, rows, units, problems };
}

// Each defect planted into a copy of the shipped dashboard must be named; the shipped one passes.
function dashboardScopeSelftest(file, metricsMd) {
  const rows = catalogueRows(metricsMd);
  const units = unitTable(metricsMd);
  const shipped = JSON.parse(fs.readFileSync(file, 'utf8'));
  const base = scopeProblems(shipped, rows, units);
  if (base.length) { fail(`dashboard-scope fails on the shipped ${file}:\n  ${base.join('\n  ')}`); return; }
  const panel = (d, id) => {
    const p = d.panels.find((x) => x.id === id);
    if (!p) throw new Error(`selftest: no panel ${id} in ${file}`);
    return p;
  };
  const target = (d, id, ref) => panel(d, id).targets.find((t) => t.refId === ref);
  const addTarget = (d, id, expr) => {
    const p = panel(d, id);
    const t = structuredClone(p.targets[0]);
    t.refId = String.fromCharCode(65 + p.targets.length); t.expr = expr;
    p.targets.push(t);
  };
  const SEL = 'namespace=~"$namespace", run="$run", job=~"$job"';
  const plants = [
    ['a query without the selectors', (d) => { target(d, 3, 'A').expr = 'duet_learner_reward_mean'; },
      /panel 3 .*query A: duet_learner_reward_mean without the run selectors \(namespace=~"\$namespace", run="\$run", job=~"\$job"\)/],
    ['one selector of a query without run', (d) => {
      const t = target(d, 28, 'B'); t.expr = t.expr.replace(/, run="\$run"(?=, job=~"\$job"}\[5m\]\)\)$)/, ''); },
    /panel 28 .*query B: duet_rpc_client_handled_total without the run selectors \(run="\$run"\)/],
    ['run as a regex matcher', (d) => { const t = target(d, 9, 'A'); t.expr = t.expr.replace('run="$run"', 'run=~"$run"'); },
      /panel 9 .*without the run selectors \(run="\$run"\)/],
    ['a wrong unit (tokens per second shown as bytes per second)', (d) => { panel(d, 10).fieldConfig.defaults.unit = 'Bps'; },
      /panel 10 .*unit Bps, but it shows tokens\/s \(Grafana unit count:tokens\/s/],
    ['seconds shown as milliseconds', (d) => { panel(d, 19).fieldConfig.defaults.unit = 'ms'; },
      /panel 19 .*unit ms, but it shows s \(Grafana unit s/],
    ['an override with the wrong unit', (d) => { panel(d, 12).fieldConfig.overrides[0].properties[0].value = 'count:pairs/s'; },
      /panel 12 .*query B: unit count:pairs\/s, but it shows groups\/s/],
    ['a mixed-unit panel (rows under seconds)', (d) => addTarget(d, 24, `histogram_quantile(0.5, sum by (le, direction) (rate(duet_rollout_batch_rows_bucket{${SEL}}[5m])))`),
      /panel 24 .*mixes s and rows on one axis/],
    ['a mixed-unit panel (streams/s under bytes/s)', (d) => addTarget(d, 23, `sum by (job) (rate(duet_weights_bootstrap_fetches_total{${SEL}}[5m]))`),
      /panel 23 .*mixes bytes\/s and streams\/s on one axis/],
    ['a mixed-unit panel (a lag in versions under seconds)', (d) => addTarget(d, 27, `histogram_quantile(0.9, sum by (le) (rate(duet_rollout_policy_lag_versions_bucket{${SEL}}[5m])))`),
      /panel 27 .*mixes s and versions on one axis/],
    ['the learning rate on the grad-norm axis', (d) => addTarget(d, 8, `duet_learner_learning_rate{${SEL}}`),
      /panel 8 .*mixes 1:duet_learner_grad_norm and 1:duet_learner_learning_rate on one axis/],
    ['an override giving the learning rate the grad norm\'s Grafana unit', (d) => {
      addTarget(d, 8, `duet_learner_learning_rate{${SEL}}`);
      panel(d, 8).fieldConfig.overrides.push({ matcher: { id: 'byFrameRefID', options: 'B' }, properties: [{ id: 'unit', value: 'none' }] }); },
    /panel 8 .*1:duet_learner_grad_norm and 1:duet_learner_learning_rate share the Grafana unit none/],
    ['a sum of two units', (d) => { const t = target(d, 16, 'A'); t.expr = `${t.expr} + duet_coordinator_live_workers{${SEL}}`; },
      /panel 16 .*query A: unit: adds workers to items/],
    ['an unknown metric', (d) => { const t = target(d, 3, 'A'); t.expr = t.expr.replace('duet_learner_reward_mean', 'duet_learner_rewards_mean'); },
      /panel 3 .*query A: duet_learner_rewards_mean is not in docs\/metrics.md/],
    ['a timestamp shown as it is', (d) => { target(d, 2, 'A').expr = `duet_learner_last_step_timestamp_seconds{${SEL}}`; },
      /panel 2 .*shows Unix s, which no panel can show/],
    ['a panel without a unit', (d) => { delete panel(d, 5).fieldConfig.defaults.unit; }, /panel 5 .*no fieldConfig.defaults.unit/],
    ['an override for no query', (d) => { panel(d, 15).fieldConfig.overrides[0].matcher.options = 'Z'; },
      /panel 15 .*unit override for refId Z, which is no query/],
    ['no run variable', (d) => { d.templating.list = d.templating.list.filter((v) => v.name !== 'run'); }, /^no template variable run$/],
    ['a multi-valued run variable', (d) => { d.templating.list.find((v) => v.name === 'run').multi = true; }, /variable run is multi-valued/],
    ['a job variable not scoped to the run', (d) => {
      const v = d.templating.list.find((x) => x.name === 'job'); v.query = 'label_values(duet_build_info{namespace=~"$namespace"}, job)'; },
    /variable job: its query does not select run="\$run"/],
    ['a variable over an unknown series', (d) => {
      const v = d.templating.list.find((x) => x.name === 'namespace'); v.query = 'label_values(duet_buildinfo, namespace)'; },
    /variable namespace: duet_buildinfo is not a catalogued series/],
    ['a namespace variable without All = .*', (d) => { delete d.templating.list.find((x) => x.name === 'namespace').allValue; },
      /variable namespace needs All = "\.\*"/],
    ['variables out of order', (d) => {
      const l = d.templating.list; const i = l.findIndex((v) => v.name === 'run'); const j = l.findIndex((v) => v.name === 'job');
      [l[i], l[j]] = [l[j], l[i]]; },
    /variable job comes before run/],
  ];
  for (const [name, plant, want] of plants) {
    const d = structuredClone(shipped);
    try { plant(d); } catch (e) { fail(`selftest "${name}": ${e.message}`); continue; }
    const r = scopeProblems(d, rows, units);
    const hit = r.find((l) => want.test(l));
    if (!hit) fail(`planted "${name}": dashboard-scope ${r.length ? 'failed' : 'passed'} without a message matching ${want}${r.map((l) => `\n  ${l}`).join('')}`);
    else console.log(`planted ${name}: caught: ${hit}`);
  }
  // A catalogue unit missing from ## Units is caught too.
  const rows2 = new Map(rows);
  rows2.set('duet_learner_kl', { type: 'gauge', unit: 'nat' });
  const r = scopeProblems(shipped, rows2, units);
  const hit = r.find((l) => /duet_learner_kl: unit nat is not under ## Units/.test(l));
  if (!hit) fail(`planted "a catalogue unit not under ## Units": not named${r.map((l) => `\n  ${l}`).join('')}`);
  else console.log(`planted a catalogue unit not under ## Units: caught: ${hit}`);
  console.log(`dashboard-scope-selftest: ${plants.length + 1} planted defects, each caught; the shipped dashboard passes`);
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
        // What the probes ask (common/rpc/health_server.h): readiness is the role's own state
        // (grpc service "duet.ready"), liveness the process's progress (service ""); gRPC's
        // default answer for "" says SERVING while any thread serves, so a readiness probe
        // of "" would call a hung or unregistered process ready.
        if (c.readinessProbe?.grpc && c.readinessProbe.grpc.service !== 'duet.ready') {
          fail(`${cid}: readinessProbe asks grpc service "${c.readinessProbe.grpc.service ?? ''}", not "duet.ready" (the role's readiness)`);
        }
        if (c.livenessProbe?.grpc && (c.livenessProbe.grpc.service ?? '') !== '') {
          fail(`${cid}: livenessProbe asks grpc service "${c.livenessProbe.grpc.service}", not "" (liveness)`);
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
        // The learner is ready only while it steps, and it steps only once workers have
        // registered through this Service: its address must be published before that.
        const learnerGrpc = (d.spec.ports ?? []).some((p) => (p.targetPort ?? p.port) === 'grpc') &&
          selected(sel).some((w) => (w.spec.template.spec.containers ?? []).some((c) => [...(c.command ?? []), ...(c.args ?? [])].includes('duet-learner')));
        if (learnerGrpc && d.spec.publishNotReadyAddresses !== true) {
          fail(`${id(d)}: workers reach the learner before it is ready (readiness: stepping, after its pools registered), so the Service needs publishNotReadyAddresses: true`);
        }
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
      ['readiness probe of gRPC\'s default service', (d) => { delete ctr(d, ...R).readinessProbe.grpc.service; },
        /Deployment\/duet-rollout container rollout: readinessProbe asks grpc service "", not "duet\.ready"/],
      ['liveness probe of the readiness service', (d) => { ctr(d, ...L).livenessProbe.grpc.service = 'duet.ready'; },
        /StatefulSet\/duet-learner container learner: livenessProbe asks grpc service "duet\.ready", not ""/],
      ['learner Service hides a learner that is not ready yet', (d) => { delete get(d, 'Service', 'duet-learner').spec.publishNotReadyAddresses; },
        /Service\/duet-learner: workers reach the learner before it is ready/],
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
  else if (cmd === 'dashboard-scope') { const { problems } = dashboardScope(args[0], args[1]); if (!problems.length) console.log(`dashboard-scope: every query selects one run, every panel shows its series' unit`); }
  else if (cmd === 'dashboard-scope-selftest') dashboardScopeSelftest(args[0], args[1]);
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
