package sink

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// chInserter is one table's INSERT, reused from one INSERT to the next so that its column
// buffers are too: a clickhouse-go batch, whose Send, called again once the batch was sent,
// opens a new INSERT on a pooled connection and sends the batch's block, whose columns insert
// empties (Reset keeps their capacity) and fills anew. A fresh batch per INSERT grew every
// column from empty, a quarter at a time: in the profile of a Kafka to ClickHouse run that
// growing (ch-go ColStr.Append) was 7% of cubed's CPU, and more with bigger INSERTs.
//
// The batch lives under its own context (clickhouse-go keeps the context PrepareBatch was
// given for every later Send), cancelled when an attempt's context ends during a Send, which
// makes clickhouse-go close the connection; an inserter whose context was cancelled, or whose
// INSERT failed, is dropped, never reused. Values are appended to the columns themselves (the
// batch's Column refuses a batch once sent), from scratch slices that are reused too.
type chInserter struct {
	batch  driver.Batch
	cancel context.CancelFunc
	cols   []column.Interface
	strs   []string // a String column's values (the column copies them)
	u64    []uint64
	u16    []uint16
	i64    []int64
	f64    []float64
	nf64   []*float64
	order  []int32
}

// takeInserter returns an idle inserter of t, or a new one, whose INSERT PrepareBatch opens
// now on a connection it holds until Send.
func (c *ClickHouse) takeInserter(ctx context.Context, t *chTable) (*chInserter, error) {
	t.idleMu.Lock()
	if n := len(t.idle); n > 0 {
		in := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.idleMu.Unlock()
		return in, nil
	}
	t.idleMu.Unlock()
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	b, err := c.conn.PrepareBatch(bctx, t.insertSQL)
	stopped := stop()
	if err == nil && !stopped {
		b.Close()
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	cols := b.Columns()
	if len(cols) != len(t.cols) {
		b.Close()
		cancel()
		return nil, fmt.Errorf("INSERT INTO %s: ClickHouse expects %d columns, the table's layout has %d: %w", t.name, len(cols), len(t.cols), ErrClickHouseSchema)
	}
	return &chInserter{batch: b, cancel: cancel, cols: cols}, nil
}

// putInserter keeps in, whose last INSERT succeeded, for t's next one.
func (t *chTable) putInserter(in *chInserter) {
	t.idleMu.Lock()
	t.idle = append(t.idle, in)
	t.idleMu.Unlock()
}

// dropIdle drops t's idle inserters (the table is closed or replaced).
func (t *chTable) dropIdle() {
	t.idleMu.Lock()
	idle := t.idle
	t.idle = nil
	t.idleMu.Unlock()
	for _, in := range idle {
		dropInserter(in)
	}
}

// dropInserter ends in's INSERT if still open, without sending its rows, and its context.
func dropInserter(in *chInserter) {
	in.batch.Close()
	in.cancel()
}

// insert sends rows as one INSERT, column by column, in the order of the table's ORDER BY key
// (insertOrder), which spares the server its sort; dimension ids become their strings here, as
// each String column is filled. It fails with the first error of the columns or of the INSERT
// (the rows are then not written, or, as ClickHouse writes each block as a whole, all written:
// retrying writes them again, with the same versions). rows must have passed checkIDRows.
func (c *ClickHouse) insert(ctx context.Context, t *chTable, rows *IDRows) (err error) {
	in, err := c.takeInserter(ctx, t)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, in.cancel)
	defer func() {
		if stop() && err == nil {
			t.putInserter(in)
		} else {
			dropInserter(in)
		}
	}()
	for _, col := range in.cols {
		col.Reset()
	}
	order := t.insertOrder(rows, in.order)
	in.order = order
	recs := rows.Rows
	n := len(recs)
	for ci, col := range t.cols {
		var v any
		switch col.kind {
		case colStart, colEnd:
			in.i64 = fill(in.i64, n, 0)
			for i, o := range order {
				ms := recs[o].Start
				if col.kind == colEnd {
					ms = recs[o].End
				}
				in.i64[i] = ms / 1000
			}
			v = in.i64
		case colGranularity:
			in.strs = fill(in.strs, n, "")
			for i, o := range order {
				in.strs[i] = t.labels[recs[o].Window]
			}
			v = in.strs
		case colGroupingSet:
			in.u16 = fill(in.u16, n, 0)
			for i, o := range order {
				in.u16[i] = t.plan.GroupingSets[recs[o].Set].ID
			}
			v = in.u16
		case colDim:
			// "" where the row's grouping set rolls the dimension up. The rows come in runs of
			// one grouping set (insertOrder).
			in.strs = fill(in.strs, n, "")
			vals := rows.Dicts[col.index]
			set, j := -1, -1
			for i, o := range order {
				r := &recs[o]
				if int(r.Set) != set {
					set, j = int(r.Set), t.gsDimAt[r.Set][col.index]
				}
				if j >= 0 {
					in.strs[i] = vals[rows.IDs[int(r.IDs)+j]]
				}
			}
			v = in.strs
		case colUInt:
			in.u64 = fill(in.u64, n, 0)
			for i, o := range order {
				f := rows.Values[int(recs[o].Values)+col.index]
				if f != f || f < 0 {
					return fmt.Errorf("measure %s of row %d is %v, which UInt64 cannot hold: %w", col.name, o, f, ErrClickHouseSchema)
				}
				in.u64[i] = uint64(f)
			}
			v = in.u64
		case colFloat:
			in.f64 = fill(in.f64, n, 0)
			for i, o := range order {
				in.f64[i] = rows.Values[int(recs[o].Values)+col.index]
			}
			v = in.f64
		case colNullFloat:
			in.nf64 = fill(in.nf64, n, nil)
			for i, o := range order {
				if f := &rows.Values[int(recs[o].Values)+col.index]; *f == *f {
					in.nf64[i] = f
				}
			}
			v = in.nf64
		case colVersion:
			in.u64 = fill(in.u64, n, 0)
			for i, o := range order {
				in.u64[i] = recs[o].Version
			}
			v = in.u64
		}
		// The column itself, not the batch's Column(ci), which refuses a batch once sent.
		if _, err := in.cols[ci].Append(v); err != nil {
			return fmt.Errorf("column %s: %w", col.name, err)
		}
	}
	clear(in.nf64) // keeps no pointer into rows
	clear(in.strs)
	return in.batch.Send()
}

// fill returns s with length n, every element set to zero, reusing s's array when it is big
// enough.
func fill[S ~[]E, E any](s S, n int, zero E) S {
	if cap(s) < n {
		s = make(S, n)
	}
	s = s[:n]
	for i := range s {
		s[i] = zero
	}
	return s
}
