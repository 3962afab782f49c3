package web

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Result formats, as named by WriteResult and the query endpoint's ?format= parameter.
const (
	FormatJSON  = "json"
	FormatCSV   = "csv"
	FormatArrow = "arrow"
)

// Media types of the result formats.
const (
	MediaJSON  = "application/json"
	MediaCSV   = "text/csv"
	MediaArrow = "application/vnd.apache.arrow.stream"
)

// ContentType returns the Content-Type header value of a result format, or "" for an unknown
// format.
func ContentType(format string) string {
	switch format {
	case FormatJSON:
		return MediaJSON
	case FormatCSV:
		return MediaCSV + "; charset=utf-8; header=present"
	case FormatArrow:
		return MediaArrow
	}
	return ""
}

// timeLayout is RFC 3339 with milliseconds when they are not zero (window bounds are whole
// milliseconds), e.g. 2015-09-12T00:00:00+02:00.
const timeLayout = "2006-01-02T15:04:05.999Z07:00"

// arrowBatchRows is the number of rows per Arrow record batch.
const arrowBatchRows = 64 << 10

// WriteResult writes r to w in format FormatJSON (exactly what EncodeJSON writes), FormatCSV
// (RFC 4180: a header row of column names, then one record per row; times in RFC 3339 with the
// cube's offset, numbers in the shortest exact decimal, nulls empty) or FormatArrow (an Arrow
// IPC stream: window_start and window_end as timestamp[ms, tz=Result.Timezone], dimensions as
// utf8, measures as nullable float64, in batches of up to 65,536 rows; the schema metadata
// carries cubed.watermark and cubed.last_emit in RFC 3339, empty when unknown). This is what
// the query endpoint answers, so the CLI prints exactly what the HTTP API serves.
func WriteResult(w io.Writer, format string, r *Result) error {
	switch format {
	case FormatJSON:
		return EncodeJSON(w, r)
	case FormatCSV:
		return encodeCSV(w, r)
	case FormatArrow:
		return encodeArrow(w, r)
	}
	return fmt.Errorf("writing query result: unknown format %q (formats: %s, %s, %s)", format, FormatJSON, FormatCSV, FormatArrow)
}

// EncodeJSON writes r as the query API's success envelope, followed by a newline:
//
//	{"status":"success","data":{"columns":["window_start","channel","uv"],"rows":[["2015-09-12T00:00:00Z","#en.wikipedia",3]]},"freshness":{"watermark":"…","last_emit":null}}
//
// Times are RFC 3339 strings in the cube's offset, nulls and non-finite numbers are null.
func EncodeJSON(w io.Writer, r *Result) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	b := make([]byte, 0, 1024)
	b = append(b, `{"status":"success","data":{"columns":[`...)
	for i, c := range r.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c.Name)
	}
	b = append(b, `],"rows":[`...)
	for i, row := range r.Rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, v := range row {
			if j > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, v); err != nil {
				return fmt.Errorf("encoding query result row %d column %d: %w", i, j, err)
			}
		}
		b = append(b, ']')
		if len(b) >= 32<<10 {
			if _, err := bw.Write(b); err != nil {
				return fmt.Errorf("writing query result: %w", err)
			}
			b = b[:0]
		}
	}
	fresh, err := json.Marshal(r.Freshness)
	if err != nil {
		return fmt.Errorf("encoding query result freshness: %w", err)
	}
	b = append(b, `]},"freshness":`...)
	b = append(b, fresh...)
	b = append(b, "}\n"...)
	if _, err := bw.Write(b); err != nil {
		return fmt.Errorf("writing query result: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing query result: %w", err)
	}
	return nil
}

func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return append(b, "null"...), nil
		}
		return appendFloat(b, v), nil
	case time.Time:
		b = append(b, '"')
		b = v.AppendFormat(b, timeLayout)
		return append(b, '"'), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("encoding %T value %v: %w", v, v, err)
	}
	return append(b, j...), nil
}

// appendFloat formats f as encoding/json does: the shortest decimal that reads back as f,
// in exponent form only below 1e-6 or from 1e21 on.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as encoding/json
// does, and U+2028/U+2029 are escaped so the output is also valid JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// formatCSVValue formats one value for CSV: nulls empty, numbers as in JSON (non-finite as
// NaN, +Inf, -Inf), times in RFC 3339.
func formatCSVValue(buf []byte, v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		if math.IsNaN(v) {
			return ""
		}
		if math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return string(appendFloat(buf[:0], v))
	case time.Time:
		return string(v.AppendFormat(buf[:0], timeLayout))
	}
	return fmt.Sprint(v)
}

func encodeCSV(w io.Writer, r *Result) error {
	cw := csv.NewWriter(w)
	rec := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		rec[i] = c.Name
	}
	if err := cw.Write(rec); err != nil {
		return fmt.Errorf("writing query result CSV header: %w", err)
	}
	var buf [64]byte
	for i, row := range r.Rows {
		if len(row) != len(rec) {
			return fmt.Errorf("writing query result CSV row %d: %d values for %d columns", i, len(row), len(rec))
		}
		for j, v := range row {
			rec[j] = formatCSVValue(buf[:], v)
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("writing query result CSV row %d: %w", i, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing query result CSV: %w", err)
	}
	return nil
}

// ArrowSchema returns the Arrow schema of r's columns (see WriteResult).
func ArrowSchema(r *Result) *arrow.Schema {
	tz := r.Timezone
	if tz == "" {
		tz = "UTC"
	}
	fields := make([]arrow.Field, len(r.Columns))
	for i, c := range r.Columns {
		switch c.Type {
		case TypeTime:
			fields[i] = arrow.Field{Name: c.Name, Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: tz}}
		case TypeNumber:
			fields[i] = arrow.Field{Name: c.Name, Type: arrow.PrimitiveTypes.Float64, Nullable: true}
		default:
			fields[i] = arrow.Field{Name: c.Name, Type: arrow.BinaryTypes.String}
		}
	}
	format := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	md := arrow.NewMetadata([]string{"cubed.watermark", "cubed.last_emit"},
		[]string{format(r.Freshness.Watermark), format(r.Freshness.LastEmit)})
	return arrow.NewSchema(fields, &md)
}

func encodeArrow(w io.Writer, r *Result) (err error) {
	mem := memory.NewGoAllocator()
	schema := ArrowSchema(r)
	iw := ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	defer func() {
		if cerr := iw.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing query result Arrow stream: %w", cerr)
		}
	}()
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	for start := 0; start < len(r.Rows); start += arrowBatchRows {
		end := min(start+arrowBatchRows, len(r.Rows))
		rb.Reserve(end - start)
		for i := start; i < end; i++ {
			row := r.Rows[i]
			if len(row) != len(r.Columns) {
				return fmt.Errorf("writing query result Arrow row %d: %d values for %d columns", i, len(row), len(r.Columns))
			}
			for j, v := range row {
				if err := appendArrow(rb.Field(j), v); err != nil {
					return fmt.Errorf("writing query result Arrow row %d column %q: %w", i, r.Columns[j].Name, err)
				}
			}
		}
		rec := rb.NewRecordBatch()
		err := iw.Write(rec)
		rec.Release()
		if err != nil {
			return fmt.Errorf("writing query result Arrow batch at row %d: %w", start, err)
		}
	}
	return nil
}

func appendArrow(bld array.Builder, v any) error {
	switch bld := bld.(type) {
	case *array.TimestampBuilder:
		t, ok := v.(time.Time)
		if !ok {
			return fmt.Errorf("want time.Time, got %T", v)
		}
		bld.Append(arrow.Timestamp(t.UnixMilli()))
	case *array.Float64Builder:
		switch v := v.(type) {
		case nil:
			bld.AppendNull()
		case float64:
			if math.IsNaN(v) {
				bld.AppendNull()
			} else {
				bld.Append(v)
			}
		default:
			return fmt.Errorf("want float64 or nil, got %T", v)
		}
	case *array.StringBuilder:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want string, got %T", v)
		}
		bld.Append(s)
	default:
		return fmt.Errorf("BUG: no Arrow builder for %T", bld)
	}
	return nil
}
