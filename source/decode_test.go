package source

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/London without depending on the machine's zoneinfo

	"github.com/cubed-olap/cubed/cube"
)

// testPlan builds a plan by hand: every dimension is in the layer-1 key.
func testPlan(format string, dims []string, values, ids []string, timeField, timeFormat string, loc *time.Location) *cube.Plan {
	c := &cube.Cube{
		Name:   "t",
		Source: cube.Source{Format: format},
		EventTime: cube.EventTime{
			Field: timeField, Path: strings.Split(timeField, "."), Format: timeFormat, Location: loc,
		},
	}
	p := &cube.Plan{Cube: c, ValueFields: values, DistinctFields: ids}
	for i, d := range dims {
		c.Dimensions = append(c.Dimensions, cube.Dimension{Name: fmt.Sprintf("d%d", i), Field: d, Path: strings.Split(d, ".")})
		p.Dimensions = append(p.Dimensions, i)
	}
	return p
}

func mustDecoder(t testing.TB, p *cube.Plan) *Decoder {
	t.Helper()
	d, err := NewDecoder(p)
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	return d
}

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// sameFloat treats NaN as equal to NaN.
func sameFloat(a, b float64) bool {
	return a == b || math.IsNaN(a) && math.IsNaN(b)
}

func TestDecodeJSONFields(t *testing.T) {
	p := testPlan(cube.FormatJSON,
		[]string{"channel", "actor.login", "n", "robot", "nothing", "missing", "obj", "arr", "deep.a.b"},
		[]string{"added", "price", "gone", "nul", "empty", "nested.v"},
		[]string{"user", "uid_num", "uid_empty", "uid_null"},
		"time", cube.TimeRFC3339, time.UTC)
	d := mustDecoder(t, p)
	rec := `{"time":"2015-09-12T00:46:58.771Z","channel":"#en.wikipedia","actor":{"login":"octo\"cat"},` +
		`"n":12.50,"robot":true,"nothing":null,"obj":{"a": 1, "b":[true,null]},"arr":[1, "x"],` +
		`"deep":{"a":{"b":false}},"added":36,"price":"12.5","nul":null,"empty":"","nested":{"v":-1e3},` +
		`"user":"GELongstreet","uid_num":17850.0,"uid_empty":"","uid_null":null}`
	var ev Event
	if err := d.Decode([]byte(rec), &ev); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if ev.Time != 1442018818771 {
		t.Errorf("Time = %d, want 1442018818771", ev.Time)
	}
	wantDims := []string{"#en.wikipedia", `octo"cat`, "12.50", "true", "", "", `{"a":1,"b":[true,null]}`, `[1,"x"]`, "false"}
	if got := strs(ev.Dims); fmt.Sprint(got) != fmt.Sprint(wantDims) {
		t.Errorf("Dims = %q, want %q", got, wantDims)
	}
	wantVals := []float64{36, 12.5, math.NaN(), math.NaN(), math.NaN(), -1000}
	for i, w := range wantVals {
		if !sameFloat(ev.Values[i], w) {
			t.Errorf("Values[%d] (%s) = %v, want %v", i, p.ValueFields[i], ev.Values[i], w)
		}
	}
	wantIDs := []string{"GELongstreet", "17850.0", "", ""}
	if got := strs(ev.IDs); fmt.Sprint(got) != fmt.Sprint(wantIDs) {
		t.Errorf("IDs = %q, want %q", got, wantIDs)
	}

	// A second record with other shapes reuses the same Event without leaking old values.
	rec2 := `{"time":"2015-09-12T00:46:58.771Z","channel":false,"n":"7","added":null,"price":1,"user":42}`
	if err := d.Decode([]byte(rec2), &ev); err != nil {
		t.Fatalf("Decode 2: %v", err)
	}
	wantDims = []string{"false", "", "7", "", "", "", "", "", ""}
	if got := strs(ev.Dims); fmt.Sprint(got) != fmt.Sprint(wantDims) {
		t.Errorf("Dims 2 = %q, want %q", got, wantDims)
	}
	if !math.IsNaN(ev.Values[0]) || ev.Values[1] != 1 {
		t.Errorf("Values 2 = %v, want [NaN 1 ...]", ev.Values)
	}
	if string(ev.IDs[0]) != "42" {
		t.Errorf("IDs[0] = %q, want 42", ev.IDs[0])
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	p := testPlan(cube.FormatJSON, []string{"c"}, []string{"amount"}, nil, "meta.ts", cube.TimeRFC3339, time.UTC)
	d := mustDecoder(t, p)
	good := `{"meta":{"ts":"2015-09-12T00:46:58.771Z"},"c":"x","amount":1}`
	cases := []struct {
		rec  string
		want []string // substrings of the error
	}{
		{`[1,2]`, []string{"array", "not a JSON object"}},
		{`"str"`, []string{"string", "not a JSON object"}},
		{`{"meta":`, []string{"decoding JSON record"}},
		{``, []string{"decoding JSON record"}},
		{`{"c":"x"}`, []string{`"meta.ts"`, "missing"}},
		{`{"meta":{"ts":null}}`, []string{`"meta.ts"`, "missing or null"}},
		{`{"meta":{"ts":true}}`, []string{`"meta.ts"`, "true"}},
		{`{"meta":{"ts":"yesterday"}}`, []string{`"meta.ts"`, `"yesterday"`, "rfc3339"}},
		{`{"meta":{"ts":"2015-09-12T00:46:58.771Z"},"amount":"abc"}`, []string{`"amount"`, `"abc"`, "not a number"}},
		{`{"meta":{"ts":"2015-09-12T00:46:58.771Z"},"amount":{"x":1}}`, []string{`"amount"`, "object"}},
		{`{"meta":{"ts":"2015-09-12T00:46:58.771Z"},"amount":"1e999"}`, []string{`"amount"`, "finite"}},
		{`{"meta":{"ts":"2015-09-12T00:46:58.771Z"},"amount":-1e999}`, []string{`"amount"`, "finite"}},
	}
	var ev Event
	for _, c := range cases {
		err := d.Decode([]byte(c.rec), &ev)
		if err == nil {
			t.Errorf("Decode(%s) succeeded, want an error", c.rec)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Decode(%s) error %q does not mention %q", c.rec, err, w)
			}
		}
		// The decoder stays usable.
		if err := d.Decode([]byte(good), &ev); err != nil || ev.Time != 1442018818771 || string(ev.Dims[0]) != "x" {
			t.Fatalf("after error on %s: Decode(good) = %v, event %+v", c.rec, err, ev)
		}
	}
}

func TestTimeFormats(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	type tc struct {
		format string
		loc    *time.Location
		raw    string // JSON text of the field
		want   int64
		bad    bool
	}
	cases := []tc{
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58.771Z"`, 1442018818771, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58Z"`, 1442018818000, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58.7Z"`, 1442018818700, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58.771999999Z"`, 1442018818771, false},
		{cube.TimeRFC3339, nil, `"2015-09-12t00:46:58.771z"`, 1442018818771, false},
		{cube.TimeRFC3339, nil, `"2015-09-12 00:46:58.771Z"`, 1442018818771, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T08:46:58+08:00"`, 1442018818000, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T08:16:58-00:00"`, 1442045818000, false},
		{cube.TimeRFC3339, nil, `"2015-09-11T16:46:58.771-08:00"`, 1442018818771, false},
		{cube.TimeRFC3339, nil, `"1969-12-31T23:59:59Z"`, -1000, false},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-09-12"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-13-12T00:46:58Z"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-02-29T00:46:58Z"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-09-12T24:00:00Z"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58+0800"`, 0, true},
		{cube.TimeRFC3339, nil, `"2015-09-12T00:46:58.Z"`, 0, true},
		{cube.TimeRFC3339, nil, `1442018818`, 0, true},

		{cube.TimeUnixS, nil, `1442018818`, 1442018818000, false},
		{cube.TimeUnixS, nil, `"1442018818"`, 1442018818000, false},
		{cube.TimeUnixS, nil, `1442018818.771`, 1442018818771, false},
		{cube.TimeUnixS, nil, `"1442018818.7719"`, 1442018818771, false},
		{cube.TimeUnixS, nil, `1.442018818e9`, 1442018818000, false},
		{cube.TimeUnixS, nil, `-1.5`, -1500, false},
		{cube.TimeUnixS, nil, `-0.0001`, -1, false},
		{cube.TimeUnixS, nil, `"soon"`, 0, true},
		{cube.TimeUnixS, nil, `"1442018818."`, 1442018818000, false}, // strconv.ParseFloat syntax
		{cube.TimeUnixS, nil, `"1442018818.x"`, 0, true},
		{cube.TimeUnixMS, nil, `1442018818771`, 1442018818771, false},
		{cube.TimeUnixMS, nil, `"1442018818771"`, 1442018818771, false},
		{cube.TimeUnixMS, nil, `1442018818771.9`, 1442018818771, false},
		{cube.TimeUnixMS, nil, `""`, 0, true},

		// Europe/London across the 2011 DST changes (BST from 2011-03-27 01:00 UTC to
		// 2011-10-30 01:00 UTC); expected values computed with Python's datetime in UTC.
		{"2006-01-02 15:04:05", london, `"2011-03-27 00:30:00"`, 1301185800000, false},
		{"2006-01-02 15:04:05", london, `"2011-03-27 02:30:00"`, 1301189400000, false},
		{"2006-01-02 15:04:05", london, `"2011-10-30 00:30:00"`, 1319931000000, false},
		{"2006-01-02 15:04:05", london, `"2011-10-30 02:30:00"`, 1319941800000, false},
		{"2006-01-02 15:04:05", nil, `"2010-12-01 08:26:00"`, 1291191960000, false},
		{"2006-01-02 15:04:05", nil, `"2010-12-01 08:26:00.5"`, 1291191960500, false},
		{"2006-01-02 15:04:05", nil, `"2010-12-01 8:26:00"`, 1291191960000, false}, // time.Parse accepts a 1-digit hour
		{"2006-01-02 15:04:05", nil, `"2010-02-30 08:26:00"`, 0, true},
		{"2006-01-02T15:04:05", nil, `"2010-12-01T08:26:00"`, 1291191960000, false},
		{"02/Jan/2006:15:04:05 -0700", nil, `"01/Dec/2010:09:26:00 +0100"`, 1291191960000, false},
		{"02/Jan/2006:15:04:05 -0700", nil, `"01/Dec/2010:09:26:00"`, 0, true},
	}
	for _, c := range cases {
		p := testPlan(cube.FormatJSON, nil, nil, nil, "ts", c.format, c.loc)
		d := mustDecoder(t, p)
		var ev Event
		err := d.Decode([]byte(`{"ts":`+c.raw+`}`), &ev)
		switch {
		case c.bad && err == nil:
			t.Errorf("%s %s: got %d, want an error", c.format, c.raw, ev.Time)
		case c.bad && !strings.Contains(err.Error(), `"ts"`):
			t.Errorf("%s %s: error %q does not name the field", c.format, c.raw, err)
		case !c.bad && err != nil:
			t.Errorf("%s %s: %v", c.format, c.raw, err)
		case !c.bad && ev.Time != c.want:
			t.Errorf("%s %s: got %d, want %d (off by %v)", c.format, c.raw, ev.Time, c.want, time.Duration(ev.Time-c.want)*time.Millisecond)
		}
	}
}

// TestLayoutFastPathMatchesTimeParse checks the hand-written layout parser against
// time.ParseInLocation, every half hour over both 2011 DST changes in Europe/London (including
// the skipped and the repeated hour) and on random instants.
func TestLayoutFastPathMatchesTimeParse(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, day := range []string{"2011-03-27", "2011-10-30", "2011-03-13", "2011-11-06"} {
		for m := 0; m < 24*60; m += 30 {
			texts = append(texts, fmt.Sprintf("%s %02d:%02d:%02d", day, m/60, m%60, m%7))
		}
	}
	for i := int64(0); i < 2000; i++ {
		ts := time.Unix(i*i*7919%4000000000, i*1234567%1e9).UTC()
		texts = append(texts, ts.Format("2006-01-02 15:04:05.000000"))
	}
	for _, loc := range []*time.Location{time.UTC, london, newYork} {
		tp, err := newTimeParser(layoutSpace, loc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range texts {
			want, err := time.ParseInLocation(layoutSpace, s, loc)
			if err != nil {
				t.Fatalf("oracle cannot parse %q: %v", s, err)
			}
			got, err := tp.parseUncached([]byte(s))
			if err != nil || got != want.UnixMilli() {
				t.Fatalf("%s in %s: got %d, %v; want %d", s, loc, got, err, want.UnixMilli())
			}
		}
	}
}

func TestRFC3339MatchesTimeParse(t *testing.T) {
	zones := []string{"Z", "+00:00", "+05:30", "-08:00", "+14:00"}
	for i := int64(0); i < 3000; i++ {
		sec := i*i*104729%8000000000 - 1000000000
		ts := time.Unix(sec, i*7654321%1e9).UTC()
		s := ts.Format("2006-01-02T15:04:05.999999999") + zones[i%int64(len(zones))]
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("oracle cannot parse %q: %v", s, err)
		}
		got, ok := parseRFC3339([]byte(s))
		if !ok || got != want.UnixMilli() {
			t.Fatalf("%s: got %d, %v; want %d", s, got, ok, want.UnixMilli())
		}
	}
}

func TestTimeCache(t *testing.T) {
	p := testPlan(cube.FormatJSON, nil, nil, nil, "ts", cube.TimeRFC3339, nil)
	d := mustDecoder(t, p)
	var ev Event
	seq := []struct {
		raw  string
		want int64
		bad  bool
	}{
		{`"2015-09-12T00:46:58.771Z"`, 1442018818771, false},
		{`"2015-09-12T00:46:58.771Z"`, 1442018818771, false},
		{`"garbage"`, 0, true},
		{`"garbage"`, 0, true}, // an error is never cached as a success
		{`"2015-09-12T00:46:58.771Z"`, 1442018818771, false},
		{`"2015-09-12T00:46:59.771Z"`, 1442018819771, false},
		{`"2015-09-12T00:46:58.771Z"`, 1442018818771, false},
	}
	for i, s := range seq {
		err := d.Decode([]byte(`{"ts":`+s.raw+`}`), &ev)
		if (err != nil) != s.bad || !s.bad && ev.Time != s.want {
			t.Errorf("step %d %s: time %d err %v; want %d bad=%v", i, s.raw, ev.Time, err, s.want, s.bad)
		}
	}
}

func TestNewDecoderErrors(t *testing.T) {
	if _, err := NewDecoder(nil); err == nil {
		t.Error("NewDecoder(nil) succeeded")
	}
	p := testPlan("xml", nil, nil, nil, "ts", cube.TimeRFC3339, nil)
	if _, err := NewDecoder(p); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("format xml: err = %v", err)
	}
	p = testPlan(cube.FormatJSON, nil, nil, nil, "ts", "yyyy-MM-dd", nil)
	if _, err := NewDecoder(p); err == nil || !strings.Contains(err.Error(), `"yyyy-MM-dd"`) {
		t.Errorf("format yyyy-MM-dd: err = %v", err)
	}
	p = testPlan(cube.FormatCSV, []string{"country"}, nil, nil, "ts", cube.TimeUnixMS, nil)
	p.Cube.Source.Columns = []string{"ts", "contry"}
	if _, err := NewDecoder(p); err == nil || !strings.Contains(err.Error(), `"country"`) || !strings.Contains(err.Error(), "contry") {
		t.Errorf("missing column: err = %v", err)
	}
}

func TestDecodeCSV(t *testing.T) {
	p := testPlan(cube.FormatCSV, []string{"Country", "Description"}, []string{"Quantity", "UnitPrice"}, []string{"CustomerID"},
		"InvoiceDate", "2006-01-02 15:04:05", nil)
	d := mustDecoder(t, p)
	var ev Event
	if err := d.Decode([]byte("a,b"), &ev); err == nil || !strings.Contains(err.Error(), "header") {
		t.Fatalf("Decode before SetHeader: err = %v, want a header error", err)
	}
	if err := d.SetHeader([]string{"InvoiceNo", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"}); err == nil ||
		!strings.Contains(err.Error(), `"Country"`) {
		t.Fatalf("SetHeader without Country: err = %v", err)
	}
	header := []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
	if err := d.SetHeader(header); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		line     string
		dims     []string
		vals     []float64
		id, time string
		err      string
	}{
		{line: "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
			dims: []string{"United Kingdom", "WHITE HANGING HEART T-LIGHT HOLDER"}, vals: []float64{6, 2.55}, id: "17850.0", time: "2010-12-01T08:26:00Z"},
		{line: `536381,82567,"AIRLINE LOUNGE,METAL SIGN",2,2010-12-01 09:41:00,2.1,15311.0,United Kingdom` + "\r\n",
			dims: []string{"United Kingdom", "AIRLINE LOUNGE,METAL SIGN"}, vals: []float64{2, 2.1}, id: "15311.0", time: "2010-12-01T09:41:00Z"},
		{line: `536477,22041,"RECORD FRAME 7"" SINGLE SIZE ",48,2010-12-01 12:27:00,2.1,,"Eire"` + "\n",
			dims: []string{"Eire", `RECORD FRAME 7" SINGLE SIZE `}, vals: []float64{48, 2.1}, id: "", time: "2010-12-01T12:27:00Z"},
		{line: `C1,X,"""quoted"" and ""more""",-1,2010-12-01 12:27:00,,,"multi` + "\nline\"",
			dims: []string{"multi\nline", `"quoted" and "more"`}, vals: []float64{-1, math.NaN()}, id: "", time: "2010-12-01T12:27:00Z"},
		{line: `1,2,3,4,2010-12-01 12:27:00,6,7`, err: "7 columns, want 8"},
		{line: `1,2,3,4,2010-12-01 12:27:00,6,7,8,9`, err: "9 columns, want 8"},
		{line: `1,2,"unclosed,4,2010-12-01 12:27:00,6,7,8`, err: "not closed"},
		{line: `1,2,"x"y,4,2010-12-01 12:27:00,6,7,8`, err: "after the closing quote"},
		{line: `1,2,3,4,,6,7,8`, err: `"InvoiceDate": empty`},
		{line: `1,2,3,4,2010-12-01,6,7,8`, err: `"2010-12-01"`},
		{line: `1,2,3,many,2010-12-01 12:27:00,6,7,8`, err: `"Quantity"`},
	}
	for _, c := range cases {
		err := d.Decode([]byte(c.line), &ev)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Decode(%q) err = %v, want it to mention %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Decode(%q): %v", c.line, err)
			continue
		}
		if fmt.Sprint(strs(ev.Dims)) != fmt.Sprint(c.dims) {
			t.Errorf("Decode(%q) dims = %q, want %q", c.line, strs(ev.Dims), c.dims)
		}
		for i, w := range c.vals {
			if !sameFloat(ev.Values[i], w) {
				t.Errorf("Decode(%q) value %d = %v, want %v", c.line, i, ev.Values[i], w)
			}
		}
		if string(ev.IDs[0]) != c.id {
			t.Errorf("Decode(%q) id = %q, want %q", c.line, ev.IDs[0], c.id)
		}
		want, _ := time.Parse(time.RFC3339, c.time)
		if ev.Time != want.UnixMilli() {
			t.Errorf("Decode(%q) time = %d, want %d", c.line, ev.Time, want.UnixMilli())
		}
	}
}

// TestSplitCSVMatchesEncodingCSV compares the splitter with encoding/csv on hand-picked lines.
func TestSplitCSVMatchesEncodingCSV(t *testing.T) {
	lines := []string{
		`a,b,c`, `a,,c`, `,`, `,,`, `""`, `"",""`, `"a,b",c`, `"a""b",c`, `"""",x`, `x,""""`,
		`"a""b""c"`, `a, b ,c `, `"multi` + "\n" + `line",x`, `"trailing",`, `plain`, `é,ü,"ß"`,
		`"a"b`, `"open`, `a"b,c`,
	}
	for _, l := range lines {
		got, err := splitCSV(nil, make([]byte, 0, len(l)), []byte(l))
		r := csv.NewReader(strings.NewReader(l))
		r.FieldsPerRecord = -1
		want, werr := r.Read()
		if werr != nil {
			if err == nil && !strings.Contains(l, `a"b`) { // a bare quote in an unquoted field is kept on purpose
				t.Errorf("splitCSV(%q) = %q, encoding/csv fails with %v", l, strs(got), werr)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitCSV(%q): %v; encoding/csv reads %q", l, err, want)
			continue
		}
		if fmt.Sprintf("%q", strs(got)) != fmt.Sprintf("%q", want) {
			t.Errorf("splitCSV(%q) = %q, encoding/csv reads %q", l, strs(got), want)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts in -short mode are not needed")
	}
	lines := generatedLines(256)
	d := mustDecoder(t, benchPlan(cube.FormatJSON))
	var ev Event
	for _, l := range lines {
		if err := d.Decode(l, &ev); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if err := d.Decode(lines[i%len(lines)], &ev); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("JSON Decode allocates %.2f times per record in steady state, want 0", allocs)
	}

	csvLines := [][]byte{
		[]byte(`536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom`),
		[]byte(`536477,22041,"RECORD FRAME 7"" SINGLE SIZE ",48,2010-12-01 12:27:00,2.1,16210.0,United Kingdom`),
	}
	dc := mustDecoder(t, benchPlan(cube.FormatCSV))
	for _, l := range csvLines {
		if err := dc.Decode(l, &ev); err != nil {
			t.Fatal(err)
		}
	}
	allocs = testing.AllocsPerRun(1000, func() {
		if err := dc.Decode(csvLines[i%len(csvLines)], &ev); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("CSV Decode allocates %.2f times per record in steady state, want 0", allocs)
	}
}

// benchPlan is a realistic plan: generator events for JSON, online_retail for CSV.
func benchPlan(format string) *cube.Plan {
	if format == cube.FormatCSV {
		p := testPlan(cube.FormatCSV, []string{"Country", "StockCode"}, []string{"Quantity", "UnitPrice"}, []string{"CustomerID"},
			"InvoiceDate", "2006-01-02 15:04:05", nil)
		p.Cube.Source.Columns = []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
		return p
	}
	return testPlan(cube.FormatJSON, []string{"country", "platform", "app_version", "channel", "page"},
		[]string{"duration_ms", "amount"}, []string{"user_id"}, "event_time", GeneratorLayout, nil)
}

func generatedLines(n int) [][]byte {
	g := NewGenerator(GeneratorConfig{Users: 100000, Seed: 1, Rate: 200})
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = g.Next(nil, g.Time(int64(i)))
	}
	return lines
}

func BenchmarkDecodeJSON(b *testing.B) {
	lines := generatedLines(4096)
	d := mustDecoder(b, benchPlan(cube.FormatJSON))
	var ev Event
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.SetBytes(int64(total / len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Decode(lines[i%len(lines)], &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCSV(b *testing.B) {
	line := []byte(`536477,22041,"RECORD FRAME 7"" SINGLE SIZE ",48,2010-12-01 12:27:00,2.1,16210.0,United Kingdom`)
	d := mustDecoder(b, benchPlan(cube.FormatCSV))
	var ev Event
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := d.Decode(line, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// lineReader is an io.Reader whose content is swapped per record, so that one csv.Reader can
// be reused across records (the best case for encoding/csv).
type lineReader struct{ b []byte }

func (r *lineReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkSplitCSV compares the hand-written splitter with encoding/csv (ReuseRecord, one
// reader reused across records): encoding/csv allocates the record's string on every Read,
// which is why the decoder splits by hand.
func BenchmarkSplitCSV(b *testing.B) {
	line := []byte(`536477,22041,"RECORD FRAME 7"" SINGLE SIZE ",48,2010-12-01 12:27:00,2.1,16210.0,United Kingdom`)
	b.Run("hand", func(b *testing.B) {
		var fields [][]byte
		scratch := make([]byte, 0, len(line))
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var err error
			fields, err = splitCSV(fields[:0], scratch, line)
			if err != nil || len(fields) != 8 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_csv", func(b *testing.B) {
		lr := &lineReader{}
		r := csv.NewReader(lr)
		r.ReuseRecord = true
		r.FieldsPerRecord = -1
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			lr.b = line
			rec, err := r.Read()
			if err != nil || len(rec) != 8 {
				b.Fatal(err)
			}
		}
	})
}

func TestLineReaderReuse(t *testing.T) {
	// The encoding/csv benchmark relies on one reader surviving many swapped lines.
	lr := &lineReader{}
	r := csv.NewReader(lr)
	r.ReuseRecord = true
	for i := 0; i < 3; i++ {
		lr.b = []byte(fmt.Sprintf(`a,"b%d"`, i))
		rec, err := r.Read()
		if err != nil || !bytes.Equal([]byte(rec[1]), []byte(fmt.Sprintf("b%d", i))) {
			t.Fatalf("read %d: %q %v", i, rec, err)
		}
	}
}

// TestParseDecimal: the fast path returns exactly (bit for bit) what strconv.ParseFloat returns
// for random decimal texts of 1 to 15 digits (the fast path) and of 16 to 19 digits (strconv's
// path through parseFloat), and leaves every other syntax to strconv.
func TestParseDecimal(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	fast := 0
	for n := 0; n < 200000; n++ {
		nd := 1 + r.Intn(19)
		text := make([]byte, 0, 24)
		if r.Intn(3) == 0 {
			text = append(text, '-')
		}
		point := r.Intn(nd + 1) // digits before the point; nd means no point
		for i := 0; i < nd; i++ {
			if i == point && i > 0 {
				text = append(text, '.')
			}
			text = append(text, byte('0'+r.Intn(10)))
		}
		want, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			t.Fatalf("strconv rejects %q: %v", text, err)
		}
		got, ok := parseDecimal(text)
		if ok {
			fast++
			if nd > 15 {
				t.Fatalf("parseDecimal(%q) took the fast path with %d digits", text, nd)
			}
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("parseDecimal(%q) = %v (%#x), strconv says %v (%#x)", text, got, math.Float64bits(got), want, math.Float64bits(want))
			}
		} else if nd <= 15 {
			t.Fatalf("parseDecimal(%q) refused a plain %d-digit decimal", text, nd)
		}
		if got, err := parseFloat(text); err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseFloat(%q) = %v, %v; want %v", text, got, err, want)
		}
	}
	if fast < 100000 {
		t.Fatalf("only %d texts took the fast path", fast)
	}
	for _, s := range []string{"", "-", "1.", ".5", "+1", "1e5", "1E-3", "0x10", "1_000", "NaN", "inf", "1.2.3", "12a", " 1", "--1"} {
		if f, ok := parseDecimal([]byte(s)); ok {
			t.Errorf("parseDecimal(%q) = %v, want it left to strconv", s, f)
		}
	}
	if f, ok := parseDecimal([]byte("-0")); !ok || !math.Signbit(f) || f != 0 {
		t.Errorf(`parseDecimal("-0") = %v, %v; want -0`, f, ok)
	}
	if f, ok := parseDecimal([]byte("0.1")); !ok || f != 0.1 {
		t.Errorf(`parseDecimal("0.1") = %v, %v; want 0.1`, f, ok)
	}
}
