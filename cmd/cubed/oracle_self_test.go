package main_test

// Tests of the oracle itself, against facts computed outside this project (the data README) and
// rows computed by hand. They need no cubed binary.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOracleKnownFacts checks the oracle's readers against the known facts of the data README.
func TestOracleKnownFacts(t *testing.T) {
	t.Run("online_retail", func(t *testing.T) {
		file := dataFile(t, "online_retail.csv.gz")
		var rows, cancellations int64
		customers := map[string]bool{}
		inv, cust := []string{"InvoiceNo"}, []string{"CustomerID"}
		err := oForEachRecord(file, "csv", nil, func(r *oRecord) error {
			rows++
			if strings.HasPrefix(r.Get(inv).text, "C") {
				cancellations++
			}
			if id := r.Get(cust).text; id != "" {
				customers[id] = true
			}
			return nil
		}, func(line int64, _ []byte, err error) { t.Errorf("line %d: %v", line, err) })
		if err != nil {
			t.Fatal(err)
		}
		if rows != 541909 || cancellations != 9288 || len(customers) != 4372 {
			t.Errorf("online_retail: %d rows, %d cancellations, %d distinct customers; README: 541909, 9288, 4372", rows, cancellations, len(customers))
		}
	})
	t.Run("wikiticker", func(t *testing.T) {
		file := dataFile(t, "wikiticker-2015-09-12.json.gz")
		var rows int64
		users := map[string]bool{}
		user := []string{"user"}
		err := oForEachRecord(file, "json", nil, func(r *oRecord) error {
			rows++
			if f := r.Get(user); !f.null && f.text != "" {
				users[f.text] = true
			}
			return nil
		}, func(line int64, _ []byte, err error) { t.Errorf("line %d: %v", line, err) })
		if err != nil {
			t.Fatal(err)
		}
		if rows != 39244 || len(users) != 10531 {
			t.Errorf("wikiticker: %d rows, %d distinct users; README: 39244, 10531", rows, len(users))
		}
	})
}

// TestOracleConsistency runs the oracle on the shipped models and checks identities that hold
// whatever the data: every window's counts add up to the number of events, and the last step of
// every cumulative window equals the tumbling window of the same granularity.
func TestOracleConsistency(t *testing.T) {
	for _, rc := range realConfigs {
		t.Run(rc.name, func(t *testing.T) {
			data := dataFile(t, rc.file)
			cubes, err := oLoadModel(filepath.Join(repoRoot(t), "configs", rc.name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cubes {
				if c.File != data {
					t.Errorf("cube %s reads %s; the data file is %s", c.Name, c.File, data)
					c.File = data
				}
				res, err := oCached(c)
				if err != nil {
					t.Fatal(err)
				}
				if res.Bad != 0 {
					t.Errorf("cube %s: %d undecodable records", c.Name, res.Bad)
				}
				tumbling := map[string]int{}
				for w, win := range c.Windows {
					if win.Step == 0 {
						tumbling[win.Granularity] = w
					}
				}
				for w, win := range c.Windows {
					for g := range c.Sets {
						rows := res.Rows(w, g, false)
						if win.Step == 0 {
							var n float64
							for _, r := range rows {
								n += r.Vals[0].v // the first measure of every shipped model is a count
							}
							if int64(n) != res.Events {
								t.Errorf("cube %s window %v set %v: counts add up to %v, want %d", c.Name, win, c.Sets[g], n, res.Events)
							}
							continue
						}
						tw, ok := tumbling[win.Granularity]
						if !ok {
							continue
						}
						last := map[string]oRow{}
						for _, r := range rows {
							k := oRow{Start: r.Start, Dims: r.Dims}.key()
							if prev, ok := last[k]; !ok || r.End > prev.End {
								last[k] = r
							}
						}
						var lastRows []oRow
						for _, r := range last {
							r.End = 0
							lastRows = append(lastRows, r)
						}
						if d := diffRows(c, measureNames(c), res.Rows(tw, g, false), lastRows); d != "" {
							t.Errorf("cube %s set %v: last steps of %v differ from %s windows: %s", c.Name, c.Sets[g], win, win.Granularity, d)
						}
					}
				}
			}
		})
	}
}

// TestOracleWorstOutOfOrderness checks that each shipped model's watermark trails by more than the
// worst out-of-orderness of its data file (max over records of the largest time seen before the
// record minus its time), so that a replay makes no event late.
func TestOracleWorstOutOfOrderness(t *testing.T) {
	for _, rc := range realConfigs {
		t.Run(rc.name, func(t *testing.T) {
			data := dataFile(t, rc.file)
			cfg := filepath.Join(repoRoot(t), "configs", rc.name+".yaml")
			cubes, err := oLoadModel(cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ooo := yamlDuration(t, raw, "max_out_of_orderness")
			c := cubes[0]
			var maxSeen time.Time
			var worst time.Duration
			err = oForEachRecord(data, c.Format, c.Columns, func(r *oRecord) error {
				tm, err := oEventTime(r.Get(c.TimeField).text, c.TimeFormat, c.TimeLoc)
				if err != nil {
					return err
				}
				if tm.After(maxSeen) {
					maxSeen = tm
				}
				if d := maxSeen.Sub(tm); d > worst {
					worst = d
				}
				return nil
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: worst out-of-orderness %v, model allows %v", rc.name, worst, ooo)
			if worst >= ooo {
				t.Errorf("%s: worst out-of-orderness %v is not covered by max_out_of_orderness %v", rc.name, worst, ooo)
			}
		})
	}
}

// yamlDuration finds "key: value" in a model's text and parses the value.
func yamlDuration(t *testing.T, raw []byte, key string) time.Duration {
	t.Helper()
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			d, err := oParseDuration(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			return d
		}
	}
	t.Fatalf("model has no %s", key)
	return 0
}

// TestOracleHandmade runs the oracle on a small file whose rows were worked out by hand, on the
// 25-hour London day 2011-10-30 (clocks went back at 02:00 BST).
func TestOracleHandmade(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		`{"ts":"2011-10-29T23:30:00Z","k":{"c":"a"},"flag":true,"v":0.1,"u":"x"}`,
		`{"ts":"2011-10-30T00:30:00Z","k":{"c":"a"},"flag":false,"v":0.2,"u":7}`,
		`{"ts":"2011-10-30T23:30:00Z","k":{"c":"b"},"flag":true,"u":""}`,
		`{"ts":"2011-10-30T12:00:00Z","k":null,"flag":1,"v":-3,"u":"x"}`,
		`not json`,
	}
	if err := os.WriteFile(filepath.Join(dir, "e.json"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	model := `version: 1
cubes:
  - name: hand
    source: {file: {path: e.json}, format: json}
    event_time: {field: ts}
    timezone: Europe/London
    dimensions:
      - {name: c, field: k.c}
      - {name: flag}
    measures:
      - {name: n, type: count}
      - {name: s, type: sum, field: v}
      - {name: lo, type: min, field: v}
      - {name: hi, type: max, field: v}
      - {name: users, type: count_distinct, field: u}
    grouping_sets: [[], [c], [flag]]
    windows:
      - {granularity: day, step: 6h}
      - {granularity: day}
      - {granularity: hour}
      - {granularity: week}
`
	cfg := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(cfg, []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	cubes, err := oLoadModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := oCompute(cubes[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 4 || res.Bad != 1 {
		t.Fatalf("events %d, bad %d; want 4, 1", res.Events, res.Bad)
	}
	ms := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	num := func(vs ...float64) []oNum {
		out := make([]oNum, len(vs))
		for i, v := range vs {
			out[i] = oNum{v: v}
		}
		return out
	}
	null := oNum{null: true}
	day := ms("2011-10-30T00:00:00+01:00")
	// 0.1 + 0.2 is exactly 0.3 in decimal; in float64 arithmetic it would be 0.30000000000000004.
	ab := num(2, 0.3, 0.1, 0.2, 2)
	abe := num(3, -2.7, -3, 0.2, 2)
	all := num(4, -2.7, -3, 0.2, 2)
	steps := []int64{ms("2011-10-30T05:00:00Z"), ms("2011-10-30T11:00:00Z"), ms("2011-10-30T17:00:00Z"), ms("2011-10-30T23:00:00Z"), ms("2011-10-31T00:00:00Z")}
	cases := []struct {
		name string
		w, g int
		live time.Time
		want []oRow
	}{
		{"cumulative []", 0, 0, time.Time{}, []oRow{
			{day, steps[0], []string{}, ab}, {day, steps[1], []string{}, ab},
			{day, steps[2], []string{}, abe}, {day, steps[3], []string{}, abe},
			{day, steps[4], []string{}, all},
		}},
		{"cumulative [c]", 0, 1, time.Time{}, []oRow{
			{day, steps[0], []string{"a"}, ab}, {day, steps[1], []string{"a"}, ab},
			{day, steps[2], []string{""}, num(1, -3, -3, -3, 1)}, {day, steps[2], []string{"a"}, ab},
			{day, steps[3], []string{""}, num(1, -3, -3, -3, 1)}, {day, steps[3], []string{"a"}, ab},
			{day, steps[4], []string{""}, num(1, -3, -3, -3, 1)}, {day, steps[4], []string{"a"}, ab},
			{day, steps[4], []string{"b"}, []oNum{{v: 1}, {v: 0}, null, null, {v: 0}}},
		}},
		{"cumulative [] live at 12:00Z", 0, 0, time.Date(2011, 10, 30, 12, 0, 0, 0, time.UTC), []oRow{
			{day, steps[0], []string{}, ab}, {day, steps[1], []string{}, ab}, {day, steps[2], []string{}, abe},
		}},
		{"day [flag]", 1, 2, time.Time{}, []oRow{
			{day, 0, []string{"1"}, num(1, -3, -3, -3, 1)},
			{day, 0, []string{"false"}, num(1, 0.2, 0.2, 0.2, 1)},
			{day, 0, []string{"true"}, []oNum{{v: 2}, {v: 0.1}, {v: 0.1}, {v: 0.1}, {v: 1}}},
		}},
		{"hour []", 2, 0, time.Time{}, []oRow{
			{ms("2011-10-29T23:00:00Z"), 0, []string{}, num(1, 0.1, 0.1, 0.1, 1)},
			{ms("2011-10-30T00:00:00Z"), 0, []string{}, num(1, 0.2, 0.2, 0.2, 1)},
			{ms("2011-10-30T12:00:00Z"), 0, []string{}, num(1, -3, -3, -3, 1)},
			{ms("2011-10-30T23:00:00Z"), 0, []string{}, []oNum{{v: 1}, {v: 0}, null, null, {v: 0}}},
		}},
		// Sunday 2011-10-30 belongs to the week of Monday 2011-10-24 (BST).
		{"week []", 3, 0, time.Time{}, []oRow{{ms("2011-10-24T00:00:00+01:00"), 0, []string{}, all}}},
	}
	c := cubes[0]
	maxT := res.MaxT
	if want := time.Date(2011, 10, 30, 23, 30, 0, 0, time.UTC); !maxT.Equal(want) {
		t.Errorf("largest event time %v, want %v", maxT, want)
	}
	for _, tc := range cases {
		live := !tc.live.IsZero()
		res.MaxT = maxT
		if live {
			res.MaxT = tc.live
		}
		if d := diffRows(c, measureNames(c), tc.want, res.Rows(tc.w, tc.g, live)); d != "" {
			t.Errorf("%s: %s", tc.name, d)
		}
	}
	// The week window of that Sunday is 169 hours long, the day 25.
	s, e := windowOf(time.Date(2011, 10, 30, 12, 0, 0, 0, time.UTC), "week", c.Loc)
	if e.Sub(s) != 169*time.Hour {
		t.Errorf("week of 2011-10-30: %v .. %v, want 169h", s, e)
	}
	s, e = windowOf(time.Date(2011, 3, 27, 12, 0, 0, 0, time.UTC), "day", c.Loc)
	if e.Sub(s) != 23*time.Hour {
		t.Errorf("London day 2011-03-27: %v .. %v, want 23h", s, e)
	}
	// Half-hour zones truncate hours on the local clock.
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	s, _ = windowOf(time.Date(2020, 1, 1, 10, 10, 0, 0, time.UTC), "hour", kolkata)
	if want := time.Date(2020, 1, 1, 9, 30, 0, 0, time.UTC); !s.Equal(want) {
		t.Errorf("Kolkata hour of 10:10Z starts %v, want %v", s, want)
	}
}

// TestOracleDecimal checks the exact decimal sums against values worked out by hand.
func TestOracleDecimal(t *testing.T) {
	sum := func(texts ...string) float64 {
		var d oDecimal
		for _, s := range texts {
			x, ok := parseDecimal(s)
			if !ok {
				t.Fatalf("parseDecimal(%q) failed", s)
			}
			d.add(x)
		}
		return d.float()
	}
	tenth := make([]string, 10)
	for i := range tenth {
		tenth[i] = "0.1"
	}
	cases := []struct {
		texts []string
		want  float64
	}{
		{[]string{"0.1", "0.2"}, 0.3},
		{tenth, 1},
		{[]string{"17850.0", "-17850"}, 0},
		{[]string{"9223372036854775807", "1"}, 9223372036854775808},
		{[]string{"999999999999999999", "0.000000000000000001"}, 999999999999999999.000000000000000001},
		{[]string{"1e3", "2.5E-1"}, 1000.25},
		{[]string{"-1.5", "+0.25"}, -1.25},
	}
	for _, tc := range cases {
		if got := sum(tc.texts...); got != tc.want {
			t.Errorf("sum %q = %v, want %v", tc.texts, got, tc.want)
		}
	}
	for _, bad := range []string{"", "abc", "1.2.3", "-"} {
		if _, ok := parseDecimal(bad); ok {
			t.Errorf("parseDecimal(%q) succeeded", bad)
		}
	}
}
