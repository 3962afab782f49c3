package source

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultDeadLetterMaxBytes is the size past which a dead-letter file rotates unless
// WithDeadLetterMaxBytes says otherwise: 64 MiB.
const DefaultDeadLetterMaxBytes = 64 << 20

// DeadLetter is an append-only file of records that could not be processed (undecodable or
// late events), one JSON object per line:
//
//	{"time":"2024-05-01T12:00:00.123Z","cube":"app","partition":0,"offset":42,
//	 "error":"decoding event time field \"ts\": ...","value":"{\"ts\":\"x\"}"}
//
// value is the raw record as a string when it is valid UTF-8; otherwise it is base64 (standard
// encoding) and "value_base64":true is set. The size is bounded: a write that would take the file
// past the limit first renames it to <path>.1 (replacing an older <path>.1) and starts a new
// file, so at most about twice the limit is kept. It is safe for concurrent use.
type DeadLetter struct {
	path     string
	maxBytes int64

	mu    sync.Mutex // guards everything below
	file  *os.File
	size  int64
	count uint64
	now   func() time.Time
}

// DeadLetterOption configures OpenDeadLetter.
type DeadLetterOption func(*DeadLetter)

// WithDeadLetterMaxBytes sets the size in bytes at which the file rotates. This overrides the
// default of DefaultDeadLetterMaxBytes (64 MiB).
func WithDeadLetterMaxBytes(n int64) DeadLetterOption {
	return func(d *DeadLetter) { d.maxBytes = n }
}

// OpenDeadLetter opens (creating it and its folder if needed) the dead-letter file at path for
// appending.
func OpenDeadLetter(path string, opts ...DeadLetterOption) (*DeadLetter, error) {
	d := &DeadLetter{path: path, maxBytes: DefaultDeadLetterMaxBytes, now: time.Now}
	for _, o := range opts {
		o(d)
	}
	if d.maxBytes <= 0 {
		d.maxBytes = DefaultDeadLetterMaxBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("opening dead-letter file: %w", err)
	}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *DeadLetter) open() error {
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening dead-letter file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening dead-letter file: %w", err)
	}
	d.file, d.size = f, st.Size()
	return nil
}

// deadLetterLine is the JSON shape of one dead letter.
type deadLetterLine struct {
	Time        string `json:"time"`
	Cube        string `json:"cube"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	Error       string `json:"error"`
	Value       string `json:"value"`
	ValueBase64 bool   `json:"value_base64,omitempty"`
}

// Write appends one dead letter: the record at (partition, offset) of cube's source, its raw
// value and why it was rejected (err may be nil). It fails when the file is closed or cannot be
// written or rotated.
func (d *DeadLetter) Write(cube string, partition int32, offset int64, value []byte, err error) error {
	rec := deadLetterLine{Cube: cube, Partition: partition, Offset: offset}
	if err != nil {
		rec.Error = err.Error()
	}
	if utf8.Valid(value) {
		rec.Value = string(value)
	} else {
		rec.Value = base64.StdEncoding.EncodeToString(value)
		rec.ValueBase64 = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file == nil {
		return fmt.Errorf("writing dead letter for cube %q offset %d: %s is closed", cube, offset, d.path)
	}
	rec.Time = d.now().UTC().Format(time.RFC3339Nano)
	line, merr := json.Marshal(rec)
	if merr != nil {
		return fmt.Errorf("encoding dead letter for cube %q offset %d: %w", cube, offset, merr)
	}
	line = append(line, '\n')
	if d.size > 0 && d.size+int64(len(line)) > d.maxBytes {
		if err := d.rotate(); err != nil {
			return err
		}
	}
	n, werr := d.file.Write(line)
	d.size += int64(n)
	if werr != nil {
		return fmt.Errorf("writing dead letter to %s: %w", d.path, werr)
	}
	d.count++
	return nil
}

// rotate renames the file to <path>.1 and opens a new one. REQUIRES: d.mu held.
func (d *DeadLetter) rotate() error {
	if err := d.file.Close(); err != nil {
		return fmt.Errorf("rotating dead-letter file %s: %w", d.path, err)
	}
	d.file = nil
	if err := os.Rename(d.path, d.path+".1"); err != nil {
		// Keep writing to the current file rather than losing letters.
		if oerr := d.open(); oerr != nil {
			return fmt.Errorf("rotating dead-letter file %s: %w (reopening: %v)", d.path, err, oerr)
		}
		return fmt.Errorf("rotating dead-letter file %s: %w", d.path, err)
	}
	return d.open()
}

// Count returns the number of dead letters written since OpenDeadLetter.
func (d *DeadLetter) Count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

// Path returns the path of the current dead-letter file.
func (d *DeadLetter) Path() string { return d.path }

// Close closes the file; later writes fail. It is safe to call more than once.
func (d *DeadLetter) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file == nil {
		return nil
	}
	err := d.file.Close()
	d.file = nil
	if err != nil {
		return fmt.Errorf("closing dead-letter file %s: %w", d.path, err)
	}
	return nil
}
