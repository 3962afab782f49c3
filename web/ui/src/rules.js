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

/**
 * The rows of a retention panel from a query answer for [m, m_retained, m_cohort] with
 * steps "last": one {day, ratio, retained, cohort} per window, ascending by day (the day is
 * window_start's date in the cube's zone, as the API writes it). A ratio over an empty cohort
 * is null, as the API sends it.
 */
export function retentionRows(columns, rows, measure) {
  const at = (name) => columns.indexOf(name);
  const [s, r, n, c] = [at('window_start'), at(measure), at(`${measure}_retained`), at(`${measure}_cohort`)];
  if (s < 0 || r < 0) throw new Error(`retention answer lacks window_start or ${measure} (columns: ${columns.join(', ')})`);
  return rows
    .map((row) => ({ day: String(row[s]).slice(0, 10), ratio: row[r], retained: n < 0 ? null : row[n], cohort: c < 0 ? null : row[c] }))
    .sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : 0));
}

/**
 * Whether a measure column (an entry of GET /api/v1/cubes → measures) is a ratio in 0..1, shown
 * as a percentage: a retention measure's rate column (part "rate"); its retained and cohort
 * columns are counts.
 */
export function isRate(info) {
  return info?.type === 'retention' && info.part === 'rate';
}

/** The measures a breakdown table shows: the panel's measure first, then the dashboard's KPI measures. */
export function breakdownMeasures(panel, panels) {
  const kpis = panels.filter((p) => p.type === 'kpi').flatMap((p) => p.measures);
  return [...new Set([panel.measure, ...kpis])];
}

/** The grouping set a breakdown panel's dimensions name (in any order), or undefined. */
export function breakdownSet(sets, panel) {
  return exact(sets, new Set(panel.dimensions));
}

/**
 * The counters of a DAG node, as short "name value" texts, from its entry in the status's nodes
 * (see pipeline.NodeStatus): events, rows, groups and state bytes, each when the node has it;
 * lag (source), bad and late events (decode) come from the cube's status. fmt is {num, bytes}.
 */
export function nodeCounters(kind, n, cubeStatus, fmt) {
  if (!n) return [];
  const parts = [];
  if (n.events != null) parts.push(`events ${fmt.num(n.events)}`);
  if (n.rows != null) parts.push(`rows ${fmt.num(n.rows)}`);
  if (n.in) parts.push(`in ${n.in}`);
  else if (n.groups != null) parts.push(`groups ${fmt.num(n.groups)}`);
  if (!n.in && (n.state_bytes || kind === 'full' || kind === 'grouping_set')) parts.push(`state ${fmt.bytes(n.state_bytes)}`);
  if (kind === 'source' && cubeStatus) parts.push(`lag ${fmt.num(cubeStatus.partitions.reduce((s, p) => s + p.lag, 0))}`);
  if (kind === 'decode' && cubeStatus) parts.push(`bad ${fmt.num(cubeStatus.bad_events)}`, `late ${fmt.num(cubeStatus.late_events)}`);
  if (kind === 'sink' && cubeStatus?.sink_error) parts.push('ERROR');
  return parts;
}
