package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/source"
)

// DevOptions configures the dev mode's in-process Kafka-protocol broker and generator.
type DevOptions struct {
	// DataDir: the broker keeps its log in DataDir/kafka.
	DataDir string
	// Topics are created with 4 partitions each and fed by the generator.
	Topics []string
	// Rate is the generator's events per second (wall time), shared by the topics. This
	// overrides the default of 2000.
	Rate float64
	// RetentionBytes bounds each partition's log; the broker applies retention every 10 s, so
	// memory and disk stay bounded however long the dev mode runs. This overrides the default of
	// 32 MiB.
	RetentionBytes int64
	Logger         *slog.Logger // receives the generator's warnings; default slog.Default()
}

// Dev is a running dev environment: a franz-go kfake cluster and a generator producing live
// synthetic events (source.Generator) with the current time as event time.
type Dev struct {
	cluster *kfake.Cluster
	client  *kgo.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// StartDev starts the broker and the generator; Close stops both.
func StartDev(ctx context.Context, o DevOptions) (*Dev, error) {
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.RetentionBytes <= 0 {
		o.RetentionBytes = 32 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(4, o.Topics...),
		kfake.DataDir(filepath.Join(o.DataDir, "kafka")),
		kfake.BrokerConfigs(map[string]string{"log.retention.bytes": strconv.FormatInt(o.RetentionBytes, 10)}))
	if err != nil {
		return nil, fmt.Errorf("starting dev Kafka broker: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(50*time.Millisecond))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("starting dev producer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &Dev{cluster: c, client: cl, cancel: cancel}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.generate(ctx, o)
	}()
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.ApplyRetention()
			}
		}
	}()
	return d, nil
}

// generate produces o.Rate events per second, spread over the topics, in 100 ms ticks.
func (d *Dev) generate(ctx context.Context, o DevOptions) {
	g := source.NewGenerator(source.GeneratorConfig{Users: 50000, Seed: time.Now().UnixNano(), Rate: o.Rate})
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * o.Rate)
			for ; sent < due; sent++ {
				topic := o.Topics[int(sent)%len(o.Topics)]
				v := g.Next(nil, now)
				d.client.Produce(ctx, &kgo.Record{Topic: topic, Value: v}, func(_ *kgo.Record, err error) {
					if err != nil && ctx.Err() == nil {
						o.Logger.Warn("dev generator produce", "err", err)
					}
				})
			}
		}
	}
}

// Brokers returns the broker addresses to consume from.
func (d *Dev) Brokers() []string { return d.cluster.ListenAddrs() }

// Close stops the generator and the broker.
func (d *Dev) Close() {
	d.cancel()
	d.wg.Wait()
	d.client.Close()
	d.cluster.Close()
}
