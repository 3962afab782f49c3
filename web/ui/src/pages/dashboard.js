// The dashboard of one cube: the panels of its dashboard (GET /api/v1/cubes → dashboard), which
// the model's dashboards: section chooses or which the server derives from the model
// (cube.DefaultDashboard). Panel types:
//
//   kpi         tiles for the day (today, or the latest day with substantial data in a replay)
//               against the previous day at the same time of day;
//   cumulative  the cumulative curve of the day against the previous day;
//   breakdown   a measure of the day by a materialised grouping set (bar chart and sortable table);
//   retention   a retention measure by day: cohort, retained users and their ratio.
//
// kpi, cumulative and breakdown read the cube's cumulative day window (granularity day with a
// step): the value "at time of day T" is the step ending T after midnight, so the comparison with
// the previous day is exact at step resolution. Retention reads the day window.
import { h, fill, select } from '../dom.js';
import { guard } from '../errors.js';
import { query } from '../api.js';
import { getCube } from '../state.js';
import { chart } from '../charts.js';
import { num, pct, change, changePoints, todayIn, addDays, time, ago } from '../format.js';
import { sortableTable } from '../table.js';
import { defaultDay, retentionRows, breakdownMeasures, breakdownSet, isRate } from '../rules.js';

/** A rate axis label: 0.12 → "12 %". */
const percentAxis = (v) => `${Math.round(v * 100)} %`;

const hhmm = (ms) => `${String(Math.floor(ms / 3600000)).padStart(2, '0')}:${String(Math.floor(ms / 60000) % 60).padStart(2, '0')}`;

export async function dashboard(page, name) {
  const cube = await guard('cube', () => getCube(name));
  if (!cube) return null;
  const db = cube.dashboard;
  const measure = (m) => cube.measures.find((x) => x.name === m);
  // Retention rates are percentages, and change in percentage points; every other column is a number.
  const rate = (m) => isRate(measure(m));
  const fmt = (m, v) => (rate(m) ? pct(v) : num(v));
  const delta = (m, v, before) => (rate(m) ? changePoints(v, before) : change(v, before));
  const win = cube.windows.find((w) => w.granularity === 'day' && w.cumulative);
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const st = { day: params.get('day'), userDay: !!params.get('day') };
  const base = { cube: name, granularity: 'day', cumulative: true };

  const head = h('div', { class: 'dash-head' });
  const title = h('h1', {}, db.title || cube.description || cube.name);
  if (!db.panels.length) {
    const why = !win
      ? `cube ${name} has no cumulative day window ({granularity: day, step: 1h}), which the dashboard reads`
      : `cube ${name} has no [] grouping set, which the dashboard's totals read`;
    fill(page, title, h('p', { class: 'notice' }, `${why}; use the explorer (windows: ${cube.windows.map((w) => w.label).join(', ')})`));
    return null;
  }
  // The day picker reads the first measure of a day panel.
  const dayMeasure = db.panels.map((p) => p.measures?.[0] ?? (p.type !== 'retention' ? p.measure : null)).find(Boolean);
  const shared = [...new Set(db.panels.flatMap((p) => (p.type === 'kpi' ? p.measures : p.type === 'cumulative' ? [p.measure] : [])))];
  const ctx0 = { cube, name, base, st, fmt, rate, delta, panels: db.panels, shared, cache: new Map() };
  // Days with data, for the day picker and the default day; the first request is sent before the
  // charts are set up, so that the server answers meanwhile.
  const daysQuery = () => query({ ...base, measures: [dayMeasure], steps: 'last' });
  let pending = dayMeasure ? daysQuery() : null;
  pending?.catch(() => {}); // reported by the first refresh
  const panels = db.panels.map((p, i) => PANELS[p.type]({ ...ctx0, p, i, ctx0 }));
  fill(page, title, dayMeasure ? head : null, panels.map((x) => x.el));

  // Panels are set up and refreshed once they come near the viewport (as Grafana lazy-loads
  // panels out of view), so that the first load costs the panels on screen, however many the
  // model lists. Those on screen now are active at once; the others when scrolled to.
  const refreshPanel = (x) => ((st.day || !x.needsDay) ? x.refresh().then(() => { x.el.dataset.loaded = 'true'; }) : null);
  const activate = (x) => {
    if (x.active) return;
    x.active = true;
    x.mount?.();
    if (started) refreshPanel(x);
  };
  let started = false; // the first refresh has begun; later activations refresh at once
  const NEAR = 200; // px below the viewport that count as near
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) activate(panels.find((x) => x.el === e.target));
  }, { rootMargin: `0px 0px ${NEAR}px 0px` });
  for (const x of panels) {
    if (x.el.getBoundingClientRect().top < innerHeight + NEAR) activate(x);
    else observer.observe(x.el);
  }

  async function refresh() {
    if (dayMeasure) {
      const days = await guard('days', async () => {
        const q = pending || daysQuery();
        pending = null;
        const r = await q;
        return r.data.rows.map((row) => ({ day: row[0].slice(0, 10), value: row[2] }));
      });
      if (!days) return;
      if (!st.userDay) st.day = defaultDay(days, todayIn(cube.timezone));
      if (!st.day) {
        fill(head, h('p', { class: 'notice' }, `no results yet for cube ${name}`));
      } else {
        fill(head,
          'Day ', select(days.map((d) => d.day), st.day, (v) => { st.day = v; st.userDay = true; refresh(); }, { id: 'day' }),
          ' compared with ', h('b', {}, addDays(st.day, -1)), ' at the same time of day',
          h('span', { class: 'fresh', id: 'freshness' }));
      }
    }
    ctx0.cache.clear();
    started = true;
    await Promise.all(panels.filter((x) => x.active).map(refreshPanel));
  }
  return { refresh, unmount: () => observer.disconnect() };
}

/** A panel's section: its title (with controls) and body. */
function section(ctx, heading, ...body) {
  const dataset = { panel: ctx.i, type: ctx.p.type, ...(ctx.p.measure ? { measure: ctx.p.measure } : {}) };
  return h('section', { class: 'panel', dataset }, h('h2', {}, heading), ...body);
}

/**
 * The steps of the day and the previous day for measures: {steps: {day: Map(elapsed ms → row)},
 * prev, freshness, col(m)}; row[col(m)] is measure m. The kpi and cumulative panels of one
 * refresh share one query of all their measures (ctx.shared) when it holds the ones asked for.
 */
function twoDays(ctx, measures) {
  const { st, base, shared, cache } = ctx;
  const wanted = measures.every((m) => shared.includes(m)) ? shared : measures;
  const prev = addDays(st.day, -1);
  const key = JSON.stringify([st.day, wanted]);
  if (!cache.has(key)) {
    cache.set(key, query({ ...base, measures: wanted, timeRange: [prev, addDays(st.day, 1)] }).then((r) => {
      const steps = { [st.day]: new Map(), [prev]: new Map() };
      for (const row of r.data.rows) {
        const day = row[0].slice(0, 10);
        steps[day]?.set(Date.parse(row[1]) - Date.parse(row[0]), row);
      }
      return { steps, prev, freshness: r.freshness, col: (m) => 2 + wanted.indexOf(m) };
    }));
  }
  return cache.get(key);
}

const PANELS = {
  kpi(ctx) {
    const { p, i, st, fmt, delta, cube } = ctx;
    const tiles = h('div', { class: 'tiles' });
    const type = (m) => cube.measures.find((x) => x.name === m)?.type;
    return {
      el: section(ctx, p.title || 'Today so far', tiles),
      needsDay: true,
      refresh: () => guard(`panel ${i}`, async () => {
        const { steps, prev, freshness, col } = await twoDays(ctx.ctx0, p.measures);
        const fr = document.getElementById('freshness');
        if (fr) fill(fr, ` · watermark ${time(freshness.watermark)} · last emit ${ago(freshness.last_emit)}`);
        const at = [...steps[st.day].keys()].sort((a, b) => a - b).at(-1);
        const now = steps[st.day].get(at);
        const then = at == null ? undefined : steps[prev].get(at);
        fill(tiles, p.measures.map((m) => {
          const v = now ? now[col(m)] : null;
          const pv = then ? then[col(m)] : null;
          const ch = delta(m, v, pv);
          return h('div', { class: 'tile', dataset: { measure: m, value: v ?? '' } },
            h('div', { class: 'label' }, m, h('span', { class: 'type' }, type(m))),
            h('div', { class: 'value' }, fmt(m, v)),
            h('div', { class: `delta ${ch.startsWith('-') ? 'down' : 'up'}`, title: 'against the previous day\'s cumulative value at the end of the same step of the cumulative day window (the comparison has the window step\'s resolution; rates change in percentage points)' },
              ch, h('span', { class: 'hint' }, ` vs ${fmt(m, pv)} on ${prev} at ${at == null ? '–' : hhmm(at)}`)));
        }));
      }),
    };
  },

  cumulative(ctx) {
    const { p, i, st, cube, rate, fmt } = ctx;
    let m = p.measure;
    const el = h('div', { class: 'chart curve' });
    const ctl = select(cube.measures.map((x) => x.name), m, (v) => { m = v; refresh(); }, { class: 'curve-measure' });
    let curve;
    const refresh = () => guard(`panel ${i}`, async () => {
      const { steps, prev, col } = await twoDays(ctx.ctx0, [m]);
      const xs = [...new Set([...steps[st.day].keys(), ...steps[prev].keys()])].sort((a, b) => a - b);
      const series = (day) => xs.map((x) => steps[day].get(x)?.[col(m)] ?? null);
      curve.setOption({
        animation: false,
        tooltip: { trigger: 'axis', valueFormatter: (v) => fmt(m, v) },
        legend: { data: [st.day, prev], top: 0 },
        grid: { left: 60, right: 20, top: 36, bottom: 30 },
        xAxis: { type: 'category', data: xs.map(hhmm) },
        yAxis: { type: 'value', ...(rate(m) ? { min: 0, axisLabel: { formatter: percentAxis } } : {}) },
        series: [
          { name: st.day, type: 'line', data: series(st.day), showSymbol: xs.length < 3, lineStyle: { width: 3 } },
          { name: prev, type: 'line', data: series(prev), showSymbol: false, lineStyle: { type: 'dashed' } },
        ],
      }, true);
    });
    return {
      el: section(ctx, [p.title || 'Cumulative today vs the previous day', ' ', ctl], el),
      mount: () => { curve = chart(el); },
      needsDay: true,
      refresh,
    };
  },

  breakdown(ctx) {
    const { p, i, st, base, cube, panels, rate, fmt } = ctx;
    const sets = cube.grouping_sets.filter((g) => g.dimensions.length > 0);
    let gs = breakdownSet(cube.grouping_sets, p) || sets[0];
    let m = p.measure;
    const measures = () => breakdownMeasures({ ...p, measure: m }, panels);
    const barEl = h('div', { class: 'chart breakdown-chart' });
    const tableEl = h('div', { class: 'breakdown-table' });
    const table = sortableTable(tableEl, { key: m, desc: true, format: fmt });
    const ctl = h('span', {},
      select(sets.map((g) => [g.id, `by ${g.dimensions.join(' × ')}`]), gs.id, (v) => { gs = sets.find((g) => g.id === Number(v)); refresh(); }, { class: 'breakdown-set' }),
      ' ', select(cube.measures.map((x) => x.name), m, (v) => { m = v; table.sortBy(v, true); refresh(); }, { class: 'breakdown-measure' }));
    let bar;
    const refresh = () => guard(`panel ${i}`, async () => {
      const r = await query({ ...base, measures: measures(), dimensions: gs.dimensions, steps: 'last', timeRange: [st.day, addDays(st.day, 1)] });
      const cols = r.data.columns.slice(2);
      const rows = r.data.rows.map((row) => row.slice(2));
      table.set(cols, rows, gs.dimensions.length);
      const mi = cols.indexOf(m);
      const top = [...rows].sort((a, b) => (b[mi] ?? -Infinity) - (a[mi] ?? -Infinity)).slice(0, p.top || 10).reverse();
      const label = (row) => row.slice(0, gs.dimensions.length).map((v) => (v === '' ? '(empty)' : v)).join(' · ');
      bar.setOption({
        animation: false,
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v) => fmt(m, v) },
        grid: { left: 160, right: 30, top: 10, bottom: 30 },
        xAxis: { type: 'value', ...(rate(m) ? { min: 0, axisLabel: { formatter: percentAxis } } : {}) },
        yAxis: { type: 'category', data: top.map(label), axisLabel: { width: 150, overflow: 'truncate' } },
        series: [{ name: m, type: 'bar', data: top.map((row) => row[mi]) }],
      }, true);
    });
    return {
      el: section(ctx, [p.title || `Breakdown (top ${p.top || 10})`, ' ', ctl], h('div', { class: 'split' }, barEl, tableEl)),
      mount: () => { bar = chart(barEl); },
      needsDay: true,
      refresh,
    };
  },

  retention(ctx) {
    const { p, i, name, cube } = ctx;
    const m = cube.measures.find((x) => x.name === p.measure);
    const days = m?.days;
    const who = m?.cohort === 'new' ? 'new users' : 'active users';
    const el = h('div', { class: 'chart retention-chart' });
    const tableEl = h('div', { class: 'retention-table' });
    let plot;
    const refresh = () => guard(`panel ${i}`, async () => {
      const r = await query({ cube: name, measures: [p.measure, `${p.measure}_retained`, `${p.measure}_cohort`], granularity: 'day', steps: 'last' });
      const rows = retentionRows(r.data.columns, r.data.rows, p.measure);
      fill(tableEl, h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['day', days ? `cohort (day − ${days})` : 'cohort', 'retained', 'retention'].map((x) => h('th', {}, x)))),
        h('tbody', {}, [...rows].reverse().map((x) => h('tr', { dataset: { day: x.day } },
          h('td', {}, x.day), h('td', { class: 'num' }, num(x.cohort)), h('td', { class: 'num' }, num(x.retained)),
          h('td', { class: 'num', dataset: { v: x.ratio ?? '' } }, pct(x.ratio)))))));
      plot.setOption({
        animation: false,
        tooltip: { trigger: 'axis', valueFormatter: (v) => pct(v) },
        grid: { left: 60, right: 20, top: 20, bottom: 30 },
        xAxis: { type: 'category', data: rows.map((x) => x.day) },
        yAxis: { type: 'value', min: 0, axisLabel: { formatter: percentAxis } },
        series: [{ name: p.measure, type: 'line', data: rows.map((x) => x.ratio), showSymbol: rows.length < 40 }],
      }, true);
    });
    return {
      el: section(ctx, p.title || `${days ? `Day ${days} retention` : 'Retention'} of ${who} (${p.measure})`, h('div', { class: 'split' }, el, tableEl)),
      mount: () => { plot = chart(el); },
      needsDay: false,
      refresh,
    };
  },
};
