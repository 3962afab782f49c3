package bitmapstate

import (
	"sort"
	"unsafe"
)

// sizeClasses are the capacities in which a Set allocates its arrays (sorted id arrays, block
// arrays and block directories): 4, 8, then four steps per power of two (8, 10, 12, 14, 16, 20,
// …, 65536), so that an array carries at most 25% and on average about 12% of unused capacity,
// and a freed array fits the next array of its class exactly.
var sizeClasses = func() []int {
	c := []int{4}
	for p := 8; p <= 1<<16; p *= 2 {
		c = append(c, p)
		if p < 1<<16 {
			c = append(c, p+p/4, p+p/2, p+3*p/4)
		}
	}
	return c
}()

// classOf returns the index of the smallest size class ≥ need (need ≤ 65536).
func classOf(need int) int {
	return sort.SearchInts(sizeClasses, need)
}

// DefaultPoolMaxFree is the default bound on the bytes a Pool keeps for reuse.
const DefaultPoolMaxFree = 8 << 20

// Pool recycles the memory of Sets: arrays freed by one set (when it grows to a larger class,
// converts to blocks, or is released with Release) are handed to the next set that needs an
// array of the same size class, so that a steady stream of short-lived sets (the groups of
// successive windows) allocates nothing once the pool is warm. Freed memory beyond MaxFree bytes
// is left to the garbage collector.
//
// A nil *Pool is valid: it allocates from the heap and keeps nothing. A Pool is not safe for
// concurrent use; give each goroutine its own (the aggregator keeps one per shard).
type Pool struct {
	// MaxFree bounds the bytes of freed arrays kept for reuse (0 means DefaultPoolMaxFree).
	MaxFree int

	free   int // bytes held in the lists below
	u16    [][][]uint16
	u32    [][][]uint32
	dirs   [][][]block
	hits   uint64
	misses uint64
}

// PoolStats describes a Pool's reuse.
type PoolStats struct {
	// FreeBytes is the memory held for reuse.
	FreeBytes int
	// Hits and Misses count array requests served from the pool and from the heap.
	Hits, Misses uint64
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	if p == nil {
		return PoolStats{}
	}
	return PoolStats{FreeBytes: p.free, Hits: p.hits, Misses: p.misses}
}

func (p *Pool) limit() int {
	if p.MaxFree > 0 {
		return p.MaxFree
	}
	return DefaultPoolMaxFree
}

// getSlice returns an empty slice with capacity = the size class of need, from lists when one is
// free.
func getSlice[T any](p *Pool, lists *[][][]T, need int) []T {
	c := classOf(need)
	if p != nil {
		if c < len(*lists) {
			if l := (*lists)[c]; len(l) > 0 {
				s := l[len(l)-1]
				(*lists)[c] = l[:len(l)-1]
				p.free -= cap(s) * int(unsafe.Sizeof(s[:1][0]))
				p.hits++
				return s[:0]
			}
		}
		p.misses++
	}
	return make([]T, 0, sizeClasses[c])
}

// putSlice hands s back to lists (when its capacity is a size class and the pool has room).
func putSlice[T any](p *Pool, lists *[][][]T, s []T) {
	if p == nil || cap(s) == 0 {
		return
	}
	c := classOf(cap(s))
	if c >= len(sizeClasses) || sizeClasses[c] != cap(s) {
		return
	}
	var zero T
	bytes := cap(s) * int(unsafe.Sizeof(zero))
	if p.free+bytes > p.limit() {
		return
	}
	for len(*lists) <= c {
		*lists = append(*lists, nil)
	}
	(*lists)[c] = append((*lists)[c], s[:0])
	p.free += bytes
}

func (p *Pool) get16(need int) []uint16 {
	if p == nil {
		return getSlice[uint16](nil, nil, need)
	}
	return getSlice(p, &p.u16, need)
}

func (p *Pool) put16(s []uint16) {
	if p != nil {
		putSlice(p, &p.u16, s)
	}
}

func (p *Pool) get32(need int) []uint32 {
	if p == nil {
		return getSlice[uint32](nil, nil, need)
	}
	return getSlice(p, &p.u32, need)
}

func (p *Pool) put32(s []uint32) {
	if p != nil {
		putSlice(p, &p.u32, s)
	}
}

func (p *Pool) getDir(need int) []block {
	if p == nil {
		return getSlice[block](nil, nil, need)
	}
	return getSlice(p, &p.dirs, need)
}

func (p *Pool) putDir(s []block) {
	if p != nil {
		clear(s[:cap(s)]) // drop references to block arrays
		putSlice(p, &p.dirs, s)
	}
}

// insertAt inserts x at index i (≤ len(s)) of s, which the set's arrays grow by: when s is full
// it moves to an array of the next size class from get, and the old one goes back through put.
func insertAt[T any](p *Pool, s []T, i int, x T, get func(*Pool, int) []T, put func(*Pool, []T)) []T {
	n := len(s)
	if n == cap(s) {
		grown := get(p, n+1)[:n+1]
		copy(grown, s[:i])
		copy(grown[i+1:], s[i:])
		put(p, s)
		grown[i] = x
		return grown
	}
	s = s[:n+1]
	copy(s[i+1:], s[i:n])
	s[i] = x
	return s
}
