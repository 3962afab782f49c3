package cube

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// Compile turns a cube into its Plan: the layer-1 key (every dimension some grouping set uses),
// one layer-2 node per grouping set with its Kylin cuboid id and its projection from the layer-1
// key, the windows, the measures with their input fields resolved, and the model fingerprint.
// It is deterministic: the same cube always compiles to the same plan.
//
// Compile re-checks what it relies on, for cubes built in code rather than parsed: at most
// MaxDimensions dimensions with unique names, grouping sets that name declared dimensions once
// each and are pairwise different, measure types this release computes (count takes no field;
// the others need one), unique result column names, retention days and cohort, and day windows
// only when a measure is new_users or retention.
func Compile(c *Cube) (*Plan, error) {
	if c == nil {
		return nil, errors.New("compiling cube: the cube is nil")
	}
	if len(c.Dimensions) > MaxDimensions {
		return nil, fmt.Errorf("compiling cube %q: %d dimensions, at most %d", c.Name, len(c.Dimensions), MaxDimensions)
	}
	index := make(map[string]int, len(c.Dimensions))
	for i, d := range c.Dimensions {
		if _, dup := index[d.Name]; dup {
			return nil, fmt.Errorf("compiling cube %q: dimension %q is declared twice", c.Name, d.Name)
		}
		index[d.Name] = i
	}
	p := &Plan{Cube: c}
	var used uint32 // bit i: Cube.Dimensions[i] is in some grouping set
	ids := make([]uint16, len(c.GroupingSets))
	first := make(map[uint16]int, len(c.GroupingSets)) // cuboid id → index of its first set
	for g, names := range c.GroupingSets {
		var id uint16
		for _, name := range names {
			i, ok := index[name]
			if !ok {
				return nil, fmt.Errorf("compiling cube %q: grouping set %d names unknown dimension %q (dimensions: %s)",
					c.Name, g+1, name, strings.Join(dimensionNames(c), ", "))
			}
			if id&(1<<i) != 0 {
				return nil, fmt.Errorf("compiling cube %q: grouping set %d names dimension %q twice", c.Name, g+1, name)
			}
			id |= 1 << i
		}
		if prev, dup := first[id]; dup {
			return nil, fmt.Errorf("compiling cube %q: grouping set %d %v duplicates grouping set %d", c.Name, g+1, names, prev+1)
		}
		first[id] = g
		ids[g] = id
		used |= uint32(id)
	}
	pos := make([]int, len(c.Dimensions)) // dimension index → position in the layer-1 key
	for i := range c.Dimensions {
		pos[i] = -1
		if used&(1<<i) != 0 {
			pos[i] = len(p.Dimensions)
			p.Dimensions = append(p.Dimensions, i)
		}
	}
	for _, id := range ids {
		gs := GroupingSet{ID: id, Names: []string{}, Dims: []int{}, Project: []int{}}
		for m := uint32(id); m != 0; m &= m - 1 {
			i := bits.TrailingZeros32(m)
			gs.Names = append(gs.Names, c.Dimensions[i].Name)
			gs.Dims = append(gs.Dims, i)
			gs.Project = append(gs.Project, pos[i])
		}
		p.GroupingSets = append(p.GroupingSets, gs)
	}
	for _, w := range c.Windows {
		if w.Granularity.NominalLength() == 0 {
			return nil, fmt.Errorf("compiling cube %q: unknown window granularity %q", c.Name, w.Granularity)
		}
		if w.Step < 0 || (w.Step > 0 && w.Granularity.NominalLength()%w.Step != 0) || w.Step >= w.Granularity.NominalLength() {
			return nil, fmt.Errorf("compiling cube %q: window step %s must be 0 (tumbling) or divide %s (%s) into more than one step",
				c.Name, formatDuration(w.Step), w.Granularity.withArticle(), formatDuration(w.Granularity.NominalLength()))
		}
		p.Windows = append(p.Windows, WindowSpec{Window: w, Cumulative: w.Step > 0})
	}
	daily := false // some measure needs day windows
	for i, m := range c.Measures {
		mp := MeasurePlan{Measure: m, ValueField: -1, DistinctField: -1, Source: i}
		switch m.Type {
		case Count:
			if m.Field != "" {
				return nil, fmt.Errorf("compiling cube %q: measure %q of type count takes no field, got %q", c.Name, m.Name, m.Field)
			}
		case Sum, Min, Max, CountDistinct, NewUsers, Retention:
			if m.Field == "" {
				return nil, fmt.Errorf("compiling cube %q: measure %q of type %s needs a field", c.Name, m.Name, m.Type)
			}
			switch m.Type {
			case CountDistinct, NewUsers, Retention:
				mp.DistinctField, p.DistinctFields = indexOrAppend(p.DistinctFields, m.Field)
			default:
				mp.ValueField, p.ValueFields = indexOrAppend(p.ValueFields, m.Field)
			}
		default:
			return nil, fmt.Errorf("compiling cube %q: measure %q has type %q, which this release does not compute (supported: %s)",
				c.Name, m.Name, m.Type, measureTypeList())
		}
		if m.Type == Retention {
			if m.Days < 1 || m.Days > MaxRetentionDays {
				return nil, fmt.Errorf("compiling cube %q: retention measure %q has days %d, want 1 to %d", c.Name, m.Name, m.Days, MaxRetentionDays)
			}
			if m.Cohort != CohortActive && m.Cohort != CohortNew {
				return nil, fmt.Errorf("compiling cube %q: retention measure %q has cohort %q (valid: %s, %s)", c.Name, m.Name, m.Cohort, CohortActive, CohortNew)
			}
		} else if m.Days != 0 || m.Cohort != "" {
			return nil, fmt.Errorf("compiling cube %q: measure %q of type %s takes no days or cohort", c.Name, m.Name, m.Type)
		}
		if m.Type == NewUsers || m.Type == Retention {
			daily = true
		}
		p.Measures = append(p.Measures, mp)
		if m.Type == Retention {
			for _, part := range []RetentionPart{RetentionRetained, RetentionCohort} {
				col := mp
				col.Part = part
				col.Name = m.Name + partSuffix(part)
				p.Measures = append(p.Measures, col)
			}
		}
	}
	seen := map[string]bool{}
	for _, d := range c.Dimensions {
		seen[d.Name] = true
	}
	for _, m := range p.Measures {
		if seen[m.Name] {
			return nil, fmt.Errorf("compiling cube %q: result column %q is named twice (dimensions and measures, with a retention measure's %s and %s columns, share the result columns)",
				c.Name, m.Name, RetainedSuffix, CohortSuffix)
		}
		seen[m.Name] = true
	}
	if daily {
		for _, w := range c.Windows {
			if w.Granularity != Day {
				return nil, fmt.Errorf("compiling cube %q: measures of type new_users and retention are computed per day, but the cube has %s window (a cube with them has day windows only)",
					c.Name, w.Granularity.withArticle())
			}
		}
	}
	sum := sha256.Sum256([]byte(p.Canonical()))
	p.Fingerprint = hex.EncodeToString(sum[:])
	return p, nil
}

// partSuffix is the column-name suffix of a retention part ("" for the rate).
func partSuffix(p RetentionPart) string {
	switch p {
	case RetentionRetained:
		return RetainedSuffix
	case RetentionCohort:
		return CohortSuffix
	}
	return ""
}

// measureTypeList lists SupportedMeasureTypes, comma separated.
func measureTypeList() string {
	names := make([]string, len(SupportedMeasureTypes))
	for i, t := range SupportedMeasureTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// indexOrAppend returns the index of s in list, appending it first when absent.
func indexOrAppend(list []string, s string) (int, []string) {
	if i := slices.Index(list, s); i >= 0 {
		return i, list
	}
	return len(list), append(list, s)
}

// dimensionNames lists the cube's dimension names in declaration order.
func dimensionNames(c *Cube) []string {
	out := make([]string, len(c.Dimensions))
	for i, d := range c.Dimensions {
		out[i] = d.Name
	}
	return out
}

// Canonical returns the canonical encoding that Fingerprint hashes: one line per item that
// changes stored results, in a fixed order, strings quoted. These are the dimensions (names and
// fields, in order, since grouping-set ids and row keys follow that order), the measures (names,
// types, fields, in order), the grouping sets (ids and names), the windows (granularity and step,
// in order, since rows carry the window's index), the event time (field, format, zone,
// max_out_of_orderness, which decides which events are late, and allowed_lateness) and the cube
// time zone. A retention measure's line also carries its days and cohort. The cube name, description, source, sink table, emit_every and idle_timeout are left
// out: they change when and where rows are written, not their values.
//
// Two plans can be compared line by line to say what changed, for example when a store written
// for one fingerprint is reopened with another.
func (p *Plan) Canonical() string {
	var b strings.Builder
	c := p.Cube
	q := strconv.Quote
	b.WriteString("cubed plan fingerprint v1\n")
	fmt.Fprintf(&b, "timezone %s\n", q(c.Timezone.String()))
	et := c.EventTime
	loc := ""
	if et.Location != nil {
		loc = et.Location.String()
	}
	fmt.Fprintf(&b, "event_time field %s format %s timezone %s max_out_of_orderness %d allowed_lateness %d\n",
		q(et.Field), q(et.Format), q(loc), int64(et.MaxOutOfOrderness), int64(et.AllowedLateness))
	for i, d := range c.Dimensions {
		fmt.Fprintf(&b, "dimension %d %s field %s\n", i, q(d.Name), q(d.Field))
	}
	for i, m := range c.Measures {
		fmt.Fprintf(&b, "measure %d %s type %s field %s", i, q(m.Name), q(string(m.Type)), q(m.Field))
		if m.Type == Retention {
			fmt.Fprintf(&b, " days %d cohort %s", m.Days, q(string(m.Cohort)))
		}
		b.WriteString("\n")
	}
	for _, g := range p.GroupingSets {
		fmt.Fprintf(&b, "grouping_set %d [%s]\n", g.ID, strings.Join(g.Names, ", "))
	}
	for i, w := range p.Windows {
		fmt.Fprintf(&b, "window %d %s step %d\n", i, q(string(w.Granularity)), int64(w.Step))
	}
	return b.String()
}

// GroupingSetFor returns the grouping set whose dimensions are exactly dims, compared as sets:
// order does not matter and a name given twice counts once. ok is false when a name is not a
// dimension of the cube or no grouping set has exactly these dimensions.
func (p *Plan) GroupingSetFor(dims []string) (gs GroupingSet, ok bool) {
	var id uint16
	for _, name := range dims {
		i, ok := p.Dimension(name)
		if !ok {
			return GroupingSet{}, false
		}
		id |= 1 << i
	}
	for _, g := range p.GroupingSets {
		if g.ID == id {
			return g, true
		}
	}
	return GroupingSet{}, false
}

// Measure returns the index of the named result column in Plan.Measures: a measure's name, or
// a retention measure's numerator or denominator column.
func (p *Plan) Measure(name string) (int, bool) {
	for i, m := range p.Measures {
		if m.Name == name {
			return i, true
		}
	}
	return -1, false
}

// Dimension returns the index of the named dimension in Cube.Dimensions.
func (p *Plan) Dimension(name string) (int, bool) {
	for i, d := range p.Cube.Dimensions {
		if d.Name == name {
			return i, true
		}
	}
	return -1, false
}
