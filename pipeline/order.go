package pipeline

import (
	"cmp"
	"math/bits"
	"slices"
	"sort"

	"github.com/cubed-olap/cubed/sink"
)

// rankLimit is the largest dimension cardinality for which rows are put in key order before they
// are written; above it the store sorts them itself.
const rankLimit = 1 << 16

// rowOrder puts emitted rows in primary-key order before they are written, so that the store's
// bulk-load path (sstable ingestion) can skip its own byte-wise sort. A row key orders by
// (window, grouping set, start, end, dimension values) and dimension values compare as strings;
// rowOrder replaces each dimension's dictionary id by its rank among the dimension's values in
// string order, packs the ranks of a row into one integer, and sorts integers by radix sort.
type rowOrder struct {
	rank   [][]uint32 // per layer-1 dimension: id → rank in string order
	size   []int      // namespace size rank was computed for
	width  []uint     // per layer-1 dimension: bits of its ranks
	keys   []orderKey
	runs   [][2]int    // [lo, hi) in keys
	merged []rankedRow // keys' rows, runs of one prefix together, then sorted by packed ranks
	tmp    []rankedRow // radix sort scratch
	count  [256]int32  // radix sort digit counts
}

// orderKey is one pending row's sort key: its prefix (window, grouping set, start, end) and its
// packed dimension ranks.
type orderKey struct {
	window  int
	gs      uint16
	gsIndex int
	start   int64
	end     int64
	packed  uint64
	pending int32
}

// rankedRow is what the radix sort moves: packed ranks and the row's index in c.pending.
type rankedRow struct {
	packed  uint64
	pending int32
}

// orderPending puts the pending rows in key order (sortPending) once per emission, when there
// are enough of them for the order to pay: IngestMinRows, from which the embedded store ingests
// sorted rows as an sstable. The same order spares ClickHouse most of its insert cost, since
// within a run of one (window, grouping set, start, end) it is the order of the table's ORDER
// BY key (see sink.ClickHouse).
func (c *cubeRun) orderPending() {
	if c.pendingSorted || len(c.pending.Rows) < sink.IngestMinRows {
		return
	}
	c.sortPending()
	c.pendingSorted = true
}

// sortPending reorders the pending records, their ids and their measures into key order. It
// does nothing when a dimension has more than rankLimit values or a grouping set's ranks do not
// fit 64 bits.
func (c *cubeRun) sortPending() {
	o := &c.order
	if o.rank == nil {
		o.rank = make([][]uint32, len(c.dimNS))
		o.size = make([]int, len(c.dimNS))
	}
	if len(o.width) != len(c.dimNS) {
		o.width = make([]uint, len(c.dimNS))
	}
	width := o.width
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
	pend := &c.pending
	for i := range pend.Rows {
		r := &pend.Rows[i]
		gs := &c.plan.GroupingSets[r.Set]
		ids := pend.IDs[r.IDs : int(r.IDs)+len(gs.Project)]
		var packed uint64
		for x, p := range gs.Project {
			packed = packed<<width[p] | uint64(o.rank[p][ids[x]])
		}
		o.keys = append(o.keys, orderKey{window: int(r.Window), gs: gs.ID, gsIndex: int(r.Set),
			start: r.Start, end: r.End, packed: packed, pending: int32(i)})
	}
	// Emission order already groups rows into runs of equal (window, grouping set, start, end).
	// Order the runs by prefix (stably: runs of one prefix keep their emission order), put the
	// rows of each prefix side by side, and sort each prefix's rows by packed ranks with a stable
	// LSD radix sort. Rows of equal key thus stay in emission order, and the store keeps the last.
	o.runs = o.runs[:0]
	for lo := 0; lo < len(o.keys); {
		hi := lo + 1
		for hi < len(o.keys) && comparePrefix(&o.keys[lo], &o.keys[hi]) == 0 {
			hi++
		}
		o.runs = append(o.runs, [2]int{lo, hi})
		lo = hi
	}
	slices.SortStableFunc(o.runs, func(a, b [2]int) int { return comparePrefix(&o.keys[a[0]], &o.keys[b[0]]) })
	o.merged = o.merged[:0]
	for i := 0; i < len(o.runs); {
		first := &o.keys[o.runs[i][0]]
		lo := len(o.merged)
		for ; i < len(o.runs) && comparePrefix(first, &o.keys[o.runs[i][0]]) == 0; i++ {
			for _, k := range o.keys[o.runs[i][0]:o.runs[i][1]] {
				o.merged = append(o.merged, rankedRow{packed: k.packed, pending: k.pending})
			}
		}
		total := uint(0)
		for _, p := range c.plan.GroupingSets[first.gsIndex].Project {
			total += width[p]
		}
		o.sortRanked(o.merged[lo:], total)
	}
	// The ids and measures move too, so that the sorted records' offsets ascend: whoever reads
	// the rows in order (the sinks, column by column) then reads the arrays front to back
	// instead of gathering from all over them, a cache miss per row and column.
	nm := len(c.plan.Measures)
	sorted := c.sortedScratch[:0]
	ids := slices.Grow(c.sortedIDs[:0], len(pend.IDs))
	vals := slices.Grow(c.sortedValues[:0], len(pend.Values))
	for _, k := range o.merged {
		r := pend.Rows[k.pending]
		w := len(c.plan.GroupingSets[r.Set].Project)
		from, vfrom := r.IDs, r.Values
		r.IDs, r.Values = int32(len(ids)), int32(len(vals))
		ids = append(ids, pend.IDs[from:int(from)+w]...)
		vals = append(vals, pend.Values[vfrom:int(vfrom)+nm]...)
		sorted = append(sorted, r)
	}
	pend.Rows, c.sortedScratch = sorted, pend.Rows
	pend.IDs, c.sortedIDs = ids, pend.IDs
	pend.Values, c.sortedValues = vals, pend.Values
}

// radixMin is the shortest slice that sortRanked radix-sorts; shorter ones are insertion-sorted.
const radixMin = 64

// sortRanked sorts rows stably by packed, whose values are below 1<<bits: an LSD radix sort with
// 8-bit digits (Knuth, TAOCP vol. 3, 5.2.5), one counting pass per digit, skipping digits that
// every row shares. It costs O(len(rows) · bits/8) and no comparisons.
func (o *rowOrder) sortRanked(rows []rankedRow, bits uint) {
	if len(rows) < radixMin {
		for i := 1; i < len(rows); i++ {
			for j := i; j > 0 && rows[j].packed < rows[j-1].packed; j-- {
				rows[j], rows[j-1] = rows[j-1], rows[j]
			}
		}
		return
	}
	if cap(o.tmp) < len(rows) {
		o.tmp = make([]rankedRow, len(rows))
	}
	src, dst := rows, o.tmp[:len(rows)]
	for shift := uint(0); shift < bits; shift += 8 {
		count := &o.count
		*count = [256]int32{}
		for i := range src {
			count[byte(src[i].packed>>shift)]++
		}
		if int(count[byte(src[0].packed>>shift)]) == len(src) {
			continue // every row has this digit
		}
		var sum int32
		for d, n := range count {
			count[d] = sum
			sum += n
		}
		for i := range src {
			d := byte(src[i].packed >> shift)
			dst[count[d]] = src[i]
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &rows[0] {
		copy(rows, src)
	}
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
