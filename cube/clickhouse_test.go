package cube

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestClickHouseSinkDefaults: sink.clickhouse fills its defaults (the table follows the sink
// table, which follows the cube name) and keeps what the model says.
func TestClickHouseSinkDefaults(t *testing.T) {
	const head = `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}, {granularity: day, step: 1h}]
`
	cases := []struct {
		name, sink string
		want       *ClickHouseSink
	}{
		{"none", "", nil},
		{"empty", "    sink: {clickhouse: {}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true, Compression: "auto"}},
		{"sink table", "    sink: {table: results, clickhouse: {}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "results", Username: "default", CreateTables: true, Compression: "auto"}},
		{"everything", "    sink: {clickhouse: {addr: \"ch.example:9440\", database: olap, table: t1, username: u, password_env: CH_PW, tls: true, create_tables: false, compression: zstd}}\n",
			&ClickHouseSink{Addr: "ch.example:9440", Database: "olap", Table: "t1", Username: "u", PasswordEnv: "CH_PW", TLS: &ClickHouseTLS{}, Compression: "zstd"}},
		{"compression none", "    sink: {clickhouse: {compression: none}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true, Compression: "none"}},
		{"tls off", "    sink: {clickhouse: {tls: false}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true, Compression: "auto"}},
		{"tls mapping", "    sink: {clickhouse: {tls: {ca_file: ca.pem, cert_file: /etc/c.pem, key_file: k.pem, server_name: ch.internal}}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true, Compression: "auto",
				TLS: &ClickHouseTLS{CAFile: "ca.pem", CertFile: "/etc/c.pem", KeyFile: "k.pem", ServerName: "ch.internal"}}},
		{"tls insecure", "    sink: {clickhouse: {tls: {insecure_skip_verify: true}}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true, Compression: "auto",
				TLS: &ClickHouseTLS{InsecureSkipVerify: true}}},
		{"password", "    sink: {clickhouse: {password: \"s3cr'et\"}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", Password: "s3cr'et", CreateTables: true, Compression: "auto"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, diags := Parse("m.yaml", []byte(head+tc.sink))
			if len(diags) > 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			got := m.Cubes[0].Sink.ClickHouse
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sink.clickhouse = %+v, want %+v", got, tc.want)
			}
			if m.Cubes[0].Sink.NoEmbedded {
				t.Error("sink.embedded is off without `embedded: false`")
			}
			w := m.Cubes[0].Windows
			if w[0].Label() != "day" || w[1].Label() != "day/1h" {
				t.Errorf("window labels %q, %q; want day, day/1h", w[0].Label(), w[1].Label())
			}
		})
	}
}

// TestClickHouseTLSPaths: LoadFile resolves the relative files of sink.clickhouse.tls against the
// model file's folder and keeps absolute ones.
func TestClickHouseTLSPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	model := `version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink: {clickhouse: {tls: {ca_file: certs/ca.pem, cert_file: /abs/client.pem, key_file: ../client.key}}}
`
	if err := os.WriteFile(path, []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	m, diags, err := LoadFile(path)
	if err != nil || len(diags) > 0 {
		t.Fatalf("LoadFile: %v %v", err, diags)
	}
	got := m.Cubes[0].Sink.ClickHouse.TLS
	want := &ClickHouseTLS{CAFile: filepath.Join(dir, "certs", "ca.pem"), CertFile: "/abs/client.pem", KeyFile: filepath.Join(filepath.Dir(dir), "client.key")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tls = %+v, want %+v", got, want)
	}
	if !strings.HasPrefix(got.CAFile, "/") {
		t.Errorf("ca_file %q is not absolute", got.CAFile)
	}
}

// TestEmbeddedOff: `embedded: false` next to sink.clickhouse turns the embedded result store off.
func TestEmbeddedOff(t *testing.T) {
	m, diags := Parse("m.yaml", []byte(`version: 1
cubes:
  - name: c
    source: {kafka: {brokers: [b], topic: t}}
    event_time: {field: ts}
    measures: [{name: pv, type: count}]
    windows: [{granularity: day}]
    sink: {embedded: false, clickhouse: {}}
`))
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if s := m.Cubes[0].Sink; !s.NoEmbedded || s.ClickHouse == nil {
		t.Errorf("sink = %+v, want NoEmbedded and a ClickHouse sink", s)
	}
}
