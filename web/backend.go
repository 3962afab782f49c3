// Package web is cubed's HTTP server: the query API (JSON, CSV and Arrow IPC stream answers), the
// cube, plan, status and lint endpoints, Prometheus metrics, the health checks and the embedded
// web UI (built from web/ui, see ui.go).
//
// Every JSON answer uses one envelope, in the style of Prometheus' web/api/v1:
//
//	{"status":"success","data":...}
//	{"status":"error","errorType":"bad_data"|"not_found"|"internal"|"unavailable","error":"..."}
//
// Queries are answered from pre-aggregated rows only: a query is routed to the grouping set whose
// dimensions are exactly its dimensions plus its filtered dimensions (Kylin's exact cuboid match),
// and its rows are a range scan of that grouping set's results over the requested window starts.
package web

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/sink"
)

// Backend is what the running pipeline offers to the HTTP layer. Implementations must be safe for
// concurrent use: every HTTP request calls it from its own goroutine.
type Backend interface {
	// Plans returns every cube's compiled plan, in model order. The slice and the plans are read
	// only by the caller.
	Plans() []*cube.Plan
	// Scan calls fn for every stored row of the named cube's window (an index into
	// Plan.Windows) and grouping set (a cuboid id) with from ≤ window_start < to (Unix
	// milliseconds), in primary-key order: window_start, window_end, then the dimension values
	// in the grouping set's order, byte-wise. The Row passed to fn, its Dims and its Values may be
	// reused once fn returns. An error from fn stops the scan and is returned as is.
	Scan(cube string, window int, gs uint16, from, to int64, fn func(r *sink.Row) error) error
	// Freshness says how current the named cube's results are.
	Freshness(cube string) Freshness
	// Status is the pipeline status, marshalable with encoding/json.
	Status() any
	// Ready reports whether the pipeline has restored its state and serves current results.
	Ready() bool
	// ModelSource returns the model file's name and its bytes as loaded.
	ModelSource() (file string, yaml []byte)
}

// Freshness says how current a cube's results are. A zero time means "not yet" and is encoded
// as JSON null.
type Freshness struct {
	// Watermark is the cube's event-time watermark: every window ending at or before it has
	// seen all its on-time events.
	Watermark time.Time `json:"watermark"`
	// LastEmit is the processing time of the cube's last emission to the sink.
	LastEmit time.Time `json:"last_emit"`
}

// freshnessJSON is Freshness as encoded: RFC 3339 timestamps, or null for a zero time.
type freshnessJSON struct {
	Watermark *time.Time `json:"watermark"`
	LastEmit  *time.Time `json:"last_emit"`
}

// MarshalJSON encodes f as {"watermark": RFC 3339 | null, "last_emit": RFC 3339 | null}.
func (f Freshness) MarshalJSON() ([]byte, error) {
	var j freshnessJSON
	if !f.Watermark.IsZero() {
		j.Watermark = &f.Watermark
	}
	if !f.LastEmit.IsZero() {
		j.LastEmit = &f.LastEmit
	}
	return json.Marshal(j)
}

// UnmarshalJSON is the inverse of MarshalJSON: null or an absent key gives a zero time.
func (f *Freshness) UnmarshalJSON(data []byte) error {
	var j freshnessJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("decoding freshness %q: %w", data, err)
	}
	*f = Freshness{}
	if j.Watermark != nil {
		f.Watermark = *j.Watermark
	}
	if j.LastEmit != nil {
		f.LastEmit = *j.LastEmit
	}
	return nil
}
