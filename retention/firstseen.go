package retention

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cubed-olap/cubed/bitmapstate"
)

// BlockBits is the size of a block of the first-seen set as a power of two: ids id>>BlockBits
// share a block (65,536 ids, one roaring container). A checkpoint rewrites only the blocks that
// changed, and since dictionary ids are dense and given in arrival order, new ids fall in the
// newest block or two.
const BlockBits = 16

// FirstSeen is the cube-wide first-seen state of one id field: the set of every id the cube has
// seen (block-partitioned roaring bitmaps) and, for each retained day d, new(d), the ids first
// seen on d. An id's first day is the earliest day of an accepted event for it, whatever the
// order of arrival: an event of an earlier day (within the allowed lateness) moves the id from
// the later day's set to its own. Days before the retained ones are forgotten (Prune), the ids
// are not.
//
// A FirstSeen is not safe for concurrent use.
type FirstSeen struct {
	blocks      []*roaring.Bitmap // block → its seen ids; nil when none
	dirtyBlocks []uint32          // blocks changed since the last Changes, each once
	isDirty     []bool            // per block: listed in dirtyBlocks
	days        map[Day]*daySet
	order       []Day // the keys of days, ascending
	dropped     []Day // days pruned since the last Changes
}

type daySet struct {
	ids   bitmapstate.Set
	dirty bool
}

// NewFirstSeen returns an empty first-seen state.
func NewFirstSeen() *FirstSeen {
	return &FirstSeen{days: map[Day]*daySet{}}
}

// block returns the seen set of id's block, creating it.
func (f *FirstSeen) block(id uint32) (*roaring.Bitmap, uint32) {
	b := id >> BlockBits
	if int(b) >= len(f.blocks) {
		f.blocks = append(f.blocks, make([]*roaring.Bitmap, int(b)+1-len(f.blocks))...)
		f.isDirty = append(f.isDirty, make([]bool, int(b)+1-len(f.isDirty))...)
	}
	if f.blocks[b] == nil {
		f.blocks[b] = roaring.New()
	}
	return f.blocks[b], b
}

func (f *FirstSeen) markBlock(b uint32) {
	if !f.isDirty[b] {
		f.isDirty[b] = true
		f.dirtyBlocks = append(f.dirtyBlocks, b)
	}
}

// day returns day d's set, creating it.
func (f *FirstSeen) day(d Day) *daySet {
	ds := f.days[d]
	if ds == nil {
		ds = &daySet{}
		f.days[d] = ds
		i, _ := slices.BinarySearch(f.order, d)
		f.order = slices.Insert(f.order, i, d)
	}
	return ds
}

// Observe records an accepted event of id on day. It returns the id's previous first day
// (Never for an id not seen before) and changed = true when day is now the id's first day and
// was not before (a new id, or one moved earlier from prev). Day Before (an undated history id)
// records the id as seen before every day.
func (f *FirstSeen) Observe(id uint32, day Day) (prev Day, changed bool) {
	bm, b := f.block(id)
	if bm.CheckedAdd(id) {
		f.markBlock(b)
		if day != Before {
			ds := f.day(day)
			ds.ids.Add(id)
			ds.dirty = true
		}
		return Never, true
	}
	if n := len(f.order); n == 0 || day >= f.order[n-1] {
		return 0, false // the id's first day is at most the last retained day
	}
	// Out of order: the id may have been first seen on a later day, which moves here.
	for i := len(f.order) - 1; i >= 0 && f.order[i] > day; i-- {
		d := f.order[i]
		ds := f.days[d]
		if ds.ids.Remove(id) {
			ds.dirty = true
			if day != Before {
				nd := f.day(day)
				nd.ids.Add(id)
				nd.dirty = true
			}
			return d, true
		}
	}
	return 0, false
}

// Seen reports whether id has been seen (or imported).
func (f *FirstSeen) Seen(id uint32) bool {
	b := id >> BlockBits
	return int(b) < len(f.blocks) && f.blocks[b] != nil && f.blocks[b].Contains(id)
}

// FirstDay returns id's first day: Never when unseen, Before when seen but on no retained day
// (an undated history id, or a day already pruned).
func (f *FirstSeen) FirstDay(id uint32) Day {
	if !f.Seen(id) {
		return Never
	}
	for _, d := range f.order {
		if f.days[d].ids.Contains(id) {
			return d
		}
	}
	return Before
}

// New returns new(d), the ids first seen on day d, or nil when there are none or d was pruned.
// The caller must not modify it.
func (f *FirstSeen) New(d Day) *bitmapstate.Set {
	if ds := f.days[d]; ds != nil {
		return &ds.ids
	}
	return nil
}

// Days returns the retained days, ascending. The caller must not modify it.
func (f *FirstSeen) Days() []Day { return f.order }

// Prune forgets new(d) for every day d < before (the ids stay seen).
func (f *FirstSeen) Prune(before Day) {
	n := 0
	for n < len(f.order) && f.order[n] < before {
		delete(f.days, f.order[n])
		f.dropped = append(f.dropped, f.order[n])
		n++
	}
	f.order = f.order[n:]
}

// Len returns the number of ids seen.
func (f *FirstSeen) Len() uint64 {
	var n uint64
	for _, b := range f.blocks {
		if b != nil {
			n += b.GetCardinality()
		}
	}
	return n
}

// SizeBytes estimates the memory held: the seen blocks and the retained days' sets.
func (f *FirstSeen) SizeBytes() uint64 {
	n := uint64(cap(f.blocks))*8 + uint64(len(f.order))*4
	for _, b := range f.blocks {
		if b != nil {
			n += b.GetSizeInBytes()
		}
	}
	for _, ds := range f.days {
		n += ds.ids.SizeBytes() + 16
	}
	return n
}

// Keys of the serialized state (see Changes): a kind byte and a 4-byte big-endian number.
const (
	keyBlock = 'b' // + block number; the value is the block's portable roaring serialization
	keyDay   = 'd' // + day with its sign bit flipped; the value is bitmapstate.Set.AppendBinary
)

// KeyLen is the length of every key Changes passes.
const KeyLen = 5

func blockKey(b uint32) []byte { return binary.BigEndian.AppendUint32([]byte{keyBlock}, b) }

func dayKey(d Day) []byte {
	return binary.BigEndian.AppendUint32([]byte{keyDay}, uint32(d)^(1<<31))
}

// Changes passes to set every block and day set changed since the last call, and to del the key
// of every day pruned since, then considers everything written (the caller commits both in one
// batch or gives up the process). Keys are KeyLen bytes and order blocks before days, days in
// date order.
func (f *FirstSeen) Changes(set func(key, val []byte) error, del func(key []byte) error) error {
	for _, d := range f.dropped {
		if f.days[d] != nil {
			continue // pruned, then seen again
		}
		if err := del(dayKey(d)); err != nil {
			return err
		}
	}
	f.dropped = f.dropped[:0]
	slices.Sort(f.dirtyBlocks)
	var val []byte
	for _, b := range f.dirtyBlocks {
		f.isDirty[b] = false
		var err error
		if val, err = f.blocks[b].ToBytes(); err != nil {
			return fmt.Errorf("serializing first-seen block %d: %w", b, err)
		}
		if err := set(blockKey(b), val); err != nil {
			return err
		}
	}
	f.dirtyBlocks = f.dirtyBlocks[:0]
	for _, d := range f.order {
		ds := f.days[d]
		if !ds.dirty {
			continue
		}
		ds.dirty = false
		val = ds.ids.AppendBinary(val[:0])
		if err := set(dayKey(d), val); err != nil {
			return err
		}
	}
	return nil
}

var errBadKey = errors.New("malformed first-seen key")

// Load restores one key written by Changes. It fails on a key or value Changes does not write.
func (f *FirstSeen) Load(key, val []byte) error {
	if len(key) != KeyLen {
		return fmt.Errorf("%w: %d bytes", errBadKey, len(key))
	}
	n := binary.BigEndian.Uint32(key[1:])
	switch key[0] {
	case keyBlock:
		if n > (1<<32-1)>>BlockBits {
			return fmt.Errorf("%w: block %d", errBadKey, n)
		}
		bm := roaring.New()
		if _, err := bm.FromBuffer(append([]byte(nil), val...)); err != nil {
			return fmt.Errorf("reading first-seen block %d: %w", n, err)
		}
		if bm.GetCardinality() > 0 && (bm.Minimum()>>BlockBits != n || bm.Maximum()>>BlockBits != n) {
			return fmt.Errorf("reading first-seen block %d: it holds ids of other blocks", n)
		}
		f.block(n << BlockBits)
		f.blocks[n] = bm
		return nil
	case keyDay:
		d := Day(n ^ (1 << 31))
		ds := f.day(d)
		rest, err := ds.ids.ReadBinary(val)
		if err != nil {
			return fmt.Errorf("reading new users of %s: %w", d, err)
		}
		if len(rest) != 0 {
			return fmt.Errorf("reading new users of %s: %d trailing bytes", d, len(rest))
		}
		return nil
	}
	return fmt.Errorf("%w: kind %q", errBadKey, key[0])
}
