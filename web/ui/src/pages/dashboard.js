// The dashboard of one cube, derived from its model: KPI tiles for the day (today, or the
// latest day with substantial data in a replay) against the previous day at the same time of
// day, the cumulative curve of the day against the previous day, and a breakdown by a
// materialised grouping set (bar chart and sortable table).
//
// Everything comes from the cube's cumulative day window (granularity day with a step): the
// value "at time of day T" is the step ending T after midnight, so the comparison with the
// previous day is exact at step resolution.
import { h, fill, select } from '../dom.js';
import { guard } from '../errors.js';
import { query } from '../api.js';
import { getCube } from '../state.js';
import { chart } from '../charts.js';
import { num, pct, change, todayIn, addDays, time, ago } from '../format.js';
import { sortableTable } from '../table.js';
import { defaultDay } from '../rules.js';

/** Measure types shown as KPI tiles, in this order (min and max are left to the explorer). */
const KPI_TYPES = ['count_distinct', 'count', 'new_users', 'retention', 'sum'];

export async function dashboard(page, name) {
  const cube = await guard('cube', () => getCube(name));
  if (!cube) return null;
  const win = cube.windows.find((w) => w.granularity === 'day' && w.cumulative);
  const total = cube.grouping_sets.find((g) => g.dimensions.length === 0);
  const kpis = KPI_TYPES.flatMap((t) => cube.measures.filter((m) => m.type === t)).map((m) => m.name);
  const type = (m) => cube.measures.find((x) => x.name === m).type;
  const breakdowns = cube.grouping_sets.filter((g) => g.dimensions.length > 0);
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const st = { day: params.get('day'), curve: kpis[0], bdSet: breakdowns[0]?.id, bdMeasure: kpis[0], userDay: !!params.get('day') };

  const head = h('div', { class: 'dash-head' });
  const tiles = h('div', { class: 'tiles', id: 'kpis' });
  const curveEl = h('div', { class: 'chart', id: 'curve' });
  const curveCtl = h('span');
  const bdCtl = h('span');
  const barEl = h('div', { class: 'chart', id: 'breakdown-chart' });
  const tableEl = h('div', { id: 'breakdown-table' });
  if (!win || !total) {
    fill(page, h('h1', {}, cube.description || cube.name),
      h('p', { class: 'notice' }, !win
        ? `cube ${name} has no cumulative day window ({granularity: day, step: 1h}), which the dashboard reads; use the explorer (windows: ${cube.windows.map((w) => w.label).join(', ')})`
        : `cube ${name} has no [] grouping set, which the KPI tiles read; use the explorer`));
    return null;
  }
  fill(page,
    h('h1', {}, cube.description || cube.name),
    head,
    tiles,
    h('section', {}, h('h2', {}, 'Cumulative today vs the previous day ', curveCtl), curveEl),
    breakdowns.length ? h('section', {}, h('h2', {}, 'Breakdown ', bdCtl), h('div', { class: 'split' }, barEl, tableEl)) : null);
  const curve = chart(curveEl);
  const bar = breakdowns.length ? chart(barEl) : null;
  const table = sortableTable(tableEl, { key: st.bdMeasure, desc: true });

  const drawControls = () => {
    fill(curveCtl, select(kpis, st.curve, (v) => { st.curve = v; refresh(); }, { id: 'curve-measure' }));
    fill(bdCtl,
      select(breakdowns.map((g) => [g.id, `by ${g.dimensions.join(' × ')}`]), st.bdSet, (v) => { st.bdSet = Number(v); refresh(); }, { id: 'breakdown-set' }),
      ' ', select(kpis, st.bdMeasure, (v) => { st.bdMeasure = v; table.sortBy(v, true); refresh(); }, { id: 'breakdown-measure' }));
  };
  drawControls();

  const base = { cube: name, granularity: 'day', cumulative: true };

  async function refresh() {
    // Days with data, for the day picker and the default day.
    const days = await guard('days', async () => {
      const r = await query({ ...base, measures: [kpis[0]], steps: 'last' });
      return r.data.rows.map((row) => ({ day: row[0].slice(0, 10), value: row[2] }));
    });
    if (!days) return;
    if (!st.userDay) st.day = defaultDay(days, todayIn(cube.timezone));
    if (!st.day) {
      fill(tiles, h('p', { class: 'notice' }, `no results yet for cube ${name}`));
      return;
    }
    const prev = addDays(st.day, -1);
    fill(head,
      'Day ', select(days.map((d) => d.day), st.day, (v) => { st.day = v; st.userDay = true; refresh(); }, { id: 'day' }),
      ' compared with ', h('b', {}, prev), ' at the same time of day',
      h('span', { class: 'fresh', id: 'freshness' }));

    await Promise.all([
      guard('kpis', async () => {
        const r = await query({ ...base, measures: kpis, timeRange: [prev, addDays(st.day, 1)] });
        const fr = r.freshness;
        fill(document.getElementById('freshness'), ` · watermark ${time(fr.watermark)} · last emit ${ago(fr.last_emit)}`);
        // Rows: window_start, window_end, ...kpis; one per step of each day.
        const steps = { [st.day]: new Map(), [prev]: new Map() };
        for (const row of r.data.rows) {
          const day = row[0].slice(0, 10);
          const elapsed = Date.parse(row[1]) - Date.parse(row[0]);
          steps[day]?.set(elapsed, row);
        }
        const todaySteps = [...steps[st.day].keys()].sort((a, b) => a - b);
        const at = todaySteps.at(-1);
        const now = steps[st.day].get(at);
        const then = at == null ? undefined : steps[prev].get(at);
        const hhmm = (ms) => `${String(Math.floor(ms / 3600000)).padStart(2, '0')}:${String(Math.floor(ms / 60000) % 60).padStart(2, '0')}`;
        fill(tiles, kpis.map((m, i) => {
          const v = now ? now[2 + i] : null;
          const p = then ? then[2 + i] : null;
          const ch = change(v, p);
          return h('div', { class: 'tile', dataset: { measure: m, value: v ?? '' } },
            h('div', { class: 'label' }, m, h('span', { class: 'type' }, type(m))),
            h('div', { class: 'value' }, type(m) === 'retention' ? pct(v) : num(v)),
            h('div', { class: `delta ${ch.startsWith('-') ? 'down' : 'up'}`, title: 'against the previous day\'s cumulative value at the end of the same step of the cumulative day window (the comparison has the window step\'s resolution)' }, ch, h('span', { class: 'hint' }, ` vs ${num(p)} on ${prev} at ${at == null ? '–' : hhmm(at)}`)));
        }));
        // The curve: x is the step's end as time of day.
        const xs = [...new Set([...steps[st.day].keys(), ...steps[prev].keys()])].sort((a, b) => a - b);
        const idx = kpis.indexOf(st.curve);
        const series = (day) => xs.map((x) => steps[day].get(x)?.[2 + idx] ?? null);
        curve.setOption({
          animation: false,
          tooltip: { trigger: 'axis' },
          legend: { data: [st.day, prev], top: 0 },
          grid: { left: 60, right: 20, top: 36, bottom: 30 },
          xAxis: { type: 'category', data: xs.map(hhmm) },
          yAxis: { type: 'value' },
          series: [
            { name: st.day, type: 'line', data: series(st.day), showSymbol: xs.length < 3, lineStyle: { width: 3 } },
            { name: prev, type: 'line', data: series(prev), showSymbol: false, lineStyle: { type: 'dashed' } },
          ],
        }, true);
      }),
      bar && guard('breakdown', async () => {
        const gs = breakdowns.find((g) => g.id === st.bdSet);
        const r = await query({ ...base, measures: kpis, dimensions: gs.dimensions, steps: 'last', timeRange: [st.day, addDays(st.day, 1)] });
        const cols = r.data.columns.slice(2);
        const rows = r.data.rows.map((row) => row.slice(2));
        table.set(cols, rows, gs.dimensions.length);
        const mi = cols.indexOf(st.bdMeasure);
        const top = [...rows].sort((a, b) => (b[mi] ?? -Infinity) - (a[mi] ?? -Infinity)).slice(0, 15).reverse();
        const label = (row) => row.slice(0, gs.dimensions.length).map((v) => (v === '' ? '(empty)' : v)).join(' · ');
        bar.setOption({
          animation: false,
          tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
          grid: { left: 160, right: 30, top: 10, bottom: 30 },
          xAxis: { type: 'value' },
          yAxis: { type: 'category', data: top.map(label), axisLabel: { width: 150, overflow: 'truncate' } },
          series: [{ name: st.bdMeasure, type: 'bar', data: top.map((row) => row[mi]) }],
        }, true);
      }),
    ]);
  }
  return { refresh };
}
