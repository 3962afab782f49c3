package aggregate

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// restoreBatch is a run of stored entries (key without prefix, value) copied out of the store's
// iterator, for one restore worker.
type restoreBatch struct {
	buf  []byte
	ents [][4]int32 // key offset, key length, value offset, value length in buf
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
				for _, e := range b.ents {
					if errs[w] == nil {
						errs[w] = a.restore(rs, b.buf[e[0]:e[0]+e[1]], b.buf[e[2]:e[2]+e[3]])
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
	var last struct {
		node, window int
		start        int64
		in           *instance
	}
	k := make([]uint32, 0, 1+a.nd)
	nodes := a.nodes()
	var retention restoreBatch // retention state, restored after the groups (it sorts after them)
	err := scan(func(key, val []byte) error {
		if len(key) > 0 && a.ret != nil && key[0] >= keyRetentionDay {
			ko := len(retention.buf)
			retention.buf = append(retention.buf, key...)
			vo := len(retention.buf)
			retention.buf = append(retention.buf, val...)
			retention.ents = append(retention.ents, [4]int32{int32(ko), int32(len(key)), int32(vo), int32(len(val))})
			return nil
		}
		if len(key) < 10 {
			return fmt.Errorf("%w: key of %d bytes", errBadState, len(key))
		}
		ni, win := int(key[0]), int(key[1])
		if ni >= len(nodes) || win >= len(a.wins) {
			return fmt.Errorf("%w: node %d window %d", errBadState, ni, win)
		}
		width := nodes[ni].width
		if len(key) != 10+4*width && len(key) != 10+4*width+3 {
			return fmt.Errorf("%w: key of %d bytes for %d dimensions", errBadState, len(key), width)
		}
		start := int64(binary.BigEndian.Uint64(key[2:10]) ^ (1 << 63))
		if last.in == nil || last.node != ni || last.window != win || last.start != start {
			_, end := instanceBounds(a.wins[win].spec.Granularity, a.wins[win].loc, start)
			last.node, last.window, last.start = ni, win, start
			last.in = a.instanceFor(win, start, end)
		}
		k = append(k[:0], last.in.id)
		for i := range width {
			k = append(k, binary.BigEndian.Uint32(key[10+4*i:]))
		}
		w := shardOf(hashKey(k), n)
		b := cur[w]
		if b == nil {
			select {
			case b = <-free:
			default:
				b = &restoreBatch{buf: make([]byte, 0, restoreBatchBytes+4096)}
			}
			cur[w] = b
		}
		ko := len(b.buf)
		b.buf = append(b.buf, key...)
		vo := len(b.buf)
		b.buf = append(b.buf, val...)
		b.ents = append(b.ents, [4]int32{int32(ko), int32(len(key)), int32(vo), int32(len(val))})
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
	for _, e := range retention.ents {
		if err := a.ret.restore(retention.buf[e[0]:e[0]+e[1]], retention.buf[e[2]:e[2]+e[3]]); err != nil {
			return err
		}
	}
	return nil
}
