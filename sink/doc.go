// Package sink turns emitted result rows into primary-key-encoded upserts and stores them.
//
// A Row's primary key (table, window, grouping set, window start, window end, dimension values) is
// encoded by AppendKey into bytes whose bytes.Compare order is the tuple's lexicographic order, so
// the rows of one (table, window, grouping set) with window_start in [from, to) form one contiguous
// key range (AppendStartBound). AppendValue encodes the rest (version, final flag, measure values).
// Embedded stores these key/value pairs in a pebble database shared with the rest of the process
// state, upserting by key: a later write of the same key replaces the earlier one. ClickHouse
// writes the same rows to one ReplacingMergeTree(version) table per cube and reads them back with
// FINAL (see DDL for the layout).
package sink
