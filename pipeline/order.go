package pipeline

import (
	"cmp"
	"math/bits"
	"slices"
	"sort"
)

// rankLimit is the largest dimension cardinality for which rows are put in key order before they
// are written; above it the store sorts them itself.
const rankLimit = 1 << 16

// rowOrder puts emitted rows in primary-key order before they are written, so that the store's
// bulk-load path (sstable ingestion) can skip its own byte-wise sort. A row key orders by
// (window, grouping set, start, end, dimension values) and dimension values compare as strings;
// rowOrder replaces each dimension's dictionary id by its rank among the dimension's values in
// string order, packs the ranks of a row into one integer, and sorts integers.
type rowOrder struct {
	rank   [][]uint32 // per layer-1 dimension: id → rank in string order
	size   []int      // namespace size rank was computed for
	keys   []orderKey
	merged []orderKey
	runs   [][2]int // [lo, hi) in keys
}

type orderKey struct {
	window  int
	gs      uint16
	start   int64
	end     int64
	packed  uint64
	pending int32
}

// sortPending reorders c.pending into key order. It does nothing when a dimension has more than
// rankLimit values or a grouping set's ranks do not fit 64 bits.
func (c *cubeRun) sortPending() {
	o := &c.order
	if o.rank == nil {
		o.rank = make([][]uint32, len(c.dimNS))
		o.size = make([]int, len(c.dimNS))
	}
	width := make([]uint, len(c.dimNS))
	for j, ns := range c.dimNS {
		n := ns.Len()
		if n > rankLimit {
			return
		}
		if n != o.size[j] {
			vals := make([]string, n)
			for id := range vals {
				vals[id], _ = ns.Value(uint32(id))
			}
			ids := make([]uint32, n)
			for id := range ids {
				ids[id] = uint32(id)
			}
			sort.Slice(ids, func(a, b int) bool { return vals[ids[a]] < vals[ids[b]] })
			o.rank[j] = make([]uint32, n)
			for r, id := range ids {
				o.rank[j][id] = uint32(r)
			}
			o.size[j] = n
		}
		width[j] = uint(bits.Len(uint(n)))
	}
	for _, gs := range c.plan.GroupingSets {
		total := uint(0)
		for _, p := range gs.Project {
			total += width[p]
		}
		if total > 64 {
			return
		}
	}
	o.keys = o.keys[:0]
	for i := range c.pending {
		r := &c.pending[i]
		gs := c.plan.GroupingSets[c.pendingGS[i]]
		ids := c.idArena[c.pendingIDs[i] : int(c.pendingIDs[i])+len(gs.Project)]
		var packed uint64
		for x, p := range gs.Project {
			packed = packed<<width[p] | uint64(o.rank[p][ids[x]])
		}
		o.keys = append(o.keys, orderKey{window: r.Window, gs: r.GroupingSet, start: r.Start, end: r.End, packed: packed, pending: int32(i)})
	}
	// Emission order already groups rows into runs of equal (window, grouping set, start, end):
	// sort each run by its packed ranks, then order the runs. When one prefix shows up in two
	// runs that are not adjacent, sort everything at once instead.
	byPacked := func(a, b orderKey) int {
		if c := cmp.Compare(a.packed, b.packed); c != 0 {
			return c
		}
		return cmp.Compare(a.pending, b.pending)
	}
	o.runs = o.runs[:0]
	for lo := 0; lo < len(o.keys); {
		hi := lo + 1
		for hi < len(o.keys) && comparePrefix(&o.keys[lo], &o.keys[hi]) == 0 {
			hi++
		}
		slices.SortFunc(o.keys[lo:hi], byPacked)
		o.runs = append(o.runs, [2]int{lo, hi})
		lo = hi
	}
	slices.SortStableFunc(o.runs, func(a, b [2]int) int { return comparePrefix(&o.keys[a[0]], &o.keys[b[0]]) })
	distinct := true
	for i := 1; i < len(o.runs) && distinct; i++ {
		distinct = comparePrefix(&o.keys[o.runs[i-1][0]], &o.keys[o.runs[i][0]]) != 0
	}
	var order []orderKey
	if distinct {
		order = o.merged[:0]
		for _, r := range o.runs {
			order = append(order, o.keys[r[0]:r[1]]...)
		}
		o.merged = order
	} else {
		slices.SortFunc(o.keys, func(a, b orderKey) int {
			if c := comparePrefix(&a, &b); c != 0 {
				return c
			}
			return byPacked(a, b)
		})
		order = o.keys
	}
	sorted := c.sortedScratch[:0]
	for _, k := range order {
		sorted = append(sorted, c.pending[k.pending])
	}
	c.pending, c.sortedScratch = sorted, c.pending
}

// comparePrefix orders keys by (window, grouping set, start, end).
func comparePrefix(a, b *orderKey) int {
	if c := cmp.Compare(a.window, b.window); c != 0 {
		return c
	}
	if c := cmp.Compare(a.gs, b.gs); c != 0 {
		return c
	}
	if c := cmp.Compare(a.start, b.start); c != 0 {
		return c
	}
	return cmp.Compare(a.end, b.end)
}
