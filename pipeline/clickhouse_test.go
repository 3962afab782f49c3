package pipeline

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/internal/chtest"
	"github.com/cubed-olap/cubed/sink"
)

// sharedData returns the path of a file of ../shared/data, failing (under CI) or skipping when
// it is missing.
func sharedData(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "shared", "data", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("real data missing: %v", err)
		}
		t.Skipf("SKIPPING: real data missing: %v", err)
	}
	return p
}

// wikiModel is configs/wikiticker.yaml with the given source and a ClickHouse sink.
func wikiModel(t testing.TB, source, chAddr, db string, emitEvery string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "configs", "wikiticker.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, "    source:\n"), strings.Index(s, "    event_time:\n")
	if i < 0 || j < i {
		t.Fatal("configs/wikiticker.yaml changed shape: no source before event_time")
	}
	s = s[:i] + source + s[j:]
	s = strings.ReplaceAll(s, "emit_every: 10s", "emit_every: "+emitEvery)
	if strings.Contains(s, "    sink:") {
		t.Fatal("configs/wikiticker.yaml has a sink already; extend this test")
	}
	// The sink ends the cube, before the model's dashboards: section when it has one.
	sink := fmt.Sprintf("    sink:\n      clickhouse: {addr: %q, database: %s}\n", chAddr, db)
	if k := strings.Index(s, "\ndashboards:"); k >= 0 {
		return s[:k+1] + sink + s[k+1:]
	}
	return s + sink
}

// compareStores checks that the ClickHouse table holds exactly the embedded store's rows (key,
// values, version, final flag), read back through a new connection with FINAL, and returns a
// description of the first difference ("" when equal) and the number of rows.
// openCubeTable connects to the ClickHouse sink of p's cube and returns it with the cube's table
// (checked against the plan); the connection closes when the test ends.
func openCubeTable(t testing.TB, p *cube.Plan) (*sink.ClickHouse, string) {
	t.Helper()
	ch, err := sink.OpenClickHouse(p.Cube.Sink.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	table, err := ch.Define(p)
	if err != nil {
		t.Fatal(err)
	}
	return ch, table
}

func compareStores(t testing.TB, svc *Service, p *cube.Plan, ch *sink.ClickHouse, table string) (string, int) {
	t.Helper()
	n := 0
	for w := range p.Windows {
		for _, gs := range p.GroupingSets {
			var emb, got []sink.Row
			collect := func(dst *[]sink.Row) func(r *sink.Row) error {
				return func(r *sink.Row) error {
					c := *r
					c.Dims, c.Values = slices.Clone(r.Dims), slices.Clone(r.Values)
					*dst = append(*dst, c)
					return nil
				}
			}
			if err := svc.store.Scan(p.Cube.Sink.Table, w, gs.ID, math.MinInt64, math.MaxInt64, collect(&emb)); err != nil {
				t.Fatal(err)
			}
			if err := ch.Scan(context.Background(), table, w, gs.ID, math.MinInt64, math.MaxInt64, collect(&got)); err != nil {
				return fmt.Sprintf("scanning ClickHouse: %v", err), n
			}
			if len(emb) != len(got) {
				return fmt.Sprintf("window %d grouping set %d: ClickHouse has %d rows, the embedded store %d", w, gs.ID, len(got), len(emb)), n
			}
			for i := range emb {
				a, b := &emb[i], &got[i]
				same := a.Window == b.Window && a.GroupingSet == b.GroupingSet && a.Start == b.Start && a.End == b.End &&
					a.Version == b.Version && slices.Equal(a.Dims, b.Dims) &&
					slices.EqualFunc(a.Values, b.Values, func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) })
				if !same {
					return fmt.Sprintf("window %d grouping set %d row %d:\n ClickHouse %+v\n   embedded %+v", w, gs.ID, i, *b, *a), n
				}
			}
			n += len(emb)
		}
	}
	return "", n
}

// sqlTotals is, per (grouping_set, granularity), the row count and sum of pv, as plain SQL
// through clickhouse-client reads them with FINAL.
func sqlTotals(srv *chtest.Server, db, table string) string {
	return srv.Query(fmt.Sprintf("SELECT grouping_set, granularity, count(), sum(pv) FROM %s.%s FINAL GROUP BY grouping_set, granularity ORDER BY grouping_set, granularity", db, table))
}

// embeddedTotals computes sqlTotals' answer from the embedded store.
func embeddedTotals(t testing.TB, svc *Service, p *cube.Plan) string {
	t.Helper()
	type agg struct{ n, pv int }
	var lines []string
	gss := slices.Clone(p.GroupingSets)
	slices.SortFunc(gss, func(a, b cube.GroupingSet) int { return int(a.ID) - int(b.ID) })
	for _, gs := range gss {
		labels := map[string]int{}
		var names []string
		for w, spec := range p.Windows {
			labels[spec.Label()] = w
			names = append(names, spec.Label())
		}
		slices.Sort(names)
		for _, l := range names {
			var a agg
			if err := svc.store.Scan(p.Cube.Sink.Table, labels[l], gs.ID, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
				a.n++
				a.pv += int(r.Values[0])
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if a.n > 0 {
				lines = append(lines, fmt.Sprintf("%d\t%s\t%d\t%d\n", gs.ID, l, a.n, a.pv))
			}
		}
	}
	return strings.Join(lines, "")
}

// TestClickHouseReplayWikiticker replays the real wikiticker file with a ClickHouse sink next to
// the embedded store: the table's FINAL contents equal the embedded store's rows, row by row,
// and plain SQL totals agree with them and with the file.
func TestClickHouseReplayWikiticker(t *testing.T) {
	srv := chtest.Start(t)
	data := sharedData(t, "wikiticker-2015-09-12.json.gz")
	dir := t.TempDir()
	model := writeModel(t, dir, wikiModel(t, fmt.Sprintf("    source:\n      file: {path: %q}\n      format: json\n", data), srv.Addr(), "wiki", "10s"))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	start := time.Now()
	sum, err := svc.Replay(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replayed %+v in %s", sum, time.Since(start).Round(time.Millisecond))
	p := svc.plans[0]
	ch, table := openCubeTable(t, p)
	diff, n := compareStores(t, svc, p, ch, table)
	if diff != "" {
		t.Fatal(diff)
	}
	if n == 0 || uint64(n) > sum[0].Rows {
		t.Fatalf("%d distinct rows compared, %d emitted", n, sum[0].Rows)
	}
	if got, want := sqlTotals(srv, "wiki", table), embeddedTotals(t, svc, p); got != want {
		t.Errorf("plain SQL totals:\n%s\nembedded store:\n%s", got, want)
	}
	// The grand total of the day, in plain SQL, is the number of the file's edits dated
	// 2015-09-12 (a dozen of its 39,244 edits are dated other days).
	day := 0
	for _, l := range readLines(t, data) {
		if strings.Contains(string(l), `"time":"2015-09-12`) {
			day++
		}
	}
	if got := srv.Query("SELECT pv FROM wiki.wikiticker FINAL WHERE grouping_set = 0 AND granularity = 'day/1h' AND window_start = toDateTime('2015-09-12 00:00:00', 'UTC') AND window_end = toDateTime('2015-09-13 00:00:00', 'UTC')"); got != fmt.Sprintf("%d\n", day) {
		t.Errorf("daily pv of 2015-09-12 in SQL = %q, want %d", got, day)
	}
	t.Logf("%d rows equal in ClickHouse and the embedded store", n)
}

// TestClickHouseOutageKafka streams wikiticker through Kafka (kfake) into a cube with a
// ClickHouse sink and kills the ClickHouse server mid-stream for a few seconds: meanwhile the
// cube stops consuming (backpressure), its status shows the sink error and no checkpoint
// commits (one would cover rows ClickHouse has not got; checkpoints are due every 300ms); after
// the restart the table converges to exactly the embedded store's rows and checkpoints resume.
func TestClickHouseOutageKafka(t *testing.T) {
	srv := chtest.Start(t)
	data := sharedData(t, "wikiticker-2015-09-12.json.gz")
	kc := newCluster(t, 2, "wiki")
	dir := t.TempDir()
	src := fmt.Sprintf("    source:\n      kafka: {brokers: [%q], topic: wiki}\n      format: json\n", kc.ListenAddrs()[0])
	model := writeModel(t, dir, wikiModel(t, src, srv.Addr(), "wikik", "300ms"))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger(), BatchSize: 2000, CheckpointEvery: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	lastCheckpoint := func() uint64 {
		h := svc.cubes[0].status().Checkpoints
		if len(h) == 0 {
			return 0
		}
		return h[len(h)-1].Seq
	}

	lines := readLines(t, data)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic("wiki"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(part [][]byte) {
		recs := make([]*kgo.Record, len(part))
		for i, l := range part {
			recs[i] = &kgo.Record{Value: l}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Events consumed so far, counted as they are ingested (the metric, not the status, which
	// the loop publishes only after its writes).
	events := func() uint64 {
		var m dto.Metric
		if err := svc.metrics.events.WithLabelValues(svc.cubes[0].name).Write(&m); err != nil {
			t.Fatal(err)
		}
		return uint64(m.GetCounter().GetValue())
	}
	half := len(lines) / 2
	produce(lines[:half])
	waitFor(t, 120*time.Second, "half the events consumed", func() bool { return events() == uint64(half) })
	time.Sleep(1500 * time.Millisecond) // some rows reach ClickHouse
	srv.Kill()
	// The second half arrives while ClickHouse is down, in 40 chunks over 4 s.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		chunk := (len(lines) - half + 39) / 40
		for lo := half; lo < len(lines); lo += chunk {
			produce(lines[lo:min(lo+chunk, len(lines))])
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitFor(t, 120*time.Second, "the sink error in the status", func() bool {
		return svc.cubes[0].status().SinkError != ""
	})
	sinkErr := svc.cubes[0].status().SinkError
	time.Sleep(500 * time.Millisecond) // the write failing runs beside the loop: its next step blocks
	e1, ck1 := events(), lastCheckpoint()
	<-produced
	time.Sleep(time.Second)
	e2, ck2 := events(), lastCheckpoint()
	if ck2 != ck1 {
		t.Errorf("checkpoints %d to %d committed while ClickHouse was down", ck1+1, ck2)
	}
	if e2 != e1 || e2 == uint64(len(lines)) {
		t.Errorf("the cube kept consuming while ClickHouse was down: %d events, then %d (of %d)", e1, e2, len(lines))
	}
	t.Logf("while down: events %d of %d; sink_error %q", e2, len(lines), sinkErr)
	srv.Restart()
	waitFor(t, 120*time.Second, "every event consumed", func() bool { return events() == uint64(len(lines)) })
	p := svc.plans[0]
	ch, table := openCubeTable(t, p)
	// Every event emitted: the hourly grand totals in the embedded store add up to all events.
	waitFor(t, 120*time.Second, "every event emitted to the embedded store", func() bool {
		total := 0
		if err := svc.store.Scan(p.Cube.Sink.Table, 1, 0, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
			total += int(r.Values[0])
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return total == len(lines)
	})
	var diff string
	var n int
	waitFor(t, 120*time.Second, "ClickHouse to equal the embedded store", func() bool {
		diff, n = compareStores(t, svc, p, ch, table)
		return diff == ""
	})
	if diff != "" {
		t.Fatal(diff)
	}
	if st := svc.cubes[0].status(); st.SinkError != "" {
		t.Errorf("sink error still shown after recovery: %q", st.SinkError)
	}
	waitFor(t, 30*time.Second, "checkpoints after the outage", func() bool { return lastCheckpoint() > ck2 })
	if got := srv.Query("SELECT sum(pv) FROM wikik.wikiticker FINAL WHERE grouping_set = 0 AND granularity = 'hour'"); got != fmt.Sprintf("%d\n", len(lines)) {
		t.Errorf("hourly pv totals in SQL = %q, want %d", got, len(lines))
	}
	t.Logf("%d rows equal in ClickHouse and the embedded store", n)
}

// readLines reads a gzip-compressed file of lines.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, slices.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// waitFor polls cond every 100ms until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClickHouseFlushAtStop stops a Kafka cube while its ClickHouse buffer holds rows (the
// flush interval is 1s; the stop comes sooner): Close writes them, so ClickHouse ends equal to
// the embedded store.
func TestClickHouseFlushAtStop(t *testing.T) {
	srv := chtest.Start(t)
	kc := newCluster(t, 1, "ev")
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ev
    source:
      kafka: {brokers: [%q], topic: ev}
    event_time: {field: ts, format: unix_ms}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]
    grouping_sets: [[], [k]]
    windows: [{granularity: minute, emit_every: 50ms}]
    sink:
      clickhouse: {addr: %q, database: stop}
`, kc.ListenAddrs()[0], srv.Addr()))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic("ev"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	produce := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"ts": %d, "k": "k%d", "u": "u%d"}`, 1442016000000+int64(i)*100, i%7, i%300)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// The first emission is written at once (the first checkpoint is due); the rows of the
	// second batch, emitted well within the 1s flush interval and 10s checkpoint interval, are
	// still buffered at stop.
	produce(0, 2500)
	waitFor(t, 90*time.Second, "the first events to be emitted", func() bool { return svc.cubes[0].status().EmittedRows > 0 })
	first := svc.cubes[0].status().EmittedRows
	time.Sleep(100 * time.Millisecond)
	produce(2500, 5000)
	waitFor(t, 90*time.Second, "the last events to be emitted", func() bool { return svc.cubes[0].status().EmittedRows > first })
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	buffered := svc.cubes[0].ch.buf.Len()
	p := svc.plans[0]
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen the embedded store read-only through a new service over the same data dir.
	svc2, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	ch, table := openCubeTable(t, p)
	diff, n := compareStores(t, svc2, svc2.plans[0], ch, table)
	if diff != "" {
		t.Fatalf("after stop (%d rows were buffered): %s", buffered, diff)
	}
	if buffered == 0 {
		t.Log("NOTE: the buffer was empty at stop; the flush at stop was not exercised this time")
	}
	t.Logf("%d rows buffered at stop; %d rows equal", buffered, n)
}

// TestClickHouseTLSModel replays a file into a cube whose sink.clickhouse.tls names its CA,
// server name and client certificate by paths relative to the model file: the rows reach the
// server's secure port and equal the embedded store's.
func TestClickHouseTLSModel(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	files := chtest.NewTLSFiles(t, certs, "ca", "clickhouse.test")
	srv := chtest.Start(t, chtest.WithTLS(files.ServerCert, files.ServerKey, files.CA))
	var lines []string
	for i := range 5000 {
		lines = append(lines, fmt.Sprintf(`{"ts": %d, "k": "k%d", "u": "u%d"}`, 1442016000000+int64(i)*1000, i%7, i%300))
	}
	if err := os.WriteFile(filepath.Join(dir, "ev.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { return filepath.Join("certs", filepath.Base(p)) }
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ev
    source:
      file: {path: ev.jsonl}
    event_time: {field: ts, format: unix_ms}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]
    grouping_sets: [[], [k]]
    windows: [{granularity: minute}, {granularity: hour, step: 10m}]
    sink:
      clickhouse:
        addr: %q
        database: tls
        tls: {ca_file: %s, server_name: clickhouse.test, cert_file: %s, key_file: %s}
`, srv.SecureAddr(), rel(files.CA), rel(files.ClientCert), rel(files.ClientKey)))
	svc := replayed(t, model, filepath.Join(dir, "data"))
	p := svc.plans[0]
	ch, table := openCubeTable(t, p)
	diff, n := compareStores(t, svc, p, ch, table)
	if diff != "" {
		t.Fatal(diff)
	}
	if got := srv.Query("SELECT sum(pv) FROM tls.ev FINAL WHERE grouping_set = 0 AND granularity = 'minute'"); got != "5000\n" {
		t.Errorf("minute pv total in SQL = %q, want 5000", got)
	}
	t.Logf("%d rows equal in ClickHouse (over TLS) and the embedded store", n)
}

// BenchmarkEndToEndClickHouse is BenchmarkEndToEnd with ClickHouse (a private server) as the
// only sink: the replay of 2M generated events writes every result row to ClickHouse. It
// reports events per CPU-second of this process and of the server together, and each side's
// CPU seconds.
func BenchmarkEndToEndClickHouse(b *testing.B) {
	const n, users = 2_000_000, 180_000
	srv := chtest.Start(b)
	dir := b.TempDir()
	events := writeGeneratedEvents(b, dir, n, users, time.Hour)
	model := writeModel(b, dir, "version: 1\ncubes:\n  - name: peer\n"+peerCube(events, "", "[{granularity: minute}]")+
		fmt.Sprintf("    sink:\n      embedded: false\n      clickhouse: {addr: %q, database: bench}\n", srv.Addr()))
	b.ResetTimer()
	var cpu, srvCPU float64
	var rows uint64
	for i := 0; i < b.N; i++ {
		srv.Query("DROP TABLE IF EXISTS bench.peer")
		svc, err := Open(model, Options{DataDir: filepath.Join(dir, fmt.Sprint("data", i)), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		c0, s0 := cpuSeconds(), srv.CPU().Seconds()
		sums, err := svc.Replay(context.Background())
		cpu += cpuSeconds() - c0
		srvCPU += srv.CPU().Seconds() - s0
		if err != nil || len(sums) != 1 || sums[0].Events != n {
			b.Fatalf("replay: %v %+v", err, sums)
		}
		rows += sums[0].Rows
		svc.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/(cpu+srvCPU), "events/cpu-s")
	b.ReportMetric(srvCPU/float64(b.N), "clickhouse-cpu-s")
	b.ReportMetric(cpu/float64(b.N), "cubed-cpu-s")
	b.ReportMetric(float64(rows)/float64(b.N), "rows")
	b.ReportMetric(0, "ns/op")
}

// TestClickHouseOnly replays a file into a cube whose only sink is ClickHouse (sink.embedded
// false): the embedded store holds no result row, and Service.Scan (the query API) answers
// from ClickHouse what a brute-force count over the events gives. Emissions are written 7 rows
// at a time (maxPendingRows), so that the ClickHouse buffer is handed rows (Move) many times,
// both empty (it takes the pending rows' arrays) and not (it copies them).
func TestClickHouseOnly(t *testing.T) {
	defer func(n int) { maxPendingRows = n }(maxPendingRows)
	maxPendingRows = 7
	srv := chtest.Start(t)
	dir := t.TempDir()
	const n = 20000
	var lines []string
	count := map[[2]int64]int{} // (minute start ms, k) → events
	for i := range n {
		ts := int64(1442016000000) + int64(i)*700
		lines = append(lines, fmt.Sprintf(`{"ts": %d, "k": "k%d"}`, ts, i*7%23))
		count[[2]int64{ts / 60000 * 60000, int64(i * 7 % 23)}]++
	}
	if err := os.WriteFile(filepath.Join(dir, "ev.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: only
    source:
      file: {path: ev.jsonl}
    event_time: {field: ts, format: unix_ms}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[k]]
    windows: [{granularity: minute}]
    sink:
      embedded: false
      clickhouse: {addr: %q, database: only}
`, srv.Addr()))
	svc := replayed(t, model, filepath.Join(dir, "data"))
	p := svc.plans[0]
	gs := p.GroupingSets[0].ID
	emb := 0
	if err := svc.store.Scan(p.Cube.Sink.Table, 0, gs, math.MinInt64, math.MaxInt64, func(*sink.Row) error { emb++; return nil }); err != nil {
		t.Fatal(err)
	}
	if emb != 0 {
		t.Errorf("the embedded store holds %d result rows; sink.embedded is false", emb)
	}
	got := map[[2]int64]int{}
	if err := svc.Scan("only", 0, gs, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
		k, _ := strconv.Atoi(strings.TrimPrefix(r.Dims[0], "k"))
		got[[2]int64{r.Start, int64(k)}] = int(r.Values[0])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(count) {
		t.Errorf("Service.Scan returned %d groups, want %d", len(got), len(count))
	}
	for key, want := range count {
		if got[key] != want {
			t.Errorf("minute %d k%d: pv %d, want %d", key[0], key[1], got[key], want)
		}
	}
}
