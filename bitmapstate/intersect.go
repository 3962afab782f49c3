package bitmapstate

import "github.com/RoaringBitmap/roaring/v2"

// IntersectionLen returns |a ∩ b|; a nil set is empty. Neither set is modified. Two roaring
// sets are intersected container by container (roaring's AndCardinality, no allocation);
// otherwise the smaller set is walked and each id looked up in the other, so the cost is
// O(min(|a|, |b|) · lookup).
func IntersectionLen(a, b *Set) uint64 {
	if a == nil || b == nil {
		return 0
	}
	if a.big != nil && b.big != nil {
		return a.big.AndCardinality(b.big)
	}
	if a.Len() > b.Len() {
		a, b = b, a
	}
	var n uint64
	a.Each(func(x uint32) {
		if b.Contains(x) {
			n++
		}
	})
	return n
}

// IntersectionLen3 returns |a ∩ b ∩ c|; a nil set is empty. No set is modified. When the two
// smallest sets are roaring bitmaps they are intersected first (one temporary bitmap);
// otherwise the smallest set is walked and each id looked up in the other two.
func IntersectionLen3(a, b, c *Set) uint64 {
	if a == nil || b == nil || c == nil {
		return 0
	}
	// Order by cardinality: a ≤ b ≤ c.
	if a.Len() > b.Len() {
		a, b = b, a
	}
	if b.Len() > c.Len() {
		b, c = c, b
	}
	if a.Len() > b.Len() {
		a, b = b, a
	}
	if a.big != nil && b.big != nil && c.big != nil {
		return roaring.And(a.big, b.big).AndCardinality(c.big)
	}
	var n uint64
	a.Each(func(x uint32) {
		if b.Contains(x) && c.Contains(x) {
			n++
		}
	})
	return n
}
