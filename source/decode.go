package source

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/cubed-olap/cubed/cube"
)

// Decoder turns raw records (one JSON object, or one CSV line) into Events shaped by a
// cube.Plan: the layer-1 dimensions, the numeric value fields and the distinct-count fields,
// plus the event time in Unix milliseconds.
//
// A Decoder is not safe for concurrent use; give each goroutine its own. After an error it stays
// usable for the next record. In steady state Decode allocates nothing (see BenchmarkDecodeJSON),
// except that a JSON string containing backslash escapes is unescaped by fastjson into a new
// string.
type Decoder struct {
	format string

	// Names used in error messages and (for CSV) to find columns.
	dimNames   []string
	valNames   []string
	idNames    []string
	timeName   string
	dimPaths   [][]string
	valPaths   [][]string
	idPaths    [][]string
	timePath   []string
	dimScratch [][]byte // per-dimension scratch for texts that are not a slice of the input
	idScratch  [][]byte
	numBuf     []byte // scratch for number texts parsed as float64
	timeBuf    []byte // scratch for the event-time text

	// JSON.
	parser fastjson.Parser

	// CSV.
	header  []string
	dimCols []int
	valCols []int
	idCols  []int
	timeCol int
	fields  [][]byte
	unquote []byte

	times timeParser
}

// NewDecoder returns a Decoder for p.Cube.Source.Format (cube.FormatJSON or cube.FormatCSV).
//
// For JSON, fields are found by their dotted paths (Dimension.Path, EventTime.Path, and
// p.ValueFields / p.DistinctFields split on "."); a path element that is a decimal number
// also indexes an array ("tags.0"). Dimensions and ids take a string's bytes, a number's JSON
// text, "true"/"false", "" for null or missing, and the compact JSON text of an object or
// array. Value fields take a number or a numeric string ("12.5") as float64, NaN for null,
// missing or "". For CSV, fields are columns named by the
// unsplit field name; the columns come from p.Cube.Source.Columns when set, else from a later
// SetHeader call. It fails when the plan has no cube, the format or event-time format is unknown,
// or a configured CSV column does not exist.
func NewDecoder(p *cube.Plan) (*Decoder, error) {
	if p == nil || p.Cube == nil {
		return nil, errors.New("creating decoder: plan has no cube")
	}
	c := p.Cube
	d := &Decoder{format: c.Source.Format, timeCol: -1}
	switch d.format {
	case cube.FormatJSON, cube.FormatCSV:
	case "":
		d.format = cube.FormatJSON
	default:
		return nil, fmt.Errorf("creating decoder for cube %q: unknown source format %q (want %q or %q)",
			c.Name, c.Source.Format, cube.FormatJSON, cube.FormatCSV)
	}
	for _, i := range p.Dimensions {
		if i < 0 || i >= len(c.Dimensions) {
			return nil, fmt.Errorf("creating decoder for cube %q: plan dimension index %d out of range (cube has %d dimensions)",
				c.Name, i, len(c.Dimensions))
		}
		dim := c.Dimensions[i]
		name := dim.Field
		if name == "" {
			name = dim.Name
		}
		path := dim.Path
		if len(path) == 0 {
			path = strings.Split(name, ".")
		}
		d.dimNames = append(d.dimNames, name)
		d.dimPaths = append(d.dimPaths, path)
	}
	for _, f := range p.ValueFields {
		d.valNames = append(d.valNames, f)
		d.valPaths = append(d.valPaths, strings.Split(f, "."))
	}
	for _, f := range p.DistinctFields {
		d.idNames = append(d.idNames, f)
		d.idPaths = append(d.idPaths, strings.Split(f, "."))
	}
	d.timeName = c.EventTime.Field
	d.timePath = c.EventTime.Path
	if len(d.timePath) == 0 && d.timeName != "" {
		d.timePath = strings.Split(d.timeName, ".")
	}
	if d.timeName == "" {
		return nil, fmt.Errorf("creating decoder for cube %q: event time field is empty", c.Name)
	}
	tp, err := newTimeParser(c.EventTime.Format, c.EventTime.Location)
	if err != nil {
		return nil, fmt.Errorf("creating decoder for cube %q: %w", c.Name, err)
	}
	d.times = tp
	d.dimScratch = make([][]byte, len(d.dimPaths))
	d.idScratch = make([][]byte, len(d.idPaths))
	if d.format == cube.FormatCSV && len(c.Source.Columns) > 0 {
		if err := d.SetHeader(c.Source.Columns); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// SetHeader names the CSV columns (the header row of a file, or cube.Source.Columns), replacing
// any earlier header. It fails, and keeps the earlier header, when a dimension, value,
// distinct-count or event-time field names no column. It is an error to call it for JSON.
func (d *Decoder) SetHeader(cols []string) error {
	if d.format != cube.FormatCSV {
		return fmt.Errorf("setting header: the decoder reads %s, not csv", d.format)
	}
	index := make(map[string]int, len(cols))
	for i, c := range cols {
		if _, dup := index[c]; !dup {
			index[c] = i
		}
	}
	var missing []string
	find := func(name string) int {
		i, ok := index[name]
		if !ok {
			missing = append(missing, strconv.Quote(name))
			return -1
		}
		return i
	}
	dimCols := make([]int, len(d.dimNames))
	for i, n := range d.dimNames {
		dimCols[i] = find(n)
	}
	valCols := make([]int, len(d.valNames))
	for i, n := range d.valNames {
		valCols[i] = find(n)
	}
	idCols := make([]int, len(d.idNames))
	for i, n := range d.idNames {
		idCols[i] = find(n)
	}
	timeCol := find(d.timeName)
	if len(missing) > 0 {
		return fmt.Errorf("setting CSV header: no column named %s (columns: %s)",
			strings.Join(missing, ", "), strings.Join(cols, ", "))
	}
	d.header = append([]string(nil), cols...)
	d.dimCols, d.valCols, d.idCols, d.timeCol = dimCols, valCols, idCols, timeCol
	return nil
}

// Decode fills ev from one record: a JSON object, or one CSV line (a trailing "\n" or "\r\n" is
// ignored). ev's slices are sized to the plan on first use and reused afterwards; the byte
// slices in ev.Dims and ev.IDs point into value or into the decoder's scratch space and are
// valid until the next Decode on d (or until value changes). Callers must not modify them.
//
// It fails, naming the field and the offending text, when the record is not a JSON object or
// not valid JSON, a CSV line has the wrong number of columns or bad quoting, the event time is
// missing or cannot be parsed, or a value field holds something that is not a finite number.
func (d *Decoder) Decode(value []byte, ev *Event) error {
	if len(ev.Dims) != len(d.dimPaths) {
		ev.Dims = make([][]byte, len(d.dimPaths))
	}
	if len(ev.Values) != len(d.valPaths) {
		ev.Values = make([]float64, len(d.valPaths))
	}
	if len(ev.IDs) != len(d.idPaths) {
		ev.IDs = make([][]byte, len(d.idPaths))
	}
	if d.format == cube.FormatCSV {
		return d.decodeCSV(value, ev)
	}
	return d.decodeJSON(value, ev)
}

var errNotObject = errors.New("not a JSON object")

func (d *Decoder) decodeJSON(value []byte, ev *Event) error {
	root, err := d.parser.ParseBytes(value)
	if err != nil {
		return fmt.Errorf("decoding JSON record: %w", err)
	}
	if root.Type() != fastjson.TypeObject {
		return fmt.Errorf("decoding JSON record: the record is a JSON %s: %w", root.Type(), errNotObject)
	}
	o, _ := root.Object()
	tv := get(o, d.timePath)
	text, ok := d.jsonScalarText(tv, &d.timeBuf)
	if !ok {
		if tv == nil || tv.Type() == fastjson.TypeNull {
			return fmt.Errorf("decoding event time field %q: missing or null", d.timeName)
		}
		return fmt.Errorf("decoding event time field %q: value %s is a JSON %s, not a timestamp",
			d.timeName, clip(tv.String()), tv.Type())
	}
	ms, err := d.times.parse(text)
	if err != nil {
		return fmt.Errorf("decoding event time field %q: %w", d.timeName, err)
	}
	ev.Time = ms
	for i, path := range d.dimPaths {
		ev.Dims[i] = jsonText(get(o, path), &d.dimScratch[i])
	}
	for i, path := range d.idPaths {
		ev.IDs[i] = jsonText(get(o, path), &d.idScratch[i])
	}
	for i, path := range d.valPaths {
		f, err := d.jsonFloat(get(o, path))
		if err != nil {
			return fmt.Errorf("decoding value field %q: %w", d.valNames[i], err)
		}
		ev.Values[i] = f
	}
	return nil
}

// get returns the value at path (never empty) in the root object o, as fastjson's
// Value.Get(path...) on the root would, nil when absent. A one-element path, the common case,
// goes straight to Object.Get.
func get(o *fastjson.Object, path []string) *fastjson.Value {
	v := o.Get(path[0])
	if len(path) == 1 || v == nil {
		return v
	}
	return v.Get(path[1:]...)
}

// jsonText returns the text of a JSON value as a dimension or id: a string's bytes, a number's
// JSON text, "true"/"false", "" for null or missing, and the compact JSON text of an object or
// array. Texts that are not a slice of the parsed input are built in *scratch.
func jsonText(v *fastjson.Value, scratch *[]byte) []byte {
	if v == nil {
		return (*scratch)[:0]
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return b
	case fastjson.TypeNull:
		return (*scratch)[:0]
	case fastjson.TypeTrue:
		*scratch = append((*scratch)[:0], "true"...)
	case fastjson.TypeFalse:
		*scratch = append((*scratch)[:0], "false"...)
	case fastjson.TypeNumber:
		*scratch = v.MarshalTo((*scratch)[:0])
	default: // object, array
		*scratch = appendJSON((*scratch)[:0], v)
	}
	return *scratch
}

// appendJSON appends v as compact JSON, keeping the input's key order. fastjson's own MarshalTo
// is not used for objects and arrays because it re-quotes already unescaped strings with Go
// escapes (\x00), which is not JSON.
func appendJSON(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		dst = append(dst, '{')
		first := true
		o.Visit(func(k []byte, e *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSON(dst, e)
		})
		return append(dst, '}')
	case fastjson.TypeArray:
		a, _ := v.Array()
		dst = append(dst, '[')
		for i, e := range a {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e)
		}
		return append(dst, ']')
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return appendJSONString(dst, b)
	case fastjson.TypeNumber:
		return v.MarshalTo(dst)
	case fastjson.TypeTrue:
		return append(dst, "true"...)
	case fastjson.TypeFalse:
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

// appendJSONString appends s as a JSON string (RFC 8259 section 7): quotes, backslashes and
// control characters are escaped, everything else is copied.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// jsonScalarText returns the text of a string or number (ok=false for anything else).
func (d *Decoder) jsonScalarText(v *fastjson.Value, scratch *[]byte) ([]byte, bool) {
	if v == nil {
		return nil, false
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return b, true
	case fastjson.TypeNumber:
		*scratch = v.MarshalTo((*scratch)[:0])
		return *scratch, true
	}
	return nil, false
}

// jsonFloat reads a value field: numbers and numeric strings parse as float64; null, missing and
// "" are NaN; anything else is an error.
func (d *Decoder) jsonFloat(v *fastjson.Value) (float64, error) {
	if v == nil {
		return math.NaN(), nil
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return math.NaN(), nil
	case fastjson.TypeNumber:
		d.numBuf = v.MarshalTo(d.numBuf[:0])
		return parseFloat(d.numBuf)
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return parseFloat(b)
	}
	return 0, fmt.Errorf("value %s is a JSON %s, not a number", clip(v.String()), v.Type())
}

// parseFloat parses the text of a value field: "" is NaN (missing), otherwise it must be a finite
// number in strconv.ParseFloat syntax; "NaN" is NaN.
func parseFloat(b []byte) (float64, error) {
	if len(b) == 0 {
		return math.NaN(), nil
	}
	if f, ok := parseDecimal(b); ok {
		return f, nil
	}
	f, err := strconv.ParseFloat(b2s(b), 64)
	if math.IsInf(f, 0) {
		return 0, fmt.Errorf("value %q is not a finite number", clip(string(b)))
	}
	if err != nil && !errors.Is(err, strconv.ErrRange) { // an underflow to 0 is fine
		return 0, fmt.Errorf("value %q is not a number", clip(string(b)))
	}
	return f, nil
}

// pow10 holds the powers of ten that are exact in a float64 (10^0 … 10^22).
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal parses the common number texts "-?D+(.D+)?" with at most 15 digits in all, and
// reports ok=false for anything else (which strconv.ParseFloat then parses). The digits form an
// integer m < 10^15 < 2^53 and the fraction k ≤ 15 digits, so m and 10^k are exact float64s and
// one IEEE division m / 10^k is correctly rounded: the result is the one strconv.ParseFloat
// returns (its own exact fast path, after W. D. Clinger, "How to read floating point numbers
// accurately", PLDI 1990), without its general scanning.
func parseDecimal(b []byte) (float64, bool) {
	i := 0
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		i = 1
	}
	var m uint64
	start := i
	for i < len(b) && b[i]-'0' <= 9 {
		m = m*10 + uint64(b[i]-'0')
		i++
	}
	if i == start {
		return 0, false
	}
	digits := i - start
	frac := 0
	if i < len(b) {
		if b[i] != '.' {
			return 0, false
		}
		i++
		fs := i
		for i < len(b) && b[i]-'0' <= 9 {
			m = m*10 + uint64(b[i]-'0')
			i++
		}
		frac = i - fs
		if frac == 0 || i != len(b) {
			return 0, false
		}
		digits += frac
	}
	if digits > 15 {
		return 0, false
	}
	f := float64(m)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

func (d *Decoder) decodeCSV(line []byte, ev *Event) error {
	if d.header == nil {
		return errors.New("decoding CSV record: no header: set cube.Source.Columns or call SetHeader")
	}
	line = trimEOL(line)
	if cap(d.unquote) < len(line) {
		d.unquote = make([]byte, 0, len(line)+len(line)/4)
	}
	var err error
	d.fields, err = splitCSV(d.fields[:0], d.unquote[:0], line)
	if err != nil {
		return fmt.Errorf("decoding CSV record: %w", err)
	}
	if len(d.fields) != len(d.header) {
		return fmt.Errorf("decoding CSV record: %d columns, want %d (%s)",
			len(d.fields), len(d.header), clip(strings.Join(d.header, ",")))
	}
	text := d.fields[d.timeCol]
	if len(text) == 0 {
		return fmt.Errorf("decoding event time column %q: empty", d.timeName)
	}
	ms, err := d.times.parse(text)
	if err != nil {
		return fmt.Errorf("decoding event time column %q: %w", d.timeName, err)
	}
	ev.Time = ms
	for i, c := range d.dimCols {
		ev.Dims[i] = d.fields[c]
	}
	for i, c := range d.idCols {
		ev.IDs[i] = d.fields[c]
	}
	for i, c := range d.valCols {
		f, err := parseFloat(d.fields[c])
		if err != nil {
			return fmt.Errorf("decoding value column %q: %w", d.valNames[i], err)
		}
		ev.Values[i] = f
	}
	return nil
}

// trimEOL drops one trailing "\n" or "\r\n" (or a lone trailing "\r").
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// splitCSV splits one CSV record (without its line end) into fields following RFC 4180: fields
// are separated by commas; a field that starts with a double quote is quoted, may contain commas,
// line breaks and doubled quotes ("" for "), and must be followed by a comma or the end. A quote
// inside an unquoted field is kept as is (encoding/csv's LazyQuotes behaviour for that case).
// Unquoted fields and quoted fields without doubled quotes are slices of line; the others are
// unescaped into scratch, which must have capacity len(line) so that it never reallocates.
// It returns dst with the fields appended.
func splitCSV(dst [][]byte, scratch []byte, line []byte) ([][]byte, error) {
	i := 0
	for {
		if i < len(line) && line[i] == '"' {
			start := i
			i++
			var field []byte
			copied := false
			for {
				q := bytes.IndexByte(line[i:], '"')
				if q < 0 {
					return dst, fmt.Errorf("quoted field starting at byte %d is not closed", start+1)
				}
				q += i
				if q+1 < len(line) && line[q+1] == '"' { // doubled quote
					if !copied {
						copied = true
						mark := len(scratch)
						scratch = append(scratch, line[start+1:q+1]...)
						field = scratch[mark:]
					} else {
						scratch = append(scratch, line[i:q+1]...)
						field = field[:len(field)+q+1-i]
					}
					i = q + 2
					continue
				}
				if copied {
					scratch = append(scratch, line[i:q]...)
					field = field[:len(field)+q-i]
				} else {
					field = line[start+1 : q]
				}
				i = q + 1
				break
			}
			dst = append(dst, field)
			if i == len(line) {
				return dst, nil
			}
			if line[i] != ',' {
				return dst, fmt.Errorf("unexpected %q after the closing quote of the field starting at byte %d",
					line[i], start+1)
			}
			i++
			continue
		}
		c := bytes.IndexByte(line[i:], ',')
		if c < 0 {
			return append(dst, line[i:]), nil
		}
		dst = append(dst, line[i:i+c])
		i += c + 1
	}
}

// b2s views b as a string without copying. REQUIRES: the string does not outlive b's contents
// (use it only for calls that do not keep it, or that copy it as strconv's errors do).
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
