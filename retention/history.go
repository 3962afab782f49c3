package retention

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ReadHistory reads a history file of ids known before a stream starts and calls fn for each:
// one id per line, or id,date. The date is the id's first day, written 2006-01-02 (a day of the
// cube's calendar) or as an RFC 3339 time (whose day in loc counts); an id without a date is
// known from before every day (Before). Lines are CSV records (an id holding a comma or a quote is
// written quoted); blank lines are skipped; there is no header row. Errors name the line.
func ReadHistory(r io.Reader, loc *time.Location, fn func(id string, day Day) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return fmt.Errorf("reading history: %w", err)
		}
		if len(rec) > 2 {
			return fmt.Errorf("history line %d has %d fields; want id or id,date", line, len(rec))
		}
		id := strings.TrimSpace(rec[0])
		if id == "" {
			return fmt.Errorf("history line %d has an empty id", line)
		}
		day := Before
		if len(rec) == 2 {
			s := strings.TrimSpace(rec[1])
			if day, err = parseHistoryDate(s, loc); err != nil {
				return fmt.Errorf("history line %d: %v (a history file has no header row)", line, err)
			}
		}
		if err := fn(id, day); err != nil {
			return fmt.Errorf("history line %d: %w", line, err)
		}
	}
}

func parseHistoryDate(s string, loc *time.Location) (Day, error) {
	if d, err := ParseDay(s); err == nil {
		return d, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("date %q is neither YYYY-MM-DD nor an RFC 3339 time", s)
	}
	return DayOf(t.In(loc)), nil
}
