package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cubed-olap/cubed/cube"
)

// DefaultMaxBodyBytes caps request bodies (queries and models to lint): 1 MiB.
const DefaultMaxBodyBytes = 1 << 20

// Server serves cubed's HTTP API over a Backend. Create it with NewServer and mount Handler.
type Server struct {
	b            Backend
	reg          prometheus.Gatherer
	logger       *slog.Logger
	maxBodyBytes int64
	handler      http.Handler
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger for internal errors (a failed scan, a broken connection). This
// overrides the default of slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.logger = l }
}

// WithMaxBodyBytes caps request bodies; a larger body is answered 413 with errorType bad_data.
// This overrides the default of DefaultMaxBodyBytes (1 MiB).
func WithMaxBodyBytes(n int64) Option {
	return func(s *Server) { s.maxBodyBytes = n }
}

// NewServer returns a server answering from b, serving reg's metrics on /metrics (nil means
// prometheus.DefaultGatherer).
//
// Endpoints:
//
//	POST /api/v1/query               body: a Query; also GET ?query=<json>. Answer by Accept
//	                                 (or ?format=json|csv|arrow): application/json (default),
//	                                 text/csv, application/vnd.apache.arrow.stream
//	GET  /api/v1/cubes               every cube: dimensions, measures, grouping sets, windows, freshness,
//	                                 dashboard panels
//	GET  /api/v1/cubes/{name}/plan   the compiled plan as JSON; ?format=text|dot for plain text
//	GET  /api/v1/model               the model file as loaded, with its lint diagnostics
//	GET  /api/v1/status              Backend.Status()
//	POST /api/v1/lint                body: a YAML model; ?file= names it (default model.yaml)
//	GET  /metrics                    Prometheus text exposition
//	GET  /-/healthy                  200 OK while the process serves
//	GET  /-/ready                    200 when Backend.Ready(), else 503
//	GET  /debug/pprof/...            the Go runtime's profiles (net/http/pprof), as Prometheus
//	                                 and etcd serve them: go tool pprof URL/debug/pprof/profile
//	GET  /                           the web UI (web/ui, embedded); before it is built, a
//	                                 placeholder page listing these endpoints
//	GET  /assets/...                 the web UI's content-hashed files (cached for a year)
func NewServer(b Backend, reg prometheus.Gatherer, opts ...Option) *Server {
	s := &Server{b: b, reg: reg, logger: slog.Default(), maxBodyBytes: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(s)
	}
	if s.reg == nil {
		s.reg = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveUI)
	mux.HandleFunc("GET /assets/", s.serveUI)
	mux.HandleFunc("POST /api/v1/query", s.serveQuery)
	mux.HandleFunc("GET /api/v1/query", s.serveQuery)
	mux.HandleFunc("GET /api/v1/cubes", s.wrap(s.cubes))
	mux.HandleFunc("GET /api/v1/cubes/{name}/plan", s.servePlan)
	mux.HandleFunc("GET /api/v1/model", s.wrap(s.model))
	mux.HandleFunc("GET /api/v1/status", s.wrap(s.status))
	mux.HandleFunc("POST /api/v1/lint", func(w http.ResponseWriter, r *http.Request) {
		s.wrap(func(r *http.Request) (any, *apiError) { return s.lint(w, r) })(w, r)
	})
	mux.HandleFunc("/api/v1/", s.wrap(func(r *http.Request) (any, *apiError) {
		return nil, &apiError{typ: errorNotFound, err: fmt.Errorf("no API endpoint %s %s (see GET / for the list)", r.Method, r.URL.Path)}
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slogPrintln{s.logger}}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "OK")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if s.b.Ready() {
			writeText(w, http.StatusOK, "OK")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "Service Unavailable: the pipeline is not ready")
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.handler = mux
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// slogPrintln adapts a slog.Logger to promhttp's ErrorLog.
type slogPrintln struct{ l *slog.Logger }

func (p slogPrintln) Println(v ...any) { p.l.Error("serving metrics", "error", fmt.Sprint(v...)) }

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, text)
}

// errorType is the envelope's errorType.
type errorType string

const (
	errorBadData     errorType = "bad_data"
	errorNotFound    errorType = "not_found"
	errorInternal    errorType = "internal"
	errorUnavailable errorType = "unavailable"
)

// apiError is a handler's failure; status 0 means the errorType's default status.
type apiError struct {
	typ    errorType
	status int
	err    error
}

func (e *apiError) httpStatus() int {
	if e.status != 0 {
		return e.status
	}
	switch e.typ {
	case errorBadData:
		return http.StatusBadRequest
	case errorNotFound:
		return http.StatusNotFound
	case errorUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// envelope is every JSON answer of the API but a query's success, which EncodeJSON writes in
// the same shape plus "freshness".
type envelope struct {
	Status    string    `json:"status"`
	Data      any       `json:"data,omitempty"`
	ErrorType errorType `json:"errorType,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// apiFunc is an endpoint: it returns the envelope's data or an error.
type apiFunc func(r *http.Request) (any, *apiError)

func (s *Server) wrap(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, apiErr := f(r)
		if apiErr != nil {
			s.respondError(w, r, apiErr)
			return
		}
		s.respond(w, r, data)
	}
}

func (s *Server) respond(w http.ResponseWriter, r *http.Request, data any) {
	b, err := json.Marshal(envelope{Status: "success", Data: data})
	if err != nil {
		s.respondError(w, r, &apiError{typ: errorInternal, err: fmt.Errorf("encoding answer: %w", err)})
		return
	}
	w.Header().Set("Content-Type", MediaJSON)
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(append(b, '\n')); err != nil {
		s.logger.Debug("writing answer", "path", r.URL.Path, "error", err)
	}
}

func (s *Server) respondError(w http.ResponseWriter, r *http.Request, apiErr *apiError) {
	if apiErr.typ == errorInternal {
		s.logger.Error("serving API request", "method", r.Method, "path", r.URL.Path, "error", apiErr.err)
	}
	b, err := json.Marshal(envelope{Status: "error", ErrorType: apiErr.typ, Error: apiErr.err.Error()})
	if err != nil {
		panic(fmt.Sprintf("BUG: encoding error envelope: %v", err))
	}
	w.Header().Set("Content-Type", MediaJSON)
	w.WriteHeader(apiErr.httpStatus())
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads r's body up to the server's cap.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, &apiError{typ: errorBadData, status: http.StatusRequestEntityTooLarge,
				err: fmt.Errorf("request body is larger than the limit of %d bytes", mbe.Limit)}
		}
		return nil, &apiError{typ: errorBadData, err: fmt.Errorf("reading request body: %w", err)}
	}
	return body, nil
}

// negotiateFormat picks the result format from ?format= or else the Accept header: the
// supported media type with the highest q-value, the earliest listed on ties; JSON when the
// header is absent or names nothing supported.
func negotiateFormat(r *http.Request) (string, *apiError) {
	if f := r.URL.Query().Get("format"); f != "" {
		if ContentType(f) == "" {
			return "", &apiError{typ: errorBadData, err: fmt.Errorf("unknown format %q (formats: %s, %s, %s)", f, FormatJSON, FormatCSV, FormatArrow)}
		}
		return f, nil
	}
	best, bestQ := FormatJSON, -1.0
	for _, h := range r.Header.Values("Accept") {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if qs, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(qs, 64); err != nil {
					continue
				}
			}
			var f string
			switch mt {
			case MediaJSON, "*/*", "application/*":
				f = FormatJSON
			case MediaCSV, "text/*":
				f = FormatCSV
			case MediaArrow:
				f = FormatArrow
			default:
				continue
			}
			if q > 0 && q > bestQ {
				best, bestQ = f, q
			}
		}
	}
	return best, nil
}

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request) {
	var text []byte
	if r.Method == http.MethodGet {
		text = []byte(r.URL.Query().Get("query"))
		if len(text) == 0 {
			s.respondError(w, r, &apiError{typ: errorBadData, err: errors.New(`GET /api/v1/query needs ?query=<query JSON>, e.g. ?query={"cube":"name","measures":["pv"]}`)})
			return
		}
	} else {
		var apiErr *apiError
		if text, apiErr = s.readBody(w, r); apiErr != nil {
			s.respondError(w, r, apiErr)
			return
		}
	}
	format, apiErr := negotiateFormat(r)
	if apiErr != nil {
		s.respondError(w, r, apiErr)
		return
	}
	q, err := DecodeQuery(text)
	if err != nil {
		s.respondError(w, r, &apiError{typ: errorBadData, err: err})
		return
	}
	res, err := Run(r.Context(), s.b, q)
	if err != nil {
		var bq *BadQuery
		switch {
		case errors.As(err, &bq):
			s.respondError(w, r, &apiError{typ: errorBadData, err: err})
		case errors.Is(err, ErrUnavailable):
			s.respondError(w, r, &apiError{typ: errorUnavailable, err: err})
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			s.respondError(w, r, &apiError{typ: errorUnavailable, err: err})
		default:
			s.respondError(w, r, &apiError{typ: errorInternal, err: err})
		}
		return
	}
	h := w.Header()
	h.Set("Content-Type", ContentType(format))
	if !res.Freshness.Watermark.IsZero() {
		h.Set("X-Cubed-Watermark", res.Freshness.Watermark.Format(timeLayout))
	}
	if !res.Freshness.LastEmit.IsZero() {
		h.Set("X-Cubed-Last-Emit", res.Freshness.LastEmit.Format(timeLayout))
	}
	w.WriteHeader(http.StatusOK)
	if err := WriteResult(w, format, res); err != nil {
		// The status is sent; all that is left is to log it.
		s.logger.Warn("writing query result", "cube", q.Cube, "format", format, "error", err)
	}
}

// CubeInfo describes one cube in GET /api/v1/cubes.
type CubeInfo struct {
	Name         string            `json:"name"`
	Description  string            `json:"description"`
	Timezone     string            `json:"timezone"`
	Dimensions   []DimensionInfo   `json:"dimensions"`
	Measures     []MeasureInfo     `json:"measures"`
	GroupingSets []GroupingSetInfo `json:"grouping_sets"`
	Windows      []WindowInfo      `json:"windows"`
	Freshness    Freshness         `json:"freshness"`
	// Dashboard is the cube's dashboard: the model's dashboards: entry for the cube, or the one
	// cube.DefaultDashboard derives (then default is true).
	Dashboard *cube.Dashboard `json:"dashboard"`
}

// DimensionInfo is one dimension: its name and the event field it reads.
type DimensionInfo struct {
	Name  string `json:"name"`
	Field string `json:"field"`
}

// MeasureInfo is one measure result column: its name, its type (count, sum, min, max,
// count_distinct, new_users, retention) and the field it reads ("" for count). Each of a retention
// measure's three columns also has its days, cohort (active or new) and part: rate, retained
// or cohort.
type MeasureInfo struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Field  string `json:"field,omitempty"`
	Days   int    `json:"days,omitempty"`
	Cohort string `json:"cohort,omitempty"`
	Part   string `json:"part,omitempty"`
}

// GroupingSetInfo is one grouping set: its cuboid id and its dimensions in model order.
type GroupingSetInfo struct {
	ID         uint16   `json:"id"`
	Dimensions []string `json:"dimensions"`
}

// WindowInfo is one window: granularity, the step of a cumulative window ("" when tumbling),
// the early-fire period, and the label query errors use ("day (cumulative, step 1h)").
type WindowInfo struct {
	Granularity string `json:"granularity"`
	Step        string `json:"step,omitempty"`
	EmitEvery   string `json:"emit_every"`
	Cumulative  bool   `json:"cumulative"`
	Label       string `json:"label"`
}

// CubeInfos describes every cube of plans, with freshness from b.
func CubeInfos(b Backend, plans []*cube.Plan) []CubeInfo {
	out := make([]CubeInfo, 0, len(plans))
	for _, p := range plans {
		c := p.Cube
		tz := "UTC"
		if c.Timezone != nil {
			tz = c.Timezone.String()
		}
		ci := CubeInfo{
			Name: c.Name, Description: c.Description, Timezone: tz,
			Dimensions:   make([]DimensionInfo, 0, len(c.Dimensions)),
			Measures:     make([]MeasureInfo, 0, len(p.Measures)),
			GroupingSets: make([]GroupingSetInfo, 0, len(p.GroupingSets)),
			Windows:      make([]WindowInfo, 0, len(p.Windows)),
			Freshness:    b.Freshness(c.Name),
			Dashboard:    cube.DashboardOf(c),
		}
		for _, d := range c.Dimensions {
			ci.Dimensions = append(ci.Dimensions, DimensionInfo{Name: d.Name, Field: d.Field})
		}
		for _, m := range p.Measures {
			mi := MeasureInfo{Name: m.Name, Type: string(m.Type), Field: m.Field}
			if m.Type == cube.Retention {
				mi.Days, mi.Cohort, mi.Part = m.Days, string(m.Cohort), m.Part.String()
			}
			ci.Measures = append(ci.Measures, mi)
		}
		for _, g := range p.GroupingSets {
			names := append([]string{}, g.Names...)
			ci.GroupingSets = append(ci.GroupingSets, GroupingSetInfo{ID: g.ID, Dimensions: names})
		}
		for _, w := range p.Windows {
			wi := WindowInfo{Granularity: string(w.Granularity), EmitEvery: formatDuration(w.EmitEvery), Cumulative: w.Cumulative, Label: windowLabel(w)}
			if w.Cumulative {
				wi.Step = formatDuration(w.Step)
			}
			ci.Windows = append(ci.Windows, wi)
		}
		out = append(out, ci)
	}
	return out
}

func (s *Server) cubes(*http.Request) (any, *apiError) {
	return CubeInfos(s.b, s.b.Plans()), nil
}

func (s *Server) servePlan(w http.ResponseWriter, r *http.Request) {
	plans := s.b.Plans()
	name := r.PathValue("name")
	p := findPlan(plans, name)
	if p == nil {
		s.respondError(w, r, &apiError{typ: errorNotFound, err: fmt.Errorf("unknown cube %q (cubes: %s)", name, cubeNames(plans))})
		return
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		j, err := p.JSON()
		if err != nil {
			s.respondError(w, r, &apiError{typ: errorInternal, err: fmt.Errorf("encoding the plan of cube %q: %w", name, err)})
			return
		}
		s.respond(w, r, json.RawMessage(j))
	case "text":
		writeText(w, http.StatusOK, p.Text())
	case "dot":
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_, _ = io.WriteString(w, p.DOT())
	default:
		s.respondError(w, r, &apiError{typ: errorBadData, err: fmt.Errorf("unknown plan format %q (formats: json, text, dot)", f)})
	}
}

func (s *Server) status(*http.Request) (any, *apiError) {
	return s.b.Status(), nil
}

// LintDiagnostic is one problem found by POST /api/v1/lint.
type LintDiagnostic struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
	// Text is the diagnostic as `cubed lint` prints it: FILE:LINE:COL: message.
	Text string `json:"text"`
}

// LintResult is the data of POST /api/v1/lint: every problem of the model, none when it is
// valid.
type LintResult struct {
	Diagnostics []LintDiagnostic `json:"diagnostics"`
}

// Lint parses a YAML model with cube.Parse and returns its diagnostics (an empty, non-nil list
// when the model is valid).
func Lint(file string, yaml []byte) LintResult {
	_, diags := cube.Parse(file, yaml)
	out := LintResult{Diagnostics: make([]LintDiagnostic, 0, len(diags))}
	for _, d := range diags {
		out.Diagnostics = append(out.Diagnostics, LintDiagnostic{Line: d.Line, Col: d.Col, Message: d.Message, Text: d.String()})
	}
	return out
}

func (s *Server) lint(w http.ResponseWriter, r *http.Request) (any, *apiError) {
	// Lint answers with the model's diagnostics, 200 either way; only an unreadable body fails.
	body, apiErr := s.readBody(w, r)
	if apiErr != nil {
		return nil, apiErr
	}
	file := r.URL.Query().Get("file")
	if file == "" {
		file = "model.yaml"
	}
	return Lint(file, body), nil
}

// ModelInfo is the data of GET /api/v1/model.
type ModelInfo struct {
	File        string           `json:"file"`
	YAML        string           `json:"yaml"`
	Diagnostics []LintDiagnostic `json:"diagnostics"`
}

func (s *Server) model(*http.Request) (any, *apiError) {
	file, yaml := s.b.ModelSource()
	return ModelInfo{File: file, YAML: string(yaml), Diagnostics: Lint(file, yaml).Diagnostics}, nil
}

var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>cubed</title></head>
<body>
<h1>cubed</h1>
<p>The web UI is not built into this binary: run <code>make build</code> (it runs
<code>npm ci &amp;&amp; npm run build</code> in <code>web/ui</code> before <code>go build</code>).
The HTTP API is available:</p>
<ul>
{{range .}}<li><code>{{.}}</code></li>
{{end}}</ul>
</body>
</html>
`))

var endpoints = []string{
	"POST /api/v1/query (or GET /api/v1/query?query=<json>; Accept: application/json, text/csv, application/vnd.apache.arrow.stream)",
	"GET /api/v1/cubes",
	"GET /api/v1/cubes/{name}/plan (?format=json|text|dot)",
	"GET /api/v1/model",
	"GET /api/v1/status",
	"POST /api/v1/lint (?file=model.yaml)",
	"GET /metrics",
	"GET /-/healthy",
	"GET /-/ready",
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := indexPage.Execute(w, endpoints); err != nil {
		s.logger.Debug("writing index page", "error", err)
	}
}
