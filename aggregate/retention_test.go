package aggregate

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/retention"
)

// growthPlan compiles a cube with dimensions a, b, grouping sets [a b], [a], [], measures pv,
// uv, fresh (new_users), d1 (day-1 retention, cohort active) and d2n (day-2 retention, cohort
// new), and the given day windows, in Europe/London.
func growthPlan(t testing.TB, lateness time.Duration, windows ...cube.Window) *cube.Plan {
	t.Helper()
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	c := &cube.Cube{
		Name:       "growth",
		Timezone:   loc,
		EventTime:  cube.EventTime{AllowedLateness: lateness},
		Dimensions: []cube.Dimension{{Name: "a"}, {Name: "b"}},
		Measures: []cube.Measure{{Name: "pv", Type: cube.Count}, {Name: "uv", Type: cube.CountDistinct, Field: "u"},
			{Name: "fresh", Type: cube.NewUsers, Field: "u"},
			{Name: "d1", Type: cube.Retention, Field: "u", Days: 1, Cohort: cube.CohortActive},
			{Name: "d2n", Type: cube.Retention, Field: "u", Days: 2, Cohort: cube.CohortNew}},
		GroupingSets: [][]string{{"a", "b"}, {"a"}, {}},
		Windows:      windows,
	}
	p, err := cube.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type gEvent struct {
	t    int64
	a, b uint32
	u    uint32 // dictionary.NoID = none
}

// growthEvents spreads n events over days days from base, each up to disorder earlier than its
// place in time order; the user pool grows every day, so every day has new users and returning
// ones.
func growthEvents(r *rand.Rand, n, days int, base int64, disorder time.Duration) []gEvent {
	span := int64(days) * 24 * 3_600_000
	evs := make([]gEvent, n)
	for i := range evs {
		t := base + int64(i)*span/int64(n) - r.Int63n(disorder.Milliseconds()+1)
		day := int((t - base) / (24 * 3_600_000))
		e := gEvent{t: t, a: uint32(r.Intn(3)), b: uint32(r.Intn(4)), u: uint32(r.Intn(60 + 45*max(day, 0)))}
		if r.Intn(12) == 0 {
			e.u = dictionary.NoID
		}
		evs[i] = e
	}
	return evs
}

// growthOracle computes every expected row by brute force. With live set, a cumulative row
// exists only for the steps starting at or before the largest event time (an open window).
func growthOracle(p *cube.Plan, evs []gEvent, live bool) map[string][]string {
	loc := p.Cube.Timezone
	dayOf := func(t int64) (int64, int64) {
		y, m, d := time.UnixMilli(t).In(loc).Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli(), time.Date(y, m, d+1, 0, 0, 0, 0, loc).UnixMilli()
	}
	daysBack := func(start int64, n int) int64 {
		y, m, d := time.UnixMilli(start).In(loc).Date()
		return time.Date(y, m, d-n, 0, 0, 0, 0, loc).UnixMilli()
	}
	first := map[uint32]int64{} // user → start of the first day
	maxT := int64(math.MinInt64)
	for _, e := range evs {
		maxT = max(maxT, e.t)
		if e.u == dictionary.NoID {
			continue
		}
		s, _ := dayOf(e.t)
		if f, ok := first[e.u]; !ok || s < f {
			first[e.u] = s
		}
	}
	groupKey := func(gs cube.GroupingSet, e gEvent) string {
		dims := []uint32{e.a, e.b}
		var key []string
		for _, d := range gs.Dims {
			key = append(key, fmt.Sprint(dims[d]))
		}
		return fmt.Sprint(key)
	}
	// Full-day sets per grouping set, group and day.
	daily := map[string]map[uint32]bool{}
	for _, e := range evs {
		if e.u == dictionary.NoID {
			continue
		}
		s, _ := dayOf(e.t)
		for gi, gs := range p.GroupingSets {
			k := fmt.Sprintf("g%d %d %s", gi, s, groupKey(gs, e))
			if daily[k] == nil {
				daily[k] = map[uint32]bool{}
			}
			daily[k][e.u] = true
		}
	}
	out := map[string][]string{}
	for w, win := range p.Windows {
		for gi, gs := range p.GroupingSets {
			type series struct {
				start, end int64
				key        string
				evs        []gEvent
			}
			all := map[string]*series{}
			for _, e := range evs {
				s, end := dayOf(e.t)
				k := fmt.Sprintf("%d %s", s, groupKey(gs, e))
				if all[k] == nil {
					all[k] = &series{start: s, end: end, key: groupKey(gs, e)}
				}
				all[k].evs = append(all[k].evs, e)
			}
			for _, sr := range all {
				var ends []int64
				if win.Step == 0 {
					ends = []int64{sr.end}
				} else {
					firstT := int64(math.MaxInt64)
					for _, e := range sr.evs {
						firstT = min(firstT, e.t)
					}
					step := win.Step.Milliseconds()
					for se := sr.start + step; ; se += step {
						se = min(se, sr.end)
						stepStart := se - step
						if se > firstT && (!live || sr.end <= maxT || stepStart <= maxT) {
							ends = append(ends, se)
						}
						if se == sr.end {
							break
						}
					}
				}
				for _, se := range ends {
					pv := 0
					users := map[uint32]bool{}
					for _, e := range sr.evs {
						if e.t < se {
							pv++
							if e.u != dictionary.NoID {
								users[e.u] = true
							}
						}
					}
					fresh := 0
					for u := range users {
						if first[u] == sr.start {
							fresh++
						}
					}
					vals := []string{fmt.Sprint(float64(pv)), fmt.Sprint(float64(len(users))), fmt.Sprint(float64(fresh))}
					for _, rm := range []struct {
						days      int
						cohortNew bool
					}{{1, false}, {2, true}} {
						back := daysBack(sr.start, rm.days)
						cohort := map[uint32]bool{}
						for u := range daily[fmt.Sprintf("g%d %d %s", gi, back, sr.key)] {
							if !rm.cohortNew || first[u] == back {
								cohort[u] = true
							}
						}
						retained := 0
						for u := range users {
							if cohort[u] {
								retained++
							}
						}
						rate := "null"
						if len(cohort) > 0 {
							rate = fmt.Sprint(float64(retained) / float64(len(cohort)))
						}
						vals = append(vals, rate, fmt.Sprint(float64(retained)), fmt.Sprint(float64(len(cohort))))
					}
					out[fmt.Sprintf("w%d g%d %d %d %s", w, gi, sr.start, se, sr.key)] = vals
				}
			}
		}
	}
	return out
}

// feedGrowth runs events through a in batches: after each batch the watermark moves to
// max time − ooo (never when ooo < 0: a live run whose windows all stay open) and every window
// early-fires. It returns the upserted rows. With restoreEvery > 0 the aggregator is
// checkpointed and replaced by a fresh one restored from the checkpoint every restoreEvery
// batches (a crash and restart at that point). With evict set, it is checkpointed after every
// batch and every block of its distinct sets evicted (a 1-byte memory budget), and restores
// leave every block in the store: the measures read them back.
func feedGrowth(t *testing.T, a *Aggregator, p *cube.Plan, evs []gEvent, batch int, ooo int64, restoreEvery int, evict bool, opts ...Option) (map[string][]string, *Aggregator) {
	t.Helper()
	got := map[string][]string{}
	emit := func(r *Row) {
		got[rowKey(r)] = rowValues(r)
	}
	store := map[string][]byte{}
	read := func(k []byte) ([]byte, error) {
		v, ok := store[string(k)]
		if !ok {
			return nil, fmt.Errorf("key %x not in the store", k)
		}
		return append([]byte(nil), v...), nil
	}
	if evict {
		a.SetStateStore(nil, read, 1)
	}
	var b Batch
	for i, n := 0, 0; i < len(evs); i, n = i+batch, n+1 {
		b.Reset()
		for j := i; j < i+batch && j < len(evs); j++ {
			e := evs[j]
			b.Append(e.t, []uint32{e.a, e.b}, nil, []uint32{e.u})
		}
		if late := a.Process(&b, nil); len(late) > 0 {
			t.Fatalf("%d late events in batch %d", len(late), n)
		}
		if ooo >= 0 {
			a.Advance(a.MaxEventTime()-ooo, emit)
		}
		for w := range p.Windows {
			a.Emit(w, emit)
		}
		if err := a.Err(); err != nil {
			t.Fatal(err)
		}
		if evict {
			if _, err := a.WriteCheckpoint(nil, mapWriter(store)); err != nil {
				t.Fatal(err)
			}
			a.Evict()
		}
		if restoreEvery > 0 && n%restoreEvery == restoreEvery-1 {
			if _, err := a.WriteCheckpoint(nil, mapWriter(store)); err != nil {
				t.Fatal(err)
			}
			wm, maxT := a.Watermark(), a.MaxEventTime()
			a = New(p, opts...)
			if evict {
				a.SetStateStore(nil, read, 1)
			}
			keys := make([]string, 0, len(store))
			for k := range store {
				keys = append(keys, k)
			}
			slices.Sort(keys) // as a pebble iterator returns them
			err := a.RestoreParallel(func(fn func(k, v []byte) error) error {
				for _, k := range keys {
					if err := fn([]byte(k), store[k]); err != nil {
						return fmt.Errorf("restoring key %x: %w", k, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.FinishRestore(wm, maxT); err != nil {
				t.Fatal(err)
			}
			for w := range p.Windows {
				a.Emit(w, emit) // restored groups with changes not yet emitted are emitted
			}
		}
	}
	return got, a
}

// mapWriter is a StateWriter over a map.
type mapWriter map[string][]byte

func (m mapWriter) Set(k, v []byte) error {
	m[string(k)] = append([]byte(nil), v...)
	return nil
}

func (m mapWriter) DeleteRange(lo, hi []byte) error {
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			delete(m, k)
		}
	}
	return nil
}

// TestGrowthOracle checks new users and day-1 / day-2 retention of every row of a tumbling and
// a cumulative day window, across the start of British Summer Time, against the brute-force
// oracle: with windows closing behind the watermark (the ring of closed days), with every day
// open at once and events up to 40 hours out of order (first days moving earlier, cohorts
// growing after their later days started), and with a checkpoint and restart every few batches.
func TestGrowthOracle(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/London")
	base := time.Date(2024, 3, 28, 0, 0, 0, 0, loc).UnixMilli() // BST starts 2024-03-31 01:00 GMT
	windows := []cube.Window{{Granularity: cube.Day}, {Granularity: cube.Day, Step: 6 * time.Hour}}
	n := 9000
	if testing.Short() {
		n = 3000
	}
	cases := []struct {
		name         string
		disorder     time.Duration
		ooo          time.Duration // -1: never advance (live)
		lateness     time.Duration
		restoreEvery int
		evict        bool
	}{
		{"closing", 2 * time.Hour, 2 * time.Hour, 3 * time.Hour, 0, false},
		{"closing/restarts", 2 * time.Hour, 2 * time.Hour, 3 * time.Hour, 3, false},
		{"closing/restarts/evicting", 2 * time.Hour, 2 * time.Hour, 3 * time.Hour, 3, true},
		{"live/40h disorder", 40 * time.Hour, -1, 0, 0, false},
		{"live/40h disorder/restarts", 40 * time.Hour, -1, 0, 4, false},
		{"live/40h disorder/restarts/evicting", 40 * time.Hour, -1, 0, 4, true},
		{"lateness 30h/closing", 28 * time.Hour, 28 * time.Hour, 30 * time.Hour, 5, false},
	}
	for _, tc := range cases {
		for _, workers := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/workers=%d", tc.name, workers), func(t *testing.T) {
				r := rand.New(rand.NewSource(int64(workers) + int64(len(tc.name))))
				evs := growthEvents(r, n, 7, base, tc.disorder)
				p := growthPlan(t, tc.lateness, windows...)
				a := New(p, WithWorkers(workers))
				ooo := tc.ooo.Milliseconds()
				if tc.ooo < 0 {
					ooo = -1
				}
				got, a := feedGrowth(t, a, p, evs, 250, ooo, tc.restoreEvery, tc.evict, WithWorkers(workers))
				if tc.ooo < 0 {
					compareRows(t, got, growthOracle(p, evs, true)) // early fires only
				}
				a.Advance(math.MaxInt64, func(r *Row) { got[rowKey(r)] = rowValues(r) })
				if err := a.Err(); err != nil {
					t.Fatal(err)
				}
				if tc.evict && a.Stats().BlockLoads == 0 {
					t.Error("no evicted block was read back")
				}
				compareRows(t, got, growthOracle(p, evs, false))
				checkRetentionUsed(t, got)
			})
		}
	}
}

// checkRetentionUsed guards the test against vacuous success: some rows must have new users,
// returning users and a null rate.
func checkRetentionUsed(t *testing.T, rows map[string][]string) {
	t.Helper()
	var fresh, retained, null bool
	for _, v := range rows {
		fresh = fresh || v[2] != "0"
		retained = retained || v[4] != "0" && v[7] != "0"
		null = null || v[3] == "null"
	}
	if !fresh || !retained || !null {
		t.Fatalf("rows lack new users (%v), retained users of both cohorts (%v) or an empty cohort (%v)", fresh, retained, null)
	}
}

// TestImportFirstSeen checks that ids imported as known before the stream are not new, and
// that an id imported with a later date becomes new on the earlier day it shows up.
func TestImportFirstSeen(t *testing.T) {
	p := growthPlan(t, 0, cube.Window{Granularity: cube.Day})
	a := New(p, WithWorkers(1))
	loc := p.Cube.Timezone
	day := func(d int) int64 { return time.Date(2024, 5, d, 12, 0, 0, 0, loc).UnixMilli() }
	for _, id := range []uint32{1, 2} {
		if ok, err := a.ImportFirstSeen(0, id, retention.Before); err != nil || !ok {
			t.Fatalf("ImportFirstSeen(%d) = %v, %v", id, ok, err)
		}
	}
	may10 := retention.DayOf(time.Date(2024, 5, 10, 0, 0, 0, 0, time.UTC))
	a.ImportFirstSeen(0, 3, may10)
	if _, err := a.ImportFirstSeen(1, 4, retention.Before); err == nil {
		t.Error("ImportFirstSeen of an unknown field succeeded")
	}
	var b Batch
	for _, u := range []uint32{1, 2, 3, 4} {
		b.Append(day(2), []uint32{0, 0}, nil, []uint32{u})
	}
	a.Process(&b, nil)
	rows := map[string][]string{}
	a.Advance(math.MaxInt64, func(r *Row) {
		if r.GroupingSet == 2 {
			rows[rowKey(r)] = rowValues(r)
		}
	})
	for k, v := range rows {
		if v[1] != "4" || v[2] != "2" { // 3 (imported for a later day) and 4 are new
			t.Errorf("row %s: uv %s, new users %s; want 4, 2", k, v[1], v[2])
		}
	}
	if len(rows) != 1 {
		t.Errorf("%d grand-total rows, want 1", len(rows))
	}
	plain := New(testPlan(time.UTC, 0, cube.Window{Granularity: cube.Day}))
	if _, err := plain.ImportFirstSeen(0, 1, retention.Before); err == nil || !strings.Contains(err.Error(), "no new_users or retention") {
		t.Errorf("ImportFirstSeen on a cube without the measures: %v", err)
	}
}

// TestGrowthFirstDayMoves: an id first seen on day 1 shows up later on day 0 in another group.
// The rows of day 1 that counted it as new, and the day-3 rows whose new cohort of day 1 held
// it, must be emitted again although no event of theirs arrived.
func TestGrowthFirstDayMoves(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/London")
	day := func(d int) int64 { return time.Date(2024, 6, 10+d, 12, 0, 0, 0, loc).UnixMilli() }
	evs := []gEvent{
		{day(1), 0, 0, 7}, {day(3), 0, 0, 7}, {day(2), 0, 0, 7}, // batch 1
		{day(0), 2, 2, 7}, {day(3), 1, 1, 8}, {day(1), 1, 1, 9}, // batch 2: 7 moves to day 0
	}
	for _, workers := range []int{1, 2} {
		p := growthPlan(t, 0, cube.Window{Granularity: cube.Day}, cube.Window{Granularity: cube.Day, Step: 6 * time.Hour})
		got, _ := feedGrowth(t, New(p, WithWorkers(workers)), p, evs, 3, -1, 0, false)
		compareRows(t, got, growthOracle(p, evs, true))
		if v := got[fmt.Sprintf("w0 g0 %d %d [0 0]", day(1)-12*3_600_000, day(2)-12*3_600_000)]; len(v) == 0 || v[2] != "0" {
			t.Errorf("day 1 row of group [0 0]: %v, want no new user", v)
		}
	}
}
