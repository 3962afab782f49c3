package pipeline

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/source"
)

// Redelivery. franz-go hands over a partition's records in offset order, but a running consumer
// can be handed records it has already had: when the group takes a partition away and gives it
// back (a member fenced with UNKNOWN_MEMBER_ID, a coordinator that lost the group, a broker
// restart), the partition starts over from an older offset; and after an OFFSET_OUT_OF_RANGE the
// client resets to the log start. Those records are already folded into the state (or waiting in
// an alignment queue), so counting them again would double count. Each cube therefore keeps, per
// partition, the offset of the last record it received; records at or below it are dropped, and
// a partition that is assigned again resumes right after it instead of at the group's commit.
// After a restart that offset is the last checkpoint's (resumeOffsets, restore).

// lastReceived returns the offset of the last record received from partition p in this process,
// or else the last one folded into the restored checkpoint; ok is false when there is neither.
// The caller holds c.mu.
func (c *cubeRun) lastReceived(p int32) (int64, bool) {
	if off, ok := c.received[p]; ok {
		return off, true
	}
	if next, ok := c.ck.offsets[p]; ok {
		return next - 1, true
	}
	return 0, false
}

// dropRedelivered removes from recs, in place, every record at or below its partition's last
// received offset, advances those offsets, and returns the records left.
func (c *cubeRun) dropRedelivered(recs []source.Record) []source.Record {
	if len(recs) == 0 {
		return recs
	}
	c.mu.Lock()
	if c.received == nil {
		c.received = map[int32]int64{}
	}
	out := recs[:0]
	dropped := 0
	for _, r := range recs {
		if last, ok := c.lastReceived(r.Partition); ok && r.Offset <= last {
			dropped++
			r.Release()
			continue
		}
		c.received[r.Partition] = r.Offset
		out = append(out, r)
	}
	c.mu.Unlock()
	if dropped > 0 {
		c.s.metrics.redelivered.WithLabelValues(c.name).Add(float64(dropped))
		c.s.log.Info("dropped records delivered again (already counted)", "cube", c.name, "records", dropped)
	}
	return out
}

// resumeOffsets is the Kafka source's AdjustOffsets (a kgo.AdjustFetchOffsetsFn): a partition resumes right
// after the last record received in this process, or, on the first assignment after a restart,
// right after the last record folded into the restored checkpoint, whatever the group committed.
func (c *cubeRun) resumeOffsets(_ context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range offs {
		for p := range parts {
			if last, ok := c.lastReceived(p); ok {
				parts[p] = kgo.NewOffset().At(last + 1).WithEpoch(-1)
			}
		}
		offs[topic] = parts
	}
	return offs, nil
}
