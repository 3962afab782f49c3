package bitmapstate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Block-partitioned persistence. A state store keeps a large Set as a head (AppendHead: its
// cardinality) plus one value per block (FlushDirty), so that a checkpoint rewrites only the
// blocks that changed, and a memory budget can drop clean blocks from memory (Evict) and read
// them back when an id of theirs arrives (LoadMissing). A small set (≤ SmallMax ids) is written
// whole in its head.
//
// The number of evicted blocks of a large set is kept in inl[0], unused once the set is large.

// AppendHead appends the set's head to dst: for a small set its whole serialized form
// (AppendBinary), for a block-partitioned one a tag byte (2), the cardinality and the number of
// blocks as uvarints; the blocks themselves are written by FlushDirty.
func (s *Set) AppendHead(dst []byte) []byte {
	if s.dir == nil {
		return s.AppendBinary(dst)
	}
	dst = append(dst, 2)
	dst = binary.AppendUvarint(dst, uint64(s.n))
	return binary.AppendUvarint(dst, uint64(len(s.dir)))
}

// ReadHead replaces the set with the head at the start of b (as written by AppendHead, or a whole
// set written by AppendBinary) and returns the rest of b and the number of blocks that must
// follow through AttachBlock (0 for a set read whole).
func (s *Set) ReadHead(p *Pool, b []byte) (rest []byte, blocks int, err error) {
	if len(b) == 0 || b[0] != 2 {
		rest, err = s.ReadBinaryWith(p, b)
		return rest, 0, err
	}
	s.Release(p)
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n <= SmallMax || n > 1<<32 {
		return nil, 0, errors.New("reading set head: bad cardinality")
	}
	b = b[1+k:]
	nb, k := binary.Uvarint(b)
	if k <= 0 || nb == 0 || nb > 1<<(32-BlockBits) {
		return nil, 0, errors.New("reading set head: bad block count")
	}
	s.n = uint32(n)
	s.dir = p.getDir(int(nb))
	return b[k:], int(nb), nil
}

// AttachBlock adds block key, encoded as FlushDirty wrote it, to a set read by ReadHead; blocks
// must come in ascending key order. With load false the block is registered as evicted (only its
// cardinality is read) and loaded on demand by LoadMissing. After the last block, the blocks'
// cardinalities must add up to the head's; Verify checks it.
func (s *Set) AttachBlock(p *Pool, key uint16, enc []byte, load bool) error {
	if s.dir == nil {
		return errors.New("attaching block: set has no block head")
	}
	if n := len(s.dir); n > 0 && s.dir[n-1].key >= key {
		return fmt.Errorf("attaching block %d after block %d", key, s.dir[n-1].key)
	}
	b := block{key: key}
	if load {
		if err := b.load(p, enc); err != nil {
			return err
		}
	} else {
		_, n, _, err := decodeHeader(enc)
		if err != nil {
			return err
		}
		b.n, b.flags = n, fEvicted
		s.inl[0]++
	}
	s.dir = insertAt(p, s.dir, len(s.dir), b, (*Pool).getDir, (*Pool).putDir)
	return nil
}

// Verify checks that a set rebuilt by ReadHead and AttachBlock holds the cardinality its head
// stated.
func (s *Set) Verify() error {
	if s.dir == nil {
		return nil
	}
	sum := uint64(0)
	for i := range s.dir {
		sum += uint64(s.dir[i].n)
	}
	if sum != uint64(s.n) {
		return fmt.Errorf("set of %d ids has blocks holding %d", s.n, sum)
	}
	return nil
}

// FlushDirty calls fn with the key and encoding of every block changed since the last call (the
// encoding is built in buf, which it returns grown for reuse) and marks them clean. fn's enc is
// only valid during the call. A block emptied by RemoveWith disappears without a call: sets
// persisted by blocks are expected only to grow (the aggregator's do).
func (s *Set) FlushDirty(buf []byte, fn func(key uint16, enc []byte) error) ([]byte, error) {
	for i := range s.dir {
		b := &s.dir[i]
		if b.flags&fDirty == 0 {
			continue
		}
		buf = b.appendEncoded(buf[:0])
		if err := fn(b.key, buf); err != nil {
			return buf, err
		}
		b.flags &^= fDirty
	}
	return buf, nil
}

// MarkAllDirty marks every resident block changed, so that the next FlushDirty writes them all
// (after the set's stored blocks were deleted).
func (s *Set) MarkAllDirty() {
	for i := range s.dir {
		s.dir[i].mustBeResident()
		s.dir[i].flags |= fDirty
	}
}

// HasEvicted reports whether some block of the set lives only in the store.
func (s *Set) HasEvicted() bool { return s.dir != nil && s.inl[0] > 0 }

// LoadMissing makes resident every evicted block that holds one of ids (any order), reading each
// through load (which returns the encoding FlushDirty wrote). Blocks with no id in ids stay
// evicted.
func (s *Set) LoadMissing(p *Pool, ids []uint32, load func(key uint16) ([]byte, error)) error {
	if !s.HasEvicted() {
		return nil
	}
	for _, x := range ids {
		i, found := findBlock(s.dir, uint16(x>>BlockBits))
		if !found || s.dir[i].flags&fEvicted == 0 {
			continue
		}
		if err := s.loadBlock(p, i, load); err != nil {
			return err
		}
		if s.inl[0] == 0 {
			return nil
		}
	}
	return nil
}

// LoadAll makes every evicted block of the set resident, reading each through load (which
// returns the encoding FlushDirty wrote), as before the set leaves the store's keys behind.
func (s *Set) LoadAll(p *Pool, load func(key uint16) ([]byte, error)) error {
	if !s.HasEvicted() {
		return nil
	}
	for i := range s.dir {
		if s.dir[i].flags&fEvicted == 0 {
			continue
		}
		if err := s.loadBlock(p, i, load); err != nil {
			return err
		}
	}
	return nil
}

// loadBlock makes the evicted block dir[i] resident, reading it through load.
func (s *Set) loadBlock(p *Pool, i int, load func(key uint16) ([]byte, error)) error {
	enc, err := load(s.dir[i].key)
	if err != nil {
		return fmt.Errorf("loading block %d: %w", s.dir[i].key, err)
	}
	if err := s.dir[i].load(p, enc); err != nil {
		return err
	}
	s.inl[0]--
	return nil
}

// Evict drops clean blocks from memory, handing their arrays to p, and returns the bytes freed.
// It is one sweep of the CLOCK algorithm: a block used since the previous sweep only loses its
// reference bit, unless all is set, which evicts every clean block. Only blocks already in the
// store (clean: written by FlushDirty and not changed since) may be evicted, so call it right after
// a checkpoint commits.
func (s *Set) Evict(p *Pool, all bool) (freed uint64) {
	for i := range s.dir {
		b := &s.dir[i]
		if b.flags&(fDirty|fEvicted) != 0 {
			continue
		}
		if b.flags&fRef != 0 && !all {
			b.flags &^= fRef
			continue
		}
		freed += 2 * uint64(cap(b.data))
		p.put16(b.data)
		b.data = nil
		b.flags = b.flags&^(fRef|fDense) | fEvicted
		s.inl[0]++
	}
	return freed
}

// EvictedBlocks returns the number of blocks of the set that live only in the store.
func (s *Set) EvictedBlocks() int {
	if s.dir == nil {
		return 0
	}
	return int(s.inl[0])
}
