package dictionary

import (
	"fmt"
	"math/rand"
	"runtime"
	"strings"
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

// unpersisted returns the ids assigned since the last MarkPersisted, read with
// VisitUnpersisted: ids from, from+1, … map to vals[0], vals[1], ….
func unpersisted(t *testing.T, ns Namespace) (from uint32, vals []string) {
	t.Helper()
	upto, err := ns.VisitUnpersisted(func(_ uint32, v []byte) error {
		vals = append(vals, string(v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return upto - uint32(len(vals)), vals
}

// TestPersistRestore: ids handed out, persisted in two rounds, then restored into a new
// dictionary keep their values; a restored namespace goes on with the next id.
func TestPersistRestore(t *testing.T) {
	ns := NewMemory().Namespace("x")
	durable := map[uint32]string{}
	persist := func() {
		from, vals := unpersisted(t, ns)
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
	if from, vals := unpersisted(t, re); from != 15 || len(vals) != 1 || vals[0] != "new" {
		t.Fatalf("unpersisted = %d %v", from, vals)
	}
}

// TestVisitUnpersisted: VisitUnpersisted gives the ids assigned since the last MarkPersisted, in
// order, with their values (an independent first-seen numbering says which), stops at fn's
// error, and returns the id to mark persisted.
func TestVisitUnpersisted(t *testing.T) {
	ns := NewMemory().Namespace("x")
	var order []string
	add := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v := fmt.Sprint("v", i%250) // repeats: only first sightings get ids
			if id := ns.ID([]byte(v)); int(id) == len(order) {
				order = append(order, v)
			}
		}
	}
	add(0, 100)
	ns.MarkPersisted(100)
	add(100, 400)
	var got []string
	upto, err := ns.VisitUnpersisted(func(id uint32, v []byte) error {
		if int(id) != 100+len(got) {
			return fmt.Errorf("id %d after %d visited", id, len(got))
		}
		got = append(got, string(v))
		return nil
	})
	if err != nil || upto != 250 {
		t.Fatalf("VisitUnpersisted = %d, %v; want 250, nil", upto, err)
	}
	if want := order[100:]; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("visited %v, want %v", got, want)
	}
	stop := fmt.Errorf("stop")
	n := 0
	upto, err = ns.VisitUnpersisted(func(id uint32, v []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || upto != 102 {
		t.Fatalf("stopped VisitUnpersisted = %d, %v; want 102, stop", upto, err)
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

// mapStore is a Store over Go maps, filled by the test's checkpoints.
type mapStore struct {
	mu   sync.Mutex
	ids  map[string]uint32
	vals map[uint32]string
}

func (m *mapStore) LookupID(ns string, v []byte) (uint32, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[ns+"\x00"+string(v)]
	return id, ok, nil
}

func (m *mapStore) LookupValue(ns string, id uint32) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[id]
	return v, ok, nil
}

// TestBoundedCache keeps a namespace far below its size (a 64 KiB cache of 20,000 values) by
// trimming after each checkpoint, restarts it lazily from the store, and checks every id
// against first-seen order (the oracle) and every value against the id it was given.
func TestBoundedCache(t *testing.T) {
	st := &mapStore{ids: map[string]uint32{}, vals: map[uint32]string{}}
	r := rand.New(rand.NewSource(7))
	oracle := map[string]uint32{}
	ns := NewStored(st).Namespace("c/id/user")
	ns.SetCacheLimit(64 << 10)
	checkpoint := func() {
		upto, err := ns.VisitUnpersisted(func(id uint32, v []byte) error {
			st.mu.Lock()
			st.ids["c/id/user\x00"+string(v)] = id
			st.vals[id] = string(v)
			st.mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ns.MarkPersisted(upto)
	}
	trims := 0
	for round := 0; round < 40; round++ {
		if round == 20 {
			// Restart: a new dictionary that knows only the count of stored ids.
			ns = NewStored(st).Namespace("c/id/user")
			ns.SetCacheLimit(64 << 10)
			if err := ns.RestoreLazy(uint32(len(oracle))); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 2000; i++ {
			v := fmt.Sprintf("user-%d", r.Intn(20000))
			want, seen := oracle[v]
			if !seen {
				want = uint32(len(oracle))
				oracle[v] = want
			}
			if got := ns.ID([]byte(v)); got != want {
				t.Fatalf("round %d: ID(%s) = %d, want %d", round, v, got, want)
			}
		}
		checkpoint()
		if ns.Trim() {
			trims++
			if ns.SizeBytes() > 64<<10 {
				t.Fatalf("round %d: %d bytes after Trim", round, ns.SizeBytes())
			}
		}
	}
	if err := ns.Err(); err != nil {
		t.Fatal(err)
	}
	if trims == 0 {
		t.Fatal("the namespace never outgrew its cache")
	}
	if ns.Len() != len(oracle) {
		t.Fatalf("Len = %d, want %d", ns.Len(), len(oracle))
	}
	for v, id := range oracle {
		if got, ok := ns.Value(id); !ok || got != v {
			t.Fatalf("Value(%d) = %q, %v; want %q", id, got, ok, v)
		}
		if got, ok := ns.Lookup([]byte(v)); !ok || got != id {
			t.Fatalf("Lookup(%s) = %d, %v; want %d", v, got, ok, id)
		}
	}
	t.Logf("%d ids, %d trims, %d bytes in memory now", len(oracle), trims, ns.SizeBytes())
}

// TestArenaEdges stores values that fill arena chunks exactly, empty values at a full chunk's end
// and values longer than a chunk, and reads every one back.
func TestArenaEdges(t *testing.T) {
	ns := NewMemory().Namespace("edges")
	var vals []string
	for i := 0; i < 300; i++ {
		var v string
		switch i % 5 {
		case 0:
			v = ""
		case 1:
			v = strings.Repeat("x", chunkSize/4) + fmt.Sprint(i) // several fill a chunk
		case 2:
			v = strings.Repeat("y", chunkSize+i) // its own chunk
		default:
			v = fmt.Sprintf("v%d", i)
		}
		vals = append(vals, v)
		ns.ID([]byte(v))
	}
	for _, v := range vals {
		id, ok := ns.Lookup([]byte(v))
		if !ok {
			t.Fatalf("value of %d bytes lost", len(v))
		}
		if got, _ := ns.Value(id); got != v {
			t.Fatalf("Value(%d) has %d bytes, want %d", id, len(got), len(v))
		}
	}
}

// TestShardArenaFullChunk stores, in fresh shards, values that fill the first chunk exactly
// followed by an empty value at its end (position chunkSize, with no chunk after it), and a value
// longer than a chunk followed by small ones; it reads each back through its entry.
func TestShardArenaFullChunk(t *testing.T) {
	for _, vals := range [][]string{
		{strings.Repeat("a", chunkSize/2), strings.Repeat("b", chunkSize/2), ""},
		{strings.Repeat("d", 3*chunkSize), "", "e", strings.Repeat("a", chunkSize-1), ""},
	} {
		var sh memShard
		for _, v := range vals {
			sh.ents = append(sh.ents, newEntry(sh.store([]byte(v)), uint32(len(sh.ents))))
		}
		for e, v := range vals {
			if got := string(sh.value(uint32(e))); got != v {
				t.Fatalf("entry %d has %d bytes, want %d", e, len(got), len(v))
			}
		}
	}
}

// zipfValues returns n user ids drawn from a Zipf distribution over a pool of users, as the
// peer benchmark's generator draws them.
func zipfValues(n, users int) [][]byte {
	r := rand.New(rand.NewSource(42))
	z := rand.NewZipf(r, 1.1, 1, uint64(users-1))
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = fmt.Appendf(nil, "uid_%012d", z.Uint64()*7919%1000000007)
	}
	return vals
}

// TestIDsMatchesID checks that IDs assigns the ids that ID one value at a time would, against a
// map that numbers values in order of first appearance, over batches of every length around the
// prefetch distance and across a namespace's growth.
func TestIDsMatchesID(t *testing.T) {
	vals := zipfValues(300_000, 50_000)
	want := map[string]uint32{}
	ns := NewMemory().Namespace("id:user")
	var out []uint32
	for lo, k := 0, 0; lo < len(vals); k++ {
		hi := min(len(vals), lo+k%(3*idsPrefetch)+k%7*1000)
		batch := vals[lo:hi]
		out = append(out[:0], make([]uint32, len(batch))...)
		ns.IDs(batch, out)
		for i, v := range batch {
			id, ok := want[string(v)]
			if !ok {
				id = uint32(len(want))
				want[string(v)] = id
			}
			if out[i] != id {
				t.Fatalf("value %d (%s): IDs gave %d, want %d", lo+i, v, out[i], id)
			}
		}
		lo = hi
	}
	if ns.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", ns.Len(), len(want))
	}
}

// BenchmarkIDs looks up 2M Zipf-distributed user ids from a pool of 180k (the peer benchmark's)
// in batches of 4096, once with ID per value and once with IDs, in one run; a sub-benchmark's
// ns/op is per value.
func BenchmarkIDs(b *testing.B) {
	vals := zipfValues(2_000_000, 180_000)
	out := make([]uint32, len(vals))
	const batch = 4096
	for _, bulk := range []bool{false, true} {
		name := "ID"
		if bulk {
			name = "IDs"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ns := NewMemory().Namespace("id:user")
				b.StartTimer()
				for lo := 0; lo < len(vals); lo += batch {
					hi := min(len(vals), lo+batch)
					if bulk {
						ns.IDs(vals[lo:hi], out[lo:hi])
					} else {
						for j := lo; j < hi; j++ {
							out[j] = ns.ID(vals[j])
						}
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(vals)), "ns/value")
		})
	}
}
