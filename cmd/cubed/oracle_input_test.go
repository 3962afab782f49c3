package main_test

// The oracle's own reading of models and raw data. Nothing here uses cubed's packages: the model
// is read with plain yaml struct decoding, JSON with encoding/json (UseNumber), CSV with
// encoding/csv, gzip with compress/gzip.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// oModelFile is the subset of the YAML model contract the oracle needs.
type oModelFile struct {
	Version int      `yaml:"version"`
	Cubes   []oCubeY `yaml:"cubes"`
}

type oCubeY struct {
	Name   string `yaml:"name"`
	Source struct {
		File *struct {
			Path string `yaml:"path"`
		} `yaml:"file"`
		Format  string   `yaml:"format"`
		Columns []string `yaml:"columns"`
	} `yaml:"source"`
	EventTime struct {
		Field    string `yaml:"field"`
		Format   string `yaml:"format"`
		Timezone string `yaml:"timezone"`
	} `yaml:"event_time"`
	Timezone   string `yaml:"timezone"`
	Dimensions []struct {
		Name  string `yaml:"name"`
		Field string `yaml:"field"`
	} `yaml:"dimensions"`
	Measures []struct {
		Name   string `yaml:"name"`
		Type   string `yaml:"type"`
		Field  string `yaml:"field"`
		Days   int    `yaml:"days"`
		Cohort string `yaml:"cohort"`
	} `yaml:"measures"`
	GroupingSets [][]string `yaml:"grouping_sets"`
	CubeSets     []string   `yaml:"cube"`
	Rollup       []string   `yaml:"rollup"`
	Windows      []struct {
		Granularity string `yaml:"granularity"`
		Step        string `yaml:"step"`
	} `yaml:"windows"`
}

// oCube is a cube as the oracle understands it, defaults filled in.
type oCube struct {
	Name       string
	File       string // absolute path of the file source ("" for a Kafka source)
	Format     string // json | csv
	Columns    []string
	TimeField  []string
	TimeFormat string
	TimeLoc    *time.Location
	Loc        *time.Location // the cube's zone for day and week windows
	DimNames   []string
	DimPaths   [][]string
	Measures   []oMeasure
	Slots      int        // id sets per group (distinct id fields)
	Sets       [][]string // grouping sets as dimension names
	Windows    []oWindow
}

// oMeasure is one result column. A retention measure is three: Type "retention" (the rate),
// "retention_retained" and "retention_cohort", each with Days and Cohort ("active" or "new").
// Slot indexes the oracle's id sets: one per distinct id field, shared by count_distinct,
// new_users and retention on that field (-1 for other types).
type oMeasure struct {
	Name, Type string
	Path       []string
	Days       int
	Cohort     string
	Slot       int
}

type oWindow struct {
	Granularity string
	Step        time.Duration // 0: tumbling
}

func (w oWindow) String() string {
	if w.Step == 0 {
		return w.Granularity
	}
	return fmt.Sprintf("%s/step %v", w.Granularity, w.Step)
}

// oParseDuration is time.ParseDuration plus a "d" (24h) suffix.
func oParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// oLoadModel reads a model file the oracle's way.
func oLoadModel(path string) ([]*oCube, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var mf oModelFile
	if err := yaml.Unmarshal(data, &mf); err != nil {
		return nil, fmt.Errorf("oracle reading model %s: %w", path, err)
	}
	var cubes []*oCube
	for _, y := range mf.Cubes {
		c := &oCube{Name: y.Name, Format: y.Source.Format, Columns: y.Source.Columns, TimeFormat: y.EventTime.Format}
		if c.Format == "" {
			c.Format = "json"
		}
		if c.TimeFormat == "" {
			c.TimeFormat = "rfc3339"
		}
		if y.Source.File != nil {
			c.File = y.Source.File.Path
			if !filepath.IsAbs(c.File) {
				c.File = filepath.Join(filepath.Dir(path), c.File)
			}
		}
		c.TimeField = strings.Split(y.EventTime.Field, ".")
		if c.TimeLoc, err = time.LoadLocation(orDefault(y.EventTime.Timezone, "UTC")); err != nil {
			return nil, err
		}
		if c.Loc, err = time.LoadLocation(orDefault(y.Timezone, "UTC")); err != nil {
			return nil, err
		}
		for _, d := range y.Dimensions {
			c.DimNames = append(c.DimNames, d.Name)
			c.DimPaths = append(c.DimPaths, strings.Split(orDefault(d.Field, d.Name), "."))
		}
		slots := map[string]int{} // id field → slot
		for _, m := range y.Measures {
			om := oMeasure{Name: m.Name, Type: m.Type, Days: m.Days, Cohort: orDefault(m.Cohort, "active"), Slot: -1}
			if m.Field != "" {
				om.Path = strings.Split(m.Field, ".")
			}
			switch m.Type {
			case "count_distinct", "new_users", "retention":
				slot, ok := slots[m.Field]
				if !ok {
					slot = len(slots)
					slots[m.Field] = slot
				}
				om.Slot = slot
			}
			c.Measures = append(c.Measures, om)
			if m.Type == "retention" {
				for _, part := range []string{"retained", "cohort"} {
					col := om
					col.Name, col.Type = m.Name+"_"+part, "retention_"+part
					c.Measures = append(c.Measures, col)
				}
			}
		}
		c.Slots = len(slots)
		switch {
		case len(y.GroupingSets) > 0:
			c.Sets = y.GroupingSets
		case len(y.CubeSets) > 0:
			for mask := 0; mask < 1<<len(y.CubeSets); mask++ {
				set := []string{}
				for i, d := range y.CubeSets {
					if mask&(1<<i) != 0 {
						set = append(set, d)
					}
				}
				c.Sets = append(c.Sets, set)
			}
		case len(y.Rollup) > 0:
			for n := len(y.Rollup); n >= 0; n-- {
				c.Sets = append(c.Sets, append([]string{}, y.Rollup[:n]...))
			}
		default:
			c.Sets = [][]string{c.DimNames}
		}
		for _, w := range y.Windows {
			ow := oWindow{Granularity: w.Granularity}
			if w.Step != "" {
				if ow.Step, err = oParseDuration(w.Step); err != nil {
					return nil, err
				}
			}
			c.Windows = append(c.Windows, ow)
		}
		cubes = append(cubes, c)
	}
	return cubes, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// oField is the text of one field of one record; null is set for JSON null and missing fields.
type oField struct {
	text string
	null bool
}

// oRecord is one raw record: its 1-based line number, raw bytes, and a field getter.
type oRecord struct {
	Line int64
	Raw  []byte
	Get  func(path []string) oField
}

// oOpen opens a data file, gunzipping when it starts with the gzip magic bytes.
func oOpen(path string) (io.Reader, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("gunzip %s: %w", path, err)
		}
		return zr, f.Close, nil
	}
	return br, f.Close, nil
}

// oLines calls fn with every line of the (possibly gzipped) file, 1-based, without the newline;
// empty lines are skipped but counted.
func oLines(path string, fn func(line int64, b []byte) error) error {
	r, closeFn, err := oOpen(path)
	if err != nil {
		return err
	}
	defer closeFn()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var n int64
	for sc.Scan() {
		n++
		b := bytes.TrimRight(sc.Bytes(), "\r")
		if len(b) == 0 {
			continue
		}
		if err := fn(n, b); err != nil {
			return err
		}
	}
	return sc.Err()
}

// errBadRecord marks a record the oracle cannot decode.
var errBadRecord = errors.New("bad record")

// oForEachRecord calls fn for every record of a file in the cube's format. A record that is not
// a JSON object (or a CSV row with the wrong number of cells) is passed to bad instead.
func oForEachRecord(path, format string, columns []string, fn func(r *oRecord) error, bad func(line int64, raw []byte, err error)) error {
	switch format {
	case "json":
		return oLines(path, func(line int64, b []byte) error {
			var obj map[string]any
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
				if bad != nil {
					bad(line, b, fmt.Errorf("%w: not one JSON object: %v", errBadRecord, err))
				}
				return nil
			}
			return fn(&oRecord{Line: line, Raw: b, Get: func(path []string) oField { return jsonField(obj, path) }})
		})
	case "csv":
		r, closeFn, err := oOpen(path)
		if err != nil {
			return err
		}
		defer closeFn()
		cr := csv.NewReader(r)
		cr.FieldsPerRecord = -1
		cr.ReuseRecord = false
		header := columns
		if len(header) == 0 {
			h, err := cr.Read()
			if err != nil {
				return fmt.Errorf("reading the CSV header of %s: %w", path, err)
			}
			header = h
		}
		idx := map[string]int{}
		for i, h := range header {
			idx[h] = i
		}
		for {
			row, err := cr.Read()
			if err == io.EOF {
				return nil
			}
			line, _ := cr.FieldPos(0)
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) && bad != nil {
					bad(int64(pe.StartLine), nil, fmt.Errorf("%w: %v", errBadRecord, err))
					continue
				}
				return err
			}
			if len(row) != len(header) {
				if bad != nil {
					bad(int64(line), nil, fmt.Errorf("%w: %d cells, header has %d", errBadRecord, len(row), len(header)))
				}
				continue
			}
			cells := row
			if err := fn(&oRecord{Line: int64(line), Get: func(path []string) oField {
				i, ok := idx[strings.Join(path, ".")]
				if !ok {
					return oField{null: true}
				}
				return oField{text: cells[i]}
			}}); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("oracle: unknown format %q", format)
	}
}

// jsonField follows a dotted path; strings are themselves, booleans "true"/"false", numbers their
// JSON text, null or missing null, objects and arrays their JSON text.
func jsonField(obj map[string]any, path []string) oField {
	var v any = obj
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return oField{null: true}
		}
		if v, ok = m[p]; !ok {
			return oField{null: true}
		}
	}
	switch x := v.(type) {
	case nil:
		return oField{null: true}
	case string:
		return oField{text: x}
	case bool:
		return oField{text: strconv.FormatBool(x)}
	case json.Number:
		return oField{text: x.String()}
	default:
		b, _ := json.Marshal(x)
		return oField{text: string(b)}
	}
}

// oEventTime parses an event time the model's way.
func oEventTime(text, format string, loc *time.Location) (time.Time, error) {
	switch format {
	case "rfc3339":
		return time.Parse(time.RFC3339Nano, text)
	case "unix_s", "unix_ms":
		r, ok := new(big.Rat).SetString(text)
		if !ok {
			return time.Time{}, fmt.Errorf("event time %q is not a number", text)
		}
		if format == "unix_s" {
			r.Mul(r, big.NewRat(1000, 1))
		}
		f, _ := r.Float64()
		return time.UnixMilli(int64(math.Floor(f))), nil
	default:
		return time.ParseInLocation(format, text, loc)
	}
}
