package source

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

type pov struct {
	p   int32
	off int64
	val string
}

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// produce writes n records to topic t round-robin over its 3 partitions and returns what the
// broker acknowledged: the independent record of what a consumer must see.
func produce(t *testing.T, c *kfake.Cluster, prefix string, n int) []pov {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Partition: int32(i % 3), Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}
	}
	res := cl.ProduceSync(context.Background(), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	out := make([]pov, 0, n)
	for _, r := range res {
		out = append(out, pov{r.Record.Partition, r.Record.Offset, string(r.Record.Value)})
	}
	return out
}

func newKafka(t *testing.T, c *kfake.Cluster, group, start string) *Kafka {
	t.Helper()
	k, err := NewKafka(KafkaConfig{
		Brokers: c.ListenAddrs(), Topic: "t", Group: group, Start: start,
		Opts: []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// consume polls until n records arrived (copying them) or the deadline passes, and checks
// that every poll returns each partition's records in offset order.
func consume(t *testing.T, k *Kafka, n int, wait time.Duration) []pov {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var got []pov
	for len(got) < n {
		recs, err := k.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Fatalf("Poll: %v", err)
		}
		last := map[int32]int64{}
		for _, r := range recs {
			if prev, ok := last[r.Partition]; ok && r.Offset <= prev {
				t.Fatalf("partition %d: offset %d after %d in one poll", r.Partition, r.Offset, prev)
			}
			last[r.Partition] = r.Offset
			got = append(got, pov{r.Partition, r.Offset, string(r.Value)})
		}
	}
	return got
}

func sortPOV(s []pov) {
	slices.SortFunc(s, func(a, b pov) int {
		if a.p != b.p {
			return int(a.p - b.p)
		}
		return int(a.off - b.off)
	})
}

func equalPOV(t *testing.T, what string, got, want []pov) {
	t.Helper()
	sortPOV(got)
	sortPOV(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %d records, want %d\n got %v\nwant %v", what, len(got), len(want), head(got), head(want))
	}
}

func head(s []pov) []pov {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func committed(t *testing.T, c *kfake.Cluster, group string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatalf("fetching committed offsets: %v", err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "t" {
			out[o.Partition] = o.At
		}
	})
	return out
}

func TestKafkaConsumeCommitReopen(t *testing.T) {
	c := newCluster(t)
	want := produce(t, c, "a", 300)

	k := newKafka(t, c, "g", "earliest")
	got := consume(t, k, len(want), 20*time.Second)
	equalPOV(t, "first session", got, want)
	if a := k.Assigned(); !slices.Equal(a, []int32{0, 1, 2}) {
		t.Errorf("Assigned() = %v, want [0 1 2]", a)
	}
	if lag := k.Lag(); len(lag) != 3 || lag[0] != 0 || lag[1] != 0 || lag[2] != 0 {
		t.Errorf("Lag() after consuming everything = %v, want 0 on partitions 0..2", lag)
	}

	// Mark all but the last 10 records of partition 2; marks only move forward.
	var marks []Record
	for _, r := range got {
		if r.p == 2 && r.off >= 90 {
			continue
		}
		marks = append(marks, Record{Partition: r.p, Offset: r.off})
	}
	k.MarkProcessed(marks)
	k.MarkProcessed([]Record{{Partition: 0, Offset: 5}}) // older than the mark: no rewind
	if err := k.Commit(context.Background()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if off := committed(t, c, "g"); off[0] != 100 || off[1] != 100 || off[2] != 90 {
		t.Errorf("committed offsets %v, want 0:100 1:100 2:90", off)
	}
	k.Close()
	if _, err := k.Poll(context.Background()); err != ErrClosed {
		t.Errorf("Poll after Close: %v, want ErrClosed", err)
	}

	// Reopen the same group: only the unmarked tail of partition 2 and new records arrive.
	more := produce(t, c, "b", 30)
	k2 := newKafka(t, c, "g", "earliest")
	defer k2.Close()
	var wantAgain []pov
	for _, r := range want {
		if r.p == 2 && r.off >= 90 {
			wantAgain = append(wantAgain, r)
		}
	}
	wantAgain = append(wantAgain, more...)
	got2 := consume(t, k2, len(wantAgain), 20*time.Second)
	// Give a redelivery bug a moment to show up.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	extra, _ := k2.Poll(ctx)
	cancel()
	for _, r := range extra {
		got2 = append(got2, pov{r.Partition, r.Offset, string(r.Value)})
	}
	equalPOV(t, "after reopening", got2, wantAgain)
}

func TestKafkaStartLatest(t *testing.T) {
	c := newCluster(t)
	old := produce(t, c, "old", 60)
	k := newKafka(t, c, "late", "latest")
	defer k.Close()

	// The consumer starts at the end some time after joining; keep producing until new
	// records arrive, then check that none of the old ones ever did.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	oldVals := map[string]bool{}
	for _, r := range old {
		oldVals[r.val] = true
	}
	var got []pov
	for round := 0; len(got) == 0; round++ {
		produce(t, c, fmt.Sprintf("new%d", round), 3)
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		recs, err := k.Poll(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatal("no record arrived with start: latest")
		}
		if err != nil && pctx.Err() == nil {
			t.Fatalf("Poll: %v", err)
		}
		for _, r := range recs {
			got = append(got, pov{r.Partition, r.Offset, string(r.Value)})
		}
	}
	for _, r := range got {
		if oldVals[r.val] {
			t.Fatalf("start: latest delivered an old record %v", r)
		}
	}
}

func TestKafkaPauseResume(t *testing.T) {
	c := newCluster(t)
	k := newKafka(t, c, "p", "earliest")
	defer k.Close()
	want := produce(t, c, "x", 30)
	got := consume(t, k, 30, 20*time.Second)
	equalPOV(t, "before pause", got, want)

	k.Pause(1)
	more := produce(t, c, "y", 30)
	got = consume(t, k, 20, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	extra, _ := k.Poll(ctx)
	cancel()
	for _, r := range extra {
		got = append(got, pov{r.Partition, r.Offset, string(r.Value)})
	}
	var notPaused, paused []pov
	for _, r := range more {
		if r.p == 1 {
			paused = append(paused, r)
		} else {
			notPaused = append(notPaused, r)
		}
	}
	equalPOV(t, "while partition 1 is paused", got, notPaused)
	if lag := k.Lag(); lag[0] != 0 || lag[2] != 0 {
		t.Errorf("Lag() of the running partitions = %v, want 0", lag)
	}

	k.Resume(1)
	got = consume(t, k, 10, 20*time.Second)
	equalPOV(t, "after resume", got, paused)
}

func TestNewKafkaErrors(t *testing.T) {
	for _, cfg := range []KafkaConfig{
		{Topic: "t", Group: "g"},
		{Brokers: []string{"127.0.0.1:1"}, Group: "g"},
		{Brokers: []string{"127.0.0.1:1"}, Topic: "t"},
		{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", Start: "middle"},
	} {
		if k, err := NewKafka(cfg); err == nil {
			k.Close()
			t.Errorf("NewKafka(%+v) succeeded", cfg)
		}
	}
}

// TestKafkaCloseCommitsMarks checks that marks are committed when the member leaves the group
// even without an explicit Commit, and that records not marked are not.
func TestKafkaCloseCommitsMarks(t *testing.T) {
	c := newCluster(t)
	want := produce(t, c, "m", 30)
	k := newKafka(t, c, "close", "earliest")
	got := consume(t, k, len(want), 20*time.Second)
	equalPOV(t, "consumed", got, want)
	var marks []Record
	for _, r := range got {
		if r.off < 4 {
			marks = append(marks, Record{Partition: r.p, Offset: r.off})
		}
	}
	k.MarkProcessed(marks)
	k.Close()
	if off := committed(t, c, "close"); off[0] != 4 || off[1] != 4 || off[2] != 4 {
		t.Errorf("committed offsets after Close %v, want 4 on every partition", off)
	}
}

// TestKafkaPooledValuesValidUntilRelease: with fetch memory pooled (kgo.WithPools), a record's
// Value must hold its bytes until that record is released, however many polls and releases of
// other records come in between, and memory that came back to the pool must give correct values
// to later fetches. Three rounds of snappy-compressed records: round 1 is kept whole while only
// its even offsets are released, round 2 is polled on top, and after everything is released
// round 3 reuses the pooled memory.
func TestKafkaPooledValuesValidUntilRelease(t *testing.T) {
	c := newCluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := map[[2]int64]string{}
	produceRound := func(round, n int) {
		recs := make([]*kgo.Record, n)
		for i := range recs {
			// Long, compressible, distinct values: many records per batch, several batches.
			v := fmt.Sprintf("round %d record %06d %s", round, i, strings.Repeat(string(rune('a'+i%26)), 60))
			recs[i] = &kgo.Record{Partition: int32(i % 3), Value: []byte(v)}
		}
		res := cl.ProduceSync(context.Background(), recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
		for _, r := range res {
			want[[2]int64{int64(r.Record.Partition), r.Record.Offset}] = string(r.Record.Value)
		}
	}
	k := newKafka(t, c, "g", "earliest")
	defer k.Close()
	poll := func(n int) []Record {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var got []Record
		for len(got) < n {
			recs, err := k.Poll(ctx)
			if err != nil {
				t.Fatalf("after %d of %d records: %v", len(got), n, err)
			}
			got = append(got, recs...) // the records themselves, Values not copied
		}
		return got
	}
	check := func(what string, recs []Record) {
		t.Helper()
		for _, r := range recs {
			if w := want[[2]int64{int64(r.Partition), r.Offset}]; string(r.Value) != w {
				t.Fatalf("%s: partition %d offset %d holds %q, want %q", what, r.Partition, r.Offset, clip(string(r.Value)), clip(w))
			}
		}
	}
	const n = 6000
	produceRound(1, n)
	round1 := poll(n)
	check("round 1", round1)
	var kept []Record
	for i := range round1 {
		if round1[i].Offset%2 == 0 {
			round1[i].Release()
		} else {
			kept = append(kept, round1[i])
		}
	}
	produceRound(2, n)
	round2 := poll(n)
	check("round 1, odd offsets kept while round 2 was polled", kept)
	check("round 2", round2)
	for i := range kept {
		kept[i].Release()
	}
	for i := range round2 {
		round2[i].Release()
	}
	produceRound(3, n)
	round3 := poll(n)
	check("round 3, fetched into released memory", round3)
}

// TestKafkaPollUpTo: PollUpTo never returns more than asked, and polls of a few records at a
// time still deliver every produced record exactly once, each partition's in offset order
// across polls. The expected records are the broker's acknowledgements.
func TestKafkaPollUpTo(t *testing.T) {
	c := newCluster(t)
	want := produce(t, c, "up", 300)
	k := newKafka(t, c, "g-upto", "earliest")
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []pov
	next := map[int32]int64{}
	polls := 0
	for len(got) < len(want) {
		recs, err := k.PollUpTo(ctx, 7)
		if err != nil {
			t.Fatalf("PollUpTo after %d of %d records: %v", len(got), len(want), err)
		}
		polls++
		if len(recs) > 7 {
			t.Fatalf("PollUpTo(7) returned %d records", len(recs))
		}
		for _, r := range recs {
			if r.Offset < next[r.Partition] {
				t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, next[r.Partition]-1)
			}
			next[r.Partition] = r.Offset + 1
			got = append(got, pov{r.Partition, r.Offset, string(r.Value)})
			r.Release()
		}
	}
	if polls < len(want)/7 {
		t.Fatalf("%d records in %d polls of at most 7", len(got), polls)
	}
	equalPOV(t, "PollUpTo(7)", got, want)
}
