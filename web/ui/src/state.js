// State shared by the pages: the cubes (GET /api/v1/cubes) and a short history of
// GET /api/v1/status samples, from which events/s is derived.
import { api } from './api.js';

let cubes = null; // a promise of the cubes
const samples = []; // [{t: ms, status}], newest last, at most 30

/** The cubes of the model (fetched once, by concurrent callers too; freshness is in the status). */
export async function getCubes() {
  if (!cubes) cubes = api('/api/v1/cubes').then((r) => r.data);
  try {
    return await cubes;
  } catch (e) {
    cubes = null; // fetch again next time
    throw e;
  }
}

/** The cube named name, or an Error naming the cubes. */
export async function getCube(name) {
  const all = await getCubes();
  const c = all.find((x) => x.name === name);
  if (!c) throw new Error(`unknown cube "${name}" (cubes: ${all.map((x) => x.name).join(', ')})`);
  return c;
}

/** Fetches the status and records it as a sample; returns the status data. */
export async function pollStatus() {
  const st = (await api('/api/v1/status')).data;
  samples.push({ t: performance.now(), status: st });
  if (samples.length > 30) samples.shift();
  return st;
}

/**
 * Events per second of cube name over the last ~10 s of samples: the growth of the events
 * counter divided by the time between the samples; null until two samples exist.
 */
export function eventsPerSecond(name) {
  if (samples.length < 2) return null;
  const last = samples[samples.length - 1];
  let first = samples[0];
  for (const s of samples) {
    if (last.t - s.t <= 10000) { first = s; break; }
  }
  if (first === last) first = samples[samples.length - 2];
  const ev = (s) => s.status.cubes.find((c) => c.name === name)?.events;
  const a = ev(first), b = ev(last);
  if (a == null || b == null || last.t <= first.t) return null;
  return Math.max(0, b - a) / ((last.t - first.t) / 1000);
}
