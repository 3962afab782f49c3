// Package retention holds the cube-wide state behind the new_users and retention measures: the
// first-seen day of every id (FirstSeen), the ring of daily state that day-N retention keeps
// (Ring), the retention arithmetic (Counts, Rate) and the history files that seed the first-seen
// state before a stream starts (ReadHistory).
//
// A user is new on day d (in the cube's time zone) when the cube has never seen the id before d;
// the new users of a group on d are |A(g, d) ∩ new(d)|, where A(g, d) is the set of ids active in
// the group that day. Day-N retention is |A(g, d) ∩ C(g, d−N)| / |C(g, d−N)| with the cohort C =
// A (active) or A ∩ new (new). Kuaishou's real-time platform computed new users with an external
// history service and retention from a double buffer of daily bitmaps; here both are state of
// the stream itself, exact under the same lateness contract as every other measure.
package retention

import (
	"fmt"
	"math"
	"time"
)

// Day is a calendar day: the number of days since 1970-01-01 in some time zone's calendar (the
// cube's). Day windows start at local midnight, so a day can last 23 or 25 hours; its number does
// not depend on that.
type Day int32

// Special days.
const (
	// Before is a first day earlier than every real day: the first day of an id imported from
	// history without a date.
	Before Day = math.MinInt32
	// Never is the first day of an id never seen; it is later than every real day.
	Never Day = math.MaxInt32
)

// epoch is the civil day 0.
var epoch = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// DayOf returns the day of t in t's location.
func DayOf(t time.Time) Day {
	y, m, d := t.Date()
	return Day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(epoch) / (24 * time.Hour))
}

// DayOfMillis returns the day, in loc's calendar, of the instant ms (Unix milliseconds).
func DayOfMillis(ms int64, loc *time.Location) Day {
	return DayOf(time.UnixMilli(ms).In(loc))
}

// Start returns local midnight of d in loc.
func (d Day) Start(loc *time.Location) time.Time {
	y, m, dd := epoch.AddDate(0, 0, int(d)).Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, loc)
}

// String returns the day as 2006-01-02, or "before" / "never" for the special days.
func (d Day) String() string {
	switch d {
	case Before:
		return "before"
	case Never:
		return "never"
	}
	return epoch.AddDate(0, 0, int(d)).Format(time.DateOnly)
}

// ParseDay reads a date written as 2006-01-02.
func ParseDay(s string) (Day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("date %q is not YYYY-MM-DD", s)
	}
	return DayOf(t), nil
}
