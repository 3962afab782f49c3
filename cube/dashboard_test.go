package cube

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDashboardsParse(t *testing.T) {
	m := mustLoad(t, "testdata/dashboards.good.yaml")
	edits, hourly := m.Cubes[0], m.Cubes[1]
	want := &Dashboard{Title: "Edits today", Panels: []Panel{
		{Type: PanelKPI, Measures: []string{"uv", "pv"}},
		{Type: PanelCumulative, Title: "Editors so far", Measure: "uv"},
		{Type: PanelBreakdown, Dimensions: []string{"country", "robot"}, Measure: "pv", Top: DefaultBreakdownTop},
		{Type: PanelBreakdown, Dimensions: []string{"channel"}, Measure: "uv", Top: 5},
	}}
	if !reflect.DeepEqual(edits.Dashboard, want) {
		t.Errorf("dashboard of edits:\n got %+v\nwant %+v", edits.Dashboard, want)
	}
	if DashboardOf(edits) != edits.Dashboard {
		t.Error("DashboardOf does not return the model's dashboard")
	}
	if hourly.Dashboard != nil {
		t.Errorf("hourly has no dashboards: entry, got %+v", hourly.Dashboard)
	}
	// hourly has neither a cumulative day window nor a day window: nothing to show.
	if got := DashboardOf(hourly); !got.Default || len(got.Panels) != 0 {
		t.Errorf("default dashboard of hourly = %+v, want no panels", got)
	}
}

// Dashboards change nothing in the results, so they are not part of the fingerprint.
func TestDashboardsLeaveFingerprint(t *testing.T) {
	raw, err := os.ReadFile("testdata/dashboards.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	without := src[:strings.Index(src, "\ndashboards:")+1]
	a, diags := Parse("a.yaml", raw)
	b, diags2 := Parse("b.yaml", []byte(without))
	if len(diags)+len(diags2) > 0 {
		t.Fatalf("%s%s", diagLines(diags), diagLines(diags2))
	}
	pa, err := Compile(a.Cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Compile(b.Cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	if pa.Fingerprint != pb.Fingerprint {
		t.Error("a dashboards: section changed the fingerprint")
	}
}

func TestDefaultDashboard(t *testing.T) {
	day := Window{Granularity: Day, Step: time.Hour}
	cases := []struct {
		name string
		c    Cube
		want []Panel
	}{
		{"design model: kpis by type, curve and breakdown of the first", Cube{
			Measures: []Measure{{Name: "pv", Type: Count}, {Name: "added", Type: Sum}, {Name: "uv", Type: CountDistinct},
				{Name: "top", Type: Max}},
			GroupingSets: [][]string{{}, {"channel"}, {"channel", "namespace"}},
			Windows:      []Window{day, {Granularity: Hour}},
		}, []Panel{
			{Type: PanelKPI, Measures: []string{"uv", "pv", "added"}},
			{Type: PanelCumulative, Measure: "uv"},
			{Type: PanelBreakdown, Dimensions: []string{"channel"}, Measure: "uv", Top: 15},
		}},
		{"only min and max: every measure is a tile; no breakdown without dimensions", Cube{
			Measures:     []Measure{{Name: "lo", Type: Min}, {Name: "hi", Type: Max}},
			GroupingSets: [][]string{{}},
			Windows:      []Window{day},
		}, []Panel{
			{Type: PanelKPI, Measures: []string{"lo", "hi"}},
			{Type: PanelCumulative, Measure: "lo"},
		}},
		{"retention measures get their panels, also from a tumbling day window", Cube{
			Measures:     []Measure{{Name: "uv", Type: CountDistinct}, {Name: "d1", Type: Retention}, {Name: "d7", Type: Retention}},
			GroupingSets: [][]string{{}},
			Windows:      []Window{{Granularity: Day}},
		}, []Panel{
			{Type: PanelRetention, Measure: "d1"},
			{Type: PanelRetention, Measure: "d7"},
		}},
		{"no grand total: nothing", Cube{
			Measures:     []Measure{{Name: "pv", Type: Count}},
			GroupingSets: [][]string{{"channel"}},
			Windows:      []Window{day},
		}, []Panel{}},
		{"no cumulative day window: nothing", Cube{
			Measures:     []Measure{{Name: "pv", Type: Count}},
			GroupingSets: [][]string{{}},
			Windows:      []Window{{Granularity: Day}, {Granularity: Week, Step: 24 * time.Hour}},
		}, []Panel{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := DashboardOf(&tc.c)
			if !got.Default || !reflect.DeepEqual(got.Panels, tc.want) {
				t.Errorf("got %+v\nwant panels %+v", got, tc.want)
			}
		})
	}
}

// Each line of dashboards.bad.yaml marked "want" carries a diagnostic, and no other line does
// (the golden file holds the messages).
func TestDashboardsMarkedLines(t *testing.T) {
	const f = "testdata/dashboards.bad.yaml"
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	_, diags := Parse(f, raw)
	byLine := map[int]int{}
	for _, d := range diags {
		byLine[d.Line]++
	}
	marked := 0
	for i, line := range strings.Split(string(raw), "\n") {
		if !wantMarker.MatchString(line) || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		marked++
		if byLine[i+1] == 0 {
			t.Errorf("line %d is marked but has no diagnostic: %s", i+1, strings.TrimSpace(line))
		}
		delete(byLine, i+1)
	}
	for line := range byLine {
		t.Errorf("diagnostic on unmarked line %d", line)
	}
	if marked < 20 {
		t.Errorf("only %d marked lines", marked)
	}
}
