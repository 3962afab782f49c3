package web

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/sink"
)

// Query is one query of the query API, in the spirit of Cube.dev's /load:
//
//	{"cube": "wiki_edits", "measures": ["uv", "pv"], "dimensions": ["channel"],
//	 "filters": [{"dimension": "robot", "op": "equals", "values": ["false"]}],
//	 "granularity": "day", "timeRange": ["2015-09-12", "2015-09-13"],
//	 "order": [["uv", "desc"]], "limit": 20}
//
// A query reads one window of one grouping set: the grouping set whose dimensions are exactly
// Dimensions plus the filtered dimensions (an unmaterialised combination is a BadQuery that lists
// the grouping sets that exist).
type Query struct {
	// Cube names the cube (required).
	Cube string `json:"cube"`
	// Measures to return, in this column order; each at most once. May be empty.
	Measures []string `json:"measures,omitempty"`
	// Dimensions to group by, in this column order; each at most once. May be empty (the []
	// grouping set, when it exists and nothing is filtered).
	Dimensions []string `json:"dimensions,omitempty"`
	// Filters keep the rows whose dimension values pass every filter (a logical AND).
	Filters []Filter `json:"filters,omitempty"`
	// Granularity selects the window: minute, hour, day or week. Empty selects the cube's first
	// window (in model order) that matches Cumulative.
	Granularity string `json:"granularity,omitempty"`
	// TimeRange is [from, to): the window starts to return, from inclusive, to exclusive. Each
	// is an RFC 3339 timestamp ("2015-09-12T06:00:00Z") or a date ("2015-09-12"), which means
	// midnight starting that day in the cube's time zone — so ["2015-09-12", "2015-09-13"]
	// is the whole of 12 September and a date as `to` excludes that day. Absent means all time.
	TimeRange []string `json:"timeRange,omitempty"`
	// Order lists [column, "asc"|"desc"] pairs; each column must be one the query returns.
	// Null measure values sort last in both directions. Ties, and queries without an order, are
	// ordered by window_start, then the grouping set's dimensions in model order (the primary
	// key's order), then window_end (so a cumulative window's steps of one group are adjacent),
	// all ascending, strings byte-wise.
	Order [][]string `json:"order,omitempty"`
	// Limit caps the rows returned after ordering; 0 means no limit.
	Limit int `json:"limit,omitempty"`
	// Offset skips this many rows after ordering and before Limit.
	Offset int `json:"offset,omitempty"`
	// Cumulative chooses between the tumbling (false) and the cumulative (true) window of the
	// granularity. Absent: the tumbling one if the cube has it, else the cumulative one. When a
	// cube has several cumulative windows of one granularity, the first in model order is used.
	Cumulative *bool `json:"cumulative,omitempty"`
	// Steps is StepsAll (default: every step of a cumulative window, one row per step) or
	// StepsLast (only each window's latest step, i.e. its current cumulative value). It
	// changes nothing for a tumbling window.
	Steps string `json:"steps,omitempty"`
}

// Filter keeps the rows whose value of Dimension passes Op. Ops with values pass when any value
// matches (equals, contains, startsWith, endsWith) or when none does (notEquals, notContains);
// set passes a non-empty value and notSet an empty one (a missing or null field is stored as "")
// and both take no values. Comparisons are exact and case-sensitive.
type Filter struct {
	Dimension string   `json:"dimension"`
	Op        string   `json:"op"`
	Values    []string `json:"values,omitempty"`
}

// Filter ops.
const (
	OpEquals      = "equals"
	OpNotEquals   = "notEquals"
	OpContains    = "contains"
	OpNotContains = "notContains"
	OpStartsWith  = "startsWith"
	OpEndsWith    = "endsWith"
	OpSet         = "set"
	OpNotSet      = "notSet"
)

// filterOps lists every op, in the order error messages name them.
var filterOps = []string{OpEquals, OpNotEquals, OpContains, OpNotContains, OpStartsWith, OpEndsWith, OpSet, OpNotSet}

// Query.Steps values.
const (
	StepsAll  = "all"
	StepsLast = "last"
)

// Result column names that are not dimensions or measures.
const (
	ColumnWindowStart = "window_start"
	ColumnWindowEnd   = "window_end"
)

// Column types.
const (
	// TypeTime values are time.Time in the cube's time zone, with millisecond precision.
	TypeTime = "time"
	// TypeString values are string.
	TypeString = "string"
	// TypeNumber values are float64, or nil for null.
	TypeNumber = "number"
)

// Column is one result column.
type Column struct {
	Name string
	// Type is TypeTime, TypeString or TypeNumber.
	Type string
}

// Result is a query's answer.
type Result struct {
	// Columns: window_start, window_end (cumulative windows only), the requested dimensions,
	// then the requested measures, in request order.
	Columns []Column
	// Rows hold one value per column: time.Time (in the cube's time zone) for TypeTime, string
	// for TypeString, float64 or nil (null; a NaN in the store) for TypeNumber.
	Rows [][]any
	// Freshness is the cube's freshness read just before the scan: the rows are at least as
	// current as it says.
	Freshness Freshness
	// Timezone is the cube's time zone name (IANA, e.g. "Europe/London"), the zone of the time
	// columns.
	Timezone string
}

// BadQuery is a query error that is the caller's fault (HTTP 400, errorType "bad_data"). Its
// message says what was wrong and what would be valid.
type BadQuery struct {
	Msg string
}

// Error returns the message.
func (e *BadQuery) Error() string { return e.Msg }

func badf(format string, args ...any) *BadQuery {
	return &BadQuery{Msg: fmt.Sprintf(format, args...)}
}

// ErrUnavailable may be wrapped by a Backend's Scan error when the store cannot answer for now
// (for example while shutting down); the server answers such errors with HTTP 503.
var ErrUnavailable = errors.New("results store unavailable")

// queryKeys are the keys of a query object, in the order error messages name them.
var queryKeys = []string{"cube", "measures", "dimensions", "filters", "granularity", "timeRange", "order", "limit", "offset", "cumulative", "steps"}

var filterKeys = []string{"dimension", "op", "values"}

// DecodeQuery decodes a query from its JSON text strictly: the text must be one JSON object
// whose keys are all Query's (unknown keys are a *BadQuery naming each of them and the valid
// keys), with values of the right types, timeRange absent/null or exactly two strings, and
// each order entry exactly [column, direction]. Empty lists decode as nil. Every error is a
// *BadQuery. It does not check the query against a cube: Run does.
func DecodeQuery(data []byte) (Query, error) {
	var q Query
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return q, badf("decoding query: want a JSON object such as %s, got %s", `{"cube": "name", "measures": ["pv"]}`, describeJSON(data, err))
	}
	if unknown := unknownKeys(obj, queryKeys); len(unknown) > 0 {
		return q, badf("unknown query field%s %s (valid: %s)", plural(len(unknown)), strings.Join(unknown, ", "), strings.Join(queryKeys, ", "))
	}
	field := func(key string, dst any, want string) error {
		raw, ok := obj[key]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return badf("query field %q: want %s, got %s", key, want, snippet(raw))
		}
		return nil
	}
	var filters []json.RawMessage
	for _, f := range []struct {
		key  string
		dst  any
		want string
	}{
		{"cube", &q.Cube, "a string"},
		{"measures", &q.Measures, "a list of strings"},
		{"dimensions", &q.Dimensions, "a list of strings"},
		{"filters", &filters, `a list of {"dimension", "op", "values"} objects`},
		{"granularity", &q.Granularity, "a string"},
		{"timeRange", &q.TimeRange, `null or [from, to] (RFC 3339 timestamps or dates like "2015-09-12")`},
		{"order", &q.Order, `a list of [column, "asc" | "desc"] pairs`},
		{"limit", &q.Limit, "an integer ≥ 0"},
		{"offset", &q.Offset, "an integer ≥ 0"},
		{"cumulative", &q.Cumulative, "true, false or null"},
		{"steps", &q.Steps, `"all" or "last"`},
	} {
		if err := field(f.key, f.dst, f.want); err != nil {
			return Query{}, err
		}
	}
	if q.TimeRange != nil && len(q.TimeRange) != 2 {
		return Query{}, badf("query field \"timeRange\": want [from, to], got %d value%s", len(q.TimeRange), plural(len(q.TimeRange)))
	}
	for i, o := range q.Order {
		if len(o) != 2 {
			return Query{}, badf("query field \"order\" entry %d: want [column, \"asc\" | \"desc\"], got %d value%s", i, len(o), plural(len(o)))
		}
	}
	for i, raw := range filters {
		var fo map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fo); err != nil || fo == nil {
			return Query{}, badf("query filter %d: want an object with keys %s, got %s", i, strings.Join(filterKeys, ", "), snippet(raw))
		}
		if unknown := unknownKeys(fo, filterKeys); len(unknown) > 0 {
			return Query{}, badf("unknown field%s %s in query filter %d (valid: %s)", plural(len(unknown)), strings.Join(unknown, ", "), i, strings.Join(filterKeys, ", "))
		}
		var f Filter
		for _, ff := range []struct {
			key  string
			dst  any
			want string
		}{{"dimension", &f.Dimension, "a string"}, {"op", &f.Op, "a string"}, {"values", &f.Values, "a list of strings"}} {
			if raw, ok := fo[ff.key]; ok {
				if err := json.Unmarshal(raw, ff.dst); err != nil {
					return Query{}, badf("query filter %d field %q: want %s, got %s", i, ff.key, ff.want, snippet(raw))
				}
			}
		}
		if len(f.Values) == 0 {
			f.Values = nil
		}
		q.Filters = append(q.Filters, f)
	}
	if len(q.Measures) == 0 {
		q.Measures = nil
	}
	if len(q.Dimensions) == 0 {
		q.Dimensions = nil
	}
	if len(q.Order) == 0 {
		q.Order = nil
	}
	if q.Limit < 0 {
		return Query{}, badf("query field \"limit\": want an integer ≥ 0 (0 means no limit), got %d", q.Limit)
	}
	if q.Offset < 0 {
		return Query{}, badf("query field \"offset\": want an integer ≥ 0, got %d", q.Offset)
	}
	return q, nil
}

func unknownKeys(obj map[string]json.RawMessage, valid []string) []string {
	var unknown []string
	for k := range obj {
		if !slices.Contains(valid, k) {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	sort.Strings(unknown)
	return unknown
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// snippet quotes at most 64 bytes of raw JSON for an error message.
func snippet(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 64 {
		return fmt.Sprintf("%q…", raw[:64])
	}
	return fmt.Sprintf("%q", raw)
}

func describeJSON(data []byte, err error) string {
	if err != nil {
		return fmt.Sprintf("%s (%v)", snippet(data), err)
	}
	return snippet(data)
}

// compiled is a query resolved against its cube's plan.
type compiled struct {
	plan    *cube.Plan
	window  int
	spec    cube.WindowSpec
	gs      cube.GroupingSet
	loc     *time.Location
	from    int64 // Unix ms, inclusive
	to      int64 // Unix ms, exclusive
	dimPos  []int // per requested dimension, its position in gs.Dims
	measIdx []int // per requested measure, its index in Plan.Measures
	filters []compiledFilter
	order   []orderKey
	last    bool // keep only the latest step of each cumulative window
}

type compiledFilter struct {
	pos    int // position in gs.Dims
	op     string
	values []string
}

// orderKey sorts on one result column: kind says which part of a scanned row it reads.
type orderKey struct {
	kind int // orderStart, orderEnd, orderDim (idx = position in gs.Dims), orderMeasure (idx = position in measIdx)
	idx  int
	desc bool
}

const (
	orderStart = iota
	orderEnd
	orderDim
	orderMeasure
)

func cubeNames(plans []*cube.Plan) string {
	names := make([]string, len(plans))
	for i, p := range plans {
		names[i] = p.Cube.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func findPlan(plans []*cube.Plan, name string) *cube.Plan {
	for _, p := range plans {
		if p.Cube.Name == name {
			return p
		}
	}
	return nil
}

func dimensionNames(p *cube.Plan) string {
	names := make([]string, len(p.Cube.Dimensions))
	for i, d := range p.Cube.Dimensions {
		names[i] = d.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func measureNames(p *cube.Plan) string {
	names := make([]string, len(p.Measures))
	for i, m := range p.Measures {
		names[i] = m.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// groupingSetList formats the grouping sets as "[a, b], [a], []".
func groupingSetList(p *cube.Plan) string {
	parts := make([]string, len(p.GroupingSets))
	for i, g := range p.GroupingSets {
		parts[i] = "[" + strings.Join(g.Names, ", ") + "]"
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// windowLabel formats a window as "hour" or "day (cumulative, step 1h)".
func windowLabel(w cube.WindowSpec) string {
	if w.Cumulative {
		return fmt.Sprintf("%s (cumulative, step %s)", w.Granularity, formatDuration(w.Step))
	}
	return string(w.Granularity)
}

func windowList(p *cube.Plan) string {
	parts := make([]string, len(p.Windows))
	for i, w := range p.Windows {
		parts[i] = windowLabel(w)
	}
	return strings.Join(parts, ", ")
}

// formatDuration formats d as time.Duration.String does, without zero trailing units:
// 1h, 10m, 1h30m, 90s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// selectWindow picks the window of q's granularity and cumulativeness.
func selectWindow(p *cube.Plan, q *Query) (int, error) {
	match := func(w cube.WindowSpec) bool {
		return (q.Granularity == "" || string(w.Granularity) == q.Granularity) &&
			(q.Cumulative == nil || *q.Cumulative == w.Cumulative)
	}
	first := -1
	for i, w := range p.Windows {
		if !match(w) {
			continue
		}
		if first < 0 {
			first = i
		}
		// Absent cumulative with a granularity: prefer the tumbling window.
		if q.Cumulative == nil && q.Granularity != "" && !w.Cumulative {
			return i, nil
		}
	}
	if first >= 0 {
		return first, nil
	}
	what := q.Granularity
	if what == "" {
		what = "any"
	}
	if q.Cumulative != nil {
		if *q.Cumulative {
			what = "cumulative " + what
		} else {
			what = "tumbling " + what
		}
	}
	return 0, badf("cube %q has no %s window (windows: %s)", p.Cube.Name, what, windowList(p))
}

// parseTimeBound parses one timeRange bound as RFC 3339 or as a date at midnight in loc and
// returns it in Unix milliseconds, rounded up (window starts are whole milliseconds, so
// rounding up keeps both "start ≥ from" and "start < to" exact).
func parseTimeBound(s string, loc *time.Location) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		var derr error
		t, derr = time.ParseInLocation(time.DateOnly, s, loc)
		if derr != nil {
			return 0, fmt.Errorf("%q is neither an RFC 3339 timestamp (2015-09-12T06:00:00Z) nor a date (2015-09-12)", s)
		}
	}
	ms := t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms, nil
}

// compile resolves q against plans; every error is a *BadQuery.
func compile(plans []*cube.Plan, q *Query) (*compiled, error) {
	if q.Cube == "" {
		return nil, badf("query names no cube (cubes: %s)", cubeNames(plans))
	}
	p := findPlan(plans, q.Cube)
	if p == nil {
		return nil, badf("unknown cube %q (cubes: %s)", q.Cube, cubeNames(plans))
	}
	c := &compiled{plan: p, loc: p.Cube.Timezone}
	if c.loc == nil {
		c.loc = time.UTC
	}

	for i, m := range q.Measures {
		idx, ok := p.Measure(m)
		if !ok {
			hint := ""
			if _, isDim := p.Dimension(m); isDim {
				hint = " (it is a dimension)"
			}
			return nil, badf("unknown measure %q in cube %q%s (measures: %s)", m, p.Cube.Name, hint, measureNames(p))
		}
		if slices.Contains(q.Measures[:i], m) {
			return nil, badf("measure %q is requested twice", m)
		}
		c.measIdx = append(c.measIdx, idx)
	}
	dimIdx := make([]int, 0, len(q.Dimensions))
	checkDim := func(name, what string) (int, error) {
		idx, ok := p.Dimension(name)
		if !ok {
			hint := ""
			if _, isMeasure := p.Measure(name); isMeasure {
				hint = " (it is a measure)"
			}
			return 0, badf("unknown dimension %q %sin cube %q%s (dimensions: %s)", name, what, p.Cube.Name, hint, dimensionNames(p))
		}
		return idx, nil
	}
	// need is the routing key: requested dimensions, then filtered ones, each once.
	need := make([]string, 0, len(q.Dimensions)+len(q.Filters))
	for i, d := range q.Dimensions {
		idx, err := checkDim(d, "")
		if err != nil {
			return nil, err
		}
		if slices.Contains(q.Dimensions[:i], d) {
			return nil, badf("dimension %q is requested twice", d)
		}
		dimIdx = append(dimIdx, idx)
		need = append(need, d)
	}
	filterIdx := make([]int, len(q.Filters))
	for i, f := range q.Filters {
		idx, err := checkDim(f.Dimension, fmt.Sprintf("in filter %d ", i))
		if err != nil {
			return nil, err
		}
		filterIdx[i] = idx
		if !slices.Contains(filterOps, f.Op) {
			return nil, badf("unknown op %q in filter %d on %q (ops: %s)", f.Op, i, f.Dimension, strings.Join(filterOps, ", "))
		}
		switch f.Op {
		case OpSet, OpNotSet:
			if len(f.Values) > 0 {
				return nil, badf("op %q in filter %d on %q takes no values, got %d", f.Op, i, f.Dimension, len(f.Values))
			}
		default:
			if len(f.Values) == 0 {
				return nil, badf("op %q in filter %d on %q needs at least one value", f.Op, i, f.Dimension)
			}
		}
		if !slices.Contains(need, f.Dimension) {
			need = append(need, f.Dimension)
		}
	}

	w, err := selectWindow(p, q)
	if err != nil {
		return nil, err
	}
	c.window, c.spec = w, p.Windows[w]

	gs, ok := p.GroupingSetFor(need)
	if !ok {
		return nil, badf("cube %q has no grouping set with exactly the dimensions [%s] (the query's dimensions plus its filtered dimensions); grouping sets: %s",
			p.Cube.Name, strings.Join(need, ", "), groupingSetList(p))
	}
	c.gs = gs
	posOf := func(idx int) int {
		pos := slices.Index(gs.Dims, idx)
		if pos < 0 {
			panic(fmt.Sprintf("BUG: grouping set %d %v lacks dimension %d", gs.ID, gs.Names, idx))
		}
		return pos
	}
	for _, idx := range dimIdx {
		c.dimPos = append(c.dimPos, posOf(idx))
	}
	for i, f := range q.Filters {
		c.filters = append(c.filters, compiledFilter{pos: posOf(filterIdx[i]), op: f.Op, values: f.Values})
	}

	c.from, c.to = math.MinInt64, math.MaxInt64
	if q.TimeRange != nil {
		if len(q.TimeRange) != 2 {
			return nil, badf("timeRange: want [from, to], got %d value%s", len(q.TimeRange), plural(len(q.TimeRange)))
		}
		if c.from, err = parseTimeBound(q.TimeRange[0], c.loc); err != nil {
			return nil, badf("timeRange from: %v", err)
		}
		if c.to, err = parseTimeBound(q.TimeRange[1], c.loc); err != nil {
			return nil, badf("timeRange to: %v", err)
		}
		if c.from >= c.to {
			return nil, badf("timeRange [%q, %q] is empty: from must be before to, which is exclusive (a date as to means midnight starting that day, so [\"2015-09-12\", \"2015-09-13\"] is one day)",
				q.TimeRange[0], q.TimeRange[1])
		}
	}

	cols := resultColumnNames(c, q)
	for i, o := range q.Order {
		if len(o) != 2 {
			return nil, badf("order entry %d: want [column, \"asc\" | \"desc\"], got %d value%s", i, len(o), plural(len(o)))
		}
		var k orderKey
		switch o[1] {
		case "asc":
		case "desc":
			k.desc = true
		default:
			return nil, badf("order entry %d on %q: unknown direction %q (valid: asc, desc)", i, o[0], o[1])
		}
		switch {
		case o[0] == ColumnWindowStart:
			k.kind = orderStart
		case o[0] == ColumnWindowEnd && c.spec.Cumulative:
			k.kind = orderEnd
		case slices.Contains(q.Dimensions, o[0]):
			k.kind, k.idx = orderDim, c.dimPos[slices.Index(q.Dimensions, o[0])]
		case slices.Contains(q.Measures, o[0]):
			k.kind, k.idx = orderMeasure, slices.Index(q.Measures, o[0])
		default:
			return nil, badf("order entry %d names %q, which is not a column of this query (columns: %s)", i, o[0], strings.Join(cols, ", "))
		}
		c.order = append(c.order, k)
	}
	if q.Limit < 0 {
		return nil, badf("limit must be ≥ 0 (0 means no limit), got %d", q.Limit)
	}
	if q.Offset < 0 {
		return nil, badf("offset must be ≥ 0, got %d", q.Offset)
	}
	switch q.Steps {
	case "", StepsAll:
	case StepsLast:
		c.last = c.spec.Cumulative
	default:
		return nil, badf("unknown steps %q (valid: %s, %s)", q.Steps, StepsAll, StepsLast)
	}
	return c, nil
}

func resultColumnNames(c *compiled, q *Query) []string {
	cols := []string{ColumnWindowStart}
	if c.spec.Cumulative {
		cols = append(cols, ColumnWindowEnd)
	}
	cols = append(cols, q.Dimensions...)
	return append(cols, q.Measures...)
}

func (f *compiledFilter) pass(v string) bool {
	switch f.op {
	case OpSet:
		return v != ""
	case OpNotSet:
		return v == ""
	case OpEquals, OpNotEquals:
		return slices.Contains(f.values, v) == (f.op == OpEquals)
	case OpContains, OpNotContains:
		hit := false
		for _, x := range f.values {
			if strings.Contains(v, x) {
				hit = true
				break
			}
		}
		return hit == (f.op == OpContains)
	case OpStartsWith:
		for _, x := range f.values {
			if strings.HasPrefix(v, x) {
				return true
			}
		}
	case OpEndsWith:
		for _, x := range f.values {
			if strings.HasSuffix(v, x) {
				return true
			}
		}
	}
	return false
}

// scanned holds the kept rows in two slabs: row i's grouping-set dimension values are
// dims[i*nd:(i+1)*nd] and its requested measure values vals[i*nm:(i+1)*nm].
type scanned struct {
	nd, nm     int
	start, end []int64
	dims       []string
	vals       []float64
	intern     map[string]string
}

func (s *scanned) len() int { return len(s.start) }

func (s *scanned) dim(i, pos int) string  { return s.dims[i*s.nd+pos] }
func (s *scanned) val(i, k int) float64   { return s.vals[i*s.nm+k] }
func (s *scanned) rowDims(i int) []string { return s.dims[i*s.nd : (i+1)*s.nd] }

// internString returns a copy of v that outlives the scan callback, shared between equal values.
func (s *scanned) internString(v string) string {
	if k, ok := s.intern[v]; ok {
		return k
	}
	k := strings.Clone(v)
	s.intern[k] = k
	return k
}

// errStopScan ends a scan early once enough rows are kept; it never leaves Run.
var errStopScan = errors.New("stop scan")

// Run answers q from b: it resolves the query against the cube's plan (every problem that is
// the caller's fault is a *BadQuery), scans the grouping set's rows of the chosen window over
// window_start ∈ [from, to), applies the filters, keeps only the latest step per window when
// Steps is "last", orders, then applies Offset and Limit. A Scan error is returned wrapped
// (wrapping ErrUnavailable when the backend's error does); ctx cancellation stops the scan
// with ctx's error.
func Run(ctx context.Context, b Backend, q Query) (*Result, error) {
	c, err := compile(b.Plans(), &q)
	if err != nil {
		return nil, err
	}
	res := &Result{Freshness: b.Freshness(q.Cube), Timezone: c.loc.String()}
	for _, name := range resultColumnNames(c, &q) {
		typ := TypeString
		switch {
		case name == ColumnWindowStart || (name == ColumnWindowEnd && c.spec.Cumulative):
			typ = TypeTime
		case slices.Contains(q.Measures, name):
			typ = TypeNumber
		}
		res.Columns = append(res.Columns, Column{Name: name, Type: typ})
	}

	s := &scanned{nd: len(c.gs.Dims), nm: len(c.measIdx), intern: make(map[string]string)}
	// The scan is in primary-key order (start, end, dims), which is the default order (start,
	// dims, end) when each start has one end, as in a tumbling window; so without an explicit
	// order it can stop after offset+limit rows.
	stopAt := -1
	if q.Limit > 0 && len(c.order) == 0 && !c.spec.Cumulative {
		stopAt = q.Offset + q.Limit
	}
	// lastOf maps a group (dimension values) to its row among those with the current start:
	// rows of one window_start are contiguous in key order.
	var (
		lastOf    map[string]int
		lastStart int64
		keyBuf    []byte
	)
	if c.last {
		lastOf = make(map[string]int)
	}
	seen := 0
	err = b.Scan(q.Cube, c.window, c.gs.ID, c.from, c.to, func(r *sink.Row) error {
		seen++
		if seen&1023 == 1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(r.Dims) != s.nd {
			return fmt.Errorf("row of grouping set %d has %d dimension values, want %d (%v)", c.gs.ID, len(r.Dims), s.nd, c.gs.Names)
		}
		for i := range c.filters {
			if !c.filters[i].pass(r.Dims[c.filters[i].pos]) {
				return nil
			}
		}
		for _, m := range c.measIdx {
			if m >= len(r.Values) {
				return fmt.Errorf("row of grouping set %d has %d measure values, want %d", c.gs.ID, len(r.Values), len(c.plan.Measures))
			}
		}
		if c.last {
			if r.Start != lastStart || len(lastOf) == 0 {
				clear(lastOf)
				lastStart = r.Start
			}
			keyBuf = keyBuf[:0]
			for _, d := range r.Dims { // length-prefixed, so that no two groups share a key
				keyBuf = binary.AppendUvarint(keyBuf, uint64(len(d)))
				keyBuf = append(keyBuf, d...)
			}
			if i, ok := lastOf[string(keyBuf)]; ok {
				if r.End > s.end[i] {
					s.end[i] = r.End
					for k, m := range c.measIdx {
						s.vals[i*s.nm+k] = r.Values[m]
					}
				}
				return nil
			}
			lastOf[string(keyBuf)] = s.len()
		}
		s.start = append(s.start, r.Start)
		s.end = append(s.end, r.End)
		for _, d := range r.Dims {
			s.dims = append(s.dims, s.internString(d))
		}
		for _, m := range c.measIdx {
			s.vals = append(s.vals, r.Values[m])
		}
		if stopAt >= 0 && s.len() >= stopAt {
			return errStopScan
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, fmt.Errorf("querying cube %q: %w", q.Cube, err)
		}
		return nil, fmt.Errorf("scanning cube %q window %d (%s) grouping set %d [%s]: %w",
			q.Cube, c.window, windowLabel(c.spec), c.gs.ID, strings.Join(c.gs.Names, ", "), err)
	}

	idx := make([]int, s.len())
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return s.less(c.order, idx[a], idx[b]) })
	if q.Offset >= len(idx) {
		idx = idx[:0]
	} else {
		idx = idx[q.Offset:]
	}
	if q.Limit > 0 && len(idx) > q.Limit {
		idx = idx[:q.Limit]
	}

	res.Rows = make([][]any, len(idx))
	ncol := len(res.Columns)
	for n, i := range idx {
		row := make([]any, 0, ncol)
		row = append(row, time.UnixMilli(s.start[i]).In(c.loc))
		if c.spec.Cumulative {
			row = append(row, time.UnixMilli(s.end[i]).In(c.loc))
		}
		for _, pos := range c.dimPos {
			row = append(row, s.dim(i, pos))
		}
		for k := range c.measIdx {
			if v := s.val(i, k); math.IsNaN(v) {
				row = append(row, nil)
			} else {
				row = append(row, v)
			}
		}
		res.Rows[n] = row
	}
	return res, nil
}

// less orders rows a and b by the query's order keys, then by window_start, the dimension
// values in model order and window_end.
func (s *scanned) less(order []orderKey, a, b int) bool {
	for _, k := range order {
		var cmp int
		switch k.kind {
		case orderStart:
			cmp = compareInt(s.start[a], s.start[b])
		case orderEnd:
			cmp = compareInt(s.end[a], s.end[b])
		case orderDim:
			cmp = strings.Compare(s.dim(a, k.idx), s.dim(b, k.idx))
		case orderMeasure:
			va, vb := s.val(a, k.idx), s.val(b, k.idx)
			na, nb := math.IsNaN(va), math.IsNaN(vb)
			switch {
			case na && nb:
				continue
			case na: // nulls last, whatever the direction
				return false
			case nb:
				return true
			}
			cmp = compareFloat(va, vb)
		}
		if cmp != 0 {
			return (cmp < 0) != k.desc
		}
	}
	if cmp := compareInt(s.start[a], s.start[b]); cmp != 0 {
		return cmp < 0
	}
	if cmp := slices.Compare(s.rowDims(a), s.rowDims(b)); cmp != 0 {
		return cmp < 0
	}
	return s.end[a] < s.end[b]
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
