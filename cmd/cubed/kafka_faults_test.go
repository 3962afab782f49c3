package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.yaml.in/yaml/v3"
)

// faultSources are the real data sets the broker-fault tests consume.
var faultSources = []struct{ name, file string }{
	{"wikiticker", "wikiticker-2015-09-12.json.gz"},
	{"online_retail", "online_retail.csv.gz"},
}

// dataLines is one real data file as Kafka records: every data line (the CSV header apart).
type dataLines struct {
	header []string // CSV column names; nil for JSON
	lines  [][]byte
}

// readDataLines reads every line of file; for CSV the first line is the header.
func readDataLines(t testing.TB, file, format string) dataLines {
	t.Helper()
	var d dataLines
	err := oLines(file, func(_ int64, b []byte) error {
		if format == "csv" && d.header == nil {
			h, err := parseCSVHeader(b)
			d.header = h
			return err
		}
		d.lines = append(d.lines, append([]byte(nil), b...))
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	return d
}

// produceRange produces lines[lo:hi] to topic, line i (0-based over the whole file) to partition
// i % partitions, and waits until every record is acknowledged. The client retries through
// broker faults on its own (idempotent producer, unlimited retries).
func produceRange(t testing.TB, cl *kgo.Client, topic string, partitions int32, d dataLines, lo, hi int) {
	t.Helper()
	var once sync.Once
	var first error
	for i := lo; i < hi; i++ {
		rec := &kgo.Record{Topic: topic, Value: d.lines[i], Partition: int32(i % int(partitions))}
		cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { first = err })
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Errorf("flushing the producer: %v", err)
	}
	if first != nil {
		t.Errorf("producing to %s: %v", topic, first)
	}
}

// kafkaModel turns the real-data model configs/<name>.yaml into one Kafka cube reading topic
// through group, with a watermark that trails by the whole data span (no window closes before
// its last event, whichever partition holds it) and early firing every second. It returns the
// cube's YAML mapping.
func kafkaModel(t testing.TB, name string, res *oResult, brokers []string, topic, group string, header []string) any {
	t.Helper()
	model := rewriteModel(t, filepath.Join(repoRoot(t), "configs", name+".yaml"), func(c map[string]any) {
		src := subMap(c, "source")
		delete(src, "file")
		src["kafka"] = map[string]any{"brokers": brokers, "topic": topic, "group": group, "start": "earliest"}
		if header != nil {
			src["columns"] = header
		}
		span := res.MaxT.Sub(res.MinT) + 48*time.Hour
		subMap(c, "event_time")["max_out_of_orderness"] = fmt.Sprintf("%dh", int(span.Hours())+1)
		for _, w := range c["windows"].([]any) {
			w.(map[string]any)["emit_every"] = "1s"
		}
	})
	var m map[string]any
	if err := yaml.Unmarshal(model, &m); err != nil {
		t.Fatal(err)
	}
	return m["cubes"].([]any)[0]
}

// writeModelFile writes a model of the given cubes to dir/name and returns its path.
func writeModelFile(t testing.TB, dir, name string, cubes []any) string {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"version": 1, "cubes": cubes})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// faultSet is the real data sets of a broker-fault test, their oracles and their records.
type faultSet struct {
	cubes   []*oCube
	results []*oResult
	data    []dataLines
}

func loadFaultSet(t *testing.T) *faultSet {
	t.Helper()
	fs := &faultSet{}
	for _, s := range faultSources {
		file := dataFile(t, s.file)
		oc, err := oLoadModel(filepath.Join(repoRoot(t), "configs", s.name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		oc[0].File = file
		fs.cubes = append(fs.cubes, oc[0])
	}
	wait := computeAsync(fs.cubes)
	for _, c := range fs.cubes {
		fs.data = append(fs.data, readDataLines(t, c.File, c.Format))
	}
	fs.results = wait(t)
	for i, r := range fs.results {
		if r.Events != int64(len(fs.data[i].lines)) || r.Bad != 0 {
			t.Fatalf("oracle of %s: %d events and %d bad records from %d lines", r.Cube.Name, r.Events, r.Bad, len(fs.data[i].lines))
		}
	}
	return fs
}

// checkCaughtUp requires that the running cubed at addr counted every produced record exactly
// once (cubed_events_total), none late or bad, and that its consumer lag is 0 on every partition.
func checkCaughtUp(t *testing.T, addr string, fs *faultSet) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		events := metricsByCube(t, addr, "cubed_events_total")
		late := metricsByCube(t, addr, "cubed_late_events_total")
		bad := metricsByCube(t, addr, "cubed_bad_events_total")
		lag := metricsByCube(t, addr, "cubed_consumer_lag")
		var problems []string
		for i, c := range fs.cubes {
			n := c.Name
			want := float64(len(fs.data[i].lines))
			if l, ok := lag[n]; events[n] != want || late[n] != 0 || bad[n] != 0 || !ok || l != 0 {
				problems = append(problems, fmt.Sprintf("cube %s: cubed_events_total %v (want %v), late %v, bad %v, consumer lag %v (present %v, want 0)",
					n, events[n], want, late[n], bad[n], l, ok))
			}
		}
		if len(problems) == 0 {
			t.Logf("caught up: cubed_events_total %v, consumer lag %v", events, lag)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up:\n%s", strings.Join(problems, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// brokerFault is one phase of TestKafkaFaults: start installs the faults (or acts on the
// cluster) and returns how many requests they have answered so far and how to remove them.
type brokerFault struct {
	name    string
	minHits int
	start   func(c *kfake.Cluster) (hits func() int, stop func())
}

// faults builds a brokerFault phase from kfake.Fault specs (Count -1: until removed).
func faults(fs ...kfake.Fault) func(c *kfake.Cluster) (func() int, func()) {
	return func(c *kfake.Cluster) (func() int, func()) {
		h := c.Fault(fs...)
		return h.Hits, h.Remove
	}
}

// dropConnections closes the client's connection on every request of key until stopped.
func dropConnections(key kmsg.Key) func(c *kfake.Cluster) (func() int, func()) {
	return func(c *kfake.Cluster) (func() int, func()) {
		var mu sync.Mutex
		n, stopped := 0, false
		c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				c.DropControl()
				return nil, nil, false
			}
			c.KeepControl()
			n++
			return nil, errors.New("injected: connection dropped"), true
		})
		hits := func() int { mu.Lock(); defer mu.Unlock(); return n }
		return hits, func() { mu.Lock(); stopped = true; mu.Unlock() }
	}
}

// TestKafkaFaults: a `cubed run` process consumes wikiticker and online_retail from an
// in-process kfake cluster of 3 brokers (4 partitions each) while the cluster fails requests
// with kafka errors (kfake's Cluster.Fault), drops connections, moves partition leaders and
// group coordinators; the data is produced in chunks, one during each fault, through a producer
// that sees faults too. cubed is never restarted; it must resume by itself after every fault and
// end with results equal to the oracle, every record counted exactly once and lag 0.
func TestKafkaFaults(t *testing.T) {
	fs := loadFaultSet(t)
	const partitions = 4
	topics := []string{"faults_wikiticker", "faults_online_retail"}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	retail := topics[1]
	group := func(i int) string { return "faults-" + fs.cubes[i].Name }
	phases := []brokerFault{
		{"fetch NOT_LEADER_OR_FOLLOWER on partitions 0 and 1 of both topics", 5, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Partitions: []int32{0, 1}, Err: kerr.NotLeaderForPartition, Count: -1})},
		{"fetch UNKNOWN_SERVER_ERROR and KAFKA_STORAGE_ERROR", 6, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: retail, Partitions: []int32{2}, Err: kerr.UnknownServerError, Count: 3},
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Partitions: []int32{3}, Err: kerr.KafkaStorageError, Count: -1})},
		{"fetch FENCED_LEADER_EPOCH, then the epoch validation (offset for leader epoch) and list offsets fail", 3, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: retail, Err: kerr.FencedLeaderEpoch, Count: 3},
			kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets, kmsg.OffsetForLeaderEpoch}, Err: kerr.NotLeaderForPartition, Count: 4})},
		{"fetch connections dropped", 5, dropConnections(kmsg.Fetch)},
		{"fetch OFFSET_OUT_OF_RANGE mid-partition (the client resets to the log start and reads it again)", 2, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Partitions: []int32{2}, Err: kerr.OffsetOutOfRange, Count: 2})},
		{"partition leaders moved", 1, func(c *kfake.Cluster) (func() int, func()) {
			// The consumer learns of the moves from the NOT_LEADER answers to its fetches, which
			// name the new leader (KIP-951), or else from a metadata refresh; either way it must
			// fetch again, from the new leaders, to go on. Counting only metadata requests
			// failed when franz-go needed none (CI, 2026-11-22).
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Metadata, kmsg.Fetch}, Observe: true, Count: -1})
			for range 3 {
				c.ShufflePartitionLeaders()
			}
			for _, tp := range topics {
				for p := int32(0); p < partitions; p++ {
					if err := c.MoveTopicPartition(tp, p, (c.LeaderFor(tp, p)+1)%3); err != nil {
						t.Error(err)
					}
				}
			}
			return h.Hits, h.Remove
		}},
		{"produce NOT_LEADER_OR_FOLLOWER and REQUEST_TIMED_OUT after append", 4, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{0}, Err: kerr.NotLeaderForPartition, Count: 2},
			kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{1}, Err: kerr.RequestTimedOut, Count: 2})},
		{"offset commits fail (REQUEST_TIMED_OUT after applying, COORDINATOR_LOAD_IN_PROGRESS)", 2, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group(0), Err: kerr.RequestTimedOut, Count: -1},
			kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group(1), Err: kerr.CoordinatorLoadInProgress, Count: -1})},
		{"group coordinators moved (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE)", 2, func(c *kfake.Cluster) (func() int, func()) {
			c.RehashCoordinators()
			h := c.Fault(
				kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.NotCoordinator, Count: 2},
				kfake.Fault{Keys: []kmsg.Key{kmsg.FindCoordinator}, Err: kerr.CoordinatorNotAvailable, Count: 2})
			return h.Hits, h.Remove
		}},
		{"rebalance: heartbeat REBALANCE_IN_PROGRESS", 2, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.RebalanceInProgress, Count: 2})},
		{"member fenced: heartbeat UNKNOWN_MEMBER_ID, then offset fetch errors on rejoin", 2, faults(
			kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.UnknownMemberID, Count: 2},
			kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetFetch}, Err: kerr.CoordinatorLoadInProgress, Count: 2})},
	}

	// Chunk 0 is there before cubed starts; chunk i+1 is produced while phase i's faults are on.
	chunks := len(phases) + 2
	bounds := func(d dataLines, i int) (int, int) { return i * len(d.lines) / chunks, (i + 1) * len(d.lines) / chunks }
	produceChunk := func(i int) {
		for j, d := range fs.data {
			lo, hi := bounds(d, i)
			produceRange(t, prod, topics[j], partitions, d, lo, hi)
		}
	}
	produceChunk(0)

	tmp := t.TempDir()
	var cubes []any
	for i, r := range fs.results {
		cubes = append(cubes, kafkaModel(t, fs.cubes[i].Name, r, addrs, topics[i], group(i), fs.data[i].header))
	}
	cfg := writeModelFile(t, tmp, "faults.yaml", cubes)
	httpAddr := freeAddr(t)
	p := startRun(t, cfg, filepath.Join(tmp, "data"), httpAddr, "--checkpoint-every", "200ms")
	p.waitReady(t, httpAddr, 60*time.Second)
	readyAt := time.Now()

	for i, ph := range phases {
		start := time.Now()
		hits, stop := ph.start(cluster)
		done := make(chan struct{})
		go func() { produceChunk(i + 1); close(done) }()
		deadline := time.Now().Add(45 * time.Second)
		for hits() < ph.minHits && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		got := hits()
		time.Sleep(300 * time.Millisecond)
		stop()
		<-done
		select {
		case <-p.done:
			t.Fatalf("cubed run exited during phase %q (%v)", ph.name, p.cmd.ProcessState)
		default:
		}
		if got < ph.minHits {
			t.Fatalf("phase %q: the faults answered %d requests in 45 s, want at least %d", ph.name, got, ph.minHits)
		}
		events := metricsByCube(t, httpAddr, "cubed_events_total")
		t.Logf("phase %d %q: %d requests faulted in %v; cubed_events_total %v", i+1, ph.name, got, time.Since(start).Round(time.Millisecond), events)
	}
	produceChunk(chunks - 1)
	checkProduced(t, addrs, topics, partitions, fs)
	waitForOracle(t, httpAddr, p, fs.results, readyAt, 180*time.Second)
	checkCaughtUp(t, httpAddr, fs)
	t.Logf("cubed_redelivered_records_total %v", metricsByCube(t, httpAddr, "cubed_redelivered_records_total"))
}

// checkProduced requires that partition p of each topic holds exactly the lines i with
// i % partitions == p (end offset minus start offset, listed with kadm): the producer's retries
// through the injected faults duplicated and lost nothing, so the oracle, which reads the file,
// describes the topic.
func checkProduced(t *testing.T, brokers []string, topics []string, partitions int32, fs *faultSet) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("listing start offsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	for i, topic := range topics {
		n := int64(len(fs.data[i].lines))
		for p := int32(0); p < partitions; p++ {
			want := n / int64(partitions)
			if int64(p) < n%int64(partitions) {
				want++
			}
			s, okS := starts.Lookup(topic, p)
			e, okE := ends.Lookup(topic, p)
			if !okS || !okE || s.Err != nil || e.Err != nil || e.Offset-s.Offset != want {
				t.Fatalf("topic %s partition %d: offsets %+v .. %+v, want %d records", topic, p, s, e, want)
			}
		}
	}
}

// TestBrokerRestart: the broker is its own process (`cubed broker`, kfake with its log in a data
// dir); `cubed run` consumes wikiticker and online_retail from it. Midway through the first half
// of the data the broker is killed with SIGKILL, left down for 3 s, and started again on the same
// port and data dir; then the second half is produced. cubed is not restarted: it must reconnect
// by itself and end with results equal to the oracle, every record counted once and lag 0.
func TestBrokerRestart(t *testing.T) {
	fs := loadFaultSet(t)
	const partitions = 4
	topics := []string{"restart_wikiticker", "restart_online_retail"}
	tmp := t.TempDir()
	port := freePort(t)
	brokerDir := filepath.Join(tmp, "broker")
	addr, stopBroker := startBroker(t, brokerDir, port, fmt.Sprintf("%s:%d,%s:%d", topics[0], partitions, topics[1], partitions))
	defer func() { stopBroker() }()
	produceHalf := func(half int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i, d := range fs.data {
			mid := len(d.lines) / 2
			lo, hi := 0, mid
			if half == 1 {
				lo, hi = mid, len(d.lines)
			}
			produceRange(t, cl, topics[i], partitions, d, lo, hi)
		}
	}
	produceHalf(0)

	var cubes []any
	for i, r := range fs.results {
		cubes = append(cubes, kafkaModel(t, fs.cubes[i].Name, r, []string{addr}, topics[i], "restart-"+fs.cubes[i].Name, fs.data[i].header))
	}
	cfg := writeModelFile(t, tmp, "restart.yaml", cubes)
	httpAddr := freeAddr(t)
	p := startRun(t, cfg, filepath.Join(tmp, "data"), httpAddr, "--checkpoint-every", "200ms")
	p.waitReady(t, httpAddr, 60*time.Second)
	readyAt := time.Now()

	// Mid-run: both cubes have counted something, online_retail less than its first half.
	retail := fs.cubes[1].Name
	deadline := time.Now().Add(60 * time.Second)
	for {
		ev := metricsByCube(t, httpAddr, "cubed_events_total")
		if ev[fs.cubes[0].Name] > 0 && ev[retail] >= 20_000 {
			t.Logf("killing the broker at cubed_events_total %v (first half: %d and %d records)", ev, len(fs.data[0].lines)/2, len(fs.data[1].lines)/2)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cubed counted only %v after 60 s", ev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopBroker() // SIGKILL
	time.Sleep(3 * time.Second)
	select {
	case <-p.done:
		t.Fatalf("cubed run exited while the broker was down (%v)", p.cmd.ProcessState)
	default:
	}
	t.Logf("broker down 3 s: cubed_events_total %v", metricsByCube(t, httpAddr, "cubed_events_total"))
	addr2, stop2 := startBroker(t, brokerDir, port, "")
	stopBroker = stop2
	if addr2 != addr {
		t.Fatalf("broker came back on %s, not %s", addr2, addr)
	}
	produceHalf(1)
	checkProduced(t, []string{addr}, topics, partitions, fs)
	waitForOracle(t, httpAddr, p, fs.results, readyAt, 180*time.Second)
	checkCaughtUp(t, httpAddr, fs)
	t.Logf("cubed_redelivered_records_total %v", metricsByCube(t, httpAddr, "cubed_redelivered_records_total"))
}
