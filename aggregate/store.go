package aggregate

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cubed-olap/cubed/bitmapstate"
)

// StateReader reads one value of the state store by key (the full key, prefix included),
// returning a copy; a missing key is an error. It is called from several goroutines at once.
type StateReader func(key []byte) ([]byte, error)

// SetStateStore connects the aggregator to the store its checkpoints are committed to: prefix is
// the one passed to WriteCheckpoint, read reads committed values, and memoryLimit (bytes) is the
// budget of Evict and of Restore (which loads blocks while they fit half of it and leaves the rest
// in the store). Without a store, nothing is ever evicted.
func (a *Aggregator) SetStateStore(prefix []byte, read StateReader, memoryLimit uint64) {
	a.statePrefix = append([]byte(nil), prefix...)
	a.reader = read
	a.memoryLimit = memoryLimit
}

// Err returns the first error of reading evicted state back (the aggregator's results are wrong
// from then on: stop and restart from the last checkpoint).
func (a *Aggregator) Err() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}

func (a *Aggregator) fail(err error) {
	a.errMu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.errMu.Unlock()
}

// loadBlocks reads back the evicted blocks of group g's set of field f that hold one of ids, and
// reports whether it succeeded.
func (a *Aggregator) loadBlocks(t *instTable, g int32, f int, set *bitmapstate.Set, ids []uint32) bool {
	return a.readEvicted(t, g, f, func(load func(uint16) ([]byte, error)) error {
		return set.LoadMissing(t.setPool, ids, load)
	})
}

// readEvicted runs fill (a Set's LoadMissing or LoadAll) with the reader of the stored blocks of
// group g's set of field f in t, and reports whether it succeeded (a failure goes to Err).
func (a *Aggregator) readEvicted(t *instTable, g int32, f int, fill func(load func(uint16) ([]byte, error)) error) bool {
	if a.reader == nil {
		a.fail(fmt.Errorf("distinct set has evicted blocks but no state store"))
		return false
	}
	err := fill(func(bk uint16) ([]byte, error) {
		key := appendStateKey(nil, a.statePrefix, t.node, t.inst.window, t.inst.start, t.keys.key(g))
		key = append(key, byte(f), byte(bk>>8), byte(bk))
		a.loads.Add(1)
		return a.reader(key)
	})
	if err != nil {
		a.fail(fmt.Errorf("reading evicted state: %w", err))
		return false
	}
	return true
}

// EvictStats describes one Evict call.
type EvictStats struct {
	// Before and After are the state bytes (Stats.StateBytes) before and after.
	Before, After uint64
	// Blocks is the number of blocks evicted.
	Blocks int
}

// Evict brings the state under the memory limit of SetStateStore, if it is above, by dropping
// clean blocks of large distinct sets from memory (they stay in the store and are read back when
// one of their ids arrives). Blocks are chosen by the CLOCK algorithm, oldest windows first: a
// first sweep evicts the blocks not used since the previous sweep, a second one, when still
// above 90% of the limit, every clean block until below it. Call it only right after a
// checkpoint commits, when every block is clean.
func (a *Aggregator) Evict() EvictStats {
	st := EvictStats{Before: a.Stats().StateBytes}
	st.After = st.Before
	if a.reader == nil || a.memoryLimit == 0 || st.Before <= a.memoryLimit {
		return st
	}
	target := a.memoryLimit / 10 * 9
	ins := make([]*instance, 0, len(a.instances))
	for _, in := range a.instances {
		ins = append(ins, in)
	}
	slices.SortFunc(ins, func(x, y *instance) int {
		return cmp.Or(cmp.Compare(x.start, y.start), cmp.Compare(x.window, y.window))
	})
	for pass := 0; pass < 2 && st.After > target; pass++ {
		for _, in := range ins {
			for _, nd := range a.nodes() {
				for _, sh := range nd.shards {
					t := sh.tables[in.id]
					if t == nil {
						continue
					}
					for i := range t.sets {
						if !t.sets[i].IsBig() {
							continue
						}
						before := t.sets[i].EvictedBlocks()
						freed := t.sets[i].Evict(t.setPool, pass == 1)
						st.Blocks += t.sets[i].EvictedBlocks() - before
						st.After -= min(freed, st.After)
						if pass == 1 && st.After <= target {
							a.evictions += st.Blocks
							return st
						}
					}
				}
			}
		}
	}
	a.evictions += st.Blocks
	return st
}
