package sink

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/cubed-olap/cubed/cube"
)

// ClickHouse result tables.
//
// One table per cube, in a layout any SQL user can query (DDL prints it):
//
//	window_start  DateTime          the window's start (seconds; Row.Start / 1000)
//	window_end    DateTime          the step's end for a cumulative window, else the window's end
//	granularity   String            cube.Window.Label: "hour", "day" … or "day/1h" when cumulative
//	grouping_set  UInt16            the cuboid id (cube.GroupingSet.ID)
//	<dimension>   String            one per dimension of the layer-1 key; "" where rolled up
//	<measure>     UInt64 | Float64 | Nullable(Float64)   count, count_distinct, new_users and a
//	                                retention measure's _retained and _cohort columns are UInt64,
//	                                sum is Float64, min and max are Nullable (NULL: no value), a
//	                                retention rate is Nullable (NULL: empty cohort)
//	version       UInt64            Row.Version; the largest version of a key wins
//
// A row is written when its value changes (early fire, window close), never again unchanged, so
// the row of a key with the largest version holds its latest value; a window's rows are final
// once the cube's watermark (GET /api/v1/status) passes its end plus the allowed lateness.
// Tables made by earlier versions also have a column final UInt8, once set on rows re-sent at
// window close; it is accepted, left at its default 0 and never read.
//
// ENGINE = ReplacingMergeTree(version), PARTITION BY toYYYYMM(window_start), ORDER BY
// (grouping_set, granularity, window_start, window_end, dimensions…): the ORDER BY key is the
// primary key of a result row, so ReplacingMergeTree keeps one row per key, the one with the
// largest version, and a (grouping set, window, time range) read is one range of the sparse
// index. Reads use FINAL, which merges the rows of one key at query time. This DDL, every INSERT
// (which always names its columns) and every SELECT are valid on ClickHouse 18.16 (Debian's
// package) and on current releases; 18.16 has no server-side query parameters, so request values
// are bound by clickhouse-go's client-side binding (positional ?, quoted and escaped by the
// driver) and identifiers are checked against [A-Za-z_][A-Za-z0-9_]* and back-quoted.
//
// Every INSERT sends its rows in ORDER BY order (insertOrder), so the server, which checks a
// block's order before sorting it, skips the sort that was most of an INSERT's cost to it.
//
// Connections use the native protocol, compressed as sink.clickhouse.compression says
// (WireCompression: by default none to a loopback address, LZ4 to others), in plain text or, with
// sink.clickhouse.tls, TLS 1.2+ to the server's secure native port (TLSConfig: a private CA,
// the name to verify, a client certificate). A certificate that does not verify is an error that
// retrying cannot fix (ErrClickHouseTLS); a server that is down is retried until it is back.

// Defaults of a ClickHouse sink.
const (
	// DefaultClickHouseBatchRows is the rows of one INSERT (about: under one and a half times
	// it, see insertParts) and the size at which a ClickHouseBuffer writes. Each INSERT makes a
	// part (about 30 files) that the server later merges, so bigger INSERTs cost the server less;
	// but a ClickHouseBuffer holds two batches, and clickhouse-go a block's columns, which cubed
	// pays for in memory it touches. In `make bench-clickhouse` (2M result rows, 9 alternating
	// throughput runs, 2026-11-21) INSERTs of 100,000 rows cost the server 1.69 s (median)
	// instead of 1.59 s with 200,000, and cubed 4.56 s instead of 5.21 s, at a peak RSS of
	// 436–524 MiB instead of 561–702 MiB: 7% more events per CPU-second, better in 8 of 9
	// pairs (one full run besides was worse). Before the Kafka poll limit and uncompressed
	// loopback INSERTs, 200,000 had been 6.8% better. At 150k–180k events/s that is one or two
	// INSERTs a second.
	DefaultClickHouseBatchRows = 100_000
	// DefaultClickHouseFlushInterval is the least time between the writes of a
	// ClickHouseBuffer: about one INSERT per second, as ClickHouse advises.
	DefaultClickHouseFlushInterval = time.Second
)

// ErrClickHouseSchema is wrapped by the errors about a table whose layout disagrees with the
// plan (or that is missing while table creation is off); retrying cannot fix them.
var ErrClickHouseSchema = errors.New("ClickHouse table does not match the cube")

// ErrClickHouseTLS is wrapped by the errors of a TLS connection that cannot work as configured:
// the server's certificate does not verify (unknown authority, wrong name, expired), the server
// refuses the client certificate (or its absence), or the port does not speak TLS. Like
// ErrClickHouseSchema, retrying cannot fix them, so Write returns them at once; the message says
// which sink.clickhouse.tls setting to look at.
var ErrClickHouseTLS = errors.New("TLS connection to ClickHouse refused")

// clientCertAlerts are the texts of the TLS alerts (RFC 8446 §6.2) by which a server refuses
// the client's certificate or its absence; crypto/tls reports a received alert as a
// *net.OpError with Op "remote error" whose Err prints as "tls: " and the text.
var clientCertAlerts = []string{"bad certificate", "unsupported certificate", "revoked certificate",
	"expired certificate", "unknown certificate", "unknown certificate authority", "certificate required"}

// tlsProblem returns a hint for a TLS error that retrying cannot fix, "" for any other error.
func tlsProblem(err error) string {
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	var oerr *net.OpError
	switch {
	case errors.As(err, &verr):
		var host x509.HostnameError
		if errors.As(verr.Err, &host) {
			return "the server's certificate is not for this host (set sink.clickhouse.tls.server_name to a name it carries)"
		}
		return "the server's certificate does not verify (set sink.clickhouse.tls.ca_file to the CA that issued it)"
	case errors.As(err, &rerr):
		return "the server did not answer in TLS (is sink.clickhouse.addr its secure native port, tcp_port_secure, usually 9440?)"
	case errors.As(err, &oerr) && oerr.Op == "remote error" && oerr.Err != nil &&
		slices.Contains(clientCertAlerts, strings.TrimPrefix(oerr.Err.Error(), "tls: ")):
		return "the server refused the client certificate (set sink.clickhouse.tls.cert_file and key_file to one it trusts)"
	}
	return ""
}

// ClickHouse writes result rows to, and reads them from, ClickHouse tables over the native
// protocol (clickhouse-go/v2). It is safe for concurrent use.
type ClickHouse struct {
	conn driver.Conn
	db   string
	cfg  cube.ClickHouseSink
	opts chOptions

	mu     sync.Mutex // guards tables
	tables map[string]*chTable
}

// chTable is a table's layout, derived from its plan.
type chTable struct {
	plan      *cube.Plan
	name      string         // back-quoted `db`.`table`
	cols      []chCol        // in table order
	dimCol    []int          // cube dimension index → position in the dims of cols (-1: not a column)
	gsDims    [][]int        // per plan grouping set: dims column position of each of its Dims
	gsDimAt   [][]int        // per plan grouping set, per dims column: index into Row.Dims, or -1
	gsByID    map[uint16]int // grouping set id → index in plan.GroupingSets
	labels    []string       // per window: the granularity column's value
	labelRank []int          // per window: the rank of its label among labels, in string order
	// gsColOrder is per plan grouping set the indexes into Row.Dims in the order of their
	// columns (the ORDER BY order of the dimension columns).
	gsColOrder [][]int
	insertSQL  string
	ensured    bool // the table exists with the right columns; guarded by ClickHouse.mu
	ensureMu   sync.Mutex
	// idle holds the inserters not in use (see chInserter); guarded by idleMu.
	idleMu sync.Mutex
	idle   []*chInserter
}

// chCol is one column of a result table.
type chCol struct {
	name, typ string
	kind      colKind
	index     int // dimension index (in plan.Dimensions order) or measure index
}

type colKind uint8

const (
	colStart colKind = iota
	colEnd
	colGranularity
	colGroupingSet
	colDim
	colUInt // a measure stored as UInt64
	colFloat
	colNullFloat
	colVersion
)

// chOptions are the settings ClickHouseOption changes.
type chOptions struct {
	batchRows     int
	flushInterval time.Duration
	minBackoff    time.Duration
	maxBackoff    time.Duration
	attemptTO     time.Duration
	dialTO        time.Duration
	onRetry       func(err error, attempt int, wait time.Duration)
}

// ClickHouseOption configures OpenClickHouse.
type ClickHouseOption func(*chOptions)

// WithClickHouseBatchRows sets the rows of one INSERT (about: under one and a half times n, see
// insertParts) and the size at which a ClickHouseBuffer writes. This overrides the default of
// DefaultClickHouseBatchRows.
func WithClickHouseBatchRows(n int) ClickHouseOption {
	return func(o *chOptions) { o.batchRows = max(n, 1) }
}

// WithClickHouseFlushInterval sets the least time between the writes of a ClickHouseBuffer (rows
// added sooner wait for it). This overrides the default of DefaultClickHouseFlushInterval (1s).
func WithClickHouseFlushInterval(d time.Duration) ClickHouseOption {
	return func(o *chOptions) { o.flushInterval = d }
}

// WithClickHouseBackoff sets the wait before the first retry of a failed write and the most any
// wait may grow to; each wait doubles the previous one, then takes a random value in its upper
// half ("equal jitter", https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
// This overrides the defaults of 100ms and 10s.
func WithClickHouseBackoff(first, most time.Duration) ClickHouseOption {
	return func(o *chOptions) { o.minBackoff, o.maxBackoff = first, max(first, most) }
}

// WithClickHouseAttemptTimeout bounds one INSERT or one schema check (a server that accepts the
// connection but stalls is retried after this long). This overrides the default of 1m.
func WithClickHouseAttemptTimeout(d time.Duration) ClickHouseOption {
	return func(o *chOptions) { o.attemptTO = d }
}

// WithClickHouseRetryHook has fn called after every failed attempt of Write with the error, the
// attempt number (1 for the first) and the wait before the next attempt; the pipeline uses it to
// show a failing sink in its status. There is no hook by default.
func WithClickHouseRetryHook(fn func(err error, attempt int, wait time.Duration)) ClickHouseOption {
	return func(o *chOptions) { o.onRetry = fn }
}

// WireCompression is the compression cfg's INSERT blocks travel with: cfg.Compression, except
// that auto (or empty) is none when the host of cfg.Addr is "localhost" or a loopback IP, and
// lz4 otherwise, as clickhouse-client chooses. On one machine compression only costs CPU: in
// `make bench-clickhouse` (2M events, 2 cores) sending blocks uncompressed took cubed 4.44 s
// instead of 4.70 s and the server 2.44 s instead of 2.88 s (medians of 4 alternating runs).
func WireCompression(cfg *cube.ClickHouseSink) string {
	if cfg.Compression != "" && cfg.Compression != cube.CompressionAuto {
		return cfg.Compression
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		host = cfg.Addr
	}
	if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback() {
		return cube.CompressionNone
	}
	return cube.CompressionLZ4
}

// OpenClickHouse returns a sink for the server, database and credentials of cfg (its Table is
// ignored: Define declares tables). It does no network I/O: the connection is made by the first
// call that needs it, so a server that is down at start only delays the first write. It fails when
// cfg.PasswordEnv names an unset environment variable, cfg's identifiers are not plain, or the
// files of cfg.TLS cannot be loaded (TLSConfig).
func OpenClickHouse(cfg *cube.ClickHouseSink, opts ...ClickHouseOption) (*ClickHouse, error) {
	o := chOptions{
		batchRows: DefaultClickHouseBatchRows, flushInterval: DefaultClickHouseFlushInterval,
		minBackoff: 100 * time.Millisecond, maxBackoff: 10 * time.Second,
		attemptTO: time.Minute, dialTO: 5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if !isIdent(cfg.Database) {
		return nil, fmt.Errorf("opening ClickHouse sink: database name %q must match [A-Za-z_][A-Za-z0-9_]*", cfg.Database)
	}
	password := cfg.Password
	if cfg.PasswordEnv != "" {
		v, ok := os.LookupEnv(cfg.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("opening ClickHouse sink at %s: environment variable %q (sink.clickhouse.password_env) is not set", cfg.Addr, cfg.PasswordEnv)
		}
		password = v
	}
	copts := &clickhouse.Options{
		Protocol: clickhouse.Native,
		Addr:     []string{cfg.Addr},
		// The database is created by EnsureTable, so the connection must not select it.
		Auth:         clickhouse.Auth{Database: "default", Username: cfg.Username, Password: password},
		DialTimeout:  o.dialTO,
		ReadTimeout:  o.attemptTO,
		MaxOpenConns: 4,
		MaxIdleConns: 2,
		// A block is written (and compressed) in pieces of about this many bytes, as the
		// server's own max_compress_block_size, rather than clickhouse-go's default of 10 MiB:
		// each pooled connection's buffer otherwise grew to half a block (of 200,000 rows then). In
		// `make bench-clickhouse` cubed's CPU fell from 4.83 s to 4.34 s and the server's from
		// 2.15 s to 1.73 s (medians of 6 alternating runs, each pair better on both sides).
		MaxCompressionBuffer: 1 << 20,
	}
	switch WireCompression(cfg) {
	case cube.CompressionLZ4:
		copts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	case cube.CompressionZSTD:
		copts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionZSTD}
	}
	if cfg.TLS != nil {
		tc, err := TLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("opening ClickHouse sink at %s: %w", cfg.Addr, err)
		}
		copts.TLS = tc
	}
	conn, err := clickhouse.Open(copts)
	if err != nil {
		return nil, fmt.Errorf("opening ClickHouse sink at %s: %w", cfg.Addr, err)
	}
	return &ClickHouse{conn: conn, db: cfg.Database, cfg: *cfg, opts: o, tables: map[string]*chTable{}}, nil
}

// TLSConfig builds the client TLS configuration of sink.clickhouse.tls: TLS 1.2 or later; the
// server verified against the CAs of c.CAFile (else the system roots) for c.ServerName (else,
// as crypto/tls does, the host of the address dialled); the client certificate of c.CertFile and
// c.KeyFile when given. It reads the files now and fails, naming the file and the model key, when
// one cannot be read or holds no usable PEM data.
func TLSConfig(c *cube.ClickHouseTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading sink.clickhouse.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sink.clickhouse.tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate of sink.clickhouse.tls (cert_file %s, key_file %s): %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Close drops the idle inserters (chInserter) and closes the connections.
func (c *ClickHouse) Close() error {
	c.mu.Lock()
	for _, t := range c.tables {
		t.dropIdle()
	}
	c.mu.Unlock()
	return c.conn.Close()
}

// isIdent reports whether s matches [A-Za-z_][A-Za-z0-9_]*.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		letter := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '_'
		if !letter && !(i > 0 && ch >= '0' && ch <= '9') {
			return false
		}
	}
	return true
}

// quote back-quotes an identifier already checked by isIdent.
func quote(s string) string { return "`" + s + "`" }

// ClickHouseTable returns the name of p's ClickHouse table: sink.clickhouse.table, which
// defaults to the sink table (itself the cube name by default).
func ClickHouseTable(p *cube.Plan) string {
	if ch := p.Cube.Sink.ClickHouse; ch != nil && ch.Table != "" {
		return ch.Table
	}
	if p.Cube.Sink.Table != "" {
		return p.Cube.Sink.Table
	}
	return p.Cube.Name
}

// newTable derives the layout of table (in database db) from p.
func newTable(db, table string, p *cube.Plan) (*chTable, error) {
	if !isIdent(table) {
		return nil, fmt.Errorf("ClickHouse table name %q must match [A-Za-z_][A-Za-z0-9_]*", table)
	}
	t := &chTable{plan: p, name: quote(db) + "." + quote(table), gsByID: map[uint16]int{}}
	t.cols = []chCol{
		{name: "window_start", typ: "DateTime", kind: colStart},
		{name: "window_end", typ: "DateTime", kind: colEnd},
		{name: "granularity", typ: "String", kind: colGranularity},
		{name: "grouping_set", typ: "UInt16", kind: colGroupingSet},
	}
	t.dimCol = slices.Repeat([]int{-1}, len(p.Cube.Dimensions))
	for i, d := range p.Dimensions {
		name := p.Cube.Dimensions[d].Name
		t.dimCol[d] = i
		t.cols = append(t.cols, chCol{name: name, typ: "String", kind: colDim, index: i})
	}
	for i, m := range p.Measures {
		col := chCol{name: m.Name, index: i}
		switch m.Type {
		case cube.Count, cube.CountDistinct, cube.NewUsers:
			col.typ, col.kind = "UInt64", colUInt
		case cube.Min, cube.Max:
			col.typ, col.kind = "Nullable(Float64)", colNullFloat
		case cube.Retention:
			col.typ, col.kind = "UInt64", colUInt
			if m.Part == cube.RetentionRate {
				col.typ, col.kind = "Nullable(Float64)", colNullFloat
			}
		default:
			col.typ, col.kind = "Float64", colFloat
		}
		t.cols = append(t.cols, col)
	}
	t.cols = append(t.cols, chCol{name: "version", typ: "UInt64", kind: colVersion})
	seen := map[string]bool{}
	names := make([]string, len(t.cols))
	for i, col := range t.cols {
		if !isIdent(col.name) || seen[col.name] {
			return nil, fmt.Errorf("column %q of ClickHouse table %s is not a plain identifier or repeats a name", col.name, t.name)
		}
		seen[col.name] = true
		names[i] = quote(col.name)
	}
	t.insertSQL = "INSERT INTO " + t.name + " (" + strings.Join(names, ", ") + ")"
	for i, gs := range p.GroupingSets {
		t.gsByID[gs.ID] = i
		pos := make([]int, len(gs.Dims))
		for j, d := range gs.Dims {
			pos[j] = t.dimCol[d]
		}
		t.gsDims = append(t.gsDims, pos)
		at := slices.Repeat([]int{-1}, len(p.Dimensions))
		for j, c := range pos {
			at[c] = j
		}
		t.gsDimAt = append(t.gsDimAt, at)
		order := make([]int, len(pos))
		for j := range order {
			order[j] = j
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(pos[a], pos[b]) })
		t.gsColOrder = append(t.gsColOrder, order)
	}
	for _, w := range p.Windows {
		t.labels = append(t.labels, w.Label())
	}
	t.labelRank = make([]int, len(t.labels))
	for i, l := range t.labels {
		for _, other := range t.labels {
			if other < l {
				t.labelRank[i]++
			}
		}
	}
	return t, nil
}

// DDL returns the CREATE TABLE statement of p's result table in cfg's database (cfg.Table, or
// the default of ClickHouseTable when cfg.Table is empty), as EnsureTable runs it and
// `cubed plan --ddl` prints it. It is valid on ClickHouse 18.16 and current releases.
func DDL(p *cube.Plan, cfg *cube.ClickHouseSink) (string, error) {
	table, db := ClickHouseTable(p), "default"
	if cfg != nil {
		if cfg.Table != "" {
			table = cfg.Table
		}
		if cfg.Database != "" {
			db = cfg.Database
		}
	}
	if !isIdent(db) {
		return "", fmt.Errorf("ClickHouse database name %q must match [A-Za-z_][A-Za-z0-9_]*", db)
	}
	t, err := newTable(db, table, p)
	if err != nil {
		return "", err
	}
	return t.ddl(), nil
}

func (t *chTable) ddl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", t.name)
	order := []string{"`grouping_set`", "`granularity`", "`window_start`", "`window_end`"}
	for i, col := range t.cols {
		sep := ","
		if i == len(t.cols)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    %s %s%s\n", quote(col.name), col.typ, sep)
		if col.kind == colDim {
			order = append(order, quote(col.name))
		}
	}
	b.WriteString(")\nENGINE = ReplacingMergeTree(`version`)\nPARTITION BY toYYYYMM(`window_start`)\n")
	fmt.Fprintf(&b, "ORDER BY (%s)\n", strings.Join(order, ", "))
	return b.String()
}

// Define declares p's result table (ClickHouseTable(p)) in the sink's database, so that Write
// and Scan accept it. It does no I/O; the first Write creates or checks the table (EnsureTable).
// Defining the same table again replaces its plan.
func (c *ClickHouse) Define(p *cube.Plan) (table string, err error) {
	table = ClickHouseTable(p)
	t, err := newTable(c.db, table, p)
	if err != nil {
		return "", fmt.Errorf("defining ClickHouse table for cube %q: %w", p.Cube.Name, err)
	}
	c.mu.Lock()
	old := c.tables[table]
	c.tables[table] = t
	c.mu.Unlock()
	if old != nil {
		old.dropIdle()
	}
	return table, nil
}

func (c *ClickHouse) table(table string) (*chTable, error) {
	c.mu.Lock()
	t := c.tables[table]
	c.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("ClickHouse table %q was not defined (Define it first)", table)
	}
	return t, nil
}

// EnsureTable makes sure table exists with the layout of its plan: with create_tables (the
// default) it creates the database and the table when missing; an existing table whose columns
// (names and types) or engine disagree is refused with an error wrapping ErrClickHouseSchema
// that names every difference. Other errors (the server is unreachable …) may be retried.
func (c *ClickHouse) EnsureTable(ctx context.Context, table string) error {
	t, err := c.table(table)
	if err != nil {
		return err
	}
	t.ensureMu.Lock()
	defer t.ensureMu.Unlock()
	c.mu.Lock()
	done := t.ensured
	c.mu.Unlock()
	if done {
		return nil
	}
	if c.cfg.CreateTables {
		if err := c.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quote(c.db)); err != nil {
			return fmt.Errorf("creating ClickHouse database %q: %w", c.db, err)
		}
		if err := c.conn.Exec(ctx, t.ddl()); err != nil {
			return fmt.Errorf("creating ClickHouse table %s: %w", t.name, err)
		}
	}
	if err := c.checkTable(ctx, table, t); err != nil {
		return err
	}
	c.mu.Lock()
	t.ensured = true
	c.mu.Unlock()
	return nil
}

// checkTable compares the stored columns and engine of table with t.
func (c *ClickHouse) checkTable(ctx context.Context, table string, t *chTable) error {
	var engine string
	row := c.conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", c.db, table)
	if err := row.Scan(&engine); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("ClickHouse table %s is missing and sink.clickhouse.create_tables is false: %w", t.name, ErrClickHouseSchema)
		}
		return fmt.Errorf("reading the engine of ClickHouse table %s: %w", t.name, err)
	}
	rows, err := c.conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = ?", c.db, table)
	if err != nil {
		return fmt.Errorf("reading the columns of ClickHouse table %s: %w", t.name, err)
	}
	have := map[string]string{}
	var order []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return fmt.Errorf("reading the columns of ClickHouse table %s: %w", t.name, err)
		}
		have[name] = typ
		order = append(order, name)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("reading the columns of ClickHouse table %s: %w", t.name, err)
	}
	var problems []string
	if engine != "ReplacingMergeTree" {
		problems = append(problems, fmt.Sprintf("engine is %s, want ReplacingMergeTree(version)", engine))
	}
	want := map[string]bool{}
	for _, col := range t.cols {
		want[col.name] = true
		typ, ok := have[col.name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("column %s %s is missing", col.name, col.typ))
		case typ != col.typ:
			problems = append(problems, fmt.Sprintf("column %s is %s, want %s", col.name, typ, col.typ))
		}
	}
	for _, name := range order {
		if !want[name] && (name != legacyFinalColumn || have[name] != "UInt8") {
			problems = append(problems, fmt.Sprintf("column %s %s is not in the cube", name, have[name]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("refusing to write to ClickHouse table %s (cube %q): %s: %w",
			t.name, t.plan.Cube.Name, strings.Join(problems, "; "), ErrClickHouseSchema)
	}
	return nil
}

// legacyFinalColumn is the column "final UInt8" of tables made by earlier versions (see the
// table layout above): accepted in an existing table, never written or read.
const legacyFinalColumn = "final"

// maxDateTime is the last second a ClickHouse DateTime holds (a UInt32 of Unix seconds).
const maxDateTime = math.MaxUint32

// Write inserts rows into table (defined with Define), in INSERTs of about the batch size
// (WithClickHouseBatchRows; under one and a half times it, see insertParts) that name every
// column. It creates or checks the table first (EnsureTable). A failed INSERT is retried with
// exponential backoff and jitter until it succeeds or ctx ends, so Write blocks while
// ClickHouse is down (backpressure) and never drops a row; a retried INSERT that had in fact
// been stored only repeats rows with the same key and version, which FINAL and merges collapse.
// Write returns nil when every row is stored, and an error when ctx ended first (some INSERTs
// may have been stored), when a row cannot be stored (wrong window, grouping set or shape, a
// time outside DateTime; nothing is written), when the table disagrees with the plan (wrapping
// ErrClickHouseSchema) or when TLS cannot work as configured (wrapping ErrClickHouseTLS). Write
// does not keep rows.
func (c *ClickHouse) Write(ctx context.Context, table string, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	t, err := c.table(table)
	if err != nil {
		return err
	}
	b, err := t.idRowsOf(rows, nil)
	if err != nil {
		return fmt.Errorf("writing %d rows to ClickHouse table %s: %w", len(rows), t.name, err)
	}
	return c.write(ctx, table, &b, nil)
}

// WriteIDs is Write for rows in compact form (IDRows, as the pipeline emits them), which it
// validates first: windows, grouping sets, offsets and ids. It does not keep rows.
func (c *ClickHouse) WriteIDs(ctx context.Context, table string, rows *IDRows) error {
	return c.write(ctx, table, rows, nil)
}

// write is WriteIDs; every failed attempt sets failing, when not nil.
func (c *ClickHouse) write(ctx context.Context, table string, rows *IDRows, failing *atomic.Bool) error {
	if rows.Len() == 0 {
		return nil
	}
	t, err := c.table(table)
	if err != nil {
		return err
	}
	if err := t.checkIDRows(rows); err != nil {
		return fmt.Errorf("writing %d rows to ClickHouse table %s: %w", rows.Len(), t.name, err)
	}
	if err := c.retry(ctx, fmt.Sprintf("creating or checking ClickHouse table %s", t.name), failing, func(actx context.Context) error {
		return c.EnsureTable(actx, table)
	}); err != nil {
		return err
	}
	n := rows.Len()
	parts := insertParts(n, c.opts.batchRows)
	for k := range parts {
		chunk := *rows
		chunk.Rows = rows.Rows[k*n/parts : (k+1)*n/parts]
		what := fmt.Sprintf("inserting %d rows into ClickHouse table %s", len(chunk.Rows), t.name)
		if err := c.retry(ctx, what, failing, func(actx context.Context) error { return c.insert(actx, t, &chunk) }); err != nil {
			return err
		}
	}
	return nil
}

// insertParts returns how many INSERTs write n rows with batch size batch: n/batch rounded (at
// least one), of equal sizes (within one row), so that each holds less than one and a half
// batches. A buffer's batch, the batch size and at most one Add beyond it, thus goes as one
// INSERT (one part for the server to write and merge) rather than a full one and a small
// remainder: with 200,000-row batches and 33,000-row Adds (a minute's emission), remainders
// were every other INSERT of BenchmarkKafkaToClickHouse.
func insertParts(n, batch int) int {
	return max(1, (n+batch/2)/batch)
}

// retry runs fn (each attempt under the attempt timeout) until it succeeds, fails with
// ErrClickHouseSchema or a TLS error that retrying cannot fix (tlsProblem), or ctx ends. Every
// failed attempt sets failing, when not nil.
func (c *ClickHouse) retry(ctx context.Context, what string, failing *atomic.Bool, fn func(context.Context) error) error {
	wait := c.opts.minBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.opts.attemptTO)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if failing != nil {
			failing.Store(true)
		}
		if errors.Is(err, ErrClickHouseSchema) {
			return err
		}
		if hint := tlsProblem(err); hint != "" {
			return fmt.Errorf("%s: %w: %s: %w", what, ErrClickHouseTLS, hint, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up after %d attempts as the context ended (%w): %w", what, attempt, ctx.Err(), err)
		}
		// Equal jitter: half the wait fixed, half random, so that many writers do not retry in step.
		sleep := wait/2 + rand.N(wait/2+1)
		if c.opts.onRetry != nil {
			c.opts.onRetry(fmt.Errorf("%s (attempt %d): %w", what, attempt, err), attempt, sleep)
		}
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s: gave up after %d attempts as the context ended (%w): %w", what, attempt, ctx.Err(), err)
		case <-timer.C:
		}
		wait = min(2*wait, c.opts.maxBackoff)
	}
}

// Scan calls fn with every row of (table, window, gs) whose window_start is in [from, to) (Unix
// ms), in key order (window_start, window_end, then dimension values bytewise), each key once
// with its latest version (read with FINAL): the contract of Embedded.Scan, which a query must
// not be able to tell apart. from and to may be math.MinInt64 and math.MaxInt64; from ≥ to scans
// nothing. Every value of the query is a bound parameter; the table is a defined one (checked
// identifiers). The *Row passed to fn and its slices are reused after fn returns; its strings may
// be kept. If fn returns an error, Scan stops and returns it wrapped.
func (c *ClickHouse) Scan(ctx context.Context, table string, window int, gs uint16, from, to int64, fn func(r *Row) error) error {
	t, err := c.table(table)
	if err != nil {
		return err
	}
	if window < 0 || window >= len(t.labels) {
		return fmt.Errorf("scanning ClickHouse table %s: window index %d, want 0..%d", t.name, window, len(t.labels)-1)
	}
	g, ok := t.gsByID[gs]
	if !ok || from >= to {
		return nil // as the embedded store: an unknown grouping set has no rows
	}
	// window_start*1000 ≥ from ⇔ window_start ≥ ⌈from/1000⌉; < to ⇔ window_start < ⌈to/1000⌉.
	fromS, toS := ceilDiv1000(from), ceilDiv1000(to)
	if toS <= 0 || fromS > maxDateTime {
		return nil
	}
	var q strings.Builder
	q.WriteString("SELECT `window_start`, `window_end`")
	var dimNames []string
	for _, pos := range t.gsDims[g] {
		for _, col := range t.cols {
			if col.kind == colDim && col.index == pos {
				dimNames = append(dimNames, quote(col.name))
			}
		}
	}
	for _, d := range dimNames {
		q.WriteString(", " + d)
	}
	var measures []chCol
	for _, col := range t.cols {
		if col.kind == colUInt || col.kind == colFloat || col.kind == colNullFloat {
			measures = append(measures, col)
			q.WriteString(", " + quote(col.name))
		}
	}
	q.WriteString(", `version` FROM " + t.name + " FINAL WHERE `grouping_set` = ? AND `granularity` = ?")
	args := []any{gs, t.labels[window]}
	if fromS > 0 {
		q.WriteString(" AND `window_start` >= toDateTime(?)")
		args = append(args, uint32(fromS))
	}
	if toS <= maxDateTime {
		q.WriteString(" AND `window_start` < toDateTime(?)")
		args = append(args, uint32(toS))
	}
	q.WriteString(" ORDER BY `window_start`, `window_end`")
	for _, d := range dimNames {
		q.WriteString(", " + d)
	}
	rows, err := c.conn.Query(ctx, q.String(), args...)
	if err != nil {
		return fmt.Errorf("scanning ClickHouse table %s window %d grouping set %d: %w", t.name, window, gs, err)
	}
	defer rows.Close()
	var (
		start, end time.Time
		version    uint64
		r          Row
	)
	dims := make([]string, len(dimNames))
	uints := make([]uint64, len(measures))
	floats := make([]float64, len(measures))
	nulls := make([]*float64, len(measures))
	dest := []any{&start, &end}
	for i := range dims {
		dest = append(dest, &dims[i])
	}
	for i, m := range measures {
		switch m.kind {
		case colUInt:
			dest = append(dest, &uints[i])
		case colFloat:
			dest = append(dest, &floats[i])
		default:
			dest = append(dest, &nulls[i])
		}
	}
	dest = append(dest, &version)
	r.Window, r.GroupingSet = window, gs
	r.Values = make([]float64, len(measures))
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("scanning ClickHouse table %s window %d grouping set %d: %w", t.name, window, gs, err)
		}
		r.Start, r.End = start.Unix()*1000, end.Unix()*1000
		r.Dims = append(r.Dims[:0], dims...)
		for i, m := range measures {
			switch m.kind {
			case colUInt:
				r.Values[i] = float64(uints[i])
			case colFloat:
				r.Values[i] = floats[i]
			default:
				if nulls[i] == nil {
					r.Values[i] = math.NaN()
				} else {
					r.Values[i] = *nulls[i]
				}
			}
		}
		r.Version = version
		if err := fn(&r); err != nil {
			return fmt.Errorf("scanning ClickHouse table %s window %d grouping set %d: %w", t.name, window, gs, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scanning ClickHouse table %s window %d grouping set %d: %w", t.name, window, gs, err)
	}
	return nil
}

// ceilDiv1000 is ⌈ms/1000⌉ without overflow.
func ceilDiv1000(ms int64) int64 {
	q := ms / 1000
	if ms%1000 > 0 {
		q++
	}
	return q
}

// ClickHouseBuffer collects the rows of one table and writes them with Write in batches, in the
// background: a batch is handed to a writer goroutine when the buffer holds the batch size
// (WithClickHouseBatchRows), or at the first Add once the flush interval
// (WithClickHouseFlushInterval) has passed since the last write began: at most about one INSERT
// per second, as ClickHouse advises, while rows that come at most that often (an early fire every
// second) are written as they come rather than an interval later. The caller goes on
// aggregating while a batch is inserted (double buffering: one batch filling, one in flight).
//
// It is bounded: while a write is in flight Add keeps filling the other batch up to the batch
// size, then blocks until the write ends; once an attempt of the write has failed (ClickHouse
// is down, the write is being retried) the next Add blocks until it ends (backpressure: a Kafka
// cube stops polling). A write
// that fails (its context ended, or an error retrying cannot fix) keeps its rows; the error is
// returned by the next Add or Flush, and the rows are written again by the next due Add or
// Flush. Flush writes everything and waits, so a checkpoint taken after it never covers rows
// ClickHouse has not got. It is not safe for concurrent use, except Len.
type ClickHouseBuffer struct {
	c      *ClickHouse
	table  string
	fill   chBatch    // rows being added
	fly    chBatch    // rows handed to the writer, or left by a failed write
	done   chan error // while a write of fly is in flight: receives its result
	failed bool       // fly holds the rows of a failed write
	last   time.Time  // when the last write began (the now of its Add, or Flush's clock)
	n      atomic.Int64
	// failing is set by the write in flight when one of its attempts fails.
	failing atomic.Bool
	added   int64 // rows ever added
	// stored counts the rows ever stored (batches are stored in the order they were added);
	// storedSig is closed and replaced whenever it grows. Guarded by storedMu.
	storedMu  sync.Mutex
	stored    int64
	storedSig chan struct{}
}

// chBatch is a batch of rows in compact form (IDRows) in its own arrays, reused after the batch
// is written.
type chBatch struct {
	IDRows
	maxAdd int // the most rows one add brought
}

// add copies rows into the batch, which is written once it holds batchRows rows: the records
// (their offsets moved past what the batch holds), the whole of rows.IDs and rows.Values, and
// each dimension's dictionary snapshot when it is longer than the batch's. With take, an empty
// batch takes rows' arrays instead and gives rows its own, emptied (Move).
func (c *chBatch) add(rows *IDRows, batchRows int, take bool) {
	c.maxAdd = max(c.maxAdd, len(rows.Rows))
	c.addDicts(rows.Dicts)
	if take && len(c.Rows) == 0 {
		c.Rows, rows.Rows = rows.Rows, c.Rows
		c.IDs, rows.IDs = rows.IDs, c.IDs
		c.Values, rows.Values = rows.Values, c.Values
		return
	}
	if need := len(c.Rows) + len(rows.Rows); need > cap(c.Rows) {
		// Twice the room needed, but no more than a whole batch and the biggest Add seen: the
		// batch fills up to batchRows before it is written, and by at most one Add beyond. A
		// busy cube's batch doubles its way up to that while it warms up and then keeps it
		// (reset keeps the capacity), so later Adds copy nothing, while a quiet cube's stays
		// small. The arrays of ids and measures get the same share per row as the rows so far.
		want := max(need, min(batchRows+c.maxAdd, 2*need))
		c.Rows = slices.Grow(c.Rows, want-len(c.Rows))
		c.IDs = slices.Grow(c.IDs, (len(c.IDs)+len(rows.IDs))*want/need-len(c.IDs))
		c.Values = slices.Grow(c.Values, (len(c.Values)+len(rows.Values))*want/need-len(c.Values))
	}
	id0, v0 := int32(len(c.IDs)), int32(len(c.Values))
	r0 := len(c.Rows)
	c.Rows = append(c.Rows, rows.Rows...)
	for i := range c.Rows[r0:] {
		r := &c.Rows[r0+i]
		r.IDs += id0
		r.Values += v0
	}
	c.IDs = append(c.IDs, rows.IDs...)
	c.Values = append(c.Values, rows.Values...)
}

// addDicts keeps each dimension's snapshot of dicts that is longer than the batch's.
func (c *chBatch) addDicts(dicts [][]string) {
	if len(c.Dicts) < len(dicts) {
		c.Dicts = slices.Grow(c.Dicts, len(dicts)-len(c.Dicts))[:len(dicts)]
	}
	for d, vals := range dicts {
		if len(vals) > len(c.Dicts[d]) {
			c.Dicts[d] = vals
		}
	}
}

// reset empties the batch, keeping its capacity (and its dictionary snapshots, which later
// snapshots only extend).
func (c *chBatch) reset() {
	c.Rows, c.IDs, c.Values = c.Rows[:0], c.IDs[:0], c.Values[:0]
}

// NewBuffer returns an empty buffer for table (defined with Define).
func (c *ClickHouse) NewBuffer(table string) *ClickHouseBuffer {
	return &ClickHouseBuffer{c: c, table: table, storedSig: make(chan struct{})}
}

// Added is the number of rows ever added to the buffer. Call it from the goroutine that adds.
func (b *ClickHouseBuffer) Added() int64 { return b.added }

// WaitStored blocks until the first n rows ever added (see Added) are stored in ClickHouse, or
// ctx ends (returning its error). Rows are stored in the order they were added, so a checkpoint
// taken after Added returned n may be committed once WaitStored(n) returns: it covers no row
// that ClickHouse has not got. Any goroutine may call it; it does not write anything itself
// (the adding goroutine's Add and Flush do).
func (b *ClickHouseBuffer) WaitStored(ctx context.Context, n int64) error {
	for {
		b.storedMu.Lock()
		stored, sig := b.stored, b.storedSig
		b.storedMu.Unlock()
		if stored >= n {
			return nil
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d rows to be stored in ClickHouse table %s (%d are): %w", n, b.table, stored, ctx.Err())
		}
	}
}

// markStored counts n more rows stored and wakes WaitStored.
func (b *ClickHouseBuffer) markStored(n int) {
	b.storedMu.Lock()
	b.stored += int64(n)
	close(b.storedSig)
	b.storedSig = make(chan struct{})
	b.storedMu.Unlock()
}

// Len is the number of buffered rows (not yet known to be stored), in flight or not. It is safe
// to call from any goroutine, also while Add or Flush blocks: a status page shows what a
// ClickHouse outage holds back.
func (b *ClickHouseBuffer) Len() int { return int(b.n.Load()) }

// Add copies rows into the buffer (the caller keeps ownership of rows and their arrays; the
// dictionary snapshots, which must not change, are kept) and, when the buffer is due at now,
// hands them to the writer. It blocks while the writer is busy and the buffer holds
// a full batch besides, and while the write in flight is failing (ClickHouse down) until it gets
// through; it returns the error of a write that failed for good (its context ended, or an error
// retrying cannot fix). Call it with no rows to write a buffer that became due with time. ctx
// bounds the write it starts.
func (b *ClickHouseBuffer) Add(ctx context.Context, rows *IDRows, now time.Time) error {
	return b.add(ctx, rows, now, false)
}

// Move is Add, except that the buffer may take rows' arrays of records, ids and measures instead
// of copying them (when its filling batch is empty, as it is after every batch handed to the
// writer), and give rows its own arrays, emptied, to fill again; else it copies, as Add does.
// Either way rows comes back empty (their Dicts stay) and the buffer keeps no reference to the
// arrays rows holds afterwards. A caller done with its rows once they are buffered saves a copy
// of every row: a pipeline writing only to ClickHouse (sink.embedded false).
func (b *ClickHouseBuffer) Move(ctx context.Context, rows *IDRows, now time.Time) error {
	return b.add(ctx, rows, now, true)
}

func (b *ClickHouseBuffer) add(ctx context.Context, rows *IDRows, now time.Time, take bool) error {
	n := rows.Len()
	b.fill.add(rows, b.c.opts.batchRows, take)
	if take {
		rows.Rows, rows.IDs, rows.Values = rows.Rows[:0], rows.IDs[:0], rows.Values[:0]
	}
	b.n.Add(int64(n))
	b.added += int64(n)
	full := len(b.fill.Rows) >= b.c.opts.batchRows
	if err := b.collect(ctx, false); err != nil {
		return err
	}
	if b.done != nil && b.failing.Load() {
		// ClickHouse is down: hold the caller until the write in flight gets through.
		if err := b.collect(ctx, true); err != nil {
			return err
		}
	}
	due := full || now.Sub(b.last) >= b.c.opts.flushInterval
	if !due || len(b.fill.Rows) == 0 && !b.failed {
		return nil
	}
	if b.done != nil {
		if !full {
			return nil // the next Add tries again
		}
		if err := b.collect(ctx, true); err != nil {
			return err
		}
	}
	b.last = now
	if !b.failed {
		b.fill, b.fly = b.fly, b.fill
	}
	b.failed = false
	b.failing.Store(false)
	done := make(chan error, 1)
	b.done = done
	fly := &b.fly.IDRows
	go func() {
		err := b.c.write(ctx, b.table, fly, &b.failing)
		if err == nil {
			b.markStored(fly.Len())
		}
		done <- err
	}()
	return nil
}

// collect takes the result of the write in flight, if any: at once when it has ended, else only
// with wait (until it ends or ctx does).
func (b *ClickHouseBuffer) collect(ctx context.Context, wait bool) error {
	if b.done == nil {
		return nil
	}
	var err error
	if wait {
		select {
		case err = <-b.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for an INSERT into ClickHouse table %s: %w", b.table, ctx.Err())
		}
	} else {
		select {
		case err = <-b.done:
		default:
			return nil
		}
	}
	b.done = nil
	if err != nil {
		b.failed = true
		return err
	}
	b.release(&b.fly)
	return nil
}

// Flush writes every buffered row now and waits (see Write). On error the rows stay buffered.
func (b *ClickHouseBuffer) Flush(ctx context.Context) error {
	if err := b.collect(ctx, true); err != nil && ctx.Err() != nil {
		return err
	}
	// A failed write's rows go again, then the filling batch.
	if len(b.fly.Rows) > 0 || len(b.fill.Rows) > 0 {
		b.last = time.Now()
	}
	if err := b.writeNow(ctx, &b.fly); err != nil {
		b.failed = true
		return err
	}
	b.failed = false
	return b.writeNow(ctx, &b.fill)
}

// writeNow writes batch c (one of b's) and waits; once stored, its rows leave the buffer.
func (b *ClickHouseBuffer) writeNow(ctx context.Context, c *chBatch) error {
	if len(c.Rows) == 0 {
		return nil
	}
	if err := b.c.write(ctx, b.table, &c.IDRows, nil); err != nil {
		return err
	}
	b.markStored(len(c.Rows))
	b.release(c)
	return nil
}

// release drops stored batch c's rows from the buffer and empties c for reuse.
func (b *ClickHouseBuffer) release(c *chBatch) {
	b.n.Add(-int64(len(c.Rows)))
	c.reset()
}
