package aggregate

import (
	"sync"
)

// restoreEntry locates one stored entry in a restoreBatch's buffer, with what the router already
// parsed from its key.
type restoreEntry struct {
	ko, kl, vo, vl int32  // key offset, key length, value offset, value length in buf
	h              uint64 // hashKey of the group's [instance id, dims…]
	block          bool   // a block key (else a group key)
}

// restoreBatch is a run of stored entries (key without prefix, value) copied out of the store's
// iterator, for one restore worker.
type restoreBatch struct {
	buf  []byte
	ents []restoreEntry
}

// add copies one entry into the batch.
func (b *restoreBatch) add(key, val []byte, block bool, h uint64) {
	ko := len(b.buf)
	b.buf = append(b.buf, key...)
	vo := len(b.buf)
	b.buf = append(b.buf, val...)
	b.ents = append(b.ents, restoreEntry{ko: int32(ko), kl: int32(len(key)), vo: int32(vo), vl: int32(len(val)), h: h, block: block})
}

// entry returns entry i's key and value (aliasing the batch).
func (b *restoreBatch) entry(i int) (key, val []byte) {
	e := &b.ents[i]
	return b.buf[e.ko : e.ko+e.kl], b.buf[e.vo : e.vo+e.vl]
}

// restoreRun is every entry of one worker's table in one (node, window instance): the worker
// sizes the table for its groups before it restores them, so that the table's arrays are
// allocated once instead of grown by repeated copying.
type restoreRun struct {
	nd      *node
	in      *instance
	groups  int
	batches []*restoreBatch
}

const restoreBatchBytes = 256 << 10

// RestoreParallel restores the state written by WriteCheckpoint like a Restore call per entry,
// spread over the aggregator's N workers: scan must call fn for every stored entry (key without
// the prefix) in key order, and may reuse the slices after fn returns. Entries go to the worker
// that owns their group's shard (a block follows its group), so that workers never share a table.
// As keys sort by (node, window, start), one table's entries are consecutive: each worker gets
// them as one restoreRun, with its group count, once the scan has passed them. Call
// FinishRestore after it.
func (a *Aggregator) RestoreParallel(scan func(fn func(key, val []byte) error) error) error {
	n := a.n
	work := make([]chan restoreRun, n)
	free := make(chan *restoreBatch, 64*n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		work[w] = make(chan restoreRun, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := &restoreState{share: n}
			for run := range work[w] {
				if errs[w] == nil {
					t := run.nd.shards[w].table(a, run.in.id, run.nd.width)
					t.reserve(run.groups, a.ndf, recCells+a.layout.n)
				}
				for _, b := range run.batches {
					for i := range b.ents {
						if errs[w] != nil {
							break
						}
						e := &b.ents[i]
						key, val := b.entry(i)
						if e.block {
							errs[w] = a.restoreBlock(rs, key, val)
						} else {
							errs[w] = a.restoreGroup(rs, run.nd, run.in, e.h, key, val)
						}
					}
					b.buf, b.ents = b.buf[:0], b.ents[:0]
					select {
					case free <- b:
					default:
					}
				}
			}
			if errs[w] == nil {
				errs[w] = a.checkRestoredBlocks(rs)
			}
		}()
	}
	runs := make([]restoreRun, n) // the current (node, instance)'s entries per worker
	flush := func() {
		for w := range runs {
			if len(runs[w].batches) > 0 {
				work[w] <- runs[w]
			}
			runs[w] = restoreRun{}
		}
	}
	var last struct { // the node and instance of the previous key: consecutive keys share them
		node, window int
		start        int64
		in           *instance
	}
	k := make([]uint32, 0, 1+a.nd)
	var h uint64
	var retention restoreBatch // retention state, restored after the groups (it sorts after them)
	err := scan(func(key, val []byte) error {
		if len(key) > 0 && a.ret != nil && key[0] >= keyRetentionDay {
			retention.add(key, val, false, 0)
			return nil
		}
		nd, win, start, block, err := a.parseStateKey(key)
		if err != nil {
			return err
		}
		if last.in == nil || last.node != int(key[0]) || last.window != win || last.start != start {
			flush()
			last.node, last.window, last.start = int(key[0]), win, start
			last.in = a.instanceAt(win, start)
		}
		if !block { // a block goes where its group went: h is the group's
			k, h = groupKey(k[:0], last.in, key, nd.width)
		}
		w := shardOf(h, n)
		r := &runs[w]
		if r.nd == nil {
			r.nd, r.in = nd, last.in
		}
		var b *restoreBatch
		if nb := len(r.batches); nb > 0 && len(r.batches[nb-1].buf) < restoreBatchBytes {
			b = r.batches[nb-1]
		} else {
			select {
			case b = <-free:
			default:
				b = &restoreBatch{buf: make([]byte, 0, restoreBatchBytes+4096), ents: make([]restoreEntry, 0, restoreBatchBytes/32)}
			}
			r.batches = append(r.batches, b)
		}
		if !block {
			r.groups++
		}
		b.add(key, val, block, h)
		return nil
	})
	if err == nil {
		flush()
	}
	for w := range n {
		close(work[w])
	}
	wg.Wait()
	if err != nil {
		return err
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	for i := range retention.ents {
		if err := a.ret.restore(retention.entry(i)); err != nil {
			return err
		}
	}
	return nil
}
