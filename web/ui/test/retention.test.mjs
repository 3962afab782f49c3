// Browser test of the dashboard's new-users tile and retention panels in Debian's chromium
// against a real cubed replaying the UCI Online Retail file (configs/online_retail.yaml, its
// daily cube). The page must show what the query API answers, and the API must answer what
// retailOracle() counts in the raw CSV.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { readFileSync, rmSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parse } from 'csv-parse/sync';
import { requireComponents, startCubed, apiQuery, launch, SHOTS, missing, onlineRetailDaily, RETAIL_DATA, RETAIL_CONFIG } from './harness.mjs';
import { num, pct, addDays } from '../src/format.js';

const CUBE = 'online_retail';
const DATA = [RETAIL_DATA];
/** The retention measures of the model: name → [days, cohort]. */
const RETENTION = { retention_d1: [1, 'active'], retention_d7: [7, 'active'], new_retention_d1: [1, 'new'], new_retention_d7: [7, 'new'] };
/** A day of British Summer Time (window_start +01:00) whose previous day and day − 7 traded. */
const SUMMER_DAY = '2011-06-14';

/**
 * The oracle, from the raw CSV alone, as configs/online_retail.yaml defines the measures: an
 * event's day is the date of InvoiceDate, which is wall time in Europe/London, the model's time
 * zone too (checked below); lines with an empty CustomerID are lines but no customer. Per day:
 * lines, the set of customers, and the new customers (those with no line on an earlier day).
 * retention(day, n, cohort) is {cohort, retained, rate} of the customers (cohort 'active') or
 * new customers ('new') of the calendar day n days before who bought again on day.
 */
function retailOracle() {
  const days = new Map();
  const rows = parse(gunzipSync(readFileSync(RETAIL_DATA)), { columns: true });
  for (const r of rows) {
    if (!/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(r.InvoiceDate)) throw new Error(`InvoiceDate ${JSON.stringify(r.InvoiceDate)}`);
    const day = r.InvoiceDate.slice(0, 10);
    if (!days.has(day)) days.set(day, { lines: 0, customers: new Set(), new: new Set() });
    const d = days.get(day);
    d.lines++;
    if (r.CustomerID !== '') d.customers.add(r.CustomerID);
  }
  const seen = new Set();
  for (const day of [...days.keys()].sort()) {
    const d = days.get(day);
    for (const c of d.customers) if (!seen.has(c)) d.new.add(c);
    for (const c of d.customers) seen.add(c);
  }
  const none = new Set();
  const retention = (day, n, cohort) => {
    const before = days.get(addDays(day, -n));
    const base = (cohort === 'new' ? before?.new : before?.customers) ?? none;
    const now = days.get(day)?.customers ?? none;
    const retained = [...base].filter((c) => now.has(c)).length;
    return { cohort: base.size, retained, rate: base.size ? retained / base.size : null };
  };
  return { days, lines: rows.length, customers: seen.size, retention };
}

describe('dashboard retention and new users in chromium (online_retail)', { skip: !process.env.CI && missing(DATA) ? `SKIPPED: ${missing(DATA)}` : false }, () => {
  let srv, browser, truth, model, last;
  const errors = [];

  before(async (t) => {
    if (!requireComponents(t, DATA)) return;
    truth = retailOracle();
    last = [...truth.days.keys()].sort().at(-1);
    model = onlineRetailDaily();
    // Ready when every day's lines (day window) and the last day's (cumulative day window) are
    // the file's: the replay has run to its end and both windows have emitted it.
    srv = await startCubed(async (base) => {
      const r = await apiQuery(base, { cube: CUBE, measures: ['lines'], granularity: 'day' });
      if (r.data.rows.length !== truth.days.size) return false;
      if (!r.data.rows.every((row) => truth.days.get(row[0].slice(0, 10))?.lines === row[1])) return false;
      const c = await apiQuery(base, { cube: CUBE, measures: ['lines'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [last, addDays(last, 1)] });
      return c.data.rows[0]?.[2] === truth.days.get(last).lines;
    }, model);
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await srv?.stop();
    if (model) rmSync(dirname(model), { recursive: true, force: true });
    assert.deepEqual(errors, [], 'the page logged console errors');
  });

  test('the oracle reads the file as the data README describes it', () => {
    assert.equal(truth.lines, 541909);
    assert.equal(truth.customers, 4372);
    assert.equal(truth.days.size, 305);
    // The model's semantics the oracle assumes: InvoiceDate as London wall time, days in London.
    const yaml = readFileSync(RETAIL_CONFIG, 'utf8');
    assert.match(yaml, /field: InvoiceDate\n\s+format: "2006-01-02 15:04:05"\n\s+timezone: Europe\/London/);
    assert.match(yaml, /\n {4}timezone: Europe\/London\n/);
  });

  test('the query API answers new users and retention as the raw file counts them', async () => {
    const cubes = (await (await fetch(`${srv.base}/api/v1/cubes`)).json()).data;
    const info = cubes.find((c) => c.name === CUBE);
    assert.equal(info.timezone, 'Europe/London');
    // Each retention measure's three columns carry its days and cohort (panel titles use them).
    for (const [m, [days, cohort]] of Object.entries(RETENTION)) {
      for (const [col, part] of [[m, 'rate'], [`${m}_retained`, 'retained'], [`${m}_cohort`, 'cohort']]) {
        assert.deepEqual(info.measures.find((x) => x.name === col), { name: col, type: 'retention', field: 'CustomerID', days, cohort, part });
      }
    }
    const measures = ['customers', 'new_customers', ...Object.keys(RETENTION).flatMap((m) => [m, `${m}_retained`, `${m}_cohort`])];
    const r = await apiQuery(srv.base, { cube: CUBE, measures, granularity: 'day' });
    assert.equal(r.data.rows.length, truth.days.size);
    let retained = 0;
    for (const row of r.data.rows) {
      const day = row[0].slice(0, 10);
      const o = truth.days.get(day);
      const want = [o.customers.size, o.new.size, ...Object.values(RETENTION).flatMap(([n, c]) => {
        const x = truth.retention(day, n, c);
        return [x.rate, x.retained, x.cohort];
      })];
      assert.deepEqual(row.slice(1), want, `day ${day}: ${measures.join(', ')}`);
      retained += row[4];
    }
    assert.ok(retained > 0, 'no customer came back the next day all year');
    assert.equal(r.data.rows.reduce((s, row) => s + row[2], 0), truth.customers, 'new customers over the file');
  });

  test('dashboard: new-users and retention tiles and the retention panels equal the query API', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught ${e.stack || e.message}`));
    await page.goto(`${srv.base}/#/cube/${CUBE}`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10000 });
    const dash = (await (await fetch(`${srv.base}/api/v1/cubes`)).json()).data.find((c) => c.name === CUBE).dashboard;
    assert.equal(dash.default, true);
    const kpi = dash.panels[0];
    assert.equal(kpi.type, 'kpi');
    assert.ok(kpi.measures.includes('new_customers') && kpi.measures.includes('retention_d1'), kpi.measures.join(', '));
    assert.deepEqual(dash.panels.filter((p) => p.type === 'retention').map((p) => p.measure), Object.keys(RETENTION));

    // KPI tiles of the default day (the file's last) and of a summer day picked by hand: the
    // cumulative window's last step of the day as the API answers it, and the raw file's count
    // of the whole day (the last step ends at midnight); rates as percentages, compared with the
    // previous day in percentage points.
    const tiles = async (day) => {
      const prev = addDays(day, -1);
      const api = await apiQuery(srv.base, { cube: CUBE, measures: kpi.measures, granularity: 'day', cumulative: true, steps: 'last', timeRange: [day, addDays(day, 1)] });
      const apiPrev = await apiQuery(srv.base, { cube: CUBE, measures: kpi.measures, granularity: 'day', cumulative: true, steps: 'last', timeRange: [prev, day] });
      const oracle = { new_customers: truth.days.get(day).new.size, customers: truth.days.get(day).customers.size };
      for (const [m, [n, c]] of Object.entries(RETENTION)) oracle[m] = truth.retention(day, n, c).rate;
      for (const [i, m] of kpi.measures.entries()) {
        const want = api.data.rows[0][2 + i];
        if (m in oracle) assert.equal(want, oracle[m], `${m} on ${day}: the query API disagrees with the raw file`);
        const tile = page.locator(`section[data-type="kpi"] .tile[data-measure="${m}"]`);
        await page.waitForFunction(([sel, v]) => document.querySelector(sel)?.dataset.value === v,
          [`section[data-type="kpi"] .tile[data-measure="${m}"]`, String(want ?? '')], { timeout: 5000 })
          .catch(async () => assert.fail(`tile ${m} on ${day}: ${await tile.getAttribute('data-value')}, want ${want}`));
        const rate = m in RETENTION;
        assert.equal(await tile.locator('.value').textContent(), rate ? pct(want) : num(want), `tile ${m} text`);
        const before = apiPrev.data.rows[0]?.[2 + i] ?? null;
        const delta = await tile.locator('.delta').textContent();
        assert.ok(delta.endsWith(` vs ${rate ? pct(before) : num(before)} on ${prev} at 24:00`), `tile ${m}: ${delta}`);
        if (rate && want != null && before != null) {
          const pp = ((want - before) * 100).toFixed(1);
          const text = /^-?0\.0$/.test(pp) ? '±0.0 pp' : `${pp.startsWith('-') ? '' : '+'}${pp} pp`;
          assert.ok(delta.startsWith(text), `tile ${m}: ${delta}, want ${text} first`);
        }
      }
    };
    assert.equal(await page.locator('#day').inputValue(), last);
    await tiles(last);
    await page.selectOption('#day', SUMMER_DAY);
    await tiles(SUMMER_DAY);

    // The breakdown table shows the retention rates as percentages too.
    const bd = await apiQuery(srv.base, { cube: CUBE, measures: ['customers', 'retention_d1'], dimensions: ['country'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [SUMMER_DAY, addDays(SUMMER_DAY, 1)], order: [['customers', 'desc']] });
    const breakdown = page.locator('section[data-type="breakdown"]');
    await page.waitForSelector('section[data-type="breakdown"][data-loaded="true"]');
    const cols = await breakdown.locator('.breakdown-table th').allTextContents();
    const ri = cols.indexOf('retention_d1');
    assert.ok(ri > 0, `breakdown columns ${cols}`);
    const [country, , rate] = bd.data.rows[0].slice(2);
    await page.waitForFunction(([c, i, v]) => {
      const td = document.querySelectorAll('section[data-type="breakdown"] .breakdown-table tbody tr')[0]?.children;
      return td?.[0].textContent === c && td[i].dataset.v === v;
    }, [country, ri, String(rate)], { timeout: 5000 }).catch(() => assert.fail(`breakdown: no first row ${country} with retention_d1 ${rate}`));
    assert.equal(await breakdown.locator('.breakdown-table tbody tr').first().locator('td').nth(ri).textContent(), pct(rate), `breakdown ${country} retention_d1`);

    // Each retention panel: its title names the days and the cohort, its table every day of the
    // day window, newest first, as the API answers (and as the raw file counts).
    for (const [m, [n, c]] of Object.entries(RETENTION)) {
      const sel = `section[data-type="retention"][data-measure="${m}"]`;
      const panel = page.locator(sel);
      await panel.scrollIntoViewIfNeeded();
      await page.waitForSelector(`${sel}[data-loaded="true"]`);
      const title = await panel.locator('h2').textContent();
      assert.equal(title, `Day ${n} retention of ${c === 'new' ? 'new users' : 'active users'} (${m})`);
      assert.equal(await panel.locator('.retention-table th').nth(1).textContent(), `cohort (day − ${n})`);
      const api = await apiQuery(srv.base, { cube: CUBE, measures: [m, `${m}_retained`, `${m}_cohort`], granularity: 'day' });
      const want = api.data.rows.map((row) => [row[0].slice(0, 10), num(row[3]), num(row[2]), String(row[1] ?? ''), pct(row[1])]).reverse();
      const got = await panel.locator('.retention-table tbody tr').evaluateAll((trs) => trs.map((tr) => [
        tr.dataset.day, tr.children[1].textContent, tr.children[2].textContent, tr.children[3].dataset.v, tr.children[3].textContent]));
      assert.deepEqual(got, want, `${m}: the panel's table`);
      const x = truth.retention(SUMMER_DAY, n, c);
      assert.deepEqual(got.find((r) => r[0] === SUMMER_DAY), [SUMMER_DAY, num(x.cohort), num(x.retained), String(x.rate ?? ''), pct(x.rate)], `${m} on ${SUMMER_DAY}: raw file`);
      // The curve has a point per day (null over an empty cohort).
      assert.equal(await panel.locator('.retention-chart svg').count(), 1);
    }
    await page.screenshot({ path: join(SHOTS, 'dashboard-retention.png'), fullPage: true });
    await page.close();
  });
});
