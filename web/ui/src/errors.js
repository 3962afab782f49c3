// The error banner: each failing source (a page's refresh, a query, the linter) has one line
// that stays until the same source succeeds again.
import { h, fill } from './dom.js';

const active = new Map();

function render() {
  const el = document.getElementById('errors');
  fill(el, [...active.entries()].map(([src, msg]) => h('div', { class: 'error', dataset: { source: src } }, msg)));
}

/** Shows err (an Error or a string) as the current error of source. */
export function report(source, err) {
  active.set(source, err instanceof Error ? err.message : String(err));
  render();
}

/** Removes source's error after it succeeded. */
export function clear(source) {
  if (active.delete(source)) render();
}

/** Removes every error (on page change). */
export function clearAll() {
  active.clear();
  render();
}

/** Runs fn, reporting a failure under source and clearing it on success; returns fn's result or undefined. */
export async function guard(source, fn) {
  try {
    const r = await fn();
    clear(source);
    return r;
  } catch (e) {
    report(source, e);
    return undefined;
  }
}
