package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cubed-olap/cubed/bitmapstate"
	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/retention"
)

// New users and day-N retention (measure types new_users and retention; every window of such a
// cube is a day window, tumbling or cumulative).
//
// State, per id field the measures read:
//   - the cube-wide first-seen state (retention.FirstSeen): every id seen, and new(d) for the
//     days still needed. It is updated before each flush's aggregation from the events accepted
//     by at least one window, by event day: an event of an earlier day (within the allowed
//     lateness) moves the id's first day there, whatever the order of arrival.
//   - A(g, d), the ids of group g on day d: while d is open, the group's distinct set in the
//     day window's instance (the UV state, not a copy); when the history window (the tumbling
//     day window if there is one, else the first cumulative one) closes day d, the sets of every
//     group of every emitting node move, table by table, into a retention.Ring of the last
//     maxDays closed days. For day-1 retention that is the double buffer: today in the open
//     window, yesterday in the ring, swapped at day rollover without touching the groups.
//
// Values are computed when a group is emitted: new_users = |A(g, d) ∩ new(d)|, retained =
// |A(g, d) ∩ C(g, d−N)| and cohort = |C(g, d−N)| with C = A or A ∩ new. A cumulative window
// computes them per slice from the slice's open set (the ids first seen in the group in that
// slice) and sums them over the steps like distinct counts; when a slice closes (its open set is
// dropped) its counts are frozen in its record, which is exact because every input a slice's
// counts depend on can change only through an accepted event of an earlier day, and while such
// an event is accepted every slice of the later days is still open.
//
// An input of another day's rows changes when an id moves to an earlier first day (the rows of
// its old day and their new-cohort retention rows N days later) or when a group gains ids on a
// day d whose day d+N is already open (late data): those groups are marked changed so that the
// next emission rewrites them.
//
// Exactness follows the lateness contract of the other measures: every event accepted by a
// window counts, an event late for every window counts nowhere (it is dead-lettered).

// retState is the aggregator's new-user and retention state; nil when the plan has neither. It
// belongs to the aggregator's goroutine (it runs before and after Process's parallel phases).
type retState struct {
	a      *Aggregator
	loc    *time.Location
	nodes  []*node
	nodeIx map[*node]int

	fields   []int                  // distinct fields that new_users or retention read, ascending
	first    []*retention.FirstSeen // per fields entry
	newWord  []int                  // per fields entry: the new_users word, -1 none
	measures []retMeasure           // one per retention measure of the cube
	daysN    []int                  // the distinct N of the retention measures
	maxDays  int                    // largest N, 0 without retention measures
	histWin  int                    // window whose closed days go into the ring

	ring    *retention.Ring[*dayState]  // the last maxDays closed days; nil when maxDays is 0
	closing map[retention.Day]*dayState // days retired by the running Advance, not yet in the ring
	evicted []retention.Day             // days dropped from the ring since the last checkpoint
	free    [][]dayTable                // per node: tables of days that left the ring, for reuse

	caches     map[*instTable]*prevCache // per open table: where its groups' closed days are
	freeCaches []*prevCache              // caches of released tables, for reuse

	// What observe needs to tell accepted events (all windows are day windows).
	hasTumbling bool
	cumSteps    []int64 // steps (ms) of the cumulative windows
	latenessMS  int64

	starts map[int64]retention.Day // window start → day
	dayMS  map[retention.Day]int64 // day → its start, Unix ms

	moves    []retMove              // first-day moves of the current flush
	movedIDs []uint32               // scratch of afterProcess
	touched  map[retention.Day]bool // days with accepted events carrying ids in the current flush
	key      []uint32               // scratch: [instance id, dims…]
	cur      []*bitmapstate.Set     // scratch: per fields entry, the sets of the record being filled
}

type retMeasure struct {
	field     int // position in retState.fields
	days      int
	cohortNew bool
	word      int // retained count; word+1 is the cohort size
	dayIdx    int // index of days in retState.daysN
	// Per fill: A(g, d−N) and new(d−N).
	prev, newPrev *bitmapstate.Set
}

type retMove struct {
	field int // position in retState.fields
	from  retention.Day
	id    uint32
}

// dayState holds one closed day: per node and shard, the keys of the groups and their sets of the
// retention fields (len(fields) sets per group).
type dayState struct {
	salt    uint32       // the instance id the shards were hashed with
	tables  [][]dayTable // [node][shard]
	written bool         // in a checkpoint already
}

type dayTable struct {
	keys keyTable // hashed like the instance table it came from: hashKey([salt, dims…])
	sets []bitmapstate.Set
}

func newRetState(a *Aggregator) *retState {
	p := a.plan
	rs := &retState{a: a, loc: p.Cube.Timezone, nodeIx: map[*node]int{}, histWin: -1,
		latenessMS: p.Cube.EventTime.AllowedLateness.Milliseconds(),
		starts:     map[int64]retention.Day{}, dayMS: map[retention.Day]int64{}, touched: map[retention.Day]bool{},
		closing: map[retention.Day]*dayState{}}
	if rs.loc == nil {
		rs.loc = time.UTC
	}
	fieldPos := map[int]int{} // distinct field → position in rs.fields
	for _, m := range p.Measures {
		if m.Type == cube.NewUsers || m.Type == cube.Retention {
			if _, ok := fieldPos[m.DistinctField]; !ok {
				fieldPos[m.DistinctField] = -1
				rs.fields = append(rs.fields, m.DistinctField)
			}
		}
	}
	if len(rs.fields) == 0 {
		return nil
	}
	slices.Sort(rs.fields)
	for i, f := range rs.fields {
		fieldPos[f] = i
		rs.first = append(rs.first, retention.NewFirstSeen())
		rs.newWord = append(rs.newWord, -1)
	}
	for i, m := range p.Measures {
		mc := a.layout.measures[i]
		switch {
		case m.Type == cube.NewUsers:
			rs.newWord[fieldPos[m.DistinctField]] = mc.word
		case m.Type == cube.Retention && m.Part == cube.RetentionRate:
			rs.measures = append(rs.measures, retMeasure{field: fieldPos[m.DistinctField], days: m.Days,
				cohortNew: m.Cohort == cube.CohortNew, word: mc.word})
			if !slices.Contains(rs.daysN, m.Days) {
				rs.daysN = append(rs.daysN, m.Days)
			}
			rs.measures[len(rs.measures)-1].dayIdx = slices.Index(rs.daysN, m.Days)
			rs.maxDays = max(rs.maxDays, m.Days)
		}
	}
	for w, win := range p.Windows {
		if win.Granularity != cube.Day {
			panic("BUG: new_users or retention in a cube with a " + string(win.Granularity) + " window")
		}
		if win.Step == 0 {
			rs.hasTumbling = true
			if rs.histWin < 0 || p.Windows[rs.histWin].Step != 0 {
				rs.histWin = w
			}
		} else {
			rs.cumSteps = append(rs.cumSteps, win.Step.Milliseconds())
			if rs.histWin < 0 {
				rs.histWin = w
			}
		}
	}
	rs.nodes = a.nodes()
	for i, nd := range rs.nodes {
		rs.nodeIx[nd] = i
	}
	rs.free = make([][]dayTable, len(rs.nodes))
	rs.caches = map[*instTable]*prevCache{}
	if rs.maxDays > 0 {
		rs.ring = retention.NewRing[*dayState](rs.maxDays)
	}
	rs.cur = make([]*bitmapstate.Set, len(rs.fields))
	return rs
}

// dayOf returns the day of a day window starting at start (Unix ms).
func (rs *retState) dayOf(start int64) retention.Day {
	d, ok := rs.starts[start]
	if !ok {
		d = retention.DayOfMillis(start, rs.loc)
		rs.starts[start] = d
	}
	return d
}

// startOf returns the start of day d (Unix ms).
func (rs *retState) startOf(d retention.Day) int64 {
	ms, ok := rs.dayMS[d]
	if !ok {
		ms = d.Start(rs.loc).UnixMilli()
		rs.dayMS[d] = ms
	}
	return ms
}

// find returns the entry of key, whose hash is h (as passed to findOrInsert), if present.
func (t *keyTable) find(key []uint32, h uint64) (int32, bool) {
	if t.n == 0 {
		return -1, false
	}
	w, tag := t.width, h<<32
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s == 0 {
			return -1, false
		}
		if s&^(1<<32-1) == tag {
			if e := int(uint32(s) - 1); equalKey(t.keys[e*w:e*w+w], key) {
				return int32(e), true
			}
		}
	}
}

// observe updates the first-seen state with the events of b that at least one window accepts
// (at the current watermark), and collects the ids whose first day moved earlier.
func (rs *retState) observe(b *Batch) {
	a := rs.a
	wm := a.watermark
	ndf := a.ndf
	var start, end int64 = 1, 0
	var day retention.Day
	rs.moves = rs.moves[:0]
	clear(rs.touched)
	for i := 0; i < b.Len; i++ {
		t := b.Times[i]
		if t < start || t >= end {
			start, end = instanceBounds(cube.Day, rs.loc, t)
			day = rs.dayOf(start)
		}
		if wm != math.MinInt64 && !rs.accepted(t, start, end, wm) {
			continue
		}
		ids := b.IDs[i*ndf : i*ndf+ndf]
		for fp, f := range rs.fields {
			id := ids[f]
			if id == dictionary.NoID {
				continue
			}
			if !rs.touched[day] {
				rs.touched[day] = true
			}
			if prev, changed := rs.first[fp].Observe(id, day); changed && prev != retention.Never {
				rs.moves = append(rs.moves, retMove{field: fp, from: prev, id: id})
			}
		}
	}
}

// accepted reports whether some window accepts an event at t of the day [start, end) at
// watermark wm (the pre-aggregation workers' late test, negated).
func (rs *retState) accepted(t, start, end, wm int64) bool {
	if rs.hasTumbling {
		return end+rs.latenessMS > wm
	}
	for _, step := range rs.cumSteps {
		se := min(start+((t-start)/step+1)*step, end)
		if se+rs.latenessMS > wm {
			return true
		}
	}
	return false
}

// instanceAt returns the open instance of window w on day d, or nil.
func (rs *retState) instanceAt(w int, d retention.Day) *instance {
	return rs.a.instByKey[instKey{w, rs.startOf(d)}]
}

// lookup returns the table of instance in at node nd holding the group with key dims, and the
// group; ok is false when there is none.
func (rs *retState) lookup(nd *node, in *instance, dims []uint32) (t *instTable, g int32, ok bool) {
	k := append(append(rs.key[:0], in.id), dims...)
	rs.key = k
	h := hashKey(k)
	t = nd.shards[shardOf(h, rs.a.n)].tables[in.id]
	if t == nil {
		return nil, -1, false
	}
	g, ok = t.keys.find(dims, h)
	return t, g, ok
}

// markChanged makes group g of t emit all its rows again at the next emission.
func markChanged(t *instTable, g int32) {
	grp := &t.groups[g]
	if grp.minDirty == noSlice {
		t.dirty = append(t.dirty, g)
	}
	grp.minDirty = 0
}

// markKey marks the group with key dims of node ni changed in every window's instance of day d.
func (rs *retState) markKey(ni int, dims []uint32, d retention.Day) {
	for w := range rs.a.wins {
		if in := rs.instanceAt(w, d); in != nil {
			if t, g, ok := rs.lookup(rs.nodes[ni], in, dims); ok {
				markChanged(t, g)
			}
		}
	}
}

// afterProcess marks the groups whose rows changed through another day's input in this flush:
// the groups holding an id whose first day moved (on the old day, and N days later for
// new-cohort retention), and, when day d+N is open, the groups of day d+N whose day-d group
// changed (only days that got ids in this flush can have changed ones).
func (rs *retState) afterProcess() {
	a := rs.a
	if len(rs.moves) > 0 {
		slices.SortFunc(rs.moves, func(x, y retMove) int {
			if x.field != y.field {
				return x.field - y.field
			}
			return int(x.from) - int(y.from)
		})
		for i := 0; i < len(rs.moves); {
			j := i
			var moved bitmapstate.Set
			ids := rs.movedIDs[:0]
			for j < len(rs.moves) && rs.moves[j].field == rs.moves[i].field && rs.moves[j].from == rs.moves[i].from {
				moved.Add(rs.moves[j].id)
				ids = append(ids, rs.moves[j].id)
				j++
			}
			rs.markMoved(rs.moves[i].field, rs.moves[i].from, &moved, ids)
			rs.movedIDs = ids
			i = j
		}
		rs.moves = rs.moves[:0]
	}
	if rs.maxDays == 0 {
		return
	}
	open := map[retention.Day]bool{}
	for _, in := range a.instances {
		open[rs.dayOf(in.start)] = true
	}
	if len(open) < 2 {
		return
	}
	for _, in := range a.instances {
		d := rs.dayOf(in.start)
		if !rs.touched[d] {
			continue
		}
		for _, n := range rs.daysN {
			later := d + retention.Day(n)
			if !open[later] {
				continue
			}
			for ni, nd := range rs.nodes {
				if nd.gs < 0 {
					continue
				}
				for _, sh := range nd.shards {
					t := sh.tables[in.id]
					if t == nil {
						continue
					}
					for _, g := range t.dirty {
						rs.markKey(ni, t.keys.key(g), later)
					}
				}
			}
		}
	}
}

// markMoved marks the groups of day from holding one of moved (ids of field position fp whose
// first day moved to an earlier day), and their rows of new-cohort retention N days later.
func (rs *retState) markMoved(fp int, from retention.Day, moved *bitmapstate.Set, ids []uint32) {
	a := rs.a
	f := rs.fields[fp]
	for w := range a.wins {
		in := rs.instanceAt(w, from)
		if in == nil {
			continue
		}
		for ni, nd := range rs.nodes {
			if nd.gs < 0 {
				continue
			}
			for _, sh := range nd.shards {
				t := sh.tables[in.id]
				if t == nil {
					continue
				}
				for g := range t.groups {
					set := &t.sets[g*a.ndf+f]
					if set.HasEvicted() && !a.loadBlocks(t, int32(g), f, set, ids) {
						continue
					}
					if bitmapstate.IntersectionLen(set, moved) == 0 {
						continue
					}
					markChanged(t, int32(g))
					if w != rs.histWin {
						continue
					}
					for _, m := range rs.measures {
						if m.cohortNew && m.field == fp {
							rs.markKey(ni, t.keys.key(int32(g)), from+retention.Day(m.days))
						}
					}
				}
			}
		}
	}
}

// prevCache remembers, for the groups of one table, where their sets of day d−N are when that
// day is closed (its tables no longer change), so that a group emitted again needs no lookup.
type prevCache struct {
	inst uint32  // the instance the table held when the cache was filled
	refs []int64 // per group × len(daysN): refUnknown, refAbsent, or shard<<32 | entry
}

const (
	refUnknown = -2
	refAbsent  = -1
)

// cacheFor returns t's cache, sized for its groups.
func (rs *retState) cacheFor(t *instTable) *prevCache {
	pc := rs.caches[t]
	if pc == nil {
		if n := len(rs.freeCaches); n > 0 {
			pc = rs.freeCaches[n-1]
			rs.freeCaches = rs.freeCaches[:n-1]
		} else {
			pc = &prevCache{}
		}
		pc.inst, pc.refs = t.inst.id, pc.refs[:0]
		rs.caches[t] = pc
	}
	if pc.inst != t.inst.id {
		pc.inst, pc.refs = t.inst.id, pc.refs[:0]
	}
	if n := len(t.groups) * len(rs.daysN); len(pc.refs) < n {
		old := len(pc.refs)
		if cap(pc.refs) < n {
			pc.refs = slices.Grow(pc.refs, max(n, 2*cap(pc.refs))-old)
		}
		pc.refs = pc.refs[:n]
		for i := old; i < n; i++ {
			pc.refs[i] = refUnknown
		}
	}
	return pc
}

// prevSet returns A(g, back) of field position fp for group g of t (node ni); k indexes
// rs.daysN. A closed day's answer is cached.
func (rs *retState) prevSet(ni int, t *instTable, g int32, back retention.Day, fp, k int, pc *prevCache) *bitmapstate.Set {
	nf := len(rs.fields)
	ref := &pc.refs[int(g)*len(rs.daysN)+k]
	switch {
	case *ref == refAbsent:
		return nil
	case *ref >= 0:
		ds := rs.closing[back]
		if ds == nil {
			ds, _ = rs.ring.Get(back)
		}
		return &ds.tables[ni][*ref>>32].sets[int(int32(*ref))*nf+fp]
	}
	dims := t.keys.key(g)
	if in := rs.instanceAt(rs.histWin, back); in != nil {
		if ot, og, ok := rs.lookup(rs.nodes[ni], in, dims); ok {
			return rs.resident(ot, og, rs.fields[fp]) // open: may still change, not cached
		}
		return nil
	}
	if rs.ring == nil {
		return nil
	}
	ds := rs.closing[back]
	if ds == nil {
		var ok bool
		if ds, ok = rs.ring.Get(back); !ok {
			return nil // no group that day so far (the day may still come: not cached)
		}
	}
	k64 := append(append(rs.key[:0], ds.salt), dims...)
	rs.key = k64
	h := hashKey(k64)
	shard := shardOf(h, rs.a.n)
	tb := &ds.tables[ni][shard]
	e, ok := tb.keys.find(dims, h)
	if !ok {
		*ref = refAbsent
		return nil
	}
	*ref = int64(shard)<<32 | int64(e)
	return &tb.sets[int(e)*nf+fp]
}

// prepare resolves, for group g of t (node ni) on day d, each retention measure's previous-day
// sets.
func (rs *retState) prepare(ni int, t *instTable, g int32, d retention.Day) {
	if len(rs.measures) == 0 {
		return
	}
	pc := rs.cacheFor(t)
	for i := range rs.measures {
		m := &rs.measures[i]
		back := d - retention.Day(m.days)
		m.prev = rs.prevSet(ni, t, g, back, m.field, m.dayIdx, pc)
		m.newPrev = nil
		if m.cohortNew && m.prev != nil {
			m.newPrev = rs.first[m.field].New(back)
		}
	}
}

// fillRecord writes the derived words of one slice record whose ids are rs.cur (per field
// position; nil is none): new users and retained ids, and the cohort size when lowest (the
// group's first slice) or 0.
func (rs *retState) fillRecord(cells []uint64, d retention.Day, lowest bool) {
	for fp, w := range rs.newWord {
		if w >= 0 {
			cells[w] = bitmapstate.IntersectionLen(rs.cur[fp], rs.first[fp].New(d))
		}
	}
	for i := range rs.measures {
		m := &rs.measures[i]
		retained, cohort := retention.Counts(rs.cur[m.field], m.prev, m.newPrev, m.cohortNew)
		cells[m.word] = retained
		if !lowest {
			cohort = 0
		}
		cells[m.word+1] = cohort
	}
}

// fill computes the derived words of group g of t (node nd, which emits) before it is emitted:
// for a tumbling window from the group's sets, for a cumulative one for every open slice from
// its open sets (closed slices keep their frozen counts).
func (rs *retState) fill(nd *node, t *instTable, g int32) {
	a := rs.a
	in := t.inst
	d := rs.dayOf(in.start)
	ni := rs.nodeIx[nd]
	rs.prepare(ni, t, g, d)
	grp := &t.groups[g]
	if a.wins[in.window].stepMS == 0 {
		for fp, f := range rs.fields {
			rs.cur[fp] = rs.resident(t, g, f)
		}
		r := int(grp.head)
		rs.fillRecord(t.recs[r+recCells:r+recCells+a.layout.n], d, true)
		return
	}
	for r := int(grp.head); r != -1; {
		next := int(int64(t.recs[r+recNext]))
		if int32(t.recs[r+recSlice]) < in.closedSlices {
			break // this record and the rest are closed: frozen
		}
		rs.openSets(t, r)
		rs.fillRecord(t.recs[r+recCells:r+recCells+a.layout.n], d, next == -1)
		r = next
	}
}

// openSets points rs.cur at record r's open sets (nil where none).
func (rs *retState) openSets(t *instTable, r int) {
	ob := int64(t.recs[r+recOpen])
	for fp, f := range rs.fields {
		rs.cur[fp] = nil
		if ob >= 0 {
			rs.cur[fp] = &t.open[int(ob)*rs.a.ndf+f]
		}
	}
}

// freeze computes, before the slices [in.closedSlices, closed) of cumulative instance in close
// and their open sets are dropped, their derived words, which can no longer change. A group not
// changed since its last emission has them already.
func (rs *retState) freeze(in *instance, closed int32) {
	a := rs.a
	d := rs.dayOf(in.start)
	for ni, nd := range rs.nodes {
		if nd.gs < 0 {
			continue
		}
		for _, sh := range nd.shards {
			t := sh.tables[in.id]
			if t == nil {
				continue
			}
			for g := range t.groups {
				if grp := &t.groups[g]; grp.minDirty == noSlice && grp.emitted >= 0 {
					continue // filled at its last emission, unchanged since
				}
				prepared := false
				for r := int(t.groups[g].head); r != -1; {
					next := int(int64(t.recs[r+recNext]))
					s := int32(t.recs[r+recSlice])
					if s < in.closedSlices {
						break
					}
					if s < closed {
						if !prepared {
							rs.prepare(ni, t, int32(g), d)
							prepared = true
						}
						rs.openSets(t, r)
						rs.fillRecord(t.recs[r+recCells:r+recCells+a.layout.n], d, next == -1)
					}
					r = next
				}
			}
		}
	}
}

// retire moves, when the history window's instance in closes, the keys and retention-field sets
// of table t (shard si of node nd) into the day's state, which finishClosing puts in the ring once
// every window has emitted its final rows (until then activeSet finds it among the closing days).
// t keeps fresh, empty keys and sets.
func (rs *retState) retire(in *instance, nd *node, si int, t *instTable) {
	if pc := rs.caches[t]; pc != nil { // the table is released (every closing table comes here)
		delete(rs.caches, t)
		rs.freeCaches = append(rs.freeCaches, pc)
	}
	if rs.ring == nil || in.window != rs.histWin || nd.gs < 0 {
		return
	}
	a := rs.a
	d := rs.dayOf(in.start)
	ds := rs.closing[d]
	if ds == nil {
		ds = rs.newDayState(in.id)
		rs.closing[d] = ds
	}
	ni := rs.nodeIx[nd]
	tb := &ds.tables[ni][si]
	// The sets leave the store's keys of the window (deleted at the next checkpoint): every
	// block must be in memory.
	for g := int32(0); g < t.keys.n; g++ {
		for _, f := range rs.fields {
			rs.resident(t, g, f)
		}
	}
	tb.keys = t.keys
	direct := len(rs.fields) == a.ndf
	if direct {
		tb.sets = t.sets
	} else {
		tb.sets = make([]bitmapstate.Set, 0, int(t.keys.n)*len(rs.fields))
		for g := 0; g < int(t.keys.n); g++ {
			for f := 0; f < a.ndf; f++ {
				if slices.Contains(rs.fields, f) {
					tb.sets = append(tb.sets, t.sets[g*a.ndf+f])
				} else {
					t.sets[g*a.ndf+f].Release(t.setPool)
				}
			}
		}
	}
	// The keys and sets now belong to the ring, so the pooled table must not reuse their
	// memory: it takes over the memory of a day that left the ring (the other half of the
	// double buffer, its sets already released to the pools), or starts empty.
	t.keys, t.sets = newKeyTable(t.keys.width), nil
	if n := len(rs.free[ni]); n > 0 {
		old := rs.free[ni][n-1]
		rs.free[ni] = rs.free[ni][:n-1]
		old.keys.reset()
		t.keys = old.keys
		if direct {
			t.sets = old.sets[:0] // zero sets, as growSets expects past len
		}
	}
}

// resident returns group g's set of field f in t with every block in memory, reading evicted
// blocks back from the state store; nil (no ids) when that fails (Aggregator.Err reports it).
func (rs *retState) resident(t *instTable, g int32, f int) *bitmapstate.Set {
	a := rs.a
	set := &t.sets[int(g)*a.ndf+f]
	if set.HasEvicted() && !a.readEvicted(t, g, f, func(load func(uint16) ([]byte, error)) error {
		return set.LoadAll(t.setPool, load)
	}) {
		return nil
	}
	return set
}

func (rs *retState) newDayState(salt uint32) *dayState {
	ds := &dayState{salt: salt, tables: make([][]dayTable, len(rs.nodes))}
	for ni, nd := range rs.nodes {
		ds.tables[ni] = make([]dayTable, rs.a.n)
		for si := range ds.tables[ni] {
			ds.tables[ni][si].keys = newKeyTable(nd.width)
		}
	}
	return ds
}

// finishClosing puts the days closed by Advance into the ring (ascending, so that the ring keeps
// the last maxDays closed days) and forgets the new-user sets of days no row can need any more:
// every row still to be emitted is of an open day or of a day whose events are not late yet
// (≥ the day of watermark − allowed lateness), and reads new(d) and A(g, d) for d down to
// maxDays before it.
func (rs *retState) finishClosing(wm int64) {
	if len(rs.closing) > 0 {
		days := make([]retention.Day, 0, len(rs.closing))
		for d := range rs.closing {
			days = append(days, d)
		}
		slices.Sort(days)
		for _, d := range days {
			if gone, goneDay, evicted := rs.ring.Put(d, rs.closing[d]); evicted {
				rs.evicted = append(rs.evicted, goneDay)
				for ni, tbs := range gone.tables {
					for si := range tbs {
						for i := range tbs[si].sets {
							tbs[si].sets[i].Release(rs.nodes[ni].shards[si].sets)
						}
					}
					rs.free[ni] = append(rs.free[ni], tbs...)
				}
			}
		}
		clear(rs.closing)
	}
	earliest := retention.Never
	if wm != math.MaxInt64 {
		earliest = retention.DayOfMillis(wm-rs.latenessMS, rs.loc)
	}
	for _, in := range rs.a.instances {
		earliest = min(earliest, rs.dayOf(in.start))
	}
	if earliest == retention.Never {
		for _, fs := range rs.first {
			fs.Prune(retention.Never)
		}
		return
	}
	for _, fs := range rs.first {
		fs.Prune(earliest - retention.Day(rs.maxDays))
	}
	// Forget cached day boundaries of forgotten days.
	if len(rs.starts) > 4*rs.maxDays+64 {
		clear(rs.starts)
		clear(rs.dayMS)
	}
}

// sizeBytes estimates the memory of the first-seen state and the ring.
func (rs *retState) sizeBytes() uint64 {
	var n uint64
	for _, fs := range rs.first {
		n += fs.SizeBytes()
	}
	if rs.ring != nil {
		rs.ring.Each(func(_ retention.Day, ds *dayState) { n += ds.sizeBytes() })
	}
	return n
}

func (ds *dayState) sizeBytes() uint64 {
	var n uint64
	for _, tbs := range ds.tables {
		for i := range tbs {
			n += tbs[i].keys.sizeBytes() + uint64(cap(tbs[i].sets))*bitmapstate.StructBytes
			for j := range tbs[i].sets {
				n += tbs[i].sets[j].SizeBytes() - bitmapstate.StructBytes
			}
		}
	}
	return n
}

// Checkpoint layout of the retention state (after the caller's prefix; group keys use node bytes
// from 0, see checkpoint.go):
//
//	0xFE  day (4 bytes, big-endian, sign bit flipped)  node (2 bytes)  dims (4 bytes each)
//	      → the group's sets of the retention fields (bitmapstate.Set.AppendBinary each): a
//	        closed day in the ring, written once, deleted as one range when it leaves the ring
//	0xFF  field position (1 byte)  retention.FirstSeen key
//	      → that key's value (seen-id blocks and new-user sets of days)
const (
	keyRetentionDay = 0xFE
	keyFirstSeen    = 0xFF
)

func appendDayKey(dst, prefix []byte, d retention.Day) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, keyRetentionDay)
	return binary.BigEndian.AppendUint32(dst, uint32(d)^(1<<31))
}

// writeCheckpoint writes the retention state changed since the last checkpoint.
func (rs *retState) writeCheckpoint(prefix []byte, w StateWriter) error {
	for _, d := range rs.evicted {
		if err := w.DeleteRange(appendDayKey(nil, prefix, d), appendDayKey(nil, prefix, d+1)); err != nil {
			return err
		}
	}
	rs.evicted = rs.evicted[:0]
	var key, val []byte
	if rs.ring != nil {
		var err error
		rs.ring.Each(func(d retention.Day, ds *dayState) {
			if ds.written || err != nil {
				return
			}
			for ni, tbs := range ds.tables {
				for si := range tbs {
					tb := &tbs[si]
					for g := int32(0); g < tb.keys.n; g++ {
						key = appendDayKey(key[:0], prefix, d)
						key = binary.BigEndian.AppendUint16(key, uint16(ni))
						for _, x := range tb.keys.key(g) {
							key = binary.BigEndian.AppendUint32(key, x)
						}
						val = val[:0]
						for fp := range rs.fields {
							val = tb.sets[int(g)*len(rs.fields)+fp].AppendBinary(val)
						}
						if err = w.Set(key, val); err != nil {
							return
						}
					}
				}
			}
			ds.written = true
		})
		if err != nil {
			return err
		}
	}
	for fp, fs := range rs.first {
		head := append(append(slices.Clip(prefix), keyFirstSeen), byte(fp))
		err := fs.Changes(func(k, v []byte) error {
			key = append(append(key[:0], head...), k...)
			return w.Set(key, v)
		}, func(k []byte) error {
			key = append(append(key[:0], head...), k...)
			return w.DeleteRange(key, append(slices.Clip(key), 0))
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// restore loads one key written by writeCheckpoint (without the caller's prefix).
func (rs *retState) restore(key, val []byte) error {
	switch key[0] {
	case keyFirstSeen:
		if len(key) < 2 || int(key[1]) >= len(rs.first) {
			return fmt.Errorf("%w: first-seen key %x", errBadState, key)
		}
		if err := rs.first[key[1]].Load(key[2:], val); err != nil {
			return fmt.Errorf("%w: %v", errBadState, err)
		}
		return nil
	case keyRetentionDay:
		if len(key) < 7 || rs.ring == nil {
			return fmt.Errorf("%w: retention key %x", errBadState, key)
		}
		d := retention.Day(binary.BigEndian.Uint32(key[1:5]) ^ (1 << 31))
		ni := int(binary.BigEndian.Uint16(key[5:7]))
		if ni >= len(rs.nodes) || len(key) != 7+4*rs.nodes[ni].width {
			return fmt.Errorf("%w: retention key of %d bytes for node %d", errBadState, len(key), ni)
		}
		ds, ok := rs.ring.Get(d)
		if !ok {
			ds = rs.newDayState(0)
			ds.written = true
			if _, goneDay, evicted := rs.ring.Put(d, ds); evicted {
				return fmt.Errorf("%w: retention days %s and %s share a ring slot", errBadState, d, goneDay)
			}
		}
		dims := make([]uint32, rs.nodes[ni].width)
		for i := range dims {
			dims[i] = binary.BigEndian.Uint32(key[7+4*i:])
		}
		h := hashKey(append([]uint32{ds.salt}, dims...))
		tb := &ds.tables[ni][shardOf(h, rs.a.n)]
		if _, fresh := tb.keys.findOrInsert(dims, h); !fresh {
			return fmt.Errorf("%w: retention group stored twice", errBadState)
		}
		b := val
		for range rs.fields {
			tb.sets = append(tb.sets, bitmapstate.Set{})
			var err error
			if b, err = tb.sets[len(tb.sets)-1].ReadBinary(b); err != nil {
				return fmt.Errorf("%w: %v", errBadState, err)
			}
		}
		if len(b) != 0 {
			return fmt.Errorf("%w: %d trailing bytes", errBadState, len(b))
		}
		return nil
	}
	return fmt.Errorf("%w: key %x", errBadState, key)
}

// ImportFirstSeen records id of the distinct field with index field (Plan.DistinctFields) as
// seen on day (retention.Before: before every day), as when loading a history of users known
// before the stream starts; a later day is kept when the id is already known from an earlier
// one. It reports whether the id's first day changed. It fails when no new_users or retention
// measure reads the field.
func (a *Aggregator) ImportFirstSeen(field int, id uint32, day retention.Day) (bool, error) {
	if a.ret == nil {
		return false, fmt.Errorf("importing first-seen ids: cube %q has no new_users or retention measure", a.plan.Cube.Name)
	}
	fp := slices.Index(a.ret.fields, field)
	if fp < 0 {
		return false, fmt.Errorf("importing first-seen ids: no new_users or retention measure reads field %d", field)
	}
	_, changed := a.ret.first[fp].Observe(id, day)
	return changed, nil
}
