package pipeline

import (
	"hash/maphash"

	"github.com/cubed-olap/cubed/dictionary"
)

// valueCache is a decode worker's cache of one dimension's value → dictionary id: a small
// direct-mapped table in front of a bounded map. Dimension values repeat on nearly every event;
// a hit in the table costs one hash of the value and one comparison, about half of a Go map
// lookup, and the map keeps high-cardinality dimensions from reaching the shared dictionary's
// locks. The ids are the dictionary's, which never change for a value, so a slot or the map
// may be overwritten or cleared at any time.
type valueCache struct {
	seed  maphash.Seed
	slots []valueSlot // len is a power of two
	m     map[string]uint32
}

// valueSlot is one entry of valueCache's table: a value of at most len(key) bytes and its id.
// n is the value's length + 1 (0: empty), so that "" can be cached too.
type valueSlot struct {
	id  uint32
	n   uint8
	key [27]byte
}

const (
	// valueCacheSlots is the size of the direct-mapped table (32 bytes a slot: 32 KiB).
	valueCacheSlots = 1 << 10
	// valueCacheMax bounds the map; a full map starts over.
	valueCacheMax = 1 << 16
)

func newValueCache() *valueCache {
	return &valueCache{seed: maphash.MakeSeed(), slots: make([]valueSlot, valueCacheSlots), m: map[string]uint32{}}
}

// id returns v's id, from the cache or else from ns.ID (called only on a miss; its answer is
// then cached). Values longer than a slot's key skip the table.
func (c *valueCache) id(v []byte, ns dictionary.Namespace) uint32 {
	if len(v) > len(valueSlot{}.key) {
		return c.mapID(v, ns)
	}
	s := &c.slots[maphash.Bytes(c.seed, v)&(valueCacheSlots-1)]
	if int(s.n) == len(v)+1 && string(s.key[:len(v)]) == string(v) {
		return s.id
	}
	id := c.mapID(v, ns)
	s.id, s.n = id, uint8(len(v)+1)
	copy(s.key[:], v)
	return id
}

func (c *valueCache) mapID(v []byte, ns dictionary.Namespace) uint32 {
	id, ok := c.m[string(v)]
	if !ok {
		id = ns.ID(v)
		if len(c.m) >= valueCacheMax {
			clear(c.m)
		}
		c.m[string(v)] = id
	}
	return id
}
