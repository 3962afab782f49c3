package pipeline

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/aggregate"
	"github.com/cubed-olap/cubed/sink"
)

// TestSortPendingKeyOrder emits random rows of every grouping set, in an order that repeats
// prefixes non-adjacently, and checks that sortPending leaves them in the byte order of their
// primary keys (the order the store's bulk load needs), as AppendKey defines it.
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
	for round := 0; round < 3; round++ {
		for i := 0; i < 3000; i++ {
			gsi := r.Intn(len(c.plan.GroupingSets))
			gs := c.plan.GroupingSets[gsi]
			row := aggregate.Row{Window: r.Intn(2), GroupingSet: gsi, Start: int64(r.Intn(3)) * 3_600_000, Values: []float64{1}}
			row.End = row.Start + int64(1+r.Intn(2))*3_600_000
			for _, p := range gs.Project {
				row.Dims = append(row.Dims, uint32(r.Intn(c.dimNS[p].Len())))
			}
			c.collect(&row)
		}
		c.sortPending()
		var prev []byte
		for i := range c.pending {
			k := sink.AppendKey(nil, c.table, &c.pending[i])
			if prev != nil && bytes.Compare(prev, k) > 0 {
				t.Fatalf("round %d: row %d out of key order: %q after %q", round, i, k, prev)
			}
			prev = k
		}
		if len(c.pending) != 3000 {
			t.Fatal(fmt.Sprint("rows lost: ", len(c.pending)))
		}
		c.pending = c.pending[:0]
		c.dimArena, c.valArena, c.idArena, c.pendingIDs, c.pendingGS = nil, nil, nil, nil, nil
	}
}
