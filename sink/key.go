package sink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// KeyspaceResults is the first byte of every result-row key. Other keyspaces sharing the same
// pebble database (state, dictionary, checkpoints) must use a different first byte.
const KeyspaceResults byte = 'r'

// MaxWindows is the number of window indexes a result key can hold: Row.Window must be in
// [0, MaxWindows).
const MaxWindows = 256

// Bytes of the escaped-string encoding (see AppendKey) and the int64 sign-bit mask.
const (
	escByte  = 0x00 // starts an escape or the terminator
	escZero  = 0xFF // escByte escZero stands for a 0x00 inside the string
	escTerm  = 0x01 // escByte escTerm ends the string
	signFlip = 1 << 63
)

// ErrMalformedKey is wrapped by every error DecodeKey returns.
var ErrMalformedKey = errors.New("malformed result key")

// AppendKey appends the primary key of r in table to dst and returns the extended slice. Only
// r's key fields are read (Window, GroupingSet, Start, End, Dims). It allocates only when dst
// lacks capacity.
//
// REQUIRES: 0 ≤ r.Window < MaxWindows; it panics otherwise (Embedded.Write checks first and
// returns an error instead).
//
// The key is the concatenation, byte by byte, of:
//
//	offset  size  field
//	0       1     KeyspaceResults ('r', 0x72): the keyspace of the embedded result store
//	1       n     the table name as an escaped string (see below)
//	1+n     1     Row.Window, 0..255
//	2+n     2     Row.GroupingSet, uint16 big-endian
//	4+n     8     Row.Start, Unix ms, int64 big-endian with the sign bit flipped
//	12+n    8     Row.End, Unix ms, int64 big-endian with the sign bit flipped
//	20+n    ...   each of Row.Dims in order, each an escaped string
//
// An escaped string is the string's bytes with every 0x00 replaced by 0x00 0xFF, followed by the
// terminator 0x00 0x01. This is the FoundationDB tuple layer's byte-string encoding
// (https://github.com/apple/foundationdb/blob/main/design/tuple.md), with a two-byte terminator
// instead of a bare 0x00 because here the byte after a string may be any value (a window index of
// 255, say), whereas in the tuple layer it is always a type code below 0xFF.
//
// Flipping the sign bit maps int64 onto uint64 monotonically (math.MinInt64 → 0x00…00,
// -1 → 0x7F…FF, 0 → 0x80…00, math.MaxInt64 → 0xFF…FF), so big-endian bytes of the result
// compare as the signed integers do.
//
// Order: bytes.Compare(AppendKey(nil, t1, r1), AppendKey(nil, t2, r2)) equals the lexicographic
// comparison of the tuples (t1, r1.Window, r1.GroupingSet, r1.Start, r1.End, r1.Dims...) and
// (t2, ...), where strings compare bytewise, integers numerically, and a tuple that is a proper
// prefix of another (fewer Dims) sorts first. Proof: fixed-width fields are order-preserving and
// occupy the same offsets in both keys once the preceding fields are equal, so it suffices to show
// that for strings s ≠ t, and any suffixes x and y, esc(s)+x < esc(t)+y iff s < t. Let i be the
// first index at which s and t differ or one of them ends; esc(s[:i]) = esc(t[:i]) and the
// encodings agree up to there.
//   - If s[i] < t[i], then t[i] ≥ 0x01 is copied as itself, and s[i] is either 0x00 (encoded 0x00
//     0xFF, whose first byte 0x00 < t[i]) or a non-zero byte copied as itself (< t[i]): the first
//     differing byte favours s.
//   - If s ends at i (s is a proper prefix of t), s continues with 0x00 0x01 and t with either
//     0x00 0xFF (t[i] = 0x00; 0x01 < 0xFF) or t[i] ≥ 0x01 (0x00 < t[i]): s sorts first.
//
// Both cases decide within the string's own encoding, so the suffixes never matter; equal strings
// encode identically, and comparison moves on to the next field. The encoding is also
// self-delimiting, which is what makes DecodeKey unambiguous. The order property is tested in
// TestKeyOrder and FuzzKey.
func AppendKey(dst []byte, table string, r *Row) []byte {
	dst = AppendScanPrefix(dst, table, r.Window, r.GroupingSet)
	dst = appendTime(dst, r.Start)
	dst = appendTime(dst, r.End)
	for _, d := range r.Dims {
		dst = appendEscaped(dst, d)
	}
	return dst
}

// AppendTablePrefix appends the prefix shared by the keys of every row of table (the keyspace
// byte and the escaped table name) and returns the extended slice. No key of another table starts
// with it.
func AppendTablePrefix(dst []byte, table string) []byte {
	dst = append(dst, KeyspaceResults)
	return appendEscaped(dst, table)
}

// AppendScanPrefix appends the prefix shared by the keys of every row of (table, window, gs) and
// returns the extended slice. No key of another (table, window, grouping set) starts with it.
//
// REQUIRES: 0 ≤ window < MaxWindows; it panics otherwise.
func AppendScanPrefix(dst []byte, table string, window int, gs uint16) []byte {
	if window < 0 || window >= MaxWindows {
		panic(fmt.Sprintf("BUG: sink: window index %d outside [0, %d)", window, MaxWindows))
	}
	dst = AppendTablePrefix(dst, table)
	dst = append(dst, byte(window))
	return binary.BigEndian.AppendUint16(dst, gs)
}

// AppendStartBound appends the scan bound for window_start = start in (table, window, gs) and
// returns the extended slice: AppendScanPrefix followed by the 8-byte encoding of start. Every key
// k of (table, window, gs) satisfies k ≥ bound iff its Start ≥ start, and k < bound iff its
// Start < start, so the rows with from ≤ Start < to are exactly the keys in
// [AppendStartBound(from), AppendStartBound(to)), one contiguous range.
//
// REQUIRES: 0 ≤ window < MaxWindows; it panics otherwise.
func AppendStartBound(dst []byte, table string, window int, gs uint16, start int64) []byte {
	dst = AppendScanPrefix(dst, table, window, gs)
	return appendTime(dst, start)
}

// PrefixEnd returns the smallest key greater than every key that starts with prefix (the prefix
// with its last non-0xFF byte incremented and the bytes after it dropped), for use as an exclusive
// upper bound. It returns nil, meaning "no upper bound", when prefix is empty or all 0xFF.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			end := make([]byte, i+1)
			copy(end, prefix)
			end[i]++
			return end
		}
	}
	return nil
}

// DecodeKey decodes a key written by AppendKey into r's key fields (Window, GroupingSet, Start,
// End, Dims; r.Dims is truncated and reused, its strings freshly allocated) and returns the table
// name. Values and Version are left untouched. Every error wraps ErrMalformedKey and says
// where decoding stopped; r is then partially filled.
func DecodeKey(key []byte, r *Row) (table string, err error) {
	if len(key) == 0 || key[0] != KeyspaceResults {
		return "", fmt.Errorf("%w: %q does not start with keyspace byte %q", ErrMalformedKey, key, KeyspaceResults)
	}
	var scratch []byte
	tb, n, scratch, err := decodeEscaped(key[1:], scratch)
	if err != nil {
		return "", fmt.Errorf("%w: table name in %q: %v", ErrMalformedKey, key, err)
	}
	table = string(tb)
	if _, err := decodeAfterTable(key, 1+n, r, scratch, nil); err != nil {
		return "", err
	}
	return table, nil
}

// decodeAfterTable decodes key[off:], the part of a result key after the table name, into r.
// scratch is reused to unescape strings; intern, if not nil, turns dimension bytes into strings
// (possibly shared with earlier rows) instead of allocating a fresh string each. It returns
// scratch, possibly grown.
func decodeAfterTable(key []byte, off int, r *Row, scratch []byte, intern *interner) ([]byte, error) {
	rest := key[off:]
	if len(rest) < 1+2+8+8 {
		return scratch, fmt.Errorf("%w: %q ends %d bytes after the table name, want at least %d", ErrMalformedKey, key, len(rest), 1+2+8+8)
	}
	r.Window = int(rest[0])
	r.GroupingSet = binary.BigEndian.Uint16(rest[1:3])
	r.Start = int64(binary.BigEndian.Uint64(rest[3:11]) ^ signFlip)
	r.End = int64(binary.BigEndian.Uint64(rest[11:19]) ^ signFlip)
	rest = rest[19:]
	r.Dims = r.Dims[:0]
	for len(rest) > 0 {
		b, n, s, err := decodeEscaped(rest, scratch)
		scratch = s
		if err != nil {
			return scratch, fmt.Errorf("%w: dimension %d in %q: %v", ErrMalformedKey, len(r.Dims), key, err)
		}
		if intern != nil {
			r.Dims = append(r.Dims, intern.str(b))
		} else {
			r.Dims = append(r.Dims, string(b))
		}
		rest = rest[n:]
	}
	return scratch, nil
}

// appendTime appends ms as 8 big-endian bytes with the sign bit flipped.
func appendTime(dst []byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(ms)^signFlip)
}

// appendEscaped appends s with 0x00 → 0x00 0xFF and the terminator 0x00 0x01.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == escByte {
			dst = append(dst, escByte, escZero)
		} else {
			dst = append(dst, s[i])
		}
	}
	return append(dst, escByte, escTerm)
}

// decodeEscaped decodes the escaped string at the start of b. It returns the unescaped bytes, the
// number of bytes of b consumed (terminator included) and scratch, possibly grown. The returned
// bytes alias b when the string holds no 0x00, else scratch; they are valid until the next call
// with the same scratch.
func decodeEscaped(b []byte, scratch []byte) (s []byte, n int, _ []byte, err error) {
	i := 0
	for ; i < len(b) && b[i] != escByte; i++ {
	}
	if i+1 < len(b) && b[i+1] == escTerm {
		return b[:i], i + 2, scratch, nil // fast path: no 0x00 inside
	}
	scratch = append(scratch[:0], b[:i]...)
	for i < len(b) {
		c := b[i]
		if c != escByte {
			scratch = append(scratch, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return nil, 0, scratch, fmt.Errorf("0x00 at offset %d is the last byte, want 0x00 0xFF or the terminator 0x00 0x01", i)
		}
		switch b[i+1] {
		case escTerm:
			return scratch, i + 2, scratch, nil
		case escZero:
			scratch = append(scratch, 0)
			i += 2
		default:
			return nil, 0, scratch, fmt.Errorf("0x00 at offset %d is followed by 0x%02X, want 0xFF (escaped 0x00) or 0x01 (terminator)", i, b[i+1])
		}
	}
	return nil, 0, scratch, fmt.Errorf("no terminator 0x00 0x01 in %d bytes", len(b))
}

// interner hands out strings for byte slices, sharing one string among equal byte slices so that
// a scan over rows whose dimension values repeat allocates each distinct value once. Strings are
// immutable and never reused for other contents, so sharing them is safe whatever the caller keeps.
type interner struct {
	m map[string]string
}

// maxInterned bounds the interner's memory: past this many distinct values, new values are
// allocated per row without being remembered.
const maxInterned = 1 << 14

// str returns a string equal to b.
func (in *interner) str(b []byte) string {
	if s, ok := in.m[string(b)]; ok { // the conversion in a map index does not allocate
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

const (
	// flagLegacyFinal marked, before rows stopped being re-sent at window close, the row
	// written when its window closed; it is ignored on read and never written.
	flagLegacyFinal byte = 1 << 0
	flagReserved         = ^flagLegacyFinal
)

// canonicalNaN is the bit pattern every NaN is written as.
var canonicalNaN = math.Float64bits(math.NaN())

// ErrMalformedValue is wrapped by every error DecodeValue returns.
var ErrMalformedValue = errors.New("malformed result value")

// AppendValue appends the value encoding of r (Version, Values) to dst and returns the
// extended slice. It allocates only when dst lacks capacity. The layout is:
//
//	uvarint  Row.Version
//	1 byte   flags, written as 0: bit 0 marked a window's final row in earlier versions and is
//	         ignored; bits 1-7 are reserved and must be zero
//	uvarint  number of values n
//	n × 8    each of Row.Values as IEEE 754 float64 bits, little-endian; every NaN (null) is
//	         written as the one canonical NaN, math.NaN()'s bits
//
// Nothing follows the last value. DecodeValue rejects reserved flag bits, so a later format can
// claim a bit and be told apart from this one.
func AppendValue(dst []byte, r *Row) []byte {
	dst = binary.AppendUvarint(dst, r.Version)
	dst = append(dst, 0) // flags
	dst = binary.AppendUvarint(dst, uint64(len(r.Values)))
	for _, v := range r.Values {
		bits := math.Float64bits(v)
		if v != v {
			bits = canonicalNaN
		}
		dst = binary.LittleEndian.AppendUint64(dst, bits)
	}
	return dst
}

// DecodeValue decodes a value written by AppendValue into r's Version and Values (r.Values
// is truncated and reused; it grows only when its capacity is short). Key fields are left
// untouched. Every error wraps ErrMalformedValue and says what was wrong.
func DecodeValue(b []byte, r *Row) error {
	version, n := binary.Uvarint(b)
	if n <= 0 {
		return fmt.Errorf("%w: version varint in %x", ErrMalformedValue, b)
	}
	rest := b[n:]
	if len(rest) < 1 {
		return fmt.Errorf("%w: %x ends before the flags byte", ErrMalformedValue, b)
	}
	flags := rest[0]
	if flags&flagReserved != 0 {
		return fmt.Errorf("%w: flags 0x%02X set reserved bits 0x%02X", ErrMalformedValue, flags, flags&flagReserved)
	}
	rest = rest[1:]
	count, n := binary.Uvarint(rest)
	if n <= 0 {
		return fmt.Errorf("%w: value-count varint in %x", ErrMalformedValue, b)
	}
	rest = rest[n:]
	if count > uint64(len(rest))/8 || uint64(len(rest)) != count*8 {
		return fmt.Errorf("%w: %d values need %d bytes, %d remain", ErrMalformedValue, count, count*8, len(rest))
	}
	r.Version = version
	if cap(r.Values) < int(count) {
		r.Values = make([]float64, count)
	}
	r.Values = r.Values[:count]
	for i := range r.Values {
		r.Values[i] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*i:]))
	}
	return nil
}
