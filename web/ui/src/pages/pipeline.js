// The pipeline view: per cube, the source partitions (offset, lag, newest event time, idle,
// paused), watermark, state size against the memory budget, the graph's nodes (events, groups,
// state bytes), dictionary sizes, checkpoints, emitted rows, late and bad events and the
// dead-letter file. Status fields this page does not know are listed as they come, so that
// counters added to GET /api/v1/status later show up without a UI change.
import { h, fill } from '../dom.js';
import { guard } from '../errors.js';
import { pollStatus, eventsPerSecond } from '../state.js';
import { num, bytes, time, ago } from '../format.js';

const KNOWN = new Set(['name', 'source', 'events', 'bad_events', 'late_events', 'emitted_rows', 'watermark', 'last_emit', 'partitions',
  'open_windows', 'groups', 'state_bytes', 'dead_letter', 'sink_error', 'nodes', 'dictionaries', 'memory_limit_bytes', 'memory_limit', 'evicted_blocks']);

/**
 * The memory budget of the cube's state (state.memory_limit) in bytes, from the cube's status or
 * the service's; null when the status has none (an older server): unbounded.
 */
export function memoryLimit(cube, status) {
  for (const o of [cube, status]) {
    const v = o?.memory_limit_bytes ?? o?.memory_limit;
    if (typeof v === 'number' && v > 0) return v;
  }
  return null;
}

/** Whether v is a non-empty list of plain objects. */
function isRows(v) {
  return Array.isArray(v) && v.length > 0 && v.every((o) => o && typeof o === 'object' && !Array.isArray(o));
}

/** A table cell for field k: bytes and times formatted by their names, numbers right-aligned. */
function cell(k, v) {
  if (typeof v === 'number') return h('td', { class: 'num' }, k.endsWith('bytes') ? bytes(v) : num(v));
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return h('td', { title: v }, time(v));
  return h('td', {}, v == null ? '–' : typeof v === 'object' ? JSON.stringify(v) : String(v));
}

export async function pipeline(page) {
  const body = h('div', { id: 'pipelines' });
  fill(page, h('h1', {}, 'Pipeline'), body);
  return {
    refresh: () => guard('status', async () => {
      const st = await pollStatus();
      fill(body, st.cubes.map((c) => {
        const kv = [
          ['source', c.source], ['watermark', time(c.watermark)], ['last emit', ago(c.last_emit)],
          ['events', num(c.events)], ['events/s', num(eventsPerSecond(c.name) == null ? null : Math.round(eventsPerSecond(c.name)))],
          ['emitted rows', num(c.emitted_rows)], ['open windows', num(c.open_windows)],
          ['state', h('span', { id: `state-${c.name}` }, bytes(c.state_bytes), ' of ', (() => {
            const lim = memoryLimit(c, st);
            return lim == null
              ? h('span', { class: 'budget', title: 'no memory budget in the status (state.memory_limit): state grows with the open windows' }, 'unbounded')
              : h('span', { class: `budget ${c.state_bytes > lim ? 'bad' : ''}` }, `${bytes(lim)} (${Math.round((c.state_bytes / lim) * 100)} %)`);
          })())],
          ['evicted blocks', h('span', { title: 'blocks of distinct sets held only in the state store (over the memory budget), read back on demand' }, num(c.evicted_blocks))],
          ['dictionaries', bytes((c.dictionaries || []).reduce((s, d) => s + d.bytes, 0))],
          ['late events (dead-lettered)', num(c.late_events)], ['bad events (dead-lettered)', num(c.bad_events)], ['dead-letter file', c.dead_letter],
          ['sink', c.sink_error ? `error: ${c.sink_error}` : 'OK'],
          ...Object.entries(c).filter(([k, v]) => !KNOWN.has(k) && !isRows(v)).map(([k, v]) => [k.replaceAll('_', ' '), typeof v === 'object' ? JSON.stringify(v) : String(v)]),
        ];
        // Unknown fields that are lists of objects (checkpoints, ...) become tables, newest first.
        const tables = Object.entries(c).filter(([k, v]) => !KNOWN.has(k) && isRows(v)).map(([k, v]) => {
          const cols = [...new Set(v.flatMap((o) => Object.keys(o)))];
          return [h('h3', {}, k.replaceAll('_', ' ')),
            h('table', { class: 'grid', dataset: { field: k } },
              h('thead', {}, h('tr', {}, cols.map((x) => h('th', {}, x.replaceAll('_', ' '))))),
              h('tbody', {}, [...v].reverse().slice(0, 20).map((o) => h('tr', {}, cols.map((x) => cell(x, o[x]))))))];
        });
        return h('section', { class: 'cube', dataset: { cube: c.name } },
          h('h2', {}, c.name),
          h('dl', { class: 'kv' }, kv.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
          h('h3', {}, 'Partitions'),
          h('table', { class: 'grid partitions' },
            h('thead', {}, h('tr', {}, ['partition', 'offset', 'lag', 'newest event time', 'idle / paused'].map((x) => h('th', {}, x)))),
            h('tbody', {}, c.partitions.map((p) => h('tr', {},
              h('td', { class: 'num' }, p.partition), h('td', { class: 'num' }, num(p.offset)),
              h('td', { class: `num ${p.lag ? 'warn' : ''}` }, num(p.lag)), h('td', {}, time(p.max_event_time)), h('td', {}, [p.idle ? 'idle' : '', p.paused ? 'paused (alignment)' : ''].filter(Boolean).join(', ')))))),
          tables,
          h('h3', {}, 'Graph nodes'),
          h('table', { class: 'grid nodes' },
            h('thead', {}, h('tr', {}, ['node', 'events', 'groups', 'state', 'partials', 'rows'].map((x) => h('th', {}, x)))),
            h('tbody', {}, (c.nodes || []).map((n) => h('tr', { dataset: { node: n.id } },
              h('td', {}, n.id), h('td', { class: 'num' }, n.events == null ? '' : num(n.events)),
              h('td', { class: 'num' }, n.in ? `in ${n.in}` : n.groups == null ? '' : num(n.groups)),
              h('td', { class: 'num', dataset: { v: n.state_bytes } }, n.in || n.id === 'sink' ? '' : bytes(n.state_bytes)),
              h('td', { class: 'num' }, n.partial_bytes ? bytes(n.partial_bytes) : ''),
              h('td', { class: 'num' }, n.rows == null ? '' : num(n.rows)))))),
          h('h3', {}, 'Dictionaries'),
          h('table', { class: 'grid dictionaries' },
            h('thead', {}, h('tr', {}, ['namespace', 'ids', 'bytes (estimate)'].map((x) => h('th', {}, x)))),
            h('tbody', {}, (c.dictionaries || []).map((d) => h('tr', { dataset: { namespace: d.namespace } },
              h('td', {}, d.namespace), h('td', { class: 'num', dataset: { v: d.ids } }, num(d.ids)), h('td', { class: 'num' }, bytes(d.bytes)))))));
      }));
    }),
  };
}
