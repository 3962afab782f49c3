package dictionary

import (
	"bytes"
	"fmt"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// shardCount is the number of independently locked parts of a namespace, so that concurrent
// decoders rarely touch the same lock. The low bits of a value's hash choose its shard.
const shardCount = 64

// chunkSize is the size of the byte arenas that hold a shard's values.
const chunkSize = 64 << 10

// memNamespace is a compact value ↔ id map. Each shard keeps its values' bytes back to back in
// append-only arena chunks, an entry per value (arena offset and length, 8 bytes; the global id,
// 4 bytes) and an open-addressing table of entry indices (4 bytes a slot, at most 3/4 full); the
// namespace keeps, per id, its shard and entry (4 bytes). A value thus costs its length plus
// about 24 bytes, against 80–90 for a Go map[string]uint32 and a []string (BenchmarkBytesPerID).
type memNamespace struct {
	shards    [shardCount]memShard
	valMu     sync.RWMutex // guards loc, persisted and snap; taken inside a shard lock
	loc       []uint32     // per id: shard << 26 | entry index in the shard
	persisted uint32       // ids below are durable
	snap      []string     // values of ids [0, len(snap)), materialized by Snapshot
}

const entryBits = 26 // entries per shard < 1<<26, so a namespace holds 4G ids

type memShard struct {
	mu    sync.RWMutex
	slots []uint32 // entry index + 1; 0 is empty; len is a power of two
	ents  []uint64 // per entry: arena offset << 24 | length
	ids   []uint32 // per entry: the global id
	arena [][]byte // chunks of chunkSize bytes (or one value, when longer)
	_     [40]byte // keep shards on separate cache lines
}

func newMemNamespace() *memNamespace { return &memNamespace{} }

func hashValue(v []byte) uint64 { return xxhash.Sum64(v) }

// value returns entry e's bytes (aliasing the arena).
func (sh *memShard) value(e uint32) []byte {
	ent := sh.ents[e]
	off, n := ent>>24, int(ent&(1<<24-1))
	c := sh.arena[off/chunkSize]
	pos := int(off % chunkSize)
	return c[pos : pos+n]
}

// find returns the slot of v (hash h) and its entry index + 1, or 0 when v is absent (the slot is
// then where it would go).
func (sh *memShard) find(v []byte, h uint64) (slot int, ent uint32) {
	if len(sh.slots) == 0 {
		return 0, 0
	}
	mask := uint64(len(sh.slots) - 1)
	for i := (h >> 6) & mask; ; i = (i + 1) & mask {
		s := sh.slots[i]
		if s == 0 || bytes.Equal(sh.value(s-1), v) {
			return int(i), s
		}
	}
}

// store appends v's bytes to the arena and returns its ents word.
func (sh *memShard) store(v []byte) uint64 {
	if len(v) >= 1<<24 {
		panic(fmt.Sprintf("dictionary: value of %d bytes (the limit is 16 MiB)", len(v)))
	}
	n := len(sh.arena)
	if n == 0 || len(sh.arena[n-1])+len(v) > chunkSize {
		// A new chunk; a value longer than a chunk gets one of its own, which takes as many
		// chunk numbers as it has chunkSize-byte parts so that offsets stay unique.
		size := max(chunkSize, len(v))
		sh.arena = append(sh.arena, make([]byte, 0, size))
		for range (size - 1) / chunkSize {
			sh.arena = append(sh.arena, nil)
		}
		n = len(sh.arena)
		if size > chunkSize {
			// The value's chunk is arena[n-1-extra]; address it there.
			first := n - 1 - (size-1)/chunkSize
			sh.arena[first] = append(sh.arena[first], v...)
			return uint64(first*chunkSize)<<24 | uint64(len(v))
		}
	}
	c := &sh.arena[n-1]
	off := (n-1)*chunkSize + len(*c)
	*c = append(*c, v...)
	return uint64(off)<<24 | uint64(len(v))
}

func (sh *memShard) grow() {
	size := max(64, 2*len(sh.slots))
	slots := make([]uint32, size)
	mask := uint64(size - 1)
	for e := range sh.ents {
		for i := (hashValue(sh.value(uint32(e))) >> 6) & mask; ; i = (i + 1) & mask {
			if slots[i] == 0 {
				slots[i] = uint32(e) + 1
				break
			}
		}
	}
	sh.slots = slots
}

// insert adds v (absent, hash h) with the next id and returns it. The caller holds sh.mu.
func (n *memNamespace) insert(si int, v []byte, h uint64) (uint32, error) {
	sh := &n.shards[si]
	if len(sh.ents) >= 1<<entryBits {
		return 0, fmt.Errorf("dictionary namespace shard full (%d values)", len(sh.ents))
	}
	if (len(sh.ents)+1)*4 > len(sh.slots)*3 {
		sh.grow()
	}
	slot, _ := sh.find(v, h)
	n.valMu.Lock()
	if len(n.loc) >= NoID {
		n.valMu.Unlock()
		return 0, fmt.Errorf("dictionary namespace full (%d ids)", len(n.loc))
	}
	id := uint32(len(n.loc))
	e := uint32(len(sh.ents))
	n.loc = append(n.loc, uint32(si)<<entryBits|e)
	n.valMu.Unlock()
	sh.ents = append(sh.ents, sh.store(v))
	sh.ids = append(sh.ids, id)
	sh.slots[slot] = e + 1
	return id, nil
}

func (n *memNamespace) ID(v []byte) uint32 {
	h := hashValue(v)
	si := int(h % shardCount)
	sh := &n.shards[si]
	sh.mu.RLock()
	_, e := sh.find(v, h)
	if e != 0 {
		id := sh.ids[e-1]
		sh.mu.RUnlock()
		return id
	}
	sh.mu.RUnlock()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, e := sh.find(v, h); e != 0 {
		return sh.ids[e-1]
	}
	id, err := n.insert(si, v, h)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return id
}

func (n *memNamespace) Lookup(v []byte) (uint32, bool) {
	h := hashValue(v)
	sh := &n.shards[h%shardCount]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if _, e := sh.find(v, h); e != 0 {
		return sh.ids[e-1], true
	}
	return 0, false
}

// valueOf returns id's value as a new string; false when id was never assigned.
func (n *memNamespace) valueOf(id uint32) (string, bool) {
	n.valMu.RLock()
	if int64(id) >= int64(len(n.loc)) {
		n.valMu.RUnlock()
		return "", false
	}
	l := n.loc[id]
	n.valMu.RUnlock()
	sh := &n.shards[l>>entryBits]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return string(sh.value(l & (1<<entryBits - 1))), true
}

func (n *memNamespace) Value(id uint32) (string, bool) { return n.valueOf(id) }

func (n *memNamespace) Len() int {
	n.valMu.RLock()
	defer n.valMu.RUnlock()
	return len(n.loc)
}

// values returns the values of ids [from, to) as new strings.
func (n *memNamespace) values(from, to uint32) []string {
	out := make([]string, 0, to-from)
	for id := from; id < to; id++ {
		v, _ := n.valueOf(id)
		out = append(out, v)
	}
	return out
}

func (n *memNamespace) Unpersisted() (uint32, []string) {
	n.valMu.RLock()
	from, to := n.persisted, uint32(len(n.loc))
	n.valMu.RUnlock()
	return from, n.values(from, to)
}

func (n *memNamespace) MarkPersisted(upto uint32) {
	n.valMu.Lock()
	defer n.valMu.Unlock()
	if upto > n.persisted && int(upto) <= len(n.loc) {
		n.persisted = upto
	}
}

func (n *memNamespace) Restore(id uint32, value string) error {
	v := unsafe.Slice(unsafe.StringData(value), len(value))
	h := hashValue(v)
	si := int(h % shardCount)
	sh := &n.shards[si]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l := n.Len(); int(id) != l {
		return fmt.Errorf("restoring dictionary id %d: expected id %d next", id, l)
	}
	if _, e := sh.find(v, h); e != 0 {
		return fmt.Errorf("restoring dictionary id %d: value %q already has id %d", id, value, sh.ids[e-1])
	}
	if _, err := n.insert(si, v, h); err != nil {
		return fmt.Errorf("restoring dictionary id %d: %w", id, err)
	}
	n.valMu.Lock()
	n.persisted = id + 1
	n.valMu.Unlock()
	return nil
}

// Snapshot materializes the values as strings once and extends them as ids are added: meant for
// the small namespaces of dimension values, whose strings queries and emission need.
func (n *memNamespace) Snapshot() []string {
	n.valMu.RLock()
	have, want := len(n.snap), len(n.loc)
	snap := n.snap
	n.valMu.RUnlock()
	if have == want {
		return snap[:have:have]
	}
	more := n.values(uint32(have), uint32(want))
	n.valMu.Lock()
	defer n.valMu.Unlock()
	if len(n.snap) == have {
		n.snap = append(n.snap, more...)
	}
	return n.snap[:len(n.snap):len(n.snap)]
}
