package aggregate

import (
	"time"

	"github.com/cubed-olap/cubed/cube"
)

// windower assigns event times to window instances and slices for one window spec. A tumbling
// window has one slice; a cumulative window with step S is cut into slices [start+k·S,
// start+(k+1)·S), and its k-th row aggregates slices 0..k (Flink's CUMULATE with slice sharing).
//
// A windower caches the last instance it computed, so each worker keeps its own copy.
type windower struct {
	spec       cube.WindowSpec
	loc        *time.Location
	latenessMS int64
	stepMS     int64 // 0 for tumbling

	lastStart, lastEnd int64 // cache: [lastStart, lastEnd) is the instance of the last lookup
}

func newWindower(spec cube.WindowSpec, loc *time.Location, lateness time.Duration) windower {
	return windower{spec: spec, loc: loc, latenessMS: lateness.Milliseconds(),
		stepMS: spec.Step.Milliseconds(), lastStart: 1, lastEnd: 0}
}

// bounds returns the instance [start, end) holding t (Unix ms).
func (w *windower) bounds(t int64) (start, end int64) {
	if t >= w.lastStart && t < w.lastEnd {
		return w.lastStart, w.lastEnd
	}
	start, end = instanceBounds(w.spec.Granularity, w.loc, t)
	w.lastStart, w.lastEnd = start, end
	return start, end
}

// instanceBounds computes the window [start, end) of granularity g in loc holding t (Unix ms).
// Minutes and hours are cut on the zone's offset at t (so a +05:30 zone gets hours starting at
// :30 UTC); days start at local midnight and weeks on Monday's, so DST days are 23 h or 25 h.
func instanceBounds(g cube.Granularity, loc *time.Location, t int64) (start, end int64) {
	tm := time.UnixMilli(t).In(loc)
	switch g {
	case cube.Minute, cube.Hour:
		unit := int64(60_000)
		if g == cube.Hour {
			unit = 3_600_000
		}
		_, off := tm.Zone()
		local := t + int64(off)*1000
		start = t - mod(local, unit)
		return start, start + unit
	case cube.Day:
		y, m, d := tm.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc).UnixMilli(), time.Date(y, m, d+1, 0, 0, 0, 0, loc).UnixMilli()
	case cube.Week:
		y, m, d := tm.Date()
		back := (int(tm.Weekday()) + 6) % 7 // days since Monday
		return time.Date(y, m, d-back, 0, 0, 0, 0, loc).UnixMilli(), time.Date(y, m, d-back+7, 0, 0, 0, 0, loc).UnixMilli()
	}
	panic("BUG: unknown granularity " + string(g))
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

// numSlices returns how many slices the instance [start, end) has.
func (w *windower) numSlices(start, end int64) int32 {
	if w.stepMS == 0 {
		return 1
	}
	return int32((end - start + w.stepMS - 1) / w.stepMS)
}

// slice returns the slice of t within the instance starting at start.
func (w *windower) slice(start, t int64) int32 {
	if w.stepMS == 0 {
		return 0
	}
	return int32((t - start) / w.stepMS)
}

// sliceEnd returns the end of slice k of the instance [start, end), which is also the end of the
// k-th cumulative row.
func (w *windower) sliceEnd(start, end int64, k int32) int64 {
	if w.stepMS == 0 {
		return end
	}
	e := start + int64(k+1)*w.stepMS
	if e > end {
		e = end
	}
	return e
}
