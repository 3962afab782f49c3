package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cubed-olap/cubed/sink"
)

// TestRedeliveryDropped: while a cube consumes, the broker answers OFFSET_OUT_OF_RANGE on
// partition 0 (franz-go resets it to the log start and delivers it again) and fences the group
// member (UNKNOWN_MEMBER_ID: its partitions are lost and assigned again). Every record is still
// counted once: the grand total per hour equals what was produced, and the records delivered
// twice show up in cubed_redelivered_records_total.
func TestRedeliveryDropped(t *testing.T) {
	c := newCluster(t, 2, "rd")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("rd"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	perHour := map[int64]float64{} // the oracle: events per hour
	var total uint64
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			ts := base + int64(i)*1000
			v := fmt.Sprintf(`{"ts":%d,"u":"u%d"}`, ts, i%50)
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Partition: int32(i % 2), Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			perHour[ts-ts%3_600_000]++
			total++
		}
	}
	produce(0, 2000)
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: rd
    source:
      kafka: {brokers: [%q], topic: rd}
    event_time: {field: ts, format: unix_ms, max_out_of_orderness: 24h}
    dimensions: []
    measures: [{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]
    grouping_sets: [[]]
    windows: [{granularity: hour, emit_every: 100ms}]
`, c.ListenAddrs()[0]))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger(), BatchSize: 200, CheckpointEvery: time.Hour})
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
	waitEvents := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for svc.byName["rd"].status().Events < n {
			if time.Now().After(deadline) {
				t.Fatalf("consumed %d events, want at least %d", svc.byName["rd"].status().Events, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitEvents(2000)
	h := c.Fault(
		kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Partitions: []int32{0}, Err: kerr.OffsetOutOfRange},
		kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Err: kerr.UnknownMemberID})
	produce(2000, 4000)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := h.Wait(wctx, 2); err != nil {
		t.Fatalf("the faults answered %d requests: %v", h.Hits(), err)
	}
	produce(4000, 5000)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[int64]float64{}
		err := svc.Scan("rd", 0, 0, base, base+24*3_600_000, func(r *sink.Row) error {
			got[r.Start] = r.Values[0]
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		st := svc.byName["rd"].status()
		if fmt.Sprint(got) == fmt.Sprint(perHour) && st.Events == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %d (want %d); pv per hour %v, want %v", st.Events, total, got, perHour)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Partition 0 had 1000 records before the reset: all were delivered again and dropped.
	if n := testCounter(t, svc, "cubed_redelivered_records_total"); n < 1000 {
		t.Errorf("cubed_redelivered_records_total = %v, want at least 1000 (partition 0 read again from its start)", n)
	}
}

// testCounter sums the metric's samples over every label.
func testCounter(t *testing.T, svc *Service, name string) float64 {
	t.Helper()
	mfs, err := svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
