// Number and time formatting.

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const numFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** A measure value as shown: integers with thousands separators, others with 2 decimals; null as "–". */
export function num(v) {
  if (v == null) return '–';
  return Number.isInteger(v) ? intFmt.format(v) : numFmt.format(v);
}

/** Bytes as B, KiB, MiB, GiB. */
export function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** How long ago t (RFC 3339) was: "4 s ago", "3 min ago", "2 h ago", "5 d ago"; null as "never". */
export function ago(t, now = Date.now()) {
  if (!t) return 'never';
  const s = Math.round((now - Date.parse(t)) / 1000);
  if (s < 0) return 'in the future';
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** An RFC 3339 time shortened for tables: "2015-09-12 06:00:00Z" (the offset kept as sent). */
export function time(t) {
  if (!t) return '–';
  return t.replace('T', ' ').replace(/\.\d+/, '');
}

/** The local date (YYYY-MM-DD) of now in time zone tz. */
export function todayIn(tz) {
  return new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
}

/** date (YYYY-MM-DD) plus n days. */
export function addDays(date, n) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** A relative change as "+12.3 %" ("new" when the base is 0, "–" when either is missing). */
export function change(now, before) {
  if (now == null || before == null) return '–';
  if (before === 0) return now === 0 ? '±0 %' : 'new';
  const p = ((now - before) / Math.abs(before)) * 100;
  return `${p >= 0 ? '+' : ''}${p.toFixed(1)} %`;
}

/**
 * The change of a ratio (0..1) in percentage points: 0.033 against 0.030 → "+0.3 pp" (a
 * relative change of a rate, "+10.0 %", reads as the rate itself); "±0.0 pp" when it rounds to
 * nothing, "–" when either is missing.
 */
export function changePoints(now, before) {
  if (now == null || before == null) return '–';
  const p = ((now - before) * 100).toFixed(1);
  if (/^-?0\.0$/.test(p)) return '±0.0 pp';
  return `${p.startsWith('-') ? '' : '+'}${p} pp`;
}

/** A ratio (0..1) as a percentage: 0.4231 → "42.3 %"; null as "–". */
export function pct(v) {
  return v == null ? '–' : `${(v * 100).toFixed(1)} %`;
}
