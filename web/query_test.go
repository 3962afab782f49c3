package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/sink"
)

func all(map[string]string) bool { return true }

func TestQueryRoutesToExactGroupingSet(t *testing.T) {
	f := newFixture(t)
	everything := [2]int64{math.MinInt64, math.MaxInt64}
	cases := []struct {
		name       string
		q          string
		gs         uint16
		dims       []string
		keep       func(map[string]string) bool
		columns    []string
		cumulative bool
	}{
		{"no dimensions", `{"cube":"edits","measures":["pv"],"granularity":"hour"}`, gsNone, nil, all,
			[]string{"window_start", "pv"}, false},
		{"one dimension", `{"cube":"edits","measures":["uv","pv"],"dimensions":["channel"],"granularity":"hour"}`, gsChannel, []string{"channel"}, all,
			[]string{"window_start", "channel", "uv", "pv"}, false},
		{"two dimensions, request order kept", `{"cube":"edits","measures":["added"],"dimensions":["robot","channel"],"granularity":"hour"}`, gsChannelRobot, []string{"robot", "channel"}, all,
			[]string{"window_start", "robot", "channel", "added"}, false},
		{"filtered dimension joins the routing key", `{"cube":"edits","measures":["pv"],"dimensions":["channel"],"granularity":"hour",
			"filters":[{"dimension":"robot","op":"equals","values":["true"]}]}`, gsChannelRobot, []string{"channel"},
			func(d map[string]string) bool { return d["robot"] == "true" }, []string{"window_start", "channel", "pv"}, false},
		{"filter on a requested dimension", `{"cube":"edits","measures":["pv"],"dimensions":["channel","namespace"],"granularity":"day","cumulative":true,
			"filters":[{"dimension":"namespace","op":"notEquals","values":["Talk"]}]}`, gsChannelNamespace, []string{"channel", "namespace"},
			func(d map[string]string) bool { return d["namespace"] != "Talk" }, []string{"window_start", "window_end", "channel", "namespace", "pv"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := f.mustQuery(t, c.q)
			if !slices.Equal(a.Data.Columns, c.columns) {
				t.Fatalf("columns = %v, want %v", a.Data.Columns, c.columns)
			}
			window := winHour
			if c.cumulative {
				window = winDayCum
			}
			var measures []string
			for _, col := range c.columns {
				if _, ok := f.plan.Measure(col); ok {
					measures = append(measures, col)
				}
			}
			want := expectJSON(f.oracle(window, c.gs, everything[0], everything[1], c.keep), c.cumulative, c.dims, measures)
			if len(want) == 0 {
				t.Fatal("oracle found no rows; the fixture is too small")
			}
			if !reflect.DeepEqual(a.Data.Rows, want) {
				t.Fatalf("got %d rows, want %d\nfirst got  %v\nfirst want %v", len(a.Data.Rows), len(want), first(a.Data.Rows), first(want))
			}
		})
	}

	a := f.query(t, `{"cube":"edits","measures":["pv"],"dimensions":["robot"]}`)
	wantErr := `cube "edits" has no grouping set with exactly the dimensions [robot] (the query's dimensions plus its filtered dimensions); grouping sets: [], [channel], [channel, namespace], [channel, robot]`
	if a.code != http.StatusBadRequest || a.ErrorType != "bad_data" || a.Error != wantErr {
		t.Fatalf("unmaterialised grouping set: got %d %s\nwant 400 bad_data %q", a.code, a.body, wantErr)
	}
	// A filter adds its dimension: [namespace] + filter on robot is not a set either.
	a = f.query(t, `{"cube":"edits","dimensions":["namespace"],"filters":[{"dimension":"robot","op":"set"}]}`)
	if a.code != http.StatusBadRequest || !strings.Contains(a.Error, "exactly the dimensions [namespace, robot]") {
		t.Fatalf("filtered unmaterialised grouping set: got %d %s", a.code, a.body)
	}
}

func first(rows [][]any) any {
	if len(rows) == 0 {
		return nil
	}
	return rows[0]
}

func TestQueryFilterOps(t *testing.T) {
	f := newFixture(t)
	weird := chans[6]
	// Expected channel values per filter, listed by hand from chans.
	cases := []struct {
		filter string
		want   []string
	}{
		{`{"dimension":"channel","op":"equals","values":["#en.wikipedia","en","nope"]}`, []string{"#en.wikipedia", "en"}},
		{`{"dimension":"channel","op":"equals","values":[""]}`, []string{""}},
		{`{"dimension":"channel","op":"notEquals","values":["#en.wikipedia","#fr.wikipedia"]}`, []string{"", "#de.wikipedia", "#ja.wikipedia", "en", weird}},
		{`{"dimension":"channel","op":"contains","values":["en"]}`, []string{"#en.wikipedia", "en"}},
		{`{"dimension":"channel","op":"contains","values":["de.", "ird"]}`, []string{"#de.wikipedia", weird}},
		{`{"dimension":"channel","op":"notContains","values":["wiki"]}`, []string{"", "en", weird}},
		{`{"dimension":"channel","op":"startsWith","values":["#f","#j"]}`, []string{"#fr.wikipedia", "#ja.wikipedia"}},
		{`{"dimension":"channel","op":"startsWith","values":["#"]}`, []string{"#de.wikipedia", "#en.wikipedia", "#fr.wikipedia", "#ja.wikipedia", weird}},
		{`{"dimension":"channel","op":"endsWith","values":["n","nel"]}`, []string{"en", weird}},
		{`{"dimension":"channel","op":"set"}`, []string{"#de.wikipedia", "#en.wikipedia", "#fr.wikipedia", "#ja.wikipedia", "en", weird}},
		{`{"dimension":"channel","op":"notSet"}`, []string{""}},
	}
	for _, c := range cases {
		t.Run(c.filter, func(t *testing.T) {
			q := fmt.Sprintf(`{"cube":"edits","measures":["pv"],"dimensions":["channel"],"granularity":"hour","filters":[%s]}`, c.filter)
			a := f.mustQuery(t, q)
			got := map[string]bool{}
			for _, r := range a.Data.Rows {
				got[r[1].(string)] = true
			}
			wantSet := map[string]bool{}
			for _, v := range c.want {
				wantSet[v] = true
			}
			if !reflect.DeepEqual(got, wantSet) {
				t.Fatalf("channels = %q, want %q", keys(got), c.want)
			}
			want := expectJSON(f.oracle(winHour, gsChannel, math.MinInt64, math.MaxInt64,
				func(d map[string]string) bool { return wantSet[d["channel"]] }), false, []string{"channel"}, []string{"pv"})
			if !reflect.DeepEqual(a.Data.Rows, want) {
				t.Fatalf("got %d rows, want %d", len(a.Data.Rows), len(want))
			}
		})
	}
	// Two filters are ANDed.
	a := f.mustQuery(t, `{"cube":"edits","measures":["uv"],"dimensions":["channel","robot"],"granularity":"day",
		"filters":[{"dimension":"channel","op":"startsWith","values":["#"]},{"dimension":"robot","op":"equals","values":["false"]}]}`)
	want := expectJSON(f.oracle(winDayTumb, gsChannelRobot, math.MinInt64, math.MaxInt64, func(d map[string]string) bool {
		return strings.HasPrefix(d["channel"], "#") && d["robot"] == "false"
	}), false, []string{"channel", "robot"}, []string{"uv"})
	if !reflect.DeepEqual(a.Data.Rows, want) || len(want) == 0 {
		t.Fatalf("ANDed filters: got %d rows, want %d", len(a.Data.Rows), len(want))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestQueryOrderLimitOffset(t *testing.T) {
	f := newFixture(t)
	base := f.oracle(winHour, gsChannel, math.MinInt64, math.MaxInt64, all)
	cases := []struct {
		name          string
		order         string
		limit, offset int
		less          func(a, b oracleRow) bool // nil: primary-key order
	}{
		{"default order", ``, 0, 0, nil},
		{"default order with limit stops early", ``, 7, 3, nil},
		{"offset past the end", ``, 0, 100000, nil},
		{"uv desc", `[["uv","desc"]]`, 0, 0, func(a, b oracleRow) bool { return a.vals["uv"] > b.vals["uv"] }},
		{"uv desc limit offset", `[["uv","desc"]]`, 5, 2, func(a, b oracleRow) bool { return a.vals["uv"] > b.vals["uv"] }},
		{"channel desc then pv asc", `[["channel","desc"],["pv","asc"]]`, 20, 0, func(a, b oracleRow) bool {
			if a.dims["channel"] != b.dims["channel"] {
				return a.dims["channel"] > b.dims["channel"]
			}
			return a.vals["pv"] < b.vals["pv"]
		}},
		{"window_start desc", `[["window_start","desc"]]`, 0, 0, func(a, b oracleRow) bool { return a.start > b.start }},
		// Nulls (NaN) sort last in both directions.
		{"min_delta asc", `[["min_delta","asc"]]`, 0, 0, func(a, b oracleRow) bool { return nanLast(a.vals["min_delta"], b.vals["min_delta"], false) }},
		{"min_delta desc", `[["min_delta","desc"]]`, 0, 0, func(a, b oracleRow) bool { return nanLast(a.vals["min_delta"], b.vals["min_delta"], true) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows := slices.Clone(base)
			if c.less != nil {
				sort.SliceStable(rows, func(i, j int) bool { return c.less(rows[i], rows[j]) })
			}
			if c.offset >= len(rows) {
				rows = nil
			} else {
				rows = rows[c.offset:]
			}
			if c.limit > 0 && len(rows) > c.limit {
				rows = rows[:c.limit]
			}
			want := expectJSON(rows, false, []string{"channel"}, []string{"uv", "pv", "min_delta"})
			q := `{"cube":"edits","measures":["uv","pv","min_delta"],"dimensions":["channel"],"granularity":"hour"`
			if c.order != "" {
				q += `,"order":` + c.order
			}
			q += fmt.Sprintf(`,"limit":%d,"offset":%d}`, c.limit, c.offset)
			a := f.mustQuery(t, q)
			if len(a.Data.Rows) == 0 && len(want) == 0 {
				if a.Data.Rows == nil {
					t.Fatalf("rows is null, want []: %s", a.body)
				}
				return
			}
			if !reflect.DeepEqual(a.Data.Rows, want) {
				t.Fatalf("got %d rows, want %d\ngot  %v\nwant %v", len(a.Data.Rows), len(want), head(a.Data.Rows), head(want))
			}
		})
	}
}

func nanLast(a, b float64, desc bool) bool {
	switch {
	case math.IsNaN(a):
		return false
	case math.IsNaN(b):
		return true
	case desc:
		return a > b
	}
	return a < b
}

func head(rows [][]any) [][]any {
	if len(rows) > 3 {
		return rows[:3]
	}
	return rows
}

func TestQueryTimeRange(t *testing.T) {
	f := newFixture(t)
	utc := func(d, h, m int) int64 { return ms(time.Date(2015, 9, d, h, m, 0, 0, time.UTC)) }
	cases := []struct {
		name     string
		window   int
		gran     string
		from, to string
		wantFrom int64 // inclusive bound on window_start the oracle uses
		wantTo   int64
	}{
		{"RFC 3339, to exclusive", winHour, "hour", "2015-09-12T05:00:00Z", "2015-09-12T08:00:00Z", utc(12, 5, 0), utc(12, 8, 0)},
		{"RFC 3339 with an offset", winHour, "hour", "2015-09-12T10:30:00+05:30", "2015-09-12T13:30:00+05:30", utc(12, 5, 0), utc(12, 8, 0)},
		{"from a millisecond after a start excludes it", winHour, "hour", "2015-09-12T05:00:00.001Z", "2015-09-12T08:00:00Z", utc(12, 6, 0), utc(12, 8, 0)},
		{"to a nanosecond after a start includes it", winHour, "hour", "2015-09-12T05:00:00Z", "2015-09-12T08:00:00.000000001Z", utc(12, 5, 0), utc(12, 8, 0) + 1},
		// Dates are midnights in the cube's zone (Asia/Kolkata, +05:30).
		{"dates on hourly windows", winHour, "hour", "2015-09-12", "2015-09-13", utc(11, 18, 30), utc(12, 18, 30)},
		{"dates on daily windows", winDayTumb, "day", "2015-09-12", "2015-09-13", utc(11, 18, 30), utc(12, 18, 30)},
		{"dates on cumulative windows", winDayCum, "day", "2015-09-12", "2015-09-14", utc(11, 18, 30), utc(13, 18, 30)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := fmt.Sprintf(`{"cube":"edits","measures":["pv"],"dimensions":["channel"],"granularity":%q,"timeRange":[%q,%q]`, c.gran, c.from, c.to)
			cumulative := c.window == winDayCum
			if cumulative {
				q += `,"cumulative":true`
			}
			a := f.mustQuery(t, q+"}")
			want := expectJSON(f.oracle(c.window, gsChannel, c.wantFrom, c.wantTo, all), cumulative, []string{"channel"}, []string{"pv"})
			if len(want) == 0 {
				t.Fatal("oracle found no rows")
			}
			if !reflect.DeepEqual(a.Data.Rows, want) {
				t.Fatalf("got %d rows, want %d\ngot  %v\nwant %v", len(a.Data.Rows), len(want), head(a.Data.Rows), head(want))
			}
		})
	}

	// The local day 2015-09-12 in Kolkata: 24 hourly windows from 00:30+05:30 to 23:30+05:30.
	a := f.mustQuery(t, `{"cube":"edits","measures":["pv"],"granularity":"hour","timeRange":["2015-09-12","2015-09-13"]}`)
	var starts []string
	for _, r := range a.Data.Rows {
		starts = append(starts, r[0].(string))
	}
	hours := map[string]bool{}
	for _, s := range starts {
		hours[s] = true
	}
	if len(starts) == 0 || starts[0] < "2015-09-12T00:30:00+05:30" || starts[len(starts)-1] > "2015-09-12T23:30:00+05:30" {
		t.Fatalf("starts %v outside the local day", starts)
	}
	for _, s := range starts {
		if !strings.HasSuffix(s, ":30:00+05:30") {
			t.Fatalf("window_start %q not an hour in +05:30", s)
		}
	}
	// Daily windows of the local 12th start at its midnight.
	a = f.mustQuery(t, `{"cube":"edits","measures":["pv"],"granularity":"day","timeRange":["2015-09-12","2015-09-13"]}`)
	if len(a.Data.Rows) != 1 || a.Data.Rows[0][0] != "2015-09-12T00:00:00+05:30" {
		t.Fatalf("day window of the 12th: got %v", a.Data.Rows)
	}
}

func TestQueryCumulativeSteps(t *testing.T) {
	f := newFixture(t)
	all := f.oracle(winDayCum, gsChannel, math.MinInt64, math.MaxInt64, nil)
	cases := []struct {
		q    string
		want []oracleRow
	}{
		{`{"cube":"edits","measures":["uv"],"dimensions":["channel"],"granularity":"day","cumulative":true}`, all},
		{`{"cube":"edits","measures":["uv"],"dimensions":["channel"],"granularity":"day","cumulative":true,"steps":"all"}`, all},
		{`{"cube":"edits","measures":["uv"],"dimensions":["channel"],"granularity":"day","cumulative":true,"steps":"last"}`, lastSteps(all)},
		// Without a granularity the first window in model order, the cumulative day, is used.
		{`{"cube":"edits","measures":["uv"],"dimensions":["channel"],"steps":"last"}`, lastSteps(all)},
	}
	for _, c := range cases {
		a := f.mustQuery(t, c.q)
		if !slices.Equal(a.Data.Columns, []string{"window_start", "window_end", "channel", "uv"}) {
			t.Fatalf("%s: columns %v", c.q, a.Data.Columns)
		}
		want := expectJSON(c.want, true, []string{"channel"}, []string{"uv"})
		if !reflect.DeepEqual(a.Data.Rows, want) {
			t.Fatalf("%s: got %d rows, want %d\ngot  %v\nwant %v", c.q, len(a.Data.Rows), len(want), head(a.Data.Rows), head(want))
		}
	}
	if n, m := len(all), len(lastSteps(all)); n <= m || m == 0 {
		t.Fatalf("fixture: %d steps, %d last steps; want more steps than windows", n, m)
	}
	// The open day (13th) has windows whose last step ends at +6h and others at +12h.
	ends := map[string]bool{}
	for _, r := range f.mustQuery(t, `{"cube":"edits","dimensions":["channel"],"cumulative":true,"steps":"last","timeRange":["2015-09-13","2015-09-14"]}`).Data.Rows {
		ends[r[1].(string)] = true
	}
	if !reflect.DeepEqual(keys(ends), []string{"2015-09-13T06:00:00+05:30", "2015-09-13T12:00:00+05:30"}) {
		t.Fatalf("last step ends of the open day: %v", keys(ends))
	}

	// "day" alone picks the tumbling day window: no window_end column, its rows.
	a := f.mustQuery(t, `{"cube":"edits","measures":["uv"],"dimensions":["channel"],"granularity":"day","steps":"last"}`)
	want := expectJSON(f.oracle(winDayTumb, gsChannel, math.MinInt64, math.MaxInt64, nil), false, []string{"channel"}, []string{"uv"})
	if !slices.Equal(a.Data.Columns, []string{"window_start", "channel", "uv"}) || !reflect.DeepEqual(a.Data.Rows, want) {
		t.Fatalf("tumbling day: columns %v, %d rows, want %d", a.Data.Columns, len(a.Data.Rows), len(want))
	}
	a = f.mustQuery(t, `{"cube":"edits","measures":["uv"],"dimensions":["channel"],"granularity":"day","cumulative":false}`)
	if !reflect.DeepEqual(a.Data.Rows, want) {
		t.Fatalf("cumulative:false: %d rows, want %d", len(a.Data.Rows), len(want))
	}
}

func TestQueryBadQueries(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, q string
		code    int
		want    string // the whole error message
	}{
		{"not an object", `[1,2]`, 400, ``},
		{"trailing garbage", `{"cube":"edits"} x`, 400, ``},
		{"no cube", `{"measures":["pv"]}`, 400, `query names no cube (cubes: edits, retail)`},
		{"unknown cube", `{"cube":"wiki"}`, 400, `unknown cube "wiki" (cubes: edits, retail)`},
		{"unknown fields", `{"cube":"edits","limt":3,"dimension":["x"]}`, 400,
			`unknown query fields "dimension", "limt" (valid: cube, measures, dimensions, filters, granularity, timeRange, order, limit, offset, cumulative, steps)`},
		{"unknown filter field", `{"cube":"edits","filters":[{"dimension":"channel","operator":"set"}]}`, 400,
			`unknown field "operator" in query filter 0 (valid: dimension, op, values)`},
		{"wrong type", `{"cube":"edits","limit":"ten"}`, 400, `query field "limit": want an integer ≥ 0, got "\"ten\""`},
		{"unknown measure", `{"cube":"edits","measures":["pv","uvv"]}`, 400,
			`unknown measure "uvv" in cube "edits" (measures: pv, added, uv, min_delta)`},
		{"dimension as measure", `{"cube":"edits","measures":["channel"]}`, 400,
			`unknown measure "channel" in cube "edits" (it is a dimension) (measures: pv, added, uv, min_delta)`},
		{"unknown dimension", `{"cube":"edits","dimensions":["country"]}`, 400,
			`unknown dimension "country" in cube "edits" (dimensions: channel, namespace, robot)`},
		{"unknown filter dimension", `{"cube":"edits","filters":[{"dimension":"uv","op":"set"}]}`, 400,
			`unknown dimension "uv" in filter 0 in cube "edits" (it is a measure) (dimensions: channel, namespace, robot)`},
		{"duplicate measure", `{"cube":"edits","measures":["pv","pv"]}`, 400, `measure "pv" is requested twice`},
		{"no such granularity", `{"cube":"edits","granularity":"minute"}`, 400,
			`cube "edits" has no minute window (windows: day (cumulative, step 6h), hour, day)`},
		{"no cumulative hour", `{"cube":"edits","granularity":"hour","cumulative":true}`, 400,
			`cube "edits" has no cumulative hour window (windows: day (cumulative, step 6h), hour, day)`},
		{"bad op", `{"cube":"edits","dimensions":["channel"],"filters":[{"dimension":"channel","op":"like","values":["x"]}]}`, 400,
			`unknown op "like" in filter 0 on "channel" (ops: equals, notEquals, contains, notContains, startsWith, endsWith, set, notSet)`},
		{"op without values", `{"cube":"edits","dimensions":["channel"],"filters":[{"dimension":"channel","op":"equals"}]}`, 400,
			`op "equals" in filter 0 on "channel" needs at least one value`},
		{"set with values", `{"cube":"edits","dimensions":["channel"],"filters":[{"dimension":"channel","op":"set","values":["x"]}]}`, 400,
			`op "set" in filter 0 on "channel" takes no values, got 1`},
		{"bad time", `{"cube":"edits","timeRange":["yesterday","2015-09-13"]}`, 400,
			`timeRange from: "yesterday" is neither an RFC 3339 timestamp (2015-09-12T06:00:00Z) nor a date (2015-09-12)`},
		{"bad to", `{"cube":"edits","timeRange":["2015-09-12","2015-09-32"]}`, 400,
			`timeRange to: "2015-09-32" is neither an RFC 3339 timestamp (2015-09-12T06:00:00Z) nor a date (2015-09-12)`},
		{"empty time range", `{"cube":"edits","timeRange":["2015-09-12","2015-09-12"]}`, 400,
			`timeRange ["2015-09-12", "2015-09-12"] is empty: from must be before to, which is exclusive (a date as to means midnight starting that day, so ["2015-09-12", "2015-09-13"] is one day)`},
		{"one bound", `{"cube":"edits","timeRange":["2015-09-12"]}`, 400, `query field "timeRange": want [from, to], got 1 value`},
		{"order on a non-column", `{"cube":"edits","measures":["pv"],"dimensions":["channel"],"order":[["uv","desc"]]}`, 400,
			`order entry 0 names "uv", which is not a column of this query (columns: window_start, window_end, channel, pv)`},
		{"order on window_end of a tumbling window", `{"cube":"edits","granularity":"hour","order":[["window_end","asc"]]}`, 400,
			`order entry 0 names "window_end", which is not a column of this query (columns: window_start)`},
		{"bad direction", `{"cube":"edits","order":[["window_start","up"]]}`, 400,
			`order entry 0 on "window_start": unknown direction "up" (valid: asc, desc)`},
		{"order entry shape", `{"cube":"edits","order":[["window_start"]]}`, 400,
			`query field "order" entry 0: want [column, "asc" | "desc"], got 1 value`},
		{"negative limit", `{"cube":"edits","limit":-1}`, 400, `query field "limit": want an integer ≥ 0 (0 means no limit), got -1`},
		{"negative offset", `{"cube":"edits","offset":-5}`, 400, `query field "offset": want an integer ≥ 0, got -5`},
		{"bad steps", `{"cube":"edits","steps":"first"}`, 400, `unknown steps "first" (valid: all, last)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := f.query(t, c.q)
			if a.code != c.code || a.Status != "error" || a.ErrorType != "bad_data" {
				t.Fatalf("got %d %s, want %d bad_data", a.code, a.body, c.code)
			}
			if c.want != "" && a.Error != c.want {
				t.Fatalf("error\n got %q\nwant %q", a.Error, c.want)
			}
			if a.Error == "" {
				t.Fatal("empty error message")
			}
		})
	}
	// The same through Run: a *BadQuery.
	q, err := DecodeQuery([]byte(`{"cube":"edits","granularity":"week"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), f.b, q)
	var bq *BadQuery
	if !errors.As(err, &bq) {
		t.Fatalf("Run: got %v (%T), want *BadQuery", err, err)
	}
}

func TestRunCopiesReusedRows(t *testing.T) {
	// memBackend clobbers the Row after each callback; the result must not see it.
	f := newFixture(t)
	q := Query{Cube: "edits", Measures: []string{"pv", "min_delta"}, Dimensions: []string{"namespace", "channel"}, Granularity: "hour"}
	res, err := Run(context.Background(), f.b, q)
	if err != nil {
		t.Fatal(err)
	}
	want := expectJSON(f.oracle(winHour, gsChannelNamespace, math.MinInt64, math.MaxInt64, nil), false, q.Dimensions, q.Measures)
	if len(res.Rows) != len(want) || len(want) == 0 {
		t.Fatalf("got %d rows, want %d", len(res.Rows), len(want))
	}
	for i, r := range res.Rows {
		start := r[0].(time.Time)
		if start.Location() != kolkata {
			t.Fatalf("row %d window_start in %v, want Asia/Kolkata", i, start.Location())
		}
		got := []any{start.Format(time.RFC3339), r[1], r[2], r[3], r[4]}
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("row %d = %v, want %v", i, got, want[i])
		}
	}
	wantCols := []Column{{"window_start", TypeTime}, {"namespace", TypeString}, {"channel", TypeString}, {"pv", TypeNumber}, {"min_delta", TypeNumber}}
	if !reflect.DeepEqual(res.Columns, wantCols) {
		t.Fatalf("columns %v, want %v", res.Columns, wantCols)
	}
	if !res.Freshness.Watermark.Equal(watermark) || res.Timezone != "Asia/Kolkata" {
		t.Fatalf("freshness %v, timezone %q", res.Freshness, res.Timezone)
	}
}

func TestRunStopsEarlyAndOnCancel(t *testing.T) {
	f := newFixture(t)
	counting := &countingBackend{memBackend: f.b}
	res, err := Run(context.Background(), counting, Query{Cube: "edits", Dimensions: []string{"channel"}, Granularity: "hour", Limit: 4, Offset: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 4 || counting.calls != 5 {
		t.Fatalf("limit 4 offset 1: %d rows after %d callbacks, want 4 after 5", len(res.Rows), counting.calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, f.b, Query{Cube: "edits", Dimensions: []string{"channel", "namespace"}, Granularity: "hour"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled query: got %v, want context.Canceled", err)
	}
}

// countingBackend counts the rows Scan hands to the query.
type countingBackend struct {
	*memBackend
	calls int
}

func (c *countingBackend) Scan(cubeName string, window int, gs uint16, from, to int64, fn func(r *sink.Row) error) error {
	return c.memBackend.Scan(cubeName, window, gs, from, to, func(r *sink.Row) error {
		c.calls++
		return fn(r)
	})
}

func TestDecodeQueryRoundTrip(t *testing.T) {
	text := `{"cube":"edits","measures":["uv","pv"],"dimensions":["channel"],
		"filters":[{"dimension":"robot","op":"equals","values":["false"]},{"dimension":"channel","op":"set","values":[]}],
		"granularity":"day","timeRange":["2015-09-12","2015-09-13"],"order":[["uv","desc"]],"limit":20,"offset":2,
		"cumulative":true,"steps":"last"}`
	q, err := DecodeQuery([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	want := Query{Cube: "edits", Measures: []string{"uv", "pv"}, Dimensions: []string{"channel"},
		Filters:     []Filter{{Dimension: "robot", Op: "equals", Values: []string{"false"}}, {Dimension: "channel", Op: "set"}},
		Granularity: "day", TimeRange: []string{"2015-09-12", "2015-09-13"}, Order: [][]string{{"uv", "desc"}}, Limit: 20, Offset: 2,
		Cumulative: &yes, Steps: "last"}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("decoded %+v\nwant    %+v", q, want)
	}
	// Keys are case-sensitive: encoding/json alone would accept "Cube".
	if _, err := DecodeQuery([]byte(`{"Cube":"edits"}`)); err == nil || !strings.Contains(err.Error(), `unknown query field "Cube"`) {
		t.Fatalf("Cube: got %v", err)
	}
}

// FuzzQueryDecode checks that DecodeQuery never panics, fails only with a *BadQuery, and that
// what it accepts survives a round trip through encoding/json unchanged.
func FuzzQueryDecode(f *testing.F) {
	for _, s := range []string{
		`{"cube":"edits","measures":["uv","pv"],"dimensions":["channel"],"filters":[{"dimension":"robot","op":"equals","values":["false"]}],"granularity":"day","timeRange":["2015-09-12","2015-09-13"],"order":[["uv","desc"]],"limit":20}`,
		`{"cube":"x","cumulative":false,"steps":"last","offset":3}`,
		`{"cube":"x","timeRange":null,"filters":[],"order":[]}`,
		`{"cube":"x","filters":[null]}`,
		`{"cube":"x","filters":[{"values":[]}]}`,
		`{"cube":"x","order":[["a"]]}`,
		`{"cube":"x","limit":1e3}`,
		`{"cube":"x","limit":-1}`,
		`{"cube":"\u00e9\ud800"}`,
		`{"cube":1}`,
		`null`, `[]`, `{}`, `{"a":1}`, `{`, ``, `{"cube":"x"}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := DecodeQuery(data)
		if err != nil {
			var bq *BadQuery
			if !errors.As(err, &bq) || bq.Msg == "" {
				t.Fatalf("DecodeQuery(%q): error %v (%T), want a *BadQuery with a message", data, err, err)
			}
			return
		}
		if q.Limit < 0 || q.Offset < 0 || (q.TimeRange != nil && len(q.TimeRange) != 2) {
			t.Fatalf("DecodeQuery(%q) accepted %+v", data, q)
		}
		for _, o := range q.Order {
			if len(o) != 2 {
				t.Fatalf("DecodeQuery(%q) accepted order %v", data, q.Order)
			}
		}
		again, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("encoding %+v: %v", q, err)
		}
		q2, err := DecodeQuery(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		if !reflect.DeepEqual(q, q2) {
			t.Fatalf("round trip of %q:\n%+v\n%+v", data, q, q2)
		}
	})
}
