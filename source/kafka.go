package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaConfig configures a Kafka source.
type KafkaConfig struct {
	// Brokers are the seed brokers ("host:port"); at least one.
	Brokers []string
	// Topic is the one topic to consume, all of its partitions.
	Topic string
	// Group is the consumer group; required.
	Group string
	// Start is where a partition without a committed offset starts: "earliest" (the default
	// when empty) or "latest".
	Start string
	// Logger receives franz-go's log lines (at the levels the logger enables) and fetch
	// errors; nil discards them.
	Logger *slog.Logger
	// AdjustOffsets, when not nil, may move where partitions start after a group assignment,
	// as a kgo.AdjustFetchOffsetsFn (which the source sets itself: Opts must not).
	AdjustOffsets func(context.Context, map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error)
	// Opts are extra franz-go options appended after the source's own (tests use them to
	// shorten timeouts). Nil is fine.
	Opts []kgo.Opt
}

// Kafka consumes one topic through a consumer group with franz-go (github.com/twmb/franz-go).
//
// Offsets are committed only as marked: Poll returns records, the caller marks the ones whose
// effects are durable with MarkProcessed (at a checkpoint), and Commit, franz-go's periodic
// autocommit (kgo.AutoCommitMarks) and the commit on partition revocation commit the marks, so
// a restart re-reads everything after the last mark (at-least-once). Poll and MarkProcessed are
// meant for one goroutine; Assigned, Lag, Pause, Resume and Commit are safe from any goroutine.
type Kafka struct {
	cl     *kgo.Client
	topic  string
	adjust func(context.Context, map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error)
	logger *slog.Logger

	mu       sync.Mutex // guards the fields below
	assigned map[int32]bool
	epoch    map[int32]int32 // leader epoch of the latest polled record per partition
	next     map[int32]int64 // offset after the latest polled record per partition
	start    map[int32]int64 // offset consumption starts at, learned at assignment (adjustOffsets)
	groupCl  *kgo.Client     // the client, as the group's callbacks get it
	hwm      map[int32]int64 // high watermark per partition: of the latest fetch, or listed at assignment
	marked   map[int32]int64 // highest offset marked per partition

	recs []Record // reused by Poll
}

// NewKafka creates the consumer and joins the group in the background; records arrive through
// Poll. It fails on a missing broker, topic or group, an unknown Start, or a client that
// cannot be created.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("creating Kafka source: no brokers")
	}
	if cfg.Topic == "" {
		return nil, errors.New("creating Kafka source: no topic")
	}
	if cfg.Group == "" {
		return nil, fmt.Errorf("creating Kafka source for topic %q: no consumer group", cfg.Topic)
	}
	var reset kgo.Offset
	switch cfg.Start {
	case "", "earliest":
		reset = kgo.NewOffset().AtStart()
	case "latest":
		reset = kgo.NewOffset().AtEnd()
	default:
		return nil, fmt.Errorf("creating Kafka source for topic %q: unknown start %q (want earliest or latest)", cfg.Topic, cfg.Start)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &Kafka{
		topic:    cfg.Topic,
		adjust:   cfg.AdjustOffsets,
		logger:   logger,
		assigned: map[int32]bool{},
		epoch:    map[int32]int32{},
		next:     map[int32]int64{},
		start:    map[int32]int64{},
		hwm:      map[int32]int64{},
		marked:   map[int32]int64{},
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeResetOffset(reset),
		kgo.AutoCommitMarks(),
		kgo.OnPartitionsAssigned(k.onAssigned),
		kgo.OnPartitionsRevoked(k.onRevoked),
		kgo.OnPartitionsLost(k.onLost),
		kgo.AdjustFetchOffsetsFn(k.adjustOffsets),
		kgo.WithLogger(slogAdapter{logger}),
		kgo.WithPools(fetchPools),
	}
	opts = append(opts, cfg.Opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Kafka client for topic %q group %q: %w", cfg.Topic, cfg.Group, err)
	}
	k.cl = cl
	return k, nil
}

func (k *Kafka) onAssigned(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.groupCl = cl // for adjustOffsets, which franz-go calls next, possibly before NewKafka returned
	for _, p := range parts[k.topic] {
		k.assigned[p] = true
	}
}

// startOffsetsTimeout bounds the offset listing of adjustOffsets, which the start of
// consumption after a group assignment waits for.
const startOffsetsTimeout = 5 * time.Second

// adjustOffsets is the group's kgo.AdjustFetchOffsetsFn: it applies KafkaConfig.AdjustOffsets,
// then learns, for Lag, each assigned partition's high watermark (listed with kadm; a fetch
// later replaces it) and where its consumption starts: an exact offset (a committed one, or
// the caller's) as it is, else the start or the end of the partition (where franz-go resets
// one without a commit, KafkaConfig.Start), listed too. So a partition that starts at its end,
// whose fetches return no record for franz-go to hand over, still shows a lag of 0 at once. A
// partition whose offsets cannot be learned is left out (Lag then waits for a fetch and
// counts every record below the high watermark until its first record is polled); a failed
// listing is logged, not returned.
func (k *Kafka) adjustOffsets(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	if k.adjust != nil {
		var err error
		if offs, err = k.adjust(ctx, offs); err != nil {
			return nil, err
		}
	}
	parts := offs[k.topic]
	k.mu.Lock()
	cl := k.groupCl
	k.mu.Unlock()
	if len(parts) == 0 || cl == nil {
		return offs, nil
	}
	lctx, cancel := context.WithTimeout(ctx, startOffsetsTimeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(lctx, k.topic)
	if err != nil {
		k.logger.Warn("listing the high watermarks of newly assigned partitions", "topic", k.topic, "err", err)
		return offs, nil
	}
	var starts kadm.ListedOffsets
	for _, o := range parts {
		if o.EpochOffset().Offset == -2 {
			if starts, err = adm.ListStartOffsets(lctx, k.topic); err != nil {
				k.logger.Warn("listing the log start offsets of newly assigned partitions", "topic", k.topic, "err", err)
			}
			break
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for p, o := range parts {
		end, ok := ends.Lookup(k.topic, p)
		if !ok || end.Err != nil || end.Offset < 0 || !k.assigned[p] {
			continue // unknown, or revoked meanwhile
		}
		if _, fetched := k.hwm[p]; !fetched {
			k.hwm[p] = end.Offset
		}
		switch at := o.EpochOffset().Offset; {
		case at >= 0:
			k.start[p] = at
		case at == -1:
			k.start[p] = end.Offset
		case at == -2:
			if st, ok := starts.Lookup(k.topic, p); ok && st.Err == nil && st.Offset >= 0 {
				k.start[p] = st.Offset
			}
		}
	}
	return offs, nil
}

// onRevoked commits the marks (as franz-go's default revoke does with autocommit) and forgets
// the revoked partitions.
func (k *Kafka) onRevoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		k.logger.Warn("committing marked offsets on partition revocation", "topic", k.topic, "err", err)
	}
	k.forget(parts[k.topic])
}

func (k *Kafka) onLost(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	k.forget(parts[k.topic])
}

func (k *Kafka) forget(parts []int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range parts {
		delete(k.assigned, p)
		delete(k.epoch, p)
		delete(k.next, p)
		delete(k.start, p)
		delete(k.hwm, p)
		delete(k.marked, p)
	}
}

// Poll waits for records and returns those fetched, from all assigned partitions, each
// partition's in offset order. The returned slice is reused by the next Poll, but each record's
// Value stays valid, whatever the caller polls next, until the record's Release, which gives
// its memory back for later fetches.
//
// It returns ctx's error when ctx ends and ErrClosed after Close. Other fetch errors (a
// partition that moved, a broker that went away) are retried by franz-go; they are logged and
// Poll returns what it has.
func (k *Kafka) Poll(ctx context.Context) ([]Record, error) {
	return k.PollUpTo(ctx, 0)
}

// PollUpTo is Poll returning at most max records (all that were fetched when max <= 0); the
// rest stay with the client, already fetched, for the next poll (franz-go's PollRecords). A
// consumer that takes only what it can process next thus holds no more: the rest of a fetch
// waits in franz-go's buffer, and no further fetch is made until that buffer is drained.
func (k *Kafka) PollUpTo(ctx context.Context, max int) ([]Record, error) {
	fetches := k.cl.PollRecords(ctx, max)
	k.recs = k.recs[:0]
	var fatal error
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = ErrClosed
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			if fatal == nil {
				fatal = err
			}
		default:
			k.logger.Warn("fetching from Kafka", "topic", topic, "partition", p, "err", err)
		}
	})
	k.mu.Lock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic != k.topic {
			return
		}
		if fp.Err == nil { // a partition fetched without records gives its watermark too
			k.hwm[fp.Partition] = fp.HighWatermark
		}
		if n := len(fp.Records); n > 0 {
			last := fp.Records[n-1]
			k.next[fp.Partition] = last.Offset + 1
			k.epoch[fp.Partition] = last.LeaderEpoch
		}
		for _, r := range fp.Records {
			k.recs = append(k.recs, Record{Value: r.Value, Partition: r.Partition, Offset: r.Offset, kafka: r})
		}
	})
	k.mu.Unlock()
	if len(k.recs) == 0 && fatal != nil {
		return nil, fatal
	}
	return k.recs, nil
}

// fetchPools is every Kafka source's kgo.WithPools: decompressed record batches and record
// slices are reused once every record of a batch was released (Record.Release), rather than
// allocated per fetch. A backlog of 2M snappy-compressed JSON events allocated 1.2 GB of the
// 2.2 GB cubed allocated in all (BenchmarkKafkaToClickHouse, pprof allocs); with the pools,
// 1.5 GB, and cubed's CPU seconds fell by about 8% (median of 4 runs each, alternating). What
// franz-go drops for a paused partition (watermark alignment pauses partitions) is not recycled
// and is left to the garbage collector.
var fetchPools = &kafkaPools{}

// kafkaPools implements kgo.PoolDecompressBytes and kgo.PoolRecords with sync.Pools. Batches
// differ a little in size, so a new slice gets an eighth more than the batch needs: pooled at
// exactly one batch's size, half of them were too small for the next batch (and the pooled
// slice was dropped for a new one).
type kafkaPools struct {
	bytes, recs sync.Pool
}

// GetDecompressBytes returns a pooled slice to decompress compressed into (franz-go uses its
// capacity). For snappy, whose header gives the decoded length, a pooled slice that is too
// small is dropped for a new one with room to spare; for other codecs the codec grows it.
func (p *kafkaPools) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	var b []byte
	if pb, ok := p.bytes.Get().(*[]byte); ok {
		b = *pb
	}
	if codec == kgo.CodecSnappy {
		if n, err := s2.DecodedLen(compressed); err == nil && n > cap(b) {
			b = make([]byte, 0, n+n/8)
		}
	}
	return b
}

// PutDecompressBytes keeps b (already zeroed by franz-go) for a later batch.
func (p *kafkaPools) PutDecompressBytes(b []byte) {
	p.bytes.Put(&b)
}

// GetRecords returns a pooled slice of capacity at least n, or a new one.
func (p *kafkaPools) GetRecords(n int) []kgo.Record {
	if r, ok := p.recs.Get().(*[]kgo.Record); ok && cap(*r) >= n {
		return (*r)[:0]
	}
	return make([]kgo.Record, 0, n+n/8)
}

// PutRecords keeps r (whose records franz-go zeroed as they were recycled) for a later batch.
func (p *kafkaPools) PutRecords(r []kgo.Record) {
	p.recs.Put(&r)
}

// ErrClosed is returned by Poll after Close.
var ErrClosed = errors.New("kafka source closed")

// MarkProcessed marks recs as processed: their offsets become committable (by Commit, the
// periodic autocommit and the commit on revocation). Marks only move forward per partition;
// marking an older offset after a newer one has no effect.
func (k *Kafka) MarkProcessed(recs []Record) {
	if len(recs) == 0 {
		return
	}
	offsets := map[int32]kgo.EpochOffset{}
	k.mu.Lock()
	for _, r := range recs {
		if m, ok := k.marked[r.Partition]; ok && r.Offset <= m {
			continue
		}
		k.marked[r.Partition] = r.Offset
		epoch, ok := k.epoch[r.Partition]
		if !ok {
			epoch = -1
		}
		offsets[r.Partition] = kgo.EpochOffset{Epoch: epoch, Offset: r.Offset + 1}
	}
	k.mu.Unlock()
	if len(offsets) > 0 {
		k.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{k.topic: offsets})
	}
}

// Commit synchronously commits the marked offsets to the group.
func (k *Kafka) Commit(ctx context.Context) error {
	if err := k.cl.CommitMarkedOffsets(ctx); err != nil {
		return fmt.Errorf("committing offsets of topic %q: %w", k.topic, err)
	}
	return nil
}

// Assigned returns the partitions currently assigned to this member, ascending.
func (k *Kafka) Assigned() []int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]int32, 0, len(k.assigned))
	for p := range k.assigned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Lag returns, per assigned partition, the number of records not yet polled: the high
// watermark (listed at assignment, then the latest fetch's) minus the offset after the latest
// polled record (0 when caught up), or before the first record the offset consumption starts at
// (the committed offset, or the start or end of the partition; see adjustOffsets). Partitions
// whose high watermark is not known yet (neither listed nor fetched) are absent.
func (k *Kafka) Lag() map[int32]int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[int32]int64, len(k.hwm))
	for p, hw := range k.hwm {
		if !k.assigned[p] {
			continue
		}
		next, polled := k.next[p]
		if !polled {
			// Where consumption starts; when that is unknown, 0: at most every record below
			// the high watermark.
			next = k.start[p]
		}
		lag := hw - next
		if lag < 0 {
			lag = 0
		}
		out[p] = lag
	}
	return out
}

// Pause stops fetching from parts (for back-pressure) until Resume; records already buffered may
// still be returned by Poll.
func (k *Kafka) Pause(parts ...int32) {
	k.cl.PauseFetchPartitions(map[string][]int32{k.topic: parts})
}

// Resume restarts fetching from parts paused by Pause.
func (k *Kafka) Resume(parts ...int32) {
	k.cl.ResumeFetchPartitions(map[string][]int32{k.topic: parts})
}

// Close commits the marked offsets (through the revocation that leaving the group triggers),
// leaves the group and closes the client.
func (k *Kafka) Close() {
	k.cl.Close()
}

// slogAdapter sends franz-go's log lines to a slog.Logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case a.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case a.l.Enabled(ctx, slog.LevelInfo):
		return kgo.LogLevelInfo
	case a.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case a.l.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelInfo
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelDebug:
		l = slog.LevelDebug
	}
	a.l.Log(context.Background(), l, msg, keyvals...)
}
