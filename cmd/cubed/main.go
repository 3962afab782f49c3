// Command cubed is the real-time OLAP cube pre-aggregation service: one binary that lints and
// compiles cube models, replays files, runs the service over Kafka and answers queries.
//
//	cubed lint FILE...
//	cubed plan FILE [--format text|json|dot] [--ddl]
//	cubed replay --config FILE --data-dir DIR
//	cubed query --config FILE --data-dir DIR 'QUERY-JSON' [--format json|csv|arrow]
//	cubed run --config FILE --data-dir DIR [--http ADDR] [--dev]
//	cubed gen [--count N | --rate R --duration D] [--users U] [--out FILE | --kafka BROKERS --topic T]
//	cubed history import --config FILE --data-dir DIR --cube C --measure M --input IDS
//	cubed version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/cubed-olap/cubed/cube"
	"github.com/cubed-olap/cubed/pipeline"
	"github.com/cubed-olap/cubed/sink"
	"github.com/cubed-olap/cubed/web"
)

// version is set with -ldflags "-X main.version=…".
var version = "dev"

const usage = `cubed — real-time OLAP cube pre-aggregation

Usage:
  cubed lint FILE...                                   check cube models (FILE:LINE:COL: message)
  cubed plan FILE [--format text|json|dot] [--ddl]     print the compiled two-layer graph (--ddl: the ClickHouse tables)
  cubed replay --config FILE --data-dir DIR            run file-source cubes to the end of input
  cubed query --config FILE --data-dir DIR 'QUERY'     answer a query as POST /api/v1/query would
  cubed run --config FILE --data-dir DIR [--http ADDR] [--dev]
                                                       run the service (--dev: in-process Kafka + generator)
  cubed gen [flags]                                    write synthetic events (see cubed gen -h)
  cubed history import --config FILE --data-dir DIR --cube C --measure M --input IDS
                                                       load users known before the stream starts
                                                       (lines: id, or id,date) for new_users/retention
  cubed version
`

// defaultGOGC is the garbage collector's target (GOGC, the heap growth in percent of the live
// heap between collections) when the environment sets none, instead of Go's 100: the heap then
// peaks at about 1.5 instead of 2 times what is live, and on machines where the kernel's zeroing
// of freshly touched pages is dear (a quarter of cubed's CPU in one perf profile on the 2-core
// test VM) the pages not touched save more than the collections added cost. In
// `make bench-clickhouse` (7 alternating throughput runs, 2026-11-22) cubed used 4.57 CPU
// seconds instead of 4.78 (medians; less in 6 of 7 pairs), at a peak RSS of 330–362 MiB
// instead of 391–469 MiB.
const defaultGOGC = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	code := 0
	switch args[0] {
	case "lint":
		code, err = cmdLint(args[1:], stdout, stderr)
	case "plan":
		err = cmdPlan(args[1:], stdout, stderr)
	case "replay":
		err = cmdReplay(args[1:], stdout, stderr)
	case "query":
		code, err = cmdQuery(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "gen":
		err = cmdGen(args[1:], stdout, stderr)
	case "history":
		code, err = cmdHistory(args[1:], stdout, stderr)
	case "broker": // hidden: a Kafka-protocol broker process for tests and experiments
		err = cmdBroker(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "cubed", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "cubed: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "cubed:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// parseFlags parses fs allowing flags before and after positional arguments, and returns the
// positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cubed "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdLint(args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("lint", stderr)
	files, err := parseFlags(fs, args)
	if err != nil {
		return 2, err
	}
	if len(files) == 0 {
		return 2, errors.New("lint: no model files given")
	}
	code := 0
	for _, f := range files {
		_, diags, err := cube.LoadFile(f)
		if err != nil {
			return 1, err
		}
		for _, d := range diags {
			fmt.Fprintln(stdout, d.String())
			code = 1
		}
	}
	return code, nil
}

func cmdPlan(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", stderr)
	format := fs.String("format", "text", "output format: text, json or dot")
	ddl := fs.Bool("ddl", false, "print the ClickHouse CREATE TABLE statement of every cube instead (in its sink.clickhouse database, or default)")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		return errors.New("plan: give exactly one model file")
	}
	plans, _, err := pipeline.LoadPlans(files[0])
	if err != nil {
		return err
	}
	if *ddl {
		return printDDL(plans, stdout)
	}
	for i, p := range plans {
		switch *format {
		case "text":
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			fmt.Fprint(stdout, p.Text())
		case "json":
			b, err := p.JSON()
			if err != nil {
				return err
			}
			stdout.Write(b)
			fmt.Fprintln(stdout)
		case "dot":
			fmt.Fprint(stdout, p.DOT())
		default:
			return fmt.Errorf("plan: unknown format %q (formats: text, json, dot)", *format)
		}
	}
	return nil
}

// printDDL prints the ClickHouse result table of every cube, one statement each, separated by
// semicolons and blank lines.
func printDDL(plans []*cube.Plan, stdout io.Writer) error {
	for i, p := range plans {
		ddl, err := sink.DDL(p, p.Cube.Sink.ClickHouse)
		if err != nil {
			return fmt.Errorf("plan --ddl: cube %q: %w", p.Cube.Name, err)
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprint(stdout, strings.TrimSuffix(ddl, "\n")+";\n")
	}
	return nil
}

// serviceFlags are the flags shared by replay, query and run.
type serviceFlags struct {
	config, dataDir string
	workers         int
	checkpointEvery time.Duration
	noRestore       bool
}

func (f *serviceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "cube model file (YAML)")
	fs.StringVar(&f.dataDir, "data-dir", "", "folder for the embedded store and dead letters")
	fs.IntVar(&f.workers, "workers", 0, "aggregation workers per layer (default GOMAXPROCS)")
	fs.DurationVar(&f.checkpointEvery, "checkpoint-every", pipeline.DefaultCheckpointEvery, "checkpoint interval")
}

func (f *serviceFlags) open(logger *slog.Logger, brokers []string) (*pipeline.Service, error) {
	if f.config == "" || f.dataDir == "" {
		return nil, errors.New("--config and --data-dir are required")
	}
	return pipeline.Open(f.config, pipeline.Options{DataDir: f.dataDir, Workers: f.workers, Logger: logger, Brokers: brokers,
		CheckpointEvery: f.checkpointEvery, NoRestore: f.noRestore})
}

func cmdReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", stderr)
	var sf serviceFlags
	sf.register(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := sf.open(logger, nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sums, err := svc.Replay(ctx)
	cerr := svc.Close()
	enc := json.NewEncoder(stdout)
	for _, s := range sums {
		enc.Encode(s)
	}
	if err != nil {
		return err
	}
	return cerr
}

func cmdQuery(args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("query", stderr)
	var sf serviceFlags
	sf.register(fs)
	format := fs.String("format", web.FormatJSON, "answer format: json, csv or arrow")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2, err
	}
	if len(pos) != 1 {
		return 2, errors.New("query: give exactly one query (JSON)")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sf.noRestore = true // the query reads results only
	svc, err := sf.open(logger, nil)
	if err != nil {
		return 1, err
	}
	defer svc.Close()
	svc.MarkReady()
	q, err := web.DecodeQuery([]byte(pos[0]))
	if err == nil {
		var res *web.Result
		if res, err = web.Run(context.Background(), svc, q); err == nil {
			return 0, web.WriteResult(stdout, *format, res)
		}
	}
	errorType := "internal"
	var bq *web.BadQuery
	if errors.As(err, &bq) {
		errorType = "bad_data"
	}
	json.NewEncoder(stdout).Encode(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", errorType, err.Error()})
	return 1, nil
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	var sf serviceFlags
	sf.register(fs)
	addr := fs.String("http", "127.0.0.1:8080", "HTTP listen address")
	dev := fs.Bool("dev", false, "start an in-process Kafka-protocol broker (kfake) and an event generator feeding it")
	rate := fs.Float64("dev-rate", 2000, "events per second the dev generator produces")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var brokers []string
	if *dev {
		if sf.dataDir == "" || sf.config == "" {
			return errors.New("--config and --data-dir are required")
		}
		topics, err := kafkaTopics(sf.config)
		if err != nil {
			return err
		}
		d, err := pipeline.StartDev(ctx, pipeline.DevOptions{DataDir: sf.dataDir, Topics: topics, Rate: *rate, Logger: logger})
		if err != nil {
			return err
		}
		defer d.Close()
		brokers = d.Brokers()
		logger.Info("dev mode: in-process Kafka broker and generator", "brokers", strings.Join(brokers, ","), "topics", strings.Join(topics, ","), "rate", *rate)
	}
	svc, err := sf.open(logger, brokers)
	if err != nil {
		return err
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: web.NewServer(svc, svc.Registry(), web.WithLogger(logger)).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(stdout, "cubed %s serving on http://%s/\n", version, ln.Addr())
	err = svc.Run(ctx)
	if err == nil {
		// File cubes finish; keep serving their results until interrupted.
		<-ctx.Done()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	return err
}

// cmdHistory runs `cubed history import`: it loads the ids of a history file into the
// first-seen state of a cube's new_users or retention measure before the stream starts, and
// prints a JSON summary.
func cmdHistory(args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "import" {
		return 2, errors.New("history: the subcommand is import (cubed history import --config FILE --data-dir DIR --cube C --measure M --input IDS)")
	}
	fs := newFlagSet("history import", stderr)
	var sf serviceFlags
	sf.register(fs)
	cubeName := fs.String("cube", "", "the cube")
	measure := fs.String("measure", "", "a new_users or retention measure of the cube (the ids go to the field it reads)")
	input := fs.String("input", "", "history file: one id per line, or id,date (2006-01-02 in the cube's time zone, or RFC 3339); - reads stdin")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2, err
	}
	if len(pos) > 0 {
		return 2, fmt.Errorf("history import: unexpected argument %q", pos[0])
	}
	if *cubeName == "" || *measure == "" || *input == "" {
		return 2, errors.New("history import: --cube, --measure and --input are required")
	}
	var in io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			return 1, fmt.Errorf("history import: %w", err)
		}
		defer f.Close()
		in = f
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := sf.open(logger, nil)
	if err != nil {
		return 1, err
	}
	res, err := svc.ImportHistory(*cubeName, *measure, in)
	cerr := svc.Close()
	if err != nil {
		return 1, err
	}
	if cerr != nil {
		return 1, cerr
	}
	return 0, json.NewEncoder(stdout).Encode(res)
}

// kafkaTopics lists the topics of the model's Kafka cubes.
func kafkaTopics(config string) ([]string, error) {
	plans, _, err := pipeline.LoadPlans(config)
	if err != nil {
		return nil, err
	}
	var topics []string
	for _, p := range plans {
		if k := p.Cube.Source.Kafka; k != nil {
			topics = append(topics, k.Topic)
		}
	}
	return topics, nil
}
