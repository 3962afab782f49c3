package sink

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// compareTuple is the oracle for key order: the lexicographic order of
// (table, window, grouping set, start, end, dims...), written without the encoding.
func compareTuple(t1 string, a *Row, t2 string, b *Row) int {
	if c := strings.Compare(t1, t2); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Window, b.Window); c != 0 {
		return c
	}
	if c := cmp.Compare(a.GroupingSet, b.GroupingSet); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Start, b.Start); c != 0 {
		return c
	}
	if c := cmp.Compare(a.End, b.End); c != 0 {
		return c
	}
	for i := 0; i < len(a.Dims) && i < len(b.Dims); i++ {
		if c := strings.Compare(a.Dims[i], b.Dims[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Dims), len(b.Dims))
}

// edgeBytes are the bytes that matter to the escaping: the escape byte, the terminator, the
// escaped-zero marker and their neighbours.
var edgeBytes = []byte{0x00, 0x01, 0x02, 'a', 'b', 0xFE, 0xFF}

func randString(rng *rand.Rand) string {
	n := rng.IntN(5)
	b := make([]byte, n)
	for i := range b {
		b[i] = edgeBytes[rng.IntN(len(edgeBytes))]
	}
	return string(b)
}

var edgeInts = []int64{math.MinInt64, math.MinInt64 + 1, -1 << 32, -256, -1, 0, 1, 255, 256, 1 << 32, math.MaxInt64 - 1, math.MaxInt64}

func randInt(rng *rand.Rand) int64 {
	if rng.IntN(2) == 0 {
		return edgeInts[rng.IntN(len(edgeInts))]
	}
	return int64(rng.Uint64())
}

// randRow draws rows whose fields collide often, so that every field gets to decide an order.
func randRow(rng *rand.Rand) (string, Row) {
	windows := []int{0, 1, 254, 255}
	gss := []uint16{0, 1, 0x00FF, 0x0100, 0xFFFF}
	r := Row{
		Window:      windows[rng.IntN(len(windows))],
		GroupingSet: gss[rng.IntN(len(gss))],
		Start:       randInt(rng),
		End:         randInt(rng),
	}
	for range rng.IntN(4) {
		r.Dims = append(r.Dims, randString(rng))
	}
	return randString(rng), r
}

type tableRow struct {
	table string
	row   Row
}

func TestKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([]tableRow, 3000)
	for i := range rows {
		rows[i].table, rows[i].row = randRow(rng)
	}
	byTuple := slices.Clone(rows)
	slices.SortStableFunc(byTuple, func(a, b tableRow) int { return compareTuple(a.table, &a.row, b.table, &b.row) })
	byKey := slices.Clone(rows)
	slices.SortStableFunc(byKey, func(a, b tableRow) int {
		return bytes.Compare(AppendKey(nil, a.table, &a.row), AppendKey(nil, b.table, &b.row))
	})
	for i := range byTuple {
		if compareTuple(byTuple[i].table, &byTuple[i].row, byKey[i].table, &byKey[i].row) != 0 {
			t.Fatalf("position %d: tuple order has %q %+v, key order has %q %+v", i, byTuple[i].table, byTuple[i].row, byKey[i].table, byKey[i].row)
		}
	}
	// Pairwise check on neighbours and random pairs, including equality.
	for i := 0; i < 20000; i++ {
		a, b := rows[rng.IntN(len(rows))], rows[rng.IntN(len(rows))]
		want := compareTuple(a.table, &a.row, b.table, &b.row)
		got := bytes.Compare(AppendKey(nil, a.table, &a.row), AppendKey(nil, b.table, &b.row))
		if got != want {
			t.Fatalf("compare(%q %+v, %q %+v): keys say %d, tuples say %d", a.table, a.row, b.table, b.row, got, want)
		}
	}
}

func TestKeyLayout(t *testing.T) {
	// Bytes written out by hand from the layout in AppendKey's doc comment.
	r := Row{Window: 2, GroupingSet: 0x0102, Start: -1, End: 1, Dims: []string{"a\x00b", ""}}
	want := []byte{
		'r',
		'w', 'i', 'k', 'i', 0x00, 0x01, // table "wiki"
		0x02,       // window
		0x01, 0x02, // grouping set
		0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // start -1
		0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // end 1
		'a', 0x00, 0xFF, 'b', 0x00, 0x01, // "a\x00b"
		0x00, 0x01, // ""
	}
	got := AppendKey([]byte("keep"), "wiki", &r)
	if !bytes.Equal(got[:4], []byte("keep")) {
		t.Fatalf("AppendKey overwrote dst: %q", got)
	}
	if !bytes.Equal(got[4:], want) {
		t.Fatalf("AppendKey = % X\nwant        % X", got[4:], want)
	}
	prefix := AppendScanPrefix(nil, "wiki", 2, 0x0102)
	if !bytes.Equal(prefix, want[:10]) {
		t.Fatalf("AppendScanPrefix = % X, want % X", prefix, want[:10])
	}
	bound := AppendStartBound(nil, "wiki", 2, 0x0102, -1)
	if !bytes.Equal(bound, want[:18]) {
		t.Fatalf("AppendStartBound = % X, want % X", bound, want[:18])
	}
	if tp := AppendTablePrefix(nil, "wiki"); !bytes.Equal(tp, want[:7]) {
		t.Fatalf("AppendTablePrefix = % X, want % X", tp, want[:7])
	}
}

func TestKeyRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var dec Row
	for i := 0; i < 5000; i++ {
		table, r := randRow(rng)
		key := AppendKey(nil, table, &r)
		dec.Values = []float64{42} // must stay untouched
		gotTable, err := DecodeKey(key, &dec)
		if err != nil {
			t.Fatalf("DecodeKey(% X) of %q %+v: %v", key, table, r, err)
		}
		if gotTable != table || dec.Window != r.Window || dec.GroupingSet != r.GroupingSet ||
			dec.Start != r.Start || dec.End != r.End || !slices.Equal(dec.Dims, r.Dims) {
			t.Fatalf("round trip of %q %+v gave %q %+v", table, r, gotTable, dec)
		}
		if len(dec.Values) != 1 || dec.Values[0] != 42 {
			t.Fatalf("DecodeKey touched Values: %v", dec.Values)
		}
	}
}

func TestDecodeKeyMalformed(t *testing.T) {
	good := AppendKey(nil, "t", &Row{Window: 1, GroupingSet: 2, Start: 3, End: 4, Dims: []string{"x"}})
	cases := map[string][]byte{
		"empty":                  nil,
		"other keyspace":         append([]byte{'s'}, good[1:]...),
		"table unterminated":     {'r', 't'},
		"table bad escape":       {'r', 't', 0x00, 0x02},
		"table ends on 0x00":     {'r', 't', 0x00},
		"short fixed fields":     good[:len(good)-4-8],
		"dim unterminated":       good[:len(good)-1],
		"dim bad escape":         append(slices.Clone(good[:len(good)-2]), 0x00, 0x7F),
		"trailing byte after":    append(slices.Clone(good), 'z'),
		"dim ends on escape 0x0": append(slices.Clone(good[:len(good)-2]), 0x00),
	}
	for name, key := range cases {
		var r Row
		if _, err := DecodeKey(key, &r); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("%s: DecodeKey(% X) error = %v, want ErrMalformedKey", name, key, err)
		}
	}
	var r Row
	if _, err := DecodeKey(good, &r); err != nil {
		t.Fatalf("the unmodified key does not decode: %v", err)
	}
}

func TestStartBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20000; i++ {
		_, r := randRow(rng)
		bound := randInt(rng)
		if rng.IntN(4) == 0 {
			bound = r.Start
		}
		key := AppendKey(nil, "t", &r)
		b := AppendStartBound(nil, "t", r.Window, r.GroupingSet, bound)
		if got, want := bytes.Compare(key, b) >= 0, r.Start >= bound; got != want {
			t.Fatalf("row start %d, bound %d: key ≥ bound is %v, start ≥ bound is %v", r.Start, bound, got, want)
		}
		p := AppendScanPrefix(nil, "t", r.Window, r.GroupingSet)
		if !bytes.HasPrefix(key, p) || bytes.Compare(key, PrefixEnd(p)) >= 0 {
			t.Fatalf("key % X outside [prefix % X, PrefixEnd)", key, p)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{0xFF, 0xFF}, nil},
		{[]byte{'a'}, []byte{'b'}},
		{[]byte{'a', 0xFF}, []byte{'b'}},
		{[]byte{'a', 0x00, 0x01}, []byte{'a', 0x00, 0x02}},
	}
	for _, c := range cases {
		in := slices.Clone(c.in)
		if got := PrefixEnd(in); !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("PrefixEnd(% X) = % X, want % X", c.in, got, c.want)
		}
		if !bytes.Equal(in, c.in) {
			t.Errorf("PrefixEnd modified its argument: % X", in)
		}
	}
}

func TestKeyPanicsOnBadWindow(t *testing.T) {
	for _, w := range []int{-1, MaxWindows} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendKey with window %d did not panic", w)
				}
			}()
			AppendKey(nil, "t", &Row{Window: w})
		}()
	}
}

func TestValueRoundTrip(t *testing.T) {
	negZero := math.Copysign(0, -1)
	odd := math.Float64frombits(0x7FF0_0000_0000_0ABC) // a NaN that is not math.NaN()
	cases := []Row{
		{},
		{Version: 1, Values: []float64{}},
		{Version: math.MaxUint64, Values: []float64{1, -2.5, math.NaN(), math.Inf(1), math.Inf(-1), negZero, math.MaxFloat64, math.SmallestNonzeroFloat64, odd}},
		{Version: 300, Values: []float64{math.NaN()}},
	}
	for _, r := range cases {
		b := AppendValue([]byte("x"), &r)
		if b[0] != 'x' {
			t.Fatalf("AppendValue overwrote dst")
		}
		got := Row{Dims: []string{"keep"}, Values: make([]float64, 0, 1)}
		if err := DecodeValue(b[1:], &got); err != nil {
			t.Fatalf("DecodeValue of %+v: %v", r, err)
		}
		if got.Version != r.Version || len(got.Values) != len(r.Values) {
			t.Fatalf("round trip of %+v gave %+v", r, got)
		}
		for i, v := range r.Values {
			g := got.Values[i]
			if math.IsNaN(v) {
				if !math.IsNaN(g) || math.Float64bits(g) != math.Float64bits(math.NaN()) {
					t.Fatalf("value %d: NaN came back as %v (bits %X), want the canonical NaN", i, g, math.Float64bits(g))
				}
				continue
			}
			if math.Float64bits(g) != math.Float64bits(v) {
				t.Fatalf("value %d: %v came back as %v", i, v, g)
			}
		}
		if len(got.Dims) != 1 || got.Dims[0] != "keep" {
			t.Fatalf("DecodeValue touched Dims: %q", got.Dims)
		}
	}
	// Layout by hand: version 300 = uvarint AC 02, flags 00, count 01, NaN little-endian.
	want := []byte{0xAC, 0x02, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF8, 0x7F}
	if got := AppendValue(nil, &cases[3]); !bytes.Equal(got, want) {
		t.Fatalf("AppendValue = % X, want % X", got, want)
	}
	// A value of an earlier version with flag bit 0 (its window's final row) reads the same.
	legacy := slices.Clone(want)
	legacy[2] = 0x01
	var got Row
	if err := DecodeValue(legacy, &got); err != nil || got.Version != 300 || len(got.Values) != 1 || !math.IsNaN(got.Values[0]) {
		t.Fatalf("DecodeValue(% X) = %+v, %v; want version 300, one null", legacy, got, err)
	}
}

func TestDecodeValueMalformed(t *testing.T) {
	good := AppendValue(nil, &Row{Version: 7, Values: []float64{1, 2}})
	cases := map[string][]byte{
		"empty":           nil,
		"bad varint":      {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01},
		"no flags":        {0x07},
		"reserved flag":   {0x07, 0x02, 0x00},
		"no count":        {0x07, 0x00},
		"short values":    good[:len(good)-1],
		"trailing":        append(slices.Clone(good), 0),
		"huge count":      {0x07, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F},
		"count overflows": {0x07, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3, 4, 5, 6, 7, 8},
	}
	for name, b := range cases {
		var r Row
		if err := DecodeValue(b, &r); !errors.Is(err, ErrMalformedValue) {
			t.Errorf("%s: DecodeValue(% X) error = %v, want ErrMalformedValue", name, b, err)
		}
	}
}

func TestCodecAllocs(t *testing.T) {
	r := Row{Window: 3, GroupingSet: 9, Start: 1, End: 2, Dims: []string{"en", "Main", "false"}, Values: []float64{1, 2, math.NaN()}, Version: 5}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendKey(buf[:0], "wiki_edits", &r) }); n != 0 {
		t.Errorf("AppendKey allocates %v times per call into a large-enough buffer", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendValue(buf[:0], &r) }); n != 0 {
		t.Errorf("AppendValue allocates %v times per call into a large-enough buffer", n)
	}
	var dec Row
	_ = DecodeValue(buf, &dec)
	if n := testing.AllocsPerRun(100, func() { _ = DecodeValue(buf, &dec) }); n != 0 {
		t.Errorf("DecodeValue allocates %v times per call into a reused row", n)
	}
}

// splitDims turns fuzz bytes into dimension values: the first byte is the separator.
func splitDims(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b[1:]), string(b[:1]))
}

func FuzzKey(f *testing.F) {
	f.Add("wiki", "wiki", uint8(0), uint8(0), uint16(0), uint16(0), int64(0), int64(0), int64(1), int64(1), []byte("|en|Main"), []byte("|en|Main\x00"))
	f.Add("a\x00", "a", uint8(255), uint8(0), uint16(0xFFFF), uint16(1), int64(math.MinInt64), int64(-1), int64(math.MaxInt64), int64(0), []byte("\x00\x01\x00\xff"), []byte(""))
	f.Add("t", "t", uint8(1), uint8(1), uint16(7), uint16(7), int64(-5), int64(-5), int64(5), int64(5), []byte(",a"), []byte(",a,"))
	f.Add("", "\x00", uint8(2), uint8(2), uint16(0x0100), uint16(0x00FF), int64(1), int64(1), int64(2), int64(2), []byte("|\xff"), []byte("|\x00\x01"))
	f.Fuzz(func(t *testing.T, tableA, tableB string, wA, wB uint8, gsA, gsB uint16, sA, sB, eA, eB int64, dA, dB []byte) {
		a := Row{Window: int(wA), GroupingSet: gsA, Start: sA, End: eA, Dims: splitDims(dA)}
		b := Row{Window: int(wB), GroupingSet: gsB, Start: sB, End: eB, Dims: splitDims(dB)}
		ka, kb := AppendKey(nil, tableA, &a), AppendKey(nil, tableB, &b)
		for _, c := range []struct {
			table string
			row   *Row
			key   []byte
		}{{tableA, &a, ka}, {tableB, &b, kb}} {
			var dec Row
			table, err := DecodeKey(c.key, &dec)
			if err != nil {
				t.Fatalf("DecodeKey(% X): %v", c.key, err)
			}
			if table != c.table || dec.Window != c.row.Window || dec.GroupingSet != c.row.GroupingSet ||
				dec.Start != c.row.Start || dec.End != c.row.End || !slices.Equal(dec.Dims, c.row.Dims) {
				t.Fatalf("round trip of %q %+v gave %q %+v", c.table, *c.row, table, dec)
			}
		}
		if got, want := bytes.Compare(ka, kb), compareTuple(tableA, &a, tableB, &b); got != want {
			t.Fatalf("keys compare %d, tuples compare %d: %q %+v vs %q %+v", got, want, tableA, a, tableB, b)
		}
		lo := AppendStartBound(nil, tableA, a.Window, a.GroupingSet, sB)
		if got, want := bytes.Compare(ka, lo) >= 0, sA >= sB; got != want {
			t.Fatalf("start %d vs bound %d: key ≥ bound is %v", sA, sB, got)
		}
	})
}

// FuzzDecodeKey feeds arbitrary bytes to DecodeKey: it must not panic, and what it accepts must
// re-encode to the same bytes (the encoding is canonical).
func FuzzDecodeKey(f *testing.F) {
	f.Add(AppendKey(nil, "wiki", &Row{Window: 1, GroupingSet: 2, Start: 3, End: 4, Dims: []string{"a\x00", ""}}))
	f.Add([]byte{'r', 0x00, 0x01})
	f.Add([]byte{'r', 0x00, 0xFF, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0x00})
	f.Fuzz(func(t *testing.T, key []byte) {
		var r Row
		table, err := DecodeKey(key, &r)
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("error %v does not wrap ErrMalformedKey", err)
			}
			return
		}
		if again := AppendKey(nil, table, &r); !bytes.Equal(again, key) {
			t.Fatalf("decoded %q %+v re-encodes to % X, not % X", table, r, again, key)
		}
	})
}

// FuzzDecodeValue feeds arbitrary bytes to DecodeValue: it must not panic, and what it accepts
// must survive an encode/decode round trip unchanged (NaN as NaN).
func FuzzDecodeValue(f *testing.F) {
	f.Add(AppendValue(nil, &Row{Version: 9, Values: []float64{1, math.NaN()}}))
	f.Add([]byte{0x00, 0x00, 0x00})
	f.Add([]byte{0x80, 0x00, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Row
		if err := DecodeValue(b, &r); err != nil {
			if !errors.Is(err, ErrMalformedValue) {
				t.Fatalf("error %v does not wrap ErrMalformedValue", err)
			}
			return
		}
		var again Row
		if err := DecodeValue(AppendValue(nil, &r), &again); err != nil {
			t.Fatalf("re-encoding %+v: %v", r, err)
		}
		if again.Version != r.Version || len(again.Values) != len(r.Values) {
			t.Fatalf("%+v came back as %+v", r, again)
		}
		for i := range r.Values {
			if x, y := r.Values[i], again.Values[i]; !(x == y && math.Signbit(x) == math.Signbit(y)) && !(math.IsNaN(x) && math.IsNaN(y)) {
				t.Fatalf("value %d: %v came back as %v", i, x, y)
			}
		}
	})
}

func BenchmarkAppendKey(b *testing.B) {
	r := Row{Window: 1, GroupingSet: 3, Start: 1442016000000, End: 1442019600000, Dims: []string{"#en.wikipedia", "Main", "false"}}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	buf = AppendKey(buf[:0], "wiki_edits", &r)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = AppendKey(buf[:0], "wiki_edits", &r)
	}
}
