package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/internal/chtest"
)

// benchEnvInt reads a positive integer from the environment, or def.
func benchEnvInt(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive integer", name, s)
		}
		return n
	}
	return def
}

// procCPU returns the CPU time a process has used so far (chtest.ProcessCPU).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := chtest.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// procMemory returns cubed's peak resident set (in MiB), minor page faults and system CPU time
// (chtest.ProcessMemory); it fails the benchmark when pid is gone.
func procMemory(b *testing.B, pid int) (peakMiB float64, minflt int64, sys time.Duration) {
	b.Helper()
	peak, minflt, sys, err := chtest.ProcessMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(peak) / (1 << 20), minflt, sys
}

// benchModel is the peer's model (../shared/bench/clickhouse_peer.sql: per minute, count,
// sum(amount) and exact UV over 5 grouping sets) reading topic and writing to ClickHouse table
// topic of database bench (its only sink), with early fire every second.
func benchModel(broker, topic, chAddr string) string {
	return fmt.Sprintf(`version: 1
cubes:
  - name: peer
    source:
      kafka: {brokers: [%q], topic: %s, group: bench-%s}
    event_time: {field: event_time, format: "2006-01-02 15:04:05", max_out_of_orderness: 5s}
    dimensions: [{name: country}, {name: platform}, {name: app_version}, {name: channel}, {name: page}]
    measures:
      - {name: pv, type: count}
      - {name: amt, type: sum, field: amount}
      - {name: uv, type: count_distinct, field: user_id}
    grouping_sets:
      - [country, platform, app_version, channel, page]
      - [country]
      - [platform, app_version]
      - [channel]
      - []
    windows: [{granularity: minute, emit_every: 1s}]
    sink:
      embedded: false
      clickhouse: {addr: %q, database: bench, table: %s}
`, broker, topic, topic, chAddr, topic)
}

// queryableEvents is the number of events the query API sees: the sum of pv over every minute
// of the grand-total grouping set, read (for this cube) from ClickHouse with FINAL.
func queryableEvents(addr string) (int64, error) {
	body, err := postQuery(addr, []byte(`{"cube":"peer","measures":["pv"],"dimensions":[],"granularity":"minute","limit":0}`))
	if err != nil {
		return 0, err
	}
	var env struct {
		Data struct {
			Rows [][]any `json:"rows"`
		} `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return 0, fmt.Errorf("query answer: %v", err)
	}
	var n int64
	for _, r := range env.Data.Rows {
		num, ok := r[len(r)-1].(json.Number)
		v, err := num.Int64()
		if !ok || err != nil {
			return 0, fmt.Errorf("query answer: pv %v is not an integer", r[len(r)-1])
		}
		n += v
	}
	return n, nil
}

// BenchmarkKafkaToClickHouse measures cubed end to end, events from Kafka to queryable rows in
// ClickHouse, with real processes: a Kafka-protocol broker (`cubed broker`), `cubed run` with a
// ClickHouse sink, and a private clickhouse-server. The events are ../shared/bench's (2,000,000
// events over one hour of event time, 180,000 Zipf users; CUBED_BENCH_EVENTS and
// CUBED_BENCH_USERS change that) and the model is the peer's. Three phases, one run:
//
//  1. Throughput: the whole file waits in the topic (4 partitions); cubed starts and runs until
//     the query API sees every event and nothing waits for ClickHouse (the query API is asked
//     once cubed_events_total has counted every event and no row waits in the sink buffer, the
//     metrics and status before). events/cpu-s divides the events by the CPU seconds of the
//     cubed process and of the ClickHouse server together (/proc/PID/stat), read just before
//     the query that finds every event, so the query's own cost is not counted, as the peer's
//     run counts no query either; the broker's CPU is reported apart (broker-cpu-s), since the
//     peer has no broker to pay for. The log line adds cubed's peak RSS, minor page faults and
//     system CPU (procMemory).
//  2. The peer on the same file: ../shared/bench/run_peer.sh (ClickHouse materialized views
//     over AggregatingMergeTree, server + client CPU); x-peer is the ratio of the two rates.
//  3. Latency, once per share of phase 1's events/s (wall) in CUBED_BENCH_LIVE_PERCENT (comma
//     separated, default 50,80): a producer in this process sends events stamped with the
//     current time at that rate for 40 s into a new topic (a new cube each time); every 100 ms
//     the query API is asked how many events it sees. Event k (in produce order) is queryable
//     at the first poll that sees at least k events; latency-p50-s@N% and latency-p99-s@N% are
//     over the events produced after a 5 s warm-up. (With 4 partitions the events become
//     visible nearly, not exactly, in produce order; the error is at most one poll batch.)
//     CUBED_BENCH_LIVE_BASE (events/s) replaces phase 1's rate as what the shares are of, so
//     that two builds can be compared at the same live rates.
//     Phase 1 had the machine to cubed and ClickHouse; here the producer and the broker run
//     beside them (the cores each used are logged), so on a small machine a high share
//     saturates it and measures queueing.
//
// CUBED_BENCH_CPUPROFILE=FILE saves a 5 s CPU profile of cubed from the start of phase 1, and
// CUBED_BENCH_ALLOCPROFILE=FILE its allocations (pprof allocs) at the end of phase 1.
// CUBED_BENCH_THROUGHPUT_ONLY (any value) stops after phase 1: for comparing two builds by
// alternating many short runs on a noisy machine.
//
// Run it with `make bench-clickhouse`.
func BenchmarkKafkaToClickHouse(b *testing.B) {
	n := benchEnvInt(b, "CUBED_BENCH_EVENTS", 2_000_000)
	users := benchEnvInt(b, "CUBED_BENCH_USERS", 180_000)
	shares := os.Getenv("CUBED_BENCH_LIVE_PERCENT")
	if shares == "" {
		shares = "50,80"
	}
	var pcts []int
	for _, f := range strings.Split(shares, ",") {
		pct, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pct <= 0 || len(pcts) == 4 {
			b.Fatalf("CUBED_BENCH_LIVE_PERCENT=%q: want up to 4 comma-separated positive integers", shares)
		}
		pcts = append(pcts, pct)
	}
	peerDir := filepath.Join(repoRoot(b), "..", "shared", "bench")
	if _, err := os.Stat(filepath.Join(peerDir, "run_peer.sh")); err != nil {
		b.Fatalf("the peer benchmark is missing: %v", err)
	}
	tmp := b.TempDir()
	events := filepath.Join(tmp, "events.jsonl")
	gen := exec.Command(goTool(), "run", ".", strconv.Itoa(n), strconv.Itoa(users))
	gen.Dir = peerDir
	out, err := os.Create(events)
	if err != nil {
		b.Fatal(err)
	}
	var genErr bytes.Buffer
	gen.Stdout, gen.Stderr = out, &genErr
	if err := gen.Run(); err != nil {
		b.Fatalf("generating events with go run . in %s: %v %s", peerDir, err, genErr.Bytes())
	}
	out.Close()
	lines := readEventLines(b, events)

	srv := chtest.Start(b)
	brokerAddr, brokerCmd, stopBroker := startBrokerCmd(b, filepath.Join(tmp, "broker"), freePort(b), "backlog:4,live0:4,live1:4,live2:4,live3:4")
	defer stopBroker()
	brokerPID := brokerCmd.Process.Pid
	produce := producer(b, []string{brokerAddr}, "backlog", 4)
	for lo := 0; lo < len(lines); lo += 50_000 {
		produce(lines[lo:min(lo+50_000, len(lines))], int64(lo))
	}
	b.ResetTimer()

	// Phase 1: throughput from a backlog.
	cfg := filepath.Join(tmp, "backlog.yaml")
	if err := os.WriteFile(cfg, []byte(benchModel(brokerAddr, "backlog", srv.Addr())), 0o644); err != nil {
		b.Fatal(err)
	}
	chCPU0, brokerCPU0 := procCPU(b, srv.PID()), procCPU(b, brokerPID)
	httpAddr := freeAddr(b)
	start := time.Now()
	p := startRun(b, cfg, filepath.Join(tmp, "data-backlog"), httpAddr)
	p.waitReady(b, httpAddr, time.Minute)
	profiled := profileRun(b, httpAddr, "CUBED_BENCH_CPUPROFILE", 5)
	// ClickHouse is asked (a query with FINAL, which costs the server CPU that the peer is not
	// charged for) only once cubed has counted every event and has no row left to write; the
	// CPU times are read just before that query, so that the query is not counted either.
	var wall, cubedCPU, chCPU, brokerCPU, sysCPU time.Duration
	var peakMiB float64
	var minflt int64
	for {
		var (
			seen int64
			err  = errors.New("not every event counted yet")
		)
		if metricsByCube(b, httpAddr, "cubed_events_total")["peer"] == float64(n) && getStatus(b, httpAddr).Cubes[0].SinkBufferedRows == 0 {
			wall, cubedCPU = time.Since(start), procCPU(b, p.cmd.Process.Pid)
			peakMiB, minflt, sysCPU = procMemory(b, p.cmd.Process.Pid)
			chCPU, brokerCPU = procCPU(b, srv.PID())-chCPU0, procCPU(b, brokerPID)-brokerCPU0
			seen, err = queryableEvents(httpAddr)
		}
		if err != nil && strings.Contains(err.Error(), "query answer") {
			b.Fatal(err)
		}
		if err == nil && seen == int64(n) {
			break
		}
		if seen > int64(n) {
			b.Fatalf("the query API sees %d events of %d", seen, n)
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("after 10 minutes the query API sees %d events of %d (%v)", seen, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if late := metricsByCube(b, httpAddr, "cubed_late_events_total")["peer"]; late != 0 {
		b.Errorf("%v late events: the throughput run dropped data", late)
	}
	inserted := metricsByCube(b, httpAddr, "cubed_emitted_rows_total")["peer"]
	<-profiled
	if path := os.Getenv("CUBED_BENCH_ALLOCPROFILE"); path != "" {
		if err := saveProfile(httpAddr, "allocs", path); err != nil {
			b.Fatal(err)
		}
	}
	stopProcess(p)
	cpu := (cubedCPU + chCPU).Seconds()
	rate := float64(n) / cpu
	wallRate := float64(n) / wall.Seconds()
	b.Logf("cubed → ClickHouse: %d events in %v wall; CPU cubed %.2fs + ClickHouse %.2fs = %.2fs → %.0f events/cpu-s (broker %.2fs apart); %.0f events/s wall; %.0f result rows written; cubed peak RSS %.0f MiB, %d minor faults, system CPU %.2fs",
		n, wall.Round(time.Millisecond), cubedCPU.Seconds(), chCPU.Seconds(), cpu, rate, brokerCPU.Seconds(), wallRate, inserted, peakMiB, minflt, sysCPU.Seconds())

	if os.Getenv("CUBED_BENCH_THROUGHPUT_ONLY") != "" {
		b.ReportMetric(rate, "events/cpu-s")
		b.ReportMetric(cubedCPU.Seconds(), "cubed-cpu-s")
		b.ReportMetric(chCPU.Seconds(), "clickhouse-cpu-s")
		b.ReportMetric(0, "ns/op")
		return
	}

	// Phase 2: the peer on the same file.
	b.StopTimer()
	peerOut, err := exec.Command("bash", filepath.Join(peerDir, "run_peer.sh"), events).CombinedOutput()
	if err != nil {
		b.Fatalf("run_peer.sh: %v\n%s", err, peerOut)
	}
	m := regexp.MustCompile(`events_per_cpu_s=(\d+)`).FindSubmatch(peerOut)
	if m == nil {
		b.Fatalf("run_peer.sh printed no events_per_cpu_s:\n%s", peerOut)
	}
	peerRate, _ := strconv.ParseFloat(string(m[1]), 64)
	b.Logf("%s", bytes.TrimSpace(peerOut))
	b.StartTimer()

	// Phase 3: event-to-queryable latency at shares of the throughput.
	type latency struct {
		pct      int
		p50, p99 float64
	}
	var lats []latency
	base := wallRate
	if os.Getenv("CUBED_BENCH_LIVE_BASE") != "" {
		base = float64(benchEnvInt(b, "CUBED_BENCH_LIVE_BASE", 0))
	}
	for i, pct := range pcts {
		liveRate := float64(pct) / 100 * base
		topic := fmt.Sprintf("live%d", i)
		p50, p99, behind := liveLatency(b, srv, brokerAddr, brokerPID, topic, lines, liveRate, filepath.Join(tmp, topic+".yaml"), filepath.Join(tmp, "data-"+topic))
		b.Logf("at %.0f events/s (%d%% of %.0f): event-to-queryable p50 %.2fs, p99 %.2fs; %d events never seen", liveRate, pct, base, p50, p99, behind)
		lats = append(lats, latency{pct, p50, p99})
	}

	b.ReportMetric(rate, "events/cpu-s")
	b.ReportMetric(peerRate, "peer-events/cpu-s")
	b.ReportMetric(rate/peerRate, "x-peer")
	b.ReportMetric(wallRate, "events/s")
	b.ReportMetric(cubedCPU.Seconds(), "cubed-cpu-s")
	b.ReportMetric(chCPU.Seconds(), "clickhouse-cpu-s")
	b.ReportMetric(brokerCPU.Seconds(), "broker-cpu-s")
	b.ReportMetric(inserted/wall.Seconds(), "rows/s")
	for _, l := range lats {
		b.ReportMetric(l.p50, fmt.Sprintf("latency-p50-s@%d%%", l.pct))
		b.ReportMetric(l.p99, fmt.Sprintf("latency-p99-s@%d%%", l.pct))
	}
	b.ReportMetric(0, "ns/op")
}

// readEventLines reads a file of lines.
func readEventLines(b *testing.B, path string) [][]byte {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, slices.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return lines
}

// stopProcess stops a `cubed run` with SIGTERM and waits for it.
func stopProcess(p *cubedProcess) {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// liveLatency runs phase 3 of BenchmarkKafkaToClickHouse: events at rate per second for 40 s,
// each stamped with the current time, and returns the p50 and p99 event-to-queryable latency in
// seconds of the events produced after a 5 s warm-up, and how many events were never seen.
//
// It logs the CPU that each process used while the producer ran, in cores: on a small machine
// the producer (this process) and the broker take their share of the cores that phase 1 gave
// to cubed and ClickHouse alone.
func liveLatency(b *testing.B, srv *chtest.Server, broker string, brokerPID int, topic string, lines [][]byte, rate float64, cfg, dataDir string) (p50, p99 float64, missing int64) {
	b.Helper()
	const produceFor, warmUp, tick = 40 * time.Second, 5 * time.Second, 10 * time.Millisecond
	if err := os.WriteFile(cfg, []byte(benchModel(broker, topic, srv.Addr())), 0o644); err != nil {
		b.Fatal(err)
	}
	httpAddr := freeAddr(b)
	p := startRun(b, cfg, dataDir, httpAddr)
	defer stopProcess(p)
	p.waitReady(b, httpAddr, time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()

	// sent[i] is (events produced so far, when): the producer's log, one entry per tick.
	type mark struct {
		total int64
		at    time.Time
	}
	var sent []mark
	done := make(chan struct{})
	var (
		mu   sync.Mutex // guards perr
		perr error
	)
	fail := func(err error) {
		mu.Lock()
		if perr == nil {
			perr = err
		}
		mu.Unlock()
	}
	go func() {
		defer close(done)
		at := bytes.Index(lines[0], []byte(`"event_time":"`)) + len(`"event_time":"`)
		begin := time.Now()
		t := time.NewTicker(tick)
		defer t.Stop()
		var total int64
		for now := range t.C {
			if now.Sub(begin) >= produceFor {
				return
			}
			due := int64(now.Sub(begin).Seconds() * rate)
			stamp := now.UTC().Format("2006-01-02 15:04:05")
			for ; total < due; total++ {
				v := slices.Clone(lines[total%int64(len(lines))])
				if at <= 0 || !bytes.HasPrefix(v[at-len(`"event_time":"`):], []byte(`"event_time":"`)) {
					fail(fmt.Errorf("event line %q has no event_time where the first has", v))
					return
				}
				copy(v[at:], stamp)
				cl.Produce(context.Background(), &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						fail(err)
					}
				})
			}
			sent = append(sent, mark{total, now})
		}
	}()
	type poll struct {
		seen int64
		at   time.Time
	}
	var polls []poll
	profiled := profileRun(b, httpAddr, "CUBED_BENCH_LIVE_CPUPROFILE", 30)
	defer func() { <-profiled }()
	pids := []int{p.cmd.Process.Pid, srv.PID(), brokerPID, os.Getpid()}
	cpu0 := make([]time.Duration, len(pids))
	for i, pid := range pids {
		cpu0[i] = procCPU(b, pid)
	}
	began := time.Now()
	for {
		select {
		case <-done:
			wall := time.Since(began).Seconds()
			var used [4]float64
			for i, pid := range pids {
				used[i] = (procCPU(b, pid) - cpu0[i]).Seconds() / wall
			}
			b.Logf("while producing, in cores: cubed %.2f, ClickHouse %.2f, broker %.2f, producer and poller %.2f; total %.2f of %d",
				used[0], used[1], used[2], used[3], used[0]+used[1]+used[2]+used[3], runtime.NumCPU())
		default:
			if seen, err := queryableEvents(httpAddr); err == nil {
				polls = append(polls, poll{seen, time.Now()})
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		break
	}
	mu.Lock()
	err = perr
	mu.Unlock()
	if err != nil {
		b.Fatalf("producing: %v", err)
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	total := sent[len(sent)-1].total
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		seen, err := queryableEvents(httpAddr)
		if err == nil {
			polls = append(polls, poll{seen, time.Now()})
			if seen >= total {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Event k's latency: the first poll seeing ≥ k events minus the tick that produced it.
	var lat []float64
	var weights []int64
	j := 0
	begin := sent[0].at
	prev := int64(0)
	for _, s := range sent {
		cnt := s.total - prev
		prev = s.total
		if cnt == 0 || s.at.Sub(begin) < warmUp {
			continue
		}
		for j < len(polls) && polls[j].seen < s.total {
			j++
		}
		if j == len(polls) {
			missing += cnt
			continue
		}
		lat = append(lat, polls[j].at.Sub(s.at).Seconds())
		weights = append(weights, cnt)
	}
	if len(lat) == 0 {
		b.Fatalf("no event became queryable (last poll saw %d of %d)", polls[len(polls)-1].seen, total)
	}
	return weightedQuantile(lat, weights, 0.5), weightedQuantile(lat, weights, 0.99), missing
}

// weightedQuantile is the q-quantile of values, value i counted weights[i] times.
func weightedQuantile(values []float64, weights []int64, q float64) float64 {
	idx := make([]int, len(values))
	var total int64
	for i := range idx {
		idx[i] = i
		total += weights[i]
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case values[a] < values[b]:
			return -1
		case values[a] > values[b]:
			return 1
		}
		return 0
	})
	need := int64(q * float64(total))
	var acc int64
	for _, i := range idx {
		acc += weights[i]
		if acc > need {
			return values[i]
		}
	}
	return values[idx[len(idx)-1]]
}

// saveProfile writes the running cubed's pprof profile /debug/pprof/QUERY (query is a profile
// name with its parameters, such as "allocs" or "profile?seconds=5") to path.
func saveProfile(httpAddr, query, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s", httpAddr, query))
	if err != nil {
		return fmt.Errorf("%s profile: %w", query, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, raw, 0o644)
	}
	if err != nil {
		return fmt.Errorf("%s profile: %w", query, err)
	}
	return nil
}

// profileRun saves a CPU profile of the next seconds of the cubed process serving httpAddr (its
// /debug/pprof/profile) to the file named by the environment variable env, when that is set;
// the returned channel is closed when the profile is written (at once when it is not set).
func profileRun(b *testing.B, httpAddr, env string, seconds int) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv(env)
	if path == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := saveProfile(httpAddr, fmt.Sprintf("profile?seconds=%d", seconds), path); err != nil {
			b.Errorf("CPU %v", err)
		}
	}()
	return done
}
