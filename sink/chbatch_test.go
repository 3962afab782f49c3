package sink

import "testing"

// TestChBatchGrowth: a batch's arrays hold every row added, in order; a quiet cube's batch (a
// few rows per Add) keeps at most about twice the room its rows need, and no batch grows
// beyond a whole batch plus the biggest Add seen (or the rows it holds, if more).
func TestChBatchGrowth(t *testing.T) {
	const batchRows = 200_000
	row := func(i int) Row {
		return Row{Window: i, Dims: []string{"a", "b"}, Values: []float64{float64(i)}, Version: uint64(i)}
	}
	for _, tc := range []struct {
		name string
		add  int // rows per add
		adds int
	}{{"quiet", 3, 200}, {"busy", 33_000, 7}, {"one add beyond", 150_000, 2}} {
		var c chBatch
		n := 0
		for a := 0; a < tc.adds; a++ {
			rows := make([]Row, tc.add)
			for i := range rows {
				rows[i] = row(n + i)
			}
			c.add(rows, batchRows)
			n += tc.add
			if len(c.rows) != n {
				t.Fatalf("%s: %d rows after adding %d", tc.name, len(c.rows), n)
			}
			// Allocation rounds a size up to its size class: at most an eighth more, but a few
			// elements more for tiny arrays.
			slack := func(k int) int { return k + k/8 + 16 }
			if cap(c.rows) > slack(2*n) || cap(c.rows) > slack(max(batchRows+c.maxAdd, n)) {
				t.Fatalf("%s: room for %d rows after adding %d in Adds of %d", tc.name, cap(c.rows), n, tc.add)
			}
		}
		for i, r := range c.rows {
			if r.Window != i || r.Version != uint64(i) || r.Values[0] != float64(i) || len(r.Dims) != 2 || r.Dims[1] != "b" {
				t.Fatalf("%s: row %d is %+v", tc.name, i, r)
			}
		}
	}
}
