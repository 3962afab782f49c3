package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cubed-olap/cubed/aggregate"
	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/source"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cubeRun is one cube's running graph. Everything but mu/st belongs to the cube's goroutine.
type cubeRun struct {
	s     *Service
	plan  *cube.Plan
	name  string
	table string
	agg   *aggregate.Aggregator
	// memLimit is the state memory budget in bytes (state.memory_limit); peakState the largest
	// state seen at a checkpoint.
	memLimit  int64
	peakState uint64
	// dictLimit bounds each of the cube's dictionary namespaces (state.dictionary_cache).
	dictLimit int64
	dictTrims int // namespaces trimmed to dictLimit after checkpoints
	dl        *source.DeadLetter
	dimNS     []dictionary.Namespace // per layer-1 dimension
	// dimVals caches each dimension namespace's Snapshot, refreshed when an id is past its end.
	dimVals [][]string
	idNS    []dictionary.Namespace // per distinct field

	workers []*decodeWorker
	batch   aggregate.Batch
	rowRec  []source.Record // batch row → its record
	late    []int
	// queues hold the decoded rows that watermark alignment keeps back, per partition; paused
	// are the partitions whose fetching is paused meanwhile.
	queues map[int32]*heldQueue
	paused map[int32]bool
	kafka  *source.Kafka

	peakOpen int // most window instances open at once (sampled after each batch)
	// dicts are the cube's dictionary namespaces, measured for the status (see graphStatus).
	dicts []dictNamespace

	parts    map[int32]*partState
	ooo      int64 // max out-of-orderness, ms
	idle     time.Duration
	lastEmit []time.Time // per window
	// pending holds the emitted rows not yet written, in compact form (pointer-free records,
	// dimension ids and measures in two arrays); its Dicts is dimVals.
	pending sink.IDRows
	order   rowOrder
	// sortedScratch, sortedIDs and sortedValues are sortPending's second arrays of records, ids
	// and measures; rowScratch and dimArena hold pending in Row form for the embedded store
	// (embeddedRows).
	sortedScratch []sink.IDRow
	sortedIDs     []uint32
	sortedValues  []float64
	rowScratch    []sink.Row
	dimArena      []string
	pendingSorted bool // orderPending ran since pending was last emptied
	version       uint64
	peakPending   int // the most pending rows written at once
	// spill is set while advance runs the aggregator's emission: collect writes the pending
	// rows out every maxPendingRows (spillErr keeps the first error, which advance returns).
	spill struct {
		ctx context.Context
		now time.Time
		on  bool
		err error
	}

	lastRetention time.Time
	ck            checkpointState

	ch *chSink // the ClickHouse sink, when the model has one

	events, bad, lateN, rows uint64

	mu sync.Mutex // guards st, received and ck.offsets
	st cubeState
	// received is, per Kafka partition, the offset of the last record polled (redelivery.go).
	received map[int32]int64
}

// partState is the event-time progress of one source partition.
type partState struct {
	maxTime  int64 // max event time folded in (Unix ms); math.MinInt64 before the first row
	lastSeen time.Time
	offset   int64
	lag      int64
	lagKnown bool // lag comes from a fetch (source.Kafka.Lag), not the zero value
}

// partIdle reports whether partition p (its state ps) no longer holds the watermark or the
// alignment back: it delivered nothing for longer than the idle timeout, or it never
// delivered, has no rows waiting in its alignment queue, and the source's lag shows it has
// nothing to deliver (an empty partition, or one whose consumption starts at its end:
// source.Kafka learns both offsets at assignment) — it holds nothing back until its first row,
// like one idle for the timeout.
func (c *cubeRun) partIdle(p int32, ps *partState, now time.Time) bool {
	if now.Sub(ps.lastSeen) > c.idle {
		return true
	}
	if q := c.queues[p]; q != nil && q.len() > 0 {
		return false
	}
	return ps.maxTime == math.MinInt64 && ps.lagKnown && ps.lag == 0
}

type cubeState struct {
	watermark time.Time
	lastEmit  time.Time
	events    uint64
	bad       uint64
	late      uint64
	rows      uint64
	parts     []PartitionStatus
	stats     aggregate.Stats
	statsAt   time.Time
	nodes     []NodeStatus       // computed with stats
	dicts     []DictionaryStatus // computed with stats
	peakOpen  int
	sinkErr   string
}

// CubeStatus is one cube's entry in /api/v1/status.
type CubeStatus struct {
	Name        string            `json:"name"`              // the cube name
	Source      string            `json:"source"`            // "file:PATH" or "kafka:TOPIC"
	Events      uint64            `json:"events"`            // events aggregated
	BadEvents   uint64            `json:"bad_events"`        // records that did not decode (dead-lettered)
	LateEvents  uint64            `json:"late_events"`       // events late for at least one window (dead-lettered)
	EmittedRows uint64            `json:"emitted_rows"`      // result rows written to the sink
	Watermark   *time.Time        `json:"watermark"`         // event-time watermark; null before any event
	LastEmit    *time.Time        `json:"last_emit"`         // processing time of the last write; null before any
	Partitions  []PartitionStatus `json:"partitions"`        // source partitions (one for a file)
	Instances   int               `json:"open_windows"`      // window instances open now
	PeakOpen    int               `json:"peak_open_windows"` // most window instances open at once since start
	Groups      []int             `json:"groups"`            // groups per node: layer 1, then layer 2 by grouping set
	StateBytes  uint64            `json:"state_bytes"`       // estimated bytes of aggregation state in memory
	MemoryLimit int64             `json:"memory_limit"`      // state memory budget in bytes (state.memory_limit)
	// EvictedBlocks is the number of distinct-set blocks held only in the state store (over budget).
	EvictedBlocks int                `json:"evicted_blocks"`
	DeadLetter    string             `json:"dead_letter"` // path of the dead-letter file
	Checkpoints   []CheckpointStatus `json:"checkpoints"` // the last (up to 20) checkpoints
	// Nodes are the live counters of the compiled graph's nodes, in cube.Plan.Graph order,
	// refreshed at most once a second.
	Nodes []NodeStatus `json:"nodes"`
	// Dictionaries are the sizes of the cube's dictionary namespaces, refreshed with Nodes.
	Dictionaries []DictionaryStatus `json:"dictionaries"`
	SinkError    string             `json:"sink_error,omitempty"` // the last sink error, empty once a write succeeds
	// SinkBufferedRows are result rows emitted but not yet stored in ClickHouse (0 without a
	// ClickHouse sink); while ClickHouse is down they stay flat, as the cube stops consuming.
	SinkBufferedRows int `json:"sink_buffered_rows"`
}

// PartitionStatus is one source partition's progress.
type PartitionStatus struct {
	Partition    int32      `json:"partition"`      // Kafka partition (0 for a file)
	Offset       int64      `json:"offset"`         // offset (or file line) of the last record aggregated
	Lag          int64      `json:"lag"`            // records behind the high watermark (Kafka)
	MaxEventTime *time.Time `json:"max_event_time"` // largest event time seen; null before any
	Idle         bool       `json:"idle"`           // no record for longer than idle_timeout, or none yet and none to fetch
	// Paused is set while watermark alignment holds the partition back.
	Paused bool `json:"paused"`
}

// decodeWorker decodes one chunk of a record batch.
type decodeWorker struct {
	dec    *source.Decoder
	ev     source.Event
	batch  aggregate.Batch
	recIdx []int32
	bad    []badRecord
	dims   []uint32
	ids    []uint32
	// dimCache holds, per dimension, the ids of values this worker has seen: dimension values
	// repeat on nearly every event, so most lookups skip the shared dictionary's locks.
	dimCache []*valueCache
	// The chunk's distinct-field values wait here for one Namespace.IDs call per field, which
	// overlaps their lookups' memory loads: their bytes (copied, as the decoder reuses its
	// buffers), and per field the batch row and bytes of each.
	idBytes []byte
	idRefs  [][]idRef
	idVals  [][]byte
	idOut   []uint32
}

// idRef is a distinct-field value waiting in decodeWorker.idBytes[lo:hi] for the id of batch
// row row.
type idRef struct{ row, lo, hi int32 }

type badRecord struct {
	rec int
	err error
}

func newCubeRun(s *Service, p *cube.Plan) (*cubeRun, error) {
	c := &cubeRun{
		s: s, plan: p, name: p.Cube.Name, table: p.Cube.Sink.Table,
		agg:       aggregate.New(p, aggregate.WithWorkers(s.opts.Workers)),
		memLimit:  p.Cube.MemoryLimitBytes(),
		dictLimit: p.Cube.DictionaryCacheBytes(),
		parts:     map[int32]*partState{},
		ooo:       p.Cube.EventTime.MaxOutOfOrderness.Milliseconds(),
		idle:      p.Cube.EventTime.IdleTimeout,
		lastEmit:  make([]time.Time, len(p.Windows)),
		version:   uint64(time.Now().UnixNano()),
	}
	if c.table == "" {
		c.table = c.name
	}
	c.agg.SetStateStore(statePrefix(c.name), func(key []byte) ([]byte, error) {
		v, closer, err := s.db.Get(key)
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		return append([]byte(nil), v...), nil
	}, uint64(c.memLimit))
	c.ck.every = s.opts.CheckpointEvery
	if c.ck.every <= 0 {
		c.ck.every = DefaultCheckpointEvery
	}
	if p.Cube.CheckpointEvery > 0 {
		c.ck.every = p.Cube.CheckpointEvery
	}
	for _, d := range p.Dimensions {
		c.dimNS = append(c.dimNS, s.dict.Namespace(c.name+"/dim/"+p.Cube.Dimensions[d].Name))
		c.dimNS[len(c.dimNS)-1].SetCacheLimit(c.dictLimit)
	}
	c.dimVals = make([][]string, len(c.dimNS))
	c.pending.Dicts = c.dimVals
	for _, f := range p.DistinctFields {
		c.idNS = append(c.idNS, s.dict.Namespace(c.name+"/id/"+f))
		c.idNS[len(c.idNS)-1].SetCacheLimit(c.dictLimit)
	}
	for w := 0; w < s.opts.Workers; w++ {
		dec, err := source.NewDecoder(p)
		if err != nil {
			return nil, fmt.Errorf("cube %q: %w", c.name, err)
		}
		dw := &decodeWorker{dec: dec, dims: make([]uint32, len(p.Dimensions)), ids: make([]uint32, len(p.DistinctFields))}
		for range p.Dimensions {
			dw.dimCache = append(dw.dimCache, newValueCache())
		}
		c.workers = append(c.workers, dw)
	}
	dl, err := source.OpenDeadLetter(filepath.Join(s.opts.DataDir, "deadletter", c.name+".jsonl"))
	if err != nil {
		return nil, fmt.Errorf("cube %q: %w", c.name, err)
	}
	c.dl = dl
	if err := c.openClickHouse(); err != nil {
		dl.Close()
		return nil, err
	}
	return c, nil
}

func (c *cubeRun) close() {
	c.closeClickHouse()
	c.abandonCheckpoint()
	if c.dl != nil {
		c.dl.Close()
	}
}

// setHeader gives every decoder the CSV header.
func (c *cubeRun) setHeader(cols []string) error {
	for _, w := range c.workers {
		if err := w.dec.SetHeader(cols); err != nil {
			return err
		}
	}
	return nil
}

// ingest decodes, encodes and aggregates one batch of records (one flush through both layers).
func (c *cubeRun) ingest(recs []source.Record) {
	if len(recs) == 0 && (!c.waiting() || c.stuck()) {
		return
	}
	n := len(c.workers)
	chunk := (len(recs) + n - 1) / n
	var wg sync.WaitGroup
	for w, dw := range c.workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(recs))
		if lo >= hi {
			dw.batch.Reset()
			dw.recIdx, dw.bad = dw.recIdx[:0], dw.bad[:0]
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.decodeChunk(dw, recs, lo, hi)
		}()
	}
	wg.Wait()

	c.batch.Reset()
	c.rowRec = c.rowRec[:0]
	for _, dw := range c.workers {
		appendBatch(&c.batch, &dw.batch)
		for _, i := range dw.recIdx {
			c.rowRec = append(c.rowRec, recs[i])
		}
		for _, br := range dw.bad {
			r := recs[br.rec]
			c.bad++
			c.s.metrics.badEvents.WithLabelValues(c.name).Inc()
			c.s.log.Warn("bad event", "cube", c.name, "partition", r.Partition, "offset", r.Offset, "err", br.err)
			if err := c.dl.Write(c.name, r.Partition, r.Offset, r.Value, br.err); err != nil {
				c.s.log.Error("writing dead letter", "cube", c.name, "err", err)
			}
			r.Release()
		}
	}
	if c.aligned() {
		c.align()
	}
	now := time.Now()
	for i, t := range c.batch.Times {
		r := &c.rowRec[i]
		ps := c.parts[r.Partition]
		if ps == nil {
			ps = &partState{maxTime: math.MinInt64}
			c.parts[r.Partition] = ps
		}
		if t > ps.maxTime {
			ps.maxTime = t
		}
		ps.lastSeen = now
		ps.offset = r.Offset
	}
	c.late = c.agg.Process(&c.batch, c.late[:0])
	c.peakOpen = max(c.peakOpen, c.agg.OpenWindows())
	for _, i := range c.late {
		r := c.rowRec[i]
		c.lateN++
		err := fmt.Errorf("late event: time %s is behind the watermark %s + allowed lateness",
			time.UnixMilli(c.batch.Times[i]).UTC().Format(time.RFC3339Nano), time.UnixMilli(c.agg.Watermark()).UTC().Format(time.RFC3339Nano))
		if werr := c.dl.Write(c.name, r.Partition, r.Offset, r.Value, err); werr != nil {
			c.s.log.Error("writing dead letter", "cube", c.name, "err", werr)
		}
	}
	c.s.metrics.lateEvents.WithLabelValues(c.name).Add(float64(len(c.late)))
	// Every record of the batch is now folded in or dead-lettered (those still held by
	// alignment are not in rowRec): their memory goes back to the source.
	for i := range c.rowRec {
		c.rowRec[i].Release()
	}
	c.events += uint64(c.batch.Len)
	c.s.metrics.events.WithLabelValues(c.name).Add(float64(c.batch.Len))
}

// appendBatch appends every row of src to dst.
func appendBatch(dst, src *aggregate.Batch) { appendRows(dst, src, 0, src.Len) }

// decodeChunk decodes records [lo, hi) of recs into dw.batch, with their dictionary ids; the
// records that fail to decode are listed in dw.bad.
func (c *cubeRun) decodeChunk(dw *decodeWorker, recs []source.Record, lo, hi int) {
	dw.batch.Reset()
	dw.recIdx, dw.bad = dw.recIdx[:0], dw.bad[:0]
	nf := len(c.idNS)
	if len(dw.idRefs) != nf {
		dw.idRefs = make([][]idRef, nf)
	}
	dw.idBytes = dw.idBytes[:0]
	for f := range dw.idRefs {
		dw.idRefs[f] = dw.idRefs[f][:0]
	}
	for i := lo; i < hi; i++ {
		if err := dw.dec.Decode(recs[i].Value, &dw.ev); err != nil {
			dw.bad = append(dw.bad, badRecord{i, err})
			continue
		}
		for j, v := range dw.ev.Dims {
			dw.dims[j] = dw.dimCache[j].id(v, c.dimNS[j])
		}
		for f, v := range dw.ev.IDs {
			dw.ids[f] = dictionary.NoID // or the id, set below
			if len(v) > 0 {
				l := len(dw.idBytes)
				dw.idBytes = append(dw.idBytes, v...)
				dw.idRefs[f] = append(dw.idRefs[f], idRef{int32(dw.batch.Len), int32(l), int32(len(dw.idBytes))})
			}
		}
		dw.batch.Append(dw.ev.Time, dw.dims, dw.ev.Values, dw.ids)
		dw.recIdx = append(dw.recIdx, int32(i))
	}
	for f, refs := range dw.idRefs {
		if len(refs) == 0 {
			continue
		}
		dw.idVals = dw.idVals[:0]
		for _, r := range refs {
			dw.idVals = append(dw.idVals, dw.idBytes[r.lo:r.hi:r.hi])
		}
		dw.idOut = slices.Grow(dw.idOut[:0], len(refs))[:len(refs)]
		c.idNS[f].IDs(dw.idVals, dw.idOut)
		for k, r := range refs {
			dw.batch.IDs[int(r.row)*nf+f] = dw.idOut[k]
		}
	}
}

// watermark is min over active partitions of (max event time) − max out-of-orderness; an idle
// partition (partIdle) does not hold it back, and an active one that has not delivered
// yet holds it at math.MinInt64. When every partition is idle the largest max event time counts.
func (c *cubeRun) watermark(now time.Time) int64 {
	wm, top := int64(math.MaxInt64), int64(math.MinInt64)
	active := false
	for p, ps := range c.parts {
		if ps.maxTime > top {
			top = ps.maxTime
		}
		if c.partIdle(p, ps, now) {
			continue
		}
		active = true
		if ps.maxTime < wm {
			wm = ps.maxTime
		}
	}
	if !active {
		wm = top
	}
	if wm == math.MinInt64 || wm == math.MaxInt64 {
		return math.MinInt64
	}
	return wm - c.ooo
}

// collect appends an emitted row to the pending rows: its record, dimension ids and measures,
// copied into arrays that are reused once the pending rows are written (no allocation of its
// own). Ids are resolved to strings only as the rows are written; collect refreshes the
// dictionary snapshot of a dimension whose new id it does not cover yet.
func (c *cubeRun) collect(r *aggregate.Row) {
	gs := c.plan.GroupingSets[r.GroupingSet]
	for i, id := range r.Dims {
		d := gs.Project[i]
		if int(id) >= len(c.dimVals[d]) {
			c.dimVals[d] = c.dimNS[d].Snapshot()
			if int(id) >= len(c.dimVals[d]) {
				panic(fmt.Sprintf("BUG: dimension id %d of %q not in the dictionary", id, gs.Names[i]))
			}
		}
	}
	c.version++
	p := &c.pending
	p.Rows = append(p.Rows, sink.IDRow{Start: r.Start, End: r.End, Version: c.version,
		IDs: int32(len(p.IDs)), Values: int32(len(p.Values)), Window: int32(r.Window), Set: uint16(r.GroupingSet)})
	p.IDs = append(p.IDs, r.Dims...)
	p.Values = append(p.Values, r.Values...)
	c.spillPending()
}

// embeddedRows returns the pending rows in Row form, for the embedded store: dimension values
// from the dictionary snapshots, measures pointing into the pending array. The rows and their
// Dims are reused by the next call.
func (c *cubeRun) embeddedRows() []sink.Row {
	p := &c.pending
	nm := len(c.plan.Measures)
	rows := c.rowScratch[:0]
	dims := c.dimArena[:0]
	for i := range p.Rows {
		r := &p.Rows[i]
		gs := c.plan.GroupingSets[r.Set]
		d0 := len(dims)
		for j, id := range p.IDs[r.IDs : int(r.IDs)+len(gs.Project)] {
			dims = append(dims, c.dimVals[gs.Project[j]][id])
		}
		rows = append(rows, sink.Row{Window: int(r.Window), GroupingSet: gs.ID, Start: r.Start, End: r.End,
			Dims: dims[d0:len(dims):len(dims)], Values: p.Values[r.Values : int(r.Values)+nm : int(r.Values)+nm],
			Version: r.Version})
	}
	c.rowScratch, c.dimArena = rows, dims
	return rows
}

// advance moves the watermark, early-fires windows whose emit_every has passed (when early is
// set) and writes pending rows.
func (c *cubeRun) advance(ctx context.Context, now time.Time, wm int64, early bool) error {
	if err := c.agg.Err(); err != nil {
		return fmt.Errorf("cube %q: %w (restart resumes from the last checkpoint)", c.name, err)
	}
	c.spill.ctx, c.spill.now, c.spill.on, c.spill.err = ctx, now, true, nil
	c.agg.Advance(wm, c.collect)
	if early {
		for w, spec := range c.plan.Windows {
			if now.Sub(c.lastEmit[w]) >= spec.EmitEvery {
				c.agg.Emit(w, c.collect)
				c.lastEmit[w] = now
			}
		}
	}
	c.spill.on, c.spill.ctx = false, nil
	if err := c.spill.err; err != nil {
		return err
	}
	if err := c.flush(ctx, now, wm == math.MaxInt64); err != nil {
		return err
	}
	c.applyRetention(now)
	return nil
}

// applyRetention deletes, once a minute, the result rows whose window ended more than
// sink.retention before the watermark.
func (c *cubeRun) applyRetention(now time.Time) {
	ret := c.plan.Cube.Sink.Retention
	wm := c.agg.Watermark()
	if ret <= 0 || wm == math.MinInt64 || wm == math.MaxInt64 || now.Sub(c.lastRetention) < time.Minute {
		return
	}
	c.lastRetention = now
	for w, spec := range c.plan.Windows {
		cutoff := wm - ret.Milliseconds() - spec.Granularity.NominalLength().Milliseconds()
		for _, gs := range c.plan.GroupingSets {
			if err := c.s.store.DeleteBefore(c.table, w, gs.ID, cutoff); err != nil {
				c.s.log.Error("applying result retention", "cube", c.name, "err", err)
			}
		}
	}
}

// maxPendingRows bounds the rows one emission holds before they are written: a window of
// millions of groups closing (or a restart's first early fire) is written in chunks of this
// many rows, about 60 MB of them, instead of being held whole. A variable for the tests.
var maxPendingRows = 1 << 18

// spillPending writes the pending rows (ClickHouse buffer, then the embedded store) while an
// emission is still running, once they reach maxPendingRows.
func (c *cubeRun) spillPending() {
	if !c.spill.on || c.spill.err != nil || len(c.pending.Rows) < maxPendingRows {
		return
	}
	c.spill.err = c.writePending(c.spill.ctx, c.spill.now, false)
}

// flush writes pending rows (writePending, force as there) and publishes the status.
func (c *cubeRun) flush(ctx context.Context, now time.Time, force bool) error {
	if err := c.writePending(ctx, now, force); err != nil {
		return err
	}
	c.publish(now)
	return nil
}

// writePending hands the pending rows to the ClickHouse buffer (toClickHouse, force as there),
// then writes them to the embedded store (unless the cube has none: sink.embedded false),
// retrying with backoff until it succeeds or ctx ends (rows are never dropped), and empties
// them.
func (c *cubeRun) writePending(ctx context.Context, now time.Time, force bool) error {
	n := len(c.pending.Rows)
	if err := c.toClickHouse(ctx, now, force); err != nil {
		return err
	}
	if n > 0 {
		c.peakPending = max(c.peakPending, n)
		embedded := !c.plan.Cube.Sink.NoEmbedded
		var rows []sink.Row
		if embedded {
			c.orderPending()
			rows = c.embeddedRows()
		}
		backoff := 100 * time.Millisecond
		for embedded {
			err := c.s.store.Write(c.table, rows)
			if err == nil {
				break
			}
			c.s.metrics.sinkErrors.WithLabelValues(c.name).Inc()
			c.s.log.Error("writing results", "cube", c.name, "rows", n, "err", err)
			c.mu.Lock()
			c.st.sinkErr = err.Error()
			c.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		c.rows += uint64(n)
		c.s.metrics.emittedRows.WithLabelValues(c.name).Add(float64(n))
		// rows (kept in rowScratch) point only into pending's measures and the dictionaries,
		// which outlive them: nothing to clear.
		c.pending.Rows, c.pending.IDs, c.pending.Values = c.pending.Rows[:0], c.pending.IDs[:0], c.pending.Values[:0]
		c.pendingSorted = false
		c.mu.Lock()
		c.st.lastEmit = now
		c.st.sinkErr = ""
		c.mu.Unlock()
	}
	return nil
}

// publish copies the loop's progress into the status snapshot.
func (c *cubeRun) publish(now time.Time) {
	wm := c.agg.Watermark()
	ended := wm == math.MaxInt64 // end of a file: every window closed
	if ended {
		wm = c.agg.MaxEventTime()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.peakOpen = c.peakOpen
	c.st.events, c.st.bad, c.st.late, c.st.rows = c.events, c.bad, c.lateN, c.rows
	if wm != math.MinInt64 && wm != math.MaxInt64 {
		c.st.watermark = time.UnixMilli(wm).UTC()
		c.s.metrics.watermark.WithLabelValues(c.name).Set(float64(wm) / 1000)
	}
	c.st.parts = c.st.parts[:0]
	for p, ps := range c.parts {
		st := PartitionStatus{Partition: p, Offset: ps.offset, Lag: ps.lag, Idle: c.partIdle(p, ps, now), Paused: c.paused[p]}
		if ps.maxTime != math.MinInt64 {
			t := time.UnixMilli(ps.maxTime).UTC()
			st.MaxEventTime = &t
		}
		c.st.parts = append(c.st.parts, st)
	}
	sort.Slice(c.st.parts, func(i, j int) bool { return c.st.parts[i].Partition < c.st.parts[j].Partition })
	if now.Sub(c.st.statsAt) >= time.Second || ended {
		c.st.stats = c.agg.Stats()
		c.st.statsAt = now
		c.st.nodes, c.st.dicts = c.graphStatus(c.st.stats)
		c.s.metrics.stateBytes.WithLabelValues(c.name).Set(float64(c.st.stats.StateBytes))
		for i, g := range c.st.stats.Groups {
			node := "layer1"
			if i > 0 {
				node = "layer2_" + strconv.Itoa(i-1)
			}
			c.s.metrics.groups.WithLabelValues(c.name, node).Set(float64(g))
		}
	}
}

func (c *cubeRun) status() CubeStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := CubeStatus{
		Name: c.name, Events: c.st.events, BadEvents: c.st.bad, LateEvents: c.st.late,
		EmittedRows: c.st.rows, Partitions: append([]PartitionStatus{}, c.st.parts...),
		Instances: c.st.stats.Instances, PeakOpen: c.st.peakOpen, Groups: c.st.stats.Groups, StateBytes: c.st.stats.StateBytes,
		MemoryLimit: c.memLimit, EvictedBlocks: c.st.stats.EvictedBlocks,
		DeadLetter: c.dl.Path(), SinkError: c.st.sinkErr, SinkBufferedRows: c.chBuffered(),
		Checkpoints: append([]CheckpointStatus{}, c.ck.history...),
		Nodes:       append([]NodeStatus{}, c.st.nodes...), Dictionaries: append([]DictionaryStatus{}, c.st.dicts...),
	}
	switch src := c.plan.Cube.Source; {
	case src.File != nil:
		st.Source = "file:" + src.File.Path
	case src.Kafka != nil:
		st.Source = "kafka:" + src.Kafka.Topic
	}
	if !c.st.watermark.IsZero() {
		t := c.st.watermark
		st.Watermark = &t
	}
	if !c.st.lastEmit.IsZero() {
		t := c.st.lastEmit
		st.LastEmit = &t
	}
	return st
}

func (c *cubeRun) summary() Summary {
	st := c.agg.Stats()
	return Summary{Cube: c.name, Events: c.events, BadEvents: c.bad, LateEvents: c.lateN, Rows: c.rows,
		PeakStateBytes: c.peakState, Evictions: st.Evictions, BlockLoads: st.BlockLoads, DictionaryTrims: c.dictTrims}
}

// runFile reads the cube's file to its end; the end of input moves the watermark to +∞, which
// closes every window. With early set, open windows early-fire on their emit_every ticks.
func (c *cubeRun) runFile(ctx context.Context, early bool) error {
	src := c.plan.Cube.Source
	var opts []source.FileOption
	if len(src.Columns) > 0 {
		opts = append(opts, source.WithColumns(src.Columns))
	}
	f, err := source.OpenFile(src.File.Path, src.Format, opts...)
	if err != nil {
		return err
	}
	defer f.Close()
	if src.Format == cube.FormatCSV {
		if err := c.setHeader(f.Header()); err != nil {
			return fmt.Errorf("reading %s: %w", src.File.Path, err)
		}
	}
	if c.ck.done {
		c.s.log.Info("file already replayed to its end (checkpoint)", "cube", c.name, "path", src.File.Path)
		return nil
	}
	line := c.ck.fileLine // lines up to here are in the restored state
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := f.Next(ctx, c.s.opts.BatchSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading %s: %w", src.File.Path, err)
		}
		if n := len(recs); n > 0 && recs[0].Offset <= c.ck.fileLine {
			i := 0
			for i < n && recs[i].Offset <= c.ck.fileLine {
				i++
			}
			recs = recs[i:]
		}
		if n := len(recs); n > 0 {
			line = recs[n-1].Offset
		}
		c.ingest(recs)
		now := time.Now()
		if errors.Is(err, io.EOF) {
			if err := c.advance(ctx, now, math.MaxInt64, false); err != nil {
				return err
			}
			return c.maybeCheckpoint(now, true, line, true)
		}
		if err := c.advance(ctx, now, c.watermark(now), early); err != nil {
			return err
		}
		if err := c.maybeCheckpoint(now, false, line, false); err != nil {
			return err
		}
	}
}

// runKafka consumes the cube's topic until ctx ends.
func (c *cubeRun) runKafka(ctx context.Context) error {
	src := c.plan.Cube.Source
	if src.Format == cube.FormatCSV {
		if err := c.setHeader(src.Columns); err != nil {
			return err
		}
	}
	brokers := src.Kafka.Brokers
	if len(c.s.opts.Brokers) > 0 {
		brokers = c.s.opts.Brokers
	}
	k, err := source.NewKafka(source.KafkaConfig{Brokers: brokers, Topic: src.Kafka.Topic,
		Group: src.Kafka.Group, Start: src.Kafka.Start, Logger: c.s.log.With("cube", c.name),
		AdjustOffsets: c.resumeOffsets, Opts: []kgo.Opt{kgo.InstanceID(c.instanceID())}})
	if err != nil {
		return err
	}
	defer k.Close()
	c.kafka = k
	c.ck.async = true
	for {
		if ctx.Err() != nil {
			return nil
		}
		// Take no more records than the next flush can hold besides the rows waiting in
		// alignment queues: the rest of a fetch stays in franz-go's buffer (which fetches no
		// more until it is drained) rather than in the queues. Polling everything fetched
		// made the queues grow by a fetch less a batch at every poll of a backlog, to about
		// 137,000 rows (and their records' decompressed batches) before the partitions were
		// paused (BenchmarkKafkaToClickHouse). With a full batch waiting that can go, the
		// queues feed the flush without a poll; when every waiting row is held back by the
		// alignment bound (stuck), only new records can free them.
		var (
			recs []source.Record
			err  error
		)
		room := c.s.opts.BatchSize - c.heldRows()
		if stuck := c.stuck(); room > 0 || stuck {
			wait := 250 * time.Millisecond
			if c.waiting() && !stuck {
				wait = time.Millisecond // waiting rows can go: do not block on new ones
			}
			if room <= 0 {
				room = c.s.opts.BatchSize
			}
			pctx, cancel := context.WithTimeout(ctx, wait)
			recs, err = k.PollUpTo(pctx, room)
			cancel()
		}
		recs = c.dropRedelivered(recs)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			if errors.Is(err, source.ErrClosed) {
				return nil
			}
			c.s.log.Warn("polling Kafka", "cube", c.name, "err", err)
		}
		// Every assigned partition has its state before the records are aligned: one that
		// has not delivered yet holds the alignment back (alignBound) unless it is idle.
		now := time.Now()
		for _, p := range k.Assigned() {
			if c.parts[p] == nil {
				c.parts[p] = &partState{maxTime: math.MinInt64, lastSeen: now, offset: -1}
			}
		}
		for p, lag := range k.Lag() {
			if ps := c.parts[p]; ps != nil {
				ps.lag, ps.lagKnown = lag, true
			}
			c.s.metrics.lag.WithLabelValues(c.name, strconv.Itoa(int(p))).Set(float64(lag))
		}
		c.ingest(recs)
		now = time.Now()
		if err := c.advance(ctx, now, c.watermark(now), true); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			// Stopping: a last checkpoint makes the restart quick.
			return c.maybeCheckpoint(now, true, 0, false)
		}
		if err := c.maybeCheckpoint(now, false, 0, false); err != nil {
			return err
		}
		// The group's committed offsets follow checkpoints; a restart seeks to the
		// checkpoint's own offsets anyway (resumeOffsets).
		c.markCheckpointed(k)
	}
}
