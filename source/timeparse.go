package source

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cubed-olap/cubed/cube"
)

type timeKind uint8

const (
	kindRFC3339 timeKind = iota
	kindUnixS
	kindUnixMS
	kindLayout
)

// Go layouts with a hand-written fast path (they are the common ones in logs and exports).
const (
	layoutSpace = "2006-01-02 15:04:05"
	layoutT     = "2006-01-02T15:04:05"
)

// timeParser turns the text of an event-time field into Unix milliseconds.
//
// It remembers the last text it parsed: logs carry the same second on many consecutive lines,
// and comparing bytes is far cheaper than parsing. RFC 3339, unix_s, unix_ms and the layouts
// "2006-01-02 15:04:05" / "2006-01-02T15:04:05" are parsed by hand without allocating; other
// layouts go through time.ParseInLocation. Sub-millisecond digits are dropped (rounding towards
// negative infinity, as time.Time.UnixMilli does).
type timeParser struct {
	kind   timeKind
	format string
	fast   bool // layout is layoutSpace or layoutT
	sep    byte // the date/time separator of the fast layout
	loc    *time.Location
	utc    bool

	last   []byte
	lastMS int64
	lastOK bool
}

func newTimeParser(format string, loc *time.Location) (timeParser, error) {
	if loc == nil {
		loc = time.UTC
	}
	p := timeParser{format: format, loc: loc, utc: loc == time.UTC}
	switch format {
	case cube.TimeRFC3339, "":
		p.kind = kindRFC3339
		p.format = cube.TimeRFC3339
	case cube.TimeUnixS:
		p.kind = kindUnixS
	case cube.TimeUnixMS:
		p.kind = kindUnixMS
	default:
		p.kind = kindLayout
		// A layout must contain Go reference-time elements and read back what it writes; this
		// rejects typos such as "yyyy-MM-dd" that contain no element at all.
		probe := time.Date(2001, 3, 4, 5, 6, 7, 0, time.UTC)
		text := probe.Format(format)
		if _, err := time.Parse(format, text); err != nil || text == format {
			return p, fmt.Errorf("event time format %q is neither %s, %s, %s nor a Go time layout such as %q",
				format, cube.TimeRFC3339, cube.TimeUnixS, cube.TimeUnixMS, layoutSpace)
		}
		switch format {
		case layoutSpace:
			p.fast, p.sep = true, ' '
		case layoutT:
			p.fast, p.sep = true, 'T'
		}
	}
	return p, nil
}

// parse returns text as Unix milliseconds, or an error that quotes text and names the format.
func (p *timeParser) parse(text []byte) (int64, error) {
	if p.lastOK && bytes.Equal(text, p.last) {
		return p.lastMS, nil
	}
	ms, err := p.parseUncached(text)
	if err != nil {
		return 0, err
	}
	p.last = append(p.last[:0], text...)
	p.lastMS, p.lastOK = ms, true
	return ms, nil
}

func (p *timeParser) parseUncached(text []byte) (int64, error) {
	switch p.kind {
	case kindRFC3339:
		if ms, ok := parseRFC3339(text); ok {
			return ms, nil
		}
		return 0, fmt.Errorf("cannot parse %q as rfc3339 (such as 2006-01-02T15:04:05Z or 2006-01-02T15:04:05.999+01:00)", clip(string(text)))
	case kindUnixS, kindUnixMS:
		scale := int64(1000)
		if p.kind == kindUnixMS {
			scale = 1
		}
		if ms, ok := parseUnix(text, scale); ok {
			return ms, nil
		}
		return 0, fmt.Errorf("cannot parse %q as %s (a number, optionally with a fraction)", clip(string(text)), p.format)
	}
	if p.fast {
		if y, mo, d, h, mi, s, ms, ok := parseCivil(text, p.sep); ok {
			if p.utc {
				return unixMilli(y, mo, d, h, mi, s, ms), nil
			}
			return time.Date(y, time.Month(mo), d, h, mi, s, ms*1e6, p.loc).UnixMilli(), nil
		}
	}
	t, err := time.ParseInLocation(p.format, b2s(text), p.loc)
	if err != nil {
		// Parse again with a copy: err would otherwise keep a view of bytes that change.
		_, err = time.ParseInLocation(p.format, string(text), p.loc)
		return 0, fmt.Errorf("cannot parse %q with layout %q in %s: %w", clip(string(text)), p.format, p.loc, err)
	}
	return t.UnixMilli(), nil
}

// daysFromCivil returns the number of days from 1970-01-01 to the proleptic Gregorian date
// y-m-d, after Howard Hinnant's days_from_civil ("chrono-Compatible Low-Level Date Algorithms",
// https://howardhinnant.github.io/date_algorithms.html).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

func unixMilli(y, mo, d, h, mi, s, ms int) int64 {
	return (daysFromCivil(y, mo, d)*86400+int64(h*3600+mi*60+s))*1000 + int64(ms)
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func digits(b []byte, n int) (int, bool) {
	if len(b) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := b[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + int(c)
	}
	return v, true
}

// parseCivil parses "YYYY-MM-DD?HH:MM:SS" where ? is sep, optionally followed by a fraction of
// a second ("." or "," and digits, as time.Parse accepts), with ranges checked as time.Parse
// checks them. It returns the milliseconds of the fraction, truncated. ok is false for
// anything else, including a text that time.Parse might still accept (1-digit hours).
func parseCivil(b []byte, sep byte) (y, mo, d, h, mi, s, ms int, ok bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[10] != sep || b[13] != ':' || b[16] != ':' {
		return
	}
	var ok1, ok2, ok3, ok4, ok5, ok6 bool
	y, ok1 = digits(b, 4)
	mo, ok2 = digits(b[5:], 2)
	d, ok3 = digits(b[8:], 2)
	h, ok4 = digits(b[11:], 2)
	mi, ok5 = digits(b[14:], 2)
	s, ok6 = digits(b[17:], 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59 {
		return
	}
	rest := b[19:]
	if len(rest) > 0 {
		if len(rest) < 2 || (rest[0] != '.' && rest[0] != ',') {
			return
		}
		var frac bool
		ms, frac = fraction(rest[1:])
		if !frac {
			return
		}
	}
	ok = true
	return
}

// fraction reads a string of one or more digits (all of b) as a fraction of a second and
// returns its milliseconds, truncated.
func fraction(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	ms := 0
	for i, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if i < 3 {
			ms = ms*10 + int(c-'0')
		}
	}
	for i := len(b); i < 3; i++ {
		ms *= 10
	}
	return ms, true
}

// parseRFC3339 parses an RFC 3339 date-time (https://www.rfc-editor.org/rfc/rfc3339#section-5.6):
// "YYYY-MM-DDTHH:MM:SS", an optional fraction of any length, then "Z" or "±HH:MM". "t", "z" and
// a space for "T" are accepted (section 5.6's note). The result is Unix milliseconds.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 {
		return 0, false
	}
	sep := b[10]
	if sep != 'T' && sep != 't' && sep != ' ' {
		return 0, false
	}
	// Find the zone: it starts at the first 'Z', 'z', '+' or '-' after the seconds.
	z := 19
	if b[z] == '.' {
		z++
		for z < len(b) && b[z] >= '0' && b[z] <= '9' {
			z++
		}
	}
	if z >= len(b) {
		return 0, false
	}
	y, mo, d, h, mi, s, ms, ok := parseCivil(b[:z], sep)
	if !ok || b[19] == ',' {
		return 0, false
	}
	zone := b[z:]
	off := 0
	switch {
	case len(zone) == 1 && (zone[0] == 'Z' || zone[0] == 'z'):
	case len(zone) == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':':
		oh, ok1 := digits(zone[1:], 2)
		om, ok2 := digits(zone[4:], 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		off = oh*3600 + om*60
		if zone[0] == '-' {
			off = -off
		}
	default:
		return 0, false
	}
	return unixMilli(y, mo, d, h, mi, s, ms) - int64(off)*1000, true
}

// parseUnix parses a decimal number of seconds (scale 1000) or milliseconds (scale 1) into Unix
// milliseconds, rounding towards negative infinity. Plain decimals are parsed exactly; other
// number syntax (exponents) goes through strconv.ParseFloat.
func parseUnix(b []byte, scale int64) (int64, bool) {
	if ms, ok := parseUnixExact(b, scale); ok {
		return ms, true
	}
	f, err := strconv.ParseFloat(b2s(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	v := math.Floor(f * float64(scale))
	if v >= 9.2e18 || v <= -9.2e18 {
		return 0, false
	}
	return int64(v), true
}

func parseUnixExact(b []byte, scale int64) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	maxDigits := 15 // 999,999,999,999,999 s is 9.99e17 ms: no overflow
	if scale == 1 {
		maxDigits = 18
	}
	i := 0
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i >= maxDigits {
			return 0, false // leave big numbers to the float path
		}
		n = n*10 + int64(b[i]-'0')
		i++
	}
	if i == 0 {
		return 0, false
	}
	n *= scale
	rem := false // nonzero digits below the millisecond
	if i < len(b) {
		if b[i] != '.' || i+1 == len(b) {
			return 0, false
		}
		unit := scale / 10 // value of the next fraction digit in milliseconds
		for _, c := range b[i+1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			if unit > 0 {
				n += int64(c-'0') * unit
				unit /= 10
			} else if c != '0' {
				rem = true
			}
		}
	}
	if neg {
		n = -n
		if rem {
			n--
		}
	}
	return n, true
}
