package sink

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cockroachdb/pebble"
)

// Embedded is the embedded result store: result rows as key/value pairs in a pebble database,
// keyed by AppendKey (keyspace KeyspaceResults) with AppendValue values, so that a (table, window,
// grouping set, window_start range) query is one range scan. Writing a row upserts it: a later
// write of the same primary key replaces the earlier one whatever the versions (the emitter's
// versions only grow, and a replay rewrites the same values).
//
// An Embedded is safe for concurrent use; it holds no lock of its own (pebble orders concurrent
// batches) and takes its scratch buffers from a pool.
type Embedded struct {
	db *pebble.DB
	// ingestDir, when set, is where large writes stage their sstables (see EnableIngest).
	ingestDir string
	// scratch pools *scratch; each call takes one for its duration.
	scratch sync.Pool
}

// scratch is the reusable working memory of one Write, Scan or Count call.
type scratch struct {
	key, val     []byte // encoded key and value of the current row
	lower, upper []byte // iterator bounds; pebble reads them until the iterator is closed
	unesc        []byte // unescaped dimension bytes
	row          Row    // the row handed to Scan's callback
	intern       interner
	arena        []byte   // encoded keys and values of an ingested write
	spans        []kvSpan // rows of arena, sorted by key
	sstBuf       []byte   // write buffer of the staged sstables
}

// OpenEmbedded returns the result store over db. The database is shared with other state (other
// keyspaces, see KeyspaceResults); the caller opens it (OpenDir) and closes it after the last use
// of the Embedded.
func OpenEmbedded(db *pebble.DB) *Embedded {
	e := &Embedded{db: db}
	e.scratch.New = func() any { return new(scratch) }
	return e
}

// OpenDir opens (creating it and the folder if needed) the pebble database in dir with the
// options cubed uses for all its embedded state: a 64 MiB block cache, 32 MiB memtables and the
// newest on-disk format. The caller closes the returned database.
func OpenDir(dir string) (*pebble.DB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating pebble folder %q: %w", dir, err)
	}
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       32 << 20,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("opening pebble database in %q: %w", dir, err)
	}
	return db, nil
}

// checkRow reports whether r can be keyed.
func checkRow(table string, i int, r *Row) error {
	if r.Window < 0 || r.Window >= MaxWindows {
		return fmt.Errorf("row %d of table %q has window index %d, want 0..%d", i, table, r.Window, MaxWindows-1)
	}
	return nil
}

// Write upserts rows into table in one pebble batch committed with pebble.Sync: when Write
// returns nil every row is durable, and when it returns an error none was written (except for
// a large write with ingestion enabled, which may have stored its short runs: see EnableIngest). A row whose
// primary key is already stored replaces it. Rows with an out-of-range Window are an error (and
// nothing is written). Write does not keep rows; it allocates nothing per row in steady state.
func (e *Embedded) Write(table string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		if err := checkRow(table, i, &rows[i]); err != nil {
			return fmt.Errorf("writing %d rows: %w", len(rows), err)
		}
	}
	if e.ingestDir != "" && len(rows) >= IngestMinRows {
		return e.ingestRows(table, rows)
	}
	s := e.scratch.Get().(*scratch)
	defer e.scratch.Put(s)
	b := e.db.NewBatch()
	defer b.Close()
	for i := range rows {
		r := &rows[i]
		s.key = AppendKey(s.key[:0], table, r)
		s.val = AppendValue(s.val[:0], r)
		if err := b.Set(s.key, s.val, nil); err != nil { // Set copies key and value
			return fmt.Errorf("writing row %d of %d to table %q: %w", i, len(rows), table, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("committing %d rows to table %q: %w", len(rows), table, err)
	}
	return nil
}

// Scan calls fn with every row of (table, window, gs) whose window_start is in [from, to), in key
// order (window_start, window_end, then dimension values bytewise). from and to may be
// math.MinInt64 and math.MaxInt64; the range is half-open, so no row with window_start ==
// math.MaxInt64 is ever returned. from ≥ to scans nothing.
//
// The *Row passed to fn, and its Dims and Values slices, are reused after fn returns: copy what
// you keep. The strings in Dims are ordinary immutable strings and may be kept; equal dimension
// values within one Scan share one string, so a scan whose dimension values repeat allocates only
// for the distinct ones. If fn returns an error, Scan stops and returns it wrapped.
func (e *Embedded) Scan(table string, window int, gs uint16, from, to int64, fn func(r *Row) error) error {
	if window < 0 || window >= MaxWindows {
		return fmt.Errorf("scanning table %q: window index %d, want 0..%d", table, window, MaxWindows-1)
	}
	if from >= to {
		return nil
	}
	s := e.scratch.Get().(*scratch)
	defer e.scratch.Put(s)
	s.lower = AppendStartBound(s.lower[:0], table, window, gs, from)
	s.upper = AppendStartBound(s.upper[:0], table, window, gs, to)
	// The table prefix is the same length in every key of the range.
	tableEnd := len(AppendTablePrefix(s.key[:0], table))
	clear(s.intern.m)
	defer clear(s.intern.m) // drop references to this scan's strings while pooled
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: s.lower, UpperBound: s.upper})
	if err != nil {
		return fmt.Errorf("scanning table %q window %d grouping set %d: %w", table, window, gs, err)
	}
	r := &s.row
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		s.unesc, err = decodeAfterTable(key, tableEnd, r, s.unesc, &s.intern)
		if err != nil {
			return errors.Join(fmt.Errorf("scanning table %q: %w", table, err), it.Close())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("scanning table %q: reading value of key %q: %w", table, key, err), it.Close())
		}
		if err := DecodeValue(v, r); err != nil {
			return errors.Join(fmt.Errorf("scanning table %q: value of key %q: %w", table, key, err), it.Close())
		}
		if err := fn(r); err != nil {
			return errors.Join(fmt.Errorf("scanning table %q window %d grouping set %d: %w", table, window, gs, err), it.Close())
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scanning table %q window %d grouping set %d: %w", table, window, gs, err)
	}
	return nil
}

// Get returns the stored row of table whose primary key is key's (Window, GroupingSet, Start, End,
// Dims; the other fields of key are ignored), with its stored Version and Values, and
// whether it exists. The returned row owns its slices.
func (e *Embedded) Get(table string, key Row) (Row, bool, error) {
	if err := checkRow(table, 0, &key); err != nil {
		return Row{}, false, fmt.Errorf("getting a row: %w", err)
	}
	k := AppendKey(nil, table, &key)
	v, closer, err := e.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, fmt.Errorf("getting key %q of table %q: %w", k, table, err)
	}
	defer closer.Close()
	out := Row{
		Window:      key.Window,
		GroupingSet: key.GroupingSet,
		Start:       key.Start,
		End:         key.End,
		Dims:        append([]string(nil), key.Dims...),
	}
	if err := DecodeValue(v, &out); err != nil {
		return Row{}, false, fmt.Errorf("getting key %q of table %q: %w", k, table, err)
	}
	return out, true, nil
}

// Count returns the number of rows stored for table, over all windows and grouping sets. It reads
// every key of the table (no values), so it costs a full scan of the table.
func (e *Embedded) Count(table string) (int, error) {
	s := e.scratch.Get().(*scratch)
	defer e.scratch.Put(s)
	s.lower = AppendTablePrefix(s.lower[:0], table)
	s.upper = append(s.upper[:0], PrefixEnd(s.lower)...)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: s.lower, UpperBound: s.upper})
	if err != nil {
		return 0, fmt.Errorf("counting rows of table %q: %w", table, err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("counting rows of table %q: %w", table, err)
	}
	return n, nil
}

// quietLogger drops pebble's informational lines (WAL replay on every open) and keeps its
// errors on stderr; a fatal error still stops the process, as pebble requires.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}

func (quietLogger) Errorf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
}

func (quietLogger) Fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
	os.Exit(1)
}

// DeleteBefore deletes the rows of (table, window, gs) whose window_start is before start
// (Unix ms), as one pebble range deletion; compactions reclaim the space.
func (e *Embedded) DeleteBefore(table string, window int, gs uint16, start int64) error {
	if window < 0 || window >= MaxWindows {
		return fmt.Errorf("deleting old rows of table %q: window %d out of range [0, %d)", table, window, MaxWindows)
	}
	lo := AppendScanPrefix(nil, table, window, gs)
	hi := AppendStartBound(nil, table, window, gs, start)
	if err := e.db.DeleteRange(lo, hi, pebble.NoSync); err != nil {
		return fmt.Errorf("deleting rows of table %q window %d grouping set %d before %d: %w", table, window, gs, start, err)
	}
	return nil
}
