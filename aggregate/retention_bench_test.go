package aggregate

import (
	"math"
	"math/rand"
	"runtime"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/retention"
)

// growthBenchPlan is benchPlan's model (5 dimensions, 5 grouping sets, count, sum, exact UV)
// with day windows (tumbling, and cumulative by hour), plus, when growth is set, new users and
// day-1 and day-7 (new cohort) retention of the same users.
func growthBenchPlan(tb testing.TB, growth bool) *cube.Plan {
	tb.Helper()
	c := &cube.Cube{
		Name:     "bench",
		Timezone: time.UTC,
		Dimensions: []cube.Dimension{{Name: "country"}, {Name: "platform"}, {Name: "app_version"},
			{Name: "channel"}, {Name: "page"}},
		Measures: []cube.Measure{{Name: "pv", Type: cube.Count}, {Name: "amount", Type: cube.Sum, Field: "amount"},
			{Name: "uv", Type: cube.CountDistinct, Field: "user_id"}},
		GroupingSets: [][]string{{"country", "platform", "app_version", "channel", "page"}, {"country"},
			{"platform", "app_version"}, {"channel"}, {}},
		Windows: []cube.Window{{Granularity: cube.Day}, {Granularity: cube.Day, Step: time.Hour}},
	}
	if growth {
		c.Measures = append(c.Measures,
			cube.Measure{Name: "new_users", Type: cube.NewUsers, Field: "user_id"},
			cube.Measure{Name: "d1", Type: cube.Retention, Field: "user_id", Days: 1, Cohort: cube.CohortActive},
			cube.Measure{Name: "d7_new", Type: cube.Retention, Field: "user_id", Days: 7, Cohort: cube.CohortNew})
	}
	p, err := cube.Compile(c)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// growthBatches builds n events over days days (in time order), dimensions uniform as in
// benchBatches; each day a Zipf-distributed draw over a user pool that grows by newPerDay ids, so
// that every day has returning and new users.
func growthBatches(n, days, users, newPerDay, batch int) []*Batch {
	r := rand.New(rand.NewSource(42))
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	span := int64(days) * 86_400_000
	var out []*Batch
	b := &Batch{}
	zipf := map[int]*rand.Zipf{} // per day
	for i := 0; i < n; i++ {
		t := base + int64(i)*span/int64(n)
		day := int((t - base) / 86_400_000)
		pool := users + newPerDay*day
		if zipf[day] == nil {
			zipf[day] = rand.NewZipf(r, 1.1, 1, uint64(pool-1))
		}
		var u uint32
		if r.Intn(10) == 0 {
			u = uint32(pool - 1 - r.Intn(newPerDay)) // the newest users
		} else {
			u = uint32(pool - 1 - int(zipf[day].Uint64())) // Zipf over the pool, newest first
		}
		dims := []uint32{uint32(r.Intn(10)), uint32(r.Intn(3)), uint32(r.Intn(30)), uint32(r.Intn(20)), uint32(r.Intn(200))}
		b.Append(t, dims, []float64{float64(r.Intn(10000)) / 100}, []uint32{u})
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

// BenchmarkGrowthMeasures runs 2M events over 10 days through both layers (5 grouping sets, a
// tumbling and an hourly cumulative day window, an early fire every 8 batches of 32768 events,
// windows closing behind the watermark) without (off) and with (on) new users, day-1 and day-7 retention. One op is the
// whole run; compare events/cpu-s of the two sub-benchmarks (the goal: on at most 30% slower).
func BenchmarkGrowthMeasures(b *testing.B) {
	const n, days, users, newPerDay, batch = 2_000_000, 10, 150_000, 15_000, 32768
	batches := growthBatches(n, days, users, newPerDay, batch)
	for _, growth := range []bool{false, true} {
		name := "off"
		if growth {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			p := growthBenchPlan(b, growth)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, m0 := cpuSeconds(), mallocs()
			rows := 0
			for i := 0; i < b.N; i++ {
				a := New(p)
				emit := func(*Row) { rows++ }
				for k, bt := range batches {
					if late := a.Process(bt, nil); len(late) > 0 {
						b.Fatal("late events")
					}
					a.Advance(a.MaxEventTime()-5000, emit)
					if k%8 == 7 {
						for w := range p.Windows {
							a.Emit(w, emit)
						}
					}
				}
				a.Advance(math.MaxInt64, emit)
			}
			cpu, allocs := cpuSeconds()-cpu0, mallocs()-m0
			b.StopTimer()
			events := float64(n) * float64(b.N)
			b.ReportMetric(events/cpu, "events/cpu-s")
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(allocs)/events, "allocs/event")
			b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// rolloverPlan has one dimension g (so one group per value), grouping sets [g] and [], one
// tumbling day window, exact UV, and with growth set new users and day-1 retention.
func rolloverPlan(tb testing.TB, growth bool) *cube.Plan {
	tb.Helper()
	c := &cube.Cube{Name: "rollover", Timezone: time.UTC, Dimensions: []cube.Dimension{{Name: "g"}},
		Measures:     []cube.Measure{{Name: "pv", Type: cube.Count}, {Name: "uv", Type: cube.CountDistinct, Field: "u"}},
		GroupingSets: [][]string{{"g"}, {}},
		Windows:      []cube.Window{{Granularity: cube.Day}}}
	if growth {
		c.Measures = append(c.Measures, cube.Measure{Name: "new_users", Type: cube.NewUsers, Field: "u"},
			cube.Measure{Name: "d1", Type: cube.Retention, Field: "u", Days: 1, Cohort: cube.CohortActive})
	}
	p, err := cube.Compile(c)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// dayOfGroups returns events of day d (from 2024-05-01, UTC): perGroup events in each of groups
// groups, user ids spread so that a group keeps about half of its users from one day to the next.
func dayOfGroups(d, groups, perGroup int) []*Batch {
	base := time.Date(2024, 5, 1+d, 0, 0, 0, 0, time.UTC).UnixMilli()
	var out []*Batch
	b := &Batch{}
	for i := 0; i < groups*perGroup; i++ {
		g := i % groups
		k := i / groups
		u := uint32(g*4 + (k+d)%4) // each day shifts the group's 4 users by one
		b.Append(base+int64(i)*80_000_000/int64(groups*perGroup), []uint32{uint32(g)}, nil, []uint32{u})
		if b.Len == 65536 {
			out = append(out, b)
			b = &Batch{}
		}
	}
	return append(out, b)
}

// BenchmarkDayRollover measures closing a day of 1M groups (two events and two users each) as
// the watermark passes midnight: the final fire of every group and, with new users and day-1
// retention on, moving the day's sets into the ring of closed days (dropping the day before)
// and the groups' retention against the day before. It is the second rollover (the ring already
// holds a day). off: without the measures; on: every group changed since the last early fire
// (the worst case: its counts are computed at the final fire); on/early-fired: an early fire
// just before (as emit_every ticks do), so the final fire only re-sends the counts. Their
// difference to off is the retention cost of a rollover.
func BenchmarkDayRollover(b *testing.B) {
	const groups, perGroup = 1_000_000, 2
	days := [][]*Batch{dayOfGroups(0, groups, perGroup), dayOfGroups(1, groups, perGroup)}
	for _, v := range []struct {
		name          string
		growth, early bool
	}{{"off", false, false}, {"on", true, false}, {"on/early-fired", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			p := rolloverPlan(b, v.growth)
			rows := 0
			emit := func(*Row) { rows++ }
			b.ReportAllocs()
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				a := New(p)
				for d, batches := range days {
					for _, bt := range batches {
						a.Process(bt, nil)
					}
					end := time.Date(2024, 5, 2+d, 0, 0, 0, 0, time.UTC).UnixMilli()
					if d == 0 {
						a.Advance(end, emit) // the first rollover
						continue
					}
					if v.early {
						a.Emit(0, emit)
					}
					rows = 0
					runtime.GC()
					b.StartTimer()
					a.Advance(end, emit)
					b.StopTimer()
				}
				if rows != groups+1 {
					b.Fatalf("the rollover emitted %d rows, want %d", rows, groups+1)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/groups, "ns/group")
		})
	}
}

// BenchmarkRetainedDayMemory measures the memory one retained day costs: 200k groups of 5 users
// each (one grouping set), day-7 retention, 10 days. The ring then holds 7 closed days; their
// heap (measured by dropping them) per day and per (group, user) pair is reported.
func BenchmarkRetainedDayMemory(b *testing.B) {
	const groups, users, days = 200_000, 5, 10
	c := &cube.Cube{Name: "mem", Timezone: time.UTC, Dimensions: []cube.Dimension{{Name: "g"}},
		Measures: []cube.Measure{{Name: "uv", Type: cube.CountDistinct, Field: "u"},
			{Name: "d7", Type: cube.Retention, Field: "u", Days: 7, Cohort: cube.CohortActive}},
		GroupingSets: [][]string{{"g"}}, Windows: []cube.Window{{Granularity: cube.Day}}}
	p, err := cube.Compile(c)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		a := New(p)
		for d := 0; d < days; d++ {
			base := time.Date(2024, 5, 1+d, 0, 0, 0, 0, time.UTC).UnixMilli()
			bt := &Batch{}
			for k := 0; k < groups*users; k++ {
				g := k % groups
				bt.Append(base+int64(k)*80_000_000/(groups*users), []uint32{uint32(g)}, nil, []uint32{uint32(g*users + k/groups)})
				if bt.Len == 65536 || k == groups*users-1 {
					a.Process(bt, nil)
					bt = &Batch{}
				}
			}
			a.Advance(time.Date(2024, 5, 2+d, 0, 0, 0, 0, time.UTC).UnixMilli(), func(*Row) {})
		}
		held := 0
		a.ret.ring.Each(func(retention.Day, *dayState) { held++ })
		estimate := a.ret.sizeBytes()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		a.ret.ring.Clear()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perDay := float64(before.HeapAlloc-after.HeapAlloc) / float64(held)
		b.ReportMetric(perDay, "B/retained-day")
		b.ReportMetric(perDay/(groups*users), "B/group-user-day")
		b.ReportMetric(float64(estimate)/float64(held), "estimated-B/retained-day")
		b.ReportMetric(float64(held), "days-held")
		runtime.KeepAlive(a)
	}
	b.ReportMetric(0, "ns/op")
}
