package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cubed-olap/cubed/source"
)

// cmdGen writes synthetic events: --count events spread at --rate events per second of event
// time from --start, to --out (default stdout) or to a Kafka topic; with --live the events are
// paced in wall time and stamped with the current time until --count or interruption.
func cmdGen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", stderr)
	count := fs.Int64("count", 100000, "number of events (0 = unbounded with --live)")
	rate := fs.Float64("rate", 1000, "events per second (of event time, or of wall time with --live)")
	users := fs.Int("users", 100000, "distinct users (Zipf-distributed)")
	seed := fs.Int64("seed", 42, "random seed")
	start := fs.String("start", "2024-05-01T12:00:00Z", "event time of the first event (RFC 3339)")
	out := fs.String("out", "-", "output file (- for stdout)")
	brokers := fs.String("kafka", "", "comma-separated Kafka brokers: produce to --topic instead of a file")
	topic := fs.String("topic", "events", "Kafka topic")
	live := fs.Bool("live", false, "pace events in wall time with the current time as event time")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	t0, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return fmt.Errorf("gen: bad --start: %w", err)
	}
	g := source.NewGenerator(source.GeneratorConfig{Users: *users, Seed: *seed, Start: t0, Rate: *rate})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var emit func(line []byte) error
	var finish func() error
	if *brokers != "" {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.DefaultProduceTopic(*topic))
		if err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		defer cl.Close()
		var perr error
		emit = func(line []byte) error {
			cl.Produce(ctx, &kgo.Record{Value: append([]byte(nil), line...)}, func(_ *kgo.Record, err error) {
				if err != nil && perr == nil {
					perr = err
				}
			})
			return perr
		}
		finish = func() error {
			if err := cl.Flush(ctx); err != nil {
				return err
			}
			return perr
		}
	} else {
		w := stdout
		if *out != "-" {
			f, err := os.Create(*out)
			if err != nil {
				return fmt.Errorf("gen: %w", err)
			}
			defer f.Close()
			w = f
		}
		bw := bufio.NewWriterSize(w, 1<<20)
		emit = func(line []byte) error {
			bw.Write(line)
			_, err := bw.Write([]byte{'\n'})
			return err
		}
		finish = bw.Flush
	}

	var line []byte
	if !*live {
		for i := int64(0); i < *count; i++ {
			line = g.Next(line[:0], g.Time(i))
			if err := emit(line); err != nil {
				return fmt.Errorf("gen: %w", err)
			}
		}
		return finish()
	}
	begin := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var sent int64
	for *count == 0 || sent < *count {
		select {
		case <-ctx.Done():
			return finish()
		case now := <-tick.C:
			due := int64(now.Sub(begin).Seconds() * *rate)
			for ; sent < due && (*count == 0 || sent < *count); sent++ {
				line = g.Next(line[:0], now)
				if err := emit(line); err != nil {
					return fmt.Errorf("gen: %w", err)
				}
			}
		}
	}
	if err := finish(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
