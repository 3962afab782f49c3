package cube

import (
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file holds the optional dashboards: section of a model file, which chooses the panels of
// a cube's dashboard in the web UI, and the default dashboard derived from the model when a cube
// has none. Dashboards change nothing in the results: they are not part of the fingerprint.
//
//	dashboards:
//	  - cube: wikiticker
//	    title: Wikipedia edits
//	    panels:
//	      - {type: kpi, measures: [uv, pv]}
//	      - {type: cumulative, measure: pv}
//	      - {type: breakdown, dimensions: [channel], measure: uv, top: 10}
//	      - {type: retention, measure: d1}
//
// Every panel reads the cube's pre-aggregated rows through the query API, so the parser checks
// that a grouping set and a window can answer it: kpi, cumulative and breakdown panels read the
// cumulative day window (granularity day with a step), kpi, cumulative and retention panels the
// grand total (grouping set []), a breakdown the grouping set with exactly its dimensions, and a
// retention panel a day window.

// PanelType is the kind of a dashboard panel.
type PanelType string

// Panel types, in documentation order.
const (
	// PanelKPI is a row of tiles: each measure's value for the day so far against the previous
	// day at the same time of day.
	PanelKPI PanelType = "kpi"
	// PanelCumulative is the cumulative curve of one measure over the day, against the
	// previous day's.
	PanelCumulative PanelType = "cumulative"
	// PanelBreakdown is one measure of the day by the values of some dimensions: a bar chart of
	// the Top values and a sortable table of them all.
	PanelBreakdown PanelType = "breakdown"
	// PanelRetention is a retention measure by day: the cohort, the retained users and their
	// ratio, as a curve and a table.
	PanelRetention PanelType = "retention"
)

// PanelTypes lists the panel types in documentation order.
var PanelTypes = []PanelType{PanelKPI, PanelCumulative, PanelBreakdown, PanelRetention}

// DefaultBreakdownTop is the number of bars a breakdown panel shows when the model does not
// say (top:).
const DefaultBreakdownTop = 10

// MaxBreakdownTop bounds a breakdown panel's top.
const MaxBreakdownTop = 100

// Dashboard is the dashboard of one cube: its panels in display order. The JSON field names are
// part of the HTTP API (GET /api/v1/cubes).
type Dashboard struct {
	// Title heads the page; "" leaves the cube's description (or name).
	Title string `json:"title,omitempty"`
	// Panels in display order; empty when the model offers nothing a dashboard can read (see
	// DefaultDashboard).
	Panels []Panel `json:"panels"`
	// Default is set when the model has no dashboards: entry for the cube and the panels were
	// derived from the model by DefaultDashboard.
	Default bool `json:"default"`
}

// Panel is one panel of a dashboard.
type Panel struct {
	// Type is one of PanelTypes.
	Type PanelType `json:"type"`
	// Title heads the panel; "" lets the UI name it.
	Title string `json:"title,omitempty"`
	// Measures are a kpi panel's tiles, in order (at least one, each once).
	Measures []string `json:"measures,omitempty"`
	// Measure is the measure of a cumulative, breakdown or retention panel (of type retention
	// for the last).
	Measure string `json:"measure,omitempty"`
	// Dimensions are a breakdown's dimensions, as written; a grouping set has exactly these.
	Dimensions []string `json:"dimensions,omitempty"`
	// Top is the number of bars of a breakdown panel (1 … MaxBreakdownTop, default
	// DefaultBreakdownTop); the table lists every value.
	Top int `json:"top,omitempty"`
}

// Schemas of the dashboards: section. A panel is decoded with panelSchema (every panel key),
// then the keys its type does not take are reported.
var (
	dashboardSchema = &schema{where: "dashboard", keys: []string{"cube", "title", "panels"}, required: []string{"cube", "panels"}}
	panelSchema     = &schema{where: "panel", keys: []string{"type", "title", "measures", "measure", "dimensions", "top"}, required: []string{"type"}}
	// panelKeys are the keys each panel type takes besides type and title, required ones first.
	panelKeys = map[PanelType][]string{
		PanelKPI:        {"measures"},
		PanelCumulative: {"measure"},
		PanelBreakdown:  {"dimensions", "measure", "top"},
		PanelRetention:  {"measure"},
	}
	panelRequired = map[PanelType][]string{
		PanelKPI:        {"measures"},
		PanelCumulative: {"measure"},
		PanelBreakdown:  {"dimensions", "measure"},
		PanelRetention:  {"measure"},
	}
)

// dashboards decodes the model's dashboards: list against its decoded cubes and sets each named
// cube's Dashboard.
func (d *decoder) dashboards(n *yaml.Node, m *Model) {
	items, ok := d.seq(n, "dashboards")
	if !ok {
		return
	}
	byName := map[string]*Cube{}
	var names []string
	for _, c := range m.Cubes {
		if _, dup := byName[c.Name]; !dup && c.Name != "" {
			byName[c.Name] = c
			names = append(names, c.Name)
		}
	}
	first := map[string]int{} // cube name → line of its dashboard
	for _, it := range items {
		dm, ok := d.mapping(it, dashboardSchema)
		if !ok {
			continue
		}
		var c *Cube
		if v := dm.get("cube"); v != nil {
			if s, ok := d.str(v, "dashboard cube"); ok {
				switch c = byName[s]; {
				case c == nil:
					d.errorf(v, "dashboard names unknown cube %q (cubes: %s)", s, listOrNone(names))
				case first[s] != 0:
					d.errorf(v, "cube %q already has a dashboard (first at line %d)", s, first[s])
					c = nil
				default:
					first[s] = v.Line
				}
			}
		}
		db := &Dashboard{}
		if v := dm.get("title"); v != nil {
			db.Title, _ = d.str(v, "dashboard title")
		}
		if v := dm.get("panels"); v != nil {
			panels, ok := d.seq(v, "dashboard panels")
			if ok && len(panels) == 0 {
				d.errorf(v, "dashboard panels is empty (list at least one panel; leave the dashboard out for the default one)")
			}
			for _, pn := range panels {
				if p, ok := d.panel(pn, c); ok {
					db.Panels = append(db.Panels, p)
				}
			}
		}
		if c != nil {
			c.Dashboard = db
		}
	}
}

// panel decodes one panel; c is the dashboard's cube, nil when it is unknown (the panel's own
// keys are still checked, its references are not).
func (d *decoder) panel(n *yaml.Node, c *Cube) (Panel, bool) {
	pm, ok := d.mapping(n, panelSchema)
	if !ok {
		return Panel{}, false
	}
	var p Panel
	v := pm.get("type")
	if v == nil {
		return p, false
	}
	s, ok := d.str(v, "panel type")
	if !ok {
		return p, false
	}
	p.Type = PanelType(s)
	keys, known := panelKeys[p.Type]
	if !known {
		valid := make([]string, len(PanelTypes))
		for i, t := range PanelTypes {
			valid[i] = string(t)
		}
		d.errorf(v, "unknown panel type %q (valid: %s)", s, strings.Join(valid, ", "))
		return p, false
	}
	where := string(p.Type) + " panel"
	for _, k := range panelSchema.keys {
		if k == "type" || k == "title" || slices.Contains(keys, k) {
			continue
		}
		if _, given := pm.keys[k]; given {
			d.errorf(pm.keyNode(k), "a %s takes no %s (keys: type, title, %s)", where, k, strings.Join(keys, ", "))
		}
	}
	for _, k := range panelRequired[p.Type] {
		if pm.get(k) == nil {
			if kn := pm.keys[k]; kn != nil {
				d.errorf(kn, "key %q in %s needs a value", k, where)
			} else {
				d.errorf(pm.node, "missing required key %q in %s", k, where)
			}
		}
	}
	if t := pm.get("title"); t != nil {
		p.Title, _ = d.str(t, "panel title")
	}
	valid := true
	if mv := pm.get("measures"); mv != nil && p.Type == PanelKPI {
		list, nodes, ok := d.strList(mv, "kpi panel measures")
		if ok && len(resolve(mv).Content) == 0 {
			d.errorf(mv, "kpi panel measures is empty (list at least one measure)")
		}
		for i, name := range list {
			switch {
			case slices.Contains(p.Measures, name):
				d.errorf(nodes[i], "kpi panel names measure %q twice", name)
				valid = false
			case c != nil && !d.panelMeasure(nodes[i], c, where, name):
				valid = false
			default:
				p.Measures = append(p.Measures, name)
			}
		}
	}
	if mv := pm.get("measure"); mv != nil && p.Type != PanelKPI {
		if name, ok := d.str(mv, where+" measure"); ok {
			p.Measure = name
			if c != nil && !d.panelMeasure(mv, c, where, name) {
				valid = false
			} else if c != nil && p.Type == PanelRetention {
				if m := cubeMeasure(c, name); m.Type != Retention {
					d.errorf(mv, "a retention panel needs a measure of type retention; %q is of type %s (retention measures: %s)",
						name, m.Type, listOrNone(measureNamesOfType(c, Retention)))
					valid = false
				}
			}
		} else {
			valid = false
		}
	}
	if dv := pm.get("dimensions"); dv != nil && p.Type == PanelBreakdown {
		list, nodes, ok := d.strList(dv, "breakdown panel dimensions")
		switch {
		case !ok:
			valid = false
		case len(resolve(dv).Content) == 0:
			d.errorf(dv, "breakdown panel dimensions is empty (a breakdown needs at least one dimension; the totals are a kpi panel)")
			valid = false
		case len(list) == len(resolve(dv).Content) && c != nil:
			valid = d.breakdown(dv, list, nodes, c) && valid
		}
		p.Dimensions = list
	}
	if p.Type == PanelBreakdown {
		p.Top = DefaultBreakdownTop
		if tv := pm.get("top"); tv != nil {
			top, err := strconv.Atoi(tv.Value)
			if tv.Kind != yaml.ScalarNode || tv.ShortTag() != "!!int" || err != nil || top < 1 || top > MaxBreakdownTop {
				d.errorf(tv, "breakdown panel top must be a whole number from 1 to %d, got %s", MaxBreakdownTop, kindName(tv))
				valid = false
			} else {
				p.Top = top
			}
		}
	}
	if c != nil {
		valid = d.panelSources(v, c, p.Type) && valid
	}
	return p, valid
}

// panelMeasure reports (at n) a measure name that the cube does not declare.
func (d *decoder) panelMeasure(n *yaml.Node, c *Cube, where, name string) bool {
	if cubeMeasure(c, name) != nil {
		return true
	}
	names := make([]string, len(c.Measures))
	for i, m := range c.Measures {
		names[i] = m.Name
	}
	d.errorf(n, "%s names unknown measure %q (measures: %s)", where, name, listOrNone(names))
	return false
}

// breakdown checks a breakdown's dimensions: declared, each once, and exactly the dimensions of
// one grouping set (queries are answered by the grouping set whose dimensions are exactly
// theirs, never by rolling up a larger one).
func (d *decoder) breakdown(n *yaml.Node, dims []string, nodes []*yaml.Node, c *Cube) bool {
	declared := dimensionNames(c)
	ok := true
	for i, s := range dims {
		switch {
		case !slices.Contains(declared, s):
			d.errorf(nodes[i], "breakdown panel names unknown dimension %q (dimensions: %s)", s, listOrNone(declared))
			ok = false
		case slices.Index(dims, s) != i:
			d.errorf(nodes[i], "breakdown panel names dimension %q twice", s)
			ok = false
		}
	}
	if !ok {
		return false
	}
	for _, gs := range c.GroupingSets {
		if len(gs) == len(dims) && !slices.ContainsFunc(dims, func(s string) bool { return !slices.Contains(gs, s) }) {
			return true
		}
	}
	// Name the set to add in model order, as grouping sets are listed.
	var want []string
	for _, s := range declared {
		if slices.Contains(dims, s) {
			want = append(want, s)
		}
	}
	d.errorf(n, "no grouping set answers a breakdown by [%s]: add the grouping set [%s] (grouping sets: %s)",
		strings.Join(dims, ", "), strings.Join(want, ", "), groupingSetList(c.GroupingSets))
	return false
}

// panelSources reports (at the panel's type node n) a window or grand total that a panel of
// type t reads and the cube lacks.
func (d *decoder) panelSources(n *yaml.Node, c *Cube, t PanelType) bool {
	ok := true
	switch t {
	case PanelKPI, PanelCumulative, PanelBreakdown:
		if _, found := cumulativeDay(c.Windows); !found {
			d.errorf(n, "a %s panel reads the cube's cumulative day window, which cube %q does not have (add a window such as {granularity: day, step: 1h}; windows: %s)",
				t, c.Name, windowList(c.Windows))
			ok = false
		}
	case PanelRetention:
		if !slices.ContainsFunc(c.Windows, func(w Window) bool { return w.Granularity == Day }) {
			d.errorf(n, "a retention panel reads a day window, which cube %q does not have (windows: %s)", c.Name, windowList(c.Windows))
			ok = false
		}
	}
	if t != PanelBreakdown && !slices.ContainsFunc(c.GroupingSets, func(gs []string) bool { return len(gs) == 0 }) {
		d.errorf(n, "a %s panel reads the grand total, which cube %q does not materialise (add the grouping set []; grouping sets: %s)",
			t, c.Name, groupingSetList(c.GroupingSets))
		ok = false
	}
	return ok
}

// cubeMeasure returns the cube's measure called name, or nil.
func cubeMeasure(c *Cube, name string) *Measure {
	for i := range c.Measures {
		if c.Measures[i].Name == name {
			return &c.Measures[i]
		}
	}
	return nil
}

// measureNamesOfType lists the names of the cube's measures of type t, in declaration order.
func measureNamesOfType(c *Cube, t MeasureType) []string {
	var out []string
	for _, m := range c.Measures {
		if m.Type == t {
			out = append(out, m.Name)
		}
	}
	return out
}

// cumulativeDay returns the first cumulative day window, the one dashboards read.
func cumulativeDay(ws []Window) (Window, bool) {
	for _, w := range ws {
		if w.Granularity == Day && w.Step > 0 {
			return w, true
		}
	}
	return Window{}, false
}

// listOrNone joins names with commas, or says "none".
func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// groupingSetList prints grouping sets as "[], [channel], [channel, namespace]".
func groupingSetList(sets [][]string) string {
	if len(sets) == 0 {
		return "none"
	}
	out := make([]string, len(sets))
	for i, gs := range sets {
		out[i] = "[" + strings.Join(gs, ", ") + "]"
	}
	return strings.Join(out, ", ")
}

// windowList prints windows by their labels: "day/1h, hour".
func windowList(ws []Window) string {
	if len(ws) == 0 {
		return "none"
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Label()
	}
	return strings.Join(out, ", ")
}

// kpiTypes are the measure types a default dashboard shows as KPI tiles, in this order (min and
// max are left to the explorer: a day's extreme says little next to the previous day's).
var kpiTypes = []MeasureType{CountDistinct, Count, NewUsers, Retention, Sum}

// defaultDashboardTop is the number of bars of a default dashboard's breakdown.
const defaultDashboardTop = 15

// DefaultDashboard derives a dashboard from the cube's model, for cubes without a dashboards:
// entry. When the cube has a cumulative day window and the grouping set [] it holds:
//
//   - a kpi panel with the measures of type count_distinct, count, new_users, retention and sum
//     in this order (every measure when there are none of these types);
//   - a cumulative panel of the first of them;
//   - a breakdown panel by the first grouping set with dimensions, of the same measure, with 15
//     bars;
//   - a retention panel per measure of type retention.
//
// Without that window or that grouping set only the retention panels are possible (when the cube
// has a day window and the grouping set []); otherwise the dashboard has no panels and the UI
// points to the explorer. Default is set on the result.
func DefaultDashboard(c *Cube) *Dashboard {
	db := &Dashboard{Default: true, Panels: []Panel{}}
	hasTotal := slices.ContainsFunc(c.GroupingSets, func(gs []string) bool { return len(gs) == 0 })
	_, hasCumulative := cumulativeDay(c.Windows)
	if hasTotal && hasCumulative {
		var kpis []string
		for _, t := range kpiTypes {
			kpis = append(kpis, measureNamesOfType(c, t)...)
		}
		if len(kpis) == 0 {
			for _, m := range c.Measures {
				kpis = append(kpis, m.Name)
			}
		}
		if len(kpis) > 0 {
			db.Panels = append(db.Panels, Panel{Type: PanelKPI, Measures: kpis}, Panel{Type: PanelCumulative, Measure: kpis[0]})
			for _, gs := range c.GroupingSets {
				if len(gs) > 0 {
					db.Panels = append(db.Panels, Panel{Type: PanelBreakdown, Dimensions: slices.Clone(gs), Measure: kpis[0], Top: defaultDashboardTop})
					break
				}
			}
		}
	}
	if hasTotal && slices.ContainsFunc(c.Windows, func(w Window) bool { return w.Granularity == Day }) {
		for _, name := range measureNamesOfType(c, Retention) {
			db.Panels = append(db.Panels, Panel{Type: PanelRetention, Measure: name})
		}
	}
	return db
}

// DashboardOf returns the cube's dashboard: the model's (Cube.Dashboard) when it has one, else
// DefaultDashboard.
func DashboardOf(c *Cube) *Dashboard {
	if c.Dashboard != nil {
		return c.Dashboard
	}
	return DefaultDashboard(c)
}
