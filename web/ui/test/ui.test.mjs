// Browser tests of the web UI in Debian's chromium against a real cubed replaying wikiticker.
// Expected numbers come from the query API (queried here, independently of the page) and,
// for the day totals, from the raw data file itself (oracle()).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { requireComponents, startCubed, apiQuery, launch, oracle, SHOTS, missing, wikitickerWithoutDashboards } from './harness.mjs';

const DAY = '2015-09-12';
const PREV = '2015-09-11';
const CUBE = 'wikiticker';

let srv, browser, truth;
const consoleErrors = [];

/** A new page that records console errors and uncaught exceptions into consoleErrors. */
async function newPage(errors = consoleErrors) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, permissions: ['clipboard-read', 'clipboard-write'] });
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`${page.url()}: uncaught ${e.stack || e.message}`));
  await page.addInitScript(() => { Error.stackTraceLimit = 40; }); // whole stacks in the report
  return page;
}

/** Waits until the page's first refresh is done (main.js sets data-loaded). */
async function loaded(page) {
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 10000 });
}

if (!process.env.CI && missing()) console.error(`\n*** SKIPPING the browser tests: ${missing()} (with CI set they fail) ***\n`);

describe('web UI in chromium', { skip: !process.env.CI && missing() ? `SKIPPED: ${missing()}` : false }, () => {
  before(async (t) => {
    if (!requireComponents(t)) return;
    truth = oracle();
    const want = truth.get(DAY).pv;
    // Ready when the day's final pv is in the store: the replay has run to its end.
    srv = await startCubed(async (base) => {
      const r = await apiQuery(base, { cube: CUBE, measures: ['pv'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'] });
      return r.data.rows[0]?.[2] === want;
    });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await srv?.stop();
    assert.deepEqual(consoleErrors, [], 'the pages logged console errors');
  });

  test('overview lists the cube with its counters', async () => {
    const page = await newPage();
    await page.goto(`${srv.base}/`);
    await loaded(page);
    const row = page.locator('#cubes tr[data-cube="wikiticker"]');
    const events = [...truth.values()].reduce((s, d) => s + d.pv, 0);
    assert.equal(await row.locator('td[data-k="events"]').textContent(), events.toLocaleString('en-US'));
    assert.match(await row.textContent(), /OK/);
    // events/s appears once two status samples exist (2 s apart).
    await page.waitForFunction(() => document.querySelector('td[data-k="eps"]')?.textContent !== '…', null, { timeout: 6000 });
    await page.screenshot({ path: join(SHOTS, 'overview.png'), fullPage: true });
    await page.close();
  });

  test('dashboard KPIs equal the query API and the raw data, loads under 1 s', async () => {
    // First load: a fresh page (its own context, so a cold cache) from goto to the KPI tiles.
    // The machine is shared (2 cores), so the best of up to 3 cold loads counts.
    let page, firstLoadMs = Infinity;
    const loads = [];
    for (let i = 0; i < 3 && firstLoadMs >= 1000; i++) {
      await page?.close();
      page = await newPage();
      const t0 = Date.now();
      await page.goto(`${srv.base}/#/cube/${CUBE}`);
      await loaded(page);
      await page.waitForSelector('section[data-type="kpi"] .tile[data-measure="uv"]');
      const ms = Date.now() - t0;
      loads.push(`${ms} ms (${await page.getAttribute('body', 'data-loaded-ms')} ms in the page from navigation start to the first data)`);
      firstLoadMs = Math.min(firstLoadMs, ms);
    }
    console.log(`dashboard first load: ${loads.join('; ')}`);
    // Panels load when they come near the viewport: the first load costs the panels on screen.
    // (Which ones depends on the layout before the data; the last is well below the fold.)
    const loadedPanels = await page.$$eval('section.panel', (ss) => ss.map((x) => x.dataset.loaded === 'true'));
    assert.deepEqual([...loadedPanels.slice(0, 3), loadedPanels.at(-1)], [true, true, true, false], `loaded panels ${loadedPanels}`);

    // The panels are the ones configs/wikiticker.yaml's dashboards: section chooses, in its order.
    const cubes = (await (await fetch(`${srv.base}/api/v1/cubes`)).json()).data;
    const dash = cubes.find((c) => c.name === CUBE).dashboard;
    assert.equal(dash.default, false);
    assert.deepEqual(dash.panels.map((p) => [p.type, p.title]), [
      ['kpi', 'Editors and edits so far'], ['cumulative', undefined], ['breakdown', 'Editors by channel'],
      ['breakdown', 'Edits by country'], ['breakdown', 'Robots and anonymous editors']]);
    assert.equal(await page.textContent('h1'), 'Wikipedia edits, 2015-09-12');
    const sections = await page.$$eval('section.panel', (ss) => ss.map((x) => [x.dataset.type, x.querySelector('h2').firstChild.textContent]));
    assert.deepEqual(sections, [['kpi', 'Editors and edits so far'], ['cumulative', 'Cumulative today vs the previous day'],
      ['breakdown', 'Editors by channel'], ['breakdown', 'Edits by country'], ['breakdown', 'Robots and anonymous editors']]);
    assert.deepEqual(await page.$$eval('section.panel .breakdown-set', (ss) => ss.map((x) => x.selectedOptions[0].textContent)),
      ['by channel', 'by country', 'by robot × anonymous × new_page']);

    // The default day is the file's day (the stray edits of other days are skipped).
    assert.equal(await page.locator('#day').inputValue(), DAY);
    const measures = ['uv', 'pv', 'added', 'deleted', 'delta'];
    const api = await apiQuery(srv.base, { cube: CUBE, measures, granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'] });
    const apiPrev = await apiQuery(srv.base, { cube: CUBE, measures, granularity: 'day', cumulative: true, steps: 'last', timeRange: [PREV, DAY] });
    assert.equal(api.data.rows.length, 1);
    const o = truth.get(DAY);
    const oracleRow = [o.users.size, o.pv, o.added, o.deleted, o.delta];
    assert.deepEqual(api.data.rows[0].slice(2), oracleRow, 'the query API disagrees with the raw data');
    for (const [i, m] of measures.entries()) {
      const tile = page.locator(`section[data-type="kpi"] .tile[data-measure="${m}"]`);
      const want = api.data.rows[0][2 + i];
      assert.equal(Number(await tile.getAttribute('data-value')), want, `tile ${m}`);
      assert.equal(await tile.locator('.value').textContent(), want.toLocaleString('en-US'), `tile ${m} text`);
      // Against the previous day at the same time of day: the day is complete (24:00).
      const prev = apiPrev.data.rows[0]?.[2 + i] ?? null;
      assert.match(await tile.locator('.delta').textContent(), new RegExp(`vs ${prev.toLocaleString('en-US')} on ${PREV} at 24:00`), `tile ${m} comparison`);
    }
    // The cumulative curve has both days.
    const legend = await page.locator('section[data-type="cumulative"] svg').textContent();
    assert.match(legend, new RegExp(DAY));
    assert.match(legend, new RegExp(PREV));

    // Breakdown by channel: every channel of the day, sorted by uv (desc) as the API orders it.
    const bd = await apiQuery(srv.base, { cube: CUBE, measures: ['uv', 'pv'], dimensions: ['channel'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'], order: [['uv', 'desc']] });
    assert.equal(bd.data.rows.length, o.byChannel.size);
    const byChannel = page.locator('section[data-panel="2"]');
    const rows = byChannel.locator('.breakdown-table tbody tr');
    await page.waitForFunction(() => document.querySelectorAll('section[data-panel="2"] .breakdown-table tbody tr').length > 0);
    assert.equal(await rows.count(), bd.data.rows.length);
    assert.equal(await rows.first().locator('td').first().textContent(), bd.data.rows[0][2]);
    // Sorting by pv (click) puts the channel with the most edits first, as the raw data says.
    await byChannel.locator('.breakdown-table th[data-col="pv"]').click();
    const top = [...o.byChannel.entries()].sort((a, b) => b[1] - a[1])[0];
    assert.equal(await rows.first().locator('td').first().textContent(), top[0]);
    assert.equal(await rows.first().locator('td[data-v]').nth(1).getAttribute('data-v'), String(top[1]));
    assert.ok(await byChannel.locator('.breakdown-chart svg').count() === 1);

    // Edits by country (the model's top: 10): every country of the day in the table, the ten
    // with the most edits as bars, as the raw data counts them.
    // It lies below the fold: panels load when scrolled to.
    const byCountry = page.locator('section[data-panel="3"]');
    await byCountry.scrollIntoViewIfNeeded();
    await page.waitForSelector('section[data-panel="3"][data-loaded="true"]');
    const countries = [...o.byCountry.entries()].sort((a, b) => b[1] - a[1]);
    assert.equal(await byCountry.locator('.breakdown-table tbody tr').count(), countries.length);
    assert.equal(await byCountry.locator('.breakdown-table tbody tr').first().locator('td[data-v]').first().getAttribute('data-v'), String(countries[0][1]));
    const bars = await byCountry.locator('.breakdown-chart svg').textContent();
    for (const [c] of countries.slice(0, 10)) assert.ok(bars.includes(c === '' ? '(empty)' : c.slice(0, 12)), `bar of ${c} missing`);
    assert.ok(!bars.includes(countries[10][0]), `${countries[10][0]} (11th) has a bar`);
    await page.locator('section[data-panel="4"]').scrollIntoViewIfNeeded();
    await page.waitForSelector('section[data-panel="4"][data-loaded="true"]');
    await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
    await page.close();
    // Checked last, so that a slow machine does not hide the checks above.
    assert.ok(firstLoadMs < 1000, `dashboard first load took ${loads.join('; ')}, want < 1000 ms`);
  });

  test('explorer offers only answerable combinations and shows the right rows', async () => {
    const page = await newPage();
    await page.goto(`${srv.base}/#/explore/${CUBE}`);
    await loaded(page);
    await page.check('input[name="measure"][value="uv"]');
    await page.check('input[name="dimension"][value="country"]');
    assert.match(await page.textContent('#routing'), /grouping set 4 \[country\]/);
    // No grouping set holds country with channel: channel cannot be added.
    assert.ok(await page.isDisabled('input[name="dimension"][value="channel"]'));
    await page.selectOption('select[name="order"]', 'uv desc');
    await page.fill('input[name="from"]', DAY);
    await page.fill('input[name="to"]', '2015-09-13');
    await page.fill('input[name="limit"]', '10');
    const q = { cube: CUBE, measures: ['pv', 'added', 'uv'], dimensions: ['country'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'], order: [['uv', 'desc']], limit: 10 };
    const curl = await page.textContent('#curl');
    assert.ok(curl.includes(`-d '${JSON.stringify(q)}'`), `curl: ${curl}`);
    // "Copy as curl" puts the shown command on the clipboard.
    await page.click('#copy-curl');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), curl);
    assert.equal(await page.locator('#errors .error').count(), 0);
    await page.click('#run');
    await page.waitForSelector('#result tbody tr');
    const want = await apiQuery(srv.base, q);
    const got = await page.$$eval('#result tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.dataset.v ?? td.textContent)));
    assert.deepEqual(got, want.data.rows.map((r) => r.map((v) => (v === '' ? '(empty)' : String(v)))));
    // The curl command, run by curl, answers the same rows.
    const viaCurl = JSON.parse(execFileSync('sh', ['-c', curl]).toString());
    assert.deepEqual(viaCurl.data.rows, want.data.rows);
    // The CSV link answers the same rows as CSV.
    const csv = await (await fetch(new URL(await page.getAttribute('#csv', 'href'), srv.base))).text();
    assert.equal(csv.trim().split('\n').length, want.data.rows.length + 1);
    assert.equal(csv.split('\n')[0].trim(), want.data.columns.join(','));
    await page.screenshot({ path: join(SHOTS, 'explorer.png'), fullPage: true });

    // Group by channel, filter namespace = Main: the [channel, namespace] grouping set answers.
    await page.uncheck('input[name="dimension"][value="country"]');
    await page.check('input[name="dimension"][value="channel"]');
    await page.click('#add-filter');
    assert.equal(await page.inputValue('select[name="filter-dimension"]'), 'namespace');
    await page.fill('input[name="filter-values"]', 'Main');
    assert.match(await page.textContent('#routing'), /grouping set 3 \[channel, namespace\]/);
    await page.selectOption('select[name="order"]', 'pv desc');
    await page.click('#run');
    const q2 = { cube: CUBE, measures: ['pv', 'added', 'uv'], dimensions: ['channel'], filters: [{ dimension: 'namespace', op: 'equals', values: ['Main'] }], granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'], order: [['pv', 'desc']], limit: 10 };
    await page.waitForFunction((want) => document.querySelector('#explorer-table')?.dataset.query === want, JSON.stringify(q2));
    const want2 = await apiQuery(srv.base, q2);
    assert.ok(want2.data.rows.length > 1);
    const got2 = await page.$$eval('#result tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.dataset.v ?? td.textContent)));
    assert.deepEqual(got2, want2.data.rows.map((r) => r.map((v) => (v === '' ? '(empty)' : String(v)))));
    await page.close();
  });

  test('explorer shows an API error', async () => {
    const errors = [];
    const page = await newPage(errors);
    await page.goto(`${srv.base}/#/explore/${CUBE}`);
    await loaded(page);
    await page.fill('input[name="from"]', 'yesterday-ish');
    await page.click('#run');
    const err = page.locator('#errors .error[data-source="query"]');
    await err.waitFor();
    assert.match(await err.textContent(), /POST \/api\/v1\/query: bad_data: .*yesterday-ish/);
    // The only console error is the browser's own note of the 400 answer.
    assert.ok(errors.every((e) => /status of 400/.test(e)), errors.join('\n'));
    await page.close();
  });

  test('model view shows lint errors at their lines and draws every plan node', async () => {
    const page = await newPage();
    await page.goto(`${srv.base}/#/model/${CUBE}`);
    await loaded(page);
    assert.equal(await page.textContent('#lint-summary'), 'no problems');
    const plan = await (await fetch(`${srv.base}/api/v1/cubes/${CUBE}/plan`)).json();
    await page.waitForSelector('#dag svg text');
    const labels = await page.$$eval('#dag svg text', (ts) => ts.map((t) => t.textContent).join('\n'));
    for (const n of plan.data.nodes) {
      const want = n.kind === 'grouping_set' ? `[${plan.data.grouping_sets.find((g) => `gs_${g.id}` === n.id).dimensions.join(', ')}]` : n.id;
      assert.ok(labels.includes(want), `node ${n.id} (${want}) is not drawn; labels:\n${labels}`);
    }
    // Live counters per node: each node's label shows the status API's counters for it, state
    // bytes included (formatted as the page formats them).
    const status = (await (await fetch(`${srv.base}/api/v1/status`)).json()).data.cubes.find((c) => c.name === CUBE);
    const node = (id) => status.nodes.find((n) => n.id === id);
    assert.deepEqual(status.nodes.map((n) => n.id), plan.data.nodes.map((n) => n.id), 'status nodes follow the plan graph');
    const events = [...truth.values()].reduce((s, d) => s + d.pv, 0);
    assert.equal(node('layer1_preagg').events, events);
    assert.ok(node('decode').state_bytes > 0 && node('layer1_preagg').state_bytes > 0, JSON.stringify(status.nodes));
    const texts = await page.$$eval('#dag svg text', (ts) => ts.map((t) => t.textContent));
    // format.js's bytes(): B, then KiB, MiB … with one decimal.
    const stateText = (b) => { const u = ['B', 'KiB', 'MiB', 'GiB']; let i = 0; while (b >= 1024 && i < 3) { b /= 1024; i++; } return `state ${i ? b.toFixed(1) : b} ${u[i]}`; };
    for (const id of ['decode', 'layer1_preagg', 'layer1_full', ...plan.data.nodes.filter((n) => n.kind === 'grouping_set').map((n) => n.id)]) {
      const want = stateText(node(id).state_bytes);
      assert.ok(texts.some((t) => t.includes(want)), `node ${id}: no label shows "${want}"; labels:\n${texts.join('\n')}`);
    }
    assert.ok(texts.some((t) => t.includes(`events ${events.toLocaleString('en-US')}`)), 'no node shows the event count');
    assert.ok(texts.some((t) => t.includes(`rows ${node('sink').rows.toLocaleString('en-US')}`)), 'the sink shows no rows');
    // A bad model: a grouping set names an unknown dimension; the error appears at its line.
    const yaml = await page.inputValue('#editor');
    const bad = yaml.replace('- [country]', '- [contry]');
    const line = bad.split('\n').findIndex((l) => l.includes('[contry]')) + 1;
    assert.ok(line > 0);
    await page.fill('#editor', bad);
    const diag = page.locator(`#yaml .line.has-diag[data-line="${line}"] .diag`);
    await diag.waitFor({ timeout: 5000 });
    assert.match(await diag.textContent(), new RegExp(`^${line}:\\d+: .*contry`));
    // Without the [country] grouping set, the dashboard's breakdown by country has nothing to
    // read: the dashboards: section is checked against the model too.
    const dashLine = bad.split('\n').findIndex((l) => l.includes('dimensions: [country]')) + 1;
    const dashDiag = page.locator(`#yaml .line.has-diag[data-line="${dashLine}"] .diag`);
    assert.match(await dashDiag.textContent(), new RegExp(`^${dashLine}:\\d+: no grouping set answers a breakdown by \\[country\\]`));
    assert.equal(await page.locator('#yaml .line.has-diag').count(), 2);
    assert.equal(await page.textContent('#lint-summary'), '2 problems');
    await page.locator(`#yaml .line[data-line="${line}"]`).scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SHOTS, 'model.png'), fullPage: true });
    await page.close();
  });

  test('pipeline view shows partitions and counters', async () => {
    const page = await newPage();
    await page.goto(`${srv.base}/#/pipeline`);
    await loaded(page);
    const events = [...truth.values()].reduce((s, d) => s + d.pv, 0);
    const row = page.locator('section[data-cube="wikiticker"] table.partitions tbody tr');
    assert.equal(await row.count(), 1);
    assert.equal(await row.locator('td').nth(1).textContent(), events.toLocaleString('en-US'));
    assert.equal(await row.locator('td').nth(2).textContent(), '0');
    // Dictionary sizes: the user dictionary holds every distinct user of the file.
    const users = new Set([...truth.values()].flatMap((d) => [...d.users]));
    const dict = page.locator('section[data-cube="wikiticker"] table.dictionaries tr[data-namespace="wikiticker/id/user"] td[data-v]');
    assert.equal(Number(await dict.getAttribute('data-v')), users.size);
    // The graph's nodes, state bytes included, and the memory budget: wikiticker.yaml sets no
    // state.memory_limit, so the status has the default, 1 GiB.
    const plan = (await (await fetch(`${srv.base}/api/v1/cubes/${CUBE}/plan`)).json()).data;
    assert.deepEqual(await page.$$eval('section[data-cube="wikiticker"] table.nodes tbody tr', (trs) => trs.map((tr) => tr.dataset.node)), plan.nodes.map((n) => n.id));
    const status = (await (await fetch(`${srv.base}/api/v1/status`)).json()).data.cubes[0];
    assert.equal(status.memory_limit, 2 ** 30);
    assert.match(await page.textContent('#state-wikiticker'), / of 1\.0 GiB \(\d+ %\)$/);
    // Dead letters: bad and late events are counted and the dead-letter file is named.
    const kv = await page.textContent('section[data-cube="wikiticker"] dl.kv');
    assert.match(kv, /bad events \(dead-lettered\)0/);
    assert.match(kv, /dead-letter file\/.*deadletter\/wikiticker\.jsonl/);
    assert.ok(await page.locator('section[data-cube="wikiticker"] table[data-field="checkpoints"] tbody tr').count() >= 1, 'no checkpoint listed');
    await page.screenshot({ path: join(SHOTS, 'pipeline.png'), fullPage: true });
    await page.close();
  });

  test('values refresh without a reload', async () => {
    const page = await newPage();
    await page.goto(`${srv.base}/#/cube/${CUBE}`);
    await loaded(page);
    const first = await page.textContent('#live');
    await page.waitForFunction((f) => document.querySelector('#live').textContent !== f, first, { timeout: 3000 });
    await page.close();
  });
});

// The same model without its dashboards: section gets the dashboard derived from the model
// (cube.DefaultDashboard): the KPI tiles of every distinct count, count and sum, the curve of
// the first, a breakdown by the first grouping set with dimensions.
describe('default dashboard in chromium', { skip: !process.env.CI && missing() ? `SKIPPED: ${missing()}` : false }, () => {
  let srv2, browser2, day;
  const errors = [];
  before(async (t) => {
    if (!requireComponents(t)) return;
    day = oracle().get(DAY);
    const want = day.pv;
    srv2 = await startCubed(async (base) => {
      const r = await apiQuery(base, { cube: CUBE, measures: ['pv'], granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'] });
      return r.data.rows[0]?.[2] === want;
    }, wikitickerWithoutDashboards());
    browser2 = await launch();
  });
  after(async () => {
    await browser2?.close();
    await srv2?.stop();
    assert.deepEqual(errors, [], 'the page logged console errors');
  });

  test('panels derived from the model, KPIs equal the query API', async () => {
    const page = await browser2.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(`uncaught ${e.message}`));
    await page.goto(`${srv2.base}/#/cube/${CUBE}`);
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10000 });
    const dash = (await (await fetch(`${srv2.base}/api/v1/cubes`)).json()).data[0].dashboard;
    assert.equal(dash.default, true);
    assert.deepEqual(dash.panels, [
      { type: 'kpi', measures: ['uv', 'pv', 'added', 'deleted', 'delta'] },
      { type: 'cumulative', measure: 'uv' },
      { type: 'breakdown', measure: 'uv', dimensions: ['channel'], top: 15 },
    ]);
    assert.equal(await page.textContent('h1'), 'Wikipedia edits of 2015-09-12 (Druid tutorial sample)');
    assert.deepEqual(await page.$$eval('section.panel', (ss) => ss.map((x) => x.dataset.type)), ['kpi', 'cumulative', 'breakdown']);
    const measures = dash.panels[0].measures;
    const api = await apiQuery(srv2.base, { cube: CUBE, measures, granularity: 'day', cumulative: true, steps: 'last', timeRange: [DAY, '2015-09-13'] });
    for (const [i, m] of measures.entries()) {
      assert.equal(Number(await page.getAttribute(`section[data-type="kpi"] .tile[data-measure="${m}"]`, 'data-value')), api.data.rows[0][2 + i], `tile ${m}`);
    }
    assert.equal(await page.locator('section[data-type="breakdown"] .breakdown-table tbody tr').count(), day.byChannel.size);
    await page.screenshot({ path: join(SHOTS, 'dashboard-default.png'), fullPage: true });
    await page.close();
  });
});
