package sink

import (
	"slices"
	"testing"
)

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

// TestInsertParts: the INSERTs of n rows (split as Write splits them) cover them exactly, differ
// in size by at most one, hold at most one and a half batches each, and a batch plus anything
// below half a batch goes as one INSERT. Checked by brute force over small sizes.
func TestInsertParts(t *testing.T) {
	for batch := 1; batch <= 40; batch++ {
		for n := 1; n <= 400; n++ {
			parts := insertParts(n, batch)
			var sizes []int
			covered := 0
			for k := range parts {
				lo, hi := k*n/parts, (k+1)*n/parts
				if lo != covered {
					t.Fatalf("n=%d batch=%d: INSERT %d starts at row %d, want %d", n, batch, k, lo, covered)
				}
				covered = hi
				sizes = append(sizes, hi-lo)
			}
			if covered != n {
				t.Fatalf("n=%d batch=%d: INSERTs cover %d rows", n, batch, covered)
			}
			if slices.Max(sizes)-slices.Min(sizes) > 1 {
				t.Fatalf("n=%d batch=%d: INSERT sizes %v differ by more than one", n, batch, sizes)
			}
			if len(sizes) > 1 && 2*slices.Max(sizes) > 3*batch {
				t.Fatalf("n=%d batch=%d: INSERTs of %v rows, more than 1.5 batches", n, batch, sizes)
			}
			if 2*n < 3*batch && len(sizes) != 1 {
				t.Fatalf("n=%d batch=%d: %d INSERTs, want 1", n, batch, len(sizes))
			}
		}
	}
}
