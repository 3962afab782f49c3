package retention

import (
	"math"

	"github.com/cubed-olap/cubed/bitmapstate"
)

// Counts returns the numerator and denominator of day-N retention of one group: cohort = |C| and
// retained = |active ∩ C|, where C = prev when cohortNew is false (cohort active) and
// prev ∩ newPrev when it is true (cohort new). active is A(g, d) (or, for a cumulative row, the
// ids first seen in one of its slices), prev is A(g, d−N) and newPrev is new(d−N); a nil set is
// empty. No set is modified.
func Counts(active, prev, newPrev *bitmapstate.Set, cohortNew bool) (retained, cohort uint64) {
	if prev == nil {
		return 0, 0
	}
	if !cohortNew {
		return bitmapstate.IntersectionLen(active, prev), prev.Len()
	}
	return bitmapstate.IntersectionLen3(active, prev, newPrev), bitmapstate.IntersectionLen(prev, newPrev)
}

// Rate returns retained / cohort, or NaN (null) for an empty cohort.
func Rate(retained, cohort uint64) float64 {
	if cohort == 0 {
		return math.NaN()
	}
	return float64(retained) / float64(cohort)
}
