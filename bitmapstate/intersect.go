package bitmapstate

import (
	"math/bits"
	"slices"
)

// smallIDs returns the ids of a set that is not block-partitioned, aliasing the set (in no
// particular order for up to inlineCap ids).
func (s *Set) smallIDs() []uint32 {
	if s.n <= inlineCap {
		return s.inl[:s.n]
	}
	return s.ext
}

// IntersectionLen returns |a ∩ b|; a nil set is empty. Neither set's ids change, and nothing is
// allocated. Two block-partitioned sets are intersected block by block over the keys both have
// (sorted arrays merged, bitsets ANDed word by word, an array looked up in a bitset: Roaring's
// container intersections); otherwise the ids of the smaller set (an array of at most SmallMax
// ids) are looked up in the other. Only the blocks of b (or a) that can hold a common id are
// read, so evicted blocks elsewhere do no harm; the caller makes those resident
// (Set.LoadMissing, Set.LoadAll).
func IntersectionLen(a, b *Set) uint64 {
	if a == nil || b == nil {
		return 0
	}
	switch {
	case a.dir != nil && b.dir != nil:
		var n uint64
		for i, j := 0, 0; i < len(a.dir) && j < len(b.dir); {
			x, y := &a.dir[i], &b.dir[j]
			switch {
			case x.key < y.key:
				i++
			case x.key > y.key:
				j++
			default:
				x.mustBeResident()
				y.mustBeResident()
				n += blockAndLen(x, y)
				i++
				j++
			}
		}
		return n
	case a.dir != nil:
		a, b = b, a
	case b.dir == nil && a.n > b.n:
		a, b = b, a
	}
	var n uint64
	for _, x := range a.smallIDs() {
		if b.Contains(x) {
			n++
		}
	}
	return n
}

// blockAndLen returns the number of lows two blocks of the same key share.
func blockAndLen(x, y *block) uint64 {
	switch {
	case x.dense() && y.dense():
		var n int
		for i, w := range x.data {
			n += bits.OnesCount16(w & y.data[i])
		}
		return uint64(n)
	case y.dense():
		x, y = y, x
		fallthrough
	case x.dense():
		var n uint64
		for _, lo := range y.data {
			if x.data[lo>>4]&(1<<(lo&15)) != 0 {
				n++
			}
		}
		return n
	}
	// Two sorted arrays: merge, skipping ahead by binary search when one is much longer.
	a, b := x.data, y.data
	if len(a) > len(b) {
		a, b = b, a
	}
	var n uint64
	if len(b) > 16*len(a) {
		for _, lo := range a {
			if _, found := slices.BinarySearch(b, lo); found {
				n++
			}
		}
		return n
	}
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			n++
			i++
			j++
		}
	}
	return n
}

// IntersectionLen3 returns |a ∩ b ∩ c|; a nil set is empty. No set's ids change and nothing is
// allocated: the smallest array set is walked and each id looked up in the other two, or, when
// all three are block-partitioned, the blocks whose key all three have are intersected (the
// smallest array block walked, or three bitsets ANDed).
func IntersectionLen3(a, b, c *Set) uint64 {
	if a == nil || b == nil || c == nil {
		return 0
	}
	if a.dir != nil && b.dir != nil && c.dir != nil {
		var n uint64
		for i, j, k := 0, 0, 0; i < len(a.dir) && j < len(b.dir) && k < len(c.dir); {
			x, y, z := &a.dir[i], &b.dir[j], &c.dir[k]
			top := max(x.key, y.key, z.key)
			if x.key < top {
				i++
				continue
			}
			if y.key < top {
				j++
				continue
			}
			if z.key < top {
				k++
				continue
			}
			x.mustBeResident()
			y.mustBeResident()
			z.mustBeResident()
			n += block3AndLen(x, y, z)
			i++
			j++
			k++
		}
		return n
	}
	// Walk the smallest of the array sets.
	walk := a
	for _, s := range [2]*Set{b, c} {
		if walk.dir != nil || s.dir == nil && s.n < walk.n {
			walk = s
		}
	}
	var n uint64
	for _, x := range walk.smallIDs() {
		if a.Contains(x) && b.Contains(x) && c.Contains(x) {
			n++
		}
	}
	return n
}

// block3AndLen returns the number of lows three blocks of the same key share.
func block3AndLen(x, y, z *block) uint64 {
	if x.dense() && y.dense() && z.dense() {
		var n int
		for i, w := range x.data {
			n += bits.OnesCount16(w & y.data[i] & z.data[i])
		}
		return uint64(n)
	}
	// Walk the smallest array block, look its lows up in the other two.
	walk := x
	for _, b := range [2]*block{y, z} {
		if walk.dense() || !b.dense() && b.n < walk.n {
			walk = b
		}
	}
	var n uint64
	for _, lo := range walk.data {
		if x.contains(lo) && y.contains(lo) && z.contains(lo) {
			n++
		}
	}
	return n
}
