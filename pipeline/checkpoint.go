package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/source"
)

// The data dir's pebble database holds, besides the results (keyspace 'r', package sink):
//
//	'm' "format"                       the state format version
//	'm' "cube" <cube>                  the cube's plan fingerprint and canonical text
//	'd' <namespace> 0x00 <id uint32>   dictionary entries (the value is the string)
//	'v' <namespace> 0x00 <string>      the same entries by value (the value is the id, uint32)
//	's' <cube> 0x00 <state key>        aggregation state (aggregate.WriteCheckpoint's layout)
//	'c' <cube>                         the cube's last checkpoint record (JSON)
//
// A checkpoint writes the dictionary entries, the changed state and the record in one synced
// pebble batch, after the rows emitted before it have been written: restoring it and reading the
// source again from its offsets gives the results of a run that never stopped (exactly-once
// results from at-least-once delivery, as Flink's checkpoints with an upserting sink).
const (
	keyMeta       = 'm'
	keyDictionary = 'd'
	keyDictValue  = 'v'
	keyState      = 's'
	keyCheckpoint = 'c'
)

// FormatVersion is the version of the data dir's state layout; a data dir of a newer version is
// refused, one of version 1 (without the 'v' keyspace) is upgraded in place.
const FormatVersion = 2

// DefaultCheckpointEvery is the checkpoint interval when neither the options nor the model set
// one.
const DefaultCheckpointEvery = 10 * time.Second

// checkpointRecord is what a checkpoint stores besides state and dictionary.
type checkpointRecord struct {
	Seq        uint64                `json:"seq"`
	Time       time.Time             `json:"time"`
	Watermark  int64                 `json:"watermark"`
	MaxTime    int64                 `json:"max_time"`
	Version    uint64                `json:"version"`
	Partitions map[int32]ckPartition `json:"partitions"`
	// FileLine is the last line of a file source folded into the state; Done says the whole
	// file was read and every window closed.
	FileLine int64 `json:"file_line"`
	Done     bool  `json:"done"`
	// EarlyFires is, per window of the plan, the processing time of its last early fire: a
	// restart keeps each window's emit_every schedule (as Flink restores its processing-time
	// timers) instead of firing every window at once. Absent in older checkpoints.
	EarlyFires []time.Time `json:"early_fires,omitempty"`
}

type ckPartition struct {
	Next    int64 `json:"next"`
	MaxTime int64 `json:"max_time"`
}

// CheckpointStatus describes one completed checkpoint in /api/v1/status.
type CheckpointStatus struct {
	Seq        uint64    `json:"seq"`         // checkpoint number, from 1
	Time       time.Time `json:"time"`        // when it was taken (processing time)
	Groups     int       `json:"groups"`      // changed groups written
	Bytes      int       `json:"bytes"`       // size of the batch
	DurationMS float64   `json:"duration_ms"` // time to build and commit it, ms
}

// checkpointState is a cube's checkpoint bookkeeping.
type checkpointState struct {
	every    time.Duration
	last     time.Time
	seq      uint64
	fileLine int64 // resume: skip file lines up to here
	done     bool  // the file was replayed to its end
	offsets  map[int32]int64
	history  []CheckpointStatus
	async    bool                // commit in the background (Kafka sources; see maybeCheckpoint)
	inflight *inflightCheckpoint // captured, being committed
	broken   error               // a commit failed: no later checkpoint may be taken
}

func cubeMetaKey(name string) []byte { return append([]byte{keyMeta, 'c', 'u', 'b', 'e', 0}, name...) }

func checkpointKey(name string) []byte { return append([]byte{keyCheckpoint}, name...) }

func statePrefix(name string) []byte {
	return append(append([]byte{keyState}, name...), 0)
}

func dictionaryPrefix(ns string) []byte {
	return append(append([]byte{keyDictionary}, ns...), 0)
}

func dictValueKey(dst []byte, ns string, v []byte) []byte {
	dst = append(append(append(dst, keyDictValue), ns...), 0)
	return append(dst, v...)
}

// indexDictionary writes to b the by-value entry of every dictionary entry of db.
func indexDictionary(db *pebble.DB, b *pebble.Batch) error {
	lo := []byte{keyDictionary}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: sink.PrefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	var key []byte
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[1:]
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k)-i-1 != 4 {
			return fmt.Errorf("malformed dictionary key %q", it.Key())
		}
		key = dictValueKey(key[:0], string(k[:i]), it.Value())
		if err := b.Set(key, k[i+1:], nil); err != nil {
			return err
		}
	}
	return it.Error()
}

// dictStore reads the dictionary entries of checkpoints (dictionary.Store).
type dictStore struct{ db *pebble.DB }

func (d dictStore) LookupID(ns string, v []byte) (uint32, bool, error) {
	val, closer, err := d.db.Get(dictValueKey(nil, ns, v))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(val) != 4 {
		return 0, false, fmt.Errorf("malformed id of %q", v)
	}
	return binary.BigEndian.Uint32(val), true, nil
}

func (d dictStore) LookupValue(ns string, id uint32) (string, bool, error) {
	val, closer, err := d.db.Get(binary.BigEndian.AppendUint32(dictionaryPrefix(ns), id))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer closer.Close()
	return string(val), true, nil
}

// checkCompatible refuses a data dir written with another state format or for a cube whose
// plan changed in a way that changes stored results, naming what changed; otherwise it records
// the format and fingerprints. A changed model is never migrated: the stored results and state
// were computed for the old plan, and mixing the two would serve wrong numbers.
func checkCompatible(db *pebble.DB, dir string, plans []*cube.Plan) error {
	formatKey := []byte{keyMeta, 'f', 'o', 'r', 'm', 'a', 't'}
	b := db.NewBatch()
	defer b.Close()
	v, closer, err := db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		b.Set(formatKey, []byte(fmt.Sprint(FormatVersion)), nil)
	case err != nil:
		return fmt.Errorf("reading the state format of %s: %w", dir, err)
	default:
		got := string(v)
		closer.Close()
		switch got {
		case fmt.Sprint(FormatVersion):
		case "1":
			// Version 1 lacks the dictionary's by-value entries: derive them.
			if err := indexDictionary(db, b); err != nil {
				return fmt.Errorf("upgrading the state format of %s: %w", dir, err)
			}
			b.Set(formatKey, []byte(fmt.Sprint(FormatVersion)), nil)
		default:
			return fmt.Errorf("data dir %s holds state format %s; this cubed reads formats 1 and %d", dir, got, FormatVersion)
		}
	}
	for _, p := range plans {
		key := cubeMetaKey(p.Cube.Name)
		canonical := p.Canonical()
		v, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			b.Set(key, []byte(p.Fingerprint+"\n"+canonical), nil)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the model of cube %q in %s: %w", p.Cube.Name, dir, err)
		}
		stored := string(v)
		closer.Close()
		fp, old, _ := strings.Cut(stored, "\n")
		if fp == p.Fingerprint {
			continue
		}
		return fmt.Errorf("data dir %s was written for another model of cube %q; what changed:\n%s\nstored results and state belong to the old model: use a new --data-dir (or remove this one) to start over",
			dir, p.Cube.Name, diffLines(old, canonical))
	}
	return b.Commit(pebble.Sync)
}

// diffLines lists the lines only in old ("- ") and only in new ("+ ").
func diffLines(old, new string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	o, n := in(old), in(new)
	var out []string
	for _, l := range strings.Split(old, "\n") {
		if !n[l] && l != "" {
			out = append(out, "  - "+l)
		}
	}
	for _, l := range strings.Split(new, "\n") {
		if !o[l] && l != "" {
			out = append(out, "  + "+l)
		}
	}
	return strings.Join(out, "\n")
}

// restore loads the cube's last checkpoint: dictionary, state, source positions.
func (c *cubeRun) restore() error {
	db := c.s.db
	v, closer, err := db.Get(checkpointKey(c.name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading checkpoint of cube %q: %w", c.name, err)
	}
	var rec checkpointRecord
	err = json.Unmarshal(v, &rec)
	closer.Close()
	if err != nil {
		return fmt.Errorf("reading checkpoint of cube %q: %w", c.name, err)
	}
	// The dictionary namespaces load while the aggregation state restores (on its own workers).
	nss := c.namespaces()
	nsErrs := make([]error, len(nss))
	var wg sync.WaitGroup
	for i, ns := range nss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nsErrs[i] = loadNamespace(db, ns.name, ns.ns, c.dictLimit)
		}()
	}
	prefix := statePrefix(c.name)
	err = c.agg.RestoreParallel(func(fn func(k, v []byte) error) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: sink.PrefixEnd(prefix)})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if err := fn(it.Key()[len(prefix):], it.Value()); err != nil {
				it.Close()
				return err
			}
		}
		return it.Close()
	})
	wg.Wait()
	if err != nil {
		return fmt.Errorf("restoring state of cube %q from checkpoint %d: %w", c.name, rec.Seq, err)
	}
	for _, err := range nsErrs {
		if err != nil {
			return fmt.Errorf("restoring cube %q: %w", c.name, err)
		}
	}
	if err := c.agg.FinishRestore(rec.Watermark, rec.MaxTime); err != nil {
		return fmt.Errorf("restoring state of cube %q from checkpoint %d: %w", c.name, rec.Seq, err)
	}
	c.ck.seq, c.ck.fileLine, c.ck.done = rec.Seq, rec.FileLine, rec.Done
	c.ck.offsets = map[int32]int64{}
	now := time.Now()
	if len(rec.EarlyFires) == len(c.lastEmit) {
		for w, t := range rec.EarlyFires {
			if t.After(now) { // a clock set back must not postpone the next fire
				t = now
			}
			c.lastEmit[w] = t
		}
	}
	for p, cp := range rec.Partitions {
		c.parts[p] = &partState{maxTime: cp.MaxTime, lastSeen: now, offset: cp.Next - 1}
		c.ck.offsets[p] = cp.Next
	}
	if rec.Version >= c.version {
		c.version = rec.Version + 1
	}
	c.s.log.Info("restored checkpoint", "cube", c.name, "seq", rec.Seq, "time", rec.Time, "watermark", time.UnixMilli(rec.Watermark).UTC())
	return nil
}

type namedNamespace struct {
	name string
	ns   dictionary.Namespace
}

func (c *cubeRun) namespaces() []namedNamespace {
	var out []namedNamespace
	for i, d := range c.plan.Dimensions {
		out = append(out, namedNamespace{c.name + "/dim/" + c.plan.Cube.Dimensions[d].Name, c.dimNS[i]})
	}
	for i, f := range c.plan.DistinctFields {
		out = append(out, namedNamespace{c.name + "/id/" + f, c.idNS[i]})
	}
	return out
}

// loadNamespace restores a namespace from its stored entries: all of them into memory when they
// fit its cache (at an estimated 48 bytes an id), else only their count (ids are then read back
// when they come again).
func loadNamespace(db *pebble.DB, name string, ns dictionary.Namespace, cacheLimit int64) error {
	if ns.Len() > 0 {
		return nil // shared and already loaded
	}
	prefix := dictionaryPrefix(name)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: sink.PrefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	if it.Last() {
		k := it.Key()[len(prefix):]
		if len(k) != 4 {
			return fmt.Errorf("dictionary %q: malformed key", name)
		}
		n := int64(binary.BigEndian.Uint32(k)) + 1
		if cacheLimit > 0 && n*48 > cacheLimit {
			return ns.RestoreLazy(uint32(n))
		}
		ns.Reserve(int(n))
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(prefix):]
		if len(k) != 4 {
			return fmt.Errorf("dictionary %q: malformed key", name)
		}
		// Restore copies the value: the string may alias the iterator's memory.
		v := it.Value()
		if err := ns.Restore(binary.BigEndian.Uint32(k), unsafe.String(unsafe.SliceData(v), len(v))); err != nil {
			return fmt.Errorf("dictionary %q: %w", name, err)
		}
	}
	return it.Error()
}

// batchWriter adapts a pebble batch to aggregate.StateWriter.
type batchWriter struct{ b *pebble.Batch }

func (w batchWriter) Set(k, v []byte) error           { return w.b.Set(k, v, nil) }
func (w batchWriter) DeleteRange(lo, hi []byte) error { return w.b.DeleteRange(lo, hi, nil) }

// maybeCheckpoint checkpoints when the interval has passed (or always when force is set). The
// caller has written every emitted row to the embedded store and handed it to the ClickHouse
// buffer. fileLine is the last file line read (file sources).
//
// A checkpoint is captured in the cube's loop (new dictionary ids, dirty state, positions and
// watermark into one pebble batch) and committed in the background, as Flink's asynchronous
// snapshots: the committer first waits until ClickHouse has stored every row emitted before
// the capture, then commits the batch with sync; the loop goes on meanwhile. What must follow a
// durable checkpoint (dictionary ids marked persisted, eviction of clean blocks, the positions
// that Kafka commits, the status) runs in the loop once the commit has ended (finishCheckpoint).
// One checkpoint is in flight at most: the next is captured after the last has committed. With
// force, and always for a file source (a replay, where the memory budget's evictions right
// after each checkpoint matter more than the loop's latency), everything is synchronous: the
// ClickHouse buffer is flushed, the checkpoint in flight ends, and the new one is committed
// before maybeCheckpoint returns.
func (c *cubeRun) maybeCheckpoint(now time.Time, force bool, fileLine int64, done bool) error {
	sync := force || !c.ck.async
	due := force || now.Sub(c.ck.last) >= c.ck.every
	if sync && due && c.ch != nil && c.ch.buf.Len() > 0 {
		// Before waiting for the checkpoint in flight, which may wait for these rows.
		fctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
		err := c.ch.buf.Flush(fctx)
		cancel()
		if err != nil {
			c.s.log.Warn("checkpoint postponed: results not yet written to ClickHouse", "cube", c.name, "err", err)
			return nil
		}
	}
	if err := c.finishCheckpoint(sync); err != nil {
		return err
	}
	if c.ck.inflight != nil || !due {
		return nil
	}
	if err := c.agg.Err(); err != nil {
		return fmt.Errorf("cube %q: %w (restart resumes from the last checkpoint)", c.name, err)
	}
	start := time.Now()
	b := c.s.db.NewBatch()
	var marks []dictMark
	for _, nn := range c.namespaces() {
		upto, err := writeDictionary(b, nn)
		if err != nil {
			b.Close()
			return err
		}
		marks = append(marks, dictMark{nn, upto})
	}
	groups, err := c.agg.WriteCheckpoint(statePrefix(c.name), batchWriter{b})
	if err != nil {
		b.Close()
		return fmt.Errorf("checkpoint of cube %q: %w", c.name, err)
	}
	rec := checkpointRecord{Seq: c.ck.seq + 1, Time: now.UTC(), Watermark: c.agg.Watermark(), MaxTime: c.agg.MaxEventTime(),
		Version: c.version, Partitions: map[int32]ckPartition{}, FileLine: fileLine, Done: done,
		EarlyFires: append([]time.Time(nil), c.lastEmit...)}
	for p, ps := range c.parts {
		if ps.offset >= 0 { // a partition that delivered nothing has no position yet
			rec.Partitions[p] = ckPartition{Next: ps.offset + 1, MaxTime: ps.maxTime}
		}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		b.Close()
		return err
	}
	if err := b.Set(checkpointKey(c.name), v, nil); err != nil {
		b.Close()
		return err
	}
	// From here on, the state's dirty marks say this batch holds the changes: it must be
	// committed before any later checkpoint, or never (ckState.broken).
	c.ck.last = now
	fl := &inflightCheckpoint{b: b, rec: rec, marks: marks, groups: groups, size: len(b.Repr()), start: start, done: make(chan error, 1)}
	var cctx context.Context
	cctx, fl.cancel = context.WithCancel(context.Background())
	var need int64
	if c.ch != nil {
		need = c.ch.buf.Added()
	}
	c.ck.inflight = fl
	go func() {
		defer fl.cancel()
		if c.ch != nil {
			if err := c.ch.buf.WaitStored(cctx, need); err != nil {
				fl.done <- err
				return
			}
		}
		fl.done <- b.Commit(pebble.Sync)
	}()
	if sync {
		return c.finishCheckpoint(true)
	}
	return nil
}

// dictMark is a namespace's first id not yet persisted, once a checkpoint commits.
type dictMark struct {
	nn   namedNamespace
	upto uint32
}

// writeDictionary adds the namespace's ids not yet persisted to b (id → value and value → id)
// and returns the first id after them.
func writeDictionary(b *pebble.Batch, nn namedNamespace) (uint32, error) {
	prefix := dictionaryPrefix(nn.name)
	var key []byte
	var idBytes [4]byte
	// New ids cost no allocation of their own: the batch copies key and value.
	return nn.ns.VisitUnpersisted(func(id uint32, v []byte) error {
		key = binary.BigEndian.AppendUint32(append(key[:0], prefix...), id)
		if err := b.Set(key, v, nil); err != nil {
			return err
		}
		key = dictValueKey(key[:0], nn.name, v)
		binary.BigEndian.PutUint32(idBytes[:], id)
		return b.Set(key, idBytes[:], nil)
	})
}

// trimDictionary starts a new generation of a namespace over its cache limit (see
// dictionary.Namespace.Trim), which needs every id persisted: the ids assigned since the
// checkpoint's capture are written first, ahead of the checkpoint that will refer to them (an id
// may be durable early, never late; the next synced commit makes them durable).
func (c *cubeRun) trimDictionary(nn namedNamespace) error {
	if nn.ns.Trim() {
		c.dictTrims++
		return nil
	}
	if c.dictLimit <= 0 || nn.ns.SizeBytes() <= c.dictLimit {
		return nil
	}
	b := c.s.db.NewBatch()
	defer b.Close()
	upto, err := writeDictionary(b, nn)
	if err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("persisting dictionary %q before trimming it: %w", nn.name, err)
	}
	nn.ns.MarkPersisted(upto)
	if nn.ns.Trim() {
		c.dictTrims++
	}
	return nil
}

// inflightCheckpoint is a captured checkpoint whose batch is being committed (maybeCheckpoint).
type inflightCheckpoint struct {
	b      *pebble.Batch
	rec    checkpointRecord
	marks  []dictMark
	groups int
	size   int
	start  time.Time
	done   chan error // the commit's result
	cancel context.CancelFunc
}

// finishCheckpoint completes the checkpoint in flight once its commit has ended (with wait,
// after waiting for it): dictionary ids are marked persisted, clean blocks evicted past the
// memory budget, the positions for Kafka's commits and the status updated. A failed commit is
// an error: the state's dirty marks no longer match the store, so no later checkpoint may be
// taken (the cube stops; a restart resumes from the last committed checkpoint).
func (c *cubeRun) finishCheckpoint(wait bool) error {
	if c.ck.broken != nil {
		return c.ck.broken
	}
	fl := c.ck.inflight
	if fl == nil {
		return nil
	}
	var err error
	if wait {
		err = <-fl.done
	} else {
		select {
		case err = <-fl.done:
		default:
			return nil
		}
	}
	c.ck.inflight = nil
	fl.b.Close()
	if err != nil {
		c.ck.broken = fmt.Errorf("committing checkpoint %d of cube %q: %w (restart resumes from the last checkpoint)", fl.rec.Seq, c.name, err)
		return c.ck.broken
	}
	rec := fl.rec
	for _, m := range fl.marks {
		m.nn.ns.MarkPersisted(m.upto)
		if err := m.nn.ns.Err(); err != nil {
			return err
		}
		if err := c.trimDictionary(m.nn); err != nil {
			return err
		}
	}
	es := c.agg.Evict()
	c.peakState = max(c.peakState, es.Before)
	if es.Blocks > 0 {
		c.s.log.Debug("evicted state blocks", "cube", c.name, "blocks", es.Blocks, "before", es.Before, "after", es.After)
	}
	c.ck.seq = rec.Seq
	offsets := map[int32]int64{}
	for p, cp := range rec.Partitions {
		offsets[p] = cp.Next
	}
	c.mu.Lock()
	c.ck.offsets = offsets
	c.mu.Unlock()
	st := CheckpointStatus{Seq: rec.Seq, Time: rec.Time, Groups: fl.groups, Bytes: fl.size,
		DurationMS: float64(time.Since(fl.start).Microseconds()) / 1000}
	c.mu.Lock()
	c.ck.history = append(c.ck.history, st)
	if len(c.ck.history) > 20 {
		c.ck.history = c.ck.history[len(c.ck.history)-20:]
	}
	c.mu.Unlock()
	c.s.metrics.checkpoints.WithLabelValues(c.name).Inc()
	c.s.metrics.checkpointBytes.WithLabelValues(c.name).Add(float64(fl.size))
	return nil
}

// abandonCheckpoint stops the checkpoint in flight, if any, as the cube stops: a commit that is
// still waiting for ClickHouse is given up (a restart resumes from the last committed
// checkpoint), one that is writing is waited for, so the store is never closed under it.
func (c *cubeRun) abandonCheckpoint() {
	fl := c.ck.inflight
	if fl == nil {
		return
	}
	fl.cancel()
	if err := c.finishCheckpoint(true); err != nil {
		c.s.log.Warn("checkpoint given up as the cube stops", "cube", c.name, "err", err)
	}
}

// markCheckpointed marks, for the group's commits, the offsets of the last checkpoint.
func (c *cubeRun) markCheckpointed(k *source.Kafka) {
	c.mu.Lock()
	recs := make([]source.Record, 0, len(c.ck.offsets))
	for p, next := range c.ck.offsets {
		if next > 0 {
			recs = append(recs, source.Record{Partition: p, Offset: next - 1})
		}
	}
	c.mu.Unlock()
	k.MarkProcessed(recs)
}

// instanceID is the consumer's static group membership id (KIP-345): stable for one cube over one
// data dir, so that a process restarted after a crash takes its partitions back at once instead
// of waiting for the dead member's session to time out.
func (c *cubeRun) instanceID() string {
	dir, err := filepath.Abs(c.s.opts.DataDir)
	if err != nil {
		dir = c.s.opts.DataDir
	}
	return fmt.Sprintf("cubed-%s-%016x", c.name, xxhash.Sum64String(dir))
}
