package web

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/sink"
)

// benchBackend holds n rows of the edits cube's hourly [channel] grouping set.
func benchBackend(n int) *memBackend {
	p := buildPlan(editsCube())
	rows := make([]sink.Row, 0, n)
	start := time.Date(2015, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; len(rows) < n; i++ {
		s := start.Add(time.Duration(i) * time.Hour).UnixMilli()
		for _, ch := range chans {
			if len(rows) == n {
				break
			}
			rows = append(rows, sink.Row{Window: winHour, GroupingSet: gsChannel, Start: s, End: s + 3600e3,
				Dims: []string{ch}, Values: []float64{float64(i), 2.5, float64(i / 2), -1}})
		}
	}
	slices.SortFunc(rows, func(a, b sink.Row) int { return keyLess(&a, &b) })
	return &memBackend{plans: []*cube.Plan{p}, rows: map[string][]sink.Row{"edits": rows}}
}

// BenchmarkRun measures a filtered, ordered query over 100,000 stored rows; allocations are
// per query result row (the []any and its boxed values), not per scanned row.
func BenchmarkRun(b *testing.B) {
	be := benchBackend(100_000)
	q := Query{Cube: "edits", Measures: []string{"pv", "uv"}, Dimensions: []string{"channel"}, Granularity: "hour",
		Filters: []Filter{{Dimension: "channel", Op: OpStartsWith, Values: []string{"#e"}}}, Order: [][]string{{"pv", "desc"}}, Limit: 100}
	b.ReportAllocs()
	b.SetBytes(100_000) // "bytes" = rows scanned, so MB/s reads as million rows scanned per second
	for b.Loop() {
		res, err := Run(context.Background(), be, q)
		if err != nil || len(res.Rows) != 100 {
			b.Fatalf("%v %d", err, len(res.Rows))
		}
	}
}

// BenchmarkEncodeJSON measures encoding a 10,000-row result.
func BenchmarkEncodeJSON(b *testing.B) {
	res, err := Run(context.Background(), benchBackend(10_000), Query{Cube: "edits", Measures: []string{"pv", "added", "uv"}, Dimensions: []string{"channel"}, Granularity: "hour"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(res.Rows)))
	for b.Loop() {
		if err := EncodeJSON(io.Discard, res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeCSV measures encoding a 10,000-row result as CSV.
func BenchmarkEncodeCSV(b *testing.B) {
	res, err := Run(context.Background(), benchBackend(10_000), Query{Cube: "edits", Measures: []string{"pv", "added", "uv"}, Dimensions: []string{"channel"}, Granularity: "hour"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(res.Rows)))
	for b.Loop() {
		if err := WriteResult(io.Discard, FormatCSV, res); err != nil {
			b.Fatal(err)
		}
	}
}
