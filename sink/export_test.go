package sink

import (
	"context"
	"testing"
)

// WaitWrite waits for the write b has in flight, if any, and returns its error: the buffer's
// tests observe each write's effect.
func WaitWrite(b *ClickHouseBuffer) error { return b.collect(context.Background(), true) }

// IDRowsEncoder converts rows of one table to the compact form a ClickHouseBuffer takes, with
// one dictionary per dimension across calls (as the pipeline's are).
type IDRowsEncoder struct {
	c     *ClickHouse
	table string
	dicts rowDicts
}

// NewIDRowsEncoder returns an encoder for table (defined in c).
func NewIDRowsEncoder(c *ClickHouse, table string) *IDRowsEncoder {
	return &IDRowsEncoder{c: c, table: table}
}

// Encode converts rows; it fails t on rows that do not fit the table.
func (e *IDRowsEncoder) Encode(t testing.TB, rows []Row) *IDRows {
	t.Helper()
	tbl, err := e.c.table(e.table)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tbl.idRowsOf(rows, &e.dicts)
	if err != nil {
		t.Fatal(err)
	}
	return &b
}
