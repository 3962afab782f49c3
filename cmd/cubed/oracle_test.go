package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"
)

// realConfigs are the models of configs/ that the oracle checks, with the data file each reads.
var realConfigs = []struct{ name, file string }{
	{"wikiticker", "wikiticker-2015-09-12.json.gz"},
	{"online_retail", "online_retail.csv.gz"},
	{"gharchive", "gharchive-2015-01-01-0.json.gz"},
}

// rewriteModel decodes a model file, lets edit change each cube (as generic YAML maps), and
// returns the re-encoded model.
func rewriteModel(t testing.TB, path string, edit func(cube map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	cubes, ok := m["cubes"].([]any)
	if !ok {
		t.Fatalf("%s: cubes is %T, not a list", path, m["cubes"])
	}
	for _, c := range cubes {
		cm, ok := c.(map[string]any)
		if !ok {
			t.Fatalf("%s: a cube is %T, not a mapping", path, c)
		}
		edit(cm)
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subMap(m map[string]any, key string) map[string]any {
	sub, ok := m[key].(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[key] = sub
	}
	return sub
}

// queryFor is the query JSON that asks for every measure of grouping set g in window w.
func queryFor(c *oCube, w, g int) []byte {
	measures := make([]string, len(c.Measures))
	for i, m := range c.Measures {
		measures[i] = m.Name
	}
	q := map[string]any{
		"cube":        c.Name,
		"measures":    measures,
		"dimensions":  append([]string{}, c.Sets[g]...),
		"granularity": c.Windows[w].Granularity,
		"cumulative":  c.Windows[w].Step > 0,
		"limit":       0,
	}
	b, _ := json.Marshal(q)
	return b
}

// wantColumns is the column list a query for window w and grouping set g must answer.
func wantColumns(c *oCube, w, g int) []string {
	cols := []string{"window_start"}
	if c.Windows[w].Step > 0 {
		cols = append(cols, "window_end")
	}
	cols = append(cols, c.Sets[g]...)
	for _, m := range c.Measures {
		cols = append(cols, m.Name)
	}
	return cols
}

// parseQueryAnswer decodes a success envelope {"status":"success","data":{"columns":[...],
// "rows":[...]},"freshness":{...}} into rows, checking the columns and that every window_start and
// window_end carries the cube zone's offset at that instant.
func parseQueryAnswer(c *oCube, w, g int, body []byte) ([]oRow, error) {
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Freshness json.RawMessage `json:"freshness"`
		Data      struct {
			Columns []json.RawMessage `json:"columns"`
			Rows    [][]any           `json:"rows"`
		} `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("answer is not the JSON envelope: %v; begins %q", err, truncate(body, 300))
	}
	if env.Status != "success" {
		return nil, fmt.Errorf("status %q, errorType %q: %s", env.Status, env.ErrorType, env.Error)
	}
	if len(env.Freshness) == 0 {
		return nil, fmt.Errorf("answer has no freshness")
	}
	var cols []string
	for _, raw := range env.Data.Columns {
		var name string
		if json.Unmarshal(raw, &name) != nil {
			var obj struct{ Name string }
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, fmt.Errorf("column %s is neither a name nor {name}", raw)
			}
			name = obj.Name
		}
		cols = append(cols, name)
	}
	want := wantColumns(c, w, g)
	if strings.Join(cols, ",") != strings.Join(want, ",") {
		return nil, fmt.Errorf("columns %q, want %q", cols, want)
	}
	cumulative := c.Windows[w].Step > 0
	nd := len(c.Sets[g])
	first := 1
	if cumulative {
		first = 2
	}
	parseTime := func(v any, col string) (int64, error) {
		s, ok := v.(string)
		if !ok {
			return 0, fmt.Errorf("%s %v is %T, not an RFC 3339 string", col, v, v)
		}
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("%s %q: %v", col, s, err)
		}
		_, off := tm.Zone()
		_, zoneOff := tm.In(c.Loc).Zone()
		if off != zoneOff {
			return 0, fmt.Errorf("%s %q has UTC offset %ds; the cube's zone %s has %ds at that instant", col, s, off, c.Loc, zoneOff)
		}
		return tm.UnixMilli(), nil
	}
	rows := make([]oRow, 0, len(env.Data.Rows))
	for i, cells := range env.Data.Rows {
		if len(cells) != len(want) {
			return nil, fmt.Errorf("row %d has %d cells, want %d: %v", i, len(cells), len(want), cells)
		}
		var r oRow
		var err error
		if r.Start, err = parseTime(cells[0], "window_start"); err != nil {
			return nil, fmt.Errorf("row %d: %v", i, err)
		}
		if cumulative {
			if r.End, err = parseTime(cells[1], "window_end"); err != nil {
				return nil, fmt.Errorf("row %d: %v", i, err)
			}
		}
		r.Dims = make([]string, nd)
		for d := 0; d < nd; d++ {
			s, ok := cells[first+d].(string)
			if !ok {
				return nil, fmt.Errorf("row %d: dimension %s is %T (%v), not a string", i, want[first+d], cells[first+d], cells[first+d])
			}
			r.Dims[d] = s
		}
		r.Vals = make([]oNum, len(c.Measures))
		for m := range c.Measures {
			switch v := cells[first+nd+m].(type) {
			case nil:
				r.Vals[m] = oNum{null: true}
			case json.Number:
				f, err := strconv.ParseFloat(v.String(), 64)
				if err != nil {
					return nil, fmt.Errorf("row %d: measure %s %q: %v", i, c.Measures[m].Name, v, err)
				}
				r.Vals[m] = oNum{v: f}
			default:
				return nil, fmt.Errorf("row %d: measure %s is %T (%v), not a number or null", i, c.Measures[m].Name, v, v)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func measureNames(c *oCube) []string {
	names := make([]string, len(c.Measures))
	for i, m := range c.Measures {
		names[i] = m.Name
	}
	return names
}

// oracleCache keeps each model's oracle result for the tests that share it (the replay, Kafka and
// consistency tests read the same data with the same model).
var oracleCache struct {
	sync.Mutex // guards m
	m          map[string]*oracleEntry
}

type oracleEntry struct {
	once sync.Once
	res  *oResult
	err  error
}

// oCached is oCompute, computed once per cube model and data file (tests that edit a model's
// measures, windows or grouping sets get their own results). Callers must not modify the result.
func oCached(c *oCube) (*oResult, error) {
	model := *c
	model.TimeLoc, model.Loc = nil, nil
	key := fmt.Sprintf("%+v\x00%v\x00%v", model, c.TimeLoc, c.Loc)
	oracleCache.Lock()
	if oracleCache.m == nil {
		oracleCache.m = map[string]*oracleEntry{}
	}
	e := oracleCache.m[key]
	if e == nil {
		e = &oracleEntry{}
		oracleCache.m[key] = e
	}
	oracleCache.Unlock()
	e.once.Do(func() { e.res, e.err = oCompute(c) })
	return e.res, e.err
}

// startOracle writes model to cfg, loads its cubes for the oracle and starts computing their
// expected results (computeAsync).
func startOracle(t testing.TB, cfg string, model []byte) ([]*oCube, func(t testing.TB) []*oResult) {
	t.Helper()
	if err := os.WriteFile(cfg, model, 0o644); err != nil {
		t.Fatal(err)
	}
	cubes, err := oLoadModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cubes, computeAsync(cubes)
}

// computeAsync runs the oracle over every cube in the background (it overlaps with cubed's own
// run); wait returns the results in cube order.
func computeAsync(cubes []*oCube) (wait func(t testing.TB) []*oResult) {
	type out struct {
		res []*oResult
		err error
	}
	ch := make(chan out, 1)
	go func() {
		var o out
		for _, c := range cubes {
			r, err := oCached(c)
			if err != nil {
				o.err = err
				break
			}
			o.res = append(o.res, r)
		}
		ch <- o
	}()
	return func(t testing.TB) []*oResult {
		t.Helper()
		o := <-ch
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.res
	}
}

// TestReplayOracle replays each real-data model of configs/ with `cubed replay` and compares every
// grouping set of every window, queried with `cubed query`, with the oracle.
func TestReplayOracle(t *testing.T) {
	for _, rc := range realConfigs {
		t.Run(rc.name, func(t *testing.T) {
			data := dataFile(t, rc.file)
			cfgPath := filepath.Join(repoRoot(t), "configs", rc.name+".yaml")
			tmp := t.TempDir()
			model := rewriteModel(t, cfgPath, func(c map[string]any) {
				subMap(subMap(c, "source"), "file")["path"] = data
			})
			cfg := filepath.Join(tmp, rc.name+".yaml")
			_, wait := startOracle(t, cfg, model)
			dir := filepath.Join(tmp, "data")
			start := time.Now()
			sums := runReplay(t, cfg, dir, 150*time.Second)
			t.Logf("cubed replay: %v, %v", time.Since(start).Round(time.Millisecond), sums)
			results := wait(t)
			for _, res := range results {
				c := res.Cube
				if res.Bad != 0 {
					t.Fatalf("oracle: %d records of %s do not decode; the real data should", res.Bad, c.File)
				}
				s, ok := sums[c.Name]
				if !ok {
					t.Fatalf("cubed replay printed no summary for cube %q (got %v)", c.Name, sums)
				}
				if s.Events != res.Events || s.BadEvents != 0 || s.LateEvents != 0 {
					t.Errorf("cube %s summary: events %d, bad %d, late %d; want events %d (records in %s), bad 0, late 0",
						c.Name, s.Events, s.BadEvents, s.LateEvents, res.Events, filepath.Base(c.File))
				}
				total := checkAgainstOracle(t, c, res, cfg, dir)
				if s.Rows < total {
					t.Errorf("cube %s summary: rows %d, but the oracle has %d distinct result rows (each needs at least one write)", c.Name, s.Rows, total)
				}
				t.Logf("cube %s: %d events, %d result rows checked", c.Name, res.Events, total)
			}
		})
	}
}

// produceLines produces every data line of file (for CSV without the header row) to topic, line
// i (0-based) to partition i % partitions, in order. It returns the number of records and, for
// CSV, the header's column names.
func produceLines(t testing.TB, addrs []string, topic string, partitions int32, file, format string) (int64, []string) {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addrs...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var n int64
	var header []string
	var produceErr error
	errCh := make(chan error, 1)
	err = oLines(file, func(line int64, b []byte) error {
		if format == "csv" && header == nil {
			h, err := parseCSVHeader(b)
			if err != nil {
				return err
			}
			header = h
			return nil
		}
		rec := &kgo.Record{Value: append([]byte(nil), b...), Partition: int32(n % int64(partitions))}
		n++
		cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errCh <- err:
				default:
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatalf("flushing the producer: %v", err)
	}
	select {
	case produceErr = <-errCh:
		t.Fatalf("producing to %s: %v", topic, produceErr)
	default:
	}
	return n, header
}

func parseCSVHeader(b []byte) ([]string, error) {
	var cols []string
	for _, f := range strings.Split(string(b), ",") {
		if strings.ContainsAny(f, "\"") {
			return nil, fmt.Errorf("oracle: quoted CSV header %q is not supported", b)
		}
		cols = append(cols, f)
	}
	return cols, nil
}

// cubedProcess is a running `cubed run`.
type cubedProcess struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

// startRun starts `cubed run` and stops it (SIGTERM, then SIGKILL after 10 s) when the test ends.
func startRun(t testing.TB, cfg, dataDir, addr string, extra ...string) *cubedProcess {
	t.Helper()
	bin := cubedBinary(t)
	p := &cubedProcess{stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"run", "--config", cfg, "--data-dir", dataDir, "--http", addr}, extra...)...)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting cubed run: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("cubed run output (tail):\n%s", tail(p.stderr.Bytes(), 60))
		}
	})
	return p
}

// waitReady polls GET /-/ready until it answers 200.
func (p *cubedProcess) waitReady(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("cubed run exited before it was ready (%v)", p.cmd.ProcessState)
		default:
		}
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cubed run not ready at %s after %v (last: %v)", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// postQuery sends a query to POST /api/v1/query and returns the body of a 200 answer.
func postQuery(addr string, q []byte) ([]byte, error) {
	resp, err := httpClient.Post("http://"+addr+"/api/v1/query", "application/json", bytes.NewReader(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, truncate(body, 500))
	}
	return body, nil
}

// metricsByCube reads GET /metrics and returns the value of metric for each cube label.
func metricsByCube(t testing.TB, addr, metric string) map[string]float64 {
	t.Helper()
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		labels, value, ok := strings.Cut(line[len(metric)+1:], "} ")
		if !ok {
			continue
		}
		for _, l := range strings.Split(labels, ",") {
			if name, ok := strings.CutPrefix(l, `cube="`); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				out[strings.TrimSuffix(name, `"`)] += v
			}
		}
	}
	return out
}

// TestKafkaOracle produces the raw lines of each real data set into an in-process Kafka cluster
// (kfake, 4 partitions, round robin by line), runs `cubed run` on a Kafka model, and polls the
// HTTP query API until every grouping set of every window equals the oracle.
func TestKafkaOracle(t *testing.T) {
	for _, rc := range realConfigs {
		t.Run(rc.name, func(t *testing.T) {
			data := dataFile(t, rc.file)
			cfgPath := filepath.Join(repoRoot(t), "configs", rc.name+".yaml")
			fileCubes, err := oLoadModel(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range fileCubes {
				c.File = data
			}
			wait := computeAsync(fileCubes)

			const partitions = 4
			var topics []string
			for _, c := range fileCubes {
				topics = append(topics, "oracle_"+c.Name)
			}
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
			if err != nil {
				t.Fatalf("starting kfake: %v", err)
			}
			defer cluster.Close()
			addrs := cluster.ListenAddrs()
			produced := map[string]int64{}
			var header []string
			start := time.Now()
			for i, c := range fileCubes {
				produced[c.Name], header = produceLines(t, addrs, topics[i], partitions, data, c.Format)
			}
			t.Logf("produced %v records in %v", produced, time.Since(start).Round(time.Millisecond))

			results := wait(t)
			byName := map[string]*oResult{}
			for _, r := range results {
				byName[r.Cube.Name] = r
			}
			// In a live run no window may close before its last event arrives, whichever
			// partition that event sits in: the watermark trails by the whole data span.
			model := rewriteModel(t, cfgPath, func(c map[string]any) {
				name, _ := c["name"].(string)
				res := byName[name]
				if res == nil {
					t.Fatalf("cube %q of %s is unknown to the oracle", name, cfgPath)
				}
				src := subMap(c, "source")
				delete(src, "file")
				src["kafka"] = map[string]any{
					"brokers": addrs,
					"topic":   "oracle_" + name,
					"group":   "cubed-oracle-" + name,
					"start":   "earliest",
				}
				if res.Cube.Format == "csv" {
					src["columns"] = header
				}
				span := res.MaxT.Sub(res.MinT) + 48*time.Hour
				et := subMap(c, "event_time")
				et["max_out_of_orderness"] = fmt.Sprintf("%dh", int(span.Hours())+1)
				et["allowed_lateness"] = "1h"
				if ws, ok := c["windows"].([]any); ok {
					for _, w := range ws {
						if wm, ok := w.(map[string]any); ok {
							wm["emit_every"] = "1s"
						}
					}
				}
			})
			tmp := t.TempDir()
			cfg := filepath.Join(tmp, rc.name+"-kafka.yaml")
			if err := os.WriteFile(cfg, model, 0o644); err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			p := startRun(t, cfg, filepath.Join(tmp, "data"), addr)
			p.waitReady(t, addr, 60*time.Second)
			readyAt := time.Now()

			waitForOracle(t, addr, p, results, readyAt, 90*time.Second)

			events := metricsByCube(t, addr, "cubed_events_total")
			late := metricsByCube(t, addr, "cubed_late_events_total")
			bad := metricsByCube(t, addr, "cubed_bad_events_total")
			for _, res := range results {
				n := res.Cube.Name
				if events[n] != float64(produced[n]) || late[n] != 0 || bad[n] != 0 {
					t.Errorf("metrics of cube %s: cubed_events_total %v, cubed_late_events_total %v, cubed_bad_events_total %v; want %d, 0, 0",
						n, events[n], late[n], bad[n], produced[n])
				}
				if _, ok := events[n]; !ok {
					t.Errorf("/metrics has no cubed_events_total{cube=%q}", n)
				}
			}
		})
	}
}

// waitForOracle polls the query API of the running cubed at addr until every (window, grouping
// set) of every result equals the oracle's live-mode rows, or timeout after readyAt; it reports
// every pair that still differs.
func waitForOracle(t *testing.T, addr string, p *cubedProcess, results []*oResult, readyAt time.Time, timeout time.Duration) {
	t.Helper()
	type pair struct {
		res  *oResult
		w, g int
		want []oRow
		diff string
		done bool
	}
	var pairs []*pair
	for _, res := range results {
		for w := range res.Cube.Windows {
			for g := range res.Cube.Sets {
				pairs = append(pairs, &pair{res: res, w: w, g: g, want: res.Rows(w, g, true), diff: "not queried yet"})
			}
		}
	}
	// Cheap queries first: once they match, the cube has consumed everything and the
	// large ones are worth fetching.
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i].want) < len(pairs[j].want) })
	check := func(pr *pair) bool {
		c := pr.res.Cube
		body, err := postQuery(addr, queryFor(c, pr.w, pr.g))
		if err != nil {
			pr.diff = err.Error()
			return false
		}
		got, err := parseQueryAnswer(c, pr.w, pr.g, body)
		if err != nil {
			pr.diff = err.Error()
			return false
		}
		pr.diff = diffRows(c, measureNames(c), pr.want, got)
		pr.done = pr.diff == ""
		return pr.done
	}
	deadline := readyAt.Add(timeout)
	for {
		select {
		case <-p.done:
			t.Fatalf("cubed run exited while being queried (%v)", p.cmd.ProcessState)
		default:
		}
		all := true
		for _, pr := range pairs {
			if !pr.done && !check(pr) {
				all = false
				break
			}
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	matched := true
	for _, pr := range pairs {
		if !pr.done && !check(pr) { // one last look at every remaining pair
			matched = false
			t.Errorf("cube %s window %v grouping set %v after %v: %s", pr.res.Cube.Name, pr.res.Cube.Windows[pr.w], pr.res.Cube.Sets[pr.g], time.Since(readyAt).Round(time.Second), pr.diff)
		}
	}
	if matched {
		t.Logf("all %d (window, grouping set) answers matched the oracle %v after ready", len(pairs), time.Since(readyAt).Round(time.Millisecond))
	}

}
