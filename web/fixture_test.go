package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/sink"
)

// memBackend is a Backend that serves rows from a slice: a test fixture for the HTTP layer (the
// pipeline's real Backend is tested with the pipeline). Like the embedded store, its Scan walks
// rows in primary-key order and reuses the Row it passes to fn; it scribbles over that Row after
// fn returns, so a caller that keeps references into it gets caught.
type memBackend struct {
	mu     sync.Mutex
	plans  []*cube.Plan
	rows   map[string][]sink.Row // per cube, sorted by primary key
	fresh  map[string]Freshness
	ready  bool
	status any
	file   string
	model  []byte
	scans  int // Scan calls, to check early-stopping and routing
}

func (m *memBackend) Plans() []*cube.Plan { return m.plans }

func (m *memBackend) Scan(cubeName string, window int, gs uint16, from, to int64, fn func(r *sink.Row) error) error {
	m.mu.Lock()
	m.scans++
	rows := m.rows[cubeName]
	m.mu.Unlock()
	var r sink.Row
	for i := range rows {
		src := &rows[i]
		if src.Window != window || src.GroupingSet != gs || src.Start < from || src.Start >= to {
			continue
		}
		r.Window, r.GroupingSet, r.Start, r.End, r.Version = src.Window, src.GroupingSet, src.Start, src.End, src.Version
		r.Dims = append(r.Dims[:0], src.Dims...)
		r.Values = append(r.Values[:0], src.Values...)
		if err := fn(&r); err != nil {
			return err
		}
		for j := range r.Dims {
			r.Dims[j] = "CLOBBERED"
		}
		for j := range r.Values {
			r.Values[j] = -1e300
		}
	}
	return nil
}

func (m *memBackend) Freshness(cubeName string) Freshness { return m.fresh[cubeName] }
func (m *memBackend) Status() any                         { return m.status }
func (m *memBackend) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready
}
func (m *memBackend) ModelSource() (string, []byte) { return m.file, m.model }

// keyLess is the primary-key order of rows: window, grouping set, start, end, dims.
func keyLess(a, b *sink.Row) int {
	return cmp.Or(cmp.Compare(a.Window, b.Window), cmp.Compare(a.GroupingSet, b.GroupingSet),
		cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End), slices.Compare(a.Dims, b.Dims))
}

// buildPlan compiles c by hand, the way cube.Compile is specified (grouping-set id = Σ 1<<i over
// its dimensions' indices), so that these tests do not depend on the compiler.
func buildPlan(c *cube.Cube) *cube.Plan {
	p := &cube.Plan{Cube: c}
	dimIndex := func(name string) int {
		for i, d := range c.Dimensions {
			if d.Name == name {
				return i
			}
		}
		panic("unknown dimension " + name)
	}
	used := map[int]bool{}
	for _, names := range c.GroupingSets {
		g := cube.GroupingSet{}
		for _, n := range names {
			i := dimIndex(n)
			g.Dims = append(g.Dims, i)
			g.ID |= 1 << i
			used[i] = true
		}
		sort.Ints(g.Dims)
		for _, i := range g.Dims {
			g.Names = append(g.Names, c.Dimensions[i].Name)
		}
		p.GroupingSets = append(p.GroupingSets, g)
	}
	for i := range c.Dimensions {
		if used[i] {
			p.Dimensions = append(p.Dimensions, i)
		}
	}
	for gi := range p.GroupingSets {
		for _, d := range p.GroupingSets[gi].Dims {
			p.GroupingSets[gi].Project = append(p.GroupingSets[gi].Project, slices.Index(p.Dimensions, d))
		}
	}
	for _, w := range c.Windows {
		p.Windows = append(p.Windows, cube.WindowSpec{Window: w, Cumulative: w.Step > 0})
	}
	for _, m := range c.Measures {
		p.Measures = append(p.Measures, cube.MeasurePlan{Measure: m, ValueField: -1, DistinctField: -1})
	}
	p.Fingerprint = "test"
	return p
}

var (
	kolkata = mustLoad("Asia/Kolkata")
	// chans are the channel values of the fixture, including an empty one and one that needs
	// CSV and JSON quoting.
	chans      = []string{"", "#de.wikipedia", "#en.wikipedia", "#fr.wikipedia", "#ja.wikipedia", "en", "#we,ird \"chan\"\nnel"}
	namespaces = []string{"Main", "Talk", "User"}
	robots     = []string{"false", "true"}
)

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// Window indexes of the edits cube.
const (
	winDayCum  = 0
	winHour    = 1
	winDayTumb = 2
)

// Grouping-set ids of the edits cube (channel = bit 0, namespace = bit 1, robot = bit 2).
const (
	gsNone             = 0
	gsChannel          = 1
	gsChannelNamespace = 3
	gsChannelRobot     = 5
)

func editsCube() *cube.Cube {
	return &cube.Cube{
		Name:        "edits",
		Description: "Wikipedia edits",
		Timezone:    kolkata,
		Dimensions: []cube.Dimension{
			{Name: "channel", Field: "channel", Path: []string{"channel"}},
			{Name: "namespace", Field: "namespace", Path: []string{"namespace"}},
			{Name: "robot", Field: "isRobot", Path: []string{"isRobot"}},
		},
		Measures: []cube.Measure{
			{Name: "pv", Type: cube.Count},
			{Name: "added", Type: cube.Sum, Field: "added", Path: []string{"added"}},
			{Name: "uv", Type: cube.CountDistinct, Field: "user", Path: []string{"user"}},
			{Name: "min_delta", Type: cube.Min, Field: "delta", Path: []string{"delta"}},
		},
		GroupingSets: [][]string{{}, {"channel"}, {"channel", "namespace"}, {"channel", "robot"}},
		Windows: []cube.Window{
			{Granularity: cube.Day, Step: 6 * time.Hour, EmitEvery: time.Minute},
			{Granularity: cube.Hour, EmitEvery: 10 * time.Second},
			{Granularity: cube.Day, EmitEvery: time.Minute},
		},
		Sink: cube.Sink{Table: "edits"},
	}
}

func retailCube() *cube.Cube {
	return &cube.Cube{
		Name:         "retail",
		Timezone:     time.UTC,
		Dimensions:   []cube.Dimension{{Name: "country", Field: "Country", Path: []string{"Country"}}},
		Measures:     []cube.Measure{{Name: "orders", Type: cube.Count}},
		GroupingSets: [][]string{{"country"}},
		Windows:      []cube.Window{{Granularity: cube.Week, EmitEvery: time.Minute}},
		Sink:         cube.Sink{Table: "retail"},
	}
}

// fixture is the edits cube's rows: raw in generation order (what the oracle reads) and the
// backend serving them.
type fixture struct {
	plan *cube.Plan
	raw  []sink.Row
	b    *memBackend
	srv  *httptest.Server
	reg  *prometheus.Registry
}

// combos returns every combination of values of the grouping set's dimensions, in its order.
func combos(g cube.GroupingSet) [][]string {
	out := [][]string{{}}
	for _, name := range g.Names {
		var vals []string
		switch name {
		case "channel":
			vals = chans
		case "namespace":
			vals = namespaces
		case "robot":
			vals = robots
		}
		var next [][]string
		for _, prefix := range out {
			for _, v := range vals {
				next = append(next, append(slices.Clone(prefix), v))
			}
		}
		out = next
	}
	return out
}

var watermark = time.Date(2015, 9, 13, 11, 0, 0, 0, time.UTC)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	p := buildPlan(editsCube())
	f := &fixture{plan: p}
	values := func(scale float64) []float64 {
		pv := float64(1+rng.IntN(100)) * scale
		v := []float64{pv, math.Round(rng.Float64()*1e4) / 4, math.Ceil(pv * rng.Float64()), float64(rng.IntN(101) - 50)}
		if rng.IntN(5) == 0 {
			v[3] = math.NaN()
		}
		return v
	}
	var version uint64
	add := func(w int, g cube.GroupingSet, start, end time.Time, dims []string, vals []float64) {
		version++
		f.raw = append(f.raw, sink.Row{Window: w, GroupingSet: g.ID, Start: start.UnixMilli(), End: end.UnixMilli(),
			Dims: dims, Values: vals, Version: version})
	}
	for _, g := range p.GroupingSets {
		for _, dims := range combos(g) {
			// Hourly windows from 2015-09-11T12:00Z to 2015-09-13T12:00Z.
			for h := 0; h <= 48; h++ {
				if rng.IntN(10) < 6 {
					start := time.Date(2015, 9, 11, 12+h, 0, 0, 0, time.UTC)
					add(winHour, g, start, start.Add(time.Hour), dims, values(1))
				}
			}
			// Days of 11, 12 and 13 September in Kolkata: tumbling, and cumulative by 6h; the 13th
			// is still open, with 1 or 2 steps so far.
			for d := 11; d <= 13; d++ {
				if rng.IntN(10) < 3 {
					continue
				}
				start := time.Date(2015, 9, d, 0, 0, 0, 0, kolkata)
				add(winDayTumb, g, start, start.Add(24*time.Hour), dims, values(24))
				steps := 4
				if d == 13 {
					steps = 1 + rng.IntN(2)
				}
				for s := 1; s <= steps; s++ {
					add(winDayCum, g, start, start.Add(time.Duration(s)*6*time.Hour), dims, values(float64(s)))
				}
			}
		}
	}
	rng.Shuffle(len(f.raw), func(i, j int) { f.raw[i], f.raw[j] = f.raw[j], f.raw[i] })
	sorted := slices.Clone(f.raw)
	slices.SortFunc(sorted, func(a, b sink.Row) int { return keyLess(&a, &b) })
	f.b = &memBackend{
		plans: []*cube.Plan{p, buildPlan(retailCube())},
		rows:  map[string][]sink.Row{"edits": sorted},
		fresh: map[string]Freshness{"edits": {Watermark: watermark, LastEmit: time.Date(2015, 9, 13, 11, 0, 5, 0, time.UTC)}},
		ready: false,
		status: map[string]any{
			"cubes": []any{map[string]any{"name": "edits", "events_total": 39244}},
		},
		file:  "models/wiki.yaml",
		model: []byte("version: 1\ncubes: []\n"),
	}
	f.reg = prometheus.NewRegistry()
	f.srv = httptest.NewServer(NewServer(f.b, f.reg).Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// oracleRow is one expected result row: dimension values by name, measures by name.
type oracleRow struct {
	start, end int64
	dims       map[string]string
	vals       map[string]float64
	key        []string // dimension values in model order (the primary-key order)
}

// oracle brute-forces the rows of (window, grouping set) with from ≤ start < to whose dimension
// values pass keep, in primary-key order.
func (f *fixture) oracle(window int, gsID uint16, from, to int64, keep func(dims map[string]string) bool) []oracleRow {
	var g cube.GroupingSet
	for _, x := range f.plan.GroupingSets {
		if x.ID == gsID {
			g = x
		}
	}
	var out []oracleRow
	for _, r := range f.raw {
		if r.Window != window || r.GroupingSet != gsID || r.Start < from || r.Start >= to {
			continue
		}
		o := oracleRow{start: r.Start, end: r.End, dims: map[string]string{}, vals: map[string]float64{}}
		for i, name := range g.Names {
			o.dims[name] = r.Dims[i]
		}
		for _, d := range f.plan.Cube.Dimensions { // model order
			if v, ok := o.dims[d.Name]; ok {
				o.key = append(o.key, v)
			}
		}
		for i, m := range f.plan.Measures {
			o.vals[m.Name] = r.Values[i]
		}
		if keep == nil || keep(o.dims) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.start != b.start {
			return a.start < b.start
		}
		if ka, kb := strings.Join(a.key, "\x00"), strings.Join(b.key, "\x00"); ka != kb {
			return ka < kb
		}
		return a.end < b.end
	})
	return out
}

// lastSteps keeps, per (start, dims), the row with the largest end.
func lastSteps(rows []oracleRow) []oracleRow {
	best := map[string]int{}
	var out []oracleRow
	for _, r := range rows {
		k := time.UnixMilli(r.start).String() + "|" + strings.Join(r.key, "\x00")
		if i, ok := best[k]; ok {
			if r.end > out[i].end {
				out[i] = r
			}
			continue
		}
		best[k] = len(out)
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].start != out[j].start {
			return out[i].start < out[j].start
		}
		return strings.Join(out[i].key, "\x00") < strings.Join(out[j].key, "\x00")
	})
	return out
}

// expectJSON renders oracle rows as the JSON answer's rows decode: RFC 3339 strings in the
// cube's zone, dimension strings, float64 measures or nil for NaN.
func expectJSON(rows []oracleRow, cumulative bool, dims, measures []string) [][]any {
	out := make([][]any, 0, len(rows))
	for _, r := range rows {
		row := []any{time.UnixMilli(r.start).In(kolkata).Format(time.RFC3339)}
		if cumulative {
			row = append(row, time.UnixMilli(r.end).In(kolkata).Format(time.RFC3339))
		}
		for _, d := range dims {
			row = append(row, r.dims[d])
		}
		for _, m := range measures {
			if v := r.vals[m]; math.IsNaN(v) {
				row = append(row, nil)
			} else {
				row = append(row, v)
			}
		}
		out = append(out, row)
	}
	return out
}

// answer is a decoded JSON envelope.
type answer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	} `json:"data"`
	Freshness map[string]any `json:"freshness"`
	code      int
	body      []byte
}

// post sends a request and returns the status code, the body and the response.
func (f *fixture) do(t testing.TB, method, path, contentType string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, path, err)
	}
	return resp, b
}

// query POSTs a query JSON text and decodes the JSON answer.
func (f *fixture) query(t testing.TB, q string) answer {
	t.Helper()
	resp, body := f.do(t, http.MethodPost, "/api/v1/query", "application/json", []byte(q), nil)
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("query %s: decoding answer %q: %v", q, body, err)
	}
	a.code, a.body = resp.StatusCode, body
	return a
}

// mustQuery is query that fails the test unless the answer is a success.
func (f *fixture) mustQuery(t testing.TB, q string) answer {
	t.Helper()
	a := f.query(t, q)
	if a.code != http.StatusOK || a.Status != "success" {
		t.Fatalf("query %s: got %d %s", q, a.code, a.body)
	}
	return a
}

func getQueryPath(q string) string {
	return "/api/v1/query?query=" + url.QueryEscape(q)
}

func ms(t time.Time) int64 { return t.UnixMilli() }
