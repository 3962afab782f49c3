// Package openaddr holds the sizing rule shared by cubed's open-addressing (linear probing) hash
// tables: the aggregation layers' key tables (aggregate) and the dictionary's shards
// (dictionary). A table has a power-of-two number of slots, at least MinSlots, and grows by
// doubling before it would be more than 3/4 full.
package openaddr

// MinSlots is the fewest slots a table has.
const MinSlots = 64

// Full reports whether a table of slots slots holding n entries must grow before it takes one
// more: the n+1st entry would load it beyond 3/4.
func Full(n, slots int) bool { return (n+1)*4 > slots*3 }

// Slots returns the number of slots a table of slots slots needs to hold want entries within
// the 3/4 load factor: slots itself when that is enough, else the smallest power-of-two
// multiple of max(slots, MinSlots) that is.
func Slots(slots, want int) int {
	if want*4 <= slots*3 {
		return slots
	}
	size := max(MinSlots, slots)
	for want*4 > size*3 {
		size *= 2
	}
	return size
}
