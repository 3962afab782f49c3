package sink_test

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/internal/chtest"
	"github.com/cubed-olap/cubed/sink"
)

// TestClickHouseTLS starts a private server whose secure native port (tcp_port_secure) has a
// certificate for the name ch.test from a CA made here and requires client certificates from
// the same CA, then: rows round-trip over TLS (server verified with ca_file and server_name,
// client certificate presented); a wrong CA, a missing server_name and a plain-text port fail at
// once with ErrClickHouseTLS and a message naming the setting to fix, as do a missing client
// certificate and one of another CA, which the server refuses; insecure_skip_verify connects
// without a CA.
func TestClickHouseTLS(t *testing.T) {
	dir := t.TempDir()
	files := chtest.NewTLSFiles(t, dir, "cubed-test-ca", "ch.test")
	other := chtest.NewTLSFiles(t, dir, "other-ca", "ch.test")
	cliCert, cliKey, srvKey := files.ClientCert, files.ClientKey, files.ServerKey
	srv := chtest.Start(t, chtest.WithTLS(files.ServerCert, files.ServerKey, files.CA))
	p := chPlan(t, chModel)

	open := func(addr string, tc *cube.ClickHouseTLS) *sink.ClickHouse {
		t.Helper()
		cfg := &cube.ClickHouseSink{Addr: addr, Database: "cubed_tls", Username: "default", CreateTables: true, TLS: tc}
		c, err := sink.OpenClickHouse(cfg, sink.WithClickHouseBackoff(20*time.Millisecond, 200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	write := func(c *sink.ClickHouse, rows []sink.Row, within time.Duration) error {
		table, err := c.Define(p)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return c.Write(ctx, table, rows)
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	var version uint64
	rows := randomRows(p, rng, 3000, &version, []string{"#en.wikipedia", "it's", `back\slash`, "Ünïcode", ""})

	// Verified both ways: the rows round-trip, read back over TLS and with clickhouse-client
	// over the plain port.
	good := &cube.ClickHouseTLS{CAFile: files.CA, ServerName: "ch.test", CertFile: cliCert, KeyFile: cliKey}
	c := open(srv.SecureAddr(), good)
	if err := write(c, rows, time.Minute); err != nil {
		t.Fatalf("writing over TLS: %v", err)
	}
	table, _ := c.Define(p)
	checkScan(t, c, table, p, expectLatest(rows))
	if got := srv.Query("SELECT count() FROM cubed_tls.edits_results FINAL"); strings.TrimSpace(got) == "0" {
		t.Error("clickhouse-client sees no rows written over TLS")
	}

	// Failures that retrying cannot fix come back at once (well within the 30 s allowed), each
	// naming what to change.
	for _, tc := range []struct {
		name, addr string
		tls        *cube.ClickHouseTLS
		want       []string
	}{
		{"wrong CA", srv.SecureAddr(), &cube.ClickHouseTLS{CAFile: other.CA, ServerName: "ch.test", CertFile: cliCert, KeyFile: cliKey},
			[]string{"sink.clickhouse.tls.ca_file", "x509: certificate signed by unknown authority"}},
		{"system roots", srv.SecureAddr(), &cube.ClickHouseTLS{ServerName: "ch.test", CertFile: cliCert, KeyFile: cliKey},
			[]string{"sink.clickhouse.tls.ca_file", "unknown authority"}},
		{"no server name", srv.SecureAddr(), &cube.ClickHouseTLS{CAFile: files.CA, CertFile: cliCert, KeyFile: cliKey},
			[]string{"sink.clickhouse.tls.server_name", "127.0.0.1"}},
		{"plain-text port", srv.Addr(), good,
			[]string{"tcp_port_secure", "does not look like a TLS handshake"}},
		{"no client certificate", srv.SecureAddr(), &cube.ClickHouseTLS{CAFile: files.CA, ServerName: "ch.test"},
			[]string{"sink.clickhouse.tls.cert_file", "certificate required"}},
		{"client certificate of another CA", srv.SecureAddr(), &cube.ClickHouseTLS{CAFile: files.CA, ServerName: "ch.test", CertFile: other.ClientCert, KeyFile: other.ClientKey},
			[]string{"sink.clickhouse.tls.cert_file", "remote error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := write(open(tc.addr, tc.tls), rows[:10], 30*time.Second)
			if !errors.Is(err, sink.ErrClickHouseTLS) {
				t.Fatalf("Write: %v, want an error wrapping ErrClickHouseTLS", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Write took %v to give up; a TLS configuration error is not retried", d)
			}
			t.Logf("%v", err)
		})
	}

	// insecure_skip_verify: encrypted, not authenticated, but it works.
	t.Run("insecure", func(t *testing.T) {
		if err := write(open(srv.SecureAddr(), &cube.ClickHouseTLS{InsecureSkipVerify: true, CertFile: cliCert, KeyFile: cliKey}), rows[:10], time.Minute); err != nil {
			t.Fatal(err)
		}
	})

	// Files that cannot be loaded fail OpenClickHouse, naming the key.
	for _, tc := range []struct {
		name string
		tls  *cube.ClickHouseTLS
		want string
	}{
		{"missing CA", &cube.ClickHouseTLS{CAFile: filepath.Join(dir, "nope.pem")}, "reading sink.clickhouse.tls.ca_file"},
		{"CA not PEM", &cube.ClickHouseTLS{CAFile: srvKey + "x"}, "reading sink.clickhouse.tls.ca_file"},
		{"key as CA", &cube.ClickHouseTLS{CAFile: srvKey}, "holds no PEM certificate"},
		{"cert and key mismatch", &cube.ClickHouseTLS{CertFile: cliCert, KeyFile: srvKey}, "client certificate of sink.clickhouse.tls"},
	} {
		_, err := sink.OpenClickHouse(&cube.ClickHouseSink{Addr: srv.SecureAddr(), Database: "d", TLS: tc.tls})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: OpenClickHouse: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
