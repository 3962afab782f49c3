package source

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cubed-olap/cubed/cube"
)

// oracleText is what a dimension or id should be, from encoding/json's decoding (UseNumber).
func oracleText(t *testing.T, v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	t.Fatalf("oracle: unexpected %T", v)
	return ""
}

func FuzzDecodeJSON(f *testing.F) {
	for _, l := range generatedLines(4) {
		f.Add(l, "CN", "uid_1", 12.5, true, int64(1442018818771))
	}
	f.Add([]byte(`{"time":"2015-09-11T00:46:58.771Z","channel":"#en.wikipedia","cityName":null,"isRobot":false,"added":36}`),
		"#ca.wikipédia", `quote " and \ backslash`, math.Copysign(0, -1), false, int64(-1))
	f.Add([]byte(`[1,2]`), "", "", 1e300, false, int64(0))
	f.Add([]byte(`{"ts":NaN}`), "<&>", "\u2028\x00\xff", 5e-324, true, int64(999999999999999999))
	f.Add([]byte(`{"a":{"b":{"c":`), "\t\n", "日本", math.MaxFloat64, false, int64(math.MinInt64))
	f.Add([]byte("{\"ts\":1,\"a\":\"\\ud83d\\ude00\"}"), "😀", "x", 1.0, true, int64(1))

	p := testPlan(cube.FormatJSON, []string{"a", "n.b", "n.num", "flag", "nul", "missing", "n"},
		[]string{"v", "vs", "nul", "missing"}, []string{"id", "n.num", "nul"}, "ts", cube.TimeUnixMS, nil)
	d := mustDecoder(f, p)
	var ev Event
	f.Fuzz(func(t *testing.T, raw []byte, s1, s2 string, num float64, flag bool, ms int64) {
		// Arbitrary bytes: no panic; valid JSON that is not an object is rejected.
		err := d.Decode(raw, &ev)
		if trimmed := bytes.TrimSpace(raw); json.Valid(trimmed) && trimmed[0] != '{' && err == nil {
			t.Fatalf("Decode(%q) accepted a JSON value that is not an object", raw)
		}

		// A valid generated record decodes to what encoding/json decodes.
		if math.IsNaN(num) || math.IsInf(num, 0) {
			num = 0
		}
		ms %= 1e18
		rec, err := json.Marshal(map[string]any{
			"ts": ms, "a": s1, "n": map[string]any{"b": s2, "num": num}, "flag": flag, "nul": nil,
			"v": num, "vs": strconv.FormatFloat(num, 'g', -1, 64), "id": s2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Decode(rec, &ev); err != nil {
			t.Fatalf("Decode(%s): %v", rec, err)
		}
		var o map[string]any
		dec := json.NewDecoder(bytes.NewReader(rec))
		dec.UseNumber()
		if err := dec.Decode(&o); err != nil {
			t.Fatal(err)
		}
		n := o["n"].(map[string]any)
		wantTime, _ := strconv.ParseInt(string(o["ts"].(json.Number)), 10, 64)
		if ev.Time != wantTime {
			t.Errorf("%s: Time = %d, want %d", rec, ev.Time, wantTime)
		}
		// The object dimension is JSON text that encoding/json decodes to the same object.
		var gotN any
		dec = json.NewDecoder(bytes.NewReader(ev.Dims[6]))
		dec.UseNumber()
		if err := dec.Decode(&gotN); err != nil || !reflect.DeepEqual(gotN, o["n"]) {
			t.Errorf("%s: dimension n = %q (%v), want JSON for %v", rec, ev.Dims[6], err, o["n"])
		}
		wantDims := []string{oracleText(t, o["a"]), oracleText(t, n["b"]), oracleText(t, n["num"]),
			oracleText(t, o["flag"]), "", ""}
		for i, w := range wantDims {
			if string(ev.Dims[i]) != w {
				t.Errorf("%s: dimension %s = %q, want %q", rec, p.Cube.Dimensions[i].Field, ev.Dims[i], w)
			}
		}
		wantV, _ := strconv.ParseFloat(string(o["v"].(json.Number)), 64)
		wantVS, _ := strconv.ParseFloat(o["vs"].(string), 64)
		for i, w := range []float64{wantV, wantVS, math.NaN(), math.NaN()} {
			if !sameFloat(ev.Values[i], w) {
				t.Errorf("%s: value %s = %v, want %v", rec, p.ValueFields[i], ev.Values[i], w)
			}
		}
		wantIDs := []string{oracleText(t, o["id"]), oracleText(t, n["num"]), ""}
		for i, w := range wantIDs {
			if string(ev.IDs[i]) != w {
				t.Errorf("%s: id %s = %q, want %q", rec, p.DistinctFields[i], ev.IDs[i], w)
			}
		}
	})
}

func FuzzDecodeCSV(f *testing.F) {
	f.Add([]byte(`1442018818771,"United Kingdom, The",12.5,u1`), "United Kingdom", "17850.0", 2.55, int64(1291191960000))
	f.Add([]byte(`1,"RECORD FRAME 7"" SINGLE",x,`), `RECORD FRAME 7" SINGLE`, "", -1.0, int64(0))
	f.Add([]byte(`1,"multi`+"\n"+`line",2,3`), "multi\nline", " lead", 1e-7, int64(-5))
	f.Add([]byte(`"open,2,3,4`), `"`, `""`, 0.0, int64(1))
	f.Add([]byte(`a"b,c,d,e`), "a,b", "\\.", 1e21, int64(999999999999999999))
	f.Add([]byte(""), "", "", 0.0, int64(0))

	p := testPlan(cube.FormatCSV, []string{"a", "b"}, []string{"v"}, []string{"b"}, "ts", cube.TimeUnixMS, nil)
	p.Cube.Source.Columns = []string{"ts", "a", "v", "b"}
	d := mustDecoder(f, p)
	var ev Event
	f.Fuzz(func(t *testing.T, raw []byte, a, b string, num float64, ms int64) {
		// Arbitrary line: no panic; where encoding/csv reads one record the splitter agrees.
		_ = d.Decode(raw, &ev)
		if len(raw) > 0 && !bytes.ContainsAny(raw, "\r\n") {
			r := csv.NewReader(bytes.NewReader(raw))
			r.FieldsPerRecord = -1
			if want, err := r.Read(); err == nil {
				got, err := splitCSV(nil, make([]byte, 0, len(raw)), raw)
				if err != nil {
					t.Fatalf("splitCSV(%q): %v; encoding/csv reads %q", raw, err, want)
				}
				if len(got) != len(want) {
					t.Fatalf("splitCSV(%q) = %q, encoding/csv reads %q", raw, strs(got), want)
				}
				for i := range want {
					if string(got[i]) != want[i] {
						t.Fatalf("splitCSV(%q) = %q, encoding/csv reads %q", raw, strs(got), want)
					}
				}
			}
		}

		// A generated valid line decodes to what encoding/csv decodes. encoding/csv turns
		// "\r\n" inside a quoted field into "\n" while RFC 4180 keeps it, so no '\r' here.
		a = strings.ReplaceAll(a, "\r", "")
		b = strings.ReplaceAll(b, "\r", "")
		if math.IsNaN(num) || math.IsInf(num, 0) {
			num = 0
		}
		ms %= 1e18
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		if err := w.Write([]string{strconv.FormatInt(ms, 10), a, strconv.FormatFloat(num, 'g', -1, 64), b}); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		line := buf.Bytes()
		r := csv.NewReader(bytes.NewReader(line))
		want, err := r.Read()
		if err != nil {
			t.Fatalf("encoding/csv cannot read back %q: %v", line, err)
		}
		if err := d.Decode(line, &ev); err != nil {
			t.Fatalf("Decode(%q): %v", line, err)
		}
		wantTime, _ := strconv.ParseInt(want[0], 10, 64)
		wantV, _ := strconv.ParseFloat(want[2], 64)
		if ev.Time != wantTime || string(ev.Dims[0]) != want[1] || string(ev.Dims[1]) != want[3] ||
			!sameFloat(ev.Values[0], wantV) || string(ev.IDs[0]) != want[3] {
			t.Fatalf("Decode(%q) = time %d dims %q value %v id %q; encoding/csv reads %q",
				line, ev.Time, strs(ev.Dims), ev.Values[0], ev.IDs[0], want)
		}
	})
}
