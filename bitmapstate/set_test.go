package bitmapstate

import (
	"math/rand"
	"slices"
	"testing"
)

// TestSetAgainstMap drives random adds and removes against a Go map (the oracle) across every
// representation change.
func TestSetAgainstMap(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for trial := 0; trial < 200; trial++ {
		var s Set
		ref := map[uint32]bool{}
		universe := uint32(1 + r.Intn(400))
		ops := r.Intn(600)
		for i := 0; i < ops; i++ {
			x := uint32(r.Intn(int(universe)))
			if r.Intn(4) == 0 {
				if got, want := s.Remove(x), ref[x]; got != want {
					t.Fatalf("trial %d: Remove(%d) = %v, want %v", trial, x, got, want)
				}
				delete(ref, x)
			} else {
				if got, want := s.Add(x), !ref[x]; got != want {
					t.Fatalf("trial %d: Add(%d) = %v, want %v", trial, x, got, want)
				}
				ref[x] = true
			}
			if s.Len() != uint64(len(ref)) {
				t.Fatalf("trial %d: Len = %d, want %d", trial, s.Len(), len(ref))
			}
		}
		for x := uint32(0); x < universe; x++ {
			if s.Contains(x) != ref[x] {
				t.Fatalf("trial %d: Contains(%d) = %v, want %v", trial, x, s.Contains(x), ref[x])
			}
		}
		prev, n := int64(-1), 0
		s.Each(func(x uint32) {
			if int64(x) <= prev || !ref[x] {
				t.Fatalf("trial %d: Each gave %d after %d", trial, x, prev)
			}
			prev = int64(x)
			n++
		})
		if n != len(ref) {
			t.Fatalf("trial %d: Each gave %d ids, want %d", trial, n, len(ref))
		}
		s.Reset()
		if s.Len() != 0 || s.Contains(0) {
			t.Fatalf("Reset left ids")
		}
	}
}

func BenchmarkSetAddSmall(b *testing.B) {
	b.ReportAllocs()
	var s Set
	for i := 0; i < b.N; i++ {
		if i%3 == 0 {
			s.Reset()
		}
		s.Add(uint32(i * 7919))
	}
}

// TestSetBinaryRoundTrip serializes sets of every representation and reads them back.
func TestSetBinaryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, n := range []int{0, 1, 3, 4, 64, 65, 1000, 70000} {
		var s Set
		ref := map[uint32]bool{}
		for len(ref) < n {
			x := uint32(r.Intn(1 << 20))
			ref[x] = true
			s.Add(x)
		}
		b := s.AppendBinary([]byte("prefix"))
		var got Set
		rest, err := got.ReadBinary(append(b[len("prefix"):], 7, 7))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(rest) != 2 || got.Len() != uint64(n) {
			t.Fatalf("n=%d: rest %v, len %d", n, rest, got.Len())
		}
		for x := range ref {
			if !got.Contains(x) {
				t.Fatalf("n=%d: %d lost", n, x)
			}
		}
		if _, err := got.ReadBinary(b[len("prefix") : len(b)-1]); n > 0 && err == nil {
			t.Fatalf("n=%d: truncated input accepted", n)
		}
	}
}

// TestAddSorted compares AddSorted with a map over sets of every representation.
func TestAddSorted(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	for trial := 0; trial < 300; trial++ {
		var s Set
		ref := map[uint32]bool{}
		for pre := r.Intn(300); pre > 0; pre-- {
			x := uint32(r.Intn(5000))
			s.Add(x)
			ref[x] = true
		}
		seen := map[uint32]bool{}
		var ids []uint32
		for n := r.Intn(200); n > 0; n-- {
			x := uint32(r.Intn(5000))
			if !seen[x] {
				seen[x] = true
				ids = append(ids, x)
			}
		}
		slices.Sort(ids)
		var want []uint32
		for _, x := range ids {
			if !ref[x] {
				want = append(want, x)
				ref[x] = true
			}
		}
		got := s.AddSorted(ids, nil)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: added %v, want %v", trial, got, want)
		}
		if s.Len() != uint64(len(ref)) {
			t.Fatalf("trial %d: Len %d, want %d", trial, s.Len(), len(ref))
		}
	}
}

// TestBlocksAgainstMap drives large sets (sparse and dense blocks, several blocks) through
// AddWith, AddSortedWith and RemoveWith on a shared Pool, checking each against a Go map, then
// releases them into the pool and starts over so that recycled arrays are exercised.
func TestBlocksAgainstMap(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	p := &Pool{}
	for trial := 0; trial < 40; trial++ {
		sets := make([]Set, 3)
		refs := make([]map[uint32]bool, len(sets))
		for i := range refs {
			refs[i] = map[uint32]bool{}
		}
		universe := []int{300, 1 << 13, 3 << 16, 1 << 22}[trial%4]
		for op := 0; op < 6000; op++ {
			i := r.Intn(len(sets))
			s, ref := &sets[i], refs[i]
			switch k := r.Intn(10); {
			case k < 5:
				x := uint32(r.Intn(universe))
				if got, want := s.AddWith(p, x), !ref[x]; got != want {
					t.Fatalf("trial %d: AddWith(%d) = %v, want %v", trial, x, got, want)
				}
				ref[x] = true
			case k < 9:
				var ids []uint32
				lo := r.Intn(universe)
				for j := 0; j < r.Intn(300); j++ {
					ids = append(ids, uint32(lo+r.Intn(1+universe/8)))
				}
				slices.Sort(ids)
				ids = slices.Compact(ids)
				var want []uint32
				for _, x := range ids {
					if !ref[x] {
						want = append(want, x)
						ref[x] = true
					}
				}
				got := s.AddSortedWith(p, ids, nil)
				if !slices.Equal(got, want) {
					t.Fatalf("trial %d: AddSortedWith added %d ids, want %d", trial, len(got), len(want))
				}
			default:
				x := uint32(r.Intn(universe))
				if got, want := s.RemoveWith(p, x), ref[x]; got != want {
					t.Fatalf("trial %d: RemoveWith(%d) = %v, want %v", trial, x, got, want)
				}
				delete(ref, x)
			}
		}
		for i := range sets {
			s, ref := &sets[i], refs[i]
			if s.Len() != uint64(len(ref)) {
				t.Fatalf("trial %d: Len = %d, want %d", trial, s.Len(), len(ref))
			}
			want := make([]uint32, 0, len(ref))
			for x := range ref {
				want = append(want, x)
			}
			slices.Sort(want)
			if got := s.AppendIDs(nil); !slices.Equal(got, want) {
				t.Fatalf("trial %d: AppendIDs differs from the oracle", trial)
			}
			for k := 0; k < 200; k++ {
				x := uint32(r.Intn(universe))
				if s.Contains(x) != ref[x] {
					t.Fatalf("trial %d: Contains(%d) = %v", trial, x, !ref[x])
				}
			}
			var back Set
			if rest, err := back.ReadBinaryWith(p, s.AppendBinary(nil)); err != nil || len(rest) != 0 {
				t.Fatalf("trial %d: round trip: %v", trial, err)
			}
			if got := back.AppendIDs(nil); !slices.Equal(got, want) {
				t.Fatalf("trial %d: round trip differs", trial)
			}
			back.Release(p)
			s.Release(p)
		}
	}
	if st := p.Stats(); st.Hits == 0 {
		t.Fatalf("pool never reused memory: %+v", st)
	}
}

// TestPoolSteadyStateAllocs checks that refilling released sets with the same ids allocates
// nothing once the pool is warm.
func TestPoolSteadyStateAllocs(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	ids := make([][]uint32, 50)
	for i := range ids {
		for j := 0; j < 1+r.Intn(3000); j++ {
			ids[i] = append(ids[i], uint32(r.Intn(200_000)))
		}
	}
	p := &Pool{MaxFree: 64 << 20}
	sets := make([]Set, len(ids))
	fill := func() {
		for i := range sets {
			for _, x := range ids[i] {
				sets[i].AddWith(p, x)
			}
		}
		for i := range sets {
			sets[i].Release(p)
		}
	}
	fill()
	if a := testing.AllocsPerRun(5, fill); a != 0 {
		t.Fatalf("%v allocations per refill, want 0", a)
	}
}
