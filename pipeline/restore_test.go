package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRestartKeepsEarlyFireSchedule: a restart restores each window's last early fire from the
// checkpoint, so that rows pending at the checkpoint are emitted on the window's emit_every
// schedule (here an hour away) rather than all at once when the process comes back.
func TestRestartKeepsEarlyFireSchedule(t *testing.T) {
	c := newCluster(t, 1, "ef")
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ef
    source:
      kafka: {brokers: [%q], topic: ef}
    event_time: {field: ts, format: unix_ms, max_out_of_orderness: 800h}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[k]]
    windows: [{granularity: hour, emit_every: 1h}, {granularity: day, emit_every: 1h}]
`, c.ListenAddrs()[0]))
	opts := Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger(), CheckpointEvery: time.Hour}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("ef"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			v := fmt.Sprintf(`{"ts":%d,"k":"k%d"}`, time.Date(2024, 1, 1, 0, 0, i, 0, time.UTC).UnixMilli(), i)
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// run consumes until the cube has counted events, then stops (a last checkpoint).
	run := func(events uint64) *cubeRun {
		svc, err := Open(model, opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		cr := svc.cubes[0]
		for deadline := time.Now().Add(time.Minute); cr.status().Events < events; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("events %d, want %d", cr.status().Events, events)
			}
		}
		time.Sleep(300 * time.Millisecond) // some more loop turns: a due fire would happen now
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := svc.Close(); err != nil {
			t.Fatal(err)
		}
		return cr
	}
	stored := func() []time.Time {
		db, err := Open(model, Options{DataDir: opts.DataDir, Logger: quietLogger(), NoRestore: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		v, closer, err := db.db.Get(checkpointKey("ef"))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		var rec checkpointRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.EarlyFires
	}

	produce(0, 10)
	first := run(10)
	fires := stored()
	if len(fires) != 2 || fires[0].IsZero() || fires[1].IsZero() {
		t.Fatalf("checkpointed early fires %v, want one time per window", fires)
	}
	for w, f := range fires {
		if !f.Equal(first.lastEmit[w]) {
			t.Fatalf("window %d: checkpointed last fire %v, the run's %v", w, f, first.lastEmit[w])
		}
	}
	// The restarted cube consumes new events but fires nothing: the next fire is an hour after
	// the first run's, which a restart must not bring forward.
	produce(10, 15)
	second := run(5)
	if second.rows != 0 {
		t.Fatalf("restart emitted %d rows before its windows' next early fire", second.rows)
	}
	for w, f := range fires {
		if !second.lastEmit[w].Equal(f) {
			t.Fatalf("window %d: last fire %v after restart, want the checkpointed %v", w, second.lastEmit[w], f)
		}
	}
}
