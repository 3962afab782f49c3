// Package bitmapstate holds exact distinct-id state: sets of dense uint32 dictionary ids that
// start inline in their struct, grow into a small sorted array and, past SmallMax ids, become
// block-partitioned bitmaps: one block per id >> BlockBits, each a sorted array of 16-bit lows or
// an 8 KiB bitset — the container layouts of Roaring (Lemire et al., "Consistently faster and
// smaller compressed bitmaps with Roaring", 2016), which is also the serialized form
// (github.com/RoaringBitmap/roaring/v2, RoaringFormatSpec).
//
// The in-memory layout is this package's own rather than a *roaring.Bitmap because the state
// store needs what roaring's API does not expose: blocks that are persisted and evicted one by
// one (Kuaishou's lesson that a UV bitmap stored as one value grows too large to rewrite), and
// array memory recycled through a Pool, so that the groups of each new window reuse the memory
// of closed ones and steady-state aggregation allocates nothing.
package bitmapstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
)

// inlineCap is how many ids a Set keeps inside its own struct before it allocates.
const inlineCap = 3

// SmallMax is the largest cardinality a Set keeps as a sorted []uint32 before it converts to
// blocks: up to here 4 bytes per id without per-block overhead (32 bytes a block) beat 2 bytes
// per id in blocks.
const SmallMax = 64

// StructBytes is the size of a Set value: the fixed bytes of every group's distinct set.
const StructBytes = 64

// Set is an exact set of uint32 ids. The zero value is an empty set ready to use.
//
// Representation, by cardinality n:
//   - n ≤ 3: ids inline in the struct (no allocation);
//   - 3 < n ≤ SmallMax: a sorted []uint32;
//   - n > SmallMax: blocks (see BlockBits), ascending by block key.
//
// Methods named …With take a *Pool that provides and takes back array memory (nil: the heap).
// A Set is not safe for concurrent use.
type Set struct {
	n   uint32 // cardinality
	inl [inlineCap]uint32
	ext []uint32 // sorted; used when inlineCap < n ≤ SmallMax
	dir []block  // non-nil once big
}

// Add inserts x and reports whether it was absent. Memory comes from the heap.
func (s *Set) Add(x uint32) bool { return s.AddWith(nil, x) }

// AddWith inserts x, taking any memory it needs from p, and reports whether x was absent.
func (s *Set) AddWith(p *Pool, x uint32) bool {
	if s.dir != nil {
		return s.addBig(p, x)
	}
	if s.n <= inlineCap {
		for i := uint32(0); i < s.n; i++ {
			if s.inl[i] == x {
				return false
			}
		}
		if s.n < inlineCap {
			s.inl[s.n] = x
			s.n++
			return true
		}
		// Spill the inline ids into a sorted slice.
		if s.ext == nil {
			s.ext = p.get32(2*inlineCap + 2)
		}
		s.ext = append(s.ext[:0], s.inl[:]...)
		slices.Sort(s.ext)
	}
	i, found := slices.BinarySearch(s.ext, x)
	if found {
		return false
	}
	n := len(s.ext)
	if n < SmallMax {
		s.ext = insertAt(p, s.ext, i, x, (*Pool).get32, (*Pool).put32)
		s.n++
		return true
	}
	s.toBlocks(p)
	return s.addBig(p, x)
}

// toBlocks converts a full small set into blocks.
func (s *Set) toBlocks(p *Pool) {
	ids := s.ext
	nb := 1
	for i := 1; i < len(ids); i++ {
		if ids[i]>>BlockBits != ids[i-1]>>BlockBits {
			nb++
		}
	}
	s.dir = p.getDir(nb)
	for i := 0; i < len(ids); {
		key := ids[i] >> BlockBits
		j := i + 1
		for j < len(ids) && ids[j]>>BlockBits == key {
			j++
		}
		data := p.get16(j - i)
		for _, x := range ids[i:j] {
			data = append(data, uint16(x))
		}
		s.dir = append(s.dir, block{key: uint16(key), flags: fDirty | fRef, n: uint32(j - i), data: data})
		i = j
	}
	p.put32(s.ext)
	s.ext = nil
	s.inl = [inlineCap]uint32{} // inl[0] counts evicted blocks from now on
}

// blockFor returns the index of x's block, inserting an empty one when missing.
func (s *Set) blockFor(p *Pool, key uint16) int {
	i, found := findBlock(s.dir, key)
	if found {
		return i
	}
	s.dir = insertAt(p, s.dir, i, block{key: key, flags: fDirty, data: p.get16(4)}, (*Pool).getDir, (*Pool).putDir)
	return i
}

func (s *Set) addBig(p *Pool, x uint32) bool {
	i := s.blockFor(p, uint16(x>>BlockBits))
	s.dir[i].mustBeResident()
	if s.dir[i].add(p, uint16(x)) {
		s.n++
		return true
	}
	return false
}

// Contains reports whether x is in the set.
func (s *Set) Contains(x uint32) bool {
	if s.dir != nil {
		i, found := findBlock(s.dir, uint16(x>>BlockBits))
		return found && s.dir[i].mustBeResident() && s.dir[i].contains(uint16(x))
	}
	if s.n <= inlineCap {
		for i := uint32(0); i < s.n; i++ {
			if s.inl[i] == x {
				return true
			}
		}
		return false
	}
	_, found := slices.BinarySearch(s.ext, x)
	return found
}

// Remove deletes x and reports whether it was present.
func (s *Set) Remove(x uint32) bool { return s.RemoveWith(nil, x) }

// RemoveWith deletes x, handing memory it frees to p, and reports whether x was present. A
// block-partitioned set stays in blocks (an emptied block is freed).
func (s *Set) RemoveWith(p *Pool, x uint32) bool {
	if s.dir != nil {
		i, found := findBlock(s.dir, uint16(x>>BlockBits))
		if !found || !s.dir[i].mustBeResident() || !s.dir[i].remove(uint16(x)) {
			return false
		}
		s.n--
		if s.dir[i].n == 0 {
			p.put16(s.dir[i].data)
			s.dir = slices.Delete(s.dir, i, i+1)
		}
		return true
	}
	if s.n <= inlineCap {
		for i := uint32(0); i < s.n; i++ {
			if s.inl[i] == x {
				copy(s.inl[i:], s.inl[i+1:s.n])
				s.n--
				return true
			}
		}
		return false
	}
	i, found := slices.BinarySearch(s.ext, x)
	if !found {
		return false
	}
	s.ext = slices.Delete(s.ext, i, i+1)
	s.n--
	if s.n == inlineCap {
		copy(s.inl[:], s.ext)
		s.ext = s.ext[:0]
	}
	return true
}

// IsBig reports whether the set is block-partitioned (more than SmallMax ids at some point).
func (s *Set) IsBig() bool { return s.dir != nil }

// Len returns the cardinality.
func (s *Set) Len() uint64 { return uint64(s.n) }

// Each calls fn for every id in ascending order.
func (s *Set) Each(fn func(x uint32)) {
	switch {
	case s.dir != nil:
		for i := range s.dir {
			s.dir[i].mustBeResident()
			s.dir[i].each(fn)
		}
	case s.n <= inlineCap:
		sorted := s.inl
		slices.Sort(sorted[:s.n])
		for _, x := range sorted[:s.n] {
			fn(x)
		}
	default:
		for _, x := range s.ext {
			fn(x)
		}
	}
}

// AppendIDs appends the ids in ascending order to dst and returns it.
func (s *Set) AppendIDs(dst []uint32) []uint32 {
	switch {
	case s.dir != nil:
		for i := range s.dir {
			s.dir[i].mustBeResident()
			dst = s.dir[i].appendIDs(dst)
		}
		return dst
	case s.n <= inlineCap:
		n := len(dst)
		dst = append(dst, s.inl[:s.n]...)
		slices.Sort(dst[n:])
		return dst
	default:
		return append(dst, s.ext...)
	}
}

// Reset empties the set, leaving its memory to the garbage collector except a small array's,
// which it keeps for reuse.
func (s *Set) Reset() {
	s.n = 0
	s.inl = [inlineCap]uint32{}
	s.dir = nil
	if s.ext != nil {
		s.ext = s.ext[:0]
	}
}

// Release empties the set and hands all its memory to p.
func (s *Set) Release(p *Pool) {
	for i := range s.dir {
		p.put16(s.dir[i].data)
	}
	if s.dir != nil {
		p.putDir(s.dir)
	}
	p.put32(s.ext)
	*s = Set{}
}

// SizeBytes returns the bytes the set holds: StructBytes plus the capacity of its arrays.
func (s *Set) SizeBytes() uint64 {
	b := uint64(StructBytes) + 4*uint64(cap(s.ext))
	if s.dir != nil {
		b += 32 * uint64(cap(s.dir))
		for i := range s.dir {
			b += 2 * uint64(cap(s.dir[i].data))
		}
	}
	return b
}

// AppendBinary appends the set's serialized form to dst: a tag byte, then for a set of at most
// SmallMax ids the cardinality and the ids as ascending deltas (uvarints), for a larger one the
// length and the portable Roaring serialization (github.com/RoaringBitmap/RoaringFormatSpec,
// written by roaring/v2, run-optimized).
func (s *Set) AppendBinary(dst []byte) []byte {
	if s.n > SmallMax {
		dst = append(dst, 1)
		return appendRoaring(dst, s.AppendIDs(nil))
	}
	dst = append(dst, 0)
	dst = binary.AppendUvarint(dst, uint64(s.n))
	prev := uint32(0)
	s.Each(func(x uint32) {
		dst = binary.AppendUvarint(dst, uint64(x-prev))
		prev = x
	})
	return dst
}

// appendRoaring appends uvarint(len) and the portable Roaring serialization of the ascending ids.
func appendRoaring(dst []byte, ids []uint32) []byte {
	bm := roaring.New()
	bm.AddMany(ids)
	bm.RunOptimize()
	b, err := bm.ToBytes()
	if err != nil {
		panic("BUG: serializing roaring bitmap: " + err.Error())
	}
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// ReadBinary replaces the set's contents with the serialized set at the start of b (as written by
// AppendBinary) and returns the rest of b. It fails on truncated or malformed input.
func (s *Set) ReadBinary(b []byte) ([]byte, error) { return s.ReadBinaryWith(nil, b) }

// ReadBinaryWith is ReadBinary taking memory from p.
func (s *Set) ReadBinaryWith(p *Pool, b []byte) ([]byte, error) {
	s.Release(p)
	if len(b) == 0 {
		return nil, errors.New("reading set: no data")
	}
	tag := b[0]
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("reading set: bad length")
	}
	b = b[k:]
	switch tag {
	case 0:
		prev := uint64(0)
		for i := uint64(0); i < n; i++ {
			d, k := binary.Uvarint(b)
			if k <= 0 || prev+d > math.MaxUint32 || (i > 0 && d == 0) {
				return nil, fmt.Errorf("reading set: bad id %d of %d", i, n)
			}
			b = b[k:]
			prev += d
			s.AddWith(p, uint32(prev))
		}
		return b, nil
	case 1:
		if uint64(len(b)) < n {
			return nil, fmt.Errorf("reading set: %d bytes of roaring bitmap, want %d", len(b), n)
		}
		if err := s.readRoaring(p, b[:n]); err != nil {
			return nil, err
		}
		return b[n:], nil
	}
	return nil, fmt.Errorf("reading set: unknown tag %d", tag)
}

// readRoaring adds the ids of a portable Roaring serialization.
func (s *Set) readRoaring(p *Pool, b []byte) error {
	bm := roaring.New()
	if _, err := bm.FromBuffer(b); err != nil {
		return fmt.Errorf("reading set: %w", err)
	}
	it := bm.ManyIterator()
	buf := make([]uint32, 4096)
	var added []uint32
	for {
		k := it.NextMany(buf)
		if k == 0 {
			return nil
		}
		added = s.AddSortedWith(p, buf[:k], added[:0])
	}
}

// AddSorted adds ids, which must be ascending without duplicates, and appends to added the ones
// that were absent (ascending); it returns the extended added.
func (s *Set) AddSorted(ids []uint32, added []uint32) []uint32 {
	return s.AddSortedWith(nil, ids, added)
}

// AddSortedWith is AddSorted taking memory from p. On a block-partitioned set the ids of each
// block are merged into it in one pass.
func (s *Set) AddSortedWith(p *Pool, ids []uint32, added []uint32) []uint32 {
	if s.dir == nil {
		i := 0
		for ; i < len(ids) && s.dir == nil; i++ {
			if s.AddWith(p, ids[i]) {
				added = append(added, ids[i])
			}
		}
		ids = ids[i:]
		if len(ids) == 0 {
			return added
		}
	}
	var lows [256]uint16
	for i := 0; i < len(ids); {
		key := ids[i] >> BlockBits
		j := i + 1
		for j < len(ids) && ids[j]>>BlockBits == key && j-i < len(lows) {
			j++
		}
		l := lows[:0]
		for _, x := range ids[i:j] {
			l = append(l, uint16(x))
		}
		bi := s.blockFor(p, uint16(key))
		s.dir[bi].mustBeResident()
		n0 := len(added)
		added = s.dir[bi].addSorted(p, l, added)
		s.n += uint32(len(added) - n0)
		i = j
	}
	return added
}
