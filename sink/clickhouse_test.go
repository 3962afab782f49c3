package sink_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/internal/chtest"
	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/web"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// chModel has every measure kind, a cumulative and a tumbling window of the same granularity
// (their last step and window share start and end; the granularity column tells them apart), and
// grouping sets that roll dimensions up.
const chModel = `version: 1
cubes:
  - name: edits
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [{name: channel}, {name: page}, {name: robot}, {name: unused}]
    measures:
      - {name: pv, type: count}
      - {name: added, type: sum, field: added}
      - {name: low, type: min, field: added}
      - {name: high, type: max, field: added}
      - {name: uv, type: count_distinct, field: user}
    grouping_sets: [[], [channel], [channel, page], [page, robot]]
    windows:
      - {granularity: day, step: 6h}
      - {granularity: day}
      - {granularity: hour}
    sink:
      clickhouse: {addr: "127.0.0.1:9000", database: cubed_test, table: edits_results}
`

func chPlan(t testing.TB, yaml string) *cube.Plan {
	t.Helper()
	m, diags := cube.Parse("m.yaml", []byte(yaml))
	if len(diags) > 0 {
		t.Fatalf("model: %v", diags)
	}
	p, err := cube.Compile(m.Cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClickHouseDDLGolden(t *testing.T) {
	p := chPlan(t, chModel)
	got, err := sink.DDL(p, p.Cube.Sink.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "clickhouse_ddl.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./sink/ -run DDL -update)", err)
	}
	if got != string(want) {
		t.Errorf("DDL:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	if _, err := sink.DDL(p, &cube.ClickHouseSink{Database: "x; DROP TABLE y", Table: "t"}); err == nil {
		t.Error("DDL accepted a database name that is not an identifier")
	}
}

// openCH opens a sink on srv with fast retries, for db.
func openCH(t testing.TB, srv *chtest.Server, db string, create bool, opts ...sink.ClickHouseOption) *sink.ClickHouse {
	t.Helper()
	cfg := &cube.ClickHouseSink{Addr: srv.Addr(), Database: db, Username: "default", CreateTables: create}
	opts = append([]sink.ClickHouseOption{sink.WithClickHouseBackoff(20*time.Millisecond, 500*time.Millisecond),
		sink.WithClickHouseAttemptTimeout(20 * time.Second)}, opts...)
	c, err := sink.OpenClickHouse(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClickHouseCreateAndRefuse(t *testing.T) {
	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	ctx := context.Background()

	// Missing table with create_tables off: refused, nothing created.
	off := openCH(t, srv, "cubed_test", false)
	table, err := off.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	if table != "edits_results" {
		t.Fatalf("table %q, want edits_results", table)
	}
	if err := off.EnsureTable(ctx, table); !errors.Is(err, sink.ErrClickHouseSchema) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("EnsureTable without create_tables on a missing table: %v, want a schema error saying missing", err)
	}

	// Creation: the database and the table, with exactly the DDL's columns (read by
	// clickhouse-client, not by the driver that created them).
	c := openCH(t, srv, "cubed_test", true)
	if _, err := c.Define(p); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTable(ctx, table); err != nil {
		t.Fatal(err)
	}
	cols := srv.Query("SELECT name, type FROM system.columns WHERE database = 'cubed_test' AND table = 'edits_results'")
	wantCols := "window_start\tDateTime\nwindow_end\tDateTime\ngranularity\tString\ngrouping_set\tUInt16\n" +
		"channel\tString\npage\tString\nrobot\tString\npv\tUInt64\nadded\tFloat64\nlow\tNullable(Float64)\n" +
		"high\tNullable(Float64)\nuv\tUInt64\nversion\tUInt64\n"
	if cols != wantCols {
		t.Errorf("columns:\n%s\nwant:\n%s", cols, wantCols)
	}
	if got := srv.Query("SELECT engine FROM system.tables WHERE database = 'cubed_test' AND name = 'edits_results'"); got != "ReplacingMergeTree\n" {
		t.Errorf("engine %q", got)
	}
	// Creating again is a no-op, and the sink with create_tables off now accepts the table.
	if err := off.EnsureTable(ctx, table); err != nil {
		t.Fatalf("EnsureTable on the existing table: %v", err)
	}

	// A table whose columns disagree is refused, naming each difference.
	srv.Query("CREATE TABLE cubed_test.bad (window_start DateTime, window_end DateTime, granularity String, " +
		"grouping_set UInt16, channel String, page UInt32, pv UInt64, added Float64, low Nullable(Float64), " +
		"high Nullable(Float64), uv UInt64, version UInt64, final UInt8, extra String) " +
		"ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(window_start) ORDER BY (grouping_set, window_start)")
	p2 := chPlan(t, strings.Replace(chModel, "table: edits_results", "table: bad", 1))
	if _, err := c.Define(p2); err != nil {
		t.Fatal(err)
	}
	err = c.Write(ctx, "bad", []sink.Row{{Window: 0, GroupingSet: 0, Start: 0, End: 6 * 3600e3, Values: make([]float64, 5), Version: 1}})
	if !errors.Is(err, sink.ErrClickHouseSchema) {
		t.Fatalf("Write into a mismatching table: %v, want ErrClickHouseSchema", err)
	}
	for _, want := range []string{"column page is UInt32, want String", "column robot String is missing", "column extra String is not in the cube"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "column final") {
		t.Errorf("error %q refuses the column final UInt8 of tables made by earlier versions", err)
	}
	if n := srv.Query("SELECT count() FROM cubed_test.bad"); n != "0\n" {
		t.Errorf("the refused table has %q rows", n)
	}

	// A table made by an earlier version, with its column final UInt8, is accepted: rows are
	// written (final left at 0) and read back.
	srv.Query("CREATE TABLE cubed_test.legacy (window_start DateTime, window_end DateTime, granularity String, " +
		"grouping_set UInt16, channel String, page String, robot String, pv UInt64, added Float64, low Nullable(Float64), " +
		"high Nullable(Float64), uv UInt64, version UInt64, final UInt8) ENGINE = ReplacingMergeTree(version) " +
		"PARTITION BY toYYYYMM(window_start) ORDER BY (grouping_set, granularity, window_start, window_end, channel, page, robot)")
	p3 := chPlan(t, strings.Replace(chModel, "table: edits_results", "table: legacy", 1))
	if _, err := c.Define(p3); err != nil {
		t.Fatal(err)
	}
	legacy := []sink.Row{{Window: 0, GroupingSet: 0, Start: 0, End: 6 * 3600e3, Values: []float64{3, 1.5, math.NaN(), 2, 1}, Version: 7}}
	if err := c.Write(ctx, "legacy", legacy); err != nil {
		t.Fatalf("Write into a table with the legacy column final: %v", err)
	}
	var back []sink.Row
	if err := c.Scan(ctx, "legacy", 0, 0, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
		back = append(back, cloneRow(r))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || !sameRows(&back[0], &legacy[0]) {
		t.Errorf("read back %+v from the legacy table, want %+v", back, legacy)
	}
	if got := srv.Query("SELECT final FROM cubed_test.legacy"); got != "0\n" {
		t.Errorf("legacy column final = %q, want its default 0", got)
	}
}

// chKey is a row's primary key as a comparable string.
func chKey(r *sink.Row) string {
	return fmt.Sprintf("%d|%d|%d|%d|%q", r.Window, r.GroupingSet, r.Start, r.End, r.Dims)
}

// randomRows makes n rows of p with keys drawn from a small space (so keys repeat), with
// increasing versions. Dimension values include SQL and escaping hazards.
func randomRows(p *cube.Plan, rng *rand.Rand, n int, version *uint64, values []string) []sink.Row {
	rows := make([]sink.Row, n)
	base := int64(1442016000000) // 2015-09-12T00:00:00Z
	for i := range rows {
		w := rng.IntN(len(p.Windows))
		gs := p.GroupingSets[rng.IntN(len(p.GroupingSets))]
		day := base + int64(rng.IntN(3))*86400e3
		var start, end int64
		switch w {
		case 0: // day, 6h steps
			start, end = day, day+int64(1+rng.IntN(4))*6*3600e3
		case 1:
			start, end = day, day+86400e3
		default:
			start = day + int64(rng.IntN(24))*3600e3
			end = start + 3600e3
		}
		dims := make([]string, len(gs.Dims))
		for j := range dims {
			dims[j] = values[rng.IntN(len(values))]
		}
		vals := []float64{float64(rng.IntN(1000)), float64(rng.IntN(1e6)) / 8, float64(rng.IntN(100)) - 50, float64(rng.IntN(100)), float64(rng.IntN(500))}
		if rng.IntN(4) == 0 {
			vals[2], vals[3] = math.NaN(), math.NaN() // min/max of a group without values
		}
		*version++
		rows[i] = sink.Row{Window: w, GroupingSet: gs.ID, Start: start, End: end, Dims: dims, Values: vals,
			Version: *version}
	}
	return rows
}

// hazards are dimension values that break naive SQL quoting or escaping.
var hazards = []string{"", "en", "x' OR 1=1 --", `back\slash`, `\'`, "quote\"d", "nul\x00byte", "tab\tnew\nline",
	"'); DROP TABLE edits_results; --", "ünïcödé", `\`, "'", "`tick`", "{p:String}", "?", "$1"}

// sameRows compares two rows exactly (NaN equals NaN).
func sameRows(a, b *sink.Row) bool {
	if a.Window != b.Window || a.GroupingSet != b.GroupingSet || a.Start != b.Start || a.End != b.End ||
		a.Version != b.Version || !slices.Equal(a.Dims, b.Dims) || len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if a.Values[i] != b.Values[i] && !(math.IsNaN(a.Values[i]) && math.IsNaN(b.Values[i])) {
			return false
		}
	}
	return true
}

func cloneRow(r *sink.Row) sink.Row {
	c := *r
	c.Dims = slices.Clone(r.Dims)
	c.Values = slices.Clone(r.Values)
	return c
}

// expectLatest is the brute-force oracle: per key the row with the largest version, grouped by
// (window, grouping set), each group sorted by (start, end, dims bytewise).
func expectLatest(rows []sink.Row) map[[2]int][]sink.Row {
	latest := map[string]sink.Row{}
	for i := range rows {
		k := chKey(&rows[i])
		if old, ok := latest[k]; !ok || rows[i].Version > old.Version {
			latest[k] = rows[i]
		}
	}
	out := map[[2]int][]sink.Row{}
	for _, r := range latest {
		g := [2]int{r.Window, int(r.GroupingSet)}
		out[g] = append(out[g], r)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b sink.Row) int {
			if c := cmp.Compare(a.Start, b.Start); c != 0 {
				return c
			}
			if c := cmp.Compare(a.End, b.End); c != 0 {
				return c
			}
			for i := range a.Dims {
				if c := strings.Compare(a.Dims[i], b.Dims[i]); c != 0 {
					return c
				}
			}
			return 0
		})
	}
	return out
}

// checkScan compares every (window, grouping set) scan of c with the oracle, and a sub-range.
func checkScan(t *testing.T, c *sink.ClickHouse, table string, p *cube.Plan, want map[[2]int][]sink.Row) {
	t.Helper()
	ctx := context.Background()
	for w := range p.Windows {
		for _, gs := range p.GroupingSets {
			exp := want[[2]int{w, int(gs.ID)}]
			var got []sink.Row
			if err := c.Scan(ctx, table, w, gs.ID, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
				got = append(got, cloneRow(r))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(exp) {
				t.Fatalf("window %d grouping set %d: %d rows, want %d", w, gs.ID, len(got), len(exp))
			}
			for i := range got {
				if !sameRows(&got[i], &exp[i]) {
					t.Fatalf("window %d grouping set %d row %d:\n got %+v\nwant %+v", w, gs.ID, i, got[i], exp[i])
				}
			}
			// A half-open sub-range [second day, third day) in ms, not on a second boundary.
			from, to := int64(1442102400000)-999, int64(1442188800000)+1
			n := 0
			for i := range exp {
				if exp[i].Start >= from && exp[i].Start < to {
					n++
				}
			}
			m := 0
			if err := c.Scan(ctx, table, w, gs.ID, from, to, func(r *sink.Row) error { m++; return nil }); err != nil {
				t.Fatal(err)
			}
			if m != n {
				t.Errorf("window %d grouping set %d range [%d, %d): %d rows, want %d", w, gs.ID, from, to, m, n)
			}
		}
	}
}

func TestClickHouseRoundTripUpserts(t *testing.T) {
	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	c := openCH(t, srv, "cubed_test", true, sink.WithClickHouseBatchRows(450))
	table, err := c.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var version uint64 = 1 << 60
	all := randomRows(p, rng, 3000, &version, hazards)
	// Write in several calls, and write some later versions before earlier ones: FINAL keeps the
	// largest version, whatever the order of arrival.
	ctx := context.Background()
	if err := c.Write(ctx, table, all[2000:]); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, table, all[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, table, all[1000:2000]); err != nil {
		t.Fatal(err)
	}
	// A replay rewrites some rows with the same version (an at-least-once duplicate).
	if err := c.Write(ctx, table, all[2500:2600]); err != nil {
		t.Fatal(err)
	}
	want := expectLatest(all)
	keys := 0
	for _, rs := range want {
		keys += len(rs)
	}
	if keys == len(all) {
		t.Fatal("BUG: test rows never repeat a key")
	}
	checkScan(t, c, table, p, want)
	// Every INSERT (2+2+2+1: a Write of 1,000 rows goes as two of 500, about the batch size of
	// 450, and one of 100 rows as one) came in ORDER BY order, so the server skipped
	// its own sort of every block: ask it.
	if got := srv.Query("SELECT event, value FROM system.events WHERE event IN ('MergeTreeDataWriterBlocks', 'MergeTreeDataWriterBlocksAlreadySorted') ORDER BY event"); got != "MergeTreeDataWriterBlocks\t7\nMergeTreeDataWriterBlocksAlreadySorted\t7\n" {
		t.Errorf("system.events:\n%swant 7 blocks written, all already sorted", got)
	}
	// Plain SQL sees the same number of keys.
	if got := srv.Query("SELECT count() FROM cubed_test.edits_results FINAL"); got != strconv.Itoa(keys)+"\n" {
		t.Errorf("SELECT count() FINAL = %q, want %d", got, keys)
	}
	// Rolled-up dimensions are "" in SQL, and hazardous values are stored as they are.
	if got := srv.Query("SELECT count() FROM cubed_test.edits_results WHERE grouping_set = 0 AND (channel != '' OR page != '' OR robot != '')"); got != "0\n" {
		t.Errorf("grand-total rows with dimension values: %q", got)
	}
	if got := srv.Query("SELECT countIf(channel = 'x\\' OR 1=1 --') > 0, countIf(channel = 'nul\\0byte') > 0 FROM cubed_test.edits_results"); got != "1\t1\n" {
		t.Errorf("hazardous values not stored verbatim: %q", got)
	}

	// Bad rows are refused before any I/O.
	for _, bad := range []sink.Row{
		{Window: 9, Values: make([]float64, 5)},
		{Window: 0, GroupingSet: 999, Values: make([]float64, 5)},
		{Window: 0, GroupingSet: 1, Values: make([]float64, 5)}, // gs 1 needs one dimension
		{Window: 0, Start: 1500, End: 2000, Values: make([]float64, 5)},
	} {
		if err := c.Write(ctx, table, []sink.Row{bad}); err == nil {
			t.Errorf("Write accepted %+v", bad)
		}
	}
	if err := c.Scan(ctx, table, 7, 0, 0, 1, func(*sink.Row) error { return nil }); err == nil {
		t.Error("Scan accepted window 7")
	}
}

// chBackend serves the query API from a ClickHouse sink (the pipeline does the same when a cube
// has a ClickHouse sink).
type chBackend struct {
	p     *cube.Plan
	c     *sink.ClickHouse
	table string
}

func (b chBackend) Plans() []*cube.Plan { return []*cube.Plan{b.p} }
func (b chBackend) Scan(_ string, w int, gs uint16, from, to int64, fn func(*sink.Row) error) error {
	return b.c.Scan(context.Background(), b.table, w, gs, from, to, fn)
}
func (chBackend) Freshness(string) web.Freshness { return web.Freshness{} }
func (chBackend) Status() any                    { return nil }
func (chBackend) Ready() bool                    { return true }
func (chBackend) ModelSource() (string, []byte)  { return "m.yaml", nil }

// TestClickHouseInjectionThroughQueryAPI sends hostile filter values through POST /api/v1/query
// over a ClickHouse-backed store: each must select exactly the rows whose value it is.
func TestClickHouseInjectionThroughQueryAPI(t *testing.T) {
	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	c := openCH(t, srv, "cubed_inj", true)
	table, err := c.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	var gsChannel uint16
	for _, gs := range p.GroupingSets {
		if slices.Equal(gs.Names, []string{"channel"}) {
			gsChannel = gs.ID
		}
	}
	var rows []sink.Row
	for i, v := range hazards {
		rows = append(rows, sink.Row{Window: 2, GroupingSet: gsChannel, Start: 1442016000000, End: 1442019600000,
			Dims: []string{v}, Values: []float64{float64(i + 1), 0, 1, 2, 3}, Version: uint64(i + 1)})
	}
	if err := c.Write(context.Background(), table, rows); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(web.NewServer(chBackend{p, c, table}, prometheus.NewRegistry()).Handler())
	defer ts.Close()
	var mu sync.Mutex
	for i, v := range hazards {
		q, _ := json.Marshal(map[string]any{"cube": "edits", "measures": []string{"pv"}, "dimensions": []string{"channel"},
			"filters": []any{map[string]any{"dimension": "channel", "op": "equals", "values": []string{v}}}, "granularity": "hour"})
		resp, err := http.Post(ts.URL+"/api/v1/query", "application/json", bytes.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Rows [][]any `json:"rows"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || out.Status != "success" {
			t.Fatalf("query with channel = %q: %v %s", v, err, out.Error)
		}
		mu.Lock()
		if len(out.Data.Rows) != 1 || out.Data.Rows[0][1] != v || out.Data.Rows[0][2] != float64(i+1) {
			t.Errorf("filter channel = %q: rows %v, want [[…, %q, %d]]", v, out.Data.Rows, v, i+1)
		}
		mu.Unlock()
	}
	if got := srv.Query("SELECT count() FROM cubed_inj.edits_results"); got != strconv.Itoa(len(hazards))+"\n" {
		t.Errorf("table has %q rows after the queries, want %d", got, len(hazards))
	}
}

// TestClickHouseOutage kills the server (SIGKILL) while a writer is writing, keeps it down for a
// few seconds and starts it again: Write blocks meanwhile, reports the failure through the retry
// hook, and every row arrives, each key once.
func TestClickHouseOutage(t *testing.T) {
	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	nfail := 0
	var mu sync.Mutex
	c := openCH(t, srv, "cubed_out", true, sink.WithClickHouseBatchRows(500),
		sink.WithClickHouseRetryHook(func(err error, attempt int, wait time.Duration) {
			mu.Lock()
			nfail++
			mu.Unlock()
		}))
	table, err := c.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var version uint64
	// Distinct keys: an hour window over many hours and dimension values.
	var all []sink.Row
	for h := range 200 {
		for v := range 100 {
			version++
			all = append(all, sink.Row{Window: 2, GroupingSet: p.GroupingSets[1].ID, Start: 1442016000000 + int64(h)*3600e3,
				End: 1442016000000 + int64(h+1)*3600e3, Dims: []string{"c" + strconv.Itoa(v)},
				Values: []float64{float64(rng.IntN(100)), 1, 2, 3, 4}, Version: version})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for lo := 0; lo < len(all); lo += 1000 {
			if err := c.Write(ctx, table, all[lo:lo+1000]); err != nil {
				done <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	time.Sleep(150 * time.Millisecond) // some batches in
	srv.Kill()
	killedAt := time.Now()
	time.Sleep(3 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("the writer finished while the server was down: %v", err)
	default:
	}
	mu.Lock()
	if nfail == 0 {
		t.Error("no failed attempt was reported while the server was down")
	}
	mu.Unlock()
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("server down %.1fs; %d failed attempts reported", time.Since(killedAt).Seconds(), nfail)
	want := expectLatest(all)
	checkScan(t, c, table, p, want)
	if got := srv.Query("SELECT count(), uniqExact(version) FROM cubed_out.edits_results FINAL"); got != fmt.Sprintf("%d\t%d\n", len(all), len(all)) {
		t.Errorf("SELECT count(), uniqExact(version) FINAL = %q, want %d twice", got, len(all))
	}
	raw := srv.Query("SELECT count() FROM cubed_out.edits_results")
	t.Logf("rows before merging (a retried INSERT that had been stored repeats its rows): %s", strings.TrimSpace(raw))
}

// BenchmarkClickHouseWrite measures rows/s through WriteIDs, the path of the pipeline's rows (one
// INSERT of 100,000 rows in random order per iteration, all columns named) into a private server, and the server's CPU per row
// while the INSERTs ran (server-cpu-us/row; background merges that run later are not counted).
func BenchmarkClickHouseWrite(b *testing.B) {
	srv := chtest.Start(b)
	p := chPlan(b, chModel)
	c := openCH(b, srv, "cubed_bench", true)
	table, err := c.Define(p)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var version uint64
	rows := randomRows(p, rng, 100_000, &version, []string{"#en.wikipedia", "#de.wikipedia", "#fr.wikipedia", "Main", "Talk", "true", "false"})
	ctx := context.Background()
	if err := c.Write(ctx, table, rows[:1]); err != nil { // creates the table
		b.Fatal(err)
	}
	ids := sink.NewIDRowsEncoder(c, table).Encode(b, rows)
	b.ReportAllocs()
	cpu0 := srv.CPU()
	b.ResetTimer()
	for range b.N {
		if err := c.WriteIDs(ctx, table, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric((srv.CPU()-cpu0).Seconds()*1e6/float64(b.N*len(rows)), "server-cpu-us/row")
}

// chGrowthModel has new_users and retention measures: the retention rate is
// Nullable(Float64) (NULL over an empty cohort), its numerator and denominator UInt64.
const chGrowthModel = `version: 1
cubes:
  - name: growth
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [{name: country}]
    measures:
      - {name: active, type: count_distinct, field: user}
      - {name: fresh, type: new_users, field: user}
      - {name: d1, type: retention, field: user, days: 1}
    grouping_sets: [[], [country]]
    windows: [{granularity: day}]
    sink:
      clickhouse: {database: cubed_test, table: growth}
`

// TestClickHouseRetentionColumns creates the table of a cube with new_users and retention on a
// real server, writes rows with and without a cohort, and reads them back: a null rate stays
// NULL in SQL and NaN in the sink's rows.
func TestClickHouseRetentionColumns(t *testing.T) {
	p := chPlan(t, chGrowthModel)
	ddl, err := sink.DDL(p, p.Cube.Sink.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "clickhouse_growth_ddl.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(ddl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(golden); err != nil || ddl != string(want) {
		t.Errorf("DDL:\n%s\nwant (%s, %v):\n%s", ddl, golden, err, want)
	}
	srv := chtest.Start(t)
	c := openCH(t, srv, "cubed_test", true)
	table, err := c.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.EnsureTable(ctx, table); err != nil {
		t.Fatal(err)
	}
	cols := srv.Query("SELECT name, type FROM system.columns WHERE database = 'cubed_test' AND table = 'growth'")
	wantCols := "window_start\tDateTime\nwindow_end\tDateTime\ngranularity\tString\ngrouping_set\tUInt16\n" +
		"country\tString\nactive\tUInt64\nfresh\tUInt64\nd1\tNullable(Float64)\nd1_retained\tUInt64\n" +
		"d1_cohort\tUInt64\nversion\tUInt64\n"
	if cols != wantCols {
		t.Errorf("columns:\n%s\nwant:\n%s", cols, wantCols)
	}
	day := int64(1442016000000)
	rows := []sink.Row{
		{Window: 0, GroupingSet: 0, Start: day, End: day + 86400e3, Values: []float64{10, 10, math.NaN(), 0, 0}, Version: 1},
		{Window: 0, GroupingSet: 0, Start: day + 86400e3, End: day + 2*86400e3, Values: []float64{8, 3, 0.5, 5, 10}, Version: 2},
		{Window: 0, GroupingSet: 1, Start: day + 86400e3, End: day + 2*86400e3, Dims: []string{"GB"}, Values: []float64{4, 1, 0.75, 3, 4}, Version: 3},
	}
	if err := c.Write(ctx, table, rows); err != nil {
		t.Fatal(err)
	}
	checkScan(t, c, table, p, expectLatest(rows))
	if got := srv.Query("SELECT d1 IS NULL, d1_retained, d1_cohort FROM cubed_test.growth FINAL WHERE grouping_set = 0 ORDER BY window_start"); got != "1\t0\t0\n0\t5\t10\n" {
		t.Errorf("rate, retained, cohort in SQL: %q", got)
	}
}

// TestClickHouseBufferPolicy: a buffer writes its first rows at once, then at most once per
// flush interval (rows added sooner wait for the next Add after it), and at once when it holds
// the batch size. Writes run in the background; each step waits for the one it started.
func TestClickHouseBufferPolicy(t *testing.T) {
	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	c := openCH(t, srv, "cubed_buf", true, sink.WithClickHouseBatchRows(100), sink.WithClickHouseFlushInterval(time.Second),
		sink.WithClickHouseBackoff(20*time.Millisecond, 200*time.Millisecond))
	table, err := c.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var version uint64
	rows := randomRows(p, rng, 400, &version, []string{"a", "b", "c"})
	buf := c.NewBuffer(table)
	enc := sink.NewIDRowsEncoder(c, table)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stored := func() string {
		return strings.TrimSpace(srv.Query("SELECT count() FROM cubed_buf.edits_results"))
	}
	step := func(what string, lo, hi int, at time.Duration, wantBuffered int, wantStored string) {
		t.Helper()
		if err := buf.Add(ctx, enc.Encode(t, rows[lo:hi]), t0.Add(at)); err != nil {
			t.Fatal(err)
		}
		if err := sink.WaitWrite(buf); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != wantBuffered || stored() != wantStored {
			t.Errorf("%s: %d rows buffered, %s stored; want %d and %s", what, buf.Len(), stored(), wantBuffered, wantStored)
		}
	}
	step("first rows", 0, 10, 0, 0, "10")
	step("0.5s later", 10, 30, 500*time.Millisecond, 20, "10")
	step("0.999s later, nothing new", 30, 30, 999*time.Millisecond, 20, "10")
	step("1s after the last write", 30, 40, time.Second, 0, "40")
	step("a full batch 0.1s later", 40, 190, 1100*time.Millisecond, 0, "190")
	step("then 0.5s later", 190, 200, 1600*time.Millisecond, 10, "190")
	if err := buf.Flush(ctx); err != nil || buf.Len() != 0 || stored() != "200" {
		t.Errorf("Flush: %v; %d buffered, %s stored; want 0 and 200", err, buf.Len(), stored())
	}

	// Outage: a due Add hands its rows to the writer and returns at once; once the writer has
	// failed (it retries), the next Add blocks (backpressure) until ClickHouse is back. Len
	// counts both batches. Then Flush writes everything.
	srv.Stop()
	t1 := time.Now() // Flush took its time from the clock
	step2 := func(lo, hi int, at time.Duration) {
		t.Helper()
		finished := make(chan error, 1)
		batch := enc.Encode(t, rows[lo:hi])
		go func() { finished <- buf.Add(ctx, batch, t1.Add(at)) }()
		select {
		case err := <-finished:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Add of rows %d..%d blocked while a batch was in flight and the other not full", lo, hi)
		}
	}
	step2(200, 210, 3*time.Second) // due: handed to the writer, which fails and retries
	if buf.Len() != 10 {
		t.Errorf("%d rows buffered during the outage, want 10", buf.Len())
	}
	time.Sleep(500 * time.Millisecond) // a refused connection fails at once
	blocked := make(chan error, 1)
	batch := enc.Encode(t, rows[210:320])
	go func() { blocked <- buf.Add(ctx, batch, t1.Add(3100*time.Millisecond)) }() // not due
	select {
	case err := <-blocked:
		t.Fatalf("Add returned (%v) while ClickHouse was down: no backpressure", err)
	case <-time.After(2 * time.Second):
	}
	srv.Restart()
	if err := <-blocked; err != nil {
		t.Fatalf("Add after ClickHouse came back: %v", err)
	}
	if err := buf.Flush(ctx); err != nil || buf.Len() != 0 {
		t.Errorf("Flush after the outage: %v; %d buffered, want 0", err, buf.Len())
	}
	// Keys repeat and the restarted server merges parts, so count() no longer counts inserts:
	// read back the latest row of every key instead.
	checkScan(t, c, table, p, expectLatest(rows[:320]))
}
