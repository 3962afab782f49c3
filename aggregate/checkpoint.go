package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// StateWriter receives the changes of a checkpoint; the caller applies them in one atomic batch
// (a pebble batch). Keys and values may be reused after a call returns.
type StateWriter interface {
	Set(key, value []byte) error
	DeleteRange(start, end []byte) error
}

// Checkpoint state layout. Every key starts with the caller's prefix, then
//
//	node     1 byte   0 = layer 1, 1+j = layer 2's j-th node
//	window   1 byte   index into Plan.Windows
//	start    8 bytes  window start, Unix ms, big-endian with the sign bit flipped
//	dims     4 bytes each, big-endian dictionary ids (the node's key)
//
// and the value is the group: its max slice, its slice records (slice, cells, and while the
// slice is open the ids first seen in it) and the heads of its distinct sets
// (bitmapstate.Set.AppendHead: a small set whole, a large one its cardinality). Each block of a
// large set is its own key, the group's key followed by
//
//	field    1 byte   index into Plan.DistinctFields
//	block    2 bytes  the block key (id >> bitmapstate.BlockBits), big-endian
//
// so that it sorts right after its group. Groups are written when they changed since the last
// checkpoint, and of their blocks only those that changed; a closed window's groups and blocks
// are deleted with one range deletion per node. Emission progress is not stored: after a
// restore a group is emitted again only if it had changes not yet emitted at the checkpoint (its
// value ends with its emission progress).

// markCheckpointDirty records that group g of t changed since the last checkpoint.
func (t *instTable) markCheckpointDirty(g int32) {
	if !t.groups[g].ckDirty {
		t.groups[g].ckDirty = true
		t.ckDirty = append(t.ckDirty, g)
	}
}

func appendStateKey(dst, prefix []byte, node, window int, start int64, dims []uint32) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, byte(node), byte(window))
	dst = binary.BigEndian.AppendUint64(dst, uint64(start)^(1<<63))
	for _, d := range dims {
		dst = binary.BigEndian.AppendUint32(dst, d)
	}
	return dst
}

// WriteCheckpoint writes to w every group changed since the last checkpoint and deletes the
// state of windows closed since then. After it returns the aggregator considers everything
// checkpointed: the caller must commit w's batch (or give up the process).
func (a *Aggregator) WriteCheckpoint(prefix []byte, w StateWriter) (groups int, err error) {
	var key, val []byte
	for _, ck := range a.closedSinceCheckpoint {
		for ni := range a.nodes() {
			lo := appendStateKey(key[:0], prefix, ni, ck.window, ck.start, nil)
			hi := appendStateKey(nil, prefix, ni, ck.window, ck.start+1, nil)
			if err := w.DeleteRange(lo, hi); err != nil {
				return groups, err
			}
			key = lo
		}
	}
	a.closedSinceCheckpoint = a.closedSinceCheckpoint[:0]
	if a.ret != nil {
		if err := a.ret.writeCheckpoint(prefix, w); err != nil {
			return groups, err
		}
	}
	stride := recCells + a.layout.n
	for ni, nd := range a.nodes() {
		for _, sh := range nd.shards {
			for _, t := range sh.tables {
				for _, g := range t.ckDirty {
					grp := &t.groups[g]
					grp.ckDirty = false
					key = appendStateKey(key[:0], prefix, ni, t.inst.window, t.inst.start, t.keys.key(g))
					val = val[:0]
					val = binary.AppendVarint(val, int64(grp.maxSlice))
					n := 0
					for r := int(grp.head); r != -1; r = int(int64(t.recs[r+recNext])) {
						n++
					}
					val = binary.AppendUvarint(val, uint64(n))
					for r := int(grp.head); r != -1; r = int(int64(t.recs[r+recNext])) {
						val = binary.AppendUvarint(val, t.recs[r+recSlice])
						for _, c := range t.recs[r+recCells : r+stride] {
							val = binary.LittleEndian.AppendUint64(val, c)
						}
						ob := int64(t.recs[r+recOpen])
						if ob < 0 {
							val = append(val, 0)
							continue
						}
						val = append(val, 1)
						for f := 0; f < a.ndf; f++ {
							val = t.open[int(ob)*a.ndf+f].AppendBinary(val)
						}
					}
					for f := 0; f < a.ndf; f++ {
						val = t.sets[int(g)*a.ndf+f].AppendHead(val)
					}
					// Emission progress: what the sink already holds for the group.
					val = binary.AppendVarint(val, int64(grp.emitted))
					val = binary.AppendVarint(val, int64(grp.minDirty))
					if err := w.Set(key, val); err != nil {
						return groups, err
					}
					groups++
					for f := 0; f < a.ndf; f++ {
						set := &t.sets[int(g)*a.ndf+f]
						if !set.IsBig() {
							continue
						}
						gk := len(key)
						key = append(key, byte(f), 0, 0)
						val, err = set.FlushDirty(val, func(bk uint16, enc []byte) error {
							binary.BigEndian.PutUint16(key[gk+1:], bk)
							return w.Set(key, enc)
						})
						if err != nil {
							return groups, err
						}
						key = key[:gk]
					}
				}
				t.ckDirty = t.ckDirty[:0]
			}
		}
	}
	return groups, nil
}

var errBadState = errors.New("malformed checkpoint state")

// Restore loads one group written by WriteCheckpoint (key without the prefix). Call it for every
// stored group, then FinishRestore.
func (a *Aggregator) Restore(key, val []byte) error { return a.restore(&a.restoring, key, val) }

// restore is Restore following groups and blocks in rs.
func (a *Aggregator) restore(rs *restoreState, key, val []byte) error {
	if len(key) > 0 && a.ret != nil && key[0] >= keyRetentionDay {
		return a.ret.restore(key, val)
	}
	nd, w, start, block, err := a.parseStateKey(key)
	if err != nil {
		return err
	}
	if block {
		return a.restoreBlock(rs, key, val)
	}
	in := a.instanceAt(w, start)
	var h uint64
	rs.k, h = groupKey(rs.k[:0], in, key, nd.width)
	return a.restoreGroup(rs, nd, in, h, key, val)
}

// restoreGroup is restore of a group key of node nd in instance in, whose [instance id, dims…]
// hashes to h.
func (a *Aggregator) restoreGroup(rs *restoreState, nd *node, in *instance, h uint64, key, val []byte) error {
	if err := a.checkRestoredBlocks(rs); err != nil {
		return err
	}
	rs.k = appendDims(append(rs.k[:0], in.id), key, nd.width)
	t := nd.shards[shardOf(h, a.n)].table(a, in.id, nd.width)
	g, fresh := t.keys.findOrInsert(rs.k[1:], h)
	if !fresh {
		return fmt.Errorf("%w: group stored twice", errBadState)
	}
	t.groups = append(t.groups, group{head: -1, minDirty: 0, emitted: -1, maxSlice: -1})
	t.sets = growSets(t.sets, a.ndf)
	t.dirty = append(t.dirty, g)
	grp := &t.groups[g]
	b := val
	maxSlice, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: max slice", errBadState)
	}
	b = b[n:]
	nrec, n := binary.Uvarint(b)
	if n <= 0 || nrec > math.MaxInt32 {
		return fmt.Errorf("%w: record count", errBadState)
	}
	b = b[n:]
	for range nrec {
		slice, n := binary.Uvarint(b)
		if n <= 0 || len(b[n:]) < 8*a.layout.n+1 {
			return fmt.Errorf("%w: slice record", errBadState)
		}
		b = b[n:]
		r := a.record(t, grp, int32(slice))
		for c := 0; c < a.layout.n; c++ {
			t.recs[r+recCells+c] = binary.LittleEndian.Uint64(b[8*c:])
		}
		b = b[8*a.layout.n:]
		open := b[0]
		b = b[1:]
		if open == 1 {
			for f := 0; f < a.ndf; f++ {
				var err error
				if b, err = t.openSet(a, r, f).ReadBinaryWith(t.setPool, b); err != nil {
					return fmt.Errorf("%w: %v", errBadState, err)
				}
			}
		}
	}
	grp.maxSlice = int32(maxSlice)
	rs.t, rs.g, rs.key = t, g, append(rs.key[:0], key...)
	rs.blocks = rs.blocks[:0]
	for f := 0; f < a.ndf; f++ {
		var err error
		var nb int
		if b, nb, err = t.sets[int(g)*a.ndf+f].ReadHead(t.setPool, b); err != nil {
			return fmt.Errorf("%w: %v", errBadState, err)
		}
		rs.blocks = append(rs.blocks, nb)
	}
	if len(b) != 0 {
		// Emission progress (absent in checkpoints of earlier versions: the group is then
		// emitted again). A group whose rows are all in the sink is not re-emitted.
		emitted, n := binary.Varint(b)
		if n <= 0 || emitted < -1 || emitted > math.MaxInt32 {
			return fmt.Errorf("%w: emission progress", errBadState)
		}
		b = b[n:]
		minDirty, n := binary.Varint(b)
		if n <= 0 || minDirty < 0 || minDirty > noSlice {
			return fmt.Errorf("%w: emission progress", errBadState)
		}
		b = b[n:]
		grp.emitted, grp.minDirty = int32(emitted), int32(minDirty)
		if grp.minDirty == noSlice {
			t.dirty = t.dirty[:len(t.dirty)-1] // appended above, and g is the newest group
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errBadState, len(b))
	}
	return nil
}

// parseStateKey splits a group or block key written by WriteCheckpoint (without the prefix) into
// its node, window index and window start, and reports whether it is a block key.
func (a *Aggregator) parseStateKey(key []byte) (nd *node, w int, start int64, block bool, err error) {
	if len(key) < 10 {
		return nil, 0, 0, false, fmt.Errorf("%w: key of %d bytes", errBadState, len(key))
	}
	ni, w := int(key[0]), int(key[1])
	nodes := a.nodes()
	if ni >= len(nodes) || w >= len(a.wins) {
		return nil, 0, 0, false, fmt.Errorf("%w: node %d window %d", errBadState, ni, w)
	}
	nd = nodes[ni]
	if len(key) != 10+4*nd.width && len(key) != 10+4*nd.width+3 {
		return nil, 0, 0, false, fmt.Errorf("%w: key of %d bytes for %d dimensions", errBadState, len(key), nd.width)
	}
	start = int64(binary.BigEndian.Uint64(key[2:10]) ^ (1 << 63))
	return nd, w, start, len(key) == 10+4*nd.width+3, nil
}

// instanceAt returns the instance of window w starting at start, creating it.
func (a *Aggregator) instanceAt(w int, start int64) *instance {
	_, end := instanceBounds(a.wins[w].spec.Granularity, a.wins[w].loc, start)
	return a.instanceFor(w, start, end)
}

// groupKey appends to k the key of a state key's group in its tables, [instance id, dims…], and
// returns it with its hash (which also picks the group's shard).
func groupKey(k []uint32, in *instance, key []byte, width int) ([]uint32, uint64) {
	k = appendDims(append(k, in.id), key, width)
	return k, hashKey(k)
}

// appendDims appends to k the width dimension ids of a state key.
func appendDims(k []uint32, key []byte, width int) []uint32 {
	for i := range width {
		k = append(k, binary.BigEndian.Uint32(key[10+4*i:]))
	}
	return k
}

// restoreState follows Restore through a group and its blocks (which come right after it).
type restoreState struct {
	t      *instTable
	g      int32
	key    []byte   // the group's key
	k      []uint32 // scratch: the group's [instance id, dims…]
	blocks []int    // per distinct field: blocks still to come
	bytes  uint64   // block bytes loaded into memory so far
	share  int      // restorers sharing the memory budget (0 or 1: one)
}

// restoreBlock attaches one stored block to the group restored last: loaded while the restored
// blocks fit half the memory limit, registered as evicted (loaded on demand) beyond.
func (a *Aggregator) restoreBlock(rs *restoreState, key, val []byte) error {
	gk := len(key) - 3
	if rs.t == nil || string(key[:gk]) != string(rs.key) {
		return fmt.Errorf("%w: block without its group", errBadState)
	}
	f := int(key[gk])
	if f >= a.ndf || rs.blocks[f] == 0 {
		return fmt.Errorf("%w: unexpected block of field %d", errBadState, f)
	}
	rs.blocks[f]--
	budget := a.memoryLimit / 2 / uint64(max(rs.share, 1))
	load := a.reader == nil || a.memoryLimit == 0 || rs.bytes+uint64(len(val)) <= budget
	if load {
		rs.bytes += uint64(len(val))
	}
	set := &rs.t.sets[int(rs.g)*a.ndf+f]
	if err := set.AttachBlock(rs.t.setPool, binary.BigEndian.Uint16(key[gk+1:]), val, load); err != nil {
		return fmt.Errorf("%w: %v", errBadState, err)
	}
	return nil
}

// checkRestoredBlocks verifies that the group restored last got all its blocks.
func (a *Aggregator) checkRestoredBlocks(rs *restoreState) error {
	if rs.t == nil {
		return nil
	}
	for f, n := range rs.blocks {
		if n != 0 {
			return fmt.Errorf("%w: %d blocks of field %d missing", errBadState, n, f)
		}
		if err := rs.t.sets[int(rs.g)*a.ndf+f].Verify(); err != nil {
			return fmt.Errorf("%w: %v", errBadState, err)
		}
	}
	rs.t = nil
	return nil
}

// FinishRestore sets the watermark and max event time of the checkpoint the groups came from,
// so that slice closing, late detection and cumulative steps continue where they were. Restored
// groups with changes not emitted before the checkpoint are emitted at the next Emit or Advance.
func (a *Aggregator) FinishRestore(watermark, maxTime int64) error {
	if err := a.checkRestoredBlocks(&a.restoring); err != nil {
		return err
	}
	a.restoring = restoreState{}
	a.watermark, a.maxTime = watermark, maxTime
	for _, in := range a.instances {
		win := &a.wins[in.window]
		for in.closedSlices < in.slices && win.stepMS > 0 && watermark != math.MinInt64 &&
			win.sliceEnd(in.start, in.end, in.closedSlices)+win.latenessMS <= watermark {
			in.closedSlices++
		}
	}
	a.updateSteps()
	return nil
}
