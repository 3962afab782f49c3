package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// cmdBroker runs franz-go's Kafka-protocol cluster (kfake) as its own process, keeping its log in
// --data-dir so that it survives a restart: the broker of the crash tests and of experiments
// with `cubed gen --kafka`. It prints "broker listening on ADDR" and runs until interrupted.
// Not a production broker.
func cmdBroker(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", stderr)
	dataDir := fs.String("data-dir", "", "folder for the broker's log (kept across restarts)")
	port := fs.Int("port", 0, "TCP port on 127.0.0.1 (0 = any free port)")
	topics := fs.String("topics", "", "topics to create, as name:partitions,...")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("broker: --data-dir is required")
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(*port), kfake.DataDir(*dataDir), kfake.SyncWrites()}
	for _, t := range strings.Split(*topics, ",") {
		if t == "" {
			continue
		}
		name, parts, ok := strings.Cut(t, ":")
		n, err := strconv.Atoi(parts)
		if !ok || err != nil || n <= 0 {
			return fmt.Errorf("broker: bad topic %q (want name:partitions)", t)
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer c.Close()
	fmt.Fprintf(stdout, "broker listening on %s\n", strings.Join(c.ListenAddrs(), ","))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
