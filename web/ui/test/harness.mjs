// Test harness of the browser tests: builds (or takes) the cubed binary, starts it replaying
// configs/wikiticker.yaml (or a variant of configs/online_retail.yaml) into a temporary data dir,
// and launches Debian's chromium through playwright-core. A missing component fails the tests when CI is set and skips them (loudly)
// otherwise.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

export const UI = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = resolve(UI, '../..');
export const CONFIG = join(ROOT, 'configs/wikiticker.yaml');
export const DATA = resolve(ROOT, '../shared/data/wikiticker-2015-09-12.json.gz');
export const RETAIL_CONFIG = join(ROOT, 'configs/online_retail.yaml');
export const RETAIL_DATA = resolve(ROOT, '../shared/data/online_retail.csv.gz');
export const CHROMIUM = '/usr/bin/chromium';
export const SHOTS = join(UI, 'screenshots');

/** Why the tests cannot run here, or "" when they can; data lists the data files they read. */
export function missing(data = [DATA]) {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (scripts/ensure-chromium.sh installs it)`;
  if (!existsSync(join(UI, 'dist/index.html'))) return 'the UI is not built (npm run build in web/ui)';
  for (const f of data) if (!existsSync(f)) return `the data file ${f} is missing`;
  return '';
}

/** Skips the test (loud) or, in CI, fails it when a component is missing (see missing). */
export function requireComponents(t, data) {
  const why = missing(data);
  if (!why) return true;
  if (process.env.CI) throw new Error(`browser tests cannot run in CI: ${why}`);
  console.error(`\n*** SKIPPING the browser tests: ${why} ***\n`);
  t.skip(why);
  return false;
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
  });
}

/** The cubed binary: $CUBED_BIN, or one built now with go build into dir. */
function cubedBinary(dir) {
  if (process.env.CUBED_BIN) return resolve(process.env.CUBED_BIN);
  const bin = join(dir, 'cubed');
  execFileSync('go', ['build', '-o', bin, './cmd/cubed'], { cwd: ROOT, stdio: 'inherit' });
  return bin;
}

/**
 * Starts `cubed run` on config (default configs/wikiticker.yaml) and waits until ready(base)
 * resolves true (polled every 200 ms, 60 s at most). Returns {base, stop, log}.
 */
export async function startCubed(ready, config = CONFIG) {
  const dir = mkdtempSync(join(tmpdir(), 'cubed-ui-'));
  const bin = cubedBinary(dir);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  const proc = spawn(bin, ['run', '--config', config, '--data-dir', join(dir, 'data'), '--http', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const stop = async () => {
    if (exited == null) {
      proc.kill('SIGTERM');
      await new Promise((ok) => proc.once('exit', ok));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60000;
  for (;;) {
    if (exited != null) throw new Error(`cubed exited with ${exited} before it was ready:\n${log}`);
    try {
      if (await ready(base)) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { await stop(); throw new Error(`cubed was not ready within 60 s:\n${log}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { base, stop, log: () => log };
}

/**
 * Writes configs/wikiticker.yaml without its dashboards: section (and with the data file's
 * absolute path) into a new temporary folder; returns the file's path.
 */
export function wikitickerWithoutDashboards() {
  const src = readFileSync(CONFIG, 'utf8');
  const i = src.indexOf('\ndashboards:');
  if (i < 0) throw new Error(`${CONFIG} has no dashboards: section`);
  const out = join(mkdtempSync(join(tmpdir(), 'cubed-ui-model-')), 'wikiticker.yaml');
  writeFileSync(out, src.slice(0, i + 1).replace(/path: .*wikiticker-2015-09-12\.json\.gz/, `path: ${DATA}`));
  return out;
}

/**
 * Writes configs/online_retail.yaml with its first cube only (online_retail, the daily cube with
 * new_users and retention; the weekly cube would replay the file a second time) and the data
 * file's absolute path into a new temporary folder; returns the file's path.
 */
export function onlineRetailDaily() {
  const src = readFileSync(RETAIL_CONFIG, 'utf8');
  const i = src.indexOf('\n  - name: online_retail_weekly');
  if (i < 0) throw new Error(`${RETAIL_CONFIG} has no online_retail_weekly cube to leave out`);
  const head = src.slice(0, src.lastIndexOf('\n\n', i) + 1);
  const out = join(mkdtempSync(join(tmpdir(), 'cubed-ui-model-')), 'online_retail.yaml');
  writeFileSync(out, head.replace(/path: .*online_retail\.csv\.gz/, `path: ${RETAIL_DATA}`));
  return out;
}

/** POSTs a query and returns its envelope; throws on an error answer. */
export async function apiQuery(base, q) {
  const res = await fetch(`${base}/api/v1/query`, { method: 'POST', body: JSON.stringify(q) });
  const body = await res.json();
  if (body.status !== 'success') throw new Error(`query ${JSON.stringify(q)}: ${body.error}`);
  return body;
}

/** Launches chromium headless as the issue prescribes. */
export async function launch() {
  const { chromium } = await import('playwright-core');
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * The oracle: per UTC day of the raw wikiticker file, the edit count (pv), the distinct
 * non-empty users (uv), the sums of added/deleted/delta and the edits per channel and per
 * country ("" for none), computed from the file itself.
 */
export function oracle() {
  const days = new Map();
  for (const line of gunzipSync(readFileSync(DATA)).toString('utf8').split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line);
    const day = new Date(e.time).toISOString().slice(0, 10);
    if (!days.has(day)) days.set(day, { pv: 0, users: new Set(), added: 0, deleted: 0, delta: 0, byChannel: new Map(), byCountry: new Map() });
    const d = days.get(day);
    d.pv++;
    if (e.user != null && e.user !== '') d.users.add(String(e.user));
    d.added += e.added ?? 0;
    d.deleted += e.deleted ?? 0;
    d.delta += e.delta ?? 0;
    d.byChannel.set(e.channel, (d.byChannel.get(e.channel) || 0) + 1);
    const country = e.countryName == null ? '' : String(e.countryName);
    d.byCountry.set(country, (d.byCountry.get(country) || 0) + 1);
  }
  return days;
}
