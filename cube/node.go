package cube

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file is the small layer over yaml.Node that the model decoder is written in: a decoder
// that collects diagnostics instead of stopping at the first one, a schema that declares the keys
// a mapping may hold (so that "unknown key ... (valid: ...)" is produced in one place, like
// benthos' docs fields), and typed readers for scalars, sequences and durations that report a
// wrong YAML type at the node that has it.

// decoder walks a yaml.Node tree and collects every problem it meets.
type decoder struct {
	file  string
	diags []Diagnostic
	// totalSets counts the grouping sets of the cubes decoded so far (see MaxModelGroupingSets).
	totalSets int
}

// errorf records a diagnostic at n (1:1 when n is nil or carries no position).
func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line = n.Line
		if n.Column > 0 {
			col = n.Column
		}
	}
	d.diags = append(d.diags, Diagnostic{File: d.file, Line: line, Col: col, Message: fmt.Sprintf(format, args...)})
}

// schema declares the keys of one kind of mapping.
type schema struct {
	// where names the mapping in messages: "sink", "source.kafka", "cube".
	where string
	// keys are the valid keys, in documentation order (the order messages list them in).
	keys []string
	// required keys must be present with a non-null value.
	required []string
	// unsupported maps keys reserved for a later release to the message they produce.
	unsupported map[string]string
}

// mapping is a decoded YAML mapping: its values by key, with null values left out.
type mapping struct {
	node   *yaml.Node
	values map[string]*yaml.Node
	keys   map[string]*yaml.Node
}

// get returns the value of key, or nil when the key is absent or null. Aliases are resolved.
func (m mapping) get(key string) *yaml.Node { return m.values[key] }

// keyNode returns the node of key itself (for diagnostics about the key), or the mapping when the
// key is absent.
func (m mapping) keyNode(key string) *yaml.Node {
	if k := m.keys[key]; k != nil {
		return k
	}
	return m.node
}

// maxMergeDepth bounds nested YAML merge keys ("<<"), which may otherwise form cycles.
const maxMergeDepth = 8

// mapping decodes n as a mapping with the keys of s. It reports a node that is not a mapping,
// keys that are not strings, duplicate keys, unknown and unsupported keys, and missing required
// keys; ok is false only when n is not a mapping at all. YAML merge keys ("<<: *base") are
// honoured: explicit keys win over merged ones.
func (d *decoder) mapping(n *yaml.Node, s *schema) (m mapping, ok bool) {
	n = resolve(n)
	m = mapping{node: n, values: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	if n == nil || n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, got %s", s.where, kindName(n))
		return m, false
	}
	d.collect(n, s, m, 0, true)
	for _, k := range s.required {
		if m.values[k] == nil {
			if kn := m.keys[k]; kn != nil {
				d.errorf(kn, "key %q in %s needs a value", k, s.where)
			} else {
				d.errorf(n, "missing required key %q in %s", k, s.where)
			}
		}
	}
	return m, true
}

// collect adds the entries of mapping n to m; explicit entries first, then merged ones that do
// not override them.
func (d *decoder) collect(n *yaml.Node, s *schema, m mapping, depth int, explicit bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolve(n.Content[i]), n.Content[i+1]
		if kn == nil || kn.Kind != yaml.ScalarNode {
			d.errorf(kn, "a key in %s must be a string, got %s", s.where, kindName(kn))
			continue
		}
		if kn.ShortTag() == "!!merge" {
			merges = append(merges, vn)
			continue
		}
		key := kn.Value
		if msg, ok := s.unsupported[key]; ok {
			d.errorf(kn, "%s", msg)
			continue
		}
		if !slices.Contains(s.keys, key) {
			d.errorf(kn, "unknown key %q in %s (valid: %s)", key, s.where, strings.Join(s.keys, ", "))
			continue
		}
		if prev, dup := m.keys[key]; dup {
			if explicit {
				d.errorf(kn, "duplicate key %q in %s (first at line %d)", key, s.where, prev.Line)
			}
			continue
		}
		m.keys[key] = kn
		if v := resolve(vn); !isNull(v) {
			m.values[key] = v
		}
	}
	for _, mv := range merges {
		mv = resolve(mv)
		if depth >= maxMergeDepth {
			d.errorf(mv, "merge keys in %s nest deeper than %d", s.where, maxMergeDepth)
			continue
		}
		var sources []*yaml.Node
		switch {
		case mv != nil && mv.Kind == yaml.MappingNode:
			sources = []*yaml.Node{mv}
		case mv != nil && mv.Kind == yaml.SequenceNode:
			sources = mv.Content
		}
		if sources == nil {
			d.errorf(mv, "merge key in %s needs a mapping or a list of mappings, got %s", s.where, kindName(mv))
			continue
		}
		for _, src := range sources {
			src = resolve(src)
			if src == nil || src.Kind != yaml.MappingNode {
				d.errorf(src, "merge key in %s needs a mapping or a list of mappings, got %s", s.where, kindName(src))
				continue
			}
			d.collect(src, s, m, depth+1, false)
		}
	}
}

// maxAliasHops bounds alias chains while resolving a node.
const maxAliasHops = 8

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxAliasHops; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or a YAML null (~, null, or nothing).
func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// kindName names the YAML kind of n for messages.
func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n == nil:
		return "nothing"
	case isNull(n):
		return "null"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", n.Value)
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias chain"
	}
	return "an unknown YAML node"
}

// str reads a scalar as text. Any scalar but null is accepted (a topic may be 123).
func (d *decoder) str(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, "%s must be a string, got %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

// seq reads a sequence and returns its items with aliases resolved.
func (d *decoder) seq(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list, got %s", what, kindName(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items, true
}

// strList reads a sequence of strings; an item that is not a string is reported and left out of
// both returned slices, which stay parallel.
func (d *decoder) strList(n *yaml.Node, what string) ([]string, []*yaml.Node, bool) {
	items, ok := d.seq(n, what)
	if !ok {
		return nil, nil, false
	}
	out := make([]string, 0, len(items))
	nodes := make([]*yaml.Node, 0, len(items))
	for i, it := range items {
		s, ok := d.str(it, fmt.Sprintf("item %d of %s", i+1, what))
		if ok {
			out = append(out, s)
			nodes = append(nodes, it)
		}
	}
	return out, nodes, true
}

// duration reads a duration: a Go duration (time.ParseDuration: 90s, 1h30m) optionally led by
// whole days with a d suffix (1d, 2d12h).
func (d *decoder) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := d.str(n, what)
	if !ok {
		return 0, false
	}
	v, err := parseDuration(s)
	if err != nil {
		d.errorf(n, "%s: bad duration %q (use a Go duration such as 30s, 10m, 1h, or days such as 1d): %v", what, s, err)
		return 0, false
	}
	return v, true
}

// parseDuration parses time.ParseDuration's syntax plus a leading count of days ("1d", "2d12h").
// No Go duration unit contains the letter d, so the first d ends the day count.
func parseDuration(s string) (time.Duration, error) {
	i := strings.IndexByte(s, 'd')
	if i < 0 {
		return time.ParseDuration(s)
	}
	days, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("day count %q is not a whole number", s[:i])
	}
	const maxDays = int64(1<<63-1) / int64(24*time.Hour)
	if days > maxDays || days < -maxDays {
		return 0, fmt.Errorf("%d days overflows a duration", days)
	}
	total := time.Duration(days) * 24 * time.Hour
	if rest := s[i+1:]; rest != "" {
		if rest[0] == '+' || rest[0] == '-' {
			return 0, fmt.Errorf("sign %q after the day count", rest[:1])
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, err
		}
		if days < 0 {
			r = -r
		}
		sum := total + r
		if (r > 0 && sum < total) || (r < 0 && sum > total) {
			return 0, fmt.Errorf("%q overflows a duration", s)
		}
		total = sum
	}
	return total, nil
}

// formatDuration prints d the short way: 1h rather than 1h0m0s, 24h for a day.
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
