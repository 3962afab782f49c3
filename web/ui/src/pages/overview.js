// Cubes overview: every cube's freshness, throughput, lag, late and bad events, sink health.
import { h, fill } from '../dom.js';
import { guard } from '../errors.js';
import { pollStatus, eventsPerSecond } from '../state.js';
import { num, ago, time } from '../format.js';

export async function overview(page) {
  const body = h('tbody');
  fill(page,
    h('h1', {}, 'Cubes'),
    h('table', { class: 'grid', id: 'cubes' },
      h('thead', {}, h('tr', {},
        ['cube', 'source', 'watermark', 'last emit', 'events/s', 'events', 'consumer lag', 'late', 'bad', 'sink']
          .map((c) => h('th', {}, c)))),
      body),
    h('p', { class: 'hint' }, 'events/s is the growth of each cube\'s events counter over the last 10 s of status samples.'));
  return {
    refresh: () => guard('status', async () => {
      const st = await pollStatus();
      fill(body, st.cubes.map((c) => {
        const lag = c.partitions.reduce((s, p) => s + p.lag, 0);
        const eps = eventsPerSecond(c.name);
        return h('tr', { dataset: { cube: c.name } },
          h('td', {}, h('a', { href: `#/cube/${c.name}` }, c.name)),
          h('td', {}, c.source),
          h('td', { title: c.watermark || '' }, time(c.watermark)),
          h('td', { title: c.last_emit || '' }, ago(c.last_emit)),
          h('td', { class: 'num', dataset: { k: 'eps' } }, eps == null ? '…' : num(Math.round(eps))),
          h('td', { class: 'num', dataset: { k: 'events' } }, num(c.events)),
          h('td', { class: 'num' }, num(lag)),
          h('td', { class: `num ${c.late_events ? 'warn' : ''}` }, num(c.late_events)),
          h('td', { class: `num ${c.bad_events ? 'warn' : ''}` }, num(c.bad_events)),
          h('td', { class: c.sink_error ? 'bad' : 'ok' }, c.sink_error ? `error: ${c.sink_error}` : 'OK'));
      }));
    }),
  };
}
