package aggregate

import (
	"math"
	"math/rand"
	"slices"
	"testing"
)

// TestSortIDs checks sortIDs against slices.Sort on random lists on both sides of
// radixSortMin, with ids below 2^8, 2^18 (dictionary-sized) and over the whole uint32 range,
// with duplicates, and reusing one scratch slice.
func TestSortIDs(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	var scratch []uint32
	for _, n := range []int{0, 1, 2, radixSortMin - 1, radixSortMin, radixSortMin + 1, 1000, 40_000} {
		for _, limit := range []uint32{1 << 8, 1 << 18, math.MaxUint32} {
			ids := make([]uint32, n)
			for i := range ids {
				ids[i] = uint32(r.Int63n(int64(limit) + 1))
				if i%5 == 4 {
					ids[i] = ids[r.Intn(i)] // a duplicate
				}
			}
			want := slices.Clone(ids)
			slices.Sort(want)
			sortIDs(ids, &scratch)
			if !slices.Equal(ids, want) {
				t.Fatalf("n=%d limit=%d: sortIDs differs from slices.Sort", n, limit)
			}
		}
	}
}
