package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
)

// sharedData returns ../shared/data relative to the repository root; when it is absent the test
// fails in CI and is skipped loudly elsewhere.
func sharedData(t *testing.T, name string) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	repoRoot := filepath.Dir(filepath.Dir(here))
	p := filepath.Join(repoRoot, "..", "shared", "data", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data set %s is missing (CI is set): %v", p, err)
		}
		t.Skipf("SKIPPING: shared data set %s is missing: %v", p, err)
	}
	return p
}

func writeFile(t *testing.T, name string, content []byte, gz bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if gz {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(content); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		content = buf.Bytes()
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads every record with batches of max, copying the values.
func readAll(t *testing.T, f *File, max int) ([]string, []int64) {
	t.Helper()
	var vals []string
	var offs []int64
	for {
		recs, err := f.Next(context.Background(), max)
		if err == io.EOF {
			return vals, offs
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(recs) == 0 || len(recs) > max {
			t.Fatalf("Next returned %d records, want 1..%d", len(recs), max)
		}
		for _, r := range recs {
			if r.Partition != 0 {
				t.Fatalf("record at line %d has partition %d", r.Offset, r.Partition)
			}
			vals = append(vals, string(r.Value))
			offs = append(offs, r.Offset)
		}
	}
}

func TestFileJSONLines(t *testing.T) {
	long := `{"big":"` + strings.Repeat("x", 3<<20) + `"}`
	content := "\xef\xbb\xbf{\"a\":1}\r\n\n{\"a\":2}\n\r\n" + long + "\n{\"a\":3}" // BOM, CRLF, empty lines, a 3 MiB line, no final newline
	wantVals := []string{`{"a":1}`, `{"a":2}`, long, `{"a":3}`}
	wantOffs := []int64{1, 3, 5, 6}
	for _, gz := range []bool{false, true} {
		for _, max := range []int{1, 2, 1000} {
			t.Run(fmt.Sprintf("gz=%v/max=%d", gz, max), func(t *testing.T) {
				// The name never says gzip: detection is by content.
				f, err := OpenFile(writeFile(t, "events.json", []byte(content), gz), cube.FormatJSON)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if f.Header() != nil {
					t.Errorf("Header() = %q for JSON, want nil", f.Header())
				}
				vals, offs := readAll(t, f, max)
				if len(vals) != len(wantVals) {
					t.Fatalf("got %d records, want %d", len(vals), len(wantVals))
				}
				for i := range wantVals {
					if vals[i] != wantVals[i] || offs[i] != wantOffs[i] {
						t.Errorf("record %d: line %d %.40q, want line %d %.40q", i, offs[i], vals[i], wantOffs[i], wantVals[i])
					}
				}
				if _, err := f.Next(context.Background(), 10); err != io.EOF {
					t.Errorf("Next after EOF: %v, want io.EOF", err)
				}
				if f.Lines() != 6 {
					t.Errorf("Lines() = %d, want 6", f.Lines())
				}
			})
		}
	}
}

func TestFileBatchValuesStayValid(t *testing.T) {
	// Values of one batch must not overwrite each other, even when the internal buffer grows.
	var sb strings.Builder
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&sb, "{\"i\":%d,\"pad\":%q}\n", i, strings.Repeat("p", i*37%900))
	}
	f, err := OpenFile(writeFile(t, "x", []byte(sb.String()), false), cube.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := f.Next(context.Background(), 500)
	if err != nil || len(recs) != 500 {
		t.Fatalf("Next: %d records, %v", len(recs), err)
	}
	for i, r := range recs {
		want := fmt.Sprintf("{\"i\":%d,\"pad\":%q}", i, strings.Repeat("p", i*37%900))
		if string(r.Value) != want || r.Offset != int64(i+1) {
			t.Fatalf("record %d: line %d %.50q, want %.50q", i, r.Offset, r.Value, want)
		}
		if cap(r.Value) != len(r.Value) {
			t.Fatalf("record %d: cap %d > len %d lets an append overwrite the next record", i, cap(r.Value), len(r.Value))
		}
	}
}

func TestFileCSV(t *testing.T) {
	content := "ts,name,v\r\n1,\"a,b\",2\r\n\r\n2,\"multi\nline \"\"q\"\"\",3\n3,plain,4\n"
	for _, gz := range []bool{false, true} {
		f, err := OpenFile(writeFile(t, "x.csv", []byte(content), gz), cube.FormatCSV)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Header(); fmt.Sprint(got) != "[ts name v]" {
			t.Errorf("Header() = %q", got)
		}
		vals, offs := readAll(t, f, 2)
		wantVals := []string{`1,"a,b",2`, "2,\"multi\nline \"\"q\"\"\",3", "3,plain,4"}
		wantOffs := []int64{2, 4, 6}
		if fmt.Sprintf("%q %v", vals, offs) != fmt.Sprintf("%q %v", wantVals, wantOffs) {
			t.Errorf("gz=%v: got %q %v, want %q %v", gz, vals, offs, wantVals, wantOffs)
		}
		f.Close()

		// The decoder reads the multi-line record.
		p := testPlan(cube.FormatCSV, []string{"name"}, []string{"v"}, nil, "ts", cube.TimeUnixS, nil)
		d := mustDecoder(t, p)
		if err := d.SetHeader(f.Header()); err != nil {
			t.Fatal(err)
		}
		var ev Event
		if err := d.Decode([]byte(vals[1]), &ev); err != nil || string(ev.Dims[0]) != "multi\nline \"q\"" || ev.Values[0] != 3 || ev.Time != 2000 {
			t.Errorf("Decode(%q) = %q %v %d, %v", vals[1], ev.Dims[0], ev.Values, ev.Time, err)
		}
	}

	// Given columns: the first line is a record.
	f, err := OpenFile(writeFile(t, "y.csv", []byte("1,a,2\n"), false), cube.FormatCSV, WithColumns([]string{"ts", "name", "v"}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals, offs := readAll(t, f, 10)
	if fmt.Sprint(vals, offs, f.Header()) != "[1,a,2] [1] [ts name v]" {
		t.Errorf("with columns: %q %v %q", vals, offs, f.Header())
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := OpenFile(filepath.Join(t.TempDir(), "nope.json"), cube.FormatJSON); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := OpenFile(writeFile(t, "x", []byte("{}"), false), "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := OpenFile(writeFile(t, "x", nil, false), cube.FormatCSV); err == nil || !strings.Contains(err.Error(), "no header") {
		t.Errorf("empty CSV: %v", err)
	}
	// A truncated gzip stream is an error, not a silent end of file.
	full := writeFile(t, "x.gz", bytes.Repeat([]byte("{\"a\":1}\n"), 10000), true)
	data, _ := os.ReadFile(full)
	trunc := writeFile(t, "t.gz", data[:len(data)/2], false)
	f, err := OpenFile(trunc, cube.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gotErr error
	for gotErr == nil {
		_, gotErr = f.Next(context.Background(), 1000)
	}
	if gotErr == io.EOF {
		t.Errorf("truncated gzip read to a clean EOF")
	}
	// Too long a line.
	f2, err := OpenFile(writeFile(t, "l", []byte("short\n"+strings.Repeat("y", 5000)+"\n"), false), cube.FormatJSON, WithMaxLineBytes(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	recs, err := f2.Next(context.Background(), 10)
	if err == nil || !strings.Contains(err.Error(), "line 2") || len(recs) != 1 {
		t.Errorf("long line: %d records, %v", len(recs), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f3, _ := OpenFile(writeFile(t, "c", []byte("{}\n"), false), cube.FormatJSON)
	defer f3.Close()
	if _, err := f3.Next(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}

func countRecords(t *testing.T, f *File) (n int, first, last Record) {
	t.Helper()
	for {
		recs, err := f.Next(context.Background(), 4096)
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = Record{Value: bytes.Clone(recs[0].Value), Offset: recs[0].Offset}
		}
		last = Record{Value: bytes.Clone(recs[len(recs)-1].Value), Offset: recs[len(recs)-1].Offset}
		n += len(recs)
	}
}

// TestFileSharedData counts the records of the real data sets; the expected counts are those of
// ../shared/data/README.md.
func TestFileSharedData(t *testing.T) {
	t.Run("online_retail", func(t *testing.T) {
		f, err := OpenFile(sharedData(t, "online_retail.csv.gz"), cube.FormatCSV)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		want := []string{"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"}
		if fmt.Sprint(f.Header()) != fmt.Sprint(want) {
			t.Errorf("Header() = %q, want %q", f.Header(), want)
		}
		n, first, last := countRecords(t, f)
		if n != 541909 {
			t.Errorf("online_retail: %d records, want 541,909", n)
		}
		if first.Offset != 2 || last.Offset != 541910 {
			t.Errorf("offsets: first %d, last %d; want 2 and 541910", first.Offset, last.Offset)
		}
	})
	t.Run("wikiticker", func(t *testing.T) {
		f, err := OpenFile(sharedData(t, "wikiticker-2015-09-12.json.gz"), cube.FormatJSON)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n, first, _ := countRecords(t, f)
		if n != 39244 {
			t.Errorf("wikiticker: %d records, want 39,244", n)
		}
		if !bytes.HasPrefix(first.Value, []byte(`{"time":`)) {
			t.Errorf("first record %.60q", first.Value)
		}
	})
}

// TestDecodeSharedData decodes every record of the real data sets and checks facts from
// ../shared/data/README.md: distinct users and cancellation rows.
func TestDecodeSharedData(t *testing.T) {
	if testing.Short() {
		t.Skip("decoding whole data sets is skipped in -short mode")
	}
	t.Run("online_retail", func(t *testing.T) {
		f, err := OpenFile(sharedData(t, "online_retail.csv.gz"), cube.FormatCSV)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		london, err := time.LoadLocation("Europe/London")
		if err != nil {
			t.Fatal(err)
		}
		p := testPlan(cube.FormatCSV, []string{"Country", "InvoiceNo"}, []string{"Quantity", "UnitPrice"}, []string{"CustomerID"},
			"InvoiceDate", "2006-01-02 15:04:05", london)
		d := mustDecoder(t, p)
		if err := d.SetHeader(f.Header()); err != nil {
			t.Fatal(err)
		}
		users := map[string]bool{}
		cancellations, n := 0, 0
		var ev Event
		for {
			recs, err := f.Next(context.Background(), 4096)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if err := d.Decode(r.Value, &ev); err != nil {
					t.Fatalf("line %d: %v", r.Offset, err)
				}
				n++
				if len(ev.IDs[0]) > 0 {
					users[string(ev.IDs[0])] = true
				}
				if bytes.HasPrefix(ev.Dims[1], []byte("C")) {
					cancellations++
				}
			}
		}
		if n != 541909 || len(users) != 4372 || cancellations != 9288 {
			t.Errorf("online_retail: %d records, %d users, %d cancellations; want 541909, 4372, 9288", n, len(users), cancellations)
		}
	})
	t.Run("wikiticker", func(t *testing.T) {
		f, err := OpenFile(sharedData(t, "wikiticker-2015-09-12.json.gz"), cube.FormatJSON)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p := testPlan(cube.FormatJSON, []string{"channel", "isRobot"}, []string{"added"}, []string{"user"}, "time", cube.TimeRFC3339, nil)
		d := mustDecoder(t, p)
		users := map[string]bool{}
		var ev Event
		for {
			recs, err := f.Next(context.Background(), 4096)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if err := d.Decode(r.Value, &ev); err != nil {
					t.Fatalf("line %d: %v", r.Offset, err)
				}
				users[string(ev.IDs[0])] = true
			}
		}
		if len(users) != 10531 {
			t.Errorf("wikiticker: %d distinct users, want 10,531", len(users))
		}
	})
}

// BenchmarkFileNext reads generated JSON lines from a gzip file in batches of 1000 records; one
// op is one record.
func BenchmarkFileNext(b *testing.B) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := NewGenerator(GeneratorConfig{Seed: 9}).WriteLines(zw, 100000); err != nil {
		b.Fatal(err)
	}
	zw.Close()
	p := filepath.Join(b.TempDir(), "gen.json.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := OpenFile(p, cube.FormatJSON)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		recs, err := f.Next(context.Background(), 1000)
		if err == io.EOF {
			f.Close()
			if f, err = OpenFile(p, cube.FormatJSON); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	f.Close()
}
