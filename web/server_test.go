package web

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/sink"
)

const csvQuery = `{"cube":"edits","measures":["uv","min_delta"],"dimensions":["channel"],"granularity":"day","cumulative":true,"timeRange":["2015-09-12","2015-09-14"]}`

// expectStrings renders oracle rows as CSV records: RFC 3339 in the cube's zone, measures as
// the shortest decimal, NaN as the empty string.
func expectStrings(rows []oracleRow, cumulative bool, dims, measures []string) [][]string {
	var out [][]string
	for _, r := range rows {
		rec := []string{time.UnixMilli(r.start).In(kolkata).Format(time.RFC3339)}
		if cumulative {
			rec = append(rec, time.UnixMilli(r.end).In(kolkata).Format(time.RFC3339))
		}
		for _, d := range dims {
			rec = append(rec, r.dims[d])
		}
		for _, m := range measures {
			if v := r.vals[m]; math.IsNaN(v) {
				rec = append(rec, "")
			} else {
				rec = append(rec, strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		out = append(out, rec)
	}
	return out
}

func TestQueryCSV(t *testing.T) {
	f := newFixture(t)
	from, to := ms(time.Date(2015, 9, 12, 0, 0, 0, 0, kolkata)), ms(time.Date(2015, 9, 14, 0, 0, 0, 0, kolkata))
	want := append([][]string{{"window_start", "window_end", "channel", "uv", "min_delta"}},
		expectStrings(f.oracle(winDayCum, gsChannel, from, to, nil), true, []string{"channel"}, []string{"uv", "min_delta"})...)
	hasNull, hasWeird := false, false
	for _, rec := range want[1:] {
		hasNull = hasNull || rec[4] == ""
		hasWeird = hasWeird || rec[2] == chans[6]
	}
	if !hasNull || !hasWeird {
		t.Fatalf("fixture lacks a null (%v) or a value that needs quoting (%v)", hasNull, hasWeird)
	}
	for _, accept := range []string{"text/csv", "application/json;q=0.5, text/csv", "text/*"} {
		resp, body := f.do(t, http.MethodPost, "/api/v1/query", "application/json", []byte(csvQuery), map[string]string{"Accept": accept})
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("Accept %q: %d %s %s", accept, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		got, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("Accept %q: parsing CSV: %v\n%s", accept, err, body)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Accept %q: got %d records, want %d\ngot  %q\nwant %q", accept, len(got), len(want), got[:2], want[:2])
		}
		if resp.Header.Get("X-Cubed-Watermark") != "2015-09-13T11:00:00Z" {
			t.Fatalf("X-Cubed-Watermark = %q", resp.Header.Get("X-Cubed-Watermark"))
		}
	}
	// ?format= overrides Accept; GET ?query= works too.
	resp, body := f.do(t, http.MethodGet, getQueryPath(csvQuery)+"&format=csv", "", nil, map[string]string{"Accept": "application/json"})
	got, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if resp.StatusCode != http.StatusOK || err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GET ?format=csv: %d, %v, %d records", resp.StatusCode, err, len(got))
	}
	// An empty result is just the header.
	_, body = f.do(t, http.MethodPost, "/api/v1/query", "", []byte(`{"cube":"retail","measures":["orders"],"dimensions":["country"]}`), map[string]string{"Accept": "text/csv"})
	if string(body) != "window_start,country,orders\n" {
		t.Fatalf("empty CSV = %q", body)
	}
}

func TestQueryArrow(t *testing.T) {
	f := newFixture(t)
	from, to := ms(time.Date(2015, 9, 12, 0, 0, 0, 0, kolkata)), ms(time.Date(2015, 9, 14, 0, 0, 0, 0, kolkata))
	want := f.oracle(winDayCum, gsChannel, from, to, nil)
	resp, body := f.do(t, http.MethodPost, "/api/v1/query", "application/json", []byte(csvQuery),
		map[string]string{"Accept": "application/vnd.apache.arrow.stream"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.apache.arrow.stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("opening Arrow stream: %v", err)
	}
	defer rd.Release()
	schema := rd.Schema()
	ts := &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "Asia/Kolkata"}
	wantFields := []arrow.Field{
		{Name: "window_start", Type: ts}, {Name: "window_end", Type: ts}, {Name: "channel", Type: arrow.BinaryTypes.String},
		{Name: "uv", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, {Name: "min_delta", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	}
	if len(schema.Fields()) != len(wantFields) {
		t.Fatalf("schema %v", schema)
	}
	for i, fl := range schema.Fields() {
		if fl.Name != wantFields[i].Name || !arrow.TypeEqual(fl.Type, wantFields[i].Type) || fl.Nullable != wantFields[i].Nullable {
			t.Fatalf("field %d = %v, want %v", i, fl, wantFields[i])
		}
	}
	if v, _ := schema.Metadata().GetValue("cubed.watermark"); v != "2015-09-13T11:00:00Z" {
		t.Fatalf("cubed.watermark = %q", v)
	}
	n := 0
	for rd.Next() {
		rec := rd.RecordBatch()
		start := rec.Column(0).(*array.Timestamp)
		end := rec.Column(1).(*array.Timestamp)
		ch := rec.Column(2).(*array.String)
		uv := rec.Column(3).(*array.Float64)
		md := rec.Column(4).(*array.Float64)
		for i := 0; i < int(rec.NumRows()); i, n = i+1, n+1 {
			if n >= len(want) {
				t.Fatalf("more than %d rows", len(want))
			}
			w := want[n]
			if int64(start.Value(i)) != w.start || int64(end.Value(i)) != w.end || ch.Value(i) != w.dims["channel"] || uv.Value(i) != w.vals["uv"] {
				t.Fatalf("row %d = (%d, %d, %q, %v), want (%d, %d, %q, %v)", n, start.Value(i), end.Value(i), ch.Value(i), uv.Value(i),
					w.start, w.end, w.dims["channel"], w.vals["uv"])
			}
			if math.IsNaN(w.vals["min_delta"]) != md.IsNull(i) || (!md.IsNull(i) && md.Value(i) != w.vals["min_delta"]) {
				t.Fatalf("row %d min_delta null=%v %v, want %v", n, md.IsNull(i), md.Value(i), w.vals["min_delta"])
			}
		}
	}
	if err := rd.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) || n == 0 {
		t.Fatalf("read %d rows, want %d", n, len(want))
	}

	// An empty result is a schema and no rows.
	_, body = f.do(t, http.MethodPost, "/api/v1/query", "", []byte(`{"cube":"retail","measures":["orders"],"dimensions":["country"]}`),
		map[string]string{"Accept": "application/vnd.apache.arrow.stream"})
	rd2, err := ipc.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("opening empty Arrow stream: %v", err)
	}
	defer rd2.Release()
	if got := rd2.Schema().Field(0).Type.(*arrow.TimestampType).TimeZone; got != "UTC" {
		t.Fatalf("retail window_start zone %q", got)
	}
	if rd2.Next() {
		t.Fatalf("empty result has a batch of %d rows", rd2.RecordBatch().NumRows())
	}
}

func TestArrowBatches(t *testing.T) {
	// More rows than one batch holds: every row comes back, in order.
	n := arrowBatchRows + 10
	r := &Result{Columns: []Column{{"window_start", TypeTime}, {"d", TypeString}, {"m", TypeNumber}}, Timezone: "UTC"}
	for i := range n {
		v := any(float64(i))
		if i%7 == 0 {
			v = nil
		}
		r.Rows = append(r.Rows, []any{time.UnixMilli(int64(i) * 1000), strconv.Itoa(i), v})
	}
	var buf bytes.Buffer
	if err := WriteResult(&buf, FormatArrow, r); err != nil {
		t.Fatal(err)
	}
	rd, err := ipc.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	i, batches := 0, 0
	for rd.Next() {
		batches++
		rec := rd.RecordBatch()
		ts, d, m := rec.Column(0).(*array.Timestamp), rec.Column(1).(*array.String), rec.Column(2).(*array.Float64)
		for j := 0; j < int(rec.NumRows()); j, i = j+1, i+1 {
			if int64(ts.Value(j)) != int64(i)*1000 || d.Value(j) != strconv.Itoa(i) || m.IsNull(j) != (i%7 == 0) || (!m.IsNull(j) && m.Value(j) != float64(i)) {
				t.Fatalf("row %d wrong", i)
			}
		}
	}
	if i != n || batches != 2 {
		t.Fatalf("%d rows in %d batches, want %d in 2", i, batches, n)
	}
}

func TestQueryJSONEnvelope(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, http.MethodPost, "/api/v1/query", "application/json", []byte(csvQuery), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Byte-identical to what the CLI prints through WriteResult.
	q, err := DecodeQuery([]byte(csvQuery))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), f.b, q)
	if err != nil {
		t.Fatal(err)
	}
	var cli bytes.Buffer
	if err := WriteResult(&cli, FormatJSON, res); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cli.Bytes(), body) {
		t.Fatalf("CLI and HTTP differ:\n%s\n%s", cli.Bytes(), body)
	}
	// Shape: status, data {columns, rows}, freshness at the top level, nulls for NaN and for a
	// zero time.
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sortedKeys(env), []string{"data", "freshness", "status"}) {
		t.Fatalf("envelope keys %v", sortedKeys(env))
	}
	if string(env["freshness"]) != `{"watermark":"2015-09-13T11:00:00Z","last_emit":"2015-09-13T11:00:05Z"}` {
		t.Fatalf("freshness %s", env["freshness"])
	}
	if !bytes.Contains(body, []byte(`,null]`)) || !bytes.Contains(body, []byte(`"#we,ird \"chan\"\nnel"`)) {
		t.Fatalf("no null measure or escaped channel in %s", body)
	}
	a := f.mustQuery(t, `{"cube":"retail","measures":["orders"],"dimensions":["country"]}`)
	if a.Data.Rows == nil || len(a.Data.Rows) != 0 || a.Freshness["watermark"] != nil || len(a.Freshness) != 2 {
		t.Fatalf("retail: %s", a.body)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func TestEncodeJSONValues(t *testing.T) {
	// Values and escapes, checked against encoding/json's decoding of the output.
	loc := time.FixedZone("", -(3*3600 + 30*60))
	r := &Result{
		Columns: []Column{{"window_start", TypeTime}, {"s", TypeString}, {"a", TypeNumber}, {"b", TypeNumber}, {"c", TypeNumber}, {"d", TypeNumber}},
		Rows: [][]any{
			{time.Date(2015, 9, 12, 1, 2, 3, 4e6, loc), "tab\t\"q\" \\ \x01 \u2028 é \xff <&>", 1e21, 1.5e-7, math.Inf(1), nil},
			{time.Date(2015, 9, 12, 0, 0, 0, 0, time.UTC), "", 0.0, -2.5, 123456789.0, 42.0},
		},
	}
	var buf bytes.Buffer
	if err := EncodeJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Data struct{ Rows [][]any }
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	want := [][]any{
		{"2015-09-12T01:02:03.004-03:30", "tab\t\"q\" \\ \x01 \u2028 é \ufffd <&>", 1e21, 1.5e-7, nil, nil},
		{"2015-09-12T00:00:00Z", "", 0.0, -2.5, 123456789.0, 42.0},
	}
	if !reflect.DeepEqual(got.Data.Rows, want) {
		t.Fatalf("got  %#v\nwant %#v", got.Data.Rows, want)
	}
	// Numbers are written as encoding/json writes float64.
	for _, v := range []float64{1e21, 1.5e-7, 123456789, 42, -2.5, 0} {
		j, _ := json.Marshal(v)
		if !bytes.Contains(buf.Bytes(), j) {
			t.Fatalf("output lacks %s: %s", j, buf.Bytes())
		}
	}
	if err := WriteResult(&buf, "xml", r); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("unknown format: %v", err)
	}
}

func TestCubesEndpoint(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, http.MethodGet, "/api/v1/cubes", "", nil, nil)
	var got struct {
		Status string
		Data   []CubeInfo
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Status != "success" {
		t.Fatalf("%d %s %v", resp.StatusCode, body, err)
	}
	if len(got.Data) != 2 || got.Data[0].Name != "edits" || got.Data[1].Name != "retail" {
		t.Fatalf("cubes %s", body)
	}
	e := got.Data[0]
	wantGS := []GroupingSetInfo{{0, []string{}}, {1, []string{"channel"}}, {3, []string{"channel", "namespace"}}, {5, []string{"channel", "robot"}}}
	wantWin := []WindowInfo{
		{Granularity: "day", Step: "6h", EmitEvery: "1m", Cumulative: true, Label: "day (cumulative, step 6h)"},
		{Granularity: "hour", EmitEvery: "10s", Label: "hour"},
		{Granularity: "day", EmitEvery: "1m", Label: "day"},
	}
	wantMeasures := []MeasureInfo{{Name: "pv", Type: "count"}, {Name: "added", Type: "sum", Field: "added"}, {Name: "uv", Type: "count_distinct", Field: "user"}, {Name: "min_delta", Type: "min", Field: "delta"}}
	if e.Description != "Wikipedia edits" || e.Timezone != "Asia/Kolkata" || !reflect.DeepEqual(e.GroupingSets, wantGS) ||
		!reflect.DeepEqual(e.Windows, wantWin) || !reflect.DeepEqual(e.Measures, wantMeasures) ||
		!reflect.DeepEqual(e.Dimensions, []DimensionInfo{{"channel", "channel"}, {"namespace", "namespace"}, {"robot", "isRobot"}}) {
		t.Fatalf("edits: %+v", e)
	}
	if !e.Freshness.Watermark.Equal(watermark) || !got.Data[1].Freshness.Watermark.IsZero() {
		t.Fatalf("freshness %+v %+v", e.Freshness, got.Data[1].Freshness)
	}
	if !bytes.Contains(body, []byte(`"freshness":{"watermark":null,"last_emit":null}`)) {
		t.Fatalf("retail freshness is not null: %s", body)
	}
	// Neither cube has a dashboards: entry: edits gets the derived dashboard, retail (no
	// cumulative day window, no grand total) one without panels.
	wantDash := &cube.Dashboard{Default: true, Panels: []cube.Panel{
		{Type: cube.PanelKPI, Measures: []string{"uv", "pv", "added"}},
		{Type: cube.PanelCumulative, Measure: "uv"},
		{Type: cube.PanelBreakdown, Dimensions: []string{"channel"}, Measure: "uv", Top: 15},
	}}
	if !reflect.DeepEqual(e.Dashboard, wantDash) {
		t.Errorf("edits dashboard %+v, want %+v", e.Dashboard, wantDash)
	}
	if d := got.Data[1].Dashboard; d == nil || !d.Default || d.Panels == nil || len(d.Panels) != 0 {
		t.Errorf("retail dashboard %+v, want no panels", d)
	}
	// A model's dashboard is served as it is.
	c := editsCube()
	c.Dashboard = &cube.Dashboard{Title: "t", Panels: []cube.Panel{{Type: cube.PanelBreakdown, Dimensions: []string{"channel", "robot"}, Measure: "pv", Top: 3}}}
	info := CubeInfos(f.b, []*cube.Plan{buildPlan(c)})
	j, err := json.Marshal(info[0].Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"title":"t","panels":[{"type":"breakdown","measure":"pv","dimensions":["channel","robot"],"top":3}],"default":false}`; string(j) != want {
		t.Errorf("model dashboard as JSON\n got %s\nwant %s", j, want)
	}
}

func TestPlanEndpoint(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, http.MethodGet, "/api/v1/cubes/edits/plan", "", nil, nil)
	var got struct {
		Status string
		Data   json.RawMessage
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Status != "success" {
		t.Fatalf("%d %s %v", resp.StatusCode, body, err)
	}
	want, err := f.plan.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(got.Data, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("plan JSON differs:\n%s\n%s", got.Data, want)
	}
	for format, w := range map[string]string{"text": f.plan.Text(), "dot": f.plan.DOT()} {
		resp, body := f.do(t, http.MethodGet, "/api/v1/cubes/edits/plan?format="+format, "", nil, nil)
		if resp.StatusCode != 200 || string(body) != w || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/") {
			t.Fatalf("format %s: %d %s\n%s", format, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp, body = f.do(t, http.MethodGet, "/api/v1/cubes/nope/plan", "", nil, nil)
	if resp.StatusCode != 404 || !bytes.Contains(body, []byte(`"errorType":"not_found","error":"unknown cube \"nope\" (cubes: edits, retail)"`)) {
		t.Fatalf("unknown cube: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, http.MethodGet, "/api/v1/cubes/edits/plan?format=svg", "", nil, nil)
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte(`(formats: json, text, dot)`)) {
		t.Fatalf("bad format: %d %s", resp.StatusCode, body)
	}
}

// lintModel has two problems: an unknown dimension in a grouping set (line 17) and an unknown
// key in sink (line 21).
const lintModel = `version: 1
cubes:
  - name: edits
    source:
      kafka:
        brokers: [localhost:9092]
        topic: edits
    event_time:
      field: time
    dimensions:
      - name: channel
      - name: country
    measures:
      - {name: pv, type: count}
    grouping_sets:
      - [channel]
      - [contry]
    windows:
      - {granularity: day}
    sink:
      tabel: edits
`

// position returns the 1-based line and column of the first occurrence of needle in text.
func position(text, needle string) (line, col int) {
	i := strings.Index(text, needle)
	before := text[:i]
	line = strings.Count(before, "\n") + 1
	col = i - strings.LastIndex(before, "\n")
	return line, col
}

func TestLintEndpoint(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, http.MethodPost, "/api/v1/lint?file=wiki.yaml", "application/yaml", []byte(lintModel), nil)
	var got struct {
		Status string
		Data   LintResult
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || got.Status != "success" {
		t.Fatalf("%d %s %v", resp.StatusCode, body, err)
	}
	if len(got.Data.Diagnostics) != 2 {
		t.Fatalf("diagnostics: %s", body)
	}
	for i, needle := range []string{"contry", "tabel"} {
		d := got.Data.Diagnostics[i]
		line, col := position(lintModel, needle)
		if d.Line != line || d.Col != col || !strings.Contains(d.Message, `"`+needle+`"`) ||
			d.Text != "wiki.yaml:"+strconv.Itoa(line)+":"+strconv.Itoa(col)+": "+d.Message {
			t.Fatalf("diagnostic %d = %+v, want %s at %d:%d", i, d, needle, line, col)
		}
	}
	// A valid model: no diagnostics (an empty list, not null); the default file name.
	good := strings.Replace(strings.Replace(lintModel, "[contry]", "[country]", 1), "tabel", "table", 1)
	_, body = f.do(t, http.MethodPost, "/api/v1/lint", "", []byte(good), nil)
	if string(body) != `{"status":"success","data":{"diagnostics":[]}}`+"\n" {
		t.Fatalf("good model: %s", body)
	}
	_, body = f.do(t, http.MethodPost, "/api/v1/lint", "", []byte("version: [\n"), nil)
	if err := json.Unmarshal(body, &got); err != nil || len(got.Data.Diagnostics) == 0 || !strings.HasPrefix(got.Data.Diagnostics[0].Text, "model.yaml:") {
		t.Fatalf("syntax error: %s", body)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	f := newFixture(t)
	check := func(method, path string, code int, contains string) []byte {
		t.Helper()
		resp, body := f.do(t, method, path, "", nil, nil)
		if resp.StatusCode != code || !bytes.Contains(body, []byte(contains)) {
			t.Fatalf("%s %s: %d %q, want %d containing %q", method, path, resp.StatusCode, body, code, contains)
		}
		return body
	}
	body := check("GET", "/-/healthy", 200, "OK")
	if string(body) != "OK" {
		t.Fatalf("healthy body %q", body)
	}
	check("GET", "/-/ready", 503, "not ready")
	f.b.mu.Lock()
	f.b.ready = true
	f.b.mu.Unlock()
	check("GET", "/-/ready", 200, "OK")
	// The Go runtime's profiles, as net/http/pprof serves them.
	check("GET", "/debug/pprof/", 200, "goroutine")
	check("GET", "/debug/pprof/goroutine?debug=1", 200, "goroutine profile: total")

	body = check("GET", "/api/v1/status", 200, `"status":"success"`)
	if string(body) != `{"status":"success","data":{"cubes":[{"events_total":39244,"name":"edits"}]}}`+"\n" {
		t.Fatalf("status %s", body)
	}
	body = check("GET", "/api/v1/model", 200, `"file":"models/wiki.yaml"`)
	var model struct{ Data ModelInfo }
	if err := json.Unmarshal(body, &model); err != nil || model.Data.YAML != "version: 1\ncubes: []\n" || model.Data.Diagnostics == nil {
		t.Fatalf("model %s %v", body, err)
	}

	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "cubed_test_events_total", Help: "Test events."})
	f.reg.MustRegister(c)
	c.Add(7)
	check("GET", "/metrics", 200, "cubed_test_events_total 7")

	check("GET", "/api/v1/nothing", 404, `{"status":"error","errorType":"not_found","error":"no API endpoint GET /api/v1/nothing`)
	check("GET", "/", 200, "POST /api/v1/query")
	check("GET", "/api/v1/query", 400, `needs ?query=`)
	// A known path with another method falls to the API's catch-all.
	check("DELETE", "/api/v1/cubes", 404, `"error":"no API endpoint DELETE /api/v1/cubes`)

	// Bodies are capped.
	big := `{"cube":"edits","measures":["` + strings.Repeat("x", DefaultMaxBodyBytes) + `"]}`
	resp, body := f.do(t, "POST", "/api/v1/query", "", []byte(big), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(body, []byte(`"errorType":"bad_data","error":"request body is larger than the limit of 1048576 bytes"`)) {
		t.Fatalf("big body: %d %s", resp.StatusCode, body)
	}
	srv := NewServer(f.b, f.reg, WithMaxBodyBytes(10))
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/lint", strings.NewReader("version: 1\ncubes: []\n")))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("lint over a 10-byte cap: %d %s", rec.Code, rec.Body.Bytes())
	}
}

func TestQueryBackendErrors(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		err  error
		code int
		typ  string
	}{
		{ErrUnavailable, 503, "unavailable"},
		{errBoom, 500, "internal"},
	} {
		srv := NewServer(&failingBackend{memBackend: f.b, err: c.err}, f.reg, WithLogger(slog.New(slog.DiscardHandler)))
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/query", strings.NewReader(`{"cube":"edits","granularity":"hour"}`)))
		var a answer
		if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || rec.Code != c.code || a.ErrorType != c.typ ||
			!strings.Contains(a.Error, `scanning cube "edits" window 1 (hour) grouping set 0 []: `+c.err.Error()) {
			t.Fatalf("%v: %d %s", c.err, rec.Code, rec.Body.Bytes())
		}
	}
}

var errBoom = errors.New("disk on fire")

type failingBackend struct {
	*memBackend
	err error
}

func (b *failingBackend) Scan(string, int, uint16, int64, int64, func(*sink.Row) error) error {
	return b.err
}
