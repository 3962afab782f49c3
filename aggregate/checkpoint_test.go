package aggregate

import (
	"fmt"
	"math"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
)

// memState is a StateWriter over a map, standing in for the pebble batch of the pipeline.
type memState map[string][]byte

func (m memState) Set(k, v []byte) error { m[string(k)] = append([]byte(nil), v...); return nil }

func (m memState) DeleteRange(lo, hi []byte) error {
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			delete(m, k)
		}
	}
	return nil
}

// TestCheckpointRestore crashes the aggregator at random points: a fresh aggregator restored from
// the last checkpoint and fed the events after it must leave the upserted rows equal to the
// brute-force oracle over all events (nothing lost, nothing counted twice).
func TestCheckpointRestore(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/London")
	base := time.Date(2024, 3, 30, 18, 0, 0, 0, loc).UnixMilli() // DST starts 2024-03-31
	p := testPlan(loc, 10*time.Minute,
		cube.Window{Granularity: cube.Hour},
		cube.Window{Granularity: cube.Day, Step: 2 * time.Hour})
	r := rand.New(rand.NewSource(11))
	evs := randomEvents(r, 6000, base, 30*time.Hour, 20*time.Minute)
	want := oracleRows(p, evs)
	const batch = 150
	for trial := 0; trial < 4; trial++ {
		crash := (1 + r.Intn(len(evs)/batch-1)) * batch
		ckEvery := 1 + r.Intn(5)
		store := map[string][]string{}
		emit := func(row *Row) { store[rowKey(row)] = rowValues(row) }
		state := memState{}
		prefix := []byte("s/t/")
		ckPos, ckWM, ckMax := 0, int64(math.MinInt64), int64(math.MinInt64)
		run := func(a *Aggregator, from, to int, checkpoint bool) {
			var b Batch
			for i, n := from, 0; i < to; i, n = i+batch, n+1 {
				b.Reset()
				for j := i; j < i+batch && j < to; j++ {
					e := evs[j]
					b.Append(e.t, []uint32{e.a, e.b, e.c}, []float64{parseOrNaN(e.v)}, []uint32{e.u})
				}
				if late := a.Process(&b, nil); len(late) > 0 {
					t.Fatalf("trial %d: %d late events", trial, len(late))
				}
				a.Emit(n%2, emit)
				a.Advance(a.MaxEventTime()-30*60_000, emit)
				if checkpoint && n%ckEvery == 0 {
					next := memState{}
					for k, v := range state {
						next[k] = v
					}
					if _, err := a.WriteCheckpoint(prefix, next); err != nil {
						t.Fatal(err)
					}
					state, ckPos, ckWM, ckMax = next, min(i+batch, to), a.Watermark(), a.MaxEventTime()
				}
			}
		}
		orig := New(p, WithWorkers(2))
		run(orig, 0, crash, true)
		// Crash. Restore from the last checkpoint and replay the events after it.
		restored := New(p, WithWorkers(1+r.Intn(3)))
		keys := make([]string, 0, len(state))
		for k := range state {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := restored.Restore([]byte(k[len(prefix):]), state[k]); err != nil {
				t.Fatal(err)
			}
		}
		restored.FinishRestore(ckWM, ckMax)
		run(restored, ckPos, len(evs), false)
		restored.Advance(math.MaxInt64, emit)
		t.Run(fmt.Sprintf("crash at %d, checkpoint at %d", crash, ckPos), func(t *testing.T) {
			compareRows(t, store, want)
		})
	}
}

// TestMemoryBudget runs with a state memory limit far below the state (1 byte): after every
// checkpoint every clean block is evicted and read back from the store on demand; halfway the
// aggregator crashes and a fresh one restores (RestoreParallel, 3 workers) with the blocks left in
// the store. The upserted
// rows must equal the brute-force oracle, and blocks must really have been evicted and loaded.
func TestMemoryBudget(t *testing.T) {
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	p := testPlan(time.UTC, 10*time.Minute,
		cube.Window{Granularity: cube.Hour},
		cube.Window{Granularity: cube.Day, Step: 2 * time.Hour})
	r := rand.New(rand.NewSource(12))
	evs := randomEvents(r, 20000, base, 30*time.Hour, 20*time.Minute)
	for i := range evs {
		if evs[i].u != dictionary.NoID {
			evs[i].u = evs[i].u*977 + uint32(r.Intn(3)) // ~5 blocks of ids
		}
	}
	want := oracleRows(p, evs)
	const batch = 400
	prefix := []byte("s/t/")
	state := memState{}
	read := func(k []byte) ([]byte, error) {
		v, ok := state[string(k)]
		if !ok {
			return nil, fmt.Errorf("key %q not in the store", k)
		}
		return v, nil
	}
	store := map[string][]string{}
	emit := func(row *Row) { store[rowKey(row)] = rowValues(row) }
	maxEvicted := 0
	var ckWM, ckMax int64
	run := func(a *Aggregator, from, to int) {
		var b Batch
		for i := from; i < to; i += batch {
			b.Reset()
			for j := i; j < i+batch && j < to; j++ {
				e := evs[j]
				b.Append(e.t, []uint32{e.a, e.b, e.c}, []float64{parseOrNaN(e.v)}, []uint32{e.u})
			}
			if late := a.Process(&b, nil); len(late) > 0 {
				t.Fatalf("%d late events", len(late))
			}
			if err := a.Err(); err != nil {
				t.Fatal(err)
			}
			a.Emit(0, emit)
			a.Advance(a.MaxEventTime()-30*60_000, emit)
			if _, err := a.WriteCheckpoint(prefix, state); err != nil {
				t.Fatal(err)
			}
			ckWM, ckMax = a.Watermark(), a.MaxEventTime()
			a.Evict()
			maxEvicted = max(maxEvicted, a.Stats().EvictedBlocks)
		}
	}
	a := New(p, WithWorkers(2))
	a.SetStateStore(prefix, read, 1)
	half := len(evs) / 2 / batch * batch
	run(a, 0, half)
	loads := a.Stats().BlockLoads
	// Crash after the last checkpoint; restore with every block left in the store.
	b := New(p, WithWorkers(3))
	b.SetStateStore(prefix, read, 1)
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	err := b.RestoreParallel(func(fn func(k, v []byte) error) error {
		for _, k := range keys {
			if err := fn([]byte(k[len(prefix):]), state[k]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.FinishRestore(ckWM, ckMax); err != nil {
		t.Fatal(err)
	}
	if b.Stats().EvictedBlocks == 0 {
		t.Fatal("restore under a 1-byte budget loaded every block")
	}
	run(b, half, len(evs))
	b.Advance(math.MaxInt64, emit)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	loads += b.Stats().BlockLoads
	t.Logf("peak evicted blocks %d, blocks loaded back %d", maxEvicted, loads)
	if maxEvicted == 0 || loads == 0 {
		t.Fatalf("nothing evicted (%d) or loaded (%d)", maxEvicted, loads)
	}
	compareRows(t, store, want)
}

// TestRestoreEmitsPending checks the early-fire rows of open windows after a restore: groups whose
// changes were not yet emitted at the checkpoint must be emitted after it (and the others may be
// skipped). An aggregator emits only window 0, after every other batch but the last, checkpoints
// and crashes, so that groups of both windows are pending, some of them emitted before; the
// restored one then emits both windows, and every row of a reference run that emitted both
// windows at the checkpoint must be in the sink with the same values.
func TestRestoreEmitsPending(t *testing.T) {
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	p := testPlan(time.UTC, 10*time.Minute,
		cube.Window{Granularity: cube.Hour},
		cube.Window{Granularity: cube.Day, Step: 2 * time.Hour})
	evs := randomEvents(rand.New(rand.NewSource(13)), 5000, base, 20*time.Hour, 20*time.Minute)
	feed := func(a *Aggregator, emit EmitFunc, both bool) {
		var b Batch
		for i := 0; i < len(evs); i += 50 {
			b.Reset()
			for _, e := range evs[i:min(i+50, len(evs))] {
				b.Append(e.t, []uint32{e.a, e.b, e.c}, []float64{parseOrNaN(e.v)}, []uint32{e.u})
			}
			a.Process(&b, nil)
			if both || (i/50)%2 == 0 && i+50 < len(evs) {
				a.Emit(0, emit)
			}
			if both {
				a.Emit(1, emit)
			}
			a.Advance(a.MaxEventTime()-30*60_000, emit)
		}
	}
	ref := map[string][]string{}
	r := New(p, WithWorkers(2))
	feed(r, func(row *Row) { ref[rowKey(row)] = rowValues(row) }, true)
	r.Emit(0, func(row *Row) { ref[rowKey(row)] = rowValues(row) })

	sink := map[string][]string{}
	emit := func(row *Row) { sink[rowKey(row)] = rowValues(row) }
	a := New(p, WithWorkers(2))
	feed(a, emit, false)
	state := memState{}
	if _, err := a.WriteCheckpoint([]byte("p"), state); err != nil {
		t.Fatal(err)
	}
	b := New(p, WithWorkers(3))
	keys := make([]string, 0, len(state))
	for k := range state {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := b.Restore([]byte(k[1:]), state[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.FinishRestore(a.Watermark(), a.MaxEventTime()); err != nil {
		t.Fatal(err)
	}
	reemitted := 0
	count := func(row *Row) { reemitted++; emit(row) }
	b.Emit(0, count)
	b.Emit(1, count)
	bad := 0
	for k, want := range ref {
		if got, ok := sink[k]; !ok || fmt.Sprint(got) != fmt.Sprint(want) {
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d early-fire rows missing or stale after the restore", bad, len(ref))
	}
	t.Logf("%d reference rows, %d emitted after the restore", len(ref), reemitted)
}
