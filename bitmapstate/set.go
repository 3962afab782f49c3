// Package bitmapstate holds exact distinct-id state: sets of dense uint32 dictionary ids that
// start as small inline sorted arrays and become roaring bitmaps (Lemire et al., "Consistently
// faster and smaller compressed bitmaps with Roaring", 2016) only when they grow, so that the many
// small groups of a cube do not each pay for a roaring object.
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

// SmallMax is the largest cardinality a Set keeps as a sorted []uint32 before it converts to a
// roaring bitmap. 4 bytes per id up to here; a roaring array container costs about the same per id
// plus ~100 bytes of fixed overhead, so below this a plain array is smaller and as fast.
const SmallMax = 64

// Set is an exact set of uint32 ids. The zero value is an empty set ready to use.
//
// Representation, by cardinality n:
//   - n ≤ 3: ids inline in the struct (no allocation);
//   - 3 < n ≤ SmallMax: a sorted []uint32;
//   - n > SmallMax: a *roaring.Bitmap.
//
// A Set is not safe for concurrent use.
type Set struct {
	n   uint32 // cardinality while not big
	inl [inlineCap]uint32
	ext []uint32 // sorted; used when inlineCap < n ≤ SmallMax
	big *roaring.Bitmap
}

// Add inserts x and reports whether it was absent.
func (s *Set) Add(x uint32) bool {
	if s.big != nil {
		return s.big.CheckedAdd(x)
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
		// Spill the inline ids into a sorted slice (reusing capacity kept by Reset).
		if cap(s.ext) < 2*inlineCap+2 {
			s.ext = make([]uint32, 0, 2*inlineCap+2)
		}
		s.ext = append(s.ext[:0], s.inl[:]...)
		slices.Sort(s.ext)
	}
	i, found := slices.BinarySearch(s.ext, x)
	if found {
		return false
	}
	if len(s.ext) < SmallMax {
		s.ext = slices.Insert(s.ext, i, x)
		s.n++
		return true
	}
	s.big = roaring.New()
	s.big.AddMany(s.ext)
	s.big.Add(x)
	s.ext = nil
	s.n = 0
	return true
}

// Contains reports whether x is in the set.
func (s *Set) Contains(x uint32) bool {
	if s.big != nil {
		return s.big.Contains(x)
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
func (s *Set) Remove(x uint32) bool {
	if s.big != nil {
		return s.big.CheckedRemove(x)
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

// IsBig reports whether the set is held as a roaring bitmap (more than SmallMax ids).
func (s *Set) IsBig() bool { return s.big != nil }

// Len returns the cardinality.
func (s *Set) Len() uint64 {
	if s.big != nil {
		return s.big.GetCardinality()
	}
	return uint64(s.n)
}

// Each calls fn for every id in ascending order.
func (s *Set) Each(fn func(x uint32)) {
	switch {
	case s.big != nil:
		it := s.big.Iterator()
		for it.HasNext() {
			fn(it.Next())
		}
	case s.n <= inlineCap:
		ids := s.inl[:s.n]
		sorted := [inlineCap]uint32{}
		copy(sorted[:], ids)
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

// Reset empties the set, keeping a small slice's capacity for reuse.
func (s *Set) Reset() {
	s.n = 0
	s.big = nil
	if s.ext != nil {
		s.ext = s.ext[:0]
	}
}

// SizeBytes estimates the heap and struct bytes the set holds.
func (s *Set) SizeBytes() uint64 {
	const structBytes = 48
	switch {
	case s.big != nil:
		return structBytes + s.big.GetSizeInBytes()
	default:
		return structBytes + 4*uint64(cap(s.ext))
	}
}

// AppendBinary appends the set's serialized form to dst: a tag byte, then for a small set the
// cardinality and the ids as ascending deltas (uvarints), for a roaring set the length and the
// portable roaring serialization (github.com/RoaringBitmap/RoaringFormatSpec).
func (s *Set) AppendBinary(dst []byte) []byte {
	if s.big != nil {
		b, err := s.big.ToBytes()
		if err != nil {
			panic("BUG: serializing roaring bitmap: " + err.Error())
		}
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, uint64(len(b)))
		return append(dst, b...)
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

// ReadBinary replaces the set's contents with the serialized set at the start of b (as written by
// AppendBinary) and returns the rest of b. It fails on truncated or malformed input.
func (s *Set) ReadBinary(b []byte) ([]byte, error) {
	s.Reset()
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
			if k <= 0 || prev+d > math.MaxUint32 {
				return nil, fmt.Errorf("reading set: bad id %d of %d", i, n)
			}
			b = b[k:]
			prev += d
			s.Add(uint32(prev))
		}
		return b, nil
	case 1:
		if uint64(len(b)) < n {
			return nil, fmt.Errorf("reading set: %d bytes of roaring bitmap, want %d", len(b), n)
		}
		bm := roaring.New()
		if _, err := bm.FromBuffer(append([]byte(nil), b[:n]...)); err != nil {
			return nil, fmt.Errorf("reading set: %w", err)
		}
		s.big = bm
		s.n = 0
		return b[n:], nil
	}
	return nil, fmt.Errorf("reading set: unknown tag %d", tag)
}

// AddSorted adds ids, which must be ascending without duplicates, and appends to added the ones
// that were absent (ascending); it returns the extended added. On a roaring set the new ids are
// found by lookups first and only they are inserted, in order (roaring's AddMany).
func (s *Set) AddSorted(ids []uint32, added []uint32) []uint32 {
	const batch = 16 // below this, inserting one by one is as cheap
	if s.big == nil || len(ids) < batch {
		for _, x := range ids {
			if s.Add(x) {
				added = append(added, x)
			}
		}
		return added
	}
	n0 := len(added)
	for _, x := range ids {
		if !s.big.Contains(x) {
			added = append(added, x)
		}
	}
	s.big.AddMany(added[n0:])
	return added
}
