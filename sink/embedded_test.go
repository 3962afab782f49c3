package sink

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble"
)

func openTestDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	db, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// oracleKey identifies a row's primary key in the test's own model of the store.
func oracleKey(table string, r *Row) string {
	return fmt.Sprintf("%q|%d|%d|%d|%d|%q", table, r.Window, r.GroupingSet, r.Start, r.End, r.Dims)
}

func cloneRow(r *Row) Row {
	c := *r
	c.Dims = slices.Clone(r.Dims)
	c.Values = slices.Clone(r.Values)
	return c
}

// sameRow compares every field, NaN equal to NaN.
func sameRow(a, b *Row) bool {
	if a.Window != b.Window || a.GroupingSet != b.GroupingSet || a.Start != b.Start || a.End != b.End ||
		a.Version != b.Version || !slices.Equal(a.Dims, b.Dims) || len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		x, y := a.Values[i], b.Values[i]
		if x != y && !(math.IsNaN(x) && math.IsNaN(y)) {
			return false
		}
	}
	return true
}

func TestEmbeddedStore(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir)
	e := OpenEmbedded(db)

	// Other keyspaces of the shared database, on both sides of 'r', must stay invisible.
	for _, k := range []string{"q", "rr", "s", "r"} {
		if err := db.Set([]byte(k), []byte("other state"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}

	// Tables where one name is a prefix of the other; windows, grouping sets and times at the
	// edges of their ranges; dimension values with the escape bytes.
	tables := []string{"wiki", "wiki_edits", "w"}
	windows := []int{0, 1, 255}
	gss := []uint16{0, 1, 0xFFFF}
	starts := []int64{math.MinInt64, -3_600_000, -1, 0, 1, 3_600_000, 7_200_000, 86_400_000, math.MaxInt64}
	dimVals := []string{"", "\x00", "a", "a\x00", "a\x01", "b", "\xff", "en", "de"}

	rng := rand.New(rand.NewPCG(7, 8))
	oracle := map[string]tableRow{}
	var version uint64
	write := func(batch []tableRow) {
		t.Helper()
		byTable := map[string][]Row{}
		for _, tr := range batch {
			byTable[tr.table] = append(byTable[tr.table], tr.row)
		}
		for table, rows := range byTable {
			if err := e.Write(table, rows); err != nil {
				t.Fatal(err)
			}
			for i := range rows {
				oracle[oracleKey(table, &rows[i])] = tableRow{table, cloneRow(&rows[i])}
			}
		}
	}
	var all []tableRow
	for range 600 {
		version++
		r := Row{
			Window:      windows[rng.IntN(len(windows))],
			GroupingSet: gss[rng.IntN(len(gss))],
			Start:       starts[rng.IntN(len(starts))],
			Version:     version,
			Values:      []float64{float64(rng.IntN(100)), rng.Float64(), math.NaN()},
		}
		r.End = r.Start + int64(rng.IntN(3))*3_600_000
		if r.Start == math.MaxInt64 || r.Start > math.MaxInt64-7_200_000 {
			r.End = r.Start
		}
		for range 2 {
			r.Dims = append(r.Dims, dimVals[rng.IntN(len(dimVals))])
		}
		all = append(all, tableRow{tables[rng.IntN(len(tables))], r})
	}
	for i := 0; i < len(all); i += 100 {
		write(all[i : i+100])
	}

	// Upsert: rewrite a third of the written keys with a larger version and different values.
	var again []tableRow
	for i := 0; i < len(all); i += 3 {
		version++
		r := cloneRow(&all[i].row)
		r.Version = version
		r.Values = []float64{-1, float64(version), 0}
		again = append(again, tableRow{all[i].table, r})
	}
	write(again)
	for _, tr := range again[:10] {
		got, ok, err := e.Get(tr.table, Row{Window: tr.row.Window, GroupingSet: tr.row.GroupingSet, Start: tr.row.Start, End: tr.row.End, Dims: tr.row.Dims})
		if err != nil || !ok {
			t.Fatalf("Get(%q %+v) = %v, %v", tr.table, tr.row, ok, err)
		}
		if !sameRow(&got, &tr.row) {
			t.Fatalf("after upsert Get(%q) = %+v, want %+v", tr.table, got, tr.row)
		}
	}
	if _, ok, err := e.Get("wiki", Row{Window: 0, Dims: []string{"never written"}}); ok || err != nil {
		t.Fatalf("Get of a missing key = %v, %v; want false, nil", ok, err)
	}

	check := func(t *testing.T) {
		// Count per table against the oracle.
		for _, table := range tables {
			want := 0
			for _, tr := range oracle {
				if tr.table == table {
					want++
				}
			}
			got, err := e.Count(table)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("Count(%q) = %d, want %d", table, got, want)
			}
		}
		if n, err := e.Count("nope"); n != 0 || err != nil {
			t.Errorf("Count of an unknown table = %d, %v", n, err)
		}

		// Range scans against a brute-force filter of the oracle.
		bounds := append(slices.Clone(starts), math.MinInt64+1, -2, 2, 3_600_001, math.MaxInt64-1)
		partial := 0 // scans that returned some but not all rows of their grouping set
		for _, table := range tables {
			for _, w := range windows {
				for _, gs := range gss {
					all := checkScan(t, e, oracle, table, w, gs, math.MinInt64, math.MaxInt64)
					for _, from := range bounds {
						for _, to := range bounds {
							if n := checkScan(t, e, oracle, table, w, gs, from, to); n > 0 && n < all {
								partial++
							}
						}
					}
				}
			}
		}
		if partial < 1000 {
			t.Errorf("only %d range scans returned a proper, non-empty part of their grouping set; the test data do not exercise the bounds", partial)
		}
	}
	t.Run("live", check)

	// Everything was committed with pebble.Sync: it survives closing and reopening.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir)
	defer db.Close()
	e = OpenEmbedded(db)
	t.Run("reopened", check)
}

// checkScan compares one Scan with the oracle rows of (table, w, gs) with from ≤ Start < to,
// sorted by the test's own tuple order.
// It returns the number of rows the scan returned.
func checkScan(t *testing.T, e *Embedded, oracle map[string]tableRow, table string, w int, gs uint16, from, to int64) int {
	t.Helper()
	var want []Row
	for _, tr := range oracle {
		if tr.table == table && tr.row.Window == w && tr.row.GroupingSet == gs && from <= tr.row.Start && tr.row.Start < to {
			want = append(want, tr.row)
		}
	}
	slices.SortFunc(want, func(a, b Row) int { return compareTuple(table, &a, table, &b) })
	var got []Row
	var kept []string // dimension strings kept across callbacks, checked after the scan
	err := e.Scan(table, w, gs, from, to, func(r *Row) error {
		got = append(got, cloneRow(r))
		kept = append(kept, r.Dims...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Scan(%q, %d, %d, %d, %d) returned %d rows, want %d", table, w, gs, from, to, len(got), len(want))
	}
	for i := range want {
		if !sameRow(&got[i], &want[i]) {
			t.Fatalf("Scan(%q, %d, %d, %d, %d) row %d = %+v, want %+v", table, w, gs, from, to, i, got[i], want[i])
		}
	}
	var wantKept []string
	for _, r := range want {
		wantKept = append(wantKept, r.Dims...)
	}
	if !slices.Equal(kept, wantKept) {
		t.Fatalf("dimension strings kept from the callback changed: %q, want %q", kept, wantKept)
	}
	return len(got)
}

func TestEmbeddedErrors(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	defer db.Close()
	e := OpenEmbedded(db)

	rows := []Row{{Window: 0, Start: 1, End: 2, Values: []float64{1}}, {Window: 256, Start: 1, End: 2}}
	if err := e.Write("t", rows); err == nil || !strings.Contains(err.Error(), "window index 256") {
		t.Fatalf("Write with window 256: error %v, want one naming the window index", err)
	}
	if n, _ := e.Count("t"); n != 0 {
		t.Fatalf("a rejected Write stored %d rows, want none", n)
	}
	if err := e.Scan("t", -1, 0, 0, 1, func(*Row) error { return nil }); err == nil {
		t.Fatal("Scan with window -1 did not fail")
	}
	if err := e.Write("t", nil); err != nil {
		t.Fatalf("Write of no rows: %v", err)
	}

	if err := e.Write("t", rows[:1]); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop here")
	calls := 0
	err := e.Scan("t", 0, 0, math.MinInt64, math.MaxInt64, func(*Row) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Scan with a failing callback: %d calls, error %v; want 1 call and the callback's error", calls, err)
	}
	calls = 0
	if err := e.Scan("t", 0, 0, 5, 5, func(*Row) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("empty range: %d calls, error %v", calls, err)
	}
	if err := e.Scan("t", 0, 0, 5, 0, func(*Row) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("inverted range: %d calls, error %v", calls, err)
	}

	// A corrupt value under a result key is reported, with the key.
	bad := AppendKey(nil, "t", &Row{Window: 0, Start: 3, End: 4})
	if err := db.Set(bad, []byte{0x01, 0x80}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	err = e.Scan("t", 0, 0, math.MinInt64, math.MaxInt64, func(*Row) error { return nil })
	if !errors.Is(err, ErrMalformedValue) {
		t.Fatalf("Scan over a corrupt value: error %v, want ErrMalformedValue", err)
	}
	if _, _, err := e.Get("t", Row{Window: 0, Start: 3, End: 4}); !errors.Is(err, ErrMalformedValue) {
		t.Fatalf("Get of a corrupt value: error %v, want ErrMalformedValue", err)
	}
}

// TestScanAllocs checks that a scan whose dimension values repeat allocates far less than once
// per row: rows and slices are reused, dimension strings are shared.
func TestScanAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items at random)")
	}
	db := openTestDB(t, t.TempDir())
	defer db.Close()
	e := OpenEmbedded(db)
	rows := benchRows(2000)
	if err := e.Write("wiki_edits", rows); err != nil {
		t.Fatal(err)
	}
	n := 0
	fn := func(r *Row) error { n++; return nil }
	allocs := testing.AllocsPerRun(5, func() {
		n = 0
		if err := e.Scan("wiki_edits", 0, 3, math.MinInt64, math.MaxInt64, fn); err != nil {
			t.Fatal(err)
		}
	})
	if n != len(rows) {
		t.Fatalf("scanned %d rows, want %d", n, len(rows))
	}
	if perRow := allocs / float64(n); perRow > 0.1 {
		t.Fatalf("Scan allocates %.0f times for %d rows (%.3f per row), want well under 0.1 per row", allocs, n, perRow)
	}
	t.Logf("Scan of %d rows: %.0f allocations", n, allocs)
}

// benchRows returns n rows of one grouping set: 24 hourly windows × channels × namespaces, so
// dimension values repeat as they do in real cubes.
func benchRows(n int) []Row {
	channels := []string{"#en.wikipedia", "#de.wikipedia", "#fr.wikipedia", "#ja.wikipedia", "#vi.wikipedia"}
	rows := make([]Row, n)
	for i := range rows {
		hour := int64(i % 24)
		start := 1442016000000 + hour*3_600_000
		rows[i] = Row{
			Window:      0,
			GroupingSet: 3,
			Start:       start,
			End:         start + 3_600_000,
			Dims:        []string{channels[(i/24)%len(channels)], fmt.Sprintf("ns%d", i/24/len(channels)), "false"},
			Values:      []float64{float64(i), float64(2 * i), math.NaN(), 1.5},
			Version:     uint64(i + 1),
		}
	}
	return rows
}

func BenchmarkEmbeddedWrite(b *testing.B) {
	db := openTestDB(b, b.TempDir())
	defer db.Close()
	e := OpenEmbedded(db)
	const batch = 1000
	rows := benchRows(batch)
	b.ReportAllocs()
	for b.Loop() {
		for i := range rows {
			rows[i].Version++ // each batch upserts the same keys with a new version
		}
		if err := e.Write("wiki_edits", rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkScan(b *testing.B) {
	db := openTestDB(b, b.TempDir())
	defer db.Close()
	e := OpenEmbedded(db)
	rows := benchRows(10000)
	if err := e.Write("wiki_edits", rows); err != nil {
		b.Fatal(err)
	}
	var sum float64
	fn := func(r *Row) error { sum += r.Values[0]; return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Scan("wiki_edits", 0, 3, math.MinInt64, math.MaxInt64, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

// TestEmbeddedConcurrent writes and scans from several goroutines at once (run with -race): each
// goroutine's table ends up with exactly its rows, at their last version.
func TestEmbeddedConcurrent(t *testing.T) {
	db := openTestDB(t, t.TempDir())
	defer db.Close()
	e := OpenEmbedded(db)
	const workers, rounds = 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			table := fmt.Sprintf("t%d", g)
			rows := benchRows(100)
			for round := range rounds {
				for i := range rows {
					rows[i].Version = uint64(round + 1)
				}
				if err := e.Write(table, rows); err != nil {
					errs <- err
					return
				}
				n := 0
				err := e.Scan(table, 0, 3, math.MinInt64, math.MaxInt64, func(r *Row) error {
					if r.Version != uint64(round+1) {
						return fmt.Errorf("table %s round %d: row %q has version %d", table, round, r.Dims, r.Version)
					}
					n++
					return nil
				})
				if err == nil && n != len(rows) {
					err = fmt.Errorf("table %s round %d: scanned %d rows, want %d", table, round, n, len(rows))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDeleteBefore checks that only the rows of the given (table, window, grouping set) with an
// earlier window_start go, against a brute-force filter of what was written.
func TestDeleteBefore(t *testing.T) {
	db, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e := OpenEmbedded(db)
	var rows []Row
	for w := 0; w < 2; w++ {
		for gs := uint16(0); gs < 2; gs++ {
			for s := int64(-3); s < 5; s++ {
				rows = append(rows, Row{Window: w, GroupingSet: gs, Start: s * 1000, End: s*1000 + 1000, Dims: []string{"x"}, Values: []float64{1}})
			}
		}
	}
	if err := e.Write("t", rows); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteBefore("t", 1, 0, 2000); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		_, ok, err := e.Get("t", r)
		if err != nil {
			t.Fatal(err)
		}
		gone := r.Window == 1 && r.GroupingSet == 0 && r.Start < 2000
		if ok == gone {
			t.Errorf("row window %d gs %d start %d: present=%v, want %v", r.Window, r.GroupingSet, r.Start, ok, !gone)
		}
	}
}

// TestIngestUpserts mixes batch writes and ingested writes of overlapping keys (and duplicates
// inside one ingested write, and large writes whose short runs go through a batch) and checks
// every stored row against last-write-wins over the written sequence, and that only the long
// runs of a write became sstables.
func TestIngestUpserts(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDir(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e := OpenEmbedded(db)
	if err := e.EnableIngest(filepath.Join(dir, "ingest")); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	want := map[string]Row{}
	mk := func() Row {
		return Row{Window: r.IntN(2), GroupingSet: uint16(r.IntN(3)), Start: int64(r.IntN(50)) * 60000,
			End: int64(r.IntN(3)), Dims: []string{fmt.Sprint("d", r.IntN(40))}, Values: []float64{r.Float64()}, Version: uint64(r.Int64())}
	}
	ingested := func() (n uint64) {
		for _, l := range db.Metrics().Levels {
			n += l.TablesIngested
		}
		return n
	}
	for round := 0; round < 8; round++ {
		n := 100
		if round%2 == 1 {
			n = IngestMinRows + 500 // ingested
		}
		var rows []Row
		for i := 0; i < n; i++ {
			row := mk()
			if round >= 6 && i%10 != 0 {
				// Skewed: one long run (window 1, grouping set 2); the other five prefixes
				// get about 90 rows each, too few for an sstable of their own.
				row.Window, row.GroupingSet = 1, 2
			}
			rows = append(rows, row)
			want[string(AppendKey(nil, "t", &row))] = row
		}
		// An empty memtable: an sstable overlapping it would be ingested at its next flush
		// and counted only then.
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		before := ingested()
		if err := e.Write("t", rows); err != nil {
			t.Fatal(err)
		}
		tables := 0 // one per (window, grouping set) run of ingestRunMin rows or more
		if n >= IngestMinRows {
			tables = 6
			if round >= 6 {
				tables = 1
			}
		}
		if got := ingested() - before; got != uint64(tables) {
			t.Fatalf("round %d: %d sstables ingested, want %d", round, got, tables)
		}
	}
	got := 0
	for w := 0; w < 2; w++ {
		for gs := uint16(0); gs < 3; gs++ {
			err := e.Scan("t", w, gs, math.MinInt64, math.MaxInt64, func(row *Row) error {
				got++
				exp, ok := want[string(AppendKey(nil, "t", row))]
				if !ok {
					return fmt.Errorf("unexpected row %+v", *row)
				}
				if row.Version != exp.Version || row.Values[0] != exp.Values[0] {
					return fmt.Errorf("row %v: version %d value %v, want version %d value %v", row.Dims, row.Version, row.Values[0], exp.Version, exp.Values[0])
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if got != len(want) {
		t.Fatalf("scanned %d rows, want %d", got, len(want))
	}
	left, _ := os.ReadDir(filepath.Join(dir, "ingest"))
	if len(left) != 0 {
		t.Fatalf("%d staged sstables left behind", len(left))
	}
}

// TestIngestSorted writes rows already in key order (the pipeline pre-sorts) through the
// ingest path and reads them back in the same order.
func TestIngestSorted(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenDir(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e := OpenEmbedded(db)
	if err := e.EnableIngest(filepath.Join(dir, "ingest")); err != nil {
		t.Fatal(err)
	}
	var rows []Row
	for i := 0; i < IngestMinRows+10; i++ {
		rows = append(rows, Row{Window: 0, GroupingSet: 1, Start: 0, End: 60000, Dims: []string{fmt.Sprintf("k%06d", i)}, Values: []float64{float64(i)}})
	}
	if err := e.Write("t", rows); err != nil {
		t.Fatal(err)
	}
	i := 0
	err = e.Scan("t", 0, 1, math.MinInt64, math.MaxInt64, func(r *Row) error {
		if r.Dims[0] != rows[i].Dims[0] || r.Values[0] != float64(i) {
			return fmt.Errorf("row %d: got %v %v", i, r.Dims, r.Values)
		}
		i++
		return nil
	})
	if err != nil || i != len(rows) {
		t.Fatalf("scan: %v, %d rows of %d", err, i, len(rows))
	}
}
