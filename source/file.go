package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cubed-olap/cubed/cube"
)

// DefaultMaxLineBytes is the longest line (or multi-line CSV record) a File accepts unless
// WithMaxLineBytes says otherwise: 64 MiB.
const DefaultMaxLineBytes = 64 << 20

// File is a finite source of events: a file of JSON lines or CSV, gzip-compressed or not
// (detected from the gzip magic bytes 1f 8b, not from the name).
//
// Lines end with "\n" or "\r\n"; empty lines are skipped but still counted, so a record's Offset
// is always its 1-based line number in the file. A UTF-8 byte-order mark before the first line
// is dropped. For CSV, a quoted field may span lines (RFC 4180); such a record's Offset is the
// number of its first line. A File is not safe for concurrent use.
type File struct {
	path    string
	format  string
	file    *os.File
	gz      *gzip.Reader
	r       *bufio.Reader
	maxLine int

	lines  int64    // physical lines read so far
	header []string // CSV column names
	long   []byte   // assembles lines longer than r's buffer
	arena  []byte   // Values of the records of the current batch
	recs   []Record
	err    error // sticky read error
}

// FileOption configures OpenFile.
type FileOption func(*File)

// WithColumns names the CSV columns; the first line is then a record, not a header. It has no
// effect for JSON.
func WithColumns(cols []string) FileOption {
	return func(f *File) { f.header = append([]string(nil), cols...) }
}

// WithMaxLineBytes bounds the length of one line or CSV record; a longer one is an error. This
// overrides the default of DefaultMaxLineBytes (64 MiB).
func WithMaxLineBytes(n int) FileOption {
	return func(f *File) { f.maxLine = n }
}

// OpenFile opens path for reading events in format (cube.FormatJSON or cube.FormatCSV). For CSV
// without WithColumns it reads the first line as the header (see Header). It fails when the file
// cannot be opened, the gzip header is corrupt, the format is unknown, or a CSV file has no
// header line.
func OpenFile(path string, format string, opts ...FileOption) (*File, error) {
	if format != cube.FormatJSON && format != cube.FormatCSV {
		return nil, fmt.Errorf("opening %s: unknown format %q (want %q or %q)", path, format, cube.FormatJSON, cube.FormatCSV)
	}
	f := &File{path: path, format: format, maxLine: DefaultMaxLineBytes}
	for _, o := range opts {
		o(f)
	}
	if f.maxLine <= 0 {
		f.maxLine = DefaultMaxLineBytes
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening event file: %w", err)
	}
	f.file = file
	raw := bufio.NewReaderSize(file, 1<<16)
	magic, _ := raw.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(raw)
		if err != nil {
			file.Close()
			return nil, fmt.Errorf("opening %s as gzip: %w", path, err)
		}
		f.gz = gz
		f.r = bufio.NewReaderSize(gz, 1<<20)
	} else {
		f.r = bufio.NewReaderSize(raw, 1<<20)
	}
	if format == cube.FormatCSV && f.header == nil {
		for {
			line, err := f.readLine()
			if err == io.EOF {
				f.Close()
				return nil, fmt.Errorf("reading CSV header of %s: the file has no header line", path)
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("reading CSV header of %s: %w", path, err)
			}
			if len(line) == 0 {
				continue
			}
			fields, err := splitCSV(nil, make([]byte, 0, len(line)), line)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("reading CSV header of %s, line %d: %w", path, f.lines, err)
			}
			f.header = make([]string, len(fields))
			for i, c := range fields {
				f.header[i] = string(c)
			}
			break
		}
	}
	return f, nil
}

// Header returns the CSV column names (from the header line or WithColumns), nil for JSON. The
// caller must not modify it.
func (f *File) Header() []string {
	if f.format != cube.FormatCSV {
		return nil
	}
	return f.header
}

// Lines returns the number of lines read so far (including the header and empty lines).
func (f *File) Lines() int64 { return f.lines }

// Next returns up to max records (Offset = 1-based line number, Partition 0). At the end of the
// file it returns (nil, io.EOF); a batch that reaches the end is returned with a nil error and
// the next call returns io.EOF. The records' Values alias an internal buffer that stays valid
// until the next call to Next. A read error (a corrupt gzip stream, a line longer than the
// limit) is returned with the records read before it, and again on every later call.
func (f *File) Next(ctx context.Context, max int) ([]Record, error) {
	if max < 1 {
		return nil, fmt.Errorf("reading %s: max records %d, want at least 1", f.path, max)
	}
	if f.err != nil {
		return nil, f.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.arena = f.arena[:0]
	f.recs = f.recs[:0]
	for len(f.recs) < max {
		line, err := f.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.err = err
			return f.recs, err
		}
		if len(line) == 0 {
			continue
		}
		first := f.lines
		start := len(f.arena)
		f.arena = append(f.arena, line...)
		if f.format == cube.FormatCSV && csvQuoteOpen(line) {
			if err := f.continueRecord(start); err != nil {
				f.err = err
				return f.recs, err
			}
		}
		end := len(f.arena)
		f.recs = append(f.recs, Record{Value: f.arena[start:end:end], Offset: first})
		if len(f.recs)%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return f.recs, err
			}
		}
	}
	if len(f.recs) == 0 {
		return nil, io.EOF
	}
	return f.recs, nil
}

// continueRecord appends lines to the CSV record that starts at arena[start:] while a quoted
// field is open. At the end of the file the record is left as it is, for the decoder to reject.
func (f *File) continueRecord(start int) error {
	for {
		line, err := f.readLine()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		f.arena = append(f.arena, '\n')
		f.arena = append(f.arena, line...)
		if len(f.arena)-start > f.maxLine {
			return fmt.Errorf("reading %s: the CSV record ending at line %d is longer than %d bytes", f.path, f.lines, f.maxLine)
		}
		if !csvQuoteOpen(f.arena[start:]) {
			return nil
		}
	}
}

// csvQuoteOpen reports whether rec ends inside a quoted field (RFC 4180: a field is quoted only
// when its first byte is a double quote; "" inside it is an escaped quote).
func csvQuoteOpen(rec []byte) bool {
	if bytes.IndexByte(rec, '"') < 0 {
		return false
	}
	inQuote, atStart := false, true
	for i := 0; i < len(rec); i++ {
		c := rec[i]
		if inQuote {
			if c == '"' {
				if i+1 < len(rec) && rec[i+1] == '"' {
					i++
				} else {
					inQuote = false
				}
			}
			continue
		}
		if c == ',' {
			atStart = true
			continue
		}
		if c == '"' && atStart {
			inQuote = true
		}
		atStart = false
	}
	return inQuote
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// readLine returns the next line without its line end; the slice is valid until the next call.
func (f *File) readLine() ([]byte, error) {
	line, err := f.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		f.long = append(f.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(f.long) > f.maxLine {
				return nil, fmt.Errorf("reading %s: line %d is longer than %d bytes", f.path, f.lines+1, f.maxLine)
			}
			line, err = f.r.ReadSlice('\n')
			f.long = append(f.long, line...)
		}
		line = f.long
	}
	if err == io.EOF {
		if len(line) == 0 {
			return nil, io.EOF
		}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s after line %d: %w", f.path, f.lines, err)
	}
	f.lines++
	line = trimEOL(line)
	if len(line) > f.maxLine {
		return nil, fmt.Errorf("reading %s: line %d is longer than %d bytes", f.path, f.lines, f.maxLine)
	}
	if f.lines == 1 {
		line = bytes.TrimPrefix(line, utf8BOM)
	}
	return line, nil
}

// Close releases the file. It is safe to call more than once.
func (f *File) Close() error {
	var err error
	if f.gz != nil {
		err = f.gz.Close()
		f.gz = nil
	}
	if f.file != nil {
		if cerr := f.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing %s: %w", f.path, cerr)
		}
		f.file = nil
	}
	return err
}
