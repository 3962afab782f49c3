package sink

import (
	"slices"
	"testing"
)

// TestChBatchGrowth: a batch's arrays hold every row added, in order, each with its own ids and
// measures (offsets moved past what the batch held) and the longest dictionary snapshot seen; a
// quiet cube's batch (a few rows per Add) keeps at most about twice the room its rows need, and
// no batch grows beyond a whole batch plus the biggest Add seen (or the rows it holds, if more).
// The same holds when the batch may take the arrays of the rows added (Move): an empty batch
// then takes them, and the rows get arrays that the batch no longer uses.
func TestChBatchGrowth(t *testing.T) {
	const batchRows = 200_000
	for _, tc := range []struct {
		name string
		add  int // rows per add
		adds int
		take bool
	}{{"quiet", 3, 200, false}, {"busy", 33_000, 7, false}, {"one add beyond", 150_000, 2, false},
		{"quiet, taking", 3, 200, true}, {"busy, taking", 33_000, 7, true}, {"one add beyond, taking", 150_000, 2, true}} {
		var c chBatch
		n := 0
		dict := []string{"a", "b", "c"}
		for a := 0; a < tc.adds; a++ {
			// Each Add's rows are in reverse order of their ids and measures, as sorted rows are
			// in the order of their arrays.
			rows := IDRows{Dicts: [][]string{dict[:2+a%2], nil}}
			for i := range tc.add {
				k := n + tc.add - 1 - i
				rows.Rows = append(rows.Rows, IDRow{Window: int32(k), Version: uint64(k),
					IDs: int32(2 * (tc.add - 1 - i)), Values: int32(tc.add - 1 - i)})
			}
			for i := range tc.add {
				rows.IDs = append(rows.IDs, uint32((n+i)%3), uint32(a%2))
				rows.Values = append(rows.Values, float64(n+i))
			}
			taken := tc.take && len(c.Rows) == 0
			first := &rows.Rows[0]
			c.add(&rows, batchRows, tc.take)
			if taken != (&c.Rows[len(c.Rows)-tc.add] == first) {
				t.Fatalf("%s: add %d with %d rows batched before: took the rows' array %v, want %v", tc.name, a, n, !taken, taken)
			}
			if r, b := rows.Rows[:cap(rows.Rows)], c.Rows[:cap(c.Rows)]; len(r) > 0 && &r[0] == &b[0] ||
				cap(rows.IDs) > 0 && &rows.IDs[:1][0] == &c.IDs[0] || cap(rows.Values) > 0 && &rows.Values[:1][0] == &c.Values[0] {
				t.Fatalf("%s: after add %d the rows and the batch share an array", tc.name, a)
			}
			n += tc.add
			if len(c.Rows) != n {
				t.Fatalf("%s: %d rows after adding %d", tc.name, len(c.Rows), n)
			}
			// Allocation rounds a size up to its size class: at most an eighth more, but a few
			// elements more for tiny arrays.
			slack := func(k int) int { return k + k/8 + 16 }
			if cap(c.Rows) > slack(2*n) || cap(c.Rows) > slack(max(batchRows+c.maxAdd, n)) {
				t.Fatalf("%s: room for %d rows after adding %d in Adds of %d", tc.name, cap(c.Rows), n, tc.add)
			}
			if want := 2 + min(a, 1); len(c.Dicts[0]) != want || len(c.Dicts[1]) != 0 {
				t.Fatalf("%s: dictionaries of %d and %d values after %d Adds, want %d and 0", tc.name, len(c.Dicts[0]), len(c.Dicts[1]), a+1, want)
			}
		}
		for i := range c.Rows {
			r := &c.Rows[i]
			add, j := i/tc.add, i%tc.add
			k := add*tc.add + tc.add - 1 - j // the row's number
			ids := c.ids(r, 2)
			if r.Window != int32(k) || r.Version != uint64(k) || c.Values[r.Values] != float64(k) ||
				ids[0] != uint32(k%3) || ids[1] != uint32(add%2) {
				t.Fatalf("%s: row %d is %+v, ids %v, measure %v; want row %d", tc.name, i, *r, ids, c.Values[r.Values], k)
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
