// The UI's rules that need no DOM: which day a dashboard shows, which grouping set answers a
// choice of dimensions, where a plan node is drawn. Unit-tested in test/rules.test.mjs.

/** A day counts as "substantial" when its first KPI measure reaches this share of the busiest day's. */
const SUBSTANTIAL = 0.1;

/** Picks the dashboard's default day from the days with data (ascending, with their first measure's value). */
export function defaultDay(days, today) {
  if (days.some((d) => d.day === today)) return today;
  const max = Math.max(0, ...days.map((d) => d.value ?? 0));
  for (let i = days.length - 1; i >= 0; i--) if ((days[i].value ?? 0) >= SUBSTANTIAL * max) return days[i].day;
  return days.at(-1)?.day;
}

/** The grouping sets that contain every dimension of want. */
export function covering(sets, want) {
  return sets.filter((g) => [...want].every((d) => g.dimensions.includes(d)));
}

/** The grouping set whose dimensions are exactly want, or undefined. */
export function exact(sets, want) {
  return sets.find((g) => g.dimensions.length === want.size && covering([g], want).length === 1);
}

/** The DAG's columns, left to right, by plan node kind. */
const COLUMN = { source: 0, decode: 1, preagg: 2, full: 3, grouping_set: 4, sink: 5 };

/** Lays out plan nodes: x by kind, y spreading each column's nodes evenly. */
export function layout(nodes) {
  const cols = new Map();
  for (const n of nodes) {
    const c = COLUMN[n.kind] ?? 3;
    if (!cols.has(c)) cols.set(c, []);
    cols.get(c).push(n);
  }
  const pos = new Map();
  for (const [c, ns] of cols) ns.forEach((n, i) => pos.set(n.id, [c * 200, (i - (ns.length - 1) / 2) * 70]));
  return pos;
}
