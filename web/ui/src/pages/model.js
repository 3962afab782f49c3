// The model view: the YAML with its lint diagnostics at their lines (editable: every change is
// linted by POST /api/v1/lint), and the compiled two-layer graph of a cube drawn as a DAG with
// live per-node counters (events, groups, state bytes) from the status's nodes.
import { h, fill, select } from '../dom.js';
import { guard } from '../errors.js';
import { api, lint } from '../api.js';
import { getCubes } from '../state.js';
import { chart } from '../charts.js';
import { num, bytes } from '../format.js';
import { layout, nodeCounters } from '../rules.js';

/** Escapes text for the tooltip, which ECharts renders as HTML. */
const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

export async function model(page, name) {
  const cubes = await guard('cubes', getCubes);
  if (!cubes) return null;
  name ||= cubes[0]?.name;
  const m = await guard('model', () => api('/api/v1/model'));
  if (!m) return null;
  const file = m.data.file.split('/').pop();
  const editor = h('textarea', { id: 'editor', spellcheck: 'false', value: m.data.yaml });
  const view = h('div', { class: 'yaml', id: 'yaml' });
  const summary = h('p', { id: 'lint-summary' });
  const dagEl = h('div', { class: 'chart dag', id: 'dag' });
  const caption = h('p', { class: 'hint', id: 'dag-caption' });
  fill(page,
    h('h1', {}, `Model ${m.data.file}`),
    h('section', {}, h('h2', {}, 'Compiled graph of ',
      select(cubes.map((c) => c.name), name, (v) => { location.hash = `#/model/${v}`; }, { id: 'dag-cube' })), dagEl, caption),
    h('section', {}, h('h2', {}, 'YAML and lint'), summary,
      h('div', { class: 'split' }, h('div', {}, h('p', { class: 'hint' }, 'Edit to lint (nothing is saved):'), editor), view)));

  function renderYAML(text, diags) {
    const at = new Map();
    for (const d of diags) {
      if (!at.has(d.line)) at.set(d.line, []);
      at.get(d.line).push(d);
    }
    const lines = text.split('\n');
    fill(view, lines.map((l, i) => {
      const ds = at.get(i + 1) || [];
      return h('div', { class: `line ${ds.length ? 'has-diag' : ''}`, dataset: { line: i + 1 } },
        h('span', { class: 'ln' }, i + 1), h('code', {}, l || ' '),
        ds.map((d) => h('div', { class: 'diag', dataset: { line: d.line, col: d.col } }, `${d.line}:${d.col}: ${d.message}`)));
    }),
    // Diagnostics past the last line (or at line 0) are listed at the end.
    diags.filter((d) => d.line < 1 || d.line > lines.length).map((d) => h('div', { class: 'diag' }, d.text)));
    fill(summary, diags.length ? `${diags.length} problem${diags.length > 1 ? 's' : ''}` : 'no problems');
    summary.className = diags.length ? 'bad' : 'ok';
  }
  renderYAML(m.data.yaml, m.data.diagnostics);

  let pending = null;
  editor.addEventListener('input', () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const text = editor.value;
      const diags = await guard('lint', () => lint(file, text));
      if (diags && editor.value === text) renderYAML(text, diags);
    }, 250);
  });

  const plan = (await guard('plan', () => api(`/api/v1/cubes/${name}/plan`)))?.data;
  const dag = chart(dagEl);
  const pos = plan ? layout(plan.nodes) : new Map();
  const short = (n) => (n.kind === 'grouping_set' ? `[${plan.grouping_sets.find((g) => `gs_${g.id}` === n.id)?.dimensions.join(', ')}]` : n.id);

  return {
    refresh: () => guard('status', async () => {
      if (!plan) return;
      const st = (await api('/api/v1/status')).data.cubes.find((c) => c.name === name);
      const byID = new Map((st?.nodes || []).map((n) => [n.id, n]));
      const counters = (n) => nodeCounters(n.kind, byID.get(n.id), st, { num, bytes });
      // Two counters a line, under the node's name.
      const lines = (n) => counters(n).reduce((ls, c, i) => (i % 2 ? ls[ls.length - 1].push(c) : ls.push([c]), ls), []).map((l) => l.join(' · '));
      fill(caption, `${plan.nodes.length} nodes, ${plan.edges.length} edges; fingerprint ${plan.fingerprint.slice(0, 12)}; counters from GET /api/v1/status, refreshed every second; state is the node's estimated memory (layer 1 pre-aggregation: its partial tables; decode: the dictionaries; source: rows held back by watermark alignment).`);
      dag.setOption({
        animation: false,
        tooltip: {
          formatter: (p) => {
            if (p.dataType !== 'node') return '';
            const n = plan.nodes.find((x) => x.id === p.data.id);
            const s = byID.get(n.id);
            const extra = s?.partial_bytes ? `<br>pre-aggregation partials ${bytes(s.partial_bytes)}` : '';
            return `${esc(n.label)}<br>${esc(counters(n).join(' · '))}${extra}`;
          },
        },
        series: [{
          type: 'graph', layout: 'none', roam: true, symbol: 'roundRect', symbolSize: [180, 58],
          edgeSymbol: ['none', 'arrow'], edgeSymbolSize: 8,
          label: { show: true, fontSize: 11, lineHeight: 14 },
          itemStyle: { color: '#e8eef8', borderColor: '#4a6fa5' },
          lineStyle: { color: '#8aa', width: 1.5, curveness: 0 },
          data: plan.nodes.map((n) => ({
            id: n.id, name: n.id, x: pos.get(n.id)[0], y: pos.get(n.id)[1],
            label: { formatter: [short(n), ...lines(n)].join('\n') },
          })),
          links: plan.edges.map((e) => ({ source: e.from, target: e.to })),
        }],
      });
    }),
  };
}
