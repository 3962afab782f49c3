// Package cube holds cube models: the YAML contract users author (dimensions, measures, grouping
// sets, windows), its strict parsing with FILE:LINE:COL diagnostics, and the compilation of a
// cube into a Plan, the two-layer aggregation graph that the rest of cubed runs.
//
// The model and the plan follow Apache Kylin's cuboids (a grouping set is a cuboid, identified by
// the bitmask of its dimensions) and Kuaishou's Flink real-time multi-dimensional platform
// (a full-dimension layer feeding one reduced-dimension node per grouping set).
package cube

import (
	"time"
)

// Model is one parsed model file: a format version and its cubes.
type Model struct {
	// Path is the file the model was read from ("" when parsed from bytes without a name).
	Path string
	// Version is the contract version; only 1 exists.
	Version int
	// Cubes in file order; names are unique.
	Cubes []*Cube
}

// Cube is one validated cube model with every default filled in.
type Cube struct {
	// Name matches [a-z][a-z0-9_]* and is unique in its file.
	Name        string
	Description string    // free text for people
	Source      Source    // where events come from
	EventTime   EventTime // how event time is read and watermarks follow it
	// Timezone is the zone in which day and week windows start (default UTC).
	Timezone *time.Location
	// Dimensions in declaration order; at most MaxDimensions.
	Dimensions []Dimension
	// Measures in declaration order.
	Measures []Measure
	// GroupingSets lists each grouping set as dimension names, in the order of Dimensions,
	// expanded from grouping_sets, cube or rollup, without duplicates, in first-declared order.
	GroupingSets [][]string
	// Windows in declaration order; at least one.
	Windows []Window
	Sink    Sink // where results go
	// CheckpointEvery is the cube's checkpoint interval (processing time); 0 leaves the
	// service's (cubed --checkpoint-every, default 10s).
	CheckpointEvery time.Duration
	// State bounds the memory of the cube's aggregation state (`state:`).
	State StateConfig
	// Dashboard is the cube's entry in the model's dashboards: section; nil when it has none
	// (DashboardOf then derives the default one).
	Dashboard *Dashboard
}

// MaxDimensions bounds the dimensions of one cube, so that a grouping-set id fits a uint16.
const MaxDimensions = 16

// Source says where a cube's events come from; exactly one of Kafka and File is set.
type Source struct {
	Kafka *KafkaSource // set for a Kafka topic
	File  *FileSource  // set for a finite file
	// Format is FormatJSON (one object per line) or FormatCSV (first row names the fields).
	Format string
	// Columns names the CSV columns when the input has no header row (required for CSV from
	// Kafka, where every message is one line); empty means the first row is the header.
	Columns []string
}

// Source formats.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// KafkaSource is a Kafka topic read through a consumer group.
type KafkaSource struct {
	Brokers []string // seed brokers, host:port
	Topic   string   // the topic; every partition is read
	// Group defaults to "cubed-" + the cube name.
	Group string
	// Start is "earliest" (default) or "latest"; it applies only when the group has no committed
	// offset yet.
	Start string
}

// FileSource is a finite file of events, gzip-compressed or not (detected from its content).
type FileSource struct {
	// Path is absolute: a relative path in the model is resolved against the model file's folder.
	Path string
}

// EventTime says how the event time is read and how the watermark follows it.
type EventTime struct {
	// Field is a dotted path into the event ("time", "meta.ts"); Path is it split on dots.
	Field string
	Path  []string
	// Format is TimeRFC3339, TimeUnixS, TimeUnixMS or a Go layout such as "2006-01-02 15:04:05".
	Format string
	// Location is the zone of the field when the format carries none (default UTC).
	Location *time.Location
	// MaxOutOfOrderness: watermark = max event time seen - this (default 5s).
	MaxOutOfOrderness time.Duration
	// AllowedLateness: a window closes when the watermark passes its end + this (default 0).
	AllowedLateness time.Duration
	// IdleTimeout: a partition without events for this long (processing time) stops holding the
	// watermark and watermark alignment back (default 30s); an assigned Kafka partition with
	// nothing to deliver (empty, or starting at its end: start latest, or a committed offset at
	// the end) stops at once.
	IdleTimeout time.Duration
	// MaxDrift: a Kafka partition whose event time runs ahead of the slowest active partition's
	// by more than this is held back until the others catch up (watermark alignment; default
	// 5m, 0 disables). It bounds the state a backlog replay keeps open.
	MaxDrift time.Duration
}

// Event time formats besides Go layouts.
const (
	TimeRFC3339 = "rfc3339"
	TimeUnixS   = "unix_s"
	TimeUnixMS  = "unix_ms"
)

// Dimension is one dimension: a name and the field it reads. Booleans and numbers become their
// text; a missing or null field becomes "".
type Dimension struct {
	Name string // the result column, [a-z][a-z0-9_]*
	// Field defaults to Name; Path is it split on dots ("actor.login" → ["actor", "login"]).
	Field string
	Path  []string
}

// MeasureType is the kind of a measure.
type MeasureType string

// Measure types. NewUsers and Retention are computed only in day windows (see Measure).
const (
	Count         MeasureType = "count"
	Sum           MeasureType = "sum"
	Min           MeasureType = "min"
	Max           MeasureType = "max"
	CountDistinct MeasureType = "count_distinct"
	NewUsers      MeasureType = "new_users"
	Retention     MeasureType = "retention"
)

// Measure is one measure. Count has no field; every other type needs one.
//
// NewUsers counts the distinct ids of a group on a day that the cube had never seen before that
// day (model time zone): new_users(g, d) = |A(g, d) ∩ new(d)|, where A(g, d) is the set of ids
// active in group g on day d and new(d) the cube-wide set of ids first seen on d.
//
// Retention is day-N retention: retention(g, d) = |A(g, d) ∩ C(g, d−N)| / |C(g, d−N)|, where the
// cohort C is A (Cohort active) or A ∩ new (Cohort new). It yields three result columns: Name
// (the ratio, null over an empty cohort), Name+RetainedSuffix (the numerator) and
// Name+CohortSuffix (the denominator). Both types need day windows only.
type Measure struct {
	Name  string      // the result column
	Type  MeasureType // the aggregate
	Field string      // dotted path of the input field ("" for count)
	Path  []string    // Field split on dots
	// Days is N of a retention measure (1 ≤ Days ≤ MaxRetentionDays); 0 for other types.
	Days int
	// Cohort is the cohort of a retention measure (CohortActive or CohortNew); "" for other
	// types.
	Cohort Cohort
}

// Cohort is the set of users whose return a retention measure counts.
type Cohort string

// Cohorts of a retention measure.
const (
	// CohortActive is every user active in the group N days before (the default).
	CohortActive Cohort = "active"
	// CohortNew is the users active in the group N days before who were new on that day.
	CohortNew Cohort = "new"
)

// MaxRetentionDays bounds N of a day-N retention measure: the cube keeps N days of per-group
// daily id sets for it.
const MaxRetentionDays = 366

// Suffixes of the numerator and denominator columns of a retention measure.
const (
	RetainedSuffix = "_retained"
	CohortSuffix   = "_cohort"
)

// RetentionPart says which of a retention measure's three result columns a MeasurePlan is.
type RetentionPart int

// Parts of a retention measure, in the order of their columns.
const (
	// RetentionRate is |A(g, d) ∩ C(g, d−N)| / |C(g, d−N)|, null when the cohort is empty.
	RetentionRate RetentionPart = iota
	// RetentionRetained is the numerator |A(g, d) ∩ C(g, d−N)|.
	RetentionRetained
	// RetentionCohort is the denominator |C(g, d−N)|.
	RetentionCohort
)

// String returns "rate", "retained" or "cohort".
func (p RetentionPart) String() string {
	switch p {
	case RetentionRetained:
		return "retained"
	case RetentionCohort:
		return "cohort"
	}
	return "rate"
}

// Granularity is the length of a window.
type Granularity string

// Granularities. Day and week windows start at midnight in the cube's Timezone (weeks on Monday).
const (
	Minute Granularity = "minute"
	Hour   Granularity = "hour"
	Day    Granularity = "day"
	Week   Granularity = "week"
)

// Window is one window spec. Step = 0 is a tumbling window; Step > 0 is a cumulative window
// [start, start+Step), [start, start+2·Step) … up to the granularity (Flink's CUMULATE).
type Window struct {
	Granularity Granularity // the window length
	// Step divides the granularity's nominal length (24h for a day, 168h for a week).
	Step time.Duration
	// EmitEvery is the early-fire period in processing time (default 1m).
	EmitEvery time.Duration
}

// Sink says where results go: the embedded store by default, also ClickHouse when ClickHouse is
// set, or ClickHouse alone (`embedded: false`). The query API reads the embedded store when the
// cube has one, else ClickHouse.
type Sink struct {
	// Table is the embedded store's table; it defaults to the cube name.
	Table string
	// Retention, when > 0, deletes embedded result rows whose window ended more than this long
	// before the cube's watermark (default 0: keep forever).
	Retention time.Duration
	// ClickHouse, when set, also writes every result row to a ClickHouse table.
	ClickHouse *ClickHouseSink
	// NoEmbedded is `embedded: false`: no embedded result store, every result row goes to
	// ClickHouse only, which the query API then reads (the pipeline's state and checkpoints stay
	// in the data dir). It requires ClickHouse and excludes Retention.
	NoEmbedded bool
}

// ClickHouseSink is a ClickHouse table that receives a cube's result rows (one table per cube,
// ReplacingMergeTree(version); see sink.DDL for the layout).
type ClickHouseSink struct {
	// Addr is host:port of the server's native protocol (default DefaultClickHouseAddr).
	Addr string
	// Database is created when missing (default "default").
	Database string
	// Table matches [A-Za-z_][A-Za-z0-9_]* (default the sink table, which defaults to the cube
	// name).
	Table string
	// Username defaults to "default".
	Username string
	// Password is the password itself; PasswordEnv names an environment variable read when the
	// sink connects instead. At most one of the two is set.
	Password    string
	PasswordEnv string
	// TLS, when set, connects with TLS, to the server's secure native port (tcp_port_secure,
	// usually 9440). `tls: true` verifies the server against the system roots; a mapping sets
	// the fields of ClickHouseTLS. Nil (`tls: false`, the default) connects in plain text.
	TLS *ClickHouseTLS
	// CreateTables creates the database and the table when missing (default true); when false a
	// missing table is an error.
	CreateTables bool
	// Compression is how INSERT blocks travel to the server (compression): CompressionAuto (the
	// default: none to a loopback address, lz4 to any other, as clickhouse-client does),
	// CompressionNone, CompressionLZ4 or CompressionZSTD. The server stores parts compressed
	// whatever this is; it trades the CPU of both sides for network bandwidth.
	Compression string
}

// Values of ClickHouseSink.Compression.
const (
	CompressionAuto = "auto"
	CompressionNone = "none"
	CompressionLZ4  = "lz4"
	CompressionZSTD = "zstd"
)

// ClickHouseTLS is sink.clickhouse.tls: how the sink verifies the server and, optionally,
// proves who it is. The zero value verifies the server's certificate against the system roots
// for the host of Addr. Relative paths are relative to the model file's folder (LoadFile
// resolves them); the files are read when the sink opens (sink.OpenClickHouse), not by lint.
type ClickHouseTLS struct {
	// CAFile is a PEM file of the certificate authorities that the server's certificate must
	// chain to (ca_file; default: the system roots). Use it for a private CA or a self-signed
	// server certificate.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its private key, presented to a
	// server that requires client certificates (cert_file, key_file: both or neither).
	CertFile string
	KeyFile  string
	// ServerName is the name the server's certificate must carry (server_name; default: the
	// host of Addr). Set it when connecting by IP address to a certificate issued for a name.
	ServerName string
	// InsecureSkipVerify accepts any server certificate (insecure_skip_verify): the connection
	// is encrypted but the server is not authenticated, so anyone on the path can read it. For
	// tests only; it excludes ca_file and server_name.
	InsecureSkipVerify bool
}

// DefaultClickHouseAddr is the native-protocol address a ClickHouse sink uses by default.
const DefaultClickHouseAddr = "127.0.0.1:9000"

// ClickHouseColumns are the columns of a ClickHouse result table besides the dimensions and
// measures, which must not use these names ("final" is the column of tables made by earlier
// versions, still accepted in an existing table, so it stays reserved).
var ClickHouseColumns = []string{"window_start", "window_end", "granularity", "grouping_set", "version", "final"}

// Diagnostic is one problem found in a model file, printed as FILE:LINE:COL: message.
type Diagnostic struct {
	File    string // the model file as given
	Line    int    // 1-based
	Col     int    // 1-based
	Message string // what is wrong and what would be valid
}

// Plan is a cube compiled into cubed's two-layer aggregation graph.
//
// Layer 1 (full dimension) groups events by (window, every dimension that any grouping set uses);
// layer 2 holds one reduced-dimension node per grouping set, fed by layer 1's per-flush deltas.
type Plan struct {
	Cube *Cube // the validated model the plan was compiled from
	// Dimensions are the layer-1 key: indices into Cube.Dimensions of every dimension used by
	// some grouping set, ascending.
	Dimensions []int
	// GroupingSets in the order of Cube.GroupingSets.
	GroupingSets []GroupingSet
	// Windows in the order of Cube.Windows.
	Windows []WindowSpec
	// DistinctFields lists the id fields of count_distinct, new_users and retention measures
	// (dotted paths), each once, in first-use order; a measure's DistinctField indexes it. Each
	// is its own dictionary namespace.
	DistinctFields []string
	// Measures are the measure result columns, in the order of Cube.Measures, with their inputs
	// resolved: one per measure, except a retention measure, which has three in a row (rate,
	// retained, cohort; see Measure).
	Measures []MeasurePlan
	// ValueFields lists the numeric fields read by sum, min and max measures, each once.
	ValueFields []string
	// Fingerprint is a hex SHA-256 of everything that changes stored results (dimensions and
	// their fields, measures, grouping sets, windows, event time, time zone); two plans with the
	// same fingerprint produce the same rows from the same events.
	Fingerprint string
}

// GroupingSet is one reduced-dimension node of layer 2 (a Kylin cuboid).
type GroupingSet struct {
	// ID is the cuboid id: bit i is set when Cube.Dimensions[i] is in the set. Stable as long as
	// the dimension list only grows at its end.
	ID uint16
	// Names of the set's dimensions, in Cube.Dimensions order.
	Names []string
	// Dims are indices into Cube.Dimensions, ascending.
	Dims []int
	// Project are positions in Plan.Dimensions (the layer-1 key) of Dims, in the same order.
	Project []int
}

// Label names the window in the granularity column of a ClickHouse result table: the
// granularity ("hour", "day" …) for a tumbling window, and granularity/step ("day/1h") for a
// cumulative one, so that no two windows of a cube share a label.
func (w Window) Label() string {
	if w.Step <= 0 {
		return string(w.Granularity)
	}
	return string(w.Granularity) + "/" + formatDuration(w.Step)
}

// WindowSpec is a compiled window.
type WindowSpec struct {
	Window
	// Cumulative is Step > 0.
	Cumulative bool
}

// MeasurePlan is one result column of a compiled measure. Measure.Name is the column's name
// (for a retention measure's numerator and denominator, the measure's name plus RetainedSuffix
// or CohortSuffix).
type MeasurePlan struct {
	Measure
	// ValueField indexes Plan.ValueFields for sum, min and max; -1 otherwise.
	ValueField int
	// DistinctField indexes Plan.DistinctFields for count_distinct, new_users and retention;
	// -1 otherwise.
	DistinctField int
	// Part is the column's part of a retention measure (RetentionRate for every other type).
	Part RetentionPart
	// Source indexes Cube.Measures: the measure this column belongs to.
	Source int
}
