package sink_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/internal/chtest"
	"github.com/cubed-olap/cubed/sink"
)

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingProxy forwards TCP connections from a local port to target and counts the bytes
// clients send as they pass. It stops with the test.
func countingProxy(t *testing.T, target string) (addr string, sent *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sent = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(countingWriter{server, sent}, client)
				server.Close()
			}()
			go func() {
				defer wg.Done()
				io.Copy(client, server)
				client.Close()
			}()
		}
	}()
	return ln.Addr().String(), sent
}

// TestClickHouseCompression writes the same rows with each sink.clickhouse.compression through
// a proxy that counts what the client sends: every method stores exactly the rows written, and
// lz4 and zstd send less than half the bytes of none (the rows repeat a few dimension values,
// so they compress well). auto resolves to none for loopback hosts and lz4 for others.
func TestClickHouseCompression(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9000": "none", "localhost:9000": "none", "[::1]:9000": "none", "LOCALHOST:1": "none",
		"ch.example:9000": "lz4", "10.0.0.5:9000": "lz4", "[2001:db8::1]:9000": "lz4",
	} {
		if got := sink.WireCompression(&cube.ClickHouseSink{Addr: addr, Compression: "auto"}); got != want {
			t.Errorf("auto compression for %s = %s, want %s", addr, got, want)
		}
	}
	if got := sink.WireCompression(&cube.ClickHouseSink{Addr: "ch.example:9000", Compression: "none"}); got != "none" {
		t.Errorf("compression none for a remote host = %s", got)
	}

	srv := chtest.Start(t)
	p := chPlan(t, chModel)
	rng := rand.New(rand.NewPCG(9, 10))
	var version uint64
	rows := randomRows(p, rng, 20_000, &version, []string{"a", "b", "c"})
	sent := map[string]int64{}
	for _, method := range []string{"none", "lz4", "zstd"} {
		addr, counter := countingProxy(t, srv.Addr())
		cfg := &cube.ClickHouseSink{Addr: addr, Database: "cubed_comp_" + method, Username: "default", CreateTables: true, Compression: method}
		c, err := sink.OpenClickHouse(cfg, sink.WithClickHouseBackoff(20*time.Millisecond, 500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		table, err := c.Define(p)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := c.EnsureTable(ctx, table); err != nil {
			t.Fatal(err)
		}
		before := counter.Load()
		if err := c.Write(ctx, table, rows); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		sent[method] = counter.Load() - before // the server has had every byte: it answered
		c.Close()
		c2 := openCH(t, srv, cfg.Database, false)
		if _, err := c2.Define(p); err != nil {
			t.Fatal(err)
		}
		checkScan(t, c2, table, p, expectLatest(rows))
	}
	t.Logf("bytes sent for %d rows: %v", len(rows), sent)
	for _, method := range []string{"lz4", "zstd"} {
		if sent[method] <= 0 || sent[method]*2 > sent["none"] {
			t.Errorf("%s sent %d bytes, none %d: want less than half", method, sent[method], sent["none"])
		}
	}
}
