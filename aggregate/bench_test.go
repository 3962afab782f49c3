package aggregate

import (
	"math"
	"math/rand"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
)

// benchPlan is the peer benchmark's model (../shared/bench/clickhouse_peer.sql): per minute,
// count, sum(amount) and exact UV over 5 grouping sets of country, platform, app_version,
// channel, page.
func benchPlan() *cube.Plan {
	c := &cube.Cube{
		Name:     "bench",
		Timezone: time.UTC,
		Dimensions: []cube.Dimension{{Name: "country"}, {Name: "platform"}, {Name: "app_version"},
			{Name: "channel"}, {Name: "page"}},
		Measures: []cube.Measure{{Name: "pv", Type: cube.Count}, {Name: "amount", Type: cube.Sum, Field: "amount"},
			{Name: "uv", Type: cube.CountDistinct, Field: "user_id"}},
		Windows: []cube.Window{{Granularity: cube.Minute}},
	}
	p := &cube.Plan{Cube: c, Dimensions: []int{0, 1, 2, 3, 4}, ValueFields: []string{"amount"}, DistinctFields: []string{"user_id"}}
	for _, gs := range [][]int{{0, 1, 2, 3, 4}, {0}, {1, 2}, {3}, {}} {
		g := cube.GroupingSet{Dims: gs, Project: gs}
		for _, d := range gs {
			g.ID |= 1 << d
			g.Names = append(g.Names, c.Dimensions[d].Name)
		}
		p.GroupingSets = append(p.GroupingSets, g)
	}
	p.Windows = []cube.WindowSpec{{Window: c.Windows[0]}}
	p.Measures = []cube.MeasurePlan{{Measure: c.Measures[0], ValueField: -1, DistinctField: -1},
		{Measure: c.Measures[1], ValueField: 0, DistinctField: -1}, {Measure: c.Measures[2], ValueField: -1, DistinctField: 0}}
	return p
}

// benchBatches builds n events like ../shared/bench/gen.go (Zipf users over a pool, uniform
// dimensions, event times spread over one hour), already dictionary-encoded, in batches.
func benchBatches(n, users, batch int) []*Batch {
	r := rand.New(rand.NewSource(42))
	z := rand.NewZipf(r, 1.1, 1, uint64(users-1))
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	var out []*Batch
	b := &Batch{}
	for i := 0; i < n; i++ {
		t := base + int64(i)*3_600_000/int64(n)
		dims := []uint32{uint32(r.Intn(10)), uint32(r.Intn(3)), uint32(r.Intn(30)), uint32(r.Intn(20)), uint32(r.Intn(200))}
		b.Append(t, dims, []float64{float64(r.Intn(10000)) / 100}, []uint32{uint32(z.Uint64())})
		if b.Len == batch {
			out = append(out, b)
			b = &Batch{}
		}
	}
	if b.Len > 0 {
		out = append(out, b)
	}
	return out
}

// mallocs returns the number of heap allocations so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// cpuSeconds returns the user + system CPU time of the process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkAggregationCore runs the aggregation core (decoded events → both layers, 5 grouping
// sets, minute windows, watermark following the events, final emission) over 2M events from
// ~180k users. One op is the whole run; it reports events per CPU-second (per core) and
// allocations per event.
func BenchmarkAggregationCore(b *testing.B) {
	const n, users, batch = 2_000_000, 180_000, 32768
	batches := benchBatches(n, users, batch)
	p := benchPlan()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, m0 := cpuSeconds(), mallocs()
	rows := 0
	for i := 0; i < b.N; i++ {
		a := New(p)
		emit := func(*Row) { rows++ }
		var late []int
		for _, bt := range batches {
			late = a.Process(bt, late[:0])
			a.Advance(a.MaxEventTime()-5000, emit)
		}
		a.Advance(math.MaxInt64, emit)
		if len(late) > 0 {
			b.Fatal("late events")
		}
	}
	cpu, allocs := cpuSeconds()-cpu0, mallocs()-m0
	b.StopTimer()
	events := float64(n) * float64(b.N)
	b.ReportMetric(events/cpu, "events/cpu-s")
	b.ReportMetric(float64(allocs)/events, "allocs/event")
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAggregationSteadyState measures allocations per event once the aggregator has warmed
// up: the same minute of events (fresh window instances each time, tables reused from the pool)
// is processed again and again.
func BenchmarkAggregationSteadyState(b *testing.B) {
	const n, users, batch = 200_000, 180_000, 32768
	batches := benchBatches(n, users, batch)
	p := benchPlan()
	a := New(p)
	emit := func(*Row) {}
	shift := int64(0)
	run := func() {
		for _, bt := range batches {
			for i := range bt.Times {
				bt.Times[i] += shift
			}
			a.Process(bt, nil)
			a.Advance(a.MaxEventTime()-5000, emit)
		}
		shift = 3_600_000
	}
	run()
	run()
	b.ReportAllocs()
	b.ResetTimer()
	m0 := mallocs()
	for i := 0; i < b.N; i++ {
		run()
	}
	allocs := mallocs() - m0
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(allocs)/(float64(n)*float64(b.N)), "allocs/event")
}
