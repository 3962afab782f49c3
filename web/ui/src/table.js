// A sortable table: click a header to sort by it (again to reverse). Sorting is kept across
// refreshes; dimension columns sort as text, measure columns as numbers with nulls last.
import { h, fill } from './dom.js';
import { num } from './format.js';

/**
 * A table in el; returns {set(columns, rows, nDims), sortBy(column, desc)}. format(column, v)
 * writes a measure cell (default num); the cell's data-v keeps the value as sent.
 */
export function sortableTable(el, { key = null, desc = true, id = null, format = (c, v) => num(v) } = {}) {
  let cols = [], rows = [], nDims = 0;
  const sort = { key, desc };
  function render() {
    const i = cols.indexOf(sort.key);
    const sorted = i < 0 ? rows : [...rows].sort((a, b) => {
      const x = a[i], y = b[i];
      if (x == null || y == null) return x == null ? (y == null ? 0 : 1) : -1;
      const c = typeof x === 'number' ? x - y : String(x).localeCompare(String(y));
      return sort.desc ? -c : c;
    });
    fill(el, h('table', { class: 'grid', id },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', {
        class: `sortable ${c === sort.key ? (sort.desc ? 'desc' : 'asc') : ''}`,
        dataset: { col: c },
        onclick: () => { sort.desc = c === sort.key ? !sort.desc : true; sort.key = c; render(); },
      }, c)))),
      h('tbody', {}, sorted.map((r) => h('tr', {}, r.map((v, j) => (j < nDims || typeof v === 'string'
        ? h('td', {}, v === '' ? h('i', {}, '(empty)') : v)
        : h('td', { class: 'num', dataset: { v: v ?? '' } }, format(cols[j], v)))))))));
  }
  return {
    set(c, r, n) { cols = c; rows = r; nDims = n; render(); },
    sortBy(k, d) { sort.key = k; sort.desc = d; render(); },
  };
}
