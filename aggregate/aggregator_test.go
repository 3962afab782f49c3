package aggregate

import (
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
)

// testPlan builds by hand the plan of a cube with dimensions a, b, c, measures
// pv/count, s/sum(v), mn/min(v), mx/max(v), uv/count_distinct(u), grouping sets
// [a b c] [a] [b c] [], and the given windows, in zone loc.
func testPlan(loc *time.Location, lateness time.Duration, windows ...cube.Window) *cube.Plan {
	c := &cube.Cube{
		Name:     "t",
		Timezone: loc,
		EventTime: cube.EventTime{
			AllowedLateness: lateness,
		},
		Dimensions: []cube.Dimension{{Name: "a"}, {Name: "b"}, {Name: "c"}},
		Measures: []cube.Measure{{Name: "pv", Type: cube.Count}, {Name: "s", Type: cube.Sum, Field: "v"},
			{Name: "mn", Type: cube.Min, Field: "v"}, {Name: "mx", Type: cube.Max, Field: "v"},
			{Name: "uv", Type: cube.CountDistinct, Field: "u"}},
		Windows: windows,
	}
	p := &cube.Plan{Cube: c, Dimensions: []int{0, 1, 2}, ValueFields: []string{"v"}, DistinctFields: []string{"u"}}
	for _, gs := range [][]int{{0, 1, 2}, {0}, {1, 2}, {}} {
		g := cube.GroupingSet{Dims: gs, Project: gs}
		for _, d := range gs {
			g.ID |= 1 << d
			g.Names = append(g.Names, c.Dimensions[d].Name)
		}
		p.GroupingSets = append(p.GroupingSets, g)
	}
	for _, w := range windows {
		p.Windows = append(p.Windows, cube.WindowSpec{Window: w, Cumulative: w.Step > 0})
	}
	for _, m := range c.Measures {
		mp := cube.MeasurePlan{Measure: m, ValueField: -1, DistinctField: -1}
		switch m.Type {
		case cube.Sum, cube.Min, cube.Max:
			mp.ValueField = 0
		case cube.CountDistinct:
			mp.DistinctField = 0
		}
		p.Measures = append(p.Measures, mp)
	}
	return p
}

type tevent struct {
	t       int64
	a, b, c uint32
	v       string // decimal text, "" = missing
	u       uint32 // dictionary.NoID = missing
}

// oracleRows computes every expected row by brute force: for each window instance and step, the
// events with start ≤ t < step end, grouped by each grouping set.
func oracleRows(p *cube.Plan, evs []tevent) map[string][]string {
	loc := p.Cube.Timezone
	bounds := func(g cube.Granularity, t int64) (int64, int64) {
		tm := time.UnixMilli(t).In(loc)
		switch g {
		case cube.Minute:
			s := time.UnixMilli(t).UTC().Truncate(time.Minute)
			return s.UnixMilli(), s.Add(time.Minute).UnixMilli()
		case cube.Hour:
			s := time.UnixMilli(t).UTC().Truncate(time.Hour) // loc has whole-hour offsets
			return s.UnixMilli(), s.Add(time.Hour).UnixMilli()
		case cube.Day:
			y, m, d := tm.Date()
			return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli(), time.Date(y, m, d+1, 0, 0, 0, 0, loc).UnixMilli()
		}
		panic("granularity")
	}
	type acc struct {
		n      int
		sum    *big.Rat
		mn, mx float64
		has    bool
		users  map[uint32]bool
	}
	out := map[string][]string{}
	for w, win := range p.Windows {
		accs := map[string]*acc{}
		for _, e := range evs {
			start, end := bounds(win.Granularity, e.t)
			var ends []int64
			if win.Step == 0 {
				ends = []int64{end}
			} else {
				for se := start + win.Step.Milliseconds(); ; se += win.Step.Milliseconds() {
					if se > end {
						se = end
					}
					if e.t < se {
						ends = append(ends, se)
					}
					if se == end {
						break
					}
				}
			}
			for gi, gs := range p.GroupingSets {
				dims := []uint32{e.a, e.b, e.c}
				var key []string
				for _, d := range gs.Dims {
					key = append(key, fmt.Sprint(dims[d]))
				}
				for _, se := range ends {
					k := fmt.Sprintf("w%d g%d %d %d %v", w, gi, start, se, key)
					ac := accs[k]
					if ac == nil {
						ac = &acc{sum: new(big.Rat), users: map[uint32]bool{}}
						accs[k] = ac
					}
					ac.n++
					if e.v != "" {
						r, _ := new(big.Rat).SetString(e.v)
						ac.sum.Add(ac.sum, r)
						f, _ := strconv.ParseFloat(e.v, 64)
						if !ac.has || f < ac.mn {
							ac.mn = f
						}
						if !ac.has || f > ac.mx {
							ac.mx = f
						}
						ac.has = true
					}
					if e.u != dictionary.NoID {
						ac.users[e.u] = true
					}
				}
			}
		}
		for k, ac := range accs {
			s, _ := ac.sum.Float64()
			mn, mx := "null", "null"
			if ac.has {
				mn, mx = fmt.Sprint(ac.mn), fmt.Sprint(ac.mx)
			}
			out[k] = []string{fmt.Sprint(ac.n), fmt.Sprint(s), mn, mx, fmt.Sprint(len(ac.users))}
		}
	}
	return out
}

func rowKey(r *Row) string {
	var key []string
	for _, d := range r.Dims {
		key = append(key, fmt.Sprint(d))
	}
	return fmt.Sprintf("w%d g%d %d %d %v", r.Window, r.GroupingSet, r.Start, r.End, key)
}

func rowValues(r *Row) []string {
	var out []string
	for _, v := range r.Values {
		if math.IsNaN(v) {
			out = append(out, "null")
		} else {
			out = append(out, fmt.Sprint(v))
		}
	}
	return out
}

func parseOrNaN(s string) float64 {
	if s == "" {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return f
}

// runEvents feeds events in batches, moving the watermark to (max time - ooo) after each batch
// and early-firing every few batches; it returns the upserted rows (last write wins) and the
// late event indices. Every model it runs has a count as measure 0, so a row is re-sent only
// with a larger count: it fails on a row re-sent unchanged (the final fire writes only what
// changed), and on any row emitted after every window has closed.
func runEvents(t *testing.T, a *Aggregator, p *cube.Plan, evs []tevent, batch int, ooo int64) (map[string][]string, []int) {
	t.Helper()
	got := map[string][]string{}
	closed := false
	emit := func(r *Row) {
		k := rowKey(r)
		if closed {
			t.Fatalf("row %s emitted after every window closed", k)
		}
		v := rowValues(r)
		if prev, ok := got[k]; ok && prev[0] == v[0] {
			t.Fatalf("row %s re-sent with an unchanged count: %v, before %v", k, v, prev)
		}
		got[k] = v
	}
	var b Batch
	var late []int
	maxT := int64(math.MinInt64)
	for i := 0; i < len(evs); i += batch {
		b.Reset()
		for j := i; j < i+batch && j < len(evs); j++ {
			e := evs[j]
			b.Append(e.t, []uint32{e.a, e.b, e.c}, []float64{parseOrNaN(e.v)}, []uint32{e.u})
			maxT = max(maxT, e.t)
		}
		lb := a.Process(&b, nil)
		for _, x := range lb {
			late = append(late, i+x)
		}
		if (i/batch)%3 == 0 {
			for w := range p.Windows {
				a.Emit(w, emit)
			}
		}
		a.Advance(maxT-ooo, emit)
	}
	a.Advance(math.MaxInt64, emit)
	if st := a.Stats(); st.Instances != 0 {
		t.Fatalf("%d instances left after the final watermark", st.Instances)
	}
	closed = true
	for w := range p.Windows {
		a.Emit(w, emit)
	}
	return got, late
}

func compareRows(t *testing.T, got, want map[string][]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		g, w := got[k], want[k]
		if fmt.Sprint(g) != fmt.Sprint(w) {
			bad++
			if bad <= 10 {
				t.Errorf("row %s: got %v, want %v", k, g, w)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d rows differ", bad, len(keys))
	}
}

func randomEvents(r *rand.Rand, n int, base int64, span, disorder time.Duration) []tevent {
	evs := make([]tevent, n)
	for i := range evs {
		t := base + int64(i)*span.Milliseconds()/int64(n) - r.Int63n(disorder.Milliseconds()+1)
		e := tevent{t: t, a: uint32(r.Intn(3)), b: uint32(r.Intn(5)), c: uint32(r.Intn(40)), u: uint32(r.Intn(300))}
		if r.Intn(10) == 0 {
			e.u = dictionary.NoID
		}
		if r.Intn(8) != 0 {
			e.v = fmt.Sprintf("%d.%02d", r.Intn(2000)-500, r.Intn(100))
		}
		evs[i] = e
	}
	return evs
}

// TestOracleOutOfOrder checks every row of tumbling and cumulative windows, across a DST change
// in Europe/London, against the brute-force oracle, with out-of-order events, several workers
// and early fires between batches.
func TestOracleOutOfOrder(t *testing.T) {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 10, 26, 20, 0, 0, 0, loc).UnixMilli() // DST ends 2024-10-27 02:00 BST
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			r := rand.New(rand.NewSource(int64(workers)))
			n := 12000
			if testing.Short() {
				n = 3000 // the race detector run
			}
			evs := randomEvents(r, n, base, 52*time.Hour, 40*time.Minute)
			p := testPlan(loc, 0,
				cube.Window{Granularity: cube.Hour},
				cube.Window{Granularity: cube.Day, Step: 3 * time.Hour},
				cube.Window{Granularity: cube.Day, Step: 30 * time.Minute},
				cube.Window{Granularity: cube.Minute})
			a := New(p, WithWorkers(workers))
			got, late := runEvents(t, a, p, evs, 777, time.Hour.Milliseconds())
			if len(late) != 0 {
				t.Fatalf("%d events late, want none", len(late))
			}
			compareRows(t, got, oracleRows(p, evs))
		})
	}
}

// TestLateEvents checks that events behind the watermark are reported late, excluded, and that
// the rest still matches the oracle.
func TestLateEvents(t *testing.T) {
	p := testPlan(time.UTC, 10*time.Minute, cube.Window{Granularity: cube.Hour}, cube.Window{Granularity: cube.Day, Step: time.Hour})
	a := New(p, WithWorkers(2))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	r := rand.New(rand.NewSource(7))
	evs := randomEvents(r, 3000, base, 6*time.Hour, time.Minute)
	// Late: an event 2 hours behind, after the watermark passed its hour + 10 min lateness.
	lateEv := tevent{t: base + 90*60_000, a: 1, b: 1, c: 1, v: "5", u: 9999}
	withLate := append(append(append([]tevent(nil), evs[:2500]...), lateEv), evs[2500:]...)
	got, late := runEvents(t, a, p, withLate, 100, 0)
	if len(late) != 1 || late[0] != 2500 {
		t.Fatalf("late = %v, want [2500]", late)
	}
	compareRows(t, got, oracleRows(p, evs))
}

// TestSumExact checks that sums do not depend on the order of additions.
func TestSumExact(t *testing.T) {
	vals := []string{"0.1", "0.2", "0.3", "1e6", "-0.7", "123.456789", "-99.99", "4.55"}
	want := new(big.Rat)
	for _, v := range vals {
		r, _ := new(big.Rat).SetString(v)
		want.Add(want, r)
	}
	wf, _ := want.Float64()
	r := rand.New(rand.NewSource(3))
	for trial := 0; trial < 100; trial++ {
		r.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
		c := make([]uint64, 2)
		for _, v := range vals {
			f, _ := strconv.ParseFloat(v, 64)
			addSum(c, f)
		}
		if got := sumFloat(int64(c[0]), int64(c[1])); got != wf {
			t.Fatalf("order %v: sum %v, want %v", vals, got, wf)
		}
	}
}

// TestSumFloatNearest checks sumFloat against exact rational arithmetic (big.Rat's Float64, the
// nearest float64, ties to even) on both sides of its fast path's bound (totals of 2^53 nanos),
// at ties and at random, with mixed signs of the integer and fractional parts.
func TestSumFloatNearest(t *testing.T) {
	check := func(ip, n int64) {
		t.Helper()
		r := new(big.Rat).SetFrac(new(big.Int).Add(new(big.Int).Mul(big.NewInt(ip), big.NewInt(nano)), big.NewInt(n)), big.NewInt(nano))
		want, _ := r.Float64()
		if got := sumFloat(ip, n); got != want {
			t.Fatalf("sumFloat(%d, %d) = %v (%x), want %v (%x)", ip, n, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
	rng := rand.New(rand.NewSource(11))
	bound := int64(1<<53) / nano // integer part at the fast path's edge
	for _, ip := range []int64{0, 1, -1, 2, 12, -12, 999_999, bound - 1, bound, bound + 1, -bound, -bound - 1, 1 << 40, -1 << 40, math.MaxInt64 / nano, math.MinInt64 / nano} {
		for _, n := range []int64{1, -1, 5, 500_000_000, -500_000_000, 999_999_999, -999_999_999, 1<<53 - bound*nano, 1<<53 - bound*nano + 1, 123_456_789} {
			check(ip, n)
		}
	}
	for i := 0; i < 200_000; i++ {
		ip := rng.Int63n(2*bound+5) - bound - 2
		if i%4 == 0 {
			ip = rng.Int63n(2000) - 1000
		}
		n := rng.Int63n(2*nano-1) - (nano - 1)
		check(ip, n)
	}
}

// Stats per node: the groups of each node equal the distinct (window instance, grouping-set
// key) pairs of the events, counted by brute force; the node bytes add up to StateBytes; each
// node names the grouping set it emits; the partial tables keep memory between batches.
func TestStatsPerNode(t *testing.T) {
	p := testPlan(time.UTC, time.Hour, cube.Window{Granularity: cube.Hour}, cube.Window{Granularity: cube.Day, Step: 6 * time.Hour})
	rng := rand.New(rand.NewSource(7))
	base := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var b Batch
	want := make([]map[string]bool, len(p.GroupingSets))
	for i := range want {
		want[i] = map[string]bool{}
	}
	for i := 0; i < 5000; i++ {
		tm := base + rng.Int63n(30*3600*1000)
		dims := []uint32{uint32(rng.Intn(5)), uint32(rng.Intn(7)), uint32(rng.Intn(3))}
		b.Append(tm, dims, []float64{1}, []uint32{uint32(rng.Intn(400))})
		for gi, gs := range p.GroupingSets {
			key := []uint32{}
			for _, d := range gs.Dims {
				key = append(key, dims[d])
			}
			hour := time.UnixMilli(tm).UTC().Truncate(time.Hour).UnixMilli()
			day := time.UnixMilli(tm).UTC().Truncate(24 * time.Hour).UnixMilli()
			want[gi][fmt.Sprint("h", hour, key)] = true
			want[gi][fmt.Sprint("d", day, key)] = true
		}
	}
	a := New(p, WithWorkers(3))
	a.Process(&b, nil)
	st := a.Stats()
	if len(st.Groups) != 4 || len(st.NodeStateBytes) != 4 || len(st.NodeGroupingSets) != 4 || len(st.NodePreaggBytes) != 4 {
		t.Fatalf("want 4 nodes (layer 1 = [a b c], then [a], [b c], []), got %+v", st)
	}
	var sum uint64
	for i, gi := range st.NodeGroupingSets {
		// Layer 1 emits grouping set 0, [a b c]; layer 2 the others in plan order.
		if gi != i {
			t.Errorf("node %d emits grouping set %d, want %d", i, gi, i)
		}
		if st.Groups[i] != len(want[gi]) {
			t.Errorf("node %d: %d groups, want %d", i, st.Groups[i], len(want[gi]))
		}
		if st.NodeStateBytes[i] == 0 || st.NodePreaggBytes[i] == 0 {
			t.Errorf("node %d: state %d B, partials %d B", i, st.NodeStateBytes[i], st.NodePreaggBytes[i])
		}
		sum += st.NodeStateBytes[i]
	}
	if sum != st.StateBytes {
		t.Errorf("node bytes add up to %d, StateBytes is %d", sum, st.StateBytes)
	}
}
