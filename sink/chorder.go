package sink

import (
	"cmp"
	"slices"
	"strings"
)

// Insert order.
//
// ClickHouse sorts every block it inserts into a MergeTree table by the table's ORDER BY key
// before it writes the part, unless the block already is in that order (MergeTreeDataWriter
// checks first and counts such blocks in system.events as MergeTreeDataWriterBlocksAlreadySorted,
// which TestClickHouseRoundTripUpserts reads). On a 2-core VM, ClickHouse 18.16 spent 1.67 µs
// of server CPU per row on blocks of 300,000 result rows in random order and 0.43 µs on the
// same rows sorted by the key (2.4M rows inserted with clickhouse-go): sorting is most of what
// an insert costs the server. Emitted rows come in runs that share (grouping set, window,
// start, end) and that the pipeline has mostly put in dimension order already
// (pipeline.rowOrder), so insertOrder puts a block in key order for a fraction of that: one
// pass to find runs, a check per run, and a sort only of the runs that need one.

// comparePrefix compares two rows by the first four columns of the ORDER BY key: grouping set,
// granularity label (by its rank among the cube's labels), and window_start and window_end in
// whole seconds, as insert sends them.
func (t *chTable) comparePrefix(a, b *IDRow) int {
	if c := cmp.Compare(t.plan.GroupingSets[a.Set].ID, t.plan.GroupingSets[b.Set].ID); c != 0 {
		return c
	}
	if c := cmp.Compare(t.labelRank[a.Window], t.labelRank[b.Window]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Start/1000, b.Start/1000); c != 0 {
		return c
	}
	return cmp.Compare(a.End/1000, b.End/1000)
}

// compareDims compares the dimension values of two rows of batch rs of one grouping set, in
// the table's column order (the ORDER BY order); the dimensions the set rolls up are empty
// strings in both rows.
func (t *chTable) compareDims(rs *IDRows, a, b *IDRow) int {
	gs := t.plan.GroupingSets[a.Set]
	for _, j := range t.gsColOrder[a.Set] {
		x, y := rs.IDs[int(a.IDs)+j], rs.IDs[int(b.IDs)+j]
		if x == y {
			continue // one id, one value
		}
		vals := rs.Dicts[gs.Project[j]]
		if c := strings.Compare(vals[x], vals[y]); c != 0 {
			return c
		}
	}
	return 0
}

// insertOrder returns the indexes of rows in the order of the table's ORDER BY key
// (grouping_set, granularity, window_start, window_end, dimension columns…), in scratch's array
// when it is big enough. Rows of equal key (one group emitted twice, with two versions) may come
// in either order: ReplacingMergeTree keeps the larger version whatever the order. rows must
// have passed checkIDRows.
//
// Cost: O(n) comparisons when each run of equal prefix is already in dimension order and no
// prefix repeats; a run out of order is sorted on its own, two runs of one prefix (two early
// fires of a window in one block) are merged, and rows that come in no useful order at all
// (runs shorter than 16 rows on average) are sorted whole, O(n log n).
func (t *chTable) insertOrder(rs *IDRows, scratch []int32) []int32 {
	rows := rs.Rows
	n := len(rows)
	perm := slices.Grow(scratch[:0], n)[:n]
	for i := range perm {
		perm[i] = int32(i)
	}
	type run struct{ lo, hi int }
	var runs []run
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && t.comparePrefix(&rows[lo], &rows[hi]) == 0 {
			hi++
		}
		runs = append(runs, run{lo, hi})
		lo = hi
	}
	if len(runs) > n/16 {
		slices.SortFunc(perm, func(a, b int32) int {
			ra, rb := &rows[a], &rows[b]
			if c := t.comparePrefix(ra, rb); c != 0 {
				return c
			}
			return t.compareDims(rs, ra, rb)
		})
		return perm
	}
	for _, r := range runs {
		t.sortRun(rs, perm[r.lo:r.hi])
	}
	byPrefix := func(a, b run) int { return t.comparePrefix(&rows[a.lo], &rows[b.lo]) }
	inOrder := true
	for i := 1; i < len(runs) && inOrder; i++ {
		inOrder = byPrefix(runs[i-1], runs[i]) < 0
	}
	if inOrder {
		return perm
	}
	slices.SortStableFunc(runs, byPrefix)
	out := make([]int32, 0, n)
	for i := 0; i < len(runs); {
		j := i + 1
		for j < len(runs) && byPrefix(runs[i], runs[j]) == 0 {
			j++
		}
		cmpRows := func(a, b int32) int { return t.compareDims(rs, &rows[a], &rows[b]) }
		switch lo := len(out); j - i {
		case 1:
			out = append(out, perm[runs[i].lo:runs[i].hi]...)
		case 2:
			a, b := perm[runs[i].lo:runs[i].hi], perm[runs[i+1].lo:runs[i+1].hi]
			for len(a) > 0 && len(b) > 0 {
				if cmpRows(b[0], a[0]) < 0 {
					out, b = append(out, b[0]), b[1:]
				} else {
					out, a = append(out, a[0]), a[1:]
				}
			}
			out = append(append(out, a...), b...)
		default:
			for _, r := range runs[i:j] {
				out = append(out, perm[r.lo:r.hi]...)
			}
			slices.SortFunc(out[lo:], cmpRows)
		}
		i = j
	}
	return out
}

// sortRun puts idx, the indexes of rows of rs of one prefix, in dimension order unless they already
// are.
func (t *chTable) sortRun(rs *IDRows, idx []int32) {
	if len(idx) < 2 {
		return
	}
	cmpRows := func(a, b int32) int { return t.compareDims(rs, &rs.Rows[a], &rs.Rows[b]) }
	if !slices.IsSortedFunc(idx, cmpRows) {
		slices.SortFunc(idx, cmpRows)
	}
}
