// Package pipeline wires compiled cubes into running graphs: a source (Kafka or file) feeds
// parallel decoders, the dictionary turns dimension values and distinct-count ids into dense
// ids, the two-layer aggregator (package aggregate) folds them into window state, and emitted
// rows are upserted into the embedded result store. A Service runs every cube of one model file
// and implements web.Backend for the HTTP API.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/dictionary"
	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/web"
)

// Options configures a Service.
type Options struct {
	// DataDir holds the embedded store (DataDir/store) and dead letters
	// (DataDir/deadletter/<cube>.jsonl). Required.
	DataDir string
	// Workers is the parallelism of decoding and of each aggregation layer. This overrides the
	// default of runtime.GOMAXPROCS(0).
	Workers int
	// BatchSize is the most records decoded and aggregated as one flush. This overrides the
	// default of 32768.
	BatchSize int
	// Logger receives the service's logs. This overrides the default of slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics. This overrides the default of a new registry.
	Registry *prometheus.Registry
	// Brokers, when set, replace the brokers of every Kafka source (the dev mode's in-process
	// broker).
	Brokers []string
	// CheckpointEvery is the checkpoint interval (processing time). This overrides the default
	// of DefaultCheckpointEvery.
	CheckpointEvery time.Duration
	// NoRestore opens the data dir without loading checkpointed state (the query command only
	// reads results).
	NoRestore bool
}

// Service runs the cubes of one model file over one data dir.
type Service struct {
	opts      Options
	log       *slog.Logger
	modelFile string
	modelYAML []byte
	plans     []*cube.Plan
	db        *pebble.DB
	store     *sink.Embedded
	dict      dictionary.Dictionary
	reg       *prometheus.Registry
	metrics   *metrics
	cubes     []*cubeRun
	byName    map[string]*cubeRun
	ready     atomic.Bool
	closeOnce sync.Once
}

// LoadPlans parses, validates and compiles the model file. Diagnostics come back as one error
// with one FILE:LINE:COL line each.
func LoadPlans(modelFile string) ([]*cube.Plan, []byte, error) {
	data, err := os.ReadFile(modelFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading model: %w", err)
	}
	m, diags, err := cube.LoadFile(modelFile)
	if err != nil {
		return nil, nil, err
	}
	if len(diags) > 0 {
		lines := make([]string, len(diags))
		for i, d := range diags {
			lines[i] = d.String()
		}
		return nil, nil, fmt.Errorf("invalid model:\n%s", strings.Join(lines, "\n"))
	}
	var plans []*cube.Plan
	for _, c := range m.Cubes {
		p, err := cube.Compile(c)
		if err != nil {
			return nil, nil, fmt.Errorf("compiling cube %q: %w", c.Name, err)
		}
		plans = append(plans, p)
	}
	return plans, data, nil
}

// Open loads the model and opens the data dir. It runs nothing until Run or Replay.
func Open(modelFile string, opts Options) (*Service, error) {
	if opts.DataDir == "" {
		return nil, errors.New("opening service: no data dir")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 32768
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	plans, data, err := LoadPlans(modelFile)
	if err != nil {
		return nil, err
	}
	db, err := sink.OpenDir(filepath.Join(opts.DataDir, "store"))
	if err != nil {
		return nil, err
	}
	if err := checkCompatible(db, opts.DataDir, plans); err != nil {
		db.Close()
		return nil, err
	}
	store := sink.OpenEmbedded(db)
	if err := store.EnableIngest(filepath.Join(opts.DataDir, "ingest")); err != nil {
		db.Close()
		return nil, err
	}
	s := &Service{
		opts: opts, log: opts.Logger, modelFile: modelFile, modelYAML: data, plans: plans,
		db: db, store: store, dict: dictionary.NewStored(dictStore{db}), reg: opts.Registry,
		metrics: newMetrics(opts.Registry), byName: map[string]*cubeRun{},
	}
	for _, p := range plans {
		c, err := newCubeRun(s, p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.cubes = append(s.cubes, c)
		s.byName[p.Cube.Name] = c
	}
	if !opts.NoRestore {
		for _, c := range s.cubes {
			if err := c.restore(); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// Close stops writing and closes the store. It is safe to call more than once.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		for _, c := range s.cubes {
			c.close()
		}
		err = s.db.Close()
	})
	return err
}

// MarkReady declares the service ready without running it (the CLI's query command reads the
// store only).
func (s *Service) MarkReady() { s.ready.Store(true) }

// Registry returns the Prometheus registry of the service's metrics.
func (s *Service) Registry() *prometheus.Registry { return s.reg }

// Summary is the outcome of one cube's replay.
type Summary struct {
	Cube       string `json:"cube"`        // the cube name
	Events     uint64 `json:"events"`      // events aggregated by this run
	BadEvents  uint64 `json:"bad_events"`  // records that did not decode
	LateEvents uint64 `json:"late_events"` // late events
	Rows       uint64 `json:"rows"`        // result rows written
	// PeakStateBytes is the largest aggregation state seen at a checkpoint, before eviction.
	PeakStateBytes uint64 `json:"peak_state_bytes"`
	// Evictions counts distinct-set blocks dropped from memory to stay within state.memory_limit;
	// BlockLoads counts those read back.
	Evictions  int   `json:"evictions"`
	BlockLoads int64 `json:"block_loads"`
	// DictionaryTrims counts the times a dictionary namespace outgrew state.dictionary_cache and
	// dropped its entries from memory after a checkpoint.
	DictionaryTrims int `json:"dictionary_trims"`
}

// Replay runs every cube whose source is a file to the end of its input, closes all its windows
// and writes the final rows. Cubes with a Kafka source are skipped.
func (s *Service) Replay(ctx context.Context) ([]Summary, error) {
	s.ready.Store(true)
	var out []Summary
	for _, c := range s.cubes {
		if c.plan.Cube.Source.File == nil {
			continue
		}
		if err := c.runFile(ctx, false); err != nil {
			return out, fmt.Errorf("replaying cube %q: %w", c.name, err)
		}
		out = append(out, c.summary())
	}
	return out, nil
}

// Run runs every cube until ctx ends: Kafka cubes consume forever, file cubes run to the end of
// their input (early-firing as they go) and then stop.
func (s *Service) Run(ctx context.Context) error {
	s.ready.Store(true)
	errc := make(chan error, len(s.cubes))
	for _, c := range s.cubes {
		go func() {
			var err error
			if c.plan.Cube.Source.File != nil {
				err = c.runFile(ctx, true)
			} else {
				err = c.runKafka(ctx)
			}
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("cube %q: %w", c.name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	var first error
	for range s.cubes {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Plans implements web.Backend.
func (s *Service) Plans() []*cube.Plan { return s.plans }

// Scan implements web.Backend over the embedded store, or over ClickHouse for a cube whose
// only sink is ClickHouse (sink.embedded false).
func (s *Service) Scan(name string, window int, gs uint16, from, to int64, fn func(r *sink.Row) error) error {
	c := s.byName[name]
	if c == nil {
		return fmt.Errorf("unknown cube %q", name)
	}
	if c.ch != nil && c.plan.Cube.Sink.NoEmbedded {
		return c.scanClickHouse(window, gs, from, to, fn)
	}
	return s.store.Scan(c.table, window, gs, from, to, fn)
}

// Freshness implements web.Backend.
func (s *Service) Freshness(name string) web.Freshness {
	c := s.byName[name]
	if c == nil {
		return web.Freshness{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return web.Freshness{Watermark: c.st.watermark, LastEmit: c.st.lastEmit}
}

// Ready implements web.Backend.
func (s *Service) Ready() bool { return s.ready.Load() }

// ModelSource implements web.Backend.
func (s *Service) ModelSource() (string, []byte) { return s.modelFile, s.modelYAML }

// Status implements web.Backend: per cube, counters, watermark, partitions and state size.
func (s *Service) Status() any {
	out := struct {
		Cubes []CubeStatus `json:"cubes"`
	}{}
	for _, c := range s.cubes {
		out.Cubes = append(out.Cubes, c.status())
	}
	return out
}
