package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGraphStatus runs a Kafka cube (kfake) whose hour window stays open and checks the status's
// per-node counters against counts made here from the produced events: records and events per
// stage, groups per grouping set (the [k] set is layer 1's own), dictionary ids and bytes, and
// non-zero state bytes where groups live.
func TestGraphStatus(t *testing.T) {
	c := newCluster(t, 1, "ev")
	dir := t.TempDir()
	model := writeModel(t, dir, fmt.Sprintf(`version: 1
cubes:
  - name: ev
    source:
      kafka: {brokers: [%q], topic: ev}
    event_time: {field: ts, format: unix_ms, max_out_of_orderness: 1h}
    dimensions: [{name: k}]
    measures: [{name: pv, type: count}, {name: uv, type: count_distinct, field: u}]
    grouping_sets: [[], [k]]
    windows: [{granularity: hour, emit_every: 200ms}]
`, c.ListenAddrs()[0]))
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const n, bad = 300, 4
	keys, users := map[string]bool{}, map[string]bool{}
	var userBytes, keyBytes int
	for i := 0; i < n+bad; i++ {
		v := `not json`
		if i < n {
			k, u := fmt.Sprint("key", i%11), fmt.Sprint("user-", i%37)
			if !keys[k] {
				keys[k], keyBytes = true, keyBytes+len(k)
			}
			if !users[u] {
				users[u], userBytes = true, userBytes+len(u)
			}
			v = fmt.Sprintf(`{"ts":%d,"k":%q,"u":%q}`, base+int64(i)*1000, k, u)
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ev", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	var st CubeStatus
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = svc.byName["ev"].status()
		if len(st.Nodes) > 0 && *st.Nodes[1].Events == n && st.Nodes[3].Groups != nil && *st.Nodes[3].Groups == len(keys) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %d events in %d groups: %+v", n, len(keys), st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids := []string{"source", "decode", "layer1_preagg", "layer1_full", "gs_0", "gs_1", "sink"}
	if len(st.Nodes) != len(ids) {
		t.Fatalf("nodes %+v, want %v", st.Nodes, ids)
	}
	byID := map[string]NodeStatus{}
	for i, nd := range st.Nodes {
		if nd.ID != ids[i] {
			t.Fatalf("node %d is %q, want %q (the plan's graph order)", i, nd.ID, ids[i])
		}
		byID[nd.ID] = nd
	}
	if got := *byID["source"].Events; got != n+bad {
		t.Errorf("source read %d records, want %d", got, n+bad)
	}
	if got := *byID["layer1_preagg"].Events; got != n {
		t.Errorf("pre-aggregation saw %d events, want %d", got, n)
	}
	if g := byID["gs_0"].Groups; g == nil || *g != 1 || byID["gs_0"].StateBytes == 0 || byID["gs_0"].In != "" {
		t.Errorf("gs_0 ([]) = %+v, want 1 group with state bytes", byID["gs_0"])
	}
	full, k := byID["layer1_full"], byID["gs_1"]
	if k.In != "layer1_full" || *k.Groups != len(keys) || k.StateBytes != full.StateBytes || full.StateBytes == 0 {
		t.Errorf("gs_1 ([k], layer 1's own set) = %+v, layer1_full = %+v, want %d groups held in layer1_full", k, full, len(keys))
	}
	var sum uint64
	for _, nd := range st.Nodes {
		if nd.ID == "layer1_full" || (nd.ID[:3] == "gs_" && nd.In == "") {
			sum += nd.StateBytes
		}
	}
	if sum != st.StateBytes {
		t.Errorf("node state bytes add up to %d, the cube's state_bytes is %d", sum, st.StateBytes)
	}
	if byID["sink"].Rows == nil || *byID["sink"].Rows != st.EmittedRows {
		t.Errorf("sink %+v, emitted rows %d", byID["sink"], st.EmittedRows)
	}
	// Ids as counted here; bytes at least the values' own (dictionary.TestSizeBytesMatchesHeap
	// checks the estimate against the heap).
	want := []struct {
		ns         string
		ids, bytes int
	}{{"ev/dim/k", len(keys), keyBytes}, {"ev/id/u", len(users), userBytes}}
	var dictBytes uint64
	for i, w := range want {
		if i >= len(st.Dictionaries) {
			t.Fatalf("dictionaries %+v, want %+v", st.Dictionaries, want)
		}
		d := st.Dictionaries[i]
		if d.Namespace != w.ns || d.IDs != w.ids || d.Bytes < uint64(w.bytes) {
			t.Errorf("dictionary %+v, want namespace %s with %d ids and at least %d bytes", d, w.ns, w.ids, w.bytes)
		}
		dictBytes += d.Bytes
	}
	if got := byID["decode"].StateBytes; got != dictBytes {
		t.Errorf("decode state %d B, want the dictionaries' %d B", got, dictBytes)
	}
}
