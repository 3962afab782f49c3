package dictionary

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func TestDenseStableIDs(t *testing.T) {
	d := NewMemory()
	ns := d.Namespace("id:user")
	want := map[string]uint32{}
	for i := 0; i < 1000; i++ {
		v := fmt.Sprintf("u%d", i%700)
		id := ns.ID([]byte(v))
		if prev, ok := want[v]; ok && prev != id {
			t.Fatalf("%q got id %d, earlier %d", v, id, prev)
		}
		want[v] = id
	}
	if ns.Len() != 700 {
		t.Fatalf("Len = %d, want 700", ns.Len())
	}
	seen := make([]bool, 700)
	for v, id := range want {
		if id >= 700 || seen[id] {
			t.Fatalf("id %d of %q not dense or reused", id, v)
		}
		seen[id] = true
		if got, _ := ns.Value(id); got != v {
			t.Fatalf("Value(%d) = %q, want %q", id, got, v)
		}
	}
	if _, ok := ns.Value(700); ok {
		t.Fatal("Value of an unassigned id answered")
	}
	if other := d.Namespace("dim:channel"); other.Len() != 0 {
		t.Fatal("namespaces share ids")
	}
}

func TestConcurrentAssign(t *testing.T) {
	ns := NewMemory().Namespace("x")
	var wg sync.WaitGroup
	ids := make([][]uint32, 4)
	for w := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				ids[w] = append(ids[w], ns.ID([]byte(fmt.Sprint(i))))
			}
		}()
	}
	wg.Wait()
	for w := 1; w < 4; w++ {
		for i := range ids[w] {
			if ids[w][i] != ids[0][i] {
				t.Fatalf("worker %d value %d got id %d, worker 0 got %d", w, i, ids[w][i], ids[0][i])
			}
		}
	}
	if ns.Len() != 5000 {
		t.Fatalf("Len = %d", ns.Len())
	}
}

// TestPersistRestore: ids handed out, persisted in two rounds, then restored into a new
// dictionary keep their values; a restored namespace goes on with the next id.
func TestPersistRestore(t *testing.T) {
	ns := NewMemory().Namespace("x")
	durable := map[uint32]string{}
	persist := func() {
		from, vals := ns.Unpersisted()
		for i, v := range vals {
			durable[from+uint32(i)] = v
		}
		ns.MarkPersisted(from + uint32(len(vals)))
	}
	for i := 0; i < 10; i++ {
		ns.ID([]byte(fmt.Sprint("v", i)))
	}
	persist()
	for i := 5; i < 15; i++ {
		ns.ID([]byte(fmt.Sprint("v", i)))
	}
	persist()
	ns.ID([]byte("lost")) // assigned after the last checkpoint
	if len(durable) != 15 {
		t.Fatalf("%d durable ids, want 15", len(durable))
	}
	re := NewMemory().Namespace("x")
	for id := uint32(0); id < uint32(len(durable)); id++ {
		if err := re.Restore(id, durable[id]); err != nil {
			t.Fatal(err)
		}
	}
	for id, v := range durable {
		if got := re.ID([]byte(v)); got != id {
			t.Fatalf("%q: id %d after restore, want %d", v, got, id)
		}
	}
	if id := re.ID([]byte("new")); id != 15 {
		t.Fatalf("next id = %d, want 15", id)
	}
	if err := re.Restore(3, "v3"); err == nil {
		t.Fatal("Restore out of order accepted")
	}
	if from, vals := re.Unpersisted(); from != 15 || len(vals) != 1 || vals[0] != "new" {
		t.Fatalf("Unpersisted = %d %v", from, vals)
	}
}

// BenchmarkBytesPerID measures the heap the in-memory dictionary holds per id for 1M user ids
// of 16 bytes ("uid_" + 12 digits, as the peer benchmark's generator makes them).
func BenchmarkBytesPerID(b *testing.B) {
	for i := 0; i < b.N; i++ {
		const n = 1_000_000
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		ns := NewMemory().Namespace("id:user")
		buf := make([]byte, 0, 16)
		for j := 0; j < n; j++ {
			buf = fmt.Appendf(buf[:0], "uid_%012d", j*7919)
			ns.ID(buf)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric((float64(m1.HeapAlloc)-float64(m0.HeapAlloc))/n, "B/id")
		runtime.KeepAlive(ns)
	}
}
