package bitmapstate

import (
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"testing"
)

// TestBlocksPersistEvictLoad writes a growing set block by block into a map (the store), checks
// that each flush writes exactly the blocks that changed, evicts clean blocks, loads them back on
// demand, and rebuilds the set from its head and blocks, comparing with a Go map after every round.
func TestBlocksPersistEvictLoad(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	p := &Pool{}
	var s Set
	ref := map[uint32]bool{}
	store := map[uint16][]byte{}
	load := func(key uint16) ([]byte, error) {
		enc, ok := store[key]
		if !ok {
			return nil, fmt.Errorf("block %d not stored", key)
		}
		return enc, nil
	}
	for round := 0; round < 30; round++ {
		touched := map[uint16]bool{}
		var ids []uint32
		for i := 0; i < 1+r.Intn(6000); i++ {
			// Dense ids in the first blocks (bitsets), sparse ones above.
			x := uint32(r.Intn(3 << 16))
			if r.Intn(3) == 0 {
				x = uint32(r.Intn(1 << 24))
			}
			ids = append(ids, x)
		}
		if err := s.LoadMissing(p, ids, load); err != nil {
			t.Fatal(err)
		}
		for _, x := range ids {
			if s.AddWith(p, x) {
				touched[uint16(x>>BlockBits)] = true
			}
			ref[x] = true
		}
		if !s.IsBig() {
			continue
		}
		if round > 0 && s.HasEvicted() == false && round%3 != 1 {
			// every other round evicts everything below; nothing to check here
		}
		written := map[uint16]bool{}
		var err error
		if _, err = s.FlushDirty(nil, func(key uint16, enc []byte) error {
			written[key] = true
			store[key] = slices.Clone(enc)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if round > 3 && !maps.Equal(written, touched) {
			t.Fatalf("round %d: flushed %d blocks, %d changed", round, len(written), len(touched))
		}
		if s.Len() != uint64(len(ref)) {
			t.Fatalf("round %d: Len %d, want %d", round, s.Len(), len(ref))
		}
		switch round % 3 {
		case 0:
			freed := s.Evict(p, true)
			if freed == 0 || !s.HasEvicted() {
				t.Fatalf("round %d: Evict(all) freed %d bytes", round, freed)
			}
		case 1:
			s.Evict(p, false) // CLOCK: clears reference bits of recently used blocks
		case 2:
			// Rebuild from head and blocks; load half of them now.
			head := s.AppendHead(nil)
			var back Set
			rest, nb, err := back.ReadHead(p, head)
			if err != nil || len(rest) != 0 || nb != len(store) {
				t.Fatalf("round %d: ReadHead: %v, %d blocks, %d stored", round, err, nb, len(store))
			}
			for _, key := range slices.Sorted(maps.Keys(store)) {
				if err := back.AttachBlock(p, key, store[key], key%2 == 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := back.Verify(); err != nil {
				t.Fatal(err)
			}
			s.Release(p)
			s = back
		}
	}
	var all []uint32
	for x := range ref {
		all = append(all, x)
	}
	if err := s.LoadMissing(p, all, load); err != nil {
		t.Fatal(err)
	}
	if s.HasEvicted() {
		t.Fatalf("blocks still evicted after loading every id")
	}
	slices.Sort(all)
	if got := s.AppendIDs(nil); !slices.Equal(got, all) {
		t.Fatalf("final set has %d ids, want %d", len(got), len(all))
	}
}

// TestEvictedBlockUsePanics checks that using an evicted block without loading it fails loudly
// instead of answering from an empty array.
func TestEvictedBlockUsePanics(t *testing.T) {
	var s Set
	for x := uint32(0); x < 100; x++ {
		s.Add(x)
	}
	s.FlushDirty(nil, func(uint16, []byte) error { return nil })
	s.Evict(nil, true)
	defer func() {
		if recover() == nil {
			t.Fatal("Add on an evicted block did not panic")
		}
	}()
	s.Add(5)
}
