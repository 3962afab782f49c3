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
