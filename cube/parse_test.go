package cube

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata from the current output")

// repoRoot is the module root, one folder up from this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// sharedData returns the shared real-data folder, failing in CI and skipping loudly elsewhere
// when it is absent.
func sharedData(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "data")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data folder %s is missing (CI is set): %v", dir, err)
		}
		t.Skipf("SKIPPING: shared data folder %s is missing: %v", dir, err)
	}
	return dir
}

func diagLines(diags []Diagnostic) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func mustLoad(t *testing.T, path string) *Model {
	t.Helper()
	m, diags, err := LoadFile(path)
	if err != nil {
		t.Fatalf("LoadFile(%s): %v", path, err)
	}
	if len(diags) > 0 {
		t.Fatalf("LoadFile(%s) reported problems:\n%s", path, diagLines(diags))
	}
	return m
}

func TestGoodModelsParseAndCompile(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least 4 good models, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m := mustLoad(t, f)
			if m.Path != f || m.Version != 1 || len(m.Cubes) == 0 {
				t.Fatalf("model: Path %q Version %d, %d cubes", m.Path, m.Version, len(m.Cubes))
			}
			for _, c := range m.Cubes {
				if _, err := Compile(c); err != nil {
					t.Errorf("Compile(%s): %v", c.Name, err)
				}
			}
		})
	}
}

// The models in configs/ are the ones users start from; they must stay valid.
func TestConfigModelsParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "configs", "*.yaml"))
	if len(files) == 0 {
		t.Skip("SKIPPING: no models in configs/ yet")
	}
	for _, f := range files {
		m := mustLoad(t, f)
		for _, c := range m.Cubes {
			if _, err := Compile(c); err != nil {
				t.Errorf("%s: Compile(%s): %v", f, c.Name, err)
			}
		}
	}
}

func TestMinimalModelDefaults(t *testing.T) {
	m := mustLoad(t, "testdata/minimal.good.yaml")
	c := m.Cubes[0]
	want := &Cube{
		Name: "minimal",
		Source: Source{
			Kafka:  &KafkaSource{Brokers: []string{"localhost:9092"}, Topic: "events", Group: "cubed-minimal", Start: "earliest"},
			Format: "json",
		},
		EventTime: EventTime{Field: "ts", Path: []string{"ts"}, Format: "rfc3339", Location: time.UTC,
			MaxOutOfOrderness: 5 * time.Second, AllowedLateness: 0, IdleTimeout: 30 * time.Second, MaxDrift: 5 * time.Minute},
		Timezone: time.UTC,
		Dimensions: []Dimension{
			{Name: "country", Field: "country", Path: []string{"country"}},
			{Name: "os", Field: "device.os", Path: []string{"device", "os"}},
		},
		Measures:     []Measure{{Name: "pv", Type: "count"}},
		GroupingSets: [][]string{{"country", "os"}},
		Windows:      []Window{{Granularity: "day", EmitEvery: time.Minute}},
		Sink:         Sink{Table: "minimal"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("minimal cube:\n got %+v\nwant %+v", c, want)
	}
}

func TestDesignModel(t *testing.T) {
	c := mustLoad(t, "testdata/design.good.yaml").Cubes[0]
	if c.Description != "Wikipedia edits" || c.EventTime.AllowedLateness != time.Hour || c.Sink.Table != "wiki_edits" {
		t.Errorf("description %q, lateness %v, table %q", c.Description, c.EventTime.AllowedLateness, c.Sink.Table)
	}
	wantSets := [][]string{{}, {"channel"}, {"channel", "namespace"}}
	if !reflect.DeepEqual(normalize(c.GroupingSets), wantSets) {
		t.Errorf("grouping sets %v, want %v", c.GroupingSets, wantSets)
	}
	wantWindows := []Window{{Day, time.Hour, time.Minute}, {Hour, 0, 10 * time.Second}}
	if !reflect.DeepEqual(c.Windows, wantWindows) {
		t.Errorf("windows %v, want %v", c.Windows, wantWindows)
	}
	if d := c.Dimensions[2]; d.Name != "robot" || d.Field != "isRobot" {
		t.Errorf("dimension 2: %+v", d)
	}
}

// normalize turns nil inner slices into empty ones for comparison.
func normalize(sets [][]string) [][]string {
	out := make([][]string, len(sets))
	for i, s := range sets {
		out[i] = append([]string{}, s...)
	}
	return out
}

func TestShorthandModel(t *testing.T) {
	m := mustLoad(t, "testdata/shorthand.good.yaml")
	if len(m.Cubes) != 2 {
		t.Fatalf("%d cubes, want 2", len(m.Cubes))
	}
	clicks, byUser := m.Cubes[0], m.Cubes[1]
	// cube: [os, country, browser] → every subset, full set first, stored in dimension order.
	if len(clicks.GroupingSets) != 8 {
		t.Fatalf("cube expansion gave %d sets, want 8: %v", len(clicks.GroupingSets), clicks.GroupingSets)
	}
	seen := map[string]bool{}
	for _, s := range clicks.GroupingSets {
		for i := 1; i < len(s); i++ {
			order := map[string]int{"country": 0, "os": 1, "browser": 2}
			if order[s[i-1]] >= order[s[i]] {
				t.Errorf("set %v is not in dimension order", s)
			}
		}
		seen[strings.Join(s, ",")] = true
	}
	for _, want := range []string{"", "country", "os", "browser", "country,os", "country,browser", "os,browser", "country,os,browser"} {
		if !seen[want] {
			t.Errorf("cube expansion lacks [%s]", want)
		}
	}
	if k := clicks.Source.Kafka; k.Start != "latest" || k.Group != "cubed-clicks" || len(k.Brokers) != 2 {
		t.Errorf("clicks kafka %+v", k)
	}
	if clicks.Source.Format != "csv" || len(clicks.Source.Columns) != 6 || clicks.EventTime.Format != "unix_ms" || clicks.EventTime.MaxOutOfOrderness != 0 {
		t.Errorf("clicks source %+v, event time %+v", clicks.Source, clicks.EventTime)
	}
	// Merge keys: the second cube inherits format and columns, overrides kafka and the zone.
	if k := byUser.Source.Kafka; k.Group != "other" || k.Start != "earliest" || !slices.Equal(k.Brokers, []string{"kafka-1:9092"}) {
		t.Errorf("by-user kafka %+v", k)
	}
	if byUser.Source.Format != "csv" || len(byUser.Source.Columns) != 6 {
		t.Errorf("by-user source %+v", byUser.Source)
	}
	if byUser.EventTime.Location.String() != "Asia/Tokyo" || byUser.EventTime.Format != "unix_ms" || byUser.Timezone.String() != "Asia/Tokyo" {
		t.Errorf("by-user event time %+v, zone %v", byUser.EventTime, byUser.Timezone)
	}
	if byUser.Sink.Table != "ClicksByUser" || byUser.Windows[0].Step != 24*time.Hour || byUser.Windows[0].EmitEvery != time.Minute {
		t.Errorf("by-user sink %+v windows %+v", byUser.Sink, byUser.Windows)
	}
}

func TestRelativeFilePathResolvesAgainstModelFolder(t *testing.T) {
	m := mustLoad(t, "testdata/retail_file.good.yaml")
	c := m.Cubes[0]
	wd, _ := os.Getwd()
	want := filepath.Join(wd, "..", "..", "shared", "data", "online_retail.csv.gz")
	if c.Source.File == nil || c.Source.File.Path != filepath.Clean(want) {
		t.Fatalf("file path %+v, want %s", c.Source.File, want)
	}
	wantSets := [][]string{{"country", "stock_code"}, {"country"}, {}}
	if !reflect.DeepEqual(normalize(c.GroupingSets), wantSets) {
		t.Errorf("rollup gave %v, want %v", c.GroupingSets, wantSets)
	}
	if c.EventTime.AllowedLateness != 24*time.Hour || c.Windows[0].Step != 24*time.Hour || c.EventTime.IdleTimeout != time.Minute {
		t.Errorf("1d durations: lateness %v, step %v", c.EventTime.AllowedLateness, c.Windows[0].Step)
	}
	// The resolved path names the real file (the model is meant to replay it).
	data := sharedData(t)
	if _, err := os.Stat(filepath.Join(data, "online_retail.csv.gz")); err != nil {
		t.Fatalf("shared data present but %v", err)
	}
	if _, err := os.Stat(c.Source.File.Path); err != nil {
		t.Errorf("resolved path does not exist: %v", err)
	}
	// Parse leaves the path as written.
	raw, _ := os.ReadFile("testdata/retail_file.good.yaml")
	pm, diags := Parse("x.yaml", raw)
	if len(diags) > 0 || pm.Cubes[0].Source.File.Path != "../../../shared/data/online_retail.csv.gz" {
		t.Errorf("Parse changed the path: %v %v", diags, pm.Cubes[0].Source.File)
	}
}

// TestBadModelsGolden compares the diagnostics of every *.bad.yaml with its golden file.
// Regenerate with `go test ./cube -run TestBadModelsGolden -update` and review the diff.
func TestBadModelsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 bad models, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m, diags, err := LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if m != nil || len(diags) == 0 {
				t.Fatalf("bad model accepted: %v, %d diagnostics", m, len(diags))
			}
			got := diagLines(diags)
			golden := f + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden: %v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics of %s differ from %s\n got:\n%s\nwant:\n%s", f, golden, got, want)
			}
		})
	}
}

var wantMarker = regexp.MustCompile(`#\s*want\b`)

// The all-errors model marks each line that must carry a diagnostic with a "# want" comment.
// Independently of the golden file, every marked line must have a diagnostic and every
// diagnostic must be on a marked line.
func TestAllErrorsMarkedLines(t *testing.T) {
	const f = "testdata/all_errors.bad.yaml"
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	_, diags := Parse(f, raw)
	byLine := map[int][]string{}
	for _, d := range diags {
		byLine[d.Line] = append(byLine[d.Line], d.Message)
		if d.File != f || d.Col < 1 {
			t.Errorf("diagnostic %v: bad file or column", d)
		}
	}
	marked := map[int]bool{}
	for i, line := range strings.Split(string(raw), "\n") {
		if wantMarker.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			marked[i+1] = true
			if len(byLine[i+1]) == 0 {
				t.Errorf("line %d is marked but has no diagnostic: %s", i+1, strings.TrimSpace(line))
			}
		}
	}
	for line, msgs := range byLine {
		if !marked[line] {
			t.Errorf("diagnostic on unmarked line %d: %q", line, msgs)
		}
	}
	if len(marked) < 60 {
		t.Errorf("only %d marked lines; the model should exercise every kind of problem", len(marked))
	}
	if !slices.IsSortedFunc(diags, func(a, b Diagnostic) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	}) {
		t.Error("diagnostics are not sorted by line and column")
	}
}

// Specific messages promised by the contract, checked by text rather than via the golden file.
func TestContractMessages(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       string // LINE:COL: message
	}{
		{"unknown dimension", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [{name: country}, {name: os}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[], [country], [os], [contry]]
    windows: [{granularity: day}]
`, `8:43: grouping set 4 names unknown dimension "contry" (dimensions: country, os)`},
		{"checkpoint interval", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    checkpoint_every: 0s
`, `8:23: checkpoint_every must be > 0, got 0s`},
		{"state sizes", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    state: {memory_limit: 12 parsecs}
`, `8:27: state memory_limit: bad size "12 parsecs" (use bytes or a size such as 512MiB, 2GiB, 1GB)`},
		{"dictionary cache", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    state: {dictionary_cache: 1KiB}
`, `8:31: state dictionary_cache must be at least 64KiB, got 1KiB`},
		{"state key typo", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    state: {spill: yes}
`, `8:13: unknown key "spill" in state (valid: memory_limit, dictionary_cache)`},
		{"sink key typo", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink: {tabel: x}
`, `8:12: unknown key "tabel" in sink (valid: table, retention, embedded, clickhouse)`},
		{"clickhouse reserved column", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    dimensions: [{name: final}]
    sink:
      clickhouse: {}
`, `10:19: dimension "final" has the name of a column every ClickHouse result table has (reserved: window_start, window_end, granularity, grouping_set, version, final)`},
		{"clickhouse addr", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {addr: nohost}
`, `9:26: sink.clickhouse.addr "nohost" must be host:port (the native protocol port, usually 9000)`},
		{"clickhouse tls", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {tls: maybe}
`, `9:25: sink.clickhouse.tls must be true, false or a mapping (keys: ca_file, cert_file, key_file, server_name, insecure_skip_verify), got the scalar "maybe"`},
		{"embedded off without clickhouse", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink: {embedded: false}
`, `8:22: sink.embedded is false but there is no sink.clickhouse: the results would go nowhere`},
		{"embedded off with retention", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink: {retention: 7d, embedded: false, clickhouse: {}}
`, `8:37: sink.retention applies to the embedded store, which sink.embedded: false turns off`},
		{"clickhouse tls key typo", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {tls: {ca: x.pem}}
`, `9:26: unknown key "ca" in sink.clickhouse.tls (valid: ca_file, cert_file, key_file, server_name, insecure_skip_verify)`},
		{"clickhouse tls cert without key", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {tls: {cert_file: c.pem}}
`, `9:25: sink.clickhouse.tls needs both cert_file and key_file (the client certificate and its key), or neither`},
		{"clickhouse tls insecure with ca", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {tls: {ca_file: ca.pem, insecure_skip_verify: true}}
`, `9:65: sink.clickhouse.tls.insecure_skip_verify verifies nothing, so ca_file and server_name would be ignored (give one or the other)`},
		{"clickhouse password twice", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {password: a, password_env: B}
`, `9:47: sink.clickhouse has both password and password_env (give at most one)`},
		{"clickhouse table", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {table: x-y}
`, `9:27: sink.clickhouse.table "x-y" must match [A-Za-z_][A-Za-z0-9_]*`},
		{"clickhouse key typo", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {adr: x}
`, `9:20: unknown key "adr" in sink.clickhouse (valid: addr, database, table, username, password, password_env, tls, create_tables, compression)`},
		{"unknown compression", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink:
      clickhouse: {compression: gzip}
`, `9:33: sink.clickhouse.compression "gzip" is not one of auto, none, lz4, zstd`},
		{"new users in an hour window", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: n, type: new_users, field: user}
    windows: [{granularity: day}, {granularity: hour}]
`, `8:49: window granularity hour: new_users and retention measures (n) are computed per day, so this cube may have day windows only (tumbling or cumulative); put an hour window in a cube of its own`},
		{"retention without days", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: r, type: retention, field: user}
    windows: [{granularity: day}]
`, `7:9: measure "r" of type retention needs days (N of day-N retention, 1 to 366)`},
		{"retention days as text", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: r, type: retention, field: user, days: 1d}
    windows: [{granularity: day}]
`, `7:55: retention days must be a whole number of days from 1 to 366, got the scalar "1d"`},
		{"retention cohort", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: r, type: retention, field: user, days: 7, cohort: old}
    windows: [{granularity: day}]
`, `7:66: unknown retention cohort "old" (valid: active, new)`},
		{"cohort without retention", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: uv, type: count_distinct, field: user, cohort: new}
    windows: [{granularity: day}]
`, `7:55: cohort applies only to measures of type retention`},
		{"retention column clash", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: r_cohort, type: count_distinct, field: user}
      - {name: r, type: retention, field: user, days: 1}
    windows: [{granularity: day}]
`, `8:16: retention measure "r" adds the result column "r_cohort", which is already the measure at line 7`},
		{"measure named like a retention column", `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures:
      - {name: r, type: retention, field: user, days: 1}
      - {name: r_retained, type: count}
    windows: [{granularity: day}]
`, `8:16: measure name "r_retained" is already a result column of the retention measure "r" at line 7`},
		{"syntax", "version: 1\ncubes:\n  - name: [x\n", `3:1: YAML syntax error: did not find expected ',' or ']'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Parse("m.yaml", []byte(tc.yaml))
			if len(diags) != 1 || diags[0].String() != "m.yaml:"+tc.want {
				t.Errorf("got:\n%s\nwant exactly:\nm.yaml:%s", diagLines(diags), tc.want)
			}
		})
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{File: "a/b.yaml", Line: 3, Col: 7, Message: "bad"}
	if d.String() != "a/b.yaml:3:7: bad" || d.Error() != d.String() {
		t.Errorf("String %q Error %q", d.String(), d.Error())
	}
	var err error = d
	if !strings.HasSuffix(err.Error(), ": bad") {
		t.Error(err)
	}
	if s := (Diagnostic{Line: 1, Col: 2, Message: "m"}).String(); s != "1:2: m" {
		t.Errorf("without file: %q", s)
	}
}

func TestLoadFileIOError(t *testing.T) {
	m, diags, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !os.IsNotExist(unwrapAll(err)) || m != nil || diags != nil {
		t.Errorf("missing file: %v %v %v", m, diags, err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1d", 24 * time.Hour, true},
		{"2d12h", 60 * time.Hour, true},
		{"0d", 0, true},
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"-1d", -24 * time.Hour, true},
		{"-1d2h", -26 * time.Hour, true},
		{"1d-2h", 0, false},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"1dd", 0, false},
		{"5", 0, false},
		{"9999999d", 0, false},
		{"106751d23h47m16.854775807s", time.Duration(1<<63 - 1), true},
		{"106751d23h47m17s", 0, false},
	}
	for _, tc := range cases {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseDuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A valid model built up line by line is rejected with the right message when one value is
// swapped for a bad one; every case gives exactly one diagnostic at the swapped line.
func TestOneProblemEach(t *testing.T) {
	base := `version: 1
cubes:
  - name: c
    source:
      kafka: {brokers: [b], topic: t}
      format: json
    event_time:
      field: ts
      format: rfc3339
    dimensions:
      - {name: a}
      - {name: b}
    measures:
      - {name: pv, type: count}
    windows:
      - {granularity: day, step: 1h}
`
	cases := []struct{ from, to, msg string }{
		{"format: json", "format: csv", "format csv from kafka needs source columns (each message is one line without a header)"},
		{"format: rfc3339", "format: Jan 2", `unknown event_time format "Jan 2"`},
		{"format: rfc3339", `format: "02/01/2006 15:04"`, ""},
		{"step: 1h", "step: 5h", "window step 5h does not divide a day (24h) evenly"},
		{"step: 1h", "step: 24h", "window step 24h must be shorter than a day (24h)"},
		{"step: 1h", "step: 1d", "window step 1d must be shorter than a day (24h)"},
		{"{granularity: day, step: 1h}", "{granularity: week, step: 1d}", ""},
		{"{granularity: day, step: 1h}", "{granularity: week, step: 5d}", "window step 5d does not divide a week (168h) evenly"},
		{"{granularity: day, step: 1h}", "{granularity: minute, step: 15s}", ""},
		{"{granularity: day, step: 1h}", "{granularity: minute, step: 7s}", "window step 7s does not divide a minute (1m) evenly"},
		{"{name: pv, type: count}", "{name: b, type: count}", `measure name "b" is already the name of the dimension at line 12`},
		{"{name: b}", "{name: window_start}", `dimension name "window_start" is reserved`},
		{"{name: b}", "{name: b2, field: x.y.z}", ""},
		{"{name: b}", "{name: b2, field: .x}", `field ".x" of dimension "b2" has an empty path segment`},
		{"{name: pv, type: count}", "{name: s, type: min}", `measure "s" of type min needs a field`},
		{"brokers: [b]", "brokers: [b, '']", "kafka broker 2 is empty"},
		{"brokers: [b]", "brokers: [b, [c]]", "item 2 of kafka brokers must be a string, got a list"},
		{"topic: t", "topic: 42", ""},
		{"version: 1", "version: '1'", `version must be 1, got the scalar "1"`},
		{"version: 1", "version: 1.0", `version must be 1, got the scalar "1.0"`},
		{"field: ts", "field: [ts]", "field of event_time must be a string, got a list"},
		{"      format: rfc3339\n", "      format: rfc3339\n      timezone: America/New_York\n", ""},
		{"      format: rfc3339\n", "      format: rfc3339\n      timezone: Europe/Londn\n", `unknown time zone "Europe/Londn" for event_time timezone`},
	}
	for _, tc := range cases {
		t.Run(tc.to, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("base lacks %q", tc.from)
			}
			src := strings.Replace(base, tc.from, tc.to, 1)
			_, diags := Parse("m.yaml", []byte(src))
			if tc.msg == "" {
				if len(diags) > 0 {
					t.Fatalf("valid variant rejected:\n%s", diagLines(diags))
				}
				return
			}
			if len(diags) != 1 || !strings.Contains(diags[0].Message, tc.msg) {
				t.Fatalf("want one diagnostic containing %q, got:\n%s", tc.msg, diagLines(diags))
			}
			line := strings.Count(src[:strings.Index(src, tc.to)], "\n") + 1 + strings.Count(strings.TrimRight(tc.to, "\n"), "\n")
			if diags[0].Line != line {
				t.Errorf("diagnostic at line %d, want %d: %s", diags[0].Line, line, diags[0])
			}
		})
	}
}

func TestDimensionLimit(t *testing.T) {
	dims := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "{name: d%d},", i)
		}
		return strings.TrimSuffix(b.String(), ",")
	}
	src := func(n int) string {
		return fmt.Sprintf(`version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [%s]
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
`, dims(n))
	}
	if _, diags := Parse("m.yaml", []byte(src(MaxDimensions))); len(diags) > 0 {
		t.Errorf("%d dimensions rejected: %v", MaxDimensions, diags)
	}
	_, diags := Parse("m.yaml", []byte(src(MaxDimensions+1)))
	if len(diags) != 1 || diags[0].Message != "cube has 17 dimensions; at most 16" || diags[0].Line != 6 {
		t.Errorf("17 dimensions: %v", diags)
	}
}

// Cube lists repeated through YAML aliases stop expanding at MaxModelGroupingSets.
func TestModelGroupingSetLimit(t *testing.T) {
	var dims, names []string
	for i := range 12 {
		dims = append(dims, fmt.Sprintf("{name: d%d}", i))
		names = append(names, fmt.Sprintf("d%d", i))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ncubes:\n  - &c {name: c0, source: {kafka: {brokers: [b], topic: t}}, event_time: {field: ts}, dimensions: [%s], measures: [{name: pv, type: count}], cube: [%s], windows: [{granularity: day}], sink: {table: t0}}\n",
		strings.Join(dims, ", "), strings.Join(names, ", "))
	// 16 cubes of 4096 sets reach the limit exactly; the 17th goes over. The diagnostic points at
	// the cube list, which the merged cubes share (line 3).
	for i := 1; i < 17; i++ {
		fmt.Fprintf(&b, "  - {<<: *c, name: c%d, sink: {table: t%d}}\n", i, i)
	}
	start := time.Now()
	_, diags := Parse("m.yaml", []byte(b.String()))
	if len(diags) != 1 || diags[0].Line != 3 || !strings.Contains(diags[0].Message, "more than 65536 grouping sets") {
		t.Errorf("got:\n%s", diagLines(diags))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("parsing took %v", el)
	}
}
