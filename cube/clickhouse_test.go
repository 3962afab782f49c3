package cube

import (
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
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", CreateTables: true}},
		{"sink table", "    sink: {table: results, clickhouse: {}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "results", Username: "default", CreateTables: true}},
		{"everything", "    sink: {clickhouse: {addr: \"ch.example:9440\", database: olap, table: t1, username: u, password_env: CH_PW, tls: true, create_tables: false}}\n",
			&ClickHouseSink{Addr: "ch.example:9440", Database: "olap", Table: "t1", Username: "u", PasswordEnv: "CH_PW", TLS: true}},
		{"password", "    sink: {clickhouse: {password: \"s3cr'et\"}}\n",
			&ClickHouseSink{Addr: "127.0.0.1:9000", Database: "default", Table: "c", Username: "default", Password: "s3cr'et", CreateTables: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, diags := Parse("m.yaml", []byte(head+tc.sink))
			if len(diags) > 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			got := m.Cubes[0].Sink.ClickHouse
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Errorf("sink.clickhouse = %+v, want %+v", got, tc.want)
			}
			w := m.Cubes[0].Windows
			if w[0].Label() != "day" || w[1].Label() != "day/1h" {
				t.Errorf("window labels %q, %q; want day, day/1h", w[0].Label(), w[1].Label())
			}
		})
	}
}
