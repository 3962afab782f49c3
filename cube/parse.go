package cube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	// Embed the IANA time zone database so that a model's zones load the same way on every
	// machine, including minimal containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"go.yaml.in/yaml/v3"
)

// String returns the diagnostic as FILE:LINE:COL: message (the FILE part is left out when File
// is empty), the form editors and CI logs link to.
func (d Diagnostic) String() string {
	if d.File == "" {
		return fmt.Sprintf("%d:%d: %s", d.Line, d.Col, d.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Message)
}

// Error returns the same text as String, so a Diagnostic can travel as an error.
func (d Diagnostic) Error() string { return d.String() }

// Defaults filled in by Parse for keys a model leaves out.
const (
	DefaultMaxOutOfOrderness = 5 * time.Second
	DefaultAllowedLateness   = time.Duration(0)
	DefaultIdleTimeout       = 30 * time.Second
	// DefaultMaxDrift is how far one Kafka partition's event time may run ahead of the slowest
	// one before it is held back (watermark alignment).
	DefaultMaxDrift   = 5 * time.Minute
	DefaultEmitEvery  = time.Minute
	DefaultKafkaStart = "earliest"
	// DefaultGroupPrefix is put before the cube name to make the default consumer group.
	DefaultGroupPrefix = "cubed-"
)

// MaxCubeDimensions bounds the dimensions of a `cube:` grouping-set shorthand, which expands to
// 2^n grouping sets.
const MaxCubeDimensions = 12

// MaxModelGroupingSets bounds the grouping sets of all the cubes of one model file together, so
// that a small file cannot make the parser expand millions of cuboids (cube lists repeated
// through YAML aliases).
const MaxModelGroupingSets = 1 << 16

// ReservedNames are the result columns a dimension or measure may not be named after.
var ReservedNames = []string{"window_start", "window_end", "granularity", "grouping_set", "version"}

// SupportedMeasureTypes lists the measure types this release computes, in documentation order.
var SupportedMeasureTypes = []MeasureType{Count, Sum, Min, Max, CountDistinct, NewUsers, Retention}

// Granularities lists the window granularities in documentation order.
var Granularities = []Granularity{Minute, Hour, Day, Week}

// NominalLength is the length of a granularity ignoring daylight-saving changes: 1m, 1h, 24h,
// 168h; 0 for an unknown granularity. A cumulative window's step must divide it.
func (g Granularity) NominalLength() time.Duration {
	switch g {
	case Minute:
		return time.Minute
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	case Week:
		return 7 * 24 * time.Hour
	}
	return 0
}

// withArticle returns "a day", "an hour".
func (g Granularity) withArticle() string {
	if g == Hour {
		return "an hour"
	}
	return "a " + string(g)
}

// LoadFile reads the model file at path and parses it like Parse, with path as the FILE of every
// diagnostic. A relative source.file.path, and the relative files of sink.clickhouse.tls, are
// resolved against the folder of path and made absolute (as Prometheus resolves the files a
// config names). The error is only for reading the
// file; problems in the model are diagnostics.
func LoadFile(path string) (*Model, []Diagnostic, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading cube model: %w", err)
	}
	m, diags := Parse(path, data)
	if m == nil {
		return nil, diags, nil
	}
	dir := filepath.Dir(path)
	for _, c := range m.Cubes {
		if f := c.Source.File; f != nil && !filepath.IsAbs(f.Path) {
			abs, err := filepath.Abs(filepath.Join(dir, f.Path))
			if err != nil {
				return nil, nil, fmt.Errorf("resolving source path %q of cube %q against %q: %w", f.Path, c.Name, dir, err)
			}
			f.Path = abs
		}
		if ch := c.Sink.ClickHouse; ch != nil && ch.TLS != nil {
			for _, p := range []*string{&ch.TLS.CAFile, &ch.TLS.CertFile, &ch.TLS.KeyFile} {
				if *p != "" && !filepath.IsAbs(*p) {
					abs, err := filepath.Abs(filepath.Join(dir, *p))
					if err != nil {
						return nil, nil, fmt.Errorf("resolving sink.clickhouse.tls path %q of cube %q against %q: %w", *p, c.Name, dir, err)
					}
					*p = abs
				}
			}
		}
	}
	return m, nil, nil
}

// Parse decodes and validates a model file. file names the input in diagnostics. Every problem is
// reported, each with its line and column, sorted by position; a non-empty result means the model
// is invalid and the returned Model is nil. A valid Model has every default filled in.
// Relative file paths are kept as written (LoadFile resolves them).
func Parse(file string, data []byte) (*Model, []Diagnostic) {
	d := &decoder{file: file}
	var m *Model
	if root := d.document(data); root != nil {
		m = d.model(root)
	}
	if len(d.diags) > 0 {
		return nil, d.sorted()
	}
	m.Path = file
	return m, nil
}

// sorted returns the diagnostics ordered by line and column (stable, so that problems found at
// one position keep the order they were found in), without exact repeats (a merged mapping is
// checked once per mapping that merges it).
func (d *decoder) sorted() []Diagnostic {
	out := slices.Clone(d.diags)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Col < out[j].Col
	})
	return slices.CompactFunc(out, func(a, b Diagnostic) bool { return a == b })
}

// syntaxLine finds the line in a yaml syntax error ("yaml: line 3: did not find expected key").
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// document decodes data into its root node; nil after a diagnostic when it cannot.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(nil, "the model is empty (expected keys: version, cubes)")
		} else {
			d.syntaxError(err)
		}
		return nil
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if isNull(resolve(root)) {
		d.errorf(&doc, "the model is empty (expected keys: version, cubes)")
		return nil
	}
	var next yaml.Node
	switch err := decodeNode(dec, &next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
	default:
		d.errorf(&next, "a model file holds one YAML document; this is a second one")
	}
	return root
}

// decodeNode runs the yaml decoder, turning a panic inside it into an error so that one odd
// input cannot take down a server that lints models.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// parserProblems are the problems yaml's parser (not its scanner) reports. For these, yaml.v3
// prints the 0-based line of the construct being parsed (go-yaml/yaml#205: it adds 1 only for
// scanner errors), so the diagnostic adds the missing 1.
var parserProblems = []string{
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected '-' indicator", "did not find expected <document start>",
	"did not find expected <stream-start>", "did not find expected key",
	"did not find expected node content", "found duplicate %TAG directive",
	"found duplicate %YAML directive", "found incompatible YAML document", "found undefined tag handle",
}

// syntaxError records a yaml decoding error at the line it names (1 when it names none), with
// yaml's off-by-one for parser errors corrected.
func (d *decoder) syntaxError(err error) {
	msg, line := err.Error(), 1
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		if l, err := strconv.Atoi(m[1]); err == nil && l > 0 {
			line = l
			if slices.Contains(parserProblems, msg) {
				line++
			}
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.diags = append(d.diags, Diagnostic{File: d.file, Line: line, Col: 1, Message: "YAML syntax error: " + msg})
}

// Schemas of the model's mappings.
var (
	modelSchema = &schema{where: "model", keys: []string{"version", "cubes", "dashboards"}, required: []string{"version", "cubes"}}
	cubeSchema  = &schema{where: "cube",
		keys: []string{"name", "description", "source", "event_time", "timezone", "dimensions", "measures",
			"grouping_sets", "cube", "rollup", "windows", "sink", "checkpoint_every", "state"},
		required: []string{"name", "source", "event_time", "measures", "windows"}}
	sourceSchema    = &schema{where: "source", keys: []string{"kafka", "file", "format", "columns"}}
	kafkaSchema     = &schema{where: "source.kafka", keys: []string{"brokers", "topic", "group", "start"}, required: []string{"brokers", "topic"}}
	fileSchema      = &schema{where: "source.file", keys: []string{"path"}, required: []string{"path"}}
	eventTimeSchema = &schema{where: "event_time",
		keys:     []string{"field", "format", "timezone", "max_out_of_orderness", "allowed_lateness", "idle_timeout", "max_drift"},
		required: []string{"field"}}
	dimensionSchema  = &schema{where: "dimension", keys: []string{"name", "field"}, required: []string{"name"}}
	measureSchema    = &schema{where: "measure", keys: []string{"name", "type", "field", "days", "cohort"}, required: []string{"name", "type"}}
	windowSchema     = &schema{where: "window", keys: []string{"granularity", "step", "emit_every"}, required: []string{"granularity"}}
	sinkSchema       = &schema{where: "sink", keys: []string{"table", "retention", "embedded", "clickhouse"}}
	clickhouseSchema = &schema{where: "sink.clickhouse",
		keys: []string{"addr", "database", "table", "username", "password", "password_env", "tls", "create_tables", "compression"}}
	clickhouseTLSSchema = &schema{where: "sink.clickhouse.tls",
		keys: []string{"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}}
)

// model decodes the root mapping.
func (d *decoder) model(root *yaml.Node) *Model {
	mm, ok := d.mapping(root, modelSchema)
	if !ok {
		return nil
	}
	m := &Model{}
	if v := mm.get("version"); v != nil {
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" && v.Value == "1" {
			m.Version = 1
		} else {
			d.errorf(v, "version must be 1, got %s", kindName(v))
		}
	}
	v := mm.get("cubes")
	if v == nil {
		return m
	}
	items, ok := d.seq(v, "cubes")
	if !ok {
		return m
	}
	if len(items) == 0 {
		d.errorf(v, "cubes is empty (a model needs at least one cube)")
	}
	names := map[string]int{}     // cube name → line
	tables := map[string]string{} // sink table → cube name
	for _, it := range items {
		c, nameNode := d.cube(it)
		if c == nil {
			continue
		}
		m.Cubes = append(m.Cubes, c)
		if nameNode == nil {
			continue
		}
		if line, dup := names[c.Name]; dup {
			d.errorf(nameNode, "duplicate cube name %q (first at line %d)", c.Name, line)
			continue
		}
		names[c.Name] = nameNode.Line
		if other, dup := tables[c.Sink.Table]; dup {
			d.errorf(nameNode, "cube %q writes to sink table %q, which cube %q already writes to", c.Name, c.Sink.Table, other)
		} else {
			tables[c.Sink.Table] = c.Name
		}
	}
	if v := mm.get("dashboards"); v != nil {
		d.dashboards(v, m)
	}
	return m
}

// isName reports whether s matches [a-z][a-z0-9_]*.
func isName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isTable reports whether s is a plain SQL identifier, [A-Za-z_][A-Za-z0-9_]*.
func isTable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		if !letter && !(i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// column tracks a dimension or measure name, which share the result columns.
type column struct {
	kind string // "dimension" or "measure"
	line int
	of   string // for a retention measure's numerator or denominator column, the measure's name
}

// cube decodes one cube; nil when it is not a mapping. nameNode is the name's node when the cube
// has a valid name.
func (d *decoder) cube(n *yaml.Node) (c *Cube, nameNode *yaml.Node) {
	cm, ok := d.mapping(n, cubeSchema)
	if !ok {
		return nil, nil
	}
	c = &Cube{Timezone: time.UTC}
	if v := cm.get("name"); v != nil {
		if s, ok := d.str(v, "cube name"); ok {
			c.Name = s
			if isName(s) {
				nameNode = v
			} else {
				d.errorf(v, "cube name %q must match [a-z][a-z0-9_]*", s)
			}
		}
	}
	if v := cm.get("description"); v != nil {
		c.Description, _ = d.str(v, "description")
	}
	if v := cm.get("checkpoint_every"); v != nil {
		if dur, ok := d.duration(v, "checkpoint_every"); ok {
			if dur <= 0 {
				d.errorf(v, "checkpoint_every must be > 0, got %s", v.Value)
			}
			c.CheckpointEvery = dur
		}
	}
	if v := cm.get("state"); v != nil {
		d.state(v, c)
	}
	if v := cm.get("source"); v != nil {
		d.source(v, c)
	}
	if v := cm.get("event_time"); v != nil {
		d.eventTime(v, c)
	}
	if v := cm.get("timezone"); v != nil {
		if loc, ok := d.zone(v, "timezone"); ok {
			c.Timezone = loc
		}
	}
	cols := map[string]column{}
	var unusable map[string]bool
	if v := cm.get("dimensions"); v != nil {
		unusable = d.dimensions(v, c, cols)
	}
	if v := cm.get("measures"); v != nil {
		d.measures(v, c, cols)
	}
	d.groupingSets(cm, c, unusable)
	if v := cm.get("windows"); v != nil {
		d.dailyOnly(c, d.windows(v, c))
	}
	c.Sink.Table = c.Name
	if v := cm.get("sink"); v != nil {
		if sm, ok := d.mapping(v, sinkSchema); ok {
			if t := sm.get("table"); t != nil {
				if s, ok := d.str(t, "sink table"); ok {
					c.Sink.Table = s
					if !isTable(s) {
						d.errorf(t, "sink table %q must match [A-Za-z_][A-Za-z0-9_]*", s)
					}
				}
			}
			if r := sm.get("retention"); r != nil {
				if v, ok := d.duration(r, "sink retention"); ok {
					if v < 0 {
						d.errorf(r, "sink retention must not be negative (0 keeps results forever)")
					}
					c.Sink.Retention = v
				}
			}
			if ch := sm.get("clickhouse"); ch != nil {
				d.clickhouse(ch, c)
			}
			if e := sm.get("embedded"); e != nil {
				if on, ok := d.boolean(e, "sink.embedded"); ok && !on {
					c.Sink.NoEmbedded = true
					switch {
					case sm.get("clickhouse") == nil:
						d.errorf(e, "sink.embedded is false but there is no sink.clickhouse: the results would go nowhere")
					case sm.get("retention") != nil:
						d.errorf(e, "sink.retention applies to the embedded store, which sink.embedded: false turns off")
					}
				}
			}
		}
	}
	return c, nameNode
}

// clickhouse decodes sink.clickhouse; it runs after the dimensions and measures are decoded.
func (d *decoder) clickhouse(n *yaml.Node, c *Cube) {
	m, ok := d.mapping(n, clickhouseSchema)
	if !ok {
		return
	}
	ch := &ClickHouseSink{Addr: DefaultClickHouseAddr, Database: "default", Table: c.Sink.Table,
		Username: "default", CreateTables: true, Compression: CompressionAuto}
	strField := func(key string, dst *string) *yaml.Node {
		v := m.get(key)
		if v == nil {
			return nil
		}
		if s, ok := d.str(v, "sink.clickhouse."+key); ok {
			*dst = s
			return v
		}
		return nil
	}
	if v := strField("addr", &ch.Addr); v != nil {
		if _, port, err := net.SplitHostPort(ch.Addr); err != nil || port == "" {
			d.errorf(v, "sink.clickhouse.addr %q must be host:port (the native protocol port, usually 9000)", ch.Addr)
		}
	}
	for _, k := range []struct {
		key string
		dst *string
	}{{"database", &ch.Database}, {"table", &ch.Table}} {
		if v := strField(k.key, k.dst); v != nil && !isTable(*k.dst) {
			d.errorf(v, "sink.clickhouse.%s %q must match [A-Za-z_][A-Za-z0-9_]*", k.key, *k.dst)
		}
	}
	if v := strField("username", &ch.Username); v != nil && ch.Username == "" {
		d.errorf(v, "sink.clickhouse.username is empty (leave it out for \"default\")")
	}
	strField("password", &ch.Password)
	if v := strField("password_env", &ch.PasswordEnv); v != nil {
		if ch.PasswordEnv == "" {
			d.errorf(v, "sink.clickhouse.password_env is empty (name an environment variable)")
		} else if m.get("password") != nil {
			d.errorf(v, "sink.clickhouse has both password and password_env (give at most one)")
		}
	}
	if v := m.get("create_tables"); v != nil {
		if b, ok := d.boolean(v, "sink.clickhouse.create_tables"); ok {
			ch.CreateTables = b
		}
	}
	if v := m.get("tls"); v != nil {
		ch.TLS = d.clickhouseTLS(v)
	}
	compressions := []string{CompressionAuto, CompressionNone, CompressionLZ4, CompressionZSTD}
	if v := strField("compression", &ch.Compression); v != nil && !slices.Contains(compressions, ch.Compression) {
		d.errorf(v, "sink.clickhouse.compression %q is not one of %s", ch.Compression, strings.Join(compressions, ", "))
	}
	for _, col := range ClickHouseColumns {
		if slices.Contains(ReservedNames, col) {
			continue // already refused for every sink
		}
		for _, dim := range c.Dimensions {
			if dim.Name == col {
				d.errorf(n, "dimension %q has the name of a column every ClickHouse result table has (reserved: %s)", col, strings.Join(ClickHouseColumns, ", "))
			}
		}
		for _, ms := range c.Measures {
			for _, name := range resultColumns(ms) {
				if name == col {
					d.errorf(n, "measure %q has the name of a column every ClickHouse result table has (reserved: %s)", col, strings.Join(ClickHouseColumns, ", "))
				}
			}
		}
	}
	c.Sink.ClickHouse = ch
}

// boolean reads a YAML boolean scalar.
func (d *decoder) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
	}
	d.errorf(n, "%s must be true or false, got %s", what, kindName(n))
	return false, false
}

// clickhouseTLS decodes sink.clickhouse.tls: true, false, or a mapping (which turns TLS on).
func (d *decoder) clickhouseTLS(n *yaml.Node) *ClickHouseTLS {
	if n.Kind != yaml.MappingNode {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, "sink.clickhouse.tls must be true, false or a mapping (keys: %s), got %s",
				strings.Join(clickhouseTLSSchema.keys, ", "), kindName(n))
			return nil
		}
		if on, _ := d.boolean(n, "sink.clickhouse.tls"); !on {
			return nil
		}
		return &ClickHouseTLS{}
	}
	m, ok := d.mapping(n, clickhouseTLSSchema)
	if !ok {
		return nil
	}
	t := &ClickHouseTLS{}
	for _, k := range []struct {
		key string
		dst *string
	}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}, {"server_name", &t.ServerName}} {
		if v := m.get(k.key); v != nil {
			if s, ok := d.str(v, "sink.clickhouse.tls."+k.key); ok {
				if s == "" {
					d.errorf(v, "sink.clickhouse.tls.%s is empty (leave it out for the default)", k.key)
				}
				*k.dst = s
			}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		d.errorf(n, "sink.clickhouse.tls needs both cert_file and key_file (the client certificate and its key), or neither")
	}
	if v := m.get("insecure_skip_verify"); v != nil {
		if b, ok := d.boolean(v, "sink.clickhouse.tls.insecure_skip_verify"); ok && b {
			t.InsecureSkipVerify = true
			if t.CAFile != "" || t.ServerName != "" {
				d.errorf(v, "sink.clickhouse.tls.insecure_skip_verify verifies nothing, so ca_file and server_name would be ignored (give one or the other)")
			}
		}
	}
	return t
}

// source decodes source.
func (d *decoder) source(n *yaml.Node, c *Cube) {
	sm, ok := d.mapping(n, sourceSchema)
	if !ok {
		return
	}
	kn, fn := sm.get("kafka"), sm.get("file")
	switch {
	case kn != nil && fn != nil:
		d.errorf(sm.keyNode("file"), "source has both kafka and file (give exactly one)")
	case kn == nil && fn == nil:
		d.errorf(sm.node, "source needs one of kafka, file")
	}
	if kn != nil {
		d.kafka(kn, c)
	}
	if fn != nil {
		if fm, ok := d.mapping(fn, fileSchema); ok {
			if p := fm.get("path"); p != nil {
				if s, ok := d.str(p, "source.file.path"); ok {
					if s == "" {
						d.errorf(p, "source.file.path is empty")
					}
					c.Source.File = &FileSource{Path: s}
				}
			}
		}
	}
	c.Source.Format = FormatJSON
	if v := sm.get("format"); v != nil {
		if s, ok := d.str(v, "source format"); ok {
			if s == FormatJSON || s == FormatCSV {
				c.Source.Format = s
			} else {
				d.errorf(v, "unknown source format %q (valid: json, csv)", s)
				c.Source.Format = ""
			}
		}
	}
	if v := sm.get("columns"); v != nil {
		cols, nodes, _ := d.strList(v, "source columns")
		seen := map[string]int{} // column name → 1-based position
		for i, s := range cols {
			if s == "" {
				d.errorf(nodes[i], "source column %d has an empty name", i+1)
				continue
			}
			if first, dup := seen[s]; dup {
				d.errorf(nodes[i], "source column %d repeats the name %q of column %d", i+1, s, first)
				continue
			}
			seen[s] = i + 1
		}
		c.Source.Columns = cols
		if c.Source.Format == FormatJSON {
			d.errorf(sm.keyNode("columns"), "source columns apply only to format csv")
		}
	}
	if c.Source.Format == FormatCSV && kn != nil && sm.get("columns") == nil {
		d.errorf(sm.keyNode("format"), "format csv from kafka needs source columns (each message is one line without a header)")
	}
}

// kafka decodes source.kafka.
func (d *decoder) kafka(n *yaml.Node, c *Cube) {
	km, ok := d.mapping(n, kafkaSchema)
	if !ok {
		return
	}
	k := &KafkaSource{Group: DefaultGroupPrefix + c.Name, Start: DefaultKafkaStart}
	c.Source.Kafka = k
	if v := km.get("brokers"); v != nil {
		brokers, nodes, ok := d.strList(v, "kafka brokers")
		if ok && len(brokers) == 0 && len(v.Content) == 0 {
			d.errorf(v, "kafka brokers is empty (list at least one host:port)")
		}
		for i, b := range brokers {
			if strings.TrimSpace(b) == "" {
				d.errorf(nodes[i], "kafka broker %d is empty", i+1)
			}
		}
		k.Brokers = brokers
	}
	if v := km.get("topic"); v != nil {
		if s, ok := d.str(v, "kafka topic"); ok {
			k.Topic = s
			if s == "" {
				d.errorf(v, "kafka topic is empty")
			}
		}
	}
	if v := km.get("group"); v != nil {
		if s, ok := d.str(v, "kafka group"); ok {
			k.Group = s
			if s == "" {
				d.errorf(v, "kafka group is empty")
			}
		}
	}
	if v := km.get("start"); v != nil {
		if s, ok := d.str(v, "kafka start"); ok {
			k.Start = s
			if s != "earliest" && s != "latest" {
				d.errorf(v, "unknown kafka start %q (valid: earliest, latest)", s)
			}
		}
	}
}

// eventTime decodes event_time.
func (d *decoder) eventTime(n *yaml.Node, c *Cube) {
	em, ok := d.mapping(n, eventTimeSchema)
	et := &c.EventTime
	et.Format, et.Location = TimeRFC3339, time.UTC
	et.MaxOutOfOrderness, et.AllowedLateness, et.IdleTimeout = DefaultMaxOutOfOrderness, DefaultAllowedLateness, DefaultIdleTimeout
	et.MaxDrift = DefaultMaxDrift
	if !ok {
		return
	}
	if v := em.get("field"); v != nil {
		et.Field, et.Path, _ = d.field(v, "event_time")
	}
	if v := em.get("format"); v != nil {
		if s, ok := d.str(v, "event_time format"); ok {
			et.Format = s
			switch {
			case s == TimeRFC3339 || s == TimeUnixS || s == TimeUnixMS:
			case strings.Contains(s, "2006"):
			default:
				d.errorf(v, `unknown event_time format %q (valid: rfc3339, unix_s, unix_ms, or a Go layout containing 2006 such as "2006-01-02 15:04:05")`, s)
			}
		}
	}
	if v := em.get("timezone"); v != nil {
		if loc, ok := d.zone(v, "event_time timezone"); ok {
			et.Location = loc
		}
	}
	durations := []struct {
		key      string
		dst      *time.Duration
		positive bool // > 0 rather than ≥ 0
	}{
		{"max_out_of_orderness", &et.MaxOutOfOrderness, false},
		{"allowed_lateness", &et.AllowedLateness, false},
		{"idle_timeout", &et.IdleTimeout, true},
		{"max_drift", &et.MaxDrift, false},
	}
	for _, f := range durations {
		v := em.get(f.key)
		if v == nil {
			continue
		}
		if dur, ok := d.duration(v, f.key); ok {
			*f.dst = dur
			if dur < 0 || (f.positive && dur == 0) {
				bound := "must not be negative"
				if f.positive {
					bound = "must be > 0"
				}
				d.errorf(v, "%s %s, got %s", f.key, bound, v.Value)
			}
		}
	}
}

// field reads a dotted field path, non-empty segments separated by dots; owner names what the
// field belongs to in messages ("event_time", `dimension "os"`).
func (d *decoder) field(n *yaml.Node, owner string) (string, []string, bool) {
	s, ok := d.str(n, "field of "+owner)
	if !ok {
		return "", nil, false
	}
	path := strings.Split(s, ".")
	if slices.Contains(path, "") {
		d.errorf(n, "field %q of %s has an empty path segment (write fields as a.b.c)", s, owner)
		return s, path, false
	}
	return s, path, true
}

// zone loads an IANA time zone by name. "Local" is refused: results would depend on the machine.
func (d *decoder) zone(n *yaml.Node, what string) (*time.Location, bool) {
	s, ok := d.str(n, what)
	if !ok {
		return nil, false
	}
	if s == "" || s == "Local" {
		d.errorf(n, "%s %q is not a fixed time zone (use an IANA name such as UTC or Europe/London)", what, s)
		return nil, false
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		d.errorf(n, "unknown time zone %q for %s (use an IANA name such as UTC or Europe/London)", s, what)
		return nil, false
	}
	return loc, true
}

// name validates a dimension or measure name and records it in cols; ok is false when the name
// cannot be used.
func (d *decoder) name(n *yaml.Node, kind string, cols map[string]column) (string, bool) {
	s, ok := d.str(n, kind+" name")
	if !ok {
		return "", false
	}
	switch {
	case !isName(s):
		d.errorf(n, "%s name %q must match [a-z][a-z0-9_]*", kind, s)
		return s, false
	case slices.Contains(ReservedNames, s):
		d.errorf(n, "%s name %q is reserved for a result column (reserved: %s)", kind, s, strings.Join(ReservedNames, ", "))
		return s, false
	}
	if prev, dup := cols[s]; dup {
		if prev.of != "" {
			d.errorf(n, "%s name %q is already a result column of the retention measure %q at line %d", kind, s, prev.of, prev.line)
			return s, false
		}
		if prev.kind == kind {
			d.errorf(n, "duplicate %s name %q (first at line %d)", kind, s, prev.line)
		} else {
			d.errorf(n, "%s name %q is already the name of the %s at line %d (dimensions and measures share the result columns)", kind, s, prev.kind, prev.line)
		}
		return s, false
	}
	cols[s] = column{kind: kind, line: n.Line}
	return s, true
}

// dimensions decodes the dimension list. It returns the names of dimensions that were declared
// but could not be used (already reported), so that grouping sets naming them add no noise.
func (d *decoder) dimensions(n *yaml.Node, c *Cube, cols map[string]column) (unusable map[string]bool) {
	unusable = map[string]bool{}
	items, ok := d.seq(n, "dimensions")
	if !ok {
		return unusable
	}
	if len(items) > MaxDimensions {
		d.errorf(n, "cube has %d dimensions; at most %d", len(items), MaxDimensions)
	}
	for _, it := range items {
		dm, ok := d.mapping(it, dimensionSchema)
		if !ok {
			continue
		}
		v := dm.get("name")
		if v == nil {
			continue
		}
		name, ok := d.name(v, "dimension", cols)
		if !ok {
			unusable[name] = true
			continue
		}
		dim := Dimension{Name: name, Field: name, Path: []string{name}}
		if f := dm.get("field"); f != nil {
			dim.Field, dim.Path, _ = d.field(f, fmt.Sprintf("dimension %q", name))
		}
		c.Dimensions = append(c.Dimensions, dim)
	}
	for _, dim := range c.Dimensions {
		delete(unusable, dim.Name) // a duplicate's first declaration is usable
	}
	return unusable
}

// measures decodes the measure list.
func (d *decoder) measures(n *yaml.Node, c *Cube, cols map[string]column) {
	items, ok := d.seq(n, "measures")
	if !ok {
		return
	}
	if len(items) == 0 {
		d.errorf(n, "measures is empty (a cube needs at least one measure)")
	}
	list := measureTypeList()
	for _, it := range items {
		mm, ok := d.mapping(it, measureSchema)
		if !ok {
			continue
		}
		var m Measure
		nameOK := false
		nameNode := mm.get("name")
		if nameNode != nil {
			m.Name, nameOK = d.name(nameNode, "measure", cols)
		}
		typeOK := false
		if v := mm.get("type"); v != nil {
			if s, ok := d.str(v, "measure type"); ok {
				m.Type = MeasureType(s)
				if slices.Contains(SupportedMeasureTypes, m.Type) {
					typeOK = true
				} else {
					d.errorf(v, "unknown measure type %q (valid: %s)", s, list)
				}
			}
		}
		fn := mm.get("field")
		if fn != nil {
			m.Field, m.Path, _ = d.field(fn, fmt.Sprintf("measure %q", m.Name))
		}
		if typeOK {
			switch {
			case m.Type == Count && fn != nil:
				d.errorf(mm.keyNode("field"), "measure %q of type count takes no field", m.Name)
			case m.Type != Count && fn == nil:
				d.errorf(mm.node, "measure %q of type %s needs a field", m.Name, m.Type)
			}
		}
		if v := mm.get("days"); v != nil {
			if m.Type != Retention {
				d.errorf(mm.keyNode("days"), "days applies only to measures of type retention")
			} else {
				m.Days = d.retentionDays(v)
			}
		} else if m.Type == Retention {
			d.errorf(mm.node, "measure %q of type retention needs days (N of day-N retention, 1 to %d)", m.Name, MaxRetentionDays)
		}
		if v := mm.get("cohort"); v != nil {
			if m.Type != Retention {
				d.errorf(mm.keyNode("cohort"), "cohort applies only to measures of type retention")
			} else if s, ok := d.str(v, "retention cohort"); ok {
				m.Cohort = Cohort(s)
				if m.Cohort != CohortActive && m.Cohort != CohortNew {
					d.errorf(v, "unknown retention cohort %q (valid: %s, %s)", s, CohortActive, CohortNew)
				}
			}
		} else if m.Type == Retention {
			m.Cohort = CohortActive
		}
		if nameOK && m.Type == Retention {
			// The numerator and denominator columns share the names of dimensions and measures.
			for _, col := range resultColumns(m)[1:] {
				if prev, dup := cols[col]; dup {
					what := "the " + prev.kind
					if prev.of != "" {
						what = fmt.Sprintf("a result column of the retention measure %q", prev.of)
					}
					d.errorf(nameNode, "retention measure %q adds the result column %q, which is already %s at line %d", m.Name, col, what, prev.line)
					nameOK = false
					continue
				}
				if slices.Contains(ReservedNames, col) {
					d.errorf(nameNode, "retention measure %q adds the result column %q, which is reserved (reserved: %s)", m.Name, col, strings.Join(ReservedNames, ", "))
					nameOK = false
					continue
				}
				cols[col] = column{kind: "measure", line: nameNode.Line, of: m.Name}
			}
		}
		if nameOK {
			c.Measures = append(c.Measures, m)
		}
	}
}

// retentionDays reads a retention measure's days: a whole number from 1 to MaxRetentionDays; 0
// after a diagnostic.
func (d *decoder) retentionDays(v *yaml.Node) int {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		if n, err := strconv.Atoi(v.Value); err == nil && n >= 1 && n <= MaxRetentionDays {
			return n
		}
	}
	d.errorf(v, "retention days must be a whole number of days from 1 to %d, got %s", MaxRetentionDays, kindName(v))
	return 0
}

// resultColumns returns the result columns of a measure: its name, and for a retention measure
// also the numerator and denominator columns.
func resultColumns(m Measure) []string {
	if m.Type != Retention {
		return []string{m.Name}
	}
	return []string{m.Name, m.Name + RetainedSuffix, m.Name + CohortSuffix}
}

// dailyOnly reports every window of a cube with new_users or retention measures that is not a
// day window (those measures are defined per day); grans are the windows' granularity nodes, in
// the order of c.Windows.
func (d *decoder) dailyOnly(c *Cube, grans []*yaml.Node) {
	var daily []string
	for _, m := range c.Measures {
		if m.Type == NewUsers || m.Type == Retention {
			daily = append(daily, m.Name)
		}
	}
	if len(daily) == 0 {
		return
	}
	for i, w := range c.Windows {
		if w.Granularity != Day && w.Granularity.NominalLength() != 0 && grans[i] != nil {
			d.errorf(grans[i], "window granularity %s: new_users and retention measures (%s) are computed per day, so this cube may have day windows only (tumbling or cumulative); put %s window in a cube of its own",
				w.Granularity, strings.Join(daily, ", "), w.Granularity.withArticle())
		}
	}
}

// groupingSets decodes grouping_sets, cube or rollup into c.GroupingSets.
// Names in unusable were declared but rejected; naming them makes a set invalid silently.
func (d *decoder) groupingSets(cm mapping, c *Cube, unusable map[string]bool) {
	index := make(map[string]int, len(c.Dimensions))
	names := make([]string, len(c.Dimensions))
	for i, dim := range c.Dimensions {
		index[dim.Name] = i
		names[i] = dim.Name
	}
	valid := strings.Join(names, ", ")
	if valid == "" {
		valid = "none declared"
	}
	var given []string
	for _, k := range []string{"grouping_sets", "cube", "rollup"} {
		if cm.get(k) != nil {
			given = append(given, k)
		}
	}
	if len(given) > 1 {
		d.errorf(cm.keyNode(given[1]), "cube gives both %s and %s (give one of grouping_sets, cube, rollup)", given[0], given[1])
	}
	if len(given) == 0 {
		c.GroupingSets = [][]string{slices.Clone(names)}
		return
	}
	// dimList reads a list of declared dimensions without repeats, as indices.
	dimList := func(n *yaml.Node, what string) ([]int, bool) {
		list, nodes, ok := d.strList(n, what)
		ok = ok && len(list) == len(resolve(n).Content)
		var idx []int
		for i, s := range list {
			j, known := index[s]
			switch {
			case !known && unusable[s]:
				ok = false
			case !known:
				d.errorf(nodes[i], "%s names unknown dimension %q (dimensions: %s)", what, s, valid)
				ok = false
			case slices.Contains(idx, j):
				d.errorf(nodes[i], "%s names dimension %q twice", what, s)
				ok = false
			default:
				idx = append(idx, j)
			}
		}
		return idx, ok
	}
	// toNames turns dimension indices into names in Cube.Dimensions order.
	toNames := func(idx []int) []string {
		sorted := slices.Sorted(slices.Values(idx))
		out := make([]string, len(sorted))
		for i, j := range sorted {
			out[i] = names[j]
		}
		return out
	}
	defer func() { d.totalSets += len(c.GroupingSets) }()
	for _, k := range given {
		n := cm.get(k)
		if k == "cube" {
			if list := resolve(n); list != nil && list.Kind == yaml.SequenceNode && len(list.Content) <= MaxCubeDimensions &&
				d.totalSets+len(c.GroupingSets)+1<<len(list.Content) > MaxModelGroupingSets {
				d.errorf(n, "the model expands to more than %d grouping sets in all (split it into several files)", MaxModelGroupingSets)
				continue
			}
		}
		switch k {
		case "grouping_sets":
			items, ok := d.seq(n, "grouping_sets")
			if !ok {
				continue
			}
			if len(items) == 0 {
				d.errorf(n, "grouping_sets is empty (list at least one grouping set; [] is the grand total)")
			}
			first := map[string]int{} // set key → 1-based number of the first set with it
			for i, it := range items {
				what := fmt.Sprintf("grouping set %d", i+1)
				idx, ok := dimList(it, what)
				if !ok {
					continue
				}
				set := toNames(idx)
				key := strings.Join(set, "\x00")
				if prev, dup := first[key]; dup {
					d.errorf(it, "grouping set %d [%s] duplicates grouping set %d", i+1, strings.Join(set, ", "), prev)
					continue
				}
				first[key] = i + 1
				c.GroupingSets = append(c.GroupingSets, set)
			}
		case "cube":
			idx, ok := dimList(n, "cube list")
			if len(idx) > MaxCubeDimensions {
				d.errorf(n, "cube list has %d dimensions; at most %d (it expands to 2^n grouping sets)", len(idx), MaxCubeDimensions)
				continue
			}
			if !ok {
				continue
			}
			// Every subset, the full set first and the grand total last.
			for mask := (1 << len(idx)) - 1; mask >= 0; mask-- {
				var sub []int
				for b, j := range idx {
					if mask&(1<<b) != 0 {
						sub = append(sub, j)
					}
				}
				c.GroupingSets = append(c.GroupingSets, toNames(sub))
			}
		case "rollup":
			idx, ok := dimList(n, "rollup list")
			if !ok {
				continue
			}
			for l := len(idx); l >= 0; l-- {
				c.GroupingSets = append(c.GroupingSets, toNames(idx[:l]))
			}
		}
	}
}

// windows decodes the window list. It returns the granularity node of each window appended to
// c.Windows (nil where the granularity is missing).
func (d *decoder) windows(n *yaml.Node, c *Cube) (granNodes []*yaml.Node) {
	items, ok := d.seq(n, "windows")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(n, "windows is empty (a cube needs at least one window)")
	}
	grans := make([]string, len(Granularities))
	for i, g := range Granularities {
		grans[i] = string(g)
	}
	type windowKey struct {
		g    Granularity
		step time.Duration
	}
	first := map[windowKey]int{} // → line
	for _, it := range items {
		wm, ok := d.mapping(it, windowSchema)
		if !ok {
			continue
		}
		w := Window{EmitEvery: DefaultEmitEvery}
		valid := true
		if v := wm.get("granularity"); v != nil {
			if s, ok := d.str(v, "window granularity"); ok {
				w.Granularity = Granularity(s)
				if w.Granularity.NominalLength() == 0 {
					d.errorf(v, "unknown window granularity %q (valid: %s)", s, strings.Join(grans, ", "))
					valid = false
				}
			} else {
				valid = false
			}
		} else {
			valid = false
		}
		if v := wm.get("step"); v != nil {
			step, ok := d.duration(v, "window step")
			w.Step = step
			switch {
			case !ok:
				valid = false
			case step <= 0:
				d.errorf(v, "window step %s must be > 0 (leave step out for a tumbling window)", v.Value)
				valid = false
			case !valid:
			case step >= w.Granularity.NominalLength():
				d.errorf(v, "window step %s must be shorter than %s (%s)", v.Value, w.Granularity.withArticle(), formatDuration(w.Granularity.NominalLength()))
				valid = false
			case w.Granularity.NominalLength()%step != 0:
				d.errorf(v, "window step %s does not divide %s (%s) evenly", v.Value, w.Granularity.withArticle(), formatDuration(w.Granularity.NominalLength()))
				valid = false
			}
		}
		if v := wm.get("emit_every"); v != nil {
			if e, ok := d.duration(v, "window emit_every"); ok {
				w.EmitEvery = e
				if e <= 0 {
					d.errorf(v, "window emit_every %s must be > 0", v.Value)
				}
			}
		}
		if valid {
			k := windowKey{w.Granularity, w.Step}
			if line, dup := first[k]; dup {
				what := "tumbling"
				if w.Step > 0 {
					what = "step " + formatDuration(w.Step)
				}
				d.errorf(wm.node, "duplicate window (granularity %s, %s) (first at line %d)", w.Granularity, what, line)
				continue
			}
			first[k] = wm.node.Line
		}
		c.Windows = append(c.Windows, w)
		granNodes = append(granNodes, wm.get("granularity"))
	}
	return granNodes
}
