package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubed-olap/cubed/sink"
)

// chSink is one cube's ClickHouse sink: every row the cube emits is also written to its
// ClickHouse table, in batches (sink.ClickHouseBuffer: about one INSERT per second), and the
// query API reads that table when the cube has no embedded store (sink.embedded false). While
// ClickHouse is down the cube's loop blocks in the write, so a Kafka cube stops polling
// (backpressure) and the buffer holds what was emitted before (about one flush interval); the
// failure shows as the cube's sink_error in /api/v1/status.
type chSink struct {
	ch    *sink.ClickHouse
	table string
	buf   *sink.ClickHouseBuffer
}

// openClickHouse sets up the cube's ClickHouse sink when the model has one. It does no I/O:
// the table is created or checked by the first write.
func (c *cubeRun) openClickHouse() error {
	cfg := c.plan.Cube.Sink.ClickHouse
	if cfg == nil {
		return nil
	}
	ch, err := sink.OpenClickHouse(cfg, sink.WithClickHouseRetryHook(func(err error, attempt int, wait time.Duration) {
		c.s.metrics.sinkErrors.WithLabelValues(c.name).Inc()
		c.s.log.Error("writing results to ClickHouse", "cube", c.name, "attempt", attempt, "retry_in", wait, "err", err)
		c.mu.Lock()
		c.st.sinkErr = err.Error()
		c.mu.Unlock()
	}))
	if err != nil {
		return fmt.Errorf("cube %q: %w", c.name, err)
	}
	table, err := ch.Define(c.plan)
	if err != nil {
		ch.Close()
		return err
	}
	c.ch = &chSink{ch: ch, table: table, buf: ch.NewBuffer(table)}
	buf := c.ch.buf
	if err := c.s.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cubed_sink_buffered_rows", Help: "Result rows emitted but not yet stored in ClickHouse.",
		ConstLabels: prometheus.Labels{"cube": c.name},
	}, func() float64 { return float64(buf.Len()) })); err != nil {
		c.s.log.Warn("registering cubed_sink_buffered_rows", "cube", c.name, "err", err)
	}
	return nil
}

// chBuffered is the number of rows the ClickHouse buffer holds (0 without a ClickHouse sink);
// any goroutine may call it.
func (c *cubeRun) chBuffered() int {
	if c.ch == nil {
		return 0
	}
	return c.ch.buf.Len()
}

// toClickHouse hands the pending rows to the ClickHouse buffer, which writes them in the
// background when it is due, or now with force (the end of a file's input: it then blocks until
// they are written or ctx ends). A checkpoint is committed only once the rows emitted before it
// are stored (maybeCheckpoint).
func (c *cubeRun) toClickHouse(ctx context.Context, now time.Time, force bool) error {
	if c.ch == nil {
		return nil
	}
	c.orderPending()
	n, before := len(c.pending.Rows), c.ch.buf.Len()
	var err error
	if c.plan.Cube.Sink.NoEmbedded {
		// No embedded store to write them to next: the buffer may take the rows' arrays
		// rather than copy them, and leaves pending empty.
		err = c.ch.buf.Move(ctx, &c.pending, now)
	} else {
		err = c.ch.buf.Add(ctx, &c.pending, now)
	}
	if err == nil && force {
		err = c.ch.buf.Flush(ctx)
	}
	if err != nil {
		c.s.log.Error("writing results to ClickHouse", "cube", c.name, "err", err)
		c.mu.Lock()
		c.st.sinkErr = err.Error()
		c.mu.Unlock()
		return fmt.Errorf("cube %q: %w", c.name, err)
	}
	if c.ch.buf.Len() < before+n { // a write went through
		c.mu.Lock()
		c.st.sinkErr = ""
		c.mu.Unlock()
	}
	return nil
}

// scanClickHouse reads the cube's results from ClickHouse (see web.Backend.Scan).
func (c *cubeRun) scanClickHouse(window int, gs uint16, from, to int64, fn func(r *sink.Row) error) error {
	return c.ch.ch.Scan(context.Background(), c.ch.table, window, gs, from, to, fn)
}

// closeClickHouse writes what is still buffered (for at most closeFlushTimeout, as the service
// stops; rows not written by then are logged as lost to ClickHouse) and closes the connections.
func (c *cubeRun) closeClickHouse() {
	if c.ch == nil {
		return
	}
	if n := c.ch.buf.Len(); n > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), closeFlushTimeout)
		if err := c.ch.buf.Flush(ctx); err != nil {
			c.s.log.Error("writing the last results to ClickHouse at stop", "cube", c.name, "rows", n, "err", err)
		}
		cancel()
	}
	c.ch.ch.Close()
}

// closeFlushTimeout bounds the last ClickHouse write when the service stops.
const closeFlushTimeout = 10 * time.Second
