package pipeline

import (
	"bytes"
	"math/rand"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/aggregate"
	"github.com/cubed-olap/cubed/sink"
)

// TestSortPendingKeyOrder emits random rows of every grouping set, in an order that repeats
// prefixes non-adjacently and then as window closes do (long runs of one prefix, long enough for
// the radix sort), and checks that sortPending leaves exactly the order of a stable sort by their
// primary keys' bytes (the order the store's bulk load needs, rows of equal key in emission
// order), as AppendKey defines it, with each row's ids and measures moved along, back to back.
func TestSortPendingKeyOrder(t *testing.T) {
	dir := t.TempDir()
	model := writeModel(t, dir, `version: 1
cubes:
  - name: o
    source:
      file: {path: /dev/null}
    event_time: {field: ts}
    dimensions: [{name: a}, {name: b}, {name: c}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[a, b, c], [b], [a, c], []]
    windows: [{granularity: hour}, {granularity: day, step: 1h}]
    checkpoint_every: 30s
`)
	svc, err := Open(model, Options{DataDir: filepath.Join(dir, "data"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	c := svc.byName["o"]
	if c.ck.every != 30*time.Second {
		t.Fatalf("checkpoint interval %v, want the model's 30s", c.ck.every)
	}
	r := rand.New(rand.NewSource(9))
	// Values with shared prefixes, empty strings and bytes around the escape byte.
	words := []string{"", "a", "ab", "ab\x00", "ab\x00x", "b", "B", "\xff", "zz", "a\x01"}
	for j, ns := range c.dimNS {
		for _, w := range words[:5+j*2] {
			ns.ID([]byte(w))
		}
	}
	seq := 0.0
	for round := 0; round < 4; round++ {
		emit := func(gsi, window int, start, end int64) {
			gs := c.plan.GroupingSets[gsi]
			row := aggregate.Row{Window: window, GroupingSet: gsi, Start: start, End: end, Values: []float64{seq}}
			seq++
			for _, p := range gs.Project {
				row.Dims = append(row.Dims, uint32(r.Intn(c.dimNS[p].Len())))
			}
			c.collect(&row)
		}
		if round < 3 {
			// Prefixes in random order: runs of one row, each prefix in many runs.
			for i := 0; i < 3000; i++ {
				start := int64(r.Intn(3)) * 3_600_000
				emit(r.Intn(len(c.plan.GroupingSets)), r.Intn(2), start, start+int64(1+r.Intn(2))*3_600_000)
			}
		} else {
			// As a window close emits: long runs of one prefix (radix-sorted), one prefix
			// again in a later run, equal keys within a run.
			for _, gsi := range []int{0, 1, 0, 2, 3} {
				for i := 0; i < 700; i++ {
					emit(gsi, 1, 0, 3_600_000)
				}
			}
		}
		// The oracle: rows stably sorted by their encoded keys, so that of equal keys the
		// later emission comes later (the store keeps the last).
		want := slices.Clone(c.embeddedRows())
		for i := range want {
			want[i].Dims = slices.Clone(want[i].Dims)
		}
		sort.SliceStable(want, func(i, j int) bool {
			return bytes.Compare(sink.AppendKey(nil, c.table, &want[i]), sink.AppendKey(nil, c.table, &want[j])) < 0
		})
		c.sortPending()
		got := c.embeddedRows()
		if len(got) != len(want) {
			t.Fatalf("round %d: %d rows after sorting, want %d", round, len(got), len(want))
		}
		for i := range want {
			if got[i].Values[0] != want[i].Values[0] || !slices.Equal(got[i].Dims, want[i].Dims) {
				t.Fatalf("round %d: row %d is emission %v (key %q), want emission %v (key %q)", round, i,
					got[i].Values[0], sink.AppendKey(nil, c.table, &got[i]), want[i].Values[0], sink.AppendKey(nil, c.table, &want[i]))
			}
		}
		// The ids and measures moved with their records: the offsets ascend, back to back.
		ids, vals := 0, 0
		for i, row := range c.pending.Rows {
			if int(row.IDs) != ids || int(row.Values) != vals {
				t.Fatalf("round %d: row %d has ids at %d and measures at %d, want %d and %d", round, i, row.IDs, row.Values, ids, vals)
			}
			ids += len(c.plan.GroupingSets[row.Set].Project)
			vals += len(c.plan.Measures)
		}
		if ids != len(c.pending.IDs) || vals != len(c.pending.Values) {
			t.Fatalf("round %d: the rows use %d ids and %d measures of %d and %d", round, ids, vals, len(c.pending.IDs), len(c.pending.Values))
		}
		c.pending.Rows, c.pending.IDs, c.pending.Values = nil, nil, nil
	}
}
