package pipeline

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/sink"
)

// TestEmissionInChunks replays generated events whose windows all close at the end of the file
// (about 20,000 result rows in one emission) twice: as one write, and with maxPendingRows at 500
// so that the emission is written in chunks while it runs. Both stores must hold the same rows,
// and the chunked run must never have held more than 500 pending rows.
func TestEmissionInChunks(t *testing.T) {
	dir := t.TempDir()
	events := writeGeneratedEvents(t, dir, 20_000, 2_000, time.Hour)
	model := writeModel(t, dir, "version: 1\ncubes:\n  - name: peer\n"+peerCube(events, "", "[{granularity: minute}, {granularity: hour, step: 10m}]"))
	run := func(limit int) (map[string][]float64, int) {
		t.Helper()
		saved := maxPendingRows
		maxPendingRows = limit
		defer func() { maxPendingRows = saved }()
		svc := replayed(t, model, filepath.Join(dir, fmt.Sprint("data", limit)))
		rows := map[string][]float64{}
		p := svc.plans[0]
		for w := range p.Windows {
			for _, gs := range p.GroupingSets {
				if err := svc.Scan("peer", w, gs.ID, math.MinInt64, math.MaxInt64, func(r *sink.Row) error {
					rows[fmt.Sprintf("%d|%d|%d|%d|%q", w, gs.ID, r.Start, r.End, r.Dims)] = slices.Clone(r.Values)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		return rows, svc.cubes[0].peakPending
	}
	whole, peakWhole := run(math.MaxInt)
	chunked, peakChunked := run(500)
	if peakWhole <= 500 {
		t.Fatalf("the unchunked run wrote at most %d rows at once: the test does not exercise chunks", peakWhole)
	}
	if peakChunked > 500 {
		t.Errorf("the chunked run held %d pending rows, want at most 500", peakChunked)
	}
	if len(chunked) != len(whole) {
		t.Errorf("chunked run stored %d rows, the unchunked %d", len(chunked), len(whole))
	}
	bad := 0
	for k, v := range whole {
		if got, ok := chunked[k]; !ok || !slices.Equal(got, v) {
			if bad++; bad <= 5 {
				t.Errorf("row %s: chunked %v, unchunked %v", k, got, v)
			}
		}
	}
	t.Logf("%d rows; unchunked wrote up to %d at once", len(whole), peakWhole)
}
