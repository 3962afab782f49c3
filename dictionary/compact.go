package dictionary

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/cubed-olap/cubed/internal/openaddr"
	"github.com/cubed-olap/cubed/internal/prefetch"
)

// shardCount is the number of independently locked parts of a namespace, so that concurrent
// decoders rarely touch the same lock. The low bits of a value's hash choose its shard.
const shardCount = 64

// chunkSize is the size of the byte arenas that hold a shard's values.
const chunkSize = 64 << 10

// memNamespace is a compact value ↔ id map. Its current generation (gen) keeps, per shard, the
// values' bytes back to back in append-only arena chunks, an entry per value (arena location and
// id side by side, 12 bytes) and an open-addressing table of entry indices (4 bytes a
// slot, at most 3/4 full, whose top bits also hold a tag of the value's hash so that a probe
// rarely reads a value that is not the one sought), and per id assigned in the generation its
// shard and entry (4 bytes).
// A value thus costs its length plus about 24 bytes, against 80–90 for a Go map[string]uint32
// and a []string (BenchmarkBytesPerID).
//
// With a Store, the namespace is a cache of it: Trim replaces a generation grown beyond the cache
// limit by an empty one whose base is the next id; ids below the base are looked up in the
// Store when they come again (and cached in the new generation). Trim runs only when every id is
// persisted, so that the Store knows every id the namespace forgets.
type memNamespace struct {
	name  string
	store Store
	limit atomic.Int64
	g     atomic.Pointer[gen]

	mu        sync.Mutex // guards persisted and snap
	persisted uint32     // ids below are durable
	snap      []string   // values of ids [0, len(snap)), materialized by Snapshot

	errMu sync.Mutex
	err   error
}

// gen is one generation of a namespace.
type gen struct {
	shards [shardCount]memShard
	valMu  sync.RWMutex // guards loc; taken inside a shard lock
	base   uint32       // ids below were assigned before this generation (in the Store)
	loc    []uint32     // per id base+i: shard << entryBits | entry index in the shard
}

const entryBits = 26 // entries per shard < 1<<26 - 1, so a namespace holds 4G ids

const entryMask = 1<<entryBits - 1

// slotOf is the slot word of entry e of a value hashing to h: the entry index + 1 in the low
// entryBits bits, the hash's top 32 - entryBits bits above (a tag: only a slot whose tag matches
// can hold the value).
func slotOf(e uint32, h uint64) uint32 { return uint32(h>>(64-(32-entryBits)))<<entryBits | (e + 1) }

type memShard struct {
	mu    sync.RWMutex
	slots []uint32 // tag << entryBits | entry index + 1 (see slotOf); 0 is empty; len is a power of two
	ents  []entry  // per entry: where its value is, and its id
	arena [][]byte // chunks of chunkSize bytes (or one value, when longer)
	// view is slots, published for IDs' prefetches, which read it without the lock: a
	// prefetch of a replaced array is harmless.
	view atomic.Pointer[[]uint32]
	_    [32]byte // keep shards on separate cache lines
}

// entry is one value of a shard: its arena location (chunk << 41 | position in the chunk
// (≤ chunkSize) << 24 | length, in two halves, so that the entry takes 12 bytes) and its global
// id, side by side so that a lookup that found the value reads its id from the same cache line.
type entry struct {
	lo, hi uint32
	id     uint32
}

func newEntry(loc uint64, id uint32) entry { return entry{uint32(loc), uint32(loc >> 32), id} }

// loc is the entry's arena location word.
func (e entry) loc() uint64 { return uint64(e.hi)<<32 | uint64(e.lo) }

func newMemNamespace(name string, st Store) *memNamespace {
	n := &memNamespace{name: name, store: st}
	n.g.Store(&gen{})
	return n
}

func (n *memNamespace) fail(err error) {
	n.errMu.Lock()
	if n.err == nil {
		n.err = fmt.Errorf("dictionary %q: %w", n.name, err)
	}
	n.errMu.Unlock()
}

func (n *memNamespace) Err() error {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.err
}

func hashValue(v []byte) uint64 { return xxhash.Sum64(v) }

// value returns entry e's bytes (aliasing the arena).
func (sh *memShard) value(e uint32) []byte {
	ent := sh.ents[e].loc()
	c, pos, n := ent>>41, int(ent>>24&(1<<17-1)), int(ent&(1<<24-1))
	return sh.arena[c][pos : pos+n]
}

// find returns the slot of v (hash h) and its entry index + 1, or 0 when v is absent (the slot is
// then where it would go).
func (sh *memShard) find(v []byte, h uint64) (slot int, ent uint32) {
	if len(sh.slots) == 0 {
		return 0, 0
	}
	mask := uint64(len(sh.slots) - 1)
	tag := slotOf(0, h) &^ entryMask
	for i := (h >> 6) & mask; ; i = (i + 1) & mask {
		s := sh.slots[i]
		if s == 0 {
			return int(i), 0
		}
		if s&^entryMask == tag && bytes.Equal(sh.value(s&entryMask-1), v) {
			return int(i), s & entryMask
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
		// A new chunk (a value longer than a chunk gets one of its own, at position 0).
		sh.arena = append(sh.arena, make([]byte, 0, max(chunkSize, len(v))))
		n++
	}
	c := &sh.arena[n-1]
	pos := len(*c)
	*c = append(*c, v...)
	return uint64(n-1)<<41 | uint64(pos)<<24 | uint64(len(v))
}

func (sh *memShard) grow() { sh.growTo(max(openaddr.MinSlots, 2*len(sh.slots))) }

// growTo replaces the slot array by one of size slots (a power of two) and re-inserts the
// entries.
func (sh *memShard) growTo(size int) {
	slots := make([]uint32, size)
	mask := uint64(size - 1)
	for e := range sh.ents {
		h := hashValue(sh.value(uint32(e)))
		for i := (h >> 6) & mask; ; i = (i + 1) & mask {
			if slots[i] == 0 {
				slots[i] = slotOf(uint32(e), h)
				break
			}
		}
	}
	sh.slots = slots
	sh.view.Store(&slots)
}

// reserve makes room for n more entries: no growth (and rehashing) until they are in.
func (sh *memShard) reserve(n int) {
	want := len(sh.ents) + n
	sh.ents = slices.Grow(sh.ents, n)
	if size := openaddr.Slots(len(sh.slots), want); size != len(sh.slots) {
		sh.growTo(size)
	}
}

// insert adds v (absent, hash h) to shard si with id, or with the next id when id is NoID, and
// returns the id. The caller holds the shard's lock.
func (g *gen) insert(si int, v []byte, h uint64, id uint32) (uint32, error) {
	sh := &g.shards[si]
	if len(sh.ents) >= entryMask {
		return 0, fmt.Errorf("dictionary namespace shard full (%d values)", len(sh.ents))
	}
	if openaddr.Full(len(sh.ents), len(sh.slots)) {
		sh.grow()
	}
	slot, _ := sh.find(v, h)
	e := uint32(len(sh.ents))
	if id == NoID {
		g.valMu.Lock()
		if uint64(g.base)+uint64(len(g.loc)) >= NoID {
			g.valMu.Unlock()
			return 0, fmt.Errorf("dictionary namespace full (%d ids)", uint64(g.base)+uint64(len(g.loc)))
		}
		id = g.base + uint32(len(g.loc))
		g.loc = append(g.loc, uint32(si)<<entryBits|e)
		g.valMu.Unlock()
	}
	sh.ents = append(sh.ents, newEntry(sh.store(v), id))
	sh.slots[slot] = slotOf(e, h)
	return id, nil
}

func (g *gen) len() uint32 {
	g.valMu.RLock()
	defer g.valMu.RUnlock()
	return g.base + uint32(len(g.loc))
}

func (n *memNamespace) ID(v []byte) uint32 { return n.idHashed(v, hashValue(v)) }

// idsPrefetch is how many values ahead of the one it looks up IDs prefetches a slot.
const idsPrefetch = 8

// IDs hashes each value idsPrefetch values before looking it up and prefetches the slot where
// its probe starts (group prefetching, package prefetch), so that the lookups' slot loads
// overlap.
func (n *memNamespace) IDs(vals [][]byte, out []uint32) {
	var hs [idsPrefetch]uint64
	g := n.g.Load()
	ahead := func(i int) {
		h := hashValue(vals[i])
		hs[i%idsPrefetch] = h
		if v := g.shards[h%shardCount].view.Load(); v != nil {
			prefetch.Line(unsafe.Pointer(&(*v)[(h>>6)&uint64(len(*v)-1)]))
		}
	}
	for i := 0; i < min(idsPrefetch, len(vals)); i++ {
		ahead(i)
	}
	for i, v := range vals {
		h := hs[i%idsPrefetch]
		if j := i + idsPrefetch; j < len(vals) {
			ahead(j)
		}
		out[i] = n.idHashed(v, h)
	}
}

// idHashed is ID of v, whose hash is h.
func (n *memNamespace) idHashed(v []byte, h uint64) uint32 {
	g := n.g.Load()
	si := int(h % shardCount)
	sh := &g.shards[si]
	sh.mu.RLock()
	_, e := sh.find(v, h)
	if e != 0 {
		id := sh.ents[e-1].id
		sh.mu.RUnlock()
		return id
	}
	sh.mu.RUnlock()
	known := uint32(NoID)
	if g.base > 0 && n.store != nil {
		// Forgotten by a Trim or not loaded at restore: the Store may know it.
		id, ok, err := n.store.LookupID(n.name, v)
		if err != nil {
			n.fail(err)
			return NoID
		}
		if ok {
			known = id
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, e := sh.find(v, h); e != 0 {
		return sh.ents[e-1].id
	}
	id, err := g.insert(si, v, h, known)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return id
}

func (n *memNamespace) Lookup(v []byte) (uint32, bool) {
	g := n.g.Load()
	h := hashValue(v)
	sh := &g.shards[h%shardCount]
	sh.mu.RLock()
	_, e := sh.find(v, h)
	if e != 0 {
		id := sh.ents[e-1].id
		sh.mu.RUnlock()
		return id, true
	}
	sh.mu.RUnlock()
	if g.base > 0 && n.store != nil {
		id, ok, err := n.store.LookupID(n.name, v)
		if err != nil {
			n.fail(err)
			return 0, false
		}
		return id, ok
	}
	return 0, false
}

// valueOf returns id's value as a new string; false when id was never assigned.
func (n *memNamespace) valueOf(id uint32) (string, bool) {
	g := n.g.Load()
	g.valMu.RLock()
	if id < g.base {
		g.valMu.RUnlock()
		if n.store == nil {
			return "", false
		}
		v, ok, err := n.store.LookupValue(n.name, id)
		if err != nil {
			n.fail(err)
			return "", false
		}
		return v, ok
	}
	if int64(id-g.base) >= int64(len(g.loc)) {
		g.valMu.RUnlock()
		return "", false
	}
	l := g.loc[id-g.base]
	g.valMu.RUnlock()
	sh := &g.shards[l>>entryBits]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return string(sh.value(l & (1<<entryBits - 1))), true
}

func (n *memNamespace) Value(id uint32) (string, bool) { return n.valueOf(id) }

func (n *memNamespace) Len() int { return int(n.g.Load().len()) }

// values returns the values of ids [from, to) as new strings.
func (n *memNamespace) values(from, to uint32) []string {
	out := make([]string, 0, to-from)
	for id := from; id < to; id++ {
		v, _ := n.valueOf(id)
		out = append(out, v)
	}
	return out
}

func (n *memNamespace) VisitUnpersisted(fn func(id uint32, v []byte) error) (uint32, error) {
	n.mu.Lock()
	from := n.persisted
	n.mu.Unlock()
	to := uint32(n.Len())
	g := n.g.Load()
	var buf []byte
	for id := from; id < to; id++ {
		if id < g.base {
			// Not held in memory (a Trim or lazy restore): read through the Store.
			v, _ := n.valueOf(id)
			buf = append(buf[:0], v...)
		} else {
			g.valMu.RLock()
			l := g.loc[id-g.base]
			g.valMu.RUnlock()
			sh := &g.shards[l>>entryBits]
			sh.mu.RLock()
			buf = append(buf[:0], sh.value(l&(1<<entryBits-1))...)
			sh.mu.RUnlock()
		}
		if err := fn(id, buf); err != nil {
			return id, err
		}
	}
	return to, nil
}

func (n *memNamespace) MarkPersisted(upto uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if upto > n.persisted && int(upto) <= n.Len() {
		n.persisted = upto
	}
}

func (n *memNamespace) Restore(id uint32, value string) error {
	g := n.g.Load()
	v := unsafe.Slice(unsafe.StringData(value), len(value))
	h := hashValue(v)
	si := int(h % shardCount)
	sh := &g.shards[si]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l := g.len(); id != l {
		return fmt.Errorf("restoring dictionary id %d: expected id %d next", id, l)
	}
	if _, e := sh.find(v, h); e != 0 {
		return fmt.Errorf("restoring dictionary id %d: value %q already has id %d", id, value, sh.ents[e-1].id)
	}
	if _, err := g.insert(si, v, h, NoID); err != nil {
		return fmt.Errorf("restoring dictionary id %d: %w", id, err)
	}
	n.mu.Lock()
	n.persisted = id + 1
	n.mu.Unlock()
	return nil
}

func (n *memNamespace) Reserve(count int) {
	if count <= 0 {
		return
	}
	g := n.g.Load()
	// Values spread evenly over the shards: a shard gets count/shardCount, give or take a few
	// standard deviations (about the square root of that).
	per := count / shardCount
	per += 4*int(math.Sqrt(float64(per))) + 16
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		sh.reserve(per)
		sh.mu.Unlock()
	}
	g.valMu.Lock()
	g.loc = slices.Grow(g.loc, count)
	g.valMu.Unlock()
}

func (n *memNamespace) RestoreLazy(count uint32) error {
	if n.store == nil {
		return errors.New("restoring dictionary lazily: no store")
	}
	if n.Len() != 0 {
		return fmt.Errorf("restoring dictionary lazily: namespace already holds %d ids", n.Len())
	}
	n.g.Store(&gen{base: count})
	n.mu.Lock()
	n.persisted = count
	n.mu.Unlock()
	return nil
}

func (n *memNamespace) SetCacheLimit(bytes int64) { n.limit.Store(bytes) }

func (n *memNamespace) SizeBytes() int64 {
	g := n.g.Load()
	var b int64
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.RLock()
		b += 4*int64(cap(sh.slots)) + 12*int64(cap(sh.ents)) + 24*int64(cap(sh.arena))
		for _, c := range sh.arena {
			b += int64(cap(c))
		}
		sh.mu.RUnlock()
	}
	g.valMu.RLock()
	b += 4 * int64(cap(g.loc))
	g.valMu.RUnlock()
	n.mu.Lock()
	for _, s := range n.snap {
		b += 16 + int64(len(s))
	}
	n.mu.Unlock()
	return b
}

func (n *memNamespace) Trim() bool {
	limit := n.limit.Load()
	if n.store == nil || limit <= 0 || n.SizeBytes() <= limit {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	l := uint32(n.Len())
	if n.persisted != l {
		return false
	}
	n.g.Store(&gen{base: l})
	return true
}

// Snapshot materializes the values as strings once and extends them as ids are added: meant for
// the small namespaces of dimension values, whose strings queries and emission need.
func (n *memNamespace) Snapshot() []string {
	n.mu.Lock()
	have := len(n.snap)
	snap := n.snap
	n.mu.Unlock()
	want := n.Len()
	if have >= want {
		return snap[:have:have]
	}
	more := n.values(uint32(have), uint32(want))
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.snap) == have {
		n.snap = append(n.snap, more...)
	}
	return n.snap[:len(n.snap):len(n.snap)]
}
