package main_test

// The brute-force oracle: one pass over the raw records builds every group of every grouping set
// in every window; measures are computed exactly (sums as exact decimals with math/big, reported
// as the nearest float64) and independently of cubed's code.

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"
)

// windowOf returns the tumbling window of granularity g that holds t, in zone loc: minute and hour
// windows start where the local clock's minute/hour starts, day windows at local midnight, week
// windows at Monday local midnight; the end is the next boundary.
func windowOf(t time.Time, g string, loc *time.Location) (start, end time.Time) {
	switch g {
	case "minute", "hour":
		unit := int64(60)
		if g == "hour" {
			unit = 3600
		}
		_, off := t.In(loc).Zone()
		sec := t.Unix() + int64(off)
		rem := sec % unit
		if rem < 0 {
			rem += unit
		}
		start = time.Unix(t.Unix()-rem, 0)
		return start, start.Add(time.Duration(unit) * time.Second)
	case "day":
		l := t.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc), time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc)
	case "week":
		l := t.In(loc)
		back := (int(l.Weekday()) + 6) % 7 // days since Monday
		return time.Date(l.Year(), l.Month(), l.Day()-back, 0, 0, 0, 0, loc), time.Date(l.Year(), l.Month(), l.Day()-back+7, 0, 0, 0, 0, loc)
	}
	panic("BUG: oracle got granularity " + g)
}

// oDecimal is an exact decimal: mant·10^-scale while it fits an int64, else rat.
type oDecimal struct {
	mant  int64
	scale int
	rat   *big.Rat
}

var pow10 = func() [19]int64 {
	var p [19]int64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// parseDecimal reads a number's text exactly; ok is false for text that is not a number.
func parseDecimal(s string) (oDecimal, bool) {
	// Fast path: [-+]digits[.digits] with at most 18 digits.
	i, neg := 0, false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	var mant int64
	digits, scale, dot, simple := 0, 0, false, i < len(s)
	for ; i < len(s) && simple; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + int64(c-'0')
			digits++
			if dot {
				scale++
			}
		case c == '.' && !dot:
			dot = true
		default:
			simple = false
		}
	}
	if simple && digits > 0 && digits <= 18 {
		if neg {
			mant = -mant
		}
		return oDecimal{mant: mant, scale: scale}, true
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
	if !ok {
		return oDecimal{}, false
	}
	return oDecimal{rat: r}, true
}

func (d oDecimal) toRat() *big.Rat {
	if d.rat != nil {
		return new(big.Rat).Set(d.rat)
	}
	return new(big.Rat).SetFrac(big.NewInt(d.mant), big.NewInt(pow10[d.scale]))
}

// rescale returns m·10^by, ok false on overflow.
func rescale(m int64, by int) (int64, bool) {
	if by > 18 {
		return 0, m == 0
	}
	p := pow10[by]
	r := m * p
	if m != 0 && (r/p != m) {
		return 0, false
	}
	return r, true
}

// add sets d to d + x exactly.
func (d *oDecimal) add(x oDecimal) {
	if d.rat == nil && x.rat == nil {
		a, b, s := d.mant, x.mant, d.scale
		ok1, ok2 := true, true
		if x.scale > s {
			a, ok1 = rescale(a, x.scale-s)
			s = x.scale
		} else if s > x.scale {
			b, ok2 = rescale(b, s-x.scale)
		}
		sum := a + b
		overflow := (a >= 0) == (b >= 0) && (sum >= 0) != (a >= 0)
		if ok1 && ok2 && !overflow {
			d.mant, d.scale = sum, s
			return
		}
	}
	r := d.toRat()
	r.Add(r, x.toRat())
	*d = oDecimal{rat: r}
}

// float returns the float64 nearest to d.
func (d oDecimal) float() float64 {
	// Exact fast path (Clinger): mant and 10^scale are both exact float64 values, so one IEEE
	// division rounds correctly.
	if d.rat == nil && d.mant < 1<<53 && d.mant > -(1<<53) && d.scale <= 18 {
		return float64(d.mant) / float64(pow10[d.scale])
	}
	f, _ := d.toRat().Float64()
	return f
}

// oNum is one measure value; null for a min or max without any input.
type oNum struct {
	v    float64
	null bool
}

func (n oNum) String() string {
	if n.null {
		return "null"
	}
	return strconv.FormatFloat(n.v, 'g', -1, 64)
}

// oAgg is the state of one group in one window bucket.
type oAgg struct {
	count int64
	sums  []oDecimal            // per measure (only sum measures use theirs)
	mm    []float64             // min or max per measure
	has   []bool                // mm[i] holds a value
	ids   []map[uint32]struct{} // per id slot
}

func newAgg(n, slots int) *oAgg {
	return &oAgg{sums: make([]oDecimal, n), mm: make([]float64, n), has: make([]bool, n), ids: make([]map[uint32]struct{}, slots)}
}

// oInput is one event's measure inputs: per measure a parsed decimal and float for sum/min/max
// (ok false when the field does not contribute), and per id slot an interned id (-1: none).
type oInput struct {
	ok  []bool
	dec []oDecimal
	f   []float64
	id  []int64 // per slot
}

func (a *oAgg) addEvent(ms []oMeasure, in *oInput) {
	a.count++
	for i, m := range ms {
		switch m.Type {
		case "sum":
			if in.ok[i] {
				a.sums[i].add(in.dec[i])
			}
		case "min", "max":
			if in.ok[i] {
				a.addMM(m.Type, i, in.f[i])
			}
		}
	}
	for s, id := range in.id {
		if id >= 0 {
			if a.ids[s] == nil {
				a.ids[s] = map[uint32]struct{}{}
			}
			a.ids[s][uint32(id)] = struct{}{}
		}
	}
}

func (a *oAgg) addMM(typ string, i int, v float64) {
	if !a.has[i] || (typ == "min" && v < a.mm[i]) || (typ == "max" && v > a.mm[i]) {
		a.mm[i], a.has[i] = v, true
	}
}

// reset empties a for reuse.
func (a *oAgg) reset() {
	a.count = 0
	clear(a.sums)
	clear(a.has)
	for _, m := range a.ids {
		clear(m)
	}
}

// merge adds b into a.
func (a *oAgg) merge(ms []oMeasure, b *oAgg) {
	a.count += b.count
	for i, m := range ms {
		switch m.Type {
		case "sum":
			a.sums[i].add(b.sums[i])
		case "min", "max":
			if b.has[i] {
				a.addMM(m.Type, i, b.mm[i])
			}
		}
	}
	for s := range b.ids {
		if len(b.ids[s]) > 0 && a.ids[s] == nil {
			a.ids[s] = map[uint32]struct{}{}
		}
		for id := range b.ids[s] {
			a.ids[s][id] = struct{}{}
		}
	}
}

func (a *oAgg) values(ms []oMeasure) []oNum {
	out := make([]oNum, len(ms))
	for i, m := range ms {
		switch m.Type {
		case "count":
			out[i] = oNum{v: float64(a.count)}
		case "sum":
			out[i] = oNum{v: a.sums[i].float()}
		case "min", "max":
			out[i] = oNum{v: a.mm[i], null: !a.has[i]}
		case "count_distinct":
			out[i] = oNum{v: float64(len(a.ids[m.Slot]))}
		}
	}
	return out
}

// oSeries is one group of one grouping set in one window: one bucket per cumulative step (one
// bucket for a tumbling window).
type oSeries struct {
	start, end time.Time
	dims       []string
	buckets    []*oAgg
}

// oRow is one expected (or actual) result row. End is 0 for tumbling windows (no window_end column).
type oRow struct {
	Start, End int64 // Unix ms
	Dims       []string
	Vals       []oNum
}

func (r oRow) key() string {
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, r.End, 10)
	for _, d := range r.Dims {
		b = append(b, 0)
		b = append(b, d...)
	}
	return string(b)
}

// oResult is the oracle's answer for one cube.
type oResult struct {
	Cube       *oCube
	Events     int64 // decoded records
	Bad        int64 // records that could not be decoded
	MinT, MaxT time.Time
	// series[w][g] maps a group key to its series.
	series [][]map[string]*oSeries
	// first[slot] maps an id to the start (Unix ms) of the first day it occurs on, in the cube's
	// time zone: new_users and new-cohort retention read it.
	first []map[uint32]int64
}

// oCompute runs the oracle over the cube's file source.
func oCompute(c *oCube) (*oResult, error) {
	dimIdx := map[string]int{}
	for i, n := range c.DimNames {
		dimIdx[n] = i
	}
	sets := make([][]int, len(c.Sets))
	for g, s := range c.Sets {
		for _, n := range s {
			i, ok := dimIdx[n]
			if !ok {
				return nil, fmt.Errorf("oracle: grouping set %v names unknown dimension %q", s, n)
			}
			sets[g] = append(sets[g], i)
		}
	}
	res := &oResult{Cube: c, series: make([][]map[string]*oSeries, len(c.Windows))}
	for w := range c.Windows {
		res.series[w] = make([]map[string]*oSeries, len(c.Sets))
		for g := range c.Sets {
			res.series[w][g] = map[string]*oSeries{}
		}
	}
	nm := len(c.Measures)
	in := &oInput{ok: make([]bool, nm), dec: make([]oDecimal, nm), f: make([]float64, nm), id: make([]int64, c.Slots)}
	intern := make([]map[string]int64, c.Slots)
	for i := range intern {
		intern[i] = map[string]int64{}
	}
	slotPath := make([][]string, c.Slots)
	for _, m := range c.Measures {
		if m.Slot >= 0 {
			slotPath[m.Slot] = m.Path
		}
	}
	res.first = make([]map[uint32]int64, c.Slots)
	for i := range res.first {
		res.first[i] = map[uint32]int64{}
	}
	dims := make([]string, len(c.DimNames))
	var key []byte
	err := oForEachRecord(c.File, c.Format, c.Columns, func(r *oRecord) error {
		tf := r.Get(c.TimeField)
		if tf.null || tf.text == "" {
			res.Bad++
			return nil
		}
		t, err := oEventTime(tf.text, c.TimeFormat, c.TimeLoc)
		if err != nil {
			res.Bad++
			return nil
		}
		t = time.UnixMilli(t.UnixMilli()) // cubed keeps milliseconds
		res.Events++
		if res.MinT.IsZero() || t.Before(res.MinT) {
			res.MinT = t
		}
		if t.After(res.MaxT) {
			res.MaxT = t
		}
		for i, p := range c.DimPaths {
			dims[i] = r.Get(p).text // null → ""
		}
		dayStart, _ := windowOf(t, "day", c.Loc)
		for s, path := range slotPath {
			in.id[s] = -1
			f := r.Get(path)
			if f.null || f.text == "" {
				continue
			}
			id, ok := intern[s][f.text]
			if !ok {
				id = int64(len(intern[s]))
				intern[s][f.text] = id
			}
			in.id[s] = id
			if d, ok := res.first[s][uint32(id)]; !ok || dayStart.UnixMilli() < d {
				res.first[s][uint32(id)] = dayStart.UnixMilli()
			}
		}
		for i, m := range c.Measures {
			in.ok[i] = false
			if m.Type != "sum" && m.Type != "min" && m.Type != "max" {
				continue
			}
			f := r.Get(m.Path)
			if f.null || f.text == "" {
				continue
			}
			switch m.Type {
			case "sum":
				in.dec[i], in.ok[i] = parseDecimal(f.text)
			case "min", "max":
				v, err := strconv.ParseFloat(f.text, 64)
				in.f[i], in.ok[i] = v, err == nil
			}
		}
		for w, win := range c.Windows {
			start, end := windowOf(t, win.Granularity, c.Loc)
			bucket, nb := 0, 1
			if win.Step > 0 {
				bucket = int(t.Sub(start) / win.Step)
				nb = int((end.Sub(start) + win.Step - 1) / win.Step)
			}
			for g, set := range sets {
				key = binary.BigEndian.AppendUint64(key[:0], uint64(start.UnixMilli()))
				for _, d := range set {
					key = binary.AppendUvarint(key, uint64(len(dims[d])))
					key = append(key, dims[d]...)
				}
				s := res.series[w][g][string(key)]
				if s == nil {
					s = &oSeries{start: start, end: end, buckets: make([]*oAgg, nb)}
					for _, d := range set {
						s.dims = append(s.dims, dims[d])
					}
					res.series[w][g][string(key)] = s
				}
				if s.buckets[bucket] == nil {
					s.buckets[bucket] = newAgg(nm, c.Slots)
				}
				s.buckets[bucket].addEvent(c.Measures, in)
			}
		}
		return nil
	}, func(line int64, raw []byte, err error) { res.Bad++ })
	if err != nil {
		return nil, fmt.Errorf("oracle reading %s: %w", c.File, err)
	}
	return res, nil
}

// Rows returns the expected rows of window w and grouping set g, sorted by key. With live set,
// a cumulative step row is kept only when the step's start is at or before the largest event
// time of the data (a live cube has not reached later steps yet).
func (res *oResult) Rows(w, g int, live bool) []oRow {
	win := res.Cube.Windows[w]
	var rows []oRow
	run := newAgg(len(res.Cube.Measures), res.Cube.Slots)
	for _, s := range res.series[w][g] {
		if win.Step == 0 {
			rows = append(rows, oRow{Start: s.start.UnixMilli(), Dims: s.dims, Vals: res.values(w, g, s, s.buckets[0])})
			continue
		}
		run.reset()
		for k := range s.buckets {
			if s.buckets[k] != nil {
				run.merge(res.Cube.Measures, s.buckets[k])
			}
			if run.count == 0 {
				continue
			}
			stepStart := s.start.Add(time.Duration(k) * win.Step)
			if live && stepStart.After(res.MaxT) {
				break
			}
			end := s.start.Add(time.Duration(k+1) * win.Step)
			if end.After(s.end) {
				end = s.end
			}
			rows = append(rows, oRow{Start: s.start.UnixMilli(), End: end.UnixMilli(), Dims: s.dims, Vals: res.values(w, g, s, run)})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return lessRow(rows[i], rows[j]) })
	return rows
}

// values returns the measures of a row of series s (window w, grouping set g) whose events are
// agg. new_users counts the ids of the row first seen on the row's day; day-N retention reads
// the ids of the same group N days before in the same window (all steps of that day) as the
// cohort, keeping only the ids first seen that day for cohort new.
func (res *oResult) values(w, g int, s *oSeries, agg *oAgg) []oNum {
	ms := res.Cube.Measures
	out := agg.values(ms)
	day := s.start.UnixMilli()
	type cohortKey struct {
		days, slot int
		cohort     string
	}
	cohorts := map[cohortKey]map[uint32]bool{} // the three columns of a measure share theirs
	for i, m := range ms {
		switch m.Type {
		case "new_users":
			n := 0
			for id := range agg.ids[m.Slot] {
				if res.first[m.Slot][id] == day {
					n++
				}
			}
			out[i] = oNum{v: float64(n)}
		case "retention", "retention_retained", "retention_cohort":
			ck := cohortKey{m.Days, m.Slot, m.Cohort}
			cohort, ok := cohorts[ck]
			if !ok {
				cohort = res.cohort(w, g, s, m)
				cohorts[ck] = cohort
			}
			retained := 0
			for id := range agg.ids[m.Slot] {
				if cohort[id] {
					retained++
				}
			}
			switch m.Type {
			case "retention_retained":
				out[i] = oNum{v: float64(retained)}
			case "retention_cohort":
				out[i] = oNum{v: float64(len(cohort))}
			default:
				out[i] = oNum{null: true}
				if len(cohort) > 0 {
					out[i] = oNum{v: float64(retained) / float64(len(cohort))}
				}
			}
		}
	}
	return out
}

// cohort returns the cohort of retention column m for series s: the ids of s's group m.Days
// days before (in the cube's zone), only those first seen that day for cohort new.
func (res *oResult) cohort(w, g int, s *oSeries, m oMeasure) map[uint32]bool {
	l := s.start.In(res.Cube.Loc)
	back := time.Date(l.Year(), l.Month(), l.Day()-m.Days, 0, 0, 0, 0, res.Cube.Loc)
	key := binary.BigEndian.AppendUint64(nil, uint64(back.UnixMilli()))
	for _, d := range s.dims {
		key = binary.AppendUvarint(key, uint64(len(d)))
		key = append(key, d...)
	}
	out := map[uint32]bool{}
	prev := res.series[w][g][string(key)]
	if prev == nil {
		return out
	}
	for _, b := range prev.buckets {
		if b == nil {
			continue
		}
		for id := range b.ids[m.Slot] {
			if m.Cohort != "new" || res.first[m.Slot][id] == back.UnixMilli() {
				out[id] = true
			}
		}
	}
	return out
}

func lessRow(a, b oRow) bool {
	if a.Start != b.Start {
		return a.Start < b.Start
	}
	if a.End != b.End {
		return a.End < b.End
	}
	for i := range a.Dims {
		if i >= len(b.Dims) {
			return false
		}
		if a.Dims[i] != b.Dims[i] {
			return a.Dims[i] < b.Dims[i]
		}
	}
	return len(a.Dims) < len(b.Dims)
}

// diffRows compares expected and actual rows exactly (== on float64, nulls as nulls) as sets keyed
// by (window_start, window_end, dimensions). It returns "" when they are equal, else a readable
// report of the first few differences of each kind.
func diffRows(c *oCube, names []string, want, got []oRow) string {
	const show = 5
	gotBy := make(map[string]oRow, len(got))
	var dups []string
	for _, r := range got {
		k := r.key()
		if _, ok := gotBy[k]; ok && len(dups) < show {
			dups = append(dups, fmtRow(c, r))
		}
		gotBy[k] = r
	}
	var missing, differ []string
	nMissing, nDiffer := 0, 0
	seen := make(map[string]bool, len(want))
	for _, w := range want {
		k := w.key()
		seen[k] = true
		g, ok := gotBy[k]
		if !ok {
			nMissing++
			if len(missing) < show {
				missing = append(missing, fmtRow(c, w))
			}
			continue
		}
		var bad []string
		if len(g.Vals) != len(w.Vals) {
			bad = append(bad, fmt.Sprintf("%d values, want %d", len(g.Vals), len(w.Vals)))
		}
		for i := range min(len(w.Vals), len(g.Vals)) {
			a, b := w.Vals[i], g.Vals[i]
			if a.null != b.null || (!a.null && a.v != b.v) {
				name := fmt.Sprintf("value %d", i)
				if i < len(names) {
					name = names[i]
				}
				bad = append(bad, fmt.Sprintf("%s: want %s, got %s", name, a, b))
			}
		}
		if len(bad) > 0 {
			nDiffer++
			if len(differ) < show {
				differ = append(differ, fmtRow(c, w)+"\n        "+strings.Join(bad, "\n        "))
			}
		}
	}
	var extra []string
	nExtra := 0
	for _, r := range got {
		if !seen[r.key()] {
			nExtra++
			if len(extra) < show {
				extra = append(extra, fmtRow(c, r))
			}
		}
	}
	if nMissing == 0 && nDiffer == 0 && nExtra == 0 && len(dups) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows expected, %d returned: %d missing, %d extra, %d with different values, %d duplicated keys", len(want), len(got), nMissing, nExtra, nDiffer, len(dups))
	section := func(title string, rows []string) {
		if len(rows) > 0 {
			fmt.Fprintf(&b, "\n  %s:\n    %s", title, strings.Join(rows, "\n    "))
		}
	}
	section("missing (expected, not returned)", missing)
	section("extra (returned, not expected)", extra)
	section("different values (expected row; measure: want, got)", differ)
	section("duplicated keys", dups)
	return b.String()
}

func fmtRow(c *oCube, r oRow) string {
	s := "window_start=" + time.UnixMilli(r.Start).In(c.Loc).Format(time.RFC3339)
	if r.End != 0 {
		s += " window_end=" + time.UnixMilli(r.End).In(c.Loc).Format(time.RFC3339)
	}
	s += fmt.Sprintf(" dims=%q", r.Dims)
	vals := make([]string, len(r.Vals))
	for i, v := range r.Vals {
		vals[i] = v.String()
	}
	return s + " [" + strings.Join(vals, " ") + "]"
}
