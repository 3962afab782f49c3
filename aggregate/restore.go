package aggregate

import (
	"sync"
)

// restoreBatch is a run of stored entries (key without prefix, value) copied out of the store's
// iterator, for one restore worker.
type restoreBatch struct {
	buf  []byte
	ents [][4]int32 // key offset, key length, value offset, value length in buf
}

// add copies one entry into the batch.
func (b *restoreBatch) add(key, val []byte) {
	ko := len(b.buf)
	b.buf = append(b.buf, key...)
	vo := len(b.buf)
	b.buf = append(b.buf, val...)
	b.ents = append(b.ents, [4]int32{int32(ko), int32(len(key)), int32(vo), int32(len(val))})
}

// entry returns entry i's key and value (aliasing the batch).
func (b *restoreBatch) entry(i int) (key, val []byte) {
	e := b.ents[i]
	return b.buf[e[0] : e[0]+e[1]], b.buf[e[2] : e[2]+e[3]]
}

const restoreBatchBytes = 256 << 10

// RestoreParallel restores the state written by WriteCheckpoint like a Restore call per entry,
// spread over the aggregator's N workers: scan must call fn for every stored entry (key without
// the prefix) in key order, and may reuse the slices after fn returns. Entries go to the worker
// that owns their group's shard (a block follows its group), so that workers never share a table.
// Call FinishRestore after it.
func (a *Aggregator) RestoreParallel(scan func(fn func(key, val []byte) error) error) error {
	n := a.n
	work := make([]chan *restoreBatch, n)
	free := make(chan *restoreBatch, 4*n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		work[w] = make(chan *restoreBatch, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := &restoreState{share: n}
			for b := range work[w] {
				for i := range b.ents {
					if errs[w] == nil {
						key, val := b.entry(i)
						errs[w] = a.restore(rs, key, val)
					}
				}
				b.buf, b.ents = b.buf[:0], b.ents[:0]
				select {
				case free <- b:
				default:
				}
			}
			if errs[w] == nil {
				errs[w] = a.checkRestoredBlocks(rs)
			}
		}()
	}
	cur := make([]*restoreBatch, n)
	send := func(w int) {
		work[w] <- cur[w]
		cur[w] = nil
	}
	var last struct { // the instance of the previous key: consecutive keys share it
		window int
		start  int64
		in     *instance
	}
	k := make([]uint32, 0, 1+a.nd)
	var retention restoreBatch // retention state, restored after the groups (it sorts after them)
	err := scan(func(key, val []byte) error {
		if len(key) > 0 && a.ret != nil && key[0] >= keyRetentionDay {
			retention.add(key, val)
			return nil
		}
		nd, win, start, _, err := a.parseStateKey(key)
		if err != nil {
			return err
		}
		if last.in == nil || last.window != win || last.start != start {
			last.window, last.start = win, start
			last.in = a.instanceAt(win, start)
		}
		var h uint64
		k, h = groupKey(k[:0], last.in, key, nd.width)
		w := shardOf(h, n)
		b := cur[w]
		if b == nil {
			select {
			case b = <-free:
			default:
				b = &restoreBatch{buf: make([]byte, 0, restoreBatchBytes+4096)}
			}
			cur[w] = b
		}
		b.add(key, val)
		if len(b.buf) >= restoreBatchBytes {
			send(w)
		}
		return nil
	})
	for w := range n {
		if cur[w] != nil {
			send(w)
		}
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
