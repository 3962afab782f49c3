package sink

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/objstorage"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"
)

// IngestMinRows is the smallest Write that goes through sstable ingestion when an ingest folder
// is set (EnableIngest); smaller writes use a batch.
const IngestMinRows = 4096

var ingestSeq atomic.Uint64

// EnableIngest makes large writes (at least IngestMinRows rows) bypass the memtable: the rows are
// sorted by key, written as one sstable per (window, grouping set) run into dir (which must be on
// the database's file system so that pebble can link the files) and ingested atomically with
// pebble's DB.Ingest. When results arrive in time order (a replay, windows closing one after the
// other) each run lies after every stored key of its grouping set, so pebble places it in the
// bottom level and never compacts it again: this is the bulk-load path of LSM stores (RocksDB's
// IngestExternalFile), and it removes the memtable insert, flush and L0 compactions from the
// cost of emitting results. Runs shorter than ingestRunMin rows (small grouping sets) go
// through a batch instead, committed before the ingestion: such a Write is then applied in two
// steps, and on an error the batch's rows may be stored without the ingested ones. Every row is
// an upsert, so writing the same rows again (the pipeline retries until a write succeeds)
// stores them all. It must be called before the Embedded is used.
func (e *Embedded) EnableIngest(dir string) error {
	// Files left by a process that died mid-write were never ingested: start empty.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing ingest folder: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating ingest folder: %w", err)
	}
	e.ingestDir = dir
	return nil
}

// ingestRows is Write's bulk path; the caller has checked the rows.
func (e *Embedded) ingestRows(table string, rows []Row) error {
	s := e.scratch.Get().(*scratch)
	defer e.scratch.Put(s)
	// Encode every key and value into one arena.
	s.arena = s.arena[:0]
	s.spans = s.spans[:0]
	for i := range rows {
		k0 := len(s.arena)
		s.arena = AppendKey(s.arena, table, &rows[i])
		v0 := len(s.arena)
		s.arena = AppendValue(s.arena, &rows[i])
		s.spans = append(s.spans, kvSpan{k0: int32(k0), v0: int32(v0), end: int32(len(s.arena)), i: int32(i)})
	}
	arena := s.arena
	key := func(sp kvSpan) []byte { return arena[sp.k0:sp.v0] }
	sorted := true // writers that emit in key order skip the sort below
	for j := 1; j < len(s.spans) && sorted; j++ {
		sorted = bytes.Compare(key(s.spans[j-1]), key(s.spans[j])) < 0
	}
	if !sorted {
		s.sortSpans(rows, table)
	}
	spans := s.spans
	// Runs of one (window, grouping set) shorter than ingestRunMin go into a batch: an sstable
	// costs a file (create, write, sync, link, a manifest edit) whatever its size, which a few
	// rows do not repay. Their keys lie outside every ingested file's range (another prefix), so
	// ingestion never has to flush them first.
	var b *pebble.Batch
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	large := 0
	for lo := 0; lo < len(spans); {
		hi := runEnd(rows, spans, lo)
		if hi-lo >= ingestRunMin {
			large += hi - lo
			lo = hi
			continue
		}
		if b == nil {
			b = e.db.NewBatch()
		}
		for _, sp := range spans[lo:hi] {
			if err := b.Set(key(sp), arena[sp.v0:sp.end], nil); err != nil {
				return fmt.Errorf("writing row %d of %d to table %q: %w", sp.i, len(rows), table, err)
			}
		}
		lo = hi
	}
	if b != nil {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("committing %d rows to table %q: %w", len(spans)-large, table, err)
		}
	}
	if large == 0 {
		return nil
	}
	var paths []string
	defer func() {
		for _, p := range paths {
			os.Remove(p) // ingestion links the files; the originals go
		}
	}()
	format := e.db.FormatMajorVersion().MaxTableFormat()
	for lo := 0; lo < len(spans); {
		hi := runEnd(rows, spans, lo)
		if hi-lo < ingestRunMin {
			lo = hi
			continue
		}
		path := filepath.Join(e.ingestDir, fmt.Sprintf("%d-%d.sst", os.Getpid(), ingestSeq.Add(1)))
		f, err := vfs.Default.Create(path)
		if err != nil {
			return fmt.Errorf("creating sstable for table %q: %w", table, err)
		}
		paths = append(paths, path)
		if cap(s.sstBuf) < sstWriteBuffer {
			s.sstBuf = make([]byte, 0, sstWriteBuffer)
		}
		w := sstable.NewWriter(&sstFile{f: f, buf: s.sstBuf[:0]}, sstable.WriterOptions{TableFormat: format, BlockSize: ingestBlockSize})
		for _, sp := range spans[lo:hi] {
			if err := w.Set(key(sp), arena[sp.v0:sp.end]); err != nil {
				w.Close()
				return fmt.Errorf("writing sstable for table %q: %w", table, err)
			}
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("writing sstable for table %q: %w", table, err)
		}
		lo = hi
	}
	if err := e.db.Ingest(paths); err != nil {
		return fmt.Errorf("ingesting %d rows into table %q: %w", large, table, err)
	}
	return nil
}

// ingestBlockSize is the data block size of ingested sstables (pebble's default is 4 KiB). Rows
// are written in whole runs and read by range scans, so bigger blocks cost queries little and
// save per-block work (index entries, snappy calls, checksums): in three profiles of
// BenchmarkEndToEnd each, sstable.Writer.Set took 0.21–0.30 s instead of 0.30–0.36 s, and the
// store shrank from 44.9 to 37.3 MB (snappy compresses longer blocks better).
const ingestBlockSize = 32 << 10

// ingestRunMin is the fewest rows of one (window, grouping set) in a Write that get an sstable of
// their own; shorter runs are written through a batch.
const ingestRunMin = 256

// runEnd returns the end of the run of spans, from lo, whose rows share lo's (window, grouping
// set): the rows of one sstable.
func runEnd(rows []Row, spans []kvSpan, lo int) int {
	first := &rows[spans[lo].i]
	hi := lo + 1
	for hi < len(spans) {
		r := &rows[spans[hi].i]
		if r.Window != first.Window || r.GroupingSet != first.GroupingSet {
			break
		}
		hi++
	}
	return hi
}

// sortSpans sorts s.spans by key and drops all but the last of equal keys.
func (s *scratch) sortSpans(rows []Row, table string) {
	arena := s.arena
	// Sort by key. The key orders by (window, grouping set, start, end, dims): compare the
	// numbers first, then an abbreviated key (the first 8 bytes of the encoded dims as a
	// big-endian integer), and only then the dims bytes. Among equal keys the later row wins (an
	// upsert), so input order breaks ties.
	dimsAt := int32(len(AppendScanPrefix(s.lower[:0], table, 0, 0)) + 16)
	for j := range s.spans {
		var a [8]byte
		copy(a[:], arena[s.spans[j].k0+dimsAt:s.spans[j].v0])
		s.spans[j].abbrev = binary.BigEndian.Uint64(a[:])
	}
	slices.SortFunc(s.spans, func(a, b kvSpan) int {
		ra, rb := &rows[a.i], &rows[b.i]
		if c := cmp.Compare(ra.Window, rb.Window); c != 0 {
			return c
		}
		if c := cmp.Compare(ra.GroupingSet, rb.GroupingSet); c != 0 {
			return c
		}
		if c := cmp.Compare(ra.Start, rb.Start); c != 0 {
			return c
		}
		if c := cmp.Compare(ra.End, rb.End); c != 0 {
			return c
		}
		if c := cmp.Compare(a.abbrev, b.abbrev); c != 0 {
			return c
		}
		if c := bytes.Compare(arena[a.k0+dimsAt:a.v0], arena[b.k0+dimsAt:b.v0]); c != 0 {
			return c
		}
		return int(a.i - b.i)
	})
	out := s.spans[:0]
	for i, sp := range s.spans {
		if i+1 < len(s.spans) && bytes.Equal(arena[sp.k0:sp.v0], arena[s.spans[i+1].k0:s.spans[i+1].v0]) {
			continue
		}
		out = append(out, sp)
	}
	s.spans = out
}

// kvSpan locates one encoded row in the ingest arena.
type kvSpan struct {
	abbrev         uint64
	k0, v0, end, i int32
}

// sstWriteBuffer is the write buffer of a staged sstable: pebble's own file writable
// (objstorageprovider.NewFileWritable) makes a write system call per 4 KiB.
const sstWriteBuffer = 256 << 10

// sstFile is the objstorage.Writable of a staged sstable: a file written through buf (its
// capacity is the buffer), synced and closed by Finish.
type sstFile struct {
	f   vfs.File
	buf []byte
}

var _ objstorage.Writable = (*sstFile)(nil)

// Write implements objstorage.Writable.
func (w *sstFile) Write(p []byte) error {
	for len(p) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
	}
	return nil
}

func (w *sstFile) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Finish implements objstorage.Writable: the buffered bytes are written and the file synced
// and closed.
func (w *sstFile) Finish() error {
	err := w.flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort implements objstorage.Writable.
func (w *sstFile) Abort() { w.f.Close() }
