package bitmapstate

import (
	"math/rand"
	"testing"
)

// TestIntersectionLen compares IntersectionLen and IntersectionLen3 with map-based counts over
// random sets of every representation (inline, sorted slice, roaring).
func TestIntersectionLen(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	sizes := []int{0, 1, 3, 4, 20, SmallMax, SmallMax + 1, 500, 5000, 30000}
	build := func(n int, universe int) (*Set, map[uint32]bool) {
		s, m := &Set{}, map[uint32]bool{}
		for len(m) < n {
			x := uint32(r.Intn(universe))
			m[x] = true
			s.Add(x)
		}
		return s, m
	}
	for _, na := range sizes {
		for _, nb := range sizes {
			for _, nc := range []int{2, SmallMax + 5, 3000, 40000} {
				// Dense blocks (bitsets) where sets are large, several blocks each, and sparse
				// blocks spread over 16 blocks for the smaller sizes.
				universe := max(3*max(na, nb, nc, 10), 1<<20)
				if max(na, nb, nc) > 5000 {
					universe = 3 << BlockBits
				}
				a, ma := build(na, universe)
				b, mb := build(nb, universe)
				c, mc := build(nc, universe)
				var want2, want3 uint64
				for x := range ma {
					if mb[x] {
						want2++
						if mc[x] {
							want3++
						}
					}
				}
				if got := IntersectionLen(a, b); got != want2 {
					t.Errorf("|a ∩ b| with |a|=%d |b|=%d: got %d, want %d", na, nb, got, want2)
				}
				if got := IntersectionLen(b, a); got != want2 {
					t.Errorf("|b ∩ a| with |a|=%d |b|=%d: got %d, want %d", na, nb, got, want2)
				}
				for _, perm := range [][3]*Set{{a, b, c}, {c, b, a}, {b, c, a}} {
					if got := IntersectionLen3(perm[0], perm[1], perm[2]); got != want3 {
						t.Errorf("|a ∩ b ∩ c| with sizes %d %d %d: got %d, want %d", na, nb, nc, got, want3)
					}
				}
				if a.Len() != uint64(na) || b.Len() != uint64(nb) {
					t.Fatalf("an intersection changed its inputs")
				}
			}
		}
	}
	if IntersectionLen(nil, &Set{}) != 0 || IntersectionLen3(&Set{}, nil, &Set{}) != 0 {
		t.Error("a nil set must count as empty")
	}
}

// TestLoadAll evicts every block of a large set and loads them back through LoadAll from what
// FlushDirty wrote.
func TestLoadAll(t *testing.T) {
	s := &Set{}
	for x := uint32(0); x < 300_000; x += 7 {
		s.Add(x)
	}
	stored := map[uint16][]byte{}
	if _, err := s.FlushDirty(nil, func(key uint16, enc []byte) error {
		stored[key] = append([]byte(nil), enc...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Evict(nil, true)
	if s.EvictedBlocks() == 0 {
		t.Fatal("nothing evicted")
	}
	if err := s.LoadAll(nil, func(key uint16) ([]byte, error) { return stored[key], nil }); err != nil {
		t.Fatal(err)
	}
	if s.HasEvicted() || !s.Contains(299_999-299_999%7) || s.Contains(8) || IntersectionLen(s, s) != s.Len() {
		t.Errorf("after LoadAll: evicted %d, len %d", s.EvictedBlocks(), s.Len())
	}
}
