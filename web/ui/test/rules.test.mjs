// Unit tests of the UI's DOM-free rules (src/rules.js) and formatting (src/format.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultDay, covering, exact, layout, retentionRows, breakdownMeasures, breakdownSet, nodeCounters, isRate } from '../src/rules.js';
import { bytes } from '../src/format.js';
import { addDays, change, changePoints, num, pct } from '../src/format.js';

test('defaultDay: today when it has data, else the latest substantial day', () => {
  const days = [
    { day: '2015-09-11', value: 1 },
    { day: '2015-09-12', value: 10530 },
    { day: '2015-09-13', value: 1 },
    { day: '2015-09-20', value: 1 },
  ];
  assert.equal(defaultDay(days, '2015-09-13'), '2015-09-13'); // wall-clock today wins, however small
  assert.equal(defaultDay(days, '2026-01-01'), '2015-09-12'); // stragglers (< 10 % of the busiest) skipped
  assert.equal(defaultDay([{ day: '2015-09-12', value: 100 }, { day: '2015-09-13', value: 10 }], 'x'), '2015-09-13'); // exactly 10 %
  assert.equal(defaultDay([{ day: '2015-09-12', value: null }], 'x'), '2015-09-12');
  assert.equal(defaultDay([], 'x'), undefined);
});

test('covering and exact follow the exact-cuboid routing rule', () => {
  const sets = [
    { id: 0, dimensions: [] },
    { id: 1, dimensions: ['channel'] },
    { id: 3, dimensions: ['channel', 'namespace'] },
    { id: 56, dimensions: ['robot', 'anonymous', 'new_page'] },
  ];
  assert.deepEqual(covering(sets, new Set()).map((g) => g.id), [0, 1, 3, 56]);
  assert.deepEqual(covering(sets, new Set(['channel'])).map((g) => g.id), [1, 3]);
  assert.deepEqual(covering(sets, new Set(['channel', 'robot'])), []);
  assert.equal(exact(sets, new Set())?.id, 0);
  assert.equal(exact(sets, new Set(['namespace', 'channel']))?.id, 3); // order does not matter
  assert.equal(exact(sets, new Set(['robot', 'anonymous'])), undefined); // a strict subset is not answered
  assert.equal(exact(sets, new Set(['new_page', 'robot', 'anonymous']))?.id, 56);
});

test('layout puts each kind in its column and spreads a column evenly', () => {
  const pos = layout([
    { id: 'source', kind: 'source' }, { id: 'decode', kind: 'decode' },
    { id: 'gs_0', kind: 'grouping_set' }, { id: 'gs_1', kind: 'grouping_set' }, { id: 'gs_2', kind: 'grouping_set' },
    { id: 'sink', kind: 'sink' },
  ]);
  assert.deepEqual(pos.get('source'), [0, 0]);
  assert.deepEqual(pos.get('decode'), [200, 0]);
  assert.deepEqual([pos.get('gs_0'), pos.get('gs_1'), pos.get('gs_2')], [[800, -70], [800, 0], [800, 70]]);
  assert.deepEqual(pos.get('sink'), [1000, 0]);
});

test('formatting', () => {
  assert.equal(addDays('2015-09-01', -1), '2015-08-31');
  assert.equal(addDays('2016-02-28', 1), '2016-02-29');
  assert.equal(addDays('2015-12-31', 1), '2016-01-01');
  assert.equal(change(150, 100), '+50.0 %');
  assert.equal(change(50, 100), '-50.0 %');
  assert.equal(change(5, 0), 'new');
  assert.equal(change(0, 0), '±0 %');
  assert.equal(change(null, 3), '–');
  assert.equal(num(39232), '39,232');
  assert.equal(num(2.345), '2.35');
  assert.equal(num(null), '–');
  assert.equal(pct(0.4231), '42.3 %');
  assert.equal(changePoints(0.0333, 0.0297), '+0.4 pp');
  assert.equal(changePoints(0.05, 0.121), '-7.1 pp');
  assert.equal(changePoints(0.1, 0.1004), '±0.0 pp');
  assert.equal(changePoints(0.1, null), '–');
});

test('retentionRows reads the retention contract: <m>, <m>_retained, <m>_cohort by day', () => {
  // A cumulative day window's answer (window_end present), days out of order, an empty cohort.
  const cols = ['window_start', 'window_end', 'd1', 'd1_retained', 'd1_cohort'];
  const rows = [
    ['2011-01-05T00:00:00Z', '2011-01-06T00:00:00Z', 0.25, 5, 20],
    ['2011-01-04T00:00:00Z', '2011-01-05T00:00:00Z', null, 0, 0],
  ];
  assert.deepEqual(retentionRows(cols, rows, 'd1'), [
    { day: '2011-01-04', ratio: null, retained: 0, cohort: 0 },
    { day: '2011-01-05', ratio: 0.25, retained: 5, cohort: 20 },
  ]);
  // A tumbling window's answer, the ratio alone.
  assert.deepEqual(retentionRows(['window_start', 'd7'], [['2011-02-01T00:00:00+01:00', 0.5]], 'd7'),
    [{ day: '2011-02-01', ratio: 0.5, retained: null, cohort: null }]);
  assert.throws(() => retentionRows(['window_start', 'uv'], [], 'd1'), /lacks window_start or d1/);
});

test('isRate: only the rate column of a retention measure is a percentage', () => {
  assert.equal(isRate({ name: 'd1', type: 'retention', days: 1, cohort: 'active', part: 'rate' }), true);
  assert.equal(isRate({ name: 'd1_retained', type: 'retention', days: 1, cohort: 'active', part: 'retained' }), false);
  assert.equal(isRate({ name: 'd1_cohort', type: 'retention', days: 1, cohort: 'new', part: 'cohort' }), false);
  assert.equal(isRate({ name: 'new_users', type: 'new_users' }), false);
  assert.equal(isRate(undefined), false);
});

test('breakdown panels: measures shown and the grouping set they read', () => {
  const panels = [{ type: 'kpi', measures: ['uv', 'pv'] }, { type: 'breakdown', dimensions: ['robot', 'channel'], measure: 'added' }];
  assert.deepEqual(breakdownMeasures(panels[1], panels), ['added', 'uv', 'pv']);
  assert.deepEqual(breakdownMeasures({ ...panels[1], measure: 'pv' }, panels), ['pv', 'uv']);
  const sets = [{ id: 0, dimensions: [] }, { id: 5, dimensions: ['channel', 'robot'] }];
  assert.equal(breakdownSet(sets, panels[1])?.id, 5);
  assert.equal(breakdownSet(sets, { dimensions: ['robot'] }), undefined);
});

test('nodeCounters: what each DAG node shows', () => {
  const fmt = { num: (v) => String(v), bytes };
  const cube = { partitions: [{ lag: 3 }, { lag: 4 }], bad_events: 1, late_events: 2 };
  assert.deepEqual(nodeCounters('source', { id: 'source', events: 10, state_bytes: 0 }, cube, fmt), ['events 10', 'lag 7']);
  assert.deepEqual(nodeCounters('decode', { id: 'decode', events: 9, state_bytes: 2048 }, cube, fmt), ['events 9', 'state 2.0 KiB', 'bad 1', 'late 2']);
  assert.deepEqual(nodeCounters('full', { id: 'layer1_full', groups: 5, state_bytes: 0 }, cube, fmt), ['groups 5', 'state 0 B']);
  assert.deepEqual(nodeCounters('grouping_set', { id: 'gs_7', groups: 5, state_bytes: 100, in: 'layer1_full' }, cube, fmt), ['in layer1_full']);
  assert.deepEqual(nodeCounters('sink', { id: 'sink', rows: 12, state_bytes: 0 }, { ...cube, sink_error: 'x' }, fmt), ['rows 12', 'ERROR']);
  assert.deepEqual(nodeCounters('sink', undefined, cube, fmt), []);
});
