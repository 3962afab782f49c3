package bitmapstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// BlockBits is B of the block partitioning: a large Set is split into blocks of ids with the same
// id >> BlockBits, each held, persisted (Set.AppendBlock) and evicted on its own.
//
// B = 16 because an id's low part then fits a uint16, so a sparse block costs 2 bytes per id (a
// sorted array, as in a roaring array container) and a dense one a fixed 8 KiB bitset (4,096
// uint16 words, ≤ 2 bytes per id once the block holds more than ArrayMax ids), the two layouts of
// Roaring (Lemire et al., 2016), whose containers have the same span. Dictionary ids are dense, so a
// cube with 10M users has 153 blocks; a smaller B multiplies the per-block overhead (32 bytes)
// of sparse groups, a larger one makes every checkpoint of a dirty block rewrite more ids.
// BenchmarkBytesPerPair and the checkpoint benchmarks of package aggregate measure both sides.
const BlockBits = 16

const (
	blockSpan = 1 << BlockBits
	// ArrayMax is the largest cardinality a block keeps as a sorted array; beyond it the block
	// becomes a bitset of the same size.
	ArrayMax    = blockSpan / 16
	bitsetWords = blockSpan / 16 // uint16 words of a dense block
)

// block is one block of a large Set: the ids key<<BlockBits | low for each low in it.
type block struct {
	key   uint16 // id >> BlockBits
	flags uint8
	n     uint32   // cardinality
	data  []uint16 // dense: a bitset of bitsetWords words; else sorted lows; nil when evicted
}

// Block flags.
const (
	fDense   = 1 << iota // data is a bitset
	fDirty               // changed since the last FlushDirty
	fRef                 // used since the last eviction sweep (CLOCK reference bit)
	fEvicted             // data lives only in the store (see Set.Evict)
)

func (b *block) dense() bool { return b.flags&fDense != 0 }

// find returns the index of block key in dir and whether it exists.
func findBlock(dir []block, key uint16) (int, bool) {
	if len(dir) <= 8 {
		for i := range dir {
			if dir[i].key >= key {
				return i, dir[i].key == key
			}
		}
		return len(dir), false
	}
	return slices.BinarySearchFunc(dir, key, func(b block, k uint16) int { return int(b.key) - int(k) })
}

func (b *block) contains(lo uint16) bool {
	b.flags |= fRef
	if b.dense() {
		return b.data[lo>>4]&(1<<(lo&15)) != 0
	}
	_, found := slices.BinarySearch(b.data, lo)
	return found
}

// add inserts lo and reports whether it was absent.
func (b *block) add(p *Pool, lo uint16) bool {
	b.flags |= fRef
	if b.dense() {
		w, m := &b.data[lo>>4], uint16(1)<<(lo&15)
		if *w&m != 0 {
			return false
		}
		*w |= m
		b.n++
		b.flags |= fDirty
		return true
	}
	i, found := slices.BinarySearch(b.data, lo)
	if found {
		return false
	}
	n := len(b.data)
	if n == ArrayMax {
		b.toDense(p)
		return b.add(p, lo)
	}
	b.data = insertAt(p, b.data, i, lo, (*Pool).get16, (*Pool).put16)
	b.n++
	b.flags |= fDirty
	return true
}

// remove deletes lo and reports whether it was present. A dense block stays dense.
func (b *block) remove(lo uint16) bool {
	if b.dense() {
		w, m := &b.data[lo>>4], uint16(1)<<(lo&15)
		if *w&m == 0 {
			return false
		}
		*w &^= m
		b.n--
		b.flags |= fDirty
		return true
	}
	i, found := slices.BinarySearch(b.data, lo)
	if !found {
		return false
	}
	b.data = slices.Delete(b.data, i, i+1)
	b.n--
	b.flags |= fDirty
	return true
}

// toDense converts a sorted block into a bitset.
func (b *block) toDense(p *Pool) {
	words := p.get16(bitsetWords)[:bitsetWords]
	clear(words)
	for _, lo := range b.data {
		words[lo>>4] |= 1 << (lo & 15)
	}
	p.put16(b.data)
	b.data = words
	b.flags |= fDense
}

// addSorted merges the ascending, duplicate-free lows into the block, appending the absent ones
// (as full ids) to added.
func (b *block) addSorted(p *Pool, lows []uint16, added []uint32) []uint32 {
	base := uint32(b.key) << BlockBits
	if b.dense() || len(lows) < 8 {
		for _, lo := range lows {
			if b.add(p, lo) {
				added = append(added, base|uint32(lo))
			}
		}
		return added
	}
	old := b.data
	if len(old)+len(lows) > ArrayMax {
		b.toDense(p)
		for _, lo := range lows {
			if b.add(p, lo) {
				added = append(added, base|uint32(lo))
			}
		}
		return added
	}
	merged := p.get16(len(old) + len(lows))
	i, j := 0, 0
	for i < len(old) && j < len(lows) {
		switch {
		case old[i] < lows[j]:
			merged = append(merged, old[i])
			i++
		case old[i] > lows[j]:
			merged = append(merged, lows[j])
			added = append(added, base|uint32(lows[j]))
			j++
		default:
			merged = append(merged, old[i])
			i++
			j++
		}
	}
	merged = append(merged, old[i:]...)
	for ; j < len(lows); j++ {
		merged = append(merged, lows[j])
		added = append(added, base|uint32(lows[j]))
	}
	p.put16(old)
	if len(merged) != int(b.n) {
		b.flags |= fDirty
	}
	b.flags |= fRef
	b.data = merged
	b.n = uint32(len(merged))
	return added
}

// each calls fn for every id of the block in ascending order.
func (b *block) each(fn func(x uint32)) {
	base := uint32(b.key) << BlockBits
	if !b.dense() {
		for _, lo := range b.data {
			fn(base | uint32(lo))
		}
		return
	}
	for wi, w := range b.data {
		for w != 0 {
			fn(base | uint32(wi)<<4 | uint32(bits.TrailingZeros16(w)))
			w &= w - 1
		}
	}
}

// appendIDs appends the block's ids in ascending order to dst.
func (b *block) appendIDs(dst []uint32) []uint32 {
	base := uint32(b.key) << BlockBits
	if !b.dense() {
		for _, lo := range b.data {
			dst = append(dst, base|uint32(lo))
		}
		return dst
	}
	for wi, w := range b.data {
		for w != 0 {
			dst = append(dst, base|uint32(wi)<<4|uint32(bits.TrailingZeros16(w)))
			w &= w - 1
		}
	}
	return dst
}

// mustBeResident panics when the block was evicted: its ids are only in the store, so answering
// from memory would be wrong. Callers load evicted blocks first (Set.LoadMissing).
func (b *block) mustBeResident() bool {
	if b.flags&fEvicted != 0 {
		panic("bitmapstate: BUG: use of an evicted block; call Set.LoadMissing first")
	}
	return true
}

// Block encoding (the value of one block in the state store): a kind byte (0 = sorted array,
// 1 = bitset), the cardinality as a uvarint, then the array's lows (2 bytes each, little-endian)
// or the bitset's 4,096 words (2 bytes each, little-endian): the layouts of Roaring's array and
// bitmap containers.
func (b *block) appendEncoded(dst []byte) []byte {
	kind := byte(0)
	if b.dense() {
		kind = 1
	}
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(b.n))
	for _, w := range b.data {
		dst = binary.LittleEndian.AppendUint16(dst, w)
	}
	return dst
}

// decodeHeader returns an encoded block's kind, cardinality and payload.
func decodeHeader(enc []byte) (dense bool, n uint32, payload []byte, err error) {
	if len(enc) < 2 || enc[0] > 1 {
		return false, 0, nil, errors.New("bitmapstate: malformed block")
	}
	v, k := binary.Uvarint(enc[1:])
	if k <= 0 || v == 0 || v > blockSpan {
		return false, 0, nil, errors.New("bitmapstate: malformed block cardinality")
	}
	dense, n, payload = enc[0] == 1, uint32(v), enc[1+k:]
	want := 2 * int(n)
	if dense {
		want = 2 * bitsetWords
	}
	if len(payload) != want {
		return false, 0, nil, fmt.Errorf("bitmapstate: block payload of %d bytes, want %d", len(payload), want)
	}
	return dense, n, payload, nil
}

// load fills an evicted (or new) block from its encoding.
func (b *block) load(p *Pool, enc []byte) error {
	dense, n, payload, err := decodeHeader(enc)
	if err != nil {
		return err
	}
	if b.flags&fEvicted != 0 && n != b.n {
		return fmt.Errorf("bitmapstate: stored block %d holds %d ids, want %d", b.key, n, b.n)
	}
	words := len(payload) / 2
	data := p.get16(words)[:words]
	for i := range data {
		data[i] = binary.LittleEndian.Uint16(payload[2*i:])
	}
	if dense {
		c := 0
		for _, w := range data {
			c += bits.OnesCount16(w)
		}
		if uint32(c) != n {
			p.put16(data)
			return fmt.Errorf("bitmapstate: block bitset holds %d ids, header says %d", c, n)
		}
		b.flags |= fDense
	} else {
		for i := 1; i < len(data); i++ {
			if data[i] <= data[i-1] {
				p.put16(data)
				return errors.New("bitmapstate: block array not ascending")
			}
		}
		b.flags &^= fDense
	}
	b.data, b.n = data, n
	b.flags &^= fEvicted
	return nil
}
