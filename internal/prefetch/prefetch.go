// Package prefetch asks the processor to bring a cache line in ahead of its use, so that the
// loads of several independent hash-table lookups overlap instead of each stalling in turn
// (group prefetching: Chen, Ailamaki, Gibbons and Mowry, "Improving Hash Join Performance
// through Prefetching", ICDE 2004). A plain Go load cannot do that: it must complete before the
// instructions after it retire, so a missing line still stalls the core; a prefetch instruction
// retires at once.
package prefetch
