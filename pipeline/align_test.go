package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/sink"
)

// runBacklog replays a backlog through Kafka: partition 0 holds 2 days of events, partition 1
// two hours, both from the same start, into hour windows (max_drift as given). It returns the
// most hour windows open at once (sampled by the cube after every batch) and the largest state
// size /api/v1/status reported while the test polled it (every 100 ms; the status refreshes it
// once a second), and checks the results against a count computed here.
func runBacklog(t *testing.T, maxDrift string) (peak int, peakBytes uint64) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "bl"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("bl"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	pad := strings.Repeat("x", 200)
	perHour := map[int64]float64{} // the oracle: events per hour
	var total uint64
	produce := func(part int32, span time.Duration) {
		for ts := base; ts < base+span.Milliseconds(); ts += 20_000 {
			v := fmt.Sprintf(`{"ts":%d,"k":"k%d","pad":%q}`, ts, ts%3, pad)
			cl.Produce(context.Background(), &kgo.Record{Partition: part, Value: []byte(v)}, nil)
			perHour[ts-ts%3_600_000]++
			total++
		}
	}
	produce(0, 48*time.Hour)
	produce(1, 2*time.Hour)
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: bl
    source:
      kafka: {brokers: [%q], topic: bl}
    event_time: {field: ts, format: unix_ms, max_out_of_orderness: 0s, idle_timeout: 1s, max_drift: %s}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[], [k]]
    windows: [{granularity: hour, emit_every: 1s}]
`, c.ListenAddrs()[0], maxDrift))
	// Batches of 720 records: 4 hours of one partition's events. Alignment bounds the spread
	// between partitions; one batch's span bounds what a single partition opens at once.
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger(), BatchSize: 720})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := svc.byName["bl"].status()
		peakBytes = max(peakBytes, st.StateBytes)
		if st.Events == total && st.LateEvents == 0 {
			// Every hour but the last has closed; compare the grand totals per hour.
			got := map[int64]float64{}
			err := svc.Scan("bl", 0, 0, base, base+48*3_600_000, func(r *sink.Row) error {
				got[r.Start] = r.Values[0]
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) == fmt.Sprint(perHour) {
				return st.PeakOpen, peakBytes
			}
		}
		if st.LateEvents > 0 {
			t.Fatalf("%d late events", st.LateEvents)
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d events; results not complete", st.Events, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWatermarkAlignment: with alignment the backlog keeps few hour windows open at once (about
// one batch's span, 4 hours, plus max_drift: at most 6); without it the fast partition opens all
// 48 hours while the slow one holds the watermark back. Both give exact hourly counts. The state
// size follows the open windows (4 groups each); it is sampled, so it is shown and only compared.
func TestWatermarkAlignment(t *testing.T) {
	aligned, alignedBytes := runBacklog(t, "5m")
	unaligned, unalignedBytes := runBacklog(t, "0s")
	t.Logf("peak open hour windows: %d with max_drift 5m, %d without alignment (%.1fx)", aligned, unaligned, float64(unaligned)/float64(aligned))
	t.Logf("largest state seen: %d B with max_drift 5m, %d B without alignment", alignedBytes, unalignedBytes)
	if aligned > 6 {
		t.Errorf("with alignment %d hour windows were open at once, want at most 6", aligned)
	}
	if unaligned < 24 {
		t.Errorf("without alignment only %d hour windows were open at once; the backlog should open more than 24", unaligned)
	}
	if unalignedBytes <= alignedBytes {
		t.Errorf("the largest state seen without alignment (%d B) is not above the one with it (%d B)", unalignedBytes, alignedBytes)
	}
}
