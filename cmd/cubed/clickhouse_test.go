package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/cubed-olap/cubed/internal/chtest"
	"github.com/cubed-olap/cubed/sink"
)

// chTarget is where one cube's results live in ClickHouse, and how the oracle's windows and
// grouping sets are named there (from `cubed plan --format json`, the published plan).
type chTarget struct {
	db, table string
	labels    []string // per oracle window: the granularity column's value
	gsIDs     []int    // per oracle grouping set: the grouping_set column's value
}

// planTargets reads the plans of cfg with `cubed plan --format json` and maps every oracle
// window and grouping set of cubes to its label and id. Each cube's table is named after it in
// database db.
func planTargets(t *testing.T, cfg, db string, cubes []*oCube) map[string]*chTarget {
	t.Helper()
	res := runCubed(t, "", time.Minute, "plan", "--format", "json", cfg)
	if res.exitCode != 0 {
		t.Fatalf("cubed plan --format json: exit %d: %s", res.exitCode, res.stderr)
	}
	type plan struct {
		Cube         string `json:"cube"`
		GroupingSets []struct {
			ID         int      `json:"id"`
			Dimensions []string `json:"dimensions"`
		} `json:"grouping_sets"`
		Windows []struct {
			Granularity string `json:"granularity"`
			Step        string `json:"step"`
			Cumulative  bool   `json:"cumulative"`
		} `json:"windows"`
	}
	plans := map[string]plan{}
	dec := json.NewDecoder(bytes.NewReader(res.stdout))
	for {
		var p plan
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("cubed plan --format json: %v", err)
		}
		plans[p.Cube] = p
	}
	out := map[string]*chTarget{}
	for _, c := range cubes {
		p, ok := plans[c.Name]
		if !ok {
			t.Fatalf("cubed plan printed no plan for cube %q", c.Name)
		}
		tg := &chTarget{db: db, table: c.Name}
		for _, w := range c.Windows {
			label := ""
			for _, pw := range p.Windows {
				step, err := oParseDuration(pw.Step)
				if err != nil {
					t.Fatalf("plan window step %q: %v", pw.Step, err)
				}
				if pw.Granularity == w.Granularity && pw.Cumulative == (w.Step > 0) && (!pw.Cumulative || step == w.Step) {
					label = pw.Granularity
					if pw.Cumulative {
						label += "/" + pw.Step
					}
				}
			}
			if label == "" {
				t.Fatalf("cube %s: no plan window for %v", c.Name, w)
			}
			tg.labels = append(tg.labels, label)
		}
		for _, set := range c.Sets {
			id := -1
			for _, gs := range p.GroupingSets {
				a, b := slices.Clone(set), slices.Clone(gs.Dimensions)
				slices.Sort(a)
				slices.Sort(b)
				if slices.Equal(a, b) {
					id = gs.ID
				}
			}
			if id < 0 {
				t.Fatalf("cube %s: no plan grouping set for %v", c.Name, set)
			}
			tg.gsIDs = append(tg.gsIDs, id)
		}
		out[c.Name] = tg
	}
	return out
}

// sqlRows reads the rows of oracle window w and grouping set g from the cube's table with plain
// SQL through clickhouse-client (SELECT … FINAL, the latest version of every key), in the
// oracle's row shape: End only for cumulative windows, dimensions of the set, every measure.
func sqlRows(t *testing.T, srv *chtest.Server, tg *chTarget, c *oCube, w, g int) []oRow {
	t.Helper()
	cols := []string{"toUInt32(window_start)", "toUInt32(window_end)"}
	for _, d := range c.Sets[g] {
		cols = append(cols, "`"+d+"`")
	}
	for _, m := range c.Measures {
		cols = append(cols, "`"+m.Name+"`")
	}
	q := fmt.Sprintf("SELECT %s FROM `%s`.`%s` FINAL WHERE grouping_set = %d AND granularity = '%s' FORMAT JSONCompact",
		strings.Join(cols, ", "), tg.db, tg.table, tg.gsIDs[g], tg.labels[w])
	var ans struct {
		Data [][]any `json:"data"`
	}
	dec := json.NewDecoder(strings.NewReader(srv.Query(q)))
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	num := func(v any) (float64, bool, error) {
		switch v := v.(type) {
		case nil:
			return 0, true, nil
		case json.Number:
			f, err := strconv.ParseFloat(v.String(), 64)
			return f, false, err
		case string: // 64-bit integers are quoted in JSON output
			f, err := strconv.ParseFloat(v, 64)
			return f, false, err
		}
		return 0, false, fmt.Errorf("%T %v is not a number", v, v)
	}
	nd := len(c.Sets[g])
	rows := make([]oRow, 0, len(ans.Data))
	for _, cells := range ans.Data {
		if len(cells) != len(cols) {
			t.Fatalf("%s: row %v has %d cells, want %d", q, cells, len(cells), len(cols))
		}
		var r oRow
		start, _, err1 := num(cells[0])
		end, _, err2 := num(cells[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: window times %v %v", q, cells[0], cells[1])
		}
		r.Start = int64(start) * 1000
		if c.Windows[w].Step > 0 {
			r.End = int64(end) * 1000
		}
		for _, d := range cells[2 : 2+nd] {
			s, ok := d.(string)
			if !ok {
				t.Fatalf("%s: dimension %v is %T", q, d, d)
			}
			r.Dims = append(r.Dims, s)
		}
		for _, m := range cells[2+nd:] {
			v, null, err := num(m)
			if err != nil {
				t.Fatalf("%s: measure: %v", q, err)
			}
			r.Vals = append(r.Vals, oNum{v: v, null: null})
		}
		rows = append(rows, r)
	}
	return rows
}

// checkSQLAgainstOracle compares every (window, grouping set) of every result, read with plain
// SQL, with the oracle's live-mode rows; it returns the number of rows compared.
func checkSQLAgainstOracle(t *testing.T, srv *chtest.Server, targets map[string]*chTarget, results []*oResult) int {
	t.Helper()
	n := 0
	for _, res := range results {
		c := res.Cube
		for w := range c.Windows {
			for g := range c.Sets {
				want := res.Rows(w, g, true)
				got := sqlRows(t, srv, targets[c.Name], c, w, g)
				if d := diffRows(c, measureNames(c), want, got); d != "" {
					t.Errorf("SQL FINAL, cube %s window %v grouping set %v: %s", c.Name, c.Windows[w], c.Sets[g], d)
				}
				n += len(want)
			}
		}
	}
	return n
}

// createTables runs `cubed plan --ddl cfg` on srv (the tables the sink would create) and adds,
// per table, a materialized view into a plain MergeTree table <table>_versions that records the
// version of every row ever inserted (plain MergeTree never drops rows when it merges, unlike the
// result table's ReplacingMergeTree).
func createTables(t *testing.T, srv *chtest.Server, cfg string, targets map[string]*chTarget) {
	t.Helper()
	res := runCubed(t, "", time.Minute, "plan", "--ddl", cfg)
	if res.exitCode != 0 {
		t.Fatalf("cubed plan --ddl: exit %d: %s", res.exitCode, res.stderr)
	}
	created := map[string]bool{}
	for _, tg := range targets {
		if !created[tg.db] {
			srv.Query("CREATE DATABASE IF NOT EXISTS `" + tg.db + "`")
			created[tg.db] = true
		}
	}
	for _, stmt := range strings.Split(string(res.stdout), ";\n") {
		if s := strings.TrimSpace(stmt); s != "" {
			srv.Query(s)
		}
	}
	for _, tg := range targets {
		srv.Query(fmt.Sprintf("CREATE MATERIALIZED VIEW `%s`.`%s_versions` ENGINE = MergeTree ORDER BY version AS SELECT version FROM `%s`.`%s`",
			tg.db, tg.table, tg.db, tg.table))
	}
}

// versionLog is how many rows were ever inserted into a result table and their largest version.
type versionLog struct{ rows, max uint64 }

func readVersionLog(t *testing.T, srv *chtest.Server, tg *chTarget) versionLog {
	t.Helper()
	out := strings.Fields(srv.Query(fmt.Sprintf("SELECT count(), max(version) FROM `%s`.`%s_versions`", tg.db, tg.table)))
	if len(out) != 2 {
		t.Fatalf("version log of %s.%s: %q", tg.db, tg.table, out)
	}
	rows, err1 := strconv.ParseUint(out[0], 10, 64)
	maxV, err2 := strconv.ParseUint(out[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("version log of %s.%s: %q", tg.db, tg.table, out)
	}
	return versionLog{rows, maxV}
}

// checkVersionsAfter asserts that every row inserted since prev was read has a larger version
// than every row inserted before: the rows with version ≤ prev.max are still exactly prev.rows.
// It returns the log now.
func checkVersionsAfter(t *testing.T, srv *chtest.Server, tg *chTarget, prev versionLog, run string) versionLog {
	t.Helper()
	now := readVersionLog(t, srv, tg)
	old := strings.TrimSpace(srv.Query(fmt.Sprintf("SELECT count() FROM `%s`.`%s_versions` WHERE version <= %d", tg.db, tg.table, prev.max)))
	if old != strconv.FormatUint(prev.rows, 10) {
		t.Errorf("%s, table %s: %s rows inserted so far have a version ≤ %d, the largest before this run, but only %d rows were inserted before it: versions went backwards",
			run, tg.table, old, prev.max, prev.rows)
	}
	return now
}

// kafkaClickHouseModel rewrites the first cube of the model at cfgPath into a model of that cube
// alone, reading topic from brokers (CSV columns from header) with a watermark trailing the
// whole data span (so that no window closes before its last event, whichever partition holds
// it), early fire every second and ClickHouse as its only sink (table <cube> of db on chAddr),
// which the query API then reads.
func kafkaClickHouseModel(t *testing.T, cfgPath string, brokers []string, topic string, header []string, res *oResult, chAddr, db string) []byte {
	t.Helper()
	model := rewriteModel(t, cfgPath, func(c map[string]any) {
		src := subMap(c, "source")
		delete(src, "file")
		src["kafka"] = map[string]any{"brokers": brokers, "topic": topic, "group": "cubed-" + topic}
		if res.Cube.Format == "csv" {
			src["columns"] = header
		}
		span := res.MaxT.Sub(res.MinT) + 48*time.Hour
		subMap(c, "event_time")["max_out_of_orderness"] = fmt.Sprintf("%dh", int(span.Hours())+1)
		for _, w := range c["windows"].([]any) {
			w.(map[string]any)["emit_every"] = "1s"
		}
		sk := subMap(c, "sink")
		sk["clickhouse"] = map[string]any{"addr": chAddr, "database": db, "table": c["name"]}
		sk["embedded"] = false
	})
	// The first cube only: the others of the file (online_retail_weekly) would share its topic
	// and consumer group.
	var doc map[string]any
	if err := yaml.Unmarshal(model, &doc); err != nil {
		t.Fatal(err)
	}
	doc["cubes"] = doc["cubes"].([]any)[:1]
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// combineModels joins the cubes of several model files into one.
func combineModels(t *testing.T, models ...[]byte) []byte {
	t.Helper()
	var cubes []any
	for _, m := range models {
		var doc map[string]any
		if err := yaml.Unmarshal(m, &doc); err != nil {
			t.Fatal(err)
		}
		cubes = append(cubes, doc["cubes"].([]any)...)
	}
	out, err := yaml.Marshal(map[string]any{"version": 1, "cubes": cubes})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKafkaCrashClickHouse is TestKafkaCrash with a ClickHouse sink: a broker process holds
// wikiticker and online_retail, `cubed run` writes both cubes to a private clickhouse-server
// with a checkpoint every 200 ms and is killed with SIGKILL at 5 random points, then runs on.
// Every (window, grouping set) then equals the oracle both through the query API (which reads
// ClickHouse) and in plain SQL (SELECT … FINAL with clickhouse-client): no row lost or doubled.
// A materialized view logs the version of every row ever inserted: each run's versions are
// above all versions of the runs before it.
func TestKafkaCrashClickHouse(t *testing.T) {
	srcs := []struct{ name, file string }{{"wikiticker", "wikiticker-2015-09-12.json.gz"}, {"online_retail", "online_retail.csv.gz"}}
	srv := chtest.Start(t)
	tmp := t.TempDir()
	port := freePort(t)
	addr, stopBroker := startBroker(t, filepath.Join(tmp, "broker"), port, "chcrash_wikiticker:4,chcrash_online_retail:4")
	defer func() { stopBroker() }()

	const db = "crash"
	var all []*oCube
	var results []*oResult
	var models [][]byte
	for _, s := range srcs {
		data := dataFile(t, s.file)
		cfgPath := filepath.Join(repoRoot(t), "configs", s.name+".yaml")
		oc, err := oLoadModel(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		oc[0].File = data
		_, header := produceLines(t, []string{addr}, "chcrash_"+s.name, 4, data, oc[0].Format)
		res, err := oCached(oc[0])
		if err != nil {
			t.Fatal(err)
		}
		all, results = append(all, oc[0]), append(results, res)
		models = append(models, kafkaClickHouseModel(t, cfgPath, []string{addr}, "chcrash_"+s.name, header, res, srv.Addr(), db))
	}
	cfg := filepath.Join(tmp, "crash.yaml")
	if err := os.WriteFile(cfg, combineModels(t, models...), 0o644); err != nil {
		t.Fatal(err)
	}
	targets := planTargets(t, cfg, db, all)
	createTables(t, srv, cfg, targets)
	logs := map[string]versionLog{}
	for name, tg := range targets {
		logs[name] = readVersionLog(t, srv, tg)
	}
	checkVersions := func(run string) {
		// An INSERT that the killed process had sent in full may still be committing.
		time.Sleep(time.Second)
		for name, tg := range targets {
			logs[name] = checkVersionsAfter(t, srv, tg, logs[name], run)
		}
	}

	dir := filepath.Join(tmp, "data")
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	inserted := 0
	for kill := 0; kill < 5; kill++ {
		httpAddr := freeAddr(t)
		p := startRun(t, cfg, dir, httpAddr, "--checkpoint-every", "200ms")
		after := time.Duration(1000+r.Intn(3000)) * time.Millisecond
		select {
		case <-p.done:
			t.Fatalf("cubed run exited on its own (%v):\n%s", p.cmd.ProcessState, tail(p.stderr.Bytes(), 40))
		case <-time.After(after):
		}
		p.cmd.Process.Kill() // SIGKILL
		<-p.done
		before := logs["online_retail"].rows + logs["wikiticker"].rows
		checkVersions(fmt.Sprintf("run %d", kill))
		if logs["online_retail"].rows+logs["wikiticker"].rows > before {
			inserted++
		}
		t.Logf("cubed run %d killed after %v; rows inserted so far: %v", kill, after, logs)
	}
	if inserted < 2 {
		t.Errorf("only %d of 5 killed runs inserted rows into ClickHouse; the kills came too early to test anything", inserted)
	}
	httpAddr := freeAddr(t)
	restart := time.Now()
	p := startRun(t, cfg, dir, httpAddr)
	p.waitReady(t, httpAddr, 60*time.Second)
	t.Logf("restarted and ready in %v", time.Since(restart).Round(time.Millisecond))
	waitForOracle(t, httpAddr, p, results, time.Now(), 180*time.Second)
	n := checkSQLAgainstOracle(t, srv, targets, results)
	checkVersions("the last run")
	for name, tg := range targets {
		final := strings.TrimSpace(srv.Query(fmt.Sprintf("SELECT count() FROM `%s`.`%s` FINAL", tg.db, tg.table)))
		t.Logf("cube %s: %s rows (FINAL) of %d inserted", name, final, logs[name].rows)
	}
	t.Logf("%d oracle rows equal in SQL (FINAL) and through the query API", n)
}

// status is the part of GET /api/v1/status this test reads.
type status struct {
	Cubes []struct {
		Name             string `json:"name"`
		Events           uint64 `json:"events"`
		SinkError        string `json:"sink_error"`
		SinkBufferedRows int    `json:"sink_buffered_rows"`
	} `json:"cubes"`
}

func getStatus(t testing.TB, addr string) status {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	defer resp.Body.Close()
	var env struct {
		Data status `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	return env.Data
}

// gauge reads one unlabelled series of GET /metrics.
func gauge(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestClickHouseOutageOracle streams online_retail through Kafka (kfake, 4 partitions) into
// `cubed run` with a ClickHouse sink and stops the ClickHouse server mid-stream for 30 s while
// the rest of the data arrives. While it is down, /api/v1/status shows the sink failing, the
// cube stops consuming (its event count stays flat while the topic grows), the rows waiting for
// ClickHouse stay few and flat, and the process heap does not grow by the backlog. After the
// restart every (window, grouping set) equals the oracle, through the query API and in plain SQL.
func TestClickHouseOutageOracle(t *testing.T) {
	const downFor = 30 * time.Second
	data := dataFile(t, "online_retail.csv.gz")
	cfgPath := filepath.Join(repoRoot(t), "configs", "online_retail.yaml")
	oc, err := oLoadModel(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	oc = oc[:1] // the first cube (see kafkaClickHouseModel)
	oc[0].File = data
	wait := computeAsync(oc)
	srv := chtest.Start(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "outage"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	// The lines go to the topic in three parts: 40% before the start, the rest while
	// ClickHouse is down.
	var lines [][]byte
	var header []string
	if err := oLines(data, func(_ int64, b []byte) error {
		if header == nil {
			h, err := parseCSVHeader(b)
			header = h
			return err
		}
		lines = append(lines, append([]byte(nil), b...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	first := len(lines) * 4 / 10
	produce := producer(t, brokers, "outage", 4)
	produce(lines[:first], 0)

	results := wait(t)
	tmp := t.TempDir()
	const db = "outage"
	cfg := filepath.Join(tmp, "outage.yaml")
	if err := os.WriteFile(cfg, kafkaClickHouseModel(t, cfgPath, brokers, "outage", header, results[0], srv.Addr(), db), 0o644); err != nil {
		t.Fatal(err)
	}
	targets := planTargets(t, cfg, db, oc)
	httpAddr := freeAddr(t)
	p := startRun(t, cfg, filepath.Join(tmp, "data"), httpAddr)
	p.waitReady(t, httpAddr, 60*time.Second)
	cubeStatus := func() (events uint64, sinkErr string, buffered int) {
		st := getStatus(t, httpAddr)
		if len(st.Cubes) != 1 {
			t.Fatalf("status has %d cubes", len(st.Cubes))
		}
		c := st.Cubes[0]
		return c.Events, c.SinkError, c.SinkBufferedRows
	}
	events := func() uint64 { return uint64(metricsByCube(t, httpAddr, "cubed_events_total")["online_retail"]) }
	// Up and running: the first part consumed and its rows stored.
	deadline := time.Now().Add(120 * time.Second)
	var heapBefore float64
	for {
		heapBefore = max(heapBefore, gauge(t, httpAddr, "go_memstats_heap_inuse_bytes"))
		_, _, buffered := cubeStatus()
		if events() == uint64(first) && buffered == 0 && strings.TrimSpace(srv.Query("SELECT count() > 0 FROM outage.online_retail")) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first %d events were not consumed and stored within 120s (events %d)", first, events())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("first %d events consumed; heap in use up to %.0f MiB", first, heapBefore/(1<<20))

	srv.Stop()
	downAt := time.Now()
	produced := make(chan struct{})
	go func() { // the rest, in 20 chunks over 10 s
		defer close(produced)
		rest := lines[first:]
		chunk := (len(rest) + 19) / 20
		for lo := 0; lo < len(rest); lo += chunk {
			produce(rest[lo:min(lo+chunk, len(rest))], int64(first+lo))
			time.Sleep(500 * time.Millisecond)
		}
	}()
	// The first sink error comes from the background writer; the cube's loop blocks at its
	// next step (at most one more poll batch). A baseline of events, buffered rows and heap
	// 500ms after that error, and their largest values until the restart.
	var (
		sawErr            string
		erredAfter        time.Duration
		based             bool
		evBase, evMax     uint64
		bufBase, bufMax   int
		heapBase, heapMax float64
	)
	// The heap is read once a second: each read of /metrics makes garbage, which counts in
	// heap in use until the next collection.
	for i := 0; time.Since(downAt) < downFor; i++ {
		ev, sinkErr, buffered := cubeStatus()
		heap := heapBase
		if i%4 == 0 || !based {
			heap = gauge(t, httpAddr, "go_memstats_heap_inuse_bytes")
		}
		if sinkErr != "" && sawErr == "" {
			sawErr, erredAfter = sinkErr, time.Since(downAt)
		}
		if sawErr != "" && !based && time.Since(downAt) >= erredAfter+500*time.Millisecond {
			based = true
			evBase, bufBase, heapBase = ev, buffered, heap
		}
		if based {
			evMax, bufMax, heapMax = max(evMax, ev), max(bufMax, buffered), max(heapMax, heap)
		}
		time.Sleep(250 * time.Millisecond)
	}
	<-produced
	evNow := events()
	srv.Restart()
	t.Logf("ClickHouse down %v; sink_error after %v: %s", time.Since(downAt).Round(time.Millisecond), erredAfter.Round(time.Millisecond), sawErr)
	t.Logf("from 500ms after the first error to the restart: events %d → at most %d (metric at the end %d, of %d produced); rows waiting for ClickHouse %d → at most %d; heap in use %.0f → at most %.0f MiB (before the outage up to %.0f MiB)",
		evBase, evMax, evNow, len(lines), bufBase, bufMax, heapBase/(1<<20), heapMax/(1<<20), heapBefore/(1<<20))
	if sawErr == "" {
		t.Fatal("/api/v1/status never showed a sink_error while ClickHouse was down")
	}
	// The status is published at the end of each loop step; the metric counts as events are
	// ingested, so it may count the one poll the loop took while the writer failed.
	const onePoll = 32768
	if evMax != evBase || evNow > evBase+onePoll || evNow >= uint64(len(lines)) {
		t.Errorf("the cube kept consuming while ClickHouse was down: %d events 500ms after the first sink error, up to %d later (metric %d at the end), of %d", evBase, evMax, evNow, len(lines))
	}
	// Bounded: the rows waiting for ClickHouse are those emitted before the loop blocked and
	// do not grow with the backlog. sink.ClickHouseBuffer holds two batches (the failed one and
	// the one filling), each at most DefaultClickHouseBatchRows plus the rows of one Add, which
	// the pipeline makes at most 2^18 rows (its maxPendingRows). Neither does the heap grow,
	// beyond the Kafka client's prefetched fetch (at most 1 MiB per partition) and the HTTP
	// handlers' garbage. (The bound was 250,000 until the cube consumed a backlog faster, with
	// fewer pauses of its partitions: its early fire at the outage then held 256k rows, and
	// 356k waited.)
	const maxRows, heapSlack = 2 * (sink.DefaultClickHouseBatchRows + 1<<18), 32 << 20
	if bufMax != bufBase || bufMax > maxRows {
		t.Errorf("rows waiting for ClickHouse went from %d to %d while it was down, want flat and at most %d", bufBase, bufMax, maxRows)
	}
	if heapMax > heapBase+heapSlack {
		t.Errorf("heap in use grew from %.0f MiB to %.0f MiB while ClickHouse was down and the backlog (60%% of the file, 27 MB of CSV) arrived (allowed: +%d MiB)",
			heapBase/(1<<20), heapMax/(1<<20), heapSlack>>20)
	}

	waitForOracle(t, httpAddr, p, results, time.Now(), 180*time.Second)
	if _, sinkErr, _ := cubeStatus(); sinkErr != "" {
		t.Errorf("sink_error still shown after recovery: %q", sinkErr)
	}
	n := checkSQLAgainstOracle(t, srv, targets, results)
	t.Logf("%d oracle rows equal in SQL (FINAL) and through the query API", n)
}

// producer returns a function that produces lines to topic synchronously, the line with index
// first+i to partition (first+i) % partitions (as produceLines spreads a file).
func producer(t testing.TB, brokers []string, topic string, partitions int32) func(lines [][]byte, first int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return func(lines [][]byte, first int64) {
		recs := make([]*kgo.Record, len(lines))
		for i, l := range lines {
			recs[i] = &kgo.Record{Value: l, Partition: int32((first + int64(i)) % int64(partitions))}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Errorf("producing to %s: %v", topic, err)
		}
	}
}
