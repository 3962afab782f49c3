package bitmapstate

import "github.com/RoaringBitmap/roaring/v2"

// smallIDs returns the ids of a set that is not a roaring bitmap, aliasing the set (in no
// particular order for up to inlineCap ids).
func (s *Set) smallIDs() []uint32 {
	if s.n <= inlineCap {
		return s.inl[:s.n]
	}
	return s.ext
}

// IntersectionLen returns |a ∩ b|; a nil set is empty. Neither set is modified, and nothing is
// allocated. Two roaring sets are intersected container by container (roaring's
// AndCardinality); otherwise the ids of the smaller set (an array of at most SmallMax ids) are
// looked up in the other, so the cost is O(min(|a|, |b|) · lookup).
func IntersectionLen(a, b *Set) uint64 {
	if a == nil || b == nil {
		return 0
	}
	switch {
	case a.big != nil && b.big != nil:
		return a.big.AndCardinality(b.big)
	case a.big != nil:
		a, b = b, a
	case b.big == nil && a.n > b.n:
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

// IntersectionLen3 returns |a ∩ b ∩ c|; a nil set is empty. No set is modified. When all three
// are roaring bitmaps the two smallest are intersected first (one temporary bitmap); otherwise
// the smallest array set is walked and each id looked up in the other two (no allocation).
func IntersectionLen3(a, b, c *Set) uint64 {
	if a == nil || b == nil || c == nil {
		return 0
	}
	if a.big != nil && b.big != nil && c.big != nil {
		// Order by cardinality so that the temporary is as small as possible.
		if a.big.GetCardinality() > c.big.GetCardinality() {
			a, c = c, a
		}
		if b.big.GetCardinality() > c.big.GetCardinality() {
			b, c = c, b
		}
		return roaring.And(a.big, b.big).AndCardinality(c.big)
	}
	// Walk the smallest of the array sets.
	walk := a
	for _, s := range []*Set{b, c} {
		if walk.big != nil || s.big == nil && s.n < walk.n {
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
