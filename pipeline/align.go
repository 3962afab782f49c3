package pipeline

import (
	"math"
	"time"

	"github.com/cubed-olap/cubed/aggregate"
	"github.com/cubed-olap/cubed/source"
)

// Watermark alignment (Flink's, and the seed design's source speed control): a partition whose
// event time runs ahead of the slowest active partition by more than max_drift is held back, so
// that a replay of a backlog spread unevenly over partitions keeps only about max_drift of
// windows open instead of everything between the slowest and the fastest partition.
//
// Decoded rows wait in per-partition queues and are released in event-time order, oldest head
// first, so partitions with a backlog advance together; a partition that has no waiting rows
// but is active bounds the release at its max event time + max_drift, and one that has not
// delivered yet holds every row (idle partitions do not count). A partition has its fetching
// paused (franz-go PauseFetchPartitions) until its queue drains when its oldest waiting row is
// beyond that bound (it runs ahead) or more than a batch (Options.BatchSize) of its rows wait.
// Rows left waiting only because a batch was full do not pause it: pausing drops what franz-go
// has already fetched and decompressed for the partition, to fetch it again on resume, and
// pausing at the first waiting row made a backlog replay fetch and decompress about twice what
// it consumed (BenchmarkKafkaToClickHouse: 1300 snappy batches
// decompressed and 120 pauses per run, against 790–830 and 24–28; cubed's CPU 5–20% lower in 3
// alternating runs). Waiting rows are not in the state, and the partition's checkpointed offset
// stays before them, so a restart reads them again.

// heldQueue is one partition's waiting rows; rows before head have been released.
type heldQueue struct {
	b    aggregate.Batch
	rec  []source.Record
	head int
}

func (q *heldQueue) len() int { return q.b.Len - q.head }

// aligned reports whether this cube aligns its partitions (Kafka sources with max_drift > 0).
func (c *cubeRun) aligned() bool {
	return c.kafka != nil && c.plan.Cube.EventTime.MaxDrift > 0
}

// waiting reports whether rows are held back.
func (c *cubeRun) waiting() bool {
	for _, q := range c.queues {
		if q.len() > 0 {
			return true
		}
	}
	return false
}

// heldRows is the number of rows waiting in the partitions' queues.
func (c *cubeRun) heldRows() int {
	n := 0
	for _, q := range c.queues {
		n += q.len()
	}
	return n
}

// alignBound returns the event time beyond which no waiting row may be released: max_drift
// past the max event time of the slowest active partition that has no waiting rows (such a
// partition may deliver older rows at any moment), or +∞ when there is none. An active
// partition that has not delivered at all yet holds every row (math.MinInt64) until it
// delivers or goes idle (partIdle: a fetch showing it has nothing to deliver, or
// idle_timeout): it may hold the oldest backlog of all. franz-go hands a capped poll's records
// out partition by partition (PollRecords), so without this the first partition of a fetch ran
// ahead of the others before they were even seen (TestWatermarkAlignment opened all 48 hours).
func (c *cubeRun) alignBound(now time.Time) int64 {
	bound := int64(math.MaxInt64)
	for p, ps := range c.parts {
		if q := c.queues[p]; q != nil && q.len() > 0 {
			continue
		}
		if c.partIdle(p, ps, now) {
			continue
		}
		if ps.maxTime == math.MinInt64 {
			return math.MinInt64
		}
		bound = min(bound, ps.maxTime)
	}
	if bound == math.MaxInt64 {
		return bound
	}
	return bound + c.plan.Cube.EventTime.MaxDrift.Milliseconds()
}

// nextQueue returns the partition whose waiting head row is the oldest and that row's event
// time, the oldest head time of the other partitions (math.MaxInt64 when none has waiting rows),
// or false when no row waits.
func (c *cubeRun) nextQueue() (best int32, bestT, next int64, ok bool) {
	bestT, next = math.MaxInt64, math.MaxInt64
	for p, q := range c.queues {
		if q.len() == 0 {
			continue
		}
		switch t := q.b.Times[q.head]; {
		case !ok || t < bestT:
			next = bestT
			best, bestT, ok = p, t, true
		case t < next:
			next = t
		}
	}
	return best, bestT, next, ok
}

// appendRows appends rows [i, j) of src to dst. Every row of a batch has as many dimensions,
// measures and ids as the others (the cube's), so src's arrays give the widths.
func appendRows(dst, src *aggregate.Batch, i, j int) {
	n := max(src.Len, 1)
	nd, nv, nf := len(src.Dims)/n, len(src.Values)/n, len(src.IDs)/n
	dst.Len += j - i
	dst.Times = append(dst.Times, src.Times[i:j]...)
	dst.Dims = append(dst.Dims, src.Dims[i*nd:j*nd]...)
	dst.Values = append(dst.Values, src.Values[i*nv:j*nv]...)
	dst.IDs = append(dst.IDs, src.IDs[i*nf:j*nf]...)
}

// stuck reports whether, with no new rows, no waiting row could be released now.
func (c *cubeRun) stuck() bool {
	if !c.aligned() || !c.waiting() {
		return false
	}
	_, t, _, _ := c.nextQueue()
	return t > c.alignBound(time.Now())
}

// align gates c.batch (the new rows, with c.rowRec): every row joins its partition's queue,
// then rows are released in event-time order (the oldest waiting head first, so the queued
// partitions advance together) while they stay within alignBound and the batch has room. It
// pauses the partitions that run ahead or hold more than a batch of waiting rows, and resumes
// the drained ones.
func (c *cubeRun) align() {
	now := time.Now()
	if c.queues == nil {
		c.queues = map[int32]*heldQueue{}
	}
	b := &c.batch
	for i := 0; i < b.Len; {
		// The rows of one partition come in runs (a poll's records, partition by partition).
		p := c.rowRec[i].Partition
		j := i + 1
		for j < b.Len && c.rowRec[j].Partition == p {
			j++
		}
		q := c.queues[p]
		if q == nil {
			q = &heldQueue{}
			c.queues[p] = q
		}
		appendRows(&q.b, b, i, j)
		q.rec = append(q.rec, c.rowRec[i:j]...)
		i = j
	}
	b.Reset()
	clear(c.rowRec)
	c.rowRec = c.rowRec[:0]
	bound := c.alignBound(now)
	for b.Len < c.s.opts.BatchSize {
		p, t, next, ok := c.nextQueue()
		if !ok || t > bound {
			break
		}
		// Release the head and, as a run, the rows after it that are also older than every
		// other queue's head (up to next) and within bound: what releasing the oldest head
		// row by row would release next.
		q := c.queues[p]
		i, limit := q.head, min(bound, next)
		j, end := i+1, min(q.b.Len, i+c.s.opts.BatchSize-b.Len)
		for j < end && q.b.Times[j] <= limit {
			j++
		}
		appendRows(b, &q.b, i, j)
		c.rowRec = append(c.rowRec, q.rec[i:j]...)
		q.head = j
		if q.len() == 0 {
			q.b.Reset()
			clear(q.rec)
			q.rec, q.head = q.rec[:0], 0
			bound = c.alignBound(now) // the drained partition now bounds the others
		}
	}
	if c.paused == nil {
		c.paused = map[int32]bool{}
	}
	var pause, resume []int32
	for p, q := range c.queues {
		ahead := q.len() > 0 && q.b.Times[q.head] > bound
		switch {
		case (ahead || q.len() > c.s.opts.BatchSize) && !c.paused[p]:
			c.paused[p] = true
			pause = append(pause, p)
		case q.len() == 0 && c.paused[p]:
			delete(c.paused, p)
			resume = append(resume, p)
		}
		if q.len() > 0 {
			if ps := c.parts[p]; ps != nil {
				ps.lastSeen = now // waiting, not idle
			}
		}
	}
	if len(pause) > 0 {
		c.kafka.Pause(pause...)
	}
	if len(resume) > 0 {
		c.kafka.Resume(resume...)
	}
}
