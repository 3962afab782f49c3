package pipeline

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/retention"
)

// HistoryImport is the outcome of ImportHistory.
type HistoryImport struct {
	Cube    string `json:"cube"`    // the cube name
	Measure string `json:"measure"` // the new_users or retention measure named
	Field   string `json:"field"`   // the id field it reads (shared by every measure on that field)
	IDs     int    `json:"ids"`     // ids read
	Dated   int    `json:"dated"`   // of which with a first day
	// Changed counts the ids whose first day the import set or moved earlier (the others were
	// already known from that day or before, e.g. repeated lines).
	Changed    int    `json:"changed"`
	Checkpoint uint64 `json:"checkpoint"` // the checkpoint that holds them
}

// ImportHistory loads a history of ids known before the stream starts (see
// retention.ReadHistory: one id per line, or id,date) into the first-seen state of the field
// that measure reads, so that a cube started on a live stream does not count every user as new;
// then it writes a checkpoint. Dates are days of the cube's time zone; an id without a date is
// known from before every day.
//
// The cube must not have aggregated any event yet in this data dir (its results would not
// include the history): import first, then run or replay. Importing several files one after the
// other is fine; an id keeps its earliest day. It fails naming the valid choices for an unknown
// cube or a measure that is not new_users or retention, and naming the line of a bad history line.
func (s *Service) ImportHistory(cubeName, measure string, r io.Reader) (HistoryImport, error) {
	res := HistoryImport{Cube: cubeName, Measure: measure}
	c := s.byName[cubeName]
	if c == nil {
		names := make([]string, len(s.cubes))
		for i, c := range s.cubes {
			names[i] = c.name
		}
		return res, fmt.Errorf("importing history: unknown cube %q (cubes: %s)", cubeName, strings.Join(names, ", "))
	}
	field := -1
	var valid []string
	for _, m := range c.plan.Measures {
		if m.Type != cube.NewUsers && m.Type != cube.Retention || m.Part != cube.RetentionRate {
			continue
		}
		valid = append(valid, m.Name)
		if m.Name == measure {
			field, res.Field = m.DistinctField, m.Field
		}
	}
	if field < 0 {
		if len(valid) == 0 {
			return res, fmt.Errorf("importing history: cube %q has no new_users or retention measure", cubeName)
		}
		return res, fmt.Errorf("importing history: cube %q has no new_users or retention measure %q (valid: %s)", cubeName, measure, strings.Join(valid, ", "))
	}
	if c.agg.MaxEventTime() != math.MinInt64 || c.ck.fileLine > 0 || c.ck.done || len(c.ck.offsets) > 0 {
		return res, fmt.Errorf("importing history: cube %q has already aggregated events in %s (checkpoint %d); history can only be imported before the stream starts (use a new --data-dir)",
			cubeName, s.opts.DataDir, c.ck.seq)
	}
	ns := c.idNS[field]
	err := retention.ReadHistory(r, c.plan.Cube.Timezone, func(id string, day retention.Day) error {
		res.IDs++
		if day != retention.Before {
			res.Dated++
		}
		changed, err := c.agg.ImportFirstSeen(field, ns.ID([]byte(id)), day)
		if changed {
			res.Changed++
		}
		return err
	})
	if err != nil {
		return res, fmt.Errorf("importing history into cube %q: %w", cubeName, err)
	}
	if err := c.maybeCheckpoint(time.Now(), true, 0, false); err != nil {
		return res, err
	}
	res.Checkpoint = c.ck.seq
	s.log.Info("imported history", "cube", cubeName, "measure", measure, "ids", res.IDs, "changed", res.Changed, "checkpoint", res.Checkpoint)
	return res, nil
}
