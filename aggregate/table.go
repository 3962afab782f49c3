package aggregate

import (
	"slices"
	"unsafe"

	"github.com/cespare/xxhash/v2"

	"github.com/cubed-olap/cubed/internal/openaddr"
	"github.com/cubed-olap/cubed/internal/prefetch"
)

// keyTable is an open-addressing hash table from fixed-width []uint32 keys to dense entry
// indices 0, 1, 2 … in insertion order. Keys live in one flat slice, so inserting allocates
// nothing once the table has grown to its working size, and reset keeps every buffer. The
// caller supplies each key's hash (any function of the key, used consistently for one table):
// the table keeps its low 32 bits in each slot, beside the entry index, so that a probe reads one
// slot word per step and a key only when its hash matches, and the table grows without rehashing.
type keyTable struct {
	width int
	keys  []uint32 // entry i's key is keys[i*width : (i+1)*width]
	slots []uint64 // hash low 32 bits << 32 | entry index + 1; 0 is empty. len is a power of two.
	mask  uint64
	n     int32
}

// slotWord is the slot of entry e, whose key hashes to h.
func slotWord(e int32, h uint64) uint64 { return h<<32 | uint64(e+1) }

func newKeyTable(width int) keyTable {
	return keyTable{width: width}
}

// hashKey hashes a key with xxhash64.
func hashKey(k []uint32) uint64 {
	if len(k) == 0 {
		return 0x9E3779B97F4A7C15
	}
	return xxhash.Sum64(unsafe.Slice((*byte)(unsafe.Pointer(&k[0])), len(k)*4))
}

// findOrInsert returns the entry of key, whose hash is h (hashKey(key) or any other function of
// the key that the caller uses consistently for this table), and whether it was inserted now.
func (t *keyTable) findOrInsert(key []uint32, h uint64) (int32, bool) {
	if openaddr.Full(int(t.n), len(t.slots)) {
		t.grow()
	}
	w, tag := t.width, h<<32
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i]
		if s == 0 {
			t.slots[i] = slotWord(t.n, h)
			t.keys = append(t.keys, key...)
			t.n++
			return t.n - 1, true
		}
		if s&^(1<<32-1) == tag {
			if e := int(uint32(s) - 1); equalKey(t.keys[e*w:e*w+w], key) {
				return int32(e), false
			}
		}
	}
}

// prefetch asks for the cache line of the slot where a probe for a key hashing to h starts, so
// that a caller can issue it some keys before it looks the key up (package prefetch).
func (t *keyTable) prefetch(h uint64) {
	if len(t.slots) != 0 {
		prefetch.Line(unsafe.Pointer(&t.slots[h&t.mask]))
	}
}

// withSlice derives the hash of [key…, slice] from h, the hash of key.
func withSlice(h uint64, slice uint32) uint64 {
	h ^= (uint64(slice) + 1) * 0x9E3779B97F4A7C15
	return h ^ h>>29
}

func equalKey(a, b []uint32) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (t *keyTable) grow() { t.growTo(max(openaddr.MinSlots, 2*len(t.slots))) }

// growTo replaces the slot array by one of n slots (a power of two) and re-inserts the entries.
func (t *keyTable) growTo(n int) {
	old := t.slots
	t.slots = make([]uint64, n)
	t.mask = uint64(n - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		for i := s >> 32 & t.mask; ; i = (i + 1) & t.mask {
			if t.slots[i] == 0 {
				t.slots[i] = s
				break
			}
		}
	}
}

// reserve makes room for n more entries, so that inserting them neither grows the slot array
// nor reallocates the keys.
func (t *keyTable) reserve(n int) {
	want := int(t.n) + n
	t.keys = slices.Grow(t.keys, n*t.width)
	if size := openaddr.Slots(len(t.slots), want); size != len(t.slots) {
		t.growTo(size)
	}
}

// key returns entry e's key (aliasing the table).
func (t *keyTable) key(e int32) []uint32 {
	return t.keys[int(e)*t.width : int(e+1)*t.width]
}

// reset empties the table, keeping its memory.
func (t *keyTable) reset() {
	if t.n == 0 {
		return
	}
	clear(t.slots)
	t.keys = t.keys[:0]
	t.n = 0
}

// sizeBytes is the memory the table holds.
func (t *keyTable) sizeBytes() uint64 {
	return uint64(cap(t.keys))*4 + uint64(cap(t.slots))*8
}
