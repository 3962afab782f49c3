package sink

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cubed-olap/cubed/cube"
)

// orderModel's window labels ("day/6h", "day", "hour") sort differently from the windows, and
// its grouping sets list dimensions in an order other than the model's.
const orderModel = `version: 1
cubes:
  - name: edits
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    dimensions: [{name: channel}, {name: page}, {name: robot}]
    measures:
      - {name: pv, type: count}
    grouping_sets: [[], [channel], [robot, page], [page, channel, robot]]
    windows:
      - {granularity: day, step: 6h}
      - {granularity: day}
      - {granularity: hour}
`

// orderKey is the ORDER BY tuple of a row as ClickHouse sees the inserted columns, built
// independently of insertOrder: grouping_set, granularity label, window_start and window_end
// in seconds (fixed width, so that the strings compare as the numbers do), then every dimension column in table order, "" where the set rolls it up.
func orderKey(p *cube.Plan, r *Row) []string {
	key := []string{
		fmt.Sprintf("%05d", r.GroupingSet),
		p.Windows[r.Window].Label(),
		fmt.Sprintf("%012d", r.Start/1000), fmt.Sprintf("%012d", r.End/1000),
	}
	var gs cube.GroupingSet
	for _, g := range p.GroupingSets {
		if g.ID == r.GroupingSet {
			gs = g
		}
	}
	for _, d := range p.Dimensions {
		v := ""
		for j, gd := range gs.Dims {
			if gd == d {
				v = r.Dims[j]
			}
		}
		key = append(key, v)
	}
	return key
}

// TestInsertOrder checks that insertOrder returns a permutation of the rows in ORDER BY order
// for rows in random order, for runs already sorted but shuffled, and
// for several sorted runs of one prefix (early fires of a window sharing a block).
func TestInsertOrder(t *testing.T) {
	m, diags := cube.Parse("m.yaml", []byte(orderModel))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	p, err := cube.Compile(m.Cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := newTable("db", "edits", p)
	if err != nil {
		t.Fatal(err)
	}
	values := []string{"", "a", "ab", "b", "a\x00", "é", "Z", "#en.wikipedia", "true"}
	rng := rand.New(rand.NewPCG(3, 4))
	base := int64(1442016000000)
	row := func() Row {
		gs := p.GroupingSets[rng.IntN(len(p.GroupingSets))]
		dims := make([]string, len(gs.Dims))
		for j := range dims {
			dims[j] = values[rng.IntN(len(values))]
		}
		start := base + int64(rng.IntN(3))*3600e3 + int64(rng.IntN(2))*500 // 500 ms: same second
		return Row{Window: rng.IntN(len(p.Windows)), GroupingSet: gs.ID, Start: start, End: start + 3600e3, Dims: dims, Values: []float64{1}}
	}
	check := func(name string, rows []Row) {
		t.Helper()
		b, err := tbl.idRowsOf(rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := tbl.insertOrder(&b, nil)
		keys := make([][]string, len(rows))
		for i := range rows {
			keys[i] = orderKey(p, &rows[i])
		}
		seen := slices.Sorted(slices.Values(got))
		for i := range rows {
			if len(seen) != len(rows) || seen[i] != int32(i) {
				t.Fatalf("%s: insertOrder of %d rows is not a permutation: %v", name, len(rows), got)
			}
		}
		for i := 1; i < len(got); i++ {
			if slices.Compare(keys[got[i-1]], keys[got[i]]) > 0 {
				t.Fatalf("%s: insertOrder of %d rows puts %q before %q", name, len(rows), keys[got[i-1]], keys[got[i]])
			}
		}
	}
	check("empty", nil)
	for round := range 50 {
		n := 1 + rng.IntN(400)
		rows := make([]Row, n)
		for i := range rows {
			rows[i] = row()
		}
		check("random", rows)

		// The same rows as runs of one prefix, each sorted, the runs in random order and some
		// prefixes repeated: what emissions of several windows and early fires look like.
		var runs [][]Row
		for lo := 0; lo < n; {
			hi := min(n, lo+1+rng.IntN(40))
			r := slices.Clone(rows[lo:hi])
			for i := range r {
				r[i].GroupingSet, r[i].Window, r[i].Start, r[i].End = r[0].GroupingSet, r[0].Window, r[0].Start, r[0].End
				r[i].Dims = slices.Clone(r[i].Dims[:0])
				for range p.GroupingSets[tbl.gsByID[r[0].GroupingSet]].Dims {
					r[i].Dims = append(r[i].Dims, values[rng.IntN(len(values))])
				}
			}
			slices.SortStableFunc(r, func(a, b Row) int { return slices.Compare(orderKey(p, &a), orderKey(p, &b)) })
			runs = append(runs, r)
			if rng.IntN(3) == 0 {
				runs = append(runs, r) // the same prefix again, later
			}
			lo = hi
		}
		rng.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
		check("runs", slices.Concat(runs...))
		// The same runs, each out of order (dimensions with more values than the pipeline ranks).
		for _, r := range runs {
			rng.Shuffle(len(r), func(i, j int) { r[i], r[j] = r[j], r[i] })
		}
		check("unsorted runs", slices.Concat(runs...))
		if round == 0 {
			slices.SortStableFunc(rows, func(a, b Row) int { return slices.Compare(orderKey(p, &a), orderKey(p, &b)) })
			check("sorted", rows)
		}
	}
}
