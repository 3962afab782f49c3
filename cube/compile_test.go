package cube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testCube builds a valid cube in code with the given dimension names and grouping sets.
func testCube(dims []string, sets [][]string) *Cube {
	c := &Cube{
		Name:      "t",
		Source:    Source{Kafka: &KafkaSource{Brokers: []string{"b:9092"}, Topic: "t", Group: "cubed-t", Start: "earliest"}, Format: FormatJSON},
		EventTime: EventTime{Field: "ts", Path: []string{"ts"}, Format: TimeRFC3339, Location: time.UTC, MaxOutOfOrderness: 5 * time.Second, IdleTimeout: 30 * time.Second},
		Timezone:  time.UTC,
		Measures:  []Measure{{Name: "pv", Type: Count}},
		Windows:   []Window{{Granularity: Day, EmitEvery: time.Minute}},
		Sink:      Sink{Table: "t"},
	}
	for _, d := range dims {
		c.Dimensions = append(c.Dimensions, Dimension{Name: d, Field: d, Path: []string{d}})
	}
	c.GroupingSets = sets
	return c
}

func TestCompileGroupingSets(t *testing.T) {
	type gs struct {
		id      uint16
		dims    []int
		project []int
	}
	cases := []struct {
		name     string
		dims     []string
		sets     [][]string
		wantKey  []int
		wantSets []gs
	}{
		{"all used", []string{"a", "b", "c", "d"}, [][]string{{}, {"a"}, {"b", "d"}, {"a", "b", "c"}},
			[]int{0, 1, 2, 3},
			[]gs{{0, []int{}, []int{}}, {1, []int{0}, []int{0}}, {2 + 8, []int{1, 3}, []int{1, 3}}, {1 + 2 + 4, []int{0, 1, 2}, []int{0, 1, 2}}}},
		{"unused dimensions left out of the key", []string{"a", "b", "c", "d"}, [][]string{{"b"}, {"d"}, {"b", "d"}},
			[]int{1, 3},
			[]gs{{2, []int{1}, []int{0}}, {8, []int{3}, []int{1}}, {10, []int{1, 3}, []int{0, 1}}}},
		{"set order does not matter", []string{"a", "b", "c"}, [][]string{{"c", "a"}},
			[]int{0, 2},
			[]gs{{5, []int{0, 2}, []int{0, 1}}}},
		{"no dimensions", nil, [][]string{{}}, []int(nil), []gs{{0, []int{}, []int{}}}},
		{"sixteenth dimension", []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15"},
			[][]string{{"d15"}, {"d0", "d15"}}, []int{0, 15},
			[]gs{{1 << 15, []int{15}, []int{1}}, {1<<15 | 1, []int{0, 15}, []int{0, 1}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(testCube(tc.dims, tc.sets))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Dimensions, tc.wantKey) {
				t.Errorf("layer-1 key %v, want %v", p.Dimensions, tc.wantKey)
			}
			if len(p.GroupingSets) != len(tc.wantSets) {
				t.Fatalf("%d grouping sets, want %d", len(p.GroupingSets), len(tc.wantSets))
			}
			for i, w := range tc.wantSets {
				g := p.GroupingSets[i]
				if g.ID != w.id || !reflect.DeepEqual(g.Dims, w.dims) || !reflect.DeepEqual(g.Project, w.project) {
					t.Errorf("set %d: id %d dims %v project %v; want %d %v %v", i, g.ID, g.Dims, g.Project, w.id, w.dims, w.project)
				}
				// Names follow Dims.
				for j, d := range g.Dims {
					if g.Names[j] != tc.dims[d] {
						t.Errorf("set %d: names %v do not follow dims %v", i, g.Names, g.Dims)
					}
				}
			}
		})
	}
}

// The cube and rollup shorthands expand, through Parse and Compile, to the cuboids a brute-force
// enumeration of the listed dimensions' indices gives.
func TestCompileCubeAndRollupExpansion(t *testing.T) {
	model := func(key, list string) string {
		return fmt.Sprintf(`version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]
    measures: [{name: pv, type: count}]
    %s: %s
    windows: [{granularity: day}]
`, key, list)
	}
	compile := func(src string) *Plan {
		t.Helper()
		m, diags := Parse("m.yaml", []byte(src))
		if len(diags) > 0 {
			t.Fatalf("%s", diagLines(diags))
		}
		p, err := Compile(m.Cubes[0])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ids := func(p *Plan) map[uint16]bool {
		out := map[uint16]bool{}
		for _, g := range p.GroupingSets {
			if out[g.ID] {
				t.Errorf("duplicate id %d", g.ID)
			}
			out[g.ID] = true
		}
		return out
	}

	// cube: [e, b, d] → indices 4, 1, 3: every subset of {2, 8, 16}.
	p := compile(model("cube", "[e, b, d]"))
	want := map[uint16]bool{}
	for _, x := range []uint16{0, 16} {
		for _, y := range []uint16{0, 2} {
			for _, z := range []uint16{0, 8} {
				want[x|y|z] = true
			}
		}
	}
	if got := ids(p); !reflect.DeepEqual(got, want) {
		t.Errorf("cube ids %v, want %v", got, want)
	}
	if !reflect.DeepEqual(p.Dimensions, []int{1, 3, 4}) {
		t.Errorf("cube key %v", p.Dimensions)
	}
	if p.GroupingSets[0].ID != 2|8|16 || p.GroupingSets[7].ID != 0 {
		t.Errorf("cube order: first %d last %d", p.GroupingSets[0].ID, p.GroupingSets[7].ID)
	}

	// rollup: [d, a, c] → prefixes {d,a,c}, {d,a}, {d}, {} in that order.
	p = compile(model("rollup", "[d, a, c]"))
	var got []uint16
	for _, g := range p.GroupingSets {
		got = append(got, g.ID)
	}
	if wantOrder := []uint16{8 | 1 | 4, 8 | 1, 8, 0}; !reflect.DeepEqual(got, wantOrder) {
		t.Errorf("rollup ids %v, want %v", got, wantOrder)
	}
	if g := p.GroupingSets[1]; !reflect.DeepEqual(g.Names, []string{"a", "d"}) || !reflect.DeepEqual(g.Project, []int{0, 2}) {
		t.Errorf("rollup set [d, a]: names %v project %v", g.Names, g.Project)
	}

	// Twelve dimensions in a cube list: 4096 grouping sets, all distinct.
	var dims, names []string
	for i := range 12 {
		dims = append(dims, fmt.Sprintf("{name: d%d}", i))
		names = append(names, fmt.Sprintf("d%d", i))
	}
	src := strings.Replace(model("cube", "["+strings.Join(names, ", ")+"]"),
		"[{name: a}, {name: b}, {name: c}, {name: d}, {name: e}]", "["+strings.Join(dims, ", ")+"]", 1)
	if n := len(ids(compile(src))); n != 4096 {
		t.Errorf("12-dimension cube gave %d sets", n)
	}
}

func TestCompileFields(t *testing.T) {
	c := testCube([]string{"a"}, [][]string{{"a"}})
	c.Measures = []Measure{
		{Name: "pv", Type: Count},
		{Name: "uv", Type: CountDistinct, Field: "user"},
		{Name: "s", Type: Sum, Field: "x"},
		{Name: "mn", Type: Min, Field: "x"},
		{Name: "mx", Type: Max, Field: "m.y"},
		{Name: "devices", Type: CountDistinct, Field: "device"},
		{Name: "uv2", Type: CountDistinct, Field: "user"},
	}
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.DistinctFields, []string{"user", "device"}) || !reflect.DeepEqual(p.ValueFields, []string{"x", "m.y"}) {
		t.Errorf("distinct %v value %v", p.DistinctFields, p.ValueFields)
	}
	wantValue := []int{-1, -1, 0, 0, 1, -1, -1}
	wantDistinct := []int{-1, 0, -1, -1, -1, 1, 0}
	for i, m := range p.Measures {
		if m.ValueField != wantValue[i] || m.DistinctField != wantDistinct[i] || m.Name != c.Measures[i].Name {
			t.Errorf("measure %s: value %d distinct %d, want %d %d", m.Name, m.ValueField, m.DistinctField, wantValue[i], wantDistinct[i])
		}
	}
	c.Windows = []Window{{Day, time.Hour, time.Minute}, {Hour, 0, time.Second}}
	p, err = Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Windows[0].Cumulative || p.Windows[1].Cumulative || p.Windows[0].Step != time.Hour {
		t.Errorf("windows %+v", p.Windows)
	}
}

// TestCompileRetention checks that a retention measure compiles into three result columns (rate,
// retained, cohort) reading one distinct field with new_users and count_distinct, and that
// days and cohort are in the fingerprint.
func TestCompileRetention(t *testing.T) {
	c := testCube([]string{"a"}, [][]string{{"a"}, {}})
	c.Measures = []Measure{
		{Name: "uv", Type: CountDistinct, Field: "user"},
		{Name: "fresh", Type: NewUsers, Field: "user"},
		{Name: "d1", Type: Retention, Field: "user", Days: 1, Cohort: CohortActive},
		{Name: "pv", Type: Count},
	}
	c.Windows = []Window{{Day, 0, time.Minute}, {Day, time.Hour, time.Minute}}
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	type col struct {
		name     string
		typ      MeasureType
		part     RetentionPart
		distinct int
		source   int
	}
	var got []col
	for _, m := range p.Measures {
		got = append(got, col{m.Name, m.Type, m.Part, m.DistinctField, m.Source})
	}
	want := []col{{"uv", CountDistinct, RetentionRate, 0, 0}, {"fresh", NewUsers, RetentionRate, 0, 1},
		{"d1", Retention, RetentionRate, 0, 2}, {"d1_retained", Retention, RetentionRetained, 0, 2},
		{"d1_cohort", Retention, RetentionCohort, 0, 2}, {"pv", Count, RetentionRate, -1, 3}}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(p.DistinctFields, []string{"user"}) {
		t.Errorf("columns %+v, distinct fields %v; want %+v, [user]", got, p.DistinctFields, want)
	}
	if i, ok := p.Measure("d1_cohort"); !ok || i != 4 {
		t.Errorf("Measure(d1_cohort) = %d, %v; want 4, true", i, ok)
	}
	fp := p.Fingerprint
	c.Measures[2].Days = 7
	p7, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Measures[2].Days, c.Measures[2].Cohort = 1, CohortNew
	pNew, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if p7.Fingerprint == fp || pNew.Fingerprint == fp || p7.Fingerprint == pNew.Fingerprint {
		t.Error("days and cohort must change the fingerprint")
	}
}

func TestCompileRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Cube)
		want   string
	}{
		{"unknown dimension", func(c *Cube) { c.GroupingSets = [][]string{{"zz"}} }, `grouping set 1 names unknown dimension "zz" (dimensions: a, b)`},
		{"dimension twice", func(c *Cube) { c.GroupingSets = [][]string{{"a", "a"}} }, `grouping set 1 names dimension "a" twice`},
		{"duplicate sets", func(c *Cube) { c.GroupingSets = [][]string{{"a", "b"}, {"b", "a"}} }, `grouping set 2 [b a] duplicates grouping set 1`},
		{"duplicate dimension", func(c *Cube) { c.Dimensions = append(c.Dimensions, c.Dimensions[0]) }, `dimension "a" is declared twice`},
		{"too many dimensions", func(c *Cube) {
			for i := range 15 {
				c.Dimensions = append(c.Dimensions, Dimension{Name: fmt.Sprint("x", i), Field: "x"})
			}
		}, "17 dimensions, at most 16"},
		{"unknown type", func(c *Cube) { c.Measures = []Measure{{Name: "n", Type: "avg", Field: "u"}} }, `type "avg", which this release does not compute`},
		{"new users in an hour window", func(c *Cube) {
			c.Measures = []Measure{{Name: "n", Type: NewUsers, Field: "u"}}
			c.Windows = append(c.Windows, Window{Hour, 0, time.Minute})
		}, "computed per day, but the cube has an hour window"},
		{"retention days", func(c *Cube) { c.Measures = []Measure{{Name: "r", Type: Retention, Field: "u", Cohort: CohortActive}} }, `retention measure "r" has days 0, want 1 to 366`},
		{"retention cohort", func(c *Cube) { c.Measures = []Measure{{Name: "r", Type: Retention, Field: "u", Days: 1}} }, `retention measure "r" has cohort ""`},
		{"days on new users", func(c *Cube) { c.Measures = []Measure{{Name: "n", Type: NewUsers, Field: "u", Days: 1}} }, "takes no days or cohort"},
		{"retention column clash", func(c *Cube) {
			c.Measures = []Measure{{Name: "r", Type: Retention, Field: "u", Days: 1, Cohort: CohortNew}, {Name: "r_cohort", Type: Count}}
		}, `result column "r_cohort" is named twice`},
		{"count with field", func(c *Cube) { c.Measures = []Measure{{Name: "n", Type: Count, Field: "u"}} }, "takes no field"},
		{"sum without field", func(c *Cube) { c.Measures = []Measure{{Name: "n", Type: Sum}} }, "needs a field"},
		{"step too long", func(c *Cube) { c.Windows = []Window{{Hour, time.Hour, time.Minute}} }, "window step 1h must be 0 (tumbling) or divide an hour (1h)"},
		{"step uneven", func(c *Cube) { c.Windows = []Window{{Day, 5 * time.Hour, time.Minute}} }, "must be 0 (tumbling) or divide a day (24h)"},
		{"bad granularity", func(c *Cube) { c.Windows = []Window{{"month", 0, time.Minute}} }, `unknown window granularity "month"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testCube([]string{"a", "b"}, [][]string{{"a"}})
			tc.mutate(c)
			p, err := Compile(c)
			if err == nil || p != nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), `compiling cube "t": `) {
				t.Errorf("got %v, %v; want an error containing %q", p, err, tc.want)
			}
		})
	}
	if _, err := Compile(nil); err == nil {
		t.Error("nil cube compiled")
	}
}

func TestFingerprint(t *testing.T) {
	base := func() *Cube {
		c := testCube([]string{"a", "b"}, [][]string{{}, {"a"}, {"a", "b"}})
		c.Measures = append(c.Measures, Measure{Name: "uv", Type: CountDistinct, Field: "user"})
		c.Windows = []Window{{Day, time.Hour, time.Minute}, {Hour, 0, 10 * time.Second}}
		return c
	}
	fp := func(c *Cube) string {
		p, err := Compile(c)
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint
	}
	ref := fp(base())
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ref) {
		t.Fatalf("fingerprint %q is not hex SHA-256", ref)
	}
	if again := fp(base()); again != ref {
		t.Fatalf("not deterministic: %s then %s", ref, again)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	changes := map[string]func(c *Cube){
		"grouping set added":     func(c *Cube) { c.GroupingSets = append(c.GroupingSets, []string{"b"}) },
		"grouping set changed":   func(c *Cube) { c.GroupingSets[1] = []string{"b"} },
		"dimension field":        func(c *Cube) { c.Dimensions[1].Field = "other" },
		"dimension renamed":      func(c *Cube) { c.Dimensions[1].Name = "bb"; c.GroupingSets[2] = []string{"a", "bb"} },
		"measure field":          func(c *Cube) { c.Measures[1].Field = "device" },
		"measure type":           func(c *Cube) { c.Measures[1].Type = Sum },
		"measure added":          func(c *Cube) { c.Measures = append(c.Measures, Measure{Name: "s", Type: Sum, Field: "x"}) },
		"window step":            func(c *Cube) { c.Windows[0].Step = 2 * time.Hour },
		"window granularity":     func(c *Cube) { c.Windows[1].Granularity = Minute },
		"windows reordered":      func(c *Cube) { c.Windows[0], c.Windows[1] = c.Windows[1], c.Windows[0] },
		"cube timezone":          func(c *Cube) { c.Timezone = london },
		"event time zone":        func(c *Cube) { c.EventTime.Location = london },
		"event time field":       func(c *Cube) { c.EventTime.Field = "t2" },
		"event time format":      func(c *Cube) { c.EventTime.Format = TimeUnixMS },
		"allowed lateness":       func(c *Cube) { c.EventTime.AllowedLateness = time.Hour },
		"max out of orderness":   func(c *Cube) { c.EventTime.MaxOutOfOrderness = time.Minute },
		"field with quote moved": func(c *Cube) { c.Dimensions[0].Field = `a" field "b` },
	}
	seen := map[string]string{ref: "base"}
	for name, mutate := range changes {
		c := base()
		mutate(c)
		got := fp(c)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: fingerprint equals that of %s", name, prev)
		}
		seen[got] = name
	}
	same := map[string]func(c *Cube){
		"emit_every":   func(c *Cube) { c.Windows[0].EmitEvery = time.Second; c.Windows[1].EmitEvery = time.Hour },
		"idle timeout": func(c *Cube) { c.EventTime.IdleTimeout = time.Hour },
		"name":         func(c *Cube) { c.Name = "renamed"; c.Description = "x" },
		"sink table":   func(c *Cube) { c.Sink.Table = "other" },
		"source":       func(c *Cube) { c.Source = Source{File: &FileSource{Path: "/x"}, Format: FormatCSV} },
	}
	for name, mutate := range same {
		c := base()
		mutate(c)
		if got := fp(c); got != ref {
			t.Errorf("%s changed the fingerprint", name)
		}
	}
}

// Same model text through Parse: changing emit_every keeps the fingerprint, changing a grouping
// set changes it.
func TestFingerprintThroughParse(t *testing.T) {
	raw, err := os.ReadFile("testdata/design.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fp := func(src string) string {
		m, diags := Parse("m.yaml", []byte(src))
		if len(diags) > 0 {
			t.Fatalf("%s", diagLines(diags))
		}
		p, err := Compile(m.Cubes[0])
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint
	}
	ref := fp(string(raw))
	edit := func(from, to string) string {
		if !bytes.Contains(raw, []byte(from)) {
			t.Fatalf("design model lacks %q", from)
		}
		return fp(strings.Replace(string(raw), from, to, 1))
	}
	if edit("emit_every: 1m", "emit_every: 5s") != ref {
		t.Error("emit_every changed the fingerprint")
	}
	if edit("- [channel, namespace]", "- [namespace, channel]") != ref {
		t.Error("reordering a grouping set's names changed the fingerprint")
	}
	if edit("- [channel, namespace]", "- [channel, robot]") == ref {
		t.Error("changing a grouping set kept the fingerprint")
	}
}

func TestPlanLookups(t *testing.T) {
	p, err := Compile(testCube([]string{"a", "b", "c"}, [][]string{{}, {"a"}, {"a", "c"}, {"a", "b", "c"}}))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dims []string
		id   uint16
		ok   bool
	}{
		{nil, 0, true},
		{[]string{}, 0, true},
		{[]string{"a"}, 1, true},
		{[]string{"c", "a"}, 5, true},
		{[]string{"a", "c", "a"}, 5, true},
		{[]string{"b", "c", "a"}, 7, true},
		{[]string{"b"}, 0, false},
		{[]string{"a", "zz"}, 0, false},
	}
	for _, tc := range cases {
		g, ok := p.GroupingSetFor(tc.dims)
		if ok != tc.ok || (ok && g.ID != tc.id) {
			t.Errorf("GroupingSetFor(%v) = %d, %v; want %d, %v", tc.dims, g.ID, ok, tc.id, tc.ok)
		}
	}
	if i, ok := p.Dimension("c"); !ok || i != 2 {
		t.Errorf("Dimension(c) = %d, %v", i, ok)
	}
	if _, ok := p.Dimension("pv"); ok {
		t.Error("Dimension(pv) found a measure")
	}
	if i, ok := p.Measure("pv"); !ok || i != 0 {
		t.Errorf("Measure(pv) = %d, %v", i, ok)
	}
	if _, ok := p.Measure("a"); ok {
		t.Error("Measure(a) found a dimension")
	}
}

func designPlan(t *testing.T) *Plan {
	t.Helper()
	p, err := Compile(mustLoad(t, "testdata/design.good.yaml").Cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden: %v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestPlanRenderingsGolden(t *testing.T) {
	p := designPlan(t)
	checkGolden(t, filepath.Join("testdata", "design.plan.txt.golden"), []byte(p.Text()))
	j, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "design.plan.json.golden"), j)
	checkGolden(t, filepath.Join("testdata", "design.plan.dot.golden"), []byte(p.DOT()))
}

// TestGrowthPlanGolden pins the plan text and JSON of a model with new_users and retention.
func TestGrowthPlanGolden(t *testing.T) {
	m := mustLoad(t, "testdata/growth.good.yaml")
	c := m.Cubes[0]
	if c.Measures[2].Days != 1 || c.Measures[2].Cohort != CohortActive || c.Measures[3].Days != 7 || c.Measures[3].Cohort != CohortNew {
		t.Errorf("retention measures %+v %+v: want days 1 cohort active (the default), days 7 cohort new", c.Measures[2], c.Measures[3])
	}
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "growth.plan.txt.golden"), []byte(p.Text()))
	j, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "growth.plan.json.golden"), j)
}

func TestPlanJSONShape(t *testing.T) {
	p := designPlan(t)
	j, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Cube         string   `json:"cube"`
		Dimensions   []string `json:"dimensions"`
		GroupingSets []struct {
			ID         int      `json:"id"`
			Dimensions []string `json:"dimensions"`
		} `json:"grouping_sets"`
		Windows []struct {
			Granularity string `json:"granularity"`
			Step        string `json:"step"`
			EmitEvery   string `json:"emit_every"`
			Cumulative  bool   `json:"cumulative"`
		} `json:"windows"`
		Measures    []struct{ Name, Type, Field string } `json:"measures"`
		Nodes       []struct{ ID string }                `json:"nodes"`
		Edges       []struct{ From, To string }          `json:"edges"`
		Fingerprint string                               `json:"fingerprint"`
	}
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatal(err)
	}
	if got.Cube != "wiki_edits" || !reflect.DeepEqual(got.Dimensions, []string{"channel", "namespace"}) || got.Fingerprint != p.Fingerprint {
		t.Errorf("cube %q dims %v fp %q", got.Cube, got.Dimensions, got.Fingerprint)
	}
	if len(got.GroupingSets) != 3 || got.GroupingSets[0].ID != 0 || got.GroupingSets[0].Dimensions == nil || got.GroupingSets[2].ID != 3 {
		t.Errorf("grouping sets %+v", got.GroupingSets)
	}
	if len(got.Windows) != 2 || got.Windows[0].Step != "1h" || !got.Windows[0].Cumulative || got.Windows[1].EmitEvery != "10s" || got.Windows[1].Cumulative {
		t.Errorf("windows %+v", got.Windows)
	}
	if len(got.Measures) != 3 || got.Measures[2].Type != "count_distinct" || got.Measures[2].Field != "user" {
		t.Errorf("measures %+v", got.Measures)
	}
	// Every edge joins declared nodes; every node but source has an input, every node but sink
	// an output; 4 stages + 3 grouping sets + sink.
	ids := map[string]bool{}
	for _, n := range got.Nodes {
		ids[n.ID] = true
	}
	if len(got.Nodes) != 8 || !ids["gs_0"] || !ids["gs_1"] || !ids["gs_3"] {
		t.Errorf("nodes %+v", got.Nodes)
	}
	in, out := map[string]int{}, map[string]int{}
	for _, e := range got.Edges {
		if !ids[e.From] || !ids[e.To] {
			t.Errorf("edge %v joins unknown nodes", e)
		}
		out[e.From]++
		in[e.To]++
	}
	for id := range ids {
		if (id != "source" && in[id] == 0) || (id != "sink" && out[id] == 0) {
			t.Errorf("node %s is not connected (in %d, out %d)", id, in[id], out[id])
		}
	}
	if in["sink"] != 3 || out["layer1_full"] != 3 {
		t.Errorf("sink inputs %d, layer1_full outputs %d", in["sink"], out["layer1_full"])
	}
	// The DOT graph has the same nodes and edges.
	dot := p.DOT()
	for _, e := range got.Edges {
		if !strings.Contains(dot, fmt.Sprintf("  %s -> %s;\n", e.From, e.To)) {
			t.Errorf("DOT lacks edge %s -> %s", e.From, e.To)
		}
	}
	if !strings.HasPrefix(dot, "digraph ") || strings.Count(dot, "[label=") != len(got.Nodes) {
		t.Errorf("DOT:\n%s", dot)
	}
}

func TestDOTQuoting(t *testing.T) {
	c := testCube([]string{"a"}, [][]string{{"a"}})
	c.EventTime.Field = `we"ird\field`
	p, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	// The label holds the Go-quoted field "we\"ird\\field"; DOT escapes its quotes and backslashes.
	if dot := p.DOT(); !strings.Contains(dot, `event time from \"we\\\"ird\\\\field\" (`) {
		t.Errorf("label not escaped:\n%s", dot)
	}
}

// GroupingSetFor runs once per query; it allocates nothing.
func BenchmarkGroupingSetFor(b *testing.B) {
	p, err := Compile(testCube([]string{"a", "b", "c", "d"}, [][]string{{}, {"a"}, {"a", "b"}, {"a", "b", "c"}, {"b", "d"}, {"a", "b", "c", "d"}}))
	if err != nil {
		b.Fatal(err)
	}
	dims := []string{"d", "b"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.GroupingSetFor(dims); !ok {
			b.Fatal("not found")
		}
	}
}
