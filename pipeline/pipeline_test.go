package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/source"
)

// newCluster starts an in-process Kafka-protocol broker (kfake) with one topic of partitions
// partitions, closed when the test ends.
func newCluster(tb testing.TB, partitions int32, topic string) *kfake.Cluster {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

func writeModel(t testing.TB, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "model.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeGeneratedEvents writes n generated JSON lines (../shared/bench/gen.go's shape: Zipf users
// out of users, seed 42) spread over span to DIR/events.jsonl and returns the file's path.
func writeGeneratedEvents(tb testing.TB, dir string, n, users int, span time.Duration) string {
	tb.Helper()
	events := filepath.Join(dir, "events.jsonl")
	f, err := os.Create(events)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	g := source.NewGenerator(source.GeneratorConfig{Users: users, Seed: 42, Rate: float64(n) / span.Seconds()})
	if _, err := g.WriteLines(f, int64(n)); err != nil {
		tb.Fatal(err)
	}
	return events
}

// peerCube is the body of a cube (the lines after its name) with the peer benchmark's model
// (../shared/bench/clickhouse_peer.sql): count, sum and exact UV, plus the measure lines extra,
// over 5 grouping sets of the generated events in the file events, by windows (a YAML list).
func peerCube(events, extra, windows string) string {
	return fmt.Sprintf(`    source:
      file: {path: %q}
    event_time: {field: event_time, format: "2006-01-02 15:04:05", max_out_of_orderness: 5s}
    dimensions: [{name: country}, {name: platform}, {name: app_version}, {name: channel}, {name: page}]
    measures:
      - {name: pv, type: count}
      - {name: amt, type: sum, field: amount}
      - {name: uv, type: count_distinct, field: user_id}%s
    grouping_sets:
      - [country, platform, app_version, channel, page]
      - [country]
      - [platform, app_version]
      - [channel]
      - []
    windows: %s
`, events, extra, windows)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// replayed opens model over dataDir, replays its file-source cubes to the end and returns the
// service, closed when the test ends.
func replayed(t *testing.T, model, dataDir string) *Service {
	t.Helper()
	svc, err := Open(model, Options{DataDir: dataDir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if _, err := svc.Replay(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

// evCube runs, until the test ends, a cube over a fresh 2-partition topic "ev" with hour windows
// (count and exact UV by k), the event_time settings given and kafka appended to the source's
// kafka settings (", start: latest"); produce writes one event {"ts", "k": "a", "u"} to a
// partition, synchronously, with cl, and start runs the service (events produced before it are
// a backlog).
func evCube(t *testing.T, eventTime, kafka string) (svc *Service, produce func(part int32, ts int64, u string), start func(), cl *kgo.Client) {
	t.Helper()
	c := newCluster(t, 2, "ev")
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ev
    source:
      kafka: {brokers: [%q], topic: ev%s}
    event_time: {field: ts, format: unix_ms, %s}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]
    grouping_sets: [[], [k]]
    windows: [{granularity: hour, emit_every: 200ms}]
`, c.ListenAddrs()[0], kafka, eventTime))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	cl, err = kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	produce = func(part int32, ts int64, u string) {
		v := fmt.Sprintf(`{"ts":%d,"k":"a","u":%q}`, ts, u)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ev", Partition: part, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	start = func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() { // before the Closes above
			cancel()
			<-done
		})
	}
	return svc, produce, start, cl
}

// waitWatermark waits until the cube ev's published watermark is want (Unix ms), for at most
// until deadline, then fails saying why.
func waitWatermark(t *testing.T, svc *Service, want int64, deadline time.Time, why string) {
	t.Helper()
	for {
		st := svc.byName["ev"].status()
		if st.Watermark != nil && st.Watermark.UnixMilli() == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: watermark %v, want %v (status %+v)", why, st.Watermark, time.UnixMilli(want).UTC(), svc.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstHourRow returns the grand-total row of cube ev's hour starting at base, or nil.
func firstHourRow(t *testing.T, svc *Service, base int64) *sink.Row {
	t.Helper()
	var final *sink.Row
	if err := svc.Scan("ev", 0, 0, base, base+1, func(r *sink.Row) error {
		cp := *r
		final = &cp
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return final
}

// TestIdlePartition: partition 1 delivers one early event and then nothing; partition 0 keeps
// going. Until partition 1 has been idle for idle_timeout it holds the watermark back; after
// that the watermark follows partition 0 alone and the first hour closes (its rows final).
func TestIdlePartition(t *testing.T) {
	svc, produce, start, _ := evCube(t, "max_out_of_orderness: 0s, idle_timeout: 2s", "")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	produce(1, base+1000, "early")
	for i := 0; i < 100; i++ {
		produce(0, base+int64(i)*60_000, fmt.Sprint("u", i%7)) // minutes 0..99
	}
	start()

	// The first hour [base, base+1h) holds 60 events of partition 0 and the early one: 61
	// events, users u0..u6 plus "early".
	// The hour is closed once the watermark (published after the rows it closed are written)
	// reaches its end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st := svc.byName["ev"].status(); st.Watermark != nil && st.Watermark.UnixMilli() >= base+3_600_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first hour never closed: idle partition 1 kept holding the watermark (status %+v)", svc.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if final := firstHourRow(t, svc, base); final == nil || final.Values[0] != 61 || final.Values[1] != 8 {
		t.Fatalf("first hour final row = %+v, want pv 61 uv 8", final)
	}
	// The second hour is still open: the watermark is partition 0's max (minute 99). The status
	// is published just after the rows are written, so give it a moment.
	waitWatermark(t, svc, base+99*60_000, deadline, "after partition 1 went idle")
}

// TestEmptyPartition: partition 1 of the topic never holds a record and idle_timeout is ten
// minutes. The fetch shows partition 1 empty (high watermark 0), so it holds neither the
// watermark alignment nor the watermark: partition 0's 100 minutes are aggregated and its first
// hour closes at once, not after the idle timeout.
func TestEmptyPartition(t *testing.T) {
	svc, produce, start, _ := evCube(t, "max_out_of_orderness: 0s, idle_timeout: 10m, max_drift: 1m", "")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	pv, uv := produceMinutes(produce, base, 100)
	start()
	checkFirstHour(t, svc, base, 100, pv, uv, "the empty partition held the cube back")
}

// produceMinutes produces n events to partition 0 of cube ev's topic, one a minute from base,
// by users u0 … u6 in turn, and returns the oracle of the first hour: its events and distinct
// users.
func produceMinutes(produce func(part int32, ts int64, u string), base int64, n int) (pv, uv int) {
	users := map[string]bool{}
	for i := 0; i < n; i++ {
		ts, u := base+int64(i)*60_000, fmt.Sprint("u", i%7)
		produce(0, ts, u)
		if ts < base+3_600_000 {
			pv++
			users[u] = true
		}
	}
	return pv, len(users)
}

// checkFirstHour waits (30 s at most) for cube ev's watermark to reach the last of n events
// produced by produceMinutes, then checks that the cube counted exactly n events and that the
// first hour's grand-total row is (pv, uv). why says what a timeout means.
func checkFirstHour(t *testing.T, svc *Service, base int64, n, pv, uv int, why string) {
	t.Helper()
	waitWatermark(t, svc, base+int64(n-1)*60_000, time.Now().Add(30*time.Second), why)
	if st := svc.byName["ev"].status(); st.Events != uint64(n) {
		t.Fatalf("watermark at minute %d after %d events, want %d", n-1, st.Events, n)
	}
	if final := firstHourRow(t, svc, base); final == nil || final.Values[0] != float64(pv) || final.Values[1] != float64(uv) {
		t.Fatalf("first hour final row = %+v, want pv %d uv %d", final, pv, uv)
	}
}

// TestStartAtEnd: a first start (no checkpoint) with start: latest. Partition 1 holds only
// records from before the start, so the cube starts at its end with nothing to deliver;
// partition 0 has a committed offset, after which come an hour and a half of new records. The
// partition at its end must not hold the watermark back (for idle_timeout, 10 minutes here)
// and its old records must not count: the first hour closes with the oracle's values over the
// records after the committed offset. Before the source learned where consumption starts, a
// partition at its end looked like one with every record below its high watermark still to
// deliver, and held the cube back for idle_timeout.
func TestStartAtEnd(t *testing.T) {
	svc, produce, start, cl := evCube(t, "max_out_of_orderness: 0s, idle_timeout: 10m, max_drift: 1m", ", start: latest")
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := 0; i < 10; i++ { // before the start: not consumed
		produce(0, base+int64(i)*60_000, "old0")
		produce(1, base+int64(i)*60_000, "old1")
	}
	var committed kadm.Offsets
	committed.AddOffset("ev", 0, 10, -1)
	if _, err := kadm.NewClient(cl).CommitOffsets(context.Background(), "cubed-ev", committed); err != nil {
		t.Fatal(err)
	}
	pv, uv := produceMinutes(produce, base, 90)
	start()
	checkFirstHour(t, svc, base, 90, pv, uv, "the partition at its end held the cube back")
}

// BenchmarkEndToEnd replays generated JSON lines (../shared/bench/gen.go's shape: 2M events,
// 180k Zipf users) through decode → dictionary → both layers → embedded store, with the peer
// benchmark's model (per minute, count, sum and exact UV over 5 grouping sets). One op is the
// whole replay; it reports events per CPU-second of the process (per core).
func BenchmarkEndToEnd(b *testing.B) {
	const n, users = 2_000_000, 180_000
	dir := b.TempDir()
	events := writeGeneratedEvents(b, dir, n, users, time.Hour)
	model := writeModel(b, dir, "version: 1\ncubes:\n  - name: peer\n"+peerCube(events, "", "[{granularity: minute}]"))
	b.ResetTimer()
	var cpu float64
	var allocs uint64
	for i := 0; i < b.N; i++ {
		svc, err := Open(model, Options{DataDir: filepath.Join(dir, fmt.Sprint("data", i)), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		c0, m0 := cpuSeconds(), mallocs()
		sums, err := svc.Replay(context.Background())
		cpu += cpuSeconds() - c0
		allocs += mallocs() - m0
		if err != nil || len(sums) != 1 || sums[0].Events != n {
			b.Fatalf("replay: %v %+v", err, sums)
		}
		svc.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/cpu, "events/cpu-s")
	b.ReportMetric(float64(allocs)/(float64(n)*float64(b.N)), "allocs/event")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEndToEndGrowth replays 1M generated JSON lines spread over 5 days (180k Zipf users)
// through the whole pipeline with day windows (tumbling, and cumulative by hour) over the peer
// model's 5 grouping sets, without (off) and with (on) new users, day-1 and day-7 (new cohort)
// retention of the users. Compare events/cpu-s of the two (the goal: on at most 30% slower).
func BenchmarkEndToEndGrowth(b *testing.B) {
	const n, users = 1_000_000, 180_000
	dir := b.TempDir()
	events := writeGeneratedEvents(b, dir, n, users, 5*24*time.Hour)
	for _, growth := range []bool{false, true} {
		name, extra := "off", ""
		if growth {
			name, extra = "on", `
      - {name: new_users, type: new_users, field: user_id}
      - {name: d1, type: retention, field: user_id, days: 1}
      - {name: d7_new, type: retention, field: user_id, days: 7, cohort: new}`
		}
		b.Run(name, func(b *testing.B) {
			model := writeModel(b, dir, "version: 1\ncubes:\n  - name: peer\n"+
				peerCube(events, extra, "[{granularity: day}, {granularity: day, step: 1h}]"))
			b.ResetTimer()
			var cpu float64
			var allocs uint64
			for i := 0; i < b.N; i++ {
				svc, err := Open(model, Options{DataDir: filepath.Join(dir, fmt.Sprint(name, i)), Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				c0, m0 := cpuSeconds(), mallocs()
				sums, err := svc.Replay(context.Background())
				cpu += cpuSeconds() - c0
				allocs += mallocs() - m0
				if err != nil || len(sums) != 1 || sums[0].Events != n || sums[0].LateEvents != 0 {
					b.Fatalf("replay: %v %+v", err, sums)
				}
				svc.Close()
			}
			b.StopTimer()
			b.ReportMetric(float64(n)*float64(b.N)/cpu, "events/cpu-s")
			b.ReportMetric(float64(allocs)/(float64(n)*float64(b.N)), "allocs/event")
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// TestModelChangeRefused: a data dir written for one model refuses every change that would
// change stored results, with an error naming the changed lines of the plan (the code's claim:
// no migration, not even for an added grouping set or measure), and leaves the data dir as it
// was: the original model still opens it and reads the same results. Changes that touch no
// result (emit_every) and a cube added next to the old one are accepted.
func TestModelChangeRefused(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "ev.jsonl")
	if err := os.WriteFile(events, []byte(`{"ts":1,"k":"a","u":"x"}`+"\n"+`{"ts":2,"k":"b","u":"y"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type edit struct{ sets, measures, window, lateness, extra string }
	base := edit{sets: "[[k]]", measures: "[{name: pv, type: count}]", window: "{granularity: hour, emit_every: 1m}", lateness: "0s"}
	model := func(e edit) string {
		return writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ev
    source:
      file: {path: %q}
    event_time: {field: ts, format: unix_ms, allowed_lateness: %s}
    dimensions: [{name: k}]
    measures: %s
    grouping_sets: %s
    windows: [%s]
%s`, events, e.lateness, e.measures, e.sets, e.window, e.extra))
	}
	data := filepath.Join(dir, "data")
	open := func(path string) error {
		svc, err := Open(path, Options{DataDir: data, Logger: quietLogger()})
		if err == nil {
			_, err = svc.Replay(context.Background())
			svc.Close()
		}
		return err
	}
	// rows reads the stored results of cube ev through the original model.
	rows := func() string {
		svc, err := Open(model(base), Options{DataDir: data, Logger: quietLogger(), NoRestore: true})
		if err != nil {
			t.Fatalf("the original model no longer opens its data dir: %v", err)
		}
		defer svc.Close()
		var out []string
		if err := svc.Scan("ev", 0, 1, 0, 1<<62, func(r *sink.Row) error {
			out = append(out, fmt.Sprint(r.Start, r.Dims, r.Values))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "; ")
	}
	if err := open(model(base)); err != nil {
		t.Fatal(err)
	}
	before := rows()
	if before != "0 [a] [1]; 0 [b] [1]" {
		t.Fatalf("results after the first replay: %q", before)
	}

	accepted := map[string]edit{
		"emit_every changed": {sets: base.sets, measures: base.measures, window: "{granularity: hour, emit_every: 5s}", lateness: base.lateness},
		"a second cube added": {sets: base.sets, measures: base.measures, window: base.window, lateness: base.lateness, extra: fmt.Sprintf(`  - name: ev2
    source:
      file: {path: %q}
    event_time: {field: ts, format: unix_ms}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[]]
    windows: [{granularity: day}]
`, events)},
	}
	for name, e := range accepted {
		if err := open(model(e)); err != nil {
			t.Errorf("%s: refused, yet no stored result changes: %v", name, err)
		}
	}
	refused := []struct {
		name string
		e    edit
		want []string // lines of the error: what changed
	}{
		{"grouping set added", edit{sets: "[[k], []]", measures: base.measures, window: base.window, lateness: base.lateness},
			[]string{"  + grouping_set 0 []"}},
		{"measure added", edit{sets: base.sets, measures: "[{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]", window: base.window, lateness: base.lateness},
			[]string{`  + measure 1 "uv" type "count_distinct" field "u"`}},
		{"measure type changed", edit{sets: base.sets, measures: "[{name: pv, type: count_distinct, field: u}]", window: base.window, lateness: base.lateness},
			[]string{`  - measure 0 "pv" type "count" field ""`, `  + measure 0 "pv" type "count_distinct" field "u"`}},
		{"window granularity changed", edit{sets: base.sets, measures: base.measures, window: "{granularity: day, emit_every: 1m}", lateness: base.lateness},
			[]string{`  - window 0 "hour" step 0`, `  + window 0 "day" step 0`}},
		{"allowed lateness changed", edit{sets: base.sets, measures: base.measures, window: base.window, lateness: "1h"},
			[]string{`  - event_time field "ts" format "unix_ms" timezone "UTC" max_out_of_orderness 5000000000 allowed_lateness 0`,
				`  + event_time field "ts" format "unix_ms" timezone "UTC" max_out_of_orderness 5000000000 allowed_lateness 3600000000000`}},
	}
	for _, tc := range refused {
		err := open(model(tc.e))
		if err == nil {
			t.Errorf("%s: accepted on the old data dir", tc.name)
			continue
		}
		msg := err.Error()
		for _, want := range append([]string{`data dir ` + data + ` was written for another model of cube "ev"; what changed:`, "new --data-dir"}, tc.want...) {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: the error does not say %q:\n%s", tc.name, want, msg)
			}
		}
	}
	if after := rows(); after != before {
		t.Errorf("results after the refused opens: %q, want %q", after, before)
	}
}
