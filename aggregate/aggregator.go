// Package aggregate runs a compiled cube (cube.Plan) over decoded events: event-time windows
// (tumbling and cumulative) with watermarks and allowed lateness, and the two aggregation layers
// of the seed design (Kuaishou's real-time multi-dimensional platform on Flink):
//
//   - layer 1, full dimension: events are spread over N pre-aggregation workers (salt = the
//     event's position in the batch, the in-process form of random salting, so a hot key is
//     spread over every worker), each building partial aggregates keyed by (window instance,
//     all dimensions, slice); the partials are shuffled by hash(instance, dimensions) to N
//     full-aggregation shards that merge them into the cumulative state and record the delta:
//     the counts and sums of the flush and the ids new to each group;
//   - layer 2, reduced dimension: every grouping set that is not the full dimension set projects
//     layer 1's deltas (never raw events) onto its dimensions, pre-aggregates them in the layer-1
//     shard that produced them (the salt), and shuffles them by hash(instance, grouping-set key)
//     to its own N full-aggregation shards.
//
// A group's distinct ids are an exact bitmapstate.Set; since a reduced group's set is the union
// of its children's, feeding it the children's new ids keeps it exact.
//
// Emission follows Flink's early-fire and final-fire triggers: Emit writes the cumulative value
// of every group that changed since the last call, Advance closes the windows the watermark has
// passed and writes what changed since (so the last row written for a key is its final value).
// A row is not re-sent at close when its value did not change: a result store upserts by key,
// so it already holds the final value, and a window is known final from the watermark
// (end + allowed lateness ≤ watermark), not from a flag on each row. For the finest cuboids,
// where a group holds about one event, re-sending every row at close doubled the rows written.
package aggregate

import (
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cubed-olap/cubed/bitmapstate"
	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
)

// Batch is a batch of decoded, dictionary-encoded events in row-major flat arrays.
type Batch struct {
	// Len is the number of events.
	Len int
	// Times are event times in Unix milliseconds.
	Times []int64
	// Dims holds Len × len(Plan.Dimensions) dictionary ids of the layer-1 dimension values.
	Dims []uint32
	// Values holds Len × len(Plan.ValueFields) numbers; NaN is a missing value.
	Values []float64
	// IDs holds Len × len(Plan.DistinctFields) dictionary ids; dictionary.NoID is no id.
	IDs []uint32
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.Len = 0
	b.Times, b.Dims, b.Values, b.IDs = b.Times[:0], b.Dims[:0], b.Values[:0], b.IDs[:0]
}

// Append adds one event; the slices are copied.
func (b *Batch) Append(t int64, dims []uint32, values []float64, ids []uint32) {
	b.Len++
	b.Times = append(b.Times, t)
	b.Dims = append(b.Dims, dims...)
	b.Values = append(b.Values, values...)
	b.IDs = append(b.IDs, ids...)
}

// Row is one emitted result. The aggregator reuses it: copy what you keep after EmitFunc returns.
type Row struct {
	// Window indexes Plan.Windows; GroupingSet indexes Plan.GroupingSets.
	Window, GroupingSet int
	// Start and End bound the window (End = the step's end for a cumulative window), Unix ms.
	Start, End int64
	// Dims are dictionary ids of the grouping set's dimension values, in GroupingSet.Dims order.
	Dims []uint32
	// Values are the measures in Plan.Measures order; NaN is null.
	Values []float64
}

// EmitFunc receives emitted rows.
type EmitFunc func(r *Row)

// Option configures an Aggregator.
type Option func(*Aggregator)

// WithWorkers sets the number of pre-aggregation workers and full-aggregation shards per layer.
// This overrides the default of runtime.GOMAXPROCS(0).
func WithWorkers(n int) Option {
	return func(a *Aggregator) {
		if n > 0 {
			a.n = n
		}
	}
}

const noSlice = math.MaxInt32

// Aggregator is the two-layer aggregation graph of one cube. Process, Advance, Emit and Stats
// must be called from one goroutine; Process uses N goroutines inside.
type Aggregator struct {
	plan   *cube.Plan
	n      int
	layout cellLayout
	nd     int // layer-1 key width (dimensions)
	ndf    int // distinct fields
	nv     int // value fields
	wins   []windower

	instMu    sync.RWMutex // guards instByKey, instances, nextInst
	instByKey map[instKey]*instance
	instances map[uint32]*instance
	nextInst  uint32

	watermark int64
	maxTime   int64

	layer1 *node
	layer2 []*node // grouping sets other than the full dimension set
	all    []*node // layer1, then layer2 (see nodes)

	pre  []*preWorker
	full []*fullWorker

	rowScratch Row
	prefix     []uint64
	order      []int32

	// closedSinceCheckpoint lists the instances closed since the last WriteCheckpoint.
	closedSinceCheckpoint []instKey

	// Block state store (see store.go).
	reader      StateReader
	statePrefix []byte
	memoryLimit uint64
	errMu       sync.Mutex
	err         error
	restoring   restoreState
	evictions   int // blocks evicted
	loads       atomic.Int64

	ret *retState // new users and retention (retention.go); nil without such measures
}

type instKey struct {
	window int
	start  int64
}

// instance is one window instance [start, end) of one window spec.
type instance struct {
	id           uint32
	window       int
	start, end   int64
	slices       int32
	closedSlices int32 // slices [0, closedSlices) are past watermark + lateness
	lastStep     int32 // highest step whose row exists (the step holding the max event time)
}

// node is one aggregation node: layer 1, or one grouping set of layer 2.
type node struct {
	gs      int   // grouping set emitted from this node, -1 for none
	width   int   // key width
	project []int // layer 2: positions of the key in the layer-1 key
	shards  []*shard
}

type shard struct {
	node   int // index in Aggregator.nodes
	tables map[uint32]*instTable
	pool   []*instTable      // released tables kept for reuse, at most peak of them
	peak   int               // most tables live at once
	sets   *bitmapstate.Pool // array memory of the shard's distinct sets, recycled across windows
	last   *instTable        // the table prefetch found last, nil when released
}

// group is the state of one group in one window instance.
type group struct {
	head     int32 // newest slice record (records are linked by descending slice), -1 none
	minDirty int32 // lowest slice changed since the last emission, noSlice when clean
	emitted  int32 // highest step emitted, -1 none
	maxSlice int32
	ckDirty  bool // changed since the last checkpoint (listed in instTable.ckDirty)
}

// instTable holds the groups of one window instance in one shard of one node.
//
// Slice records live in recs with stride 3+cells: [slice, next record, open-set block, cells…].
// For cumulative windows a record keeps, while its slice is open (not yet past watermark +
// lateness), the ids first seen in it, so that an out-of-order event can move an id to an
// earlier slice; closed slices keep only their counts.
type instTable struct {
	inst        *instance
	node        int               // index in Aggregator.nodes
	setPool     *bitmapstate.Pool // the shard's
	keys        keyTable
	groups      []group
	recs        []uint64
	sets        []bitmapstate.Set // per group × distinct field: every id of the instance
	open        []bitmapstate.Set // blocks of ndf sets
	openFree    []int32
	dirty       []int32
	ckDirty     []int32 // groups changed since the last checkpoint
	emittedStep int32
}

const (
	recSlice = 0
	recNext  = 1
	recOpen  = 2
	recCells = 3
)

// New builds the aggregator of p.
func New(p *cube.Plan, opts ...Option) *Aggregator {
	a := &Aggregator{
		plan:      p,
		n:         runtime.GOMAXPROCS(0),
		layout:    newCellLayout(p),
		nd:        len(p.Dimensions),
		ndf:       len(p.DistinctFields),
		nv:        len(p.ValueFields),
		instByKey: map[instKey]*instance{},
		instances: map[uint32]*instance{},
		watermark: math.MinInt64,
		maxTime:   math.MinInt64,
	}
	for _, o := range opts {
		o(a)
	}
	for _, w := range p.Windows {
		a.wins = append(a.wins, newWindower(w, p.Cube.Timezone, p.Cube.EventTime.AllowedLateness))
	}
	a.layer1 = a.newNode(-1, a.nd, nil)
	for i, gs := range p.GroupingSets {
		if len(gs.Dims) == a.nd {
			a.layer1.gs = i
			continue
		}
		a.layer2 = append(a.layer2, a.newNode(i, len(gs.Dims), gs.Project))
	}
	a.all = append([]*node{a.layer1}, a.layer2...)
	for ni, nd := range a.nodes() {
		for _, sh := range nd.shards {
			sh.node = ni
		}
	}
	for w := 0; w < a.n; w++ {
		pw := &preWorker{a: a, wins: append([]windower(nil), a.wins...), out: make([]partialTable, a.n),
			cache: make([]instCache, len(a.wins)), key: make([]uint32, a.nd+2)}
		for d := range pw.out {
			pw.out[d] = newPartialTable(a.nd+2, a.layout.n)
		}
		a.pre = append(a.pre, pw)
		fw := &fullWorker{a: a, l2out: make([][]partialTable, len(a.layer2)), key: make([]uint32, a.nd+2)}
		for j, nd := range a.layer2 {
			fw.l2out[j] = make([]partialTable, a.n)
			for e := range fw.l2out[j] {
				fw.l2out[j][e] = newPartialTable(nd.width+2, a.layout.n)
			}
		}
		a.full = append(a.full, fw)
	}
	a.ret = newRetState(a)
	return a
}

func (a *Aggregator) newNode(gs, width int, project []int) *node {
	n := &node{gs: gs, width: width, project: project}
	for i := 0; i < a.n; i++ {
		n.shards = append(n.shards, &shard{tables: map[uint32]*instTable{}, sets: &bitmapstate.Pool{}})
	}
	return n
}

// Watermark returns the watermark last passed to Advance (math.MinInt64 before).
func (a *Aggregator) Watermark() int64 { return a.watermark }

// MaxEventTime returns the largest event time processed (math.MinInt64 before any).
func (a *Aggregator) MaxEventTime() int64 { return a.maxTime }

// Process aggregates a batch (one flush through both layers) and returns, in ascending order,
// the indices of the events that were late for at least one window: their slice had already
// closed (slice end + allowed lateness ≤ watermark). A late event still counts in the windows
// for which it is not late.
func (a *Aggregator) Process(b *Batch, late []int) []int {
	if b.Len == 0 {
		return late
	}
	if a.ret != nil {
		a.ret.observe(b)
	}
	n := a.n
	chunk := (b.Len + n - 1) / n
	a.parallel(func(w int) {
		lo, hi := w*chunk, (w+1)*chunk
		if hi > b.Len {
			hi = b.Len
		}
		a.pre[w].run(b, lo, hi)
	})
	a.parallel(func(d int) { a.full[d].mergeLayer1(d) })
	if len(a.layer2) > 0 {
		a.parallel(func(e int) { a.full[e].mergeLayer2(e) })
	}
	for _, pw := range a.pre {
		for d := range pw.out {
			pw.out[d].reset()
		}
		late = append(late, pw.late...)
		pw.late = pw.late[:0]
		if pw.maxTime > a.maxTime {
			a.maxTime = pw.maxTime
		}
	}
	for _, fw := range a.full {
		for _, outs := range fw.l2out {
			for e := range outs {
				outs[e].reset()
			}
		}
	}
	a.updateSteps()
	if a.ret != nil {
		a.ret.afterProcess()
	}
	return late
}

func (a *Aggregator) parallel(fn func(i int)) {
	if a.n == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < a.n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	wg.Wait()
}

// updateSteps moves each cumulative instance's last step to the step holding the max event time.
func (a *Aggregator) updateSteps() {
	for _, in := range a.instances {
		last := in.slices - 1
		if a.maxTime < in.end {
			last = a.wins[in.window].slice(in.start, a.maxTime)
		}
		if last > in.lastStep {
			in.lastStep = last
		}
	}
}

// instanceFor returns the instance of window w starting at start, creating it.
func (a *Aggregator) instanceFor(w int, start, end int64) *instance {
	k := instKey{w, start}
	a.instMu.RLock()
	in := a.instByKey[k]
	a.instMu.RUnlock()
	if in != nil {
		return in
	}
	a.instMu.Lock()
	defer a.instMu.Unlock()
	if in = a.instByKey[k]; in != nil {
		return in
	}
	a.nextInst++
	win := &a.wins[w]
	in = &instance{id: a.nextInst, window: w, start: start, end: end, slices: win.numSlices(start, end), lastStep: -1}
	a.instByKey[k] = in
	a.instances[in.id] = in
	return in
}

// partialTable is a pre-aggregation buffer: partial cells and id lists keyed by
// [instance, dimensions…, slice].
type partialTable struct {
	keys  keyTable
	hs    []uint64 // per entry: hashKey of the key without its slice (instance, dimensions…)
	cells []uint64
	head  []int32
	ids   []idEntry
	ncell int
}

type idEntry struct {
	id    uint32
	field int32
	next  int32
}

func newPartialTable(width, ncell int) partialTable {
	return partialTable{keys: newKeyTable(width), ncell: ncell}
}

// entry returns the partial for key, whose prefix without the slice hashes to h, creating it
// with identity cells.
func (p *partialTable) entry(key []uint32, h uint64, l *cellLayout) int32 {
	e, fresh := p.keys.findOrInsert(key, withSlice(h, key[len(key)-1]))
	if fresh {
		n := len(p.cells)
		p.cells = append(p.cells, make([]uint64, p.ncell)...)
		l.init(p.cells[n:])
		p.head = append(p.head, -1)
		p.hs = append(p.hs, h)
	}
	return e
}

func (p *partialTable) addID(e int32, f int, id uint32) {
	p.ids = append(p.ids, idEntry{id: id, field: int32(f), next: p.head[e]})
	p.head[e] = int32(len(p.ids) - 1)
}

func (p *partialTable) reset() {
	p.keys.reset()
	p.hs = p.hs[:0]
	p.cells = p.cells[:0]
	p.head = p.head[:0]
	p.ids = p.ids[:0]
}

type instCache struct {
	start int64
	inst  *instance
}

// preWorker is one layer-1 pre-aggregation worker.
type preWorker struct {
	a       *Aggregator
	wins    []windower
	cache   []instCache
	out     []partialTable // per layer-1 shard
	key     []uint32
	late    []int
	maxTime int64
}

func (pw *preWorker) run(b *Batch, lo, hi int) {
	a := pw.a
	nd, nv, ndf := a.nd, a.nv, a.ndf
	key := pw.key
	pw.maxTime = math.MinInt64
	wm := a.watermark
	for i := lo; i < hi; i++ {
		t := b.Times[i]
		if t > pw.maxTime {
			pw.maxTime = t
		}
		dims := b.Dims[i*nd : i*nd+nd]
		values := b.Values[i*nv : i*nv+nv]
		ids := b.IDs[i*ndf : i*ndf+ndf]
		isLate := false
		for w := range pw.wins {
			win := &pw.wins[w]
			start, end := win.bounds(t)
			s := win.slice(start, t)
			if wm != math.MinInt64 && win.sliceEnd(start, end, s)+win.latenessMS <= wm {
				isLate = true
				continue
			}
			c := &pw.cache[w]
			if c.inst == nil || c.start != start {
				c.inst, c.start = a.instanceFor(w, start, end), start
			}
			key[0] = c.inst.id
			copy(key[1:], dims)
			key[nd+1] = uint32(s)
			h := hashKey(key[:nd+1])
			p := &pw.out[shardOf(h, a.n)]
			e := p.entry(key, h, &a.layout)
			a.layout.addEvent(p.cells[int(e)*p.ncell:int(e+1)*p.ncell], values)
			for f, id := range ids {
				if id != dictionary.NoID {
					p.addID(e, f, id)
				}
			}
		}
		if isLate {
			pw.late = append(pw.late, i)
		}
	}
}

func shardOf(h uint64, n int) int {
	return int((h >> 32) * uint64(n) >> 32)
}

// fullWorker runs the full-aggregation step of shard d of each layer.
type fullWorker struct {
	a       *Aggregator
	l2out   [][]partialTable // [layer-2 node][destination shard]
	key     []uint32
	delta   []idEntry
	scratch mergeScratch
}

// prefetchDistance is how many partials ahead of the one being merged the merge loops prefetch
// the slot their group's lookup will read (keyTable.prefetch).
const prefetchDistance = 8

// mergeLayer1 merges every pre-aggregation worker's partials for shard d into layer 1 and
// pre-aggregates the resulting deltas for layer 2.
func (fw *fullWorker) mergeLayer1(d int) {
	a := fw.a
	sh := a.layer1.shards[d]
	for _, pw := range a.pre {
		p := &pw.out[d]
		for e := int32(0); e < p.keys.n; e++ {
			if f := e + prefetchDistance; f < p.keys.n {
				sh.prefetch(p.keys.key(f)[0], p.hs[f])
			}
			k := p.keys.key(e)
			cells := p.cells[int(e)*p.ncell : int(e+1)*p.ncell]
			fw.delta = fw.delta[:0]
			a.mergePartial(sh, k, p.hs[e], cells, p, e, &fw.scratch, &fw.delta)
			if len(a.layer2) == 0 {
				continue
			}
			// Layer-2 pre-aggregation of this delta, salted by the producing shard d.
			for j, nd := range a.layer2 {
				gk := fw.key[:nd.width+2]
				gk[0] = k[0]
				for x, pos := range nd.project {
					gk[1+x] = k[1+pos]
				}
				gk[nd.width+1] = k[a.nd+1]
				gh := hashKey(gk[:nd.width+1])
				dst := &fw.l2out[j][shardOf(gh, a.n)]
				ge := dst.entry(gk, gh, &a.layout)
				a.layout.merge(dst.cells[int(ge)*dst.ncell:int(ge+1)*dst.ncell], cells)
				for _, de := range fw.delta {
					dst.addID(ge, int(de.field), de.id)
				}
			}
		}
	}
}

// mergeLayer2 merges every layer-1 shard's layer-2 partials for shard e.
func (fw *fullWorker) mergeLayer2(e int) {
	a := fw.a
	for j, nd := range a.layer2 {
		sh := nd.shards[e]
		for _, src := range a.full {
			p := &src.l2out[j][e]
			for x := int32(0); x < p.keys.n; x++ {
				if f := x + prefetchDistance; f < p.keys.n {
					sh.prefetch(p.keys.key(f)[0], p.hs[f])
				}
				a.mergePartial(sh, p.keys.key(x), p.hs[x], p.cells[int(x)*p.ncell:int(x+1)*p.ncell], p, x, &fw.scratch, nil)
			}
		}
	}
}

// prefetch prefetches the slot where the lookup of a group hashing to h starts in instance
// inst's table of sh, when the table exists (keyTable.prefetch).
func (sh *shard) prefetch(inst uint32, h uint64) {
	t := sh.last
	if t == nil || t.inst.id != inst {
		if t = sh.tables[inst]; t == nil {
			return
		}
		sh.last = t
	}
	t.keys.prefetch(h)
}

func (sh *shard) table(a *Aggregator, inst uint32, width int) *instTable {
	if t := sh.tables[inst]; t != nil {
		return t
	}
	a.instMu.RLock()
	in := a.instances[inst]
	a.instMu.RUnlock()
	var t *instTable
	if n := len(sh.pool); n > 0 {
		t = sh.pool[n-1]
		sh.pool = sh.pool[:n-1]
	} else {
		t = &instTable{keys: newKeyTable(width)}
	}
	t.inst = in
	t.node = sh.node
	t.setPool = sh.sets
	t.emittedStep = -1
	sh.tables[inst] = t
	sh.peak = max(sh.peak, len(sh.tables))
	return t
}

// reserve makes room in t for n more groups of one slice record each (stride words) and their
// ndf distinct sets, so that a restore appends them without growing the arrays step by step.
func (t *instTable) reserve(n, ndf, stride int) {
	t.keys.reserve(n)
	t.groups = slices.Grow(t.groups, n)
	t.sets = slices.Grow(t.sets, n*ndf) // past len: zero Sets, empty as growSets requires
	t.recs = slices.Grow(t.recs, n*stride)
	t.dirty = slices.Grow(t.dirty, n)
}

// release returns t's memory to the shard's pool.
func (sh *shard) release(t *instTable) {
	delete(sh.tables, t.inst.id)
	if sh.last == t {
		sh.last = nil
	}
	t.inst = nil
	t.keys.reset()
	t.groups = t.groups[:0]
	t.recs = t.recs[:0]
	for i := range t.sets {
		t.sets[i].Release(sh.sets)
	}
	for i := range t.open {
		t.open[i].Release(sh.sets)
	}
	t.sets = t.sets[:0]
	t.open = t.open[:0]
	t.openFree = t.openFree[:0]
	t.dirty = t.dirty[:0]
	t.ckDirty = t.ckDirty[:0]
	if len(sh.pool) < sh.peak {
		sh.pool = append(sh.pool, t)
	}
}

// mergePartial merges partial entry pe of p (key [instance, dims…, slice], cells) into its group
// in shard sh. h is hashKey of [instance, dims…], the hash of the group's key in its instance's
// table. New ids (and ids moved to an earlier slice) are appended to delta when it is not nil.
func (a *Aggregator) mergePartial(sh *shard, k []uint32, h uint64, cells []uint64, p *partialTable, pe int32, sc *mergeScratch, delta *[]idEntry) {
	width := len(k) - 2
	t := sh.table(a, k[0], width)
	slice := int32(k[width+1])
	g, fresh := t.keys.findOrInsert(k[1:width+1], h)
	if fresh {
		t.groups = append(t.groups, group{head: -1, minDirty: noSlice, emitted: -1, maxSlice: -1})
		t.sets = growSets(t.sets, a.ndf)
	}
	grp := &t.groups[g]
	r := a.record(t, grp, slice)
	a.layout.merge(t.recs[r+recCells:r+recCells+a.layout.n], cells)
	cumulative := a.wins[t.inst.window].stepMS > 0
	if p.head[pe] != -1 {
		a.mergeIDs(t, g, r, slice, p, pe, sc, cumulative, delta)
	}
	t.markCheckpointDirty(g)
	if grp.minDirty == noSlice {
		t.dirty = append(t.dirty, g)
	}
	if slice < grp.minDirty {
		grp.minDirty = slice
	}
}

// record returns the offset in t.recs of grp's record for slice, creating it.
func (a *Aggregator) record(t *instTable, grp *group, slice int32) int {
	stride := recCells + a.layout.n
	prev := -1
	for r := int(grp.head); r != -1; r = int(int64(t.recs[r+recNext])) {
		s := int32(t.recs[r+recSlice])
		if s == slice {
			return r
		}
		if s < slice {
			break
		}
		prev = r
	}
	r := len(t.recs)
	t.recs = append(t.recs, make([]uint64, stride)...)
	t.recs[r+recSlice] = uint64(slice)
	t.recs[r+recOpen] = uint64(math.MaxUint64) // -1
	a.layout.init(t.recs[r+recCells : r+stride])
	if prev == -1 {
		t.recs[r+recNext] = uint64(int64(grp.head))
		grp.head = int32(r)
	} else {
		t.recs[r+recNext] = t.recs[prev+recNext]
		t.recs[prev+recNext] = uint64(r)
	}
	if slice > grp.maxSlice {
		grp.maxSlice = slice
	}
	return r
}

// mergeScratch is a full-aggregation worker's reusable memory for mergeIDs.
type mergeScratch struct {
	ids   [][]uint32 // per distinct field
	added []uint32
	tmp   []uint32
	radix []uint32 // sortIDs scratch
}

// mergeIDs adds the ids of partial pe (seen in slice) to group g, whose record for slice is at
// r: per distinct field, the ids are sorted and added in one AddSorted, the newly seen ones
// counted in the slice's first-seen word (and, for cumulative windows, kept in the slice's
// open set). An id already in the group but first seen in a later, still open slice of a
// cumulative window moves to this slice. Changed ids are appended to delta when it is not nil.
func (a *Aggregator) mergeIDs(t *instTable, g int32, r int, slice int32, p *partialTable, pe int32, sc *mergeScratch, cumulative bool, delta *[]idEntry) {
	if len(sc.ids) < a.ndf {
		sc.ids = make([][]uint32, a.ndf)
	}
	for f := range sc.ids {
		sc.ids[f] = sc.ids[f][:0]
	}
	for ie := p.head[pe]; ie != -1; ie = p.ids[ie].next {
		f := p.ids[ie].field
		sc.ids[f] = append(sc.ids[f], p.ids[ie].id)
	}
	for f := 0; f < a.ndf; f++ {
		ids := sc.ids[f]
		if len(ids) == 0 {
			continue
		}
		dw := recCells + a.layout.distinct[f]
		set := &t.sets[int(g)*a.ndf+f]
		if set.HasEvicted() && !a.loadBlocks(t, g, f, set, ids) {
			continue
		}
		if len(ids) < 32 || !set.IsBig() {
			// Few ids or a small set: one by one, no sort.
			for _, x := range ids {
				if set.AddWith(t.setPool, x) {
					t.recs[r+dw]++
					if cumulative {
						t.openSet(a, r, f).AddWith(t.setPool, x)
					}
				} else if !cumulative || slice >= t.groups[g].maxSlice || !a.moveEarlier(t, g, r, slice, f, x) {
					continue
				}
				if delta != nil {
					*delta = append(*delta, idEntry{id: x, field: int32(f)})
				}
			}
			continue
		}
		sortIDs(ids, &sc.radix)
		ids = slices.Compact(ids)
		sc.added = set.AddSortedWith(t.setPool, ids, sc.added[:0])
		t.recs[r+dw] += uint64(len(sc.added))
		if cumulative && len(sc.added) > 0 {
			sc.tmp = t.openSet(a, r, f).AddSortedWith(t.setPool, sc.added, sc.tmp[:0])
		}
		if delta != nil {
			for _, x := range sc.added {
				*delta = append(*delta, idEntry{id: x, field: int32(f)})
			}
		}
		if !cumulative || slice >= t.groups[g].maxSlice || len(sc.added) == len(ids) {
			continue
		}
		// Out of order: ids already in the group may have been first seen in a later, still
		// open slice; they move here.
		j := 0
		for _, x := range ids {
			if j < len(sc.added) && sc.added[j] == x {
				j++
				continue
			}
			if a.moveEarlier(t, g, r, slice, f, x) && delta != nil {
				*delta = append(*delta, idEntry{id: x, field: int32(f)})
			}
		}
	}
}

// moveEarlier moves id x of field f, already in group g, to slice (record r) when it was first
// seen in a later slice that is still open, and reports whether it moved.
func (a *Aggregator) moveEarlier(t *instTable, g int32, r int, slice int32, f int, x uint32) bool {
	dw := recCells + a.layout.distinct[f]
	grp := &t.groups[g]
	for rr := int(grp.head); rr != -1; rr = int(int64(t.recs[rr+recNext])) {
		s := int32(t.recs[rr+recSlice])
		if s <= slice || s < t.inst.closedSlices {
			break // the rest are earlier, or closed and so earlier than any accepted event
		}
		ob := int64(t.recs[rr+recOpen])
		if ob < 0 {
			continue // no id first seen in this slice
		}
		if t.open[int(ob)*a.ndf+f].RemoveWith(t.setPool, x) {
			t.recs[rr+dw]--
			t.recs[r+dw]++
			t.openSet(a, r, f).AddWith(t.setPool, x)
			return true
		}
	}
	return false
}

// growSets extends sets by n empty sets (the ones past len were emptied by Release).
func growSets(sets []bitmapstate.Set, n int) []bitmapstate.Set {
	if l := len(sets); cap(sets)-l >= n {
		return sets[:l+n]
	}
	for i := 0; i < n; i++ {
		sets = append(sets, bitmapstate.Set{})
	}
	return sets
}

// openSet returns record r's open set of field f, allocating the record's block.
func (t *instTable) openSet(a *Aggregator, r, f int) *bitmapstate.Set {
	ob := int64(t.recs[r+recOpen])
	if ob < 0 {
		if n := len(t.openFree); n > 0 {
			ob = int64(t.openFree[n-1])
			t.openFree = t.openFree[:n-1]
		} else {
			ob = int64(len(t.open) / a.ndf)
			t.open = growSets(t.open, a.ndf)
		}
		t.recs[r+recOpen] = uint64(ob)
	}
	return &t.open[int(ob)*a.ndf+f]
}

// nodes returns layer 1 followed by layer 2's nodes.
func (a *Aggregator) nodes() []*node {
	return a.all
}

// Advance moves the watermark to wm (Unix ms; it never moves back) and closes every window
// instance whose end + allowed lateness ≤ wm, emitting to fn the rows of its groups that changed
// since the last emission (the final fire; for a cumulative window also the rows of the steps
// not reached before, up to the window's last) and dropping its state. Cumulative slices that can no longer change drop their open id sets.
func (a *Aggregator) Advance(wm int64, fn EmitFunc) {
	if wm <= a.watermark {
		return
	}
	a.watermark = wm
	var closing []*instance
	for _, in := range a.instances {
		win := &a.wins[in.window]
		if in.end+win.latenessMS <= wm {
			closing = append(closing, in)
			continue
		}
		if win.stepMS == 0 {
			continue
		}
		closed := in.closedSlices
		for closed < in.slices && win.sliceEnd(in.start, in.end, closed)+win.latenessMS <= wm {
			closed++
		}
		if closed > in.closedSlices {
			if a.ret != nil {
				a.ret.freeze(in, closed)
			}
			in.closedSlices = closed
			a.dropOpenSets(in)
		}
	}
	sortInstances(closing)
	for _, in := range closing {
		in.lastStep = in.slices - 1
		for _, nd := range a.nodes() {
			for si, sh := range nd.shards {
				if t := sh.tables[in.id]; t != nil {
					if nd.gs >= 0 {
						a.emitTable(nd, t, fn)
					}
					if a.ret != nil {
						a.ret.retire(in, nd, si, t)
					}
					sh.release(t)
				}
			}
		}
		a.closedSinceCheckpoint = append(a.closedSinceCheckpoint, instKey{in.window, in.start})
		a.instMu.Lock()
		delete(a.instances, in.id)
		delete(a.instByKey, instKey{in.window, in.start})
		a.instMu.Unlock()
		for _, pw := range a.pre {
			if c := &pw.cache[in.window]; c.inst == in {
				c.inst = nil
			}
		}
	}
	if a.ret != nil && len(closing) > 0 {
		a.ret.finishClosing(wm)
	}
}

func (a *Aggregator) dropOpenSets(in *instance) {
	stride := recCells + a.layout.n
	for _, nd := range a.nodes() {
		for _, sh := range nd.shards {
			t := sh.tables[in.id]
			if t == nil {
				continue
			}
			for r := 0; r < len(t.recs); r += stride {
				ob := int64(t.recs[r+recOpen])
				if ob >= 0 && int32(t.recs[r+recSlice]) < in.closedSlices {
					for f := 0; f < a.ndf; f++ {
						t.open[int(ob)*a.ndf+f].Release(t.setPool)
					}
					t.openFree = append(t.openFree, int32(ob))
					t.recs[r+recOpen] = uint64(math.MaxUint64)
				}
			}
		}
	}
}

// Emit writes to fn the current (early-fire) rows of window w's open instances: for every group
// that changed since the last emission, the rows of the changed steps, and for cumulative windows
// the rows of steps reached since (a cumulative row exists for every step from a group's first
// event up to the step holding the max event time).
func (a *Aggregator) Emit(w int, fn EmitFunc) {
	ins := make([]*instance, 0, 8)
	for _, in := range a.instances {
		if in.window == w {
			ins = append(ins, in)
		}
	}
	sortInstances(ins)
	for _, in := range ins {
		for _, nd := range a.nodes() {
			if nd.gs < 0 {
				continue
			}
			for _, sh := range nd.shards {
				if t := sh.tables[in.id]; t != nil {
					a.emitTable(nd, t, fn)
				}
			}
		}
	}
}

func sortInstances(ins []*instance) {
	for i := 1; i < len(ins); i++ {
		for j := i; j > 0 && (ins[j].window < ins[j-1].window || ins[j].window == ins[j-1].window && ins[j].start < ins[j-1].start); j-- {
			ins[j], ins[j-1] = ins[j-1], ins[j]
		}
	}
}

// emitTable emits the pending rows of t's groups.
func (a *Aggregator) emitTable(nd *node, t *instTable, fn EmitFunc) {
	in := t.inst
	last := in.lastStep
	if last < 0 {
		return
	}
	win := &a.wins[in.window]
	row := &a.rowScratch
	row.Window, row.GroupingSet, row.Start = in.window, nd.gs, in.start
	if cap(row.Values) < len(a.layout.measures) {
		row.Values = make([]float64, len(a.layout.measures))
	}
	row.Values = row.Values[:len(a.layout.measures)]
	if len(a.prefix) < a.layout.n {
		a.prefix = make([]uint64, a.layout.n)
	}
	prefix := a.prefix[:a.layout.n]
	emitGroup := func(g int32) bool {
		grp := &t.groups[g]
		from := grp.emitted + 1
		if grp.minDirty < from {
			from = grp.minDirty
		}
		if from > last || grp.head < 0 {
			return grp.minDirty != noSlice && grp.minDirty > last
		}
		if a.ret != nil && (grp.minDirty != noSlice || grp.emitted < 0) {
			// A group unchanged since its last emission keeps its new-user and retention
			// counts: every input they read marks it changed (retention.go).
			a.ret.fill(nd, t, g)
		}
		// Records ascending by slice.
		a.order = a.order[:0]
		for r := int(grp.head); r != -1; r = int(int64(t.recs[r+recNext])) {
			a.order = append(a.order, int32(r))
		}
		a.layout.init(prefix)
		row.Dims = t.keys.key(g)
		i := len(a.order) - 1
		first := int32(t.recs[int(a.order[i])+recSlice])
		for k := first; k <= last; k++ {
			for i >= 0 && int32(t.recs[int(a.order[i])+recSlice]) == k {
				r := int(a.order[i])
				a.layout.mergeAll(prefix, t.recs[r+recCells:r+recCells+a.layout.n])
				i--
			}
			if k >= from {
				row.End = win.sliceEnd(in.start, in.end, k)
				a.layout.values(prefix, row.Values)
				fn(row)
			}
		}
		grp.emitted = last
		grp.minDirty = noSlice
		return false
	}
	if last > t.emittedStep {
		for g := range t.groups {
			emitGroup(int32(g))
		}
		t.dirty = t.dirty[:0]
		t.emittedStep = last
		return
	}
	keep := t.dirty[:0]
	for _, g := range t.dirty {
		if emitGroup(g) {
			keep = append(keep, g)
		}
	}
	t.dirty = keep
}

// OpenWindows returns the number of open window instances (cheap; Stats walks the state).
func (a *Aggregator) OpenWindows() int { return len(a.instances) }

// Stats describes the aggregator's state.
type Stats struct {
	// Instances is the number of open window instances.
	Instances int
	// Groups is the number of groups per node: index 0 is layer 1, then layer 2's grouping sets.
	Groups []int
	// StateBytes estimates the memory held by group state, id sets, key tables and the memory
	// pools kept for reuse.
	StateBytes uint64
	// EvictedBlocks is the number of distinct-set blocks held only in the state store now
	// (see Evict); BlockLoads counts the blocks read back since start.
	EvictedBlocks int
	BlockLoads    int64
	// Evictions counts blocks evicted since start.
	Evictions int
	// NodeStateBytes is StateBytes per node, in the order of Groups.
	NodeStateBytes []uint64
	// NodeGroupingSets is, in the order of Groups, the index into Plan.GroupingSets of the
	// grouping set each node emits; -1 for a layer 1 that emits none (no grouping set has every
	// layer-1 dimension).
	NodeGroupingSets []int
	// NodePreaggBytes is, in the order of Groups, the memory that the node's pre-aggregation
	// partial tables keep between batches (layer 1's in the pre-aggregation workers, a layer-2
	// node's in the layer-1 full-aggregation workers that feed it); not part of StateBytes.
	NodePreaggBytes []uint64
}

// Stats returns the current state sizes. It walks every window instance's tables (not the
// groups), so the pipeline calls it when it publishes its status, not per batch.
func (a *Aggregator) Stats() Stats {
	st := Stats{Instances: len(a.instances), BlockLoads: a.loads.Load(), Evictions: a.evictions}
	for _, nd := range a.nodes() {
		groups := 0
		var bytes uint64
		for _, sh := range nd.shards {
			bytes += uint64(sh.sets.Stats().FreeBytes)
			for _, t := range sh.tables {
				groups += len(t.groups)
				bytes += t.keys.sizeBytes() + uint64(cap(t.groups))*16 + uint64(cap(t.recs))*8
				for i := range t.sets {
					bytes += t.sets[i].SizeBytes()
					st.EvictedBlocks += t.sets[i].EvictedBlocks()
				}
				for i := range t.open {
					bytes += t.open[i].SizeBytes()
				}
			}
		}
		st.Groups = append(st.Groups, groups)
		st.NodeStateBytes = append(st.NodeStateBytes, bytes)
		st.NodeGroupingSets = append(st.NodeGroupingSets, nd.gs)
		st.StateBytes += bytes
	}
	st.NodePreaggBytes = make([]uint64, 1+len(a.layer2))
	for _, pw := range a.pre {
		for i := range pw.out {
			st.NodePreaggBytes[0] += pw.out[i].sizeBytes()
		}
	}
	for _, fw := range a.full {
		for j, outs := range fw.l2out {
			for i := range outs {
				st.NodePreaggBytes[1+j] += outs[i].sizeBytes()
			}
		}
	}
	if a.ret != nil {
		st.StateBytes += a.ret.sizeBytes()
	}
	return st
}

// sizeBytes is the memory the partial table holds.
func (p *partialTable) sizeBytes() uint64 {
	return p.keys.sizeBytes() + uint64(cap(p.cells))*8 + uint64(cap(p.head))*4 + uint64(cap(p.ids))*12
}
