// The explorer: measures, dimensions, filters, window (granularity) and time range; only
// combinations that a grouping set answers can be run — a query's dimensions plus its filtered
// dimensions must be exactly one grouping set's (the query API's routing rule). Shows the answer
// as a chart and a table, the exact request as curl, and a CSV download.
import { h, fill, select } from '../dom.js';
import { guard, report, clear } from '../errors.js';
import { query, curlFor, csvURL } from '../api.js';
import { getCube } from '../state.js';
import { chart } from '../charts.js';
import { sortableTable } from '../table.js';
import { num, pct } from '../format.js';
import { covering, exact, isRate } from '../rules.js';

const OPS = ['equals', 'notEquals', 'contains', 'notContains', 'startsWith', 'endsWith', 'set', 'notSet'];
const NO_VALUES = new Set(['set', 'notSet']);

export async function explorer(page, name) {
  const cube = await guard('cube', () => getCube(name));
  if (!cube) return null;
  const sets = cube.grouping_sets;
  const dimOrder = cube.dimensions.map((d) => d.name);
  const st = {
    measures: new Set(cube.measures.slice(0, 2).map((m) => m.name)),
    dims: new Set(),
    filters: [], // {dimension, op, values: "a, b"}
    window: 0,
    steps: 'last',
    from: '', to: '',
    order: '', // "column desc|asc" or "" for the primary key's order
    limit: 1000,
  };
  let lastQuery = null;

  const controls = h('div', { class: 'controls', id: 'explorer-controls' });
  const status = h('p', { class: 'routing', id: 'routing' });
  const actions = h('div', { class: 'actions' });
  const curlEl = h('pre', { class: 'curl', id: 'curl' });
  const chartEl = h('div', { class: 'chart', id: 'explorer-chart' });
  const tableEl = h('div', { id: 'explorer-table' });
  fill(page, h('h1', {}, `Explore ${name}`), controls, status, actions, curlEl, chartEl, tableEl);
  const plot = chart(chartEl);
  const rate = (c) => isRate(cube.measures.find((m) => m.name === c));
  const table = sortableTable(tableEl, { id: 'result', format: (c, v) => (rate(c) ? pct(v) : num(v)) });

  const used = () => new Set([...st.dims, ...st.filters.map((f) => f.dimension)]);

  function buildQuery() {
    const w = cube.windows[st.window];
    const q = { cube: name, measures: cube.measures.map((m) => m.name).filter((m) => st.measures.has(m)) };
    const dims = dimOrder.filter((d) => st.dims.has(d));
    if (dims.length) q.dimensions = dims;
    const filters = st.filters.map((f) => {
      const o = { dimension: f.dimension, op: f.op };
      if (!NO_VALUES.has(f.op)) o.values = f.values.split(',').map((v) => v.trim());
      return o;
    });
    if (filters.length) q.filters = filters;
    q.granularity = w.granularity;
    q.cumulative = w.cumulative;
    if (w.cumulative) q.steps = st.steps;
    if (st.from || st.to) q.timeRange = [st.from || '1970-01-01', st.to || '9999-01-01'];
    const [oc, od] = st.order.split(' ');
    if (oc && (q.measures.includes(oc) || dims.includes(oc))) q.order = [[oc, od]];
    if (st.limit) q.limit = Number(st.limit);
    return q;
  }

  function draw() {
    const u = used();
    const gs = exact(sets, u);
    const canAdd = (d) => covering(sets, new Set([...u, d])).length > 0;
    fill(controls,
      h('fieldset', {}, h('legend', {}, 'measures'), cube.measures.map((m) => h('label', {},
        h('input', { type: 'checkbox', name: 'measure', value: m.name, checked: st.measures.has(m.name),
          onchange: (e) => { e.target.checked ? st.measures.add(m.name) : st.measures.delete(m.name); draw(); } }), ` ${m.name}`))),
      h('fieldset', {}, h('legend', {}, 'group by'), dimOrder.map((d) => h('label', { class: !st.dims.has(d) && !canAdd(d) ? 'off' : null, title: !st.dims.has(d) && !canAdd(d) ? 'no grouping set has this dimension together with the current choice' : null },
        h('input', { type: 'checkbox', name: 'dimension', value: d, checked: st.dims.has(d), disabled: !st.dims.has(d) && (!canAdd(d) || st.filters.some((f) => f.dimension === d)),
          onchange: (e) => { e.target.checked ? st.dims.add(d) : st.dims.delete(d); draw(); } }), ` ${d}`))),
      h('fieldset', {}, h('legend', {}, 'filters'),
        st.filters.map((f, i) => h('div', { class: 'filter' },
          select(dimOrder.filter((d) => d === f.dimension || (!st.dims.has(d) && canAdd(d))), f.dimension, (v) => { f.dimension = v; draw(); }, { name: 'filter-dimension' }),
          select(OPS, f.op, (v) => { f.op = v; draw(); }, { name: 'filter-op' }),
          NO_VALUES.has(f.op) ? null : h('input', { name: 'filter-values', value: f.values, placeholder: 'value, value', oninput: (e) => { f.values = e.target.value; update(); } }),
          h('button', { type: 'button', onclick: () => { st.filters.splice(i, 1); draw(); } }, '×'))),
        (() => {
          const free = dimOrder.filter((d) => !st.dims.has(d) && !u.has(d) && canAdd(d));
          return free.length ? h('button', { type: 'button', id: 'add-filter', onclick: () => { st.filters.push({ dimension: free[0], op: 'equals', values: '' }); draw(); } }, '+ filter') : null;
        })()),
      h('fieldset', {}, h('legend', {}, 'window and time range'),
        select(cube.windows.map((w, i) => [i, w.label]), st.window, (v) => { st.window = Number(v); draw(); }, { name: 'window' }),
        cube.windows[st.window].cumulative ? select([['last', 'latest step of each window'], ['all', 'every step']], st.steps, (v) => { st.steps = v; draw(); }, { name: 'steps' }) : null,
        h('label', {}, ' from ', h('input', { name: 'from', value: st.from, placeholder: '2015-09-12 or RFC 3339', oninput: (e) => { st.from = e.target.value; update(); } })),
        h('label', {}, ' to ', h('input', { name: 'to', value: st.to, placeholder: 'exclusive', oninput: (e) => { st.to = e.target.value; update(); } })),
        h('label', {}, ' order ', select([['', 'primary key'], ...[...cube.measures.map((m) => m.name).filter((m) => st.measures.has(m)), ...dimOrder.filter((d) => st.dims.has(d))]
          .flatMap((c) => [[`${c} desc`, `${c} ↓`], [`${c} asc`, `${c} ↑`]])], st.order, (v) => { st.order = v; update(); }, { name: 'order' })),
        h('label', {}, ' limit ', h('input', { name: 'limit', type: 'number', min: 0, value: st.limit, oninput: (e) => { st.limit = e.target.value; update(); } }))));
    fill(status, gs
      ? [`answered by grouping set ${gs.id} [${gs.dimensions.join(', ')}]`]
      : [`no grouping set is exactly [${[...u].join(', ')}]; add dimensions (group by or filter) to reach one of: `,
        covering(sets, u).map((g) => `[${g.dimensions.join(', ')}]`).join(' ')]);
    status.className = gs ? 'routing ok' : 'routing bad';
    update();
  }

  function update() {
    const gs = exact(sets, used());
    const q = buildQuery();
    fill(actions,
      h('button', { type: 'button', id: 'run', disabled: !gs || q.measures.length === 0 && !q.dimensions, onclick: run }, 'Run'),
      h('button', { type: 'button', id: 'copy-curl', onclick: async () => {
        try { await navigator.clipboard.writeText(curlFor(buildQuery())); clear('clipboard'); } catch (e) { report('clipboard', `copying to the clipboard: ${e.message} (the command is shown below)`); }
      } }, 'Copy as curl'),
      h('a', { id: 'csv', class: 'button', href: csvURL(q), download: `${name}.csv` }, 'Download CSV'));
    fill(curlEl, curlFor(q));
  }

  async function run() {
    lastQuery = buildQuery();
    await refresh();
  }

  async function refresh() {
    if (!lastQuery) return;
    const q = lastQuery;
    await guard('query', async () => {
      const r = await query(q);
      const cols = r.data.columns;
      const nDims = cols.length - q.measures.length;
      table.set(cols, r.data.rows, nDims);
      tableEl.dataset.query = JSON.stringify(q);
      drawChart(q, cols, r.data.rows);
    });
  }

  function drawChart(q, cols, rows) {
    // The ordered-by measure, else the first one.
    const m = q.order && q.measures.includes(q.order[0][0]) ? q.order[0][0] : q.measures[0];
    if (!m) { plot.clear(); return; }
    const mi = cols.indexOf(m);
    const ti = q.cumulative && q.steps === 'all' ? cols.indexOf('window_end') : 0;
    const dimIdx = (q.dimensions || []).map((d) => cols.indexOf(d));
    const times = new Set(rows.map((r) => r[ti]));
    const key = (r) => dimIdx.map((i) => (r[i] === '' ? '(empty)' : r[i])).join(' · ') || m;
    if (times.size > 1) {
      // A time series per group; the 10 groups with the largest latest value.
      const groups = new Map();
      for (const r of rows) {
        const k = key(r);
        if (!groups.has(k)) groups.set(k, []);
        groups.get(k).push([Date.parse(r[ti]), r[mi]]);
      }
      const top = [...groups.entries()].sort((a, b) => (b[1].at(-1)[1] ?? 0) - (a[1].at(-1)[1] ?? 0)).slice(0, 10);
      plot.setOption({
        animation: false, tooltip: { trigger: 'axis' }, legend: { type: 'scroll', top: 0 },
        grid: { left: 60, right: 20, top: 40, bottom: 30 },
        xAxis: { type: 'time' }, yAxis: { type: 'value', name: m },
        series: top.map(([k, pts]) => ({ name: k, type: 'line', showSymbol: pts.length < 50, data: pts })),
      }, true);
    } else {
      const top = [...rows].sort((a, b) => (b[mi] ?? 0) - (a[mi] ?? 0)).slice(0, 20).reverse();
      plot.setOption({
        animation: false, tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
        grid: { left: 160, right: 30, top: 10, bottom: 30 },
        xAxis: { type: 'value', name: m }, yAxis: { type: 'category', data: top.map(key), axisLabel: { width: 150, overflow: 'truncate' } },
        series: [{ name: m, type: 'bar', data: top.map((r) => r[mi]) }],
      }, true);
    }
  }

  draw();
  return { refresh };
}
