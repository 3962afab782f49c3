package cube

import (
	"encoding/json"
	"fmt"
	"strings"
)

// KeyLayout describes the primary key of every result row, as the sink encodes it.
const KeyLayout = "(window, grouping_set, window_start, window_end, dims…)"

// PlanNode is one stage of the compiled graph.
type PlanNode struct {
	// ID is "source", "decode", "layer1_preagg", "layer1_full", "gs_<cuboid id>" or "sink".
	ID string `json:"id"`
	// Kind is "source", "decode", "preagg", "full", "grouping_set" or "sink".
	Kind string `json:"kind"`
	// Layer is 1 or 2 for aggregation stages, 0 otherwise.
	Layer int `json:"layer"`
	// Label says what the stage does, in one line.
	Label string `json:"label"`
}

// PlanEdge is a data flow between two PlanNodes, by ID.
type PlanEdge struct {
	// From is the ID of the stage the data leaves.
	From string `json:"from"`
	// To is the ID of the stage the data enters.
	To string `json:"to"`
}

// Graph returns the stages of the plan and the flows between them: source → decode →
// layer1_preagg (partitioned by hash(key, salt)) → layer1_full (by hash(key)) → one gs_<id> per
// grouping set → sink. The graph is two aggregation layers deep whatever the number of grouping
// sets (the Kuaishou design); each layer-2 node pre-aggregates and fully aggregates internally.
func (p *Plan) Graph() ([]PlanNode, []PlanEdge) {
	nodes := []PlanNode{
		{ID: "source", Kind: "source", Label: p.sourceLabel()},
		{ID: "decode", Kind: "decode", Label: p.decodeLabel()},
		{ID: "layer1_preagg", Kind: "preagg", Layer: 1,
			Label: "layer 1 pre-aggregation by hash(key, salt), key (window, " + p.keyNames() + ")"},
		{ID: "layer1_full", Kind: "full", Layer: 1, Label: "layer 1 full aggregation by hash(key)"},
	}
	edges := []PlanEdge{{"source", "decode"}, {"decode", "layer1_preagg"}, {"layer1_preagg", "layer1_full"}}
	for _, g := range p.GroupingSets {
		id := gsNodeID(g)
		nodes = append(nodes, PlanNode{ID: id, Kind: "grouping_set", Layer: 2,
			Label: fmt.Sprintf("grouping set %d [%s]", g.ID, strings.Join(g.Names, ", "))})
		edges = append(edges, PlanEdge{"layer1_full", id}, PlanEdge{id, "sink"})
	}
	nodes = append(nodes, PlanNode{ID: "sink", Kind: "sink", Label: "sink: table " + p.Cube.Sink.Table + ", key " + KeyLayout})
	return nodes, edges
}

func gsNodeID(g GroupingSet) string { return fmt.Sprintf("gs_%d", g.ID) }

func (p *Plan) keyNames() string {
	names := make([]string, len(p.Dimensions))
	for i, d := range p.Dimensions {
		names[i] = p.Cube.Dimensions[d].Name
	}
	if len(names) == 0 {
		return "no dimensions"
	}
	return strings.Join(names, ", ")
}

func (p *Plan) sourceLabel() string {
	s := p.Cube.Source
	var b strings.Builder
	switch {
	case s.Kafka != nil:
		fmt.Fprintf(&b, "source: kafka topic %s (brokers %s, group %s, start %s)", s.Kafka.Topic,
			strings.Join(s.Kafka.Brokers, ","), s.Kafka.Group, s.Kafka.Start)
	case s.File != nil:
		fmt.Fprintf(&b, "source: file %s", s.File.Path)
	default:
		b.WriteString("source: none")
	}
	fmt.Fprintf(&b, ", format %s", s.Format)
	if len(s.Columns) > 0 {
		fmt.Fprintf(&b, ", columns %s", strings.Join(s.Columns, ","))
	}
	return b.String()
}

func (p *Plan) decodeLabel() string {
	et := p.Cube.EventTime
	loc := "UTC"
	if et.Location != nil {
		loc = et.Location.String()
	}
	s := fmt.Sprintf("decode: event time from %q (%s, %s); watermark = max event time - %s; allowed lateness %s",
		et.Field, et.Format, loc, formatDuration(et.MaxOutOfOrderness), formatDuration(et.AllowedLateness))
	if len(p.DistinctFields) > 0 {
		s += "; dictionary: " + strings.Join(p.DistinctFields, ", ")
	}
	return s
}

// windowLabel describes a window in one line: "day step 1h (cumulative), emit every 1m".
func windowLabel(w WindowSpec) string {
	if w.Cumulative {
		return fmt.Sprintf("%s step %s (cumulative), emit every %s", w.Granularity, formatDuration(w.Step), formatDuration(w.EmitEvery))
	}
	return fmt.Sprintf("%s (tumbling), emit every %s", w.Granularity, formatDuration(w.EmitEvery))
}

// Text returns the compiled graph for people: the stages from source to sink with the layer-1
// key and one line per grouping set (cuboid id and dimensions), then the windows, the measures,
// the key layout and the fingerprint.
func (p *Plan) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cube %s\n\ngraph\n", p.Cube.Name)
	nodes, _ := p.Graph()
	for _, n := range nodes {
		switch n.Kind {
		case "source":
			fmt.Fprintf(&b, "  %s\n", n.Label)
		case "grouping_set":
			fmt.Fprintf(&b, "       %-8s %s\n", n.ID, n.Label)
		default:
			if n.ID == "layer1_full" {
				fmt.Fprintf(&b, "  -> %s\n", n.Label)
				fmt.Fprintf(&b, "  -> layer 2, one node per grouping set fed by layer 1's deltas, each pre-aggregating by hash(gkey, salt) then by hash(gkey)\n")
				continue
			}
			fmt.Fprintf(&b, "  -> %s\n", n.Label)
		}
	}
	b.WriteString("\nwindows\n")
	for i, w := range p.Windows {
		fmt.Fprintf(&b, "  %d  %s\n", i, windowLabel(w))
	}
	b.WriteString("\nmeasures\n")
	for _, m := range p.Measures {
		switch {
		case m.Field == "":
			fmt.Fprintf(&b, "  %-16s %s\n", m.Name, m.Type)
		case m.Type == Retention:
			// retention(user) days 1 cohort active: rate | retained | cohort
			fmt.Fprintf(&b, "  %-16s %s(%s) days %d cohort %s: %s\n", m.Name, m.Type, m.Field, m.Days, m.Cohort, m.Part)
		default:
			fmt.Fprintf(&b, "  %-16s %s(%s)\n", m.Name, m.Type, m.Field)
		}
	}
	fmt.Fprintf(&b, "\nkey %s\nfingerprint %s\n", KeyLayout, p.Fingerprint)
	return b.String()
}

// planJSON is the JSON shape of a Plan; its field names are part of the HTTP API.
type planJSON struct {
	Cube         string        `json:"cube"`
	Dimensions   []string      `json:"dimensions"`
	GroupingSets []gsJSON      `json:"grouping_sets"`
	Windows      []windowJSON  `json:"windows"`
	Measures     []measureJSON `json:"measures"`
	Nodes        []PlanNode    `json:"nodes"`
	Edges        []PlanEdge    `json:"edges"`
	Fingerprint  string        `json:"fingerprint"`
}

type gsJSON struct {
	ID         uint16   `json:"id"`
	Dimensions []string `json:"dimensions"`
}

type windowJSON struct {
	Granularity Granularity `json:"granularity"`
	Step        string      `json:"step"`
	EmitEvery   string      `json:"emit_every"`
	Cumulative  bool        `json:"cumulative"`
}

type measureJSON struct {
	Name   string      `json:"name"`
	Type   MeasureType `json:"type"`
	Field  string      `json:"field"`
	Days   int         `json:"days,omitempty"`
	Cohort Cohort      `json:"cohort,omitempty"`
	Part   string      `json:"part,omitempty"`
}

// JSON returns the plan as indented JSON with the fields cube, dimensions (the layer-1 key),
// grouping_sets [{id, dimensions}], windows [{granularity, step, emit_every, cumulative}] (durations
// as Go duration text such as "1h", "0s" for a tumbling window's step), measures
// [{name, type, field}] (field "" for count; a retention measure's three result columns also
// carry days, cohort and part: rate, retained or cohort), nodes [{id, kind, layer, label}], edges [{from, to}]
// and fingerprint. Lists are never null.
func (p *Plan) JSON() ([]byte, error) {
	nodes, edges := p.Graph()
	out := planJSON{
		Cube:         p.Cube.Name,
		Dimensions:   make([]string, 0, len(p.Dimensions)),
		GroupingSets: make([]gsJSON, 0, len(p.GroupingSets)),
		Windows:      make([]windowJSON, 0, len(p.Windows)),
		Measures:     make([]measureJSON, 0, len(p.Measures)),
		Nodes:        nodes,
		Edges:        edges,
		Fingerprint:  p.Fingerprint,
	}
	for _, d := range p.Dimensions {
		out.Dimensions = append(out.Dimensions, p.Cube.Dimensions[d].Name)
	}
	for _, g := range p.GroupingSets {
		out.GroupingSets = append(out.GroupingSets, gsJSON{ID: g.ID, Dimensions: append([]string{}, g.Names...)})
	}
	for _, w := range p.Windows {
		out.Windows = append(out.Windows, windowJSON{Granularity: w.Granularity, Step: formatDuration(w.Step),
			EmitEvery: formatDuration(w.EmitEvery), Cumulative: w.Cumulative})
	}
	for _, m := range p.Measures {
		mj := measureJSON{Name: m.Name, Type: m.Type, Field: m.Field}
		if m.Type == Retention {
			mj.Days, mj.Cohort, mj.Part = m.Days, m.Cohort, m.Part.String()
		}
		out.Measures = append(out.Measures, mj)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding plan of cube %q as JSON: %w", p.Cube.Name, err)
	}
	return data, nil
}

// DOT returns the compiled graph in Graphviz's DOT language, one node per stage (source, decode,
// layer1_preagg, layer1_full, gs_<id> per grouping set, sink), left to right.
func (p *Plan) DOT() string {
	var b strings.Builder
	nodes, edges := p.Graph()
	fmt.Fprintf(&b, "digraph %s {\n  rankdir=LR;\n  node [shape=box];\n", dotQuote("cube "+p.Cube.Name))
	for _, n := range nodes {
		fmt.Fprintf(&b, "  %s [label=%s];\n", n.ID, dotQuote(n.Label))
	}
	for _, e := range edges {
		fmt.Fprintf(&b, "  %s -> %s;\n", e.From, e.To)
	}
	b.WriteString("}\n")
	return b.String()
}

// dotQuote quotes s as a DOT string: backslashes and double quotes escaped, newlines as \n.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "")
	return `"` + r.Replace(s) + `"`
}
