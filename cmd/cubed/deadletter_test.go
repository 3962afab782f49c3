package main_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeadLetterCLI replays a small JSON file with three malformed lines among good ones: the
// summary counts them as bad, the dead-letter file holds each with its line number as offset and
// its raw text, and every good event is counted in the results.
func TestDeadLetterCLI(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		`{"time":"2015-09-12T00:01:00Z","channel":"#en","user":"a"}`,
		`{"time":"2015-09-12T00:02:00Z","channel":"#en","user":"b"}`,
		`{"time":"2015-09-12T00:03:00Z","channel":`, // 3: truncated JSON
		`{"time":"2015-09-12T00:04:00Z","channel":"#de","user":"a"}`,
		`[1, 2, 3]`, // 5: not an object
		`{"time":"2015-09-12T01:05:00Z","channel":"#en","user":"c"}`,
		`{"time":"yesterday at noon","channel":"#en","user":"d"}`, // 7: bad event time
		`{"time":"2015-09-12T01:06:00Z","channel":"#de","user":"a"}`,
		`{"time":"2015-09-12T01:07:00Z","channel":"#de","user":"b"}`,
		`{"time":"2015-09-12T01:08:00Z","user":"e"}`,
	}
	bad := map[int64]string{3: lines[2], 5: lines[4], 7: lines[6]}
	if err := os.WriteFile(filepath.Join(dir, "events.json"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "dl.yaml")
	if err := os.WriteFile(cfg, []byte(`version: 1
cubes:
  - name: dl
    source:
      file: {path: events.json}
      format: json
    event_time: {field: time, format: rfc3339}
    dimensions: [{name: channel}]
    measures:
      - {name: pv, type: count}
      - {name: uv, type: count_distinct, field: user}
    grouping_sets: [[], [channel]]
    windows: [{granularity: hour, emit_every: 1s}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	sums := runReplay(t, cfg, data, 60*time.Second)
	s, ok := sums["dl"]
	if !ok {
		t.Fatalf("no summary for cube dl: %v", sums)
	}
	// events counts the records that decoded (and were aggregated); bad ones only in bad_events.
	if s.Events != 7 || s.BadEvents != 3 || s.LateEvents != 0 {
		t.Errorf("summary %+v; want events 7, bad_events 3, late_events 0", s)
	}

	f, err := os.Open(filepath.Join(data, "deadletter", "dl.jsonl"))
	if err != nil {
		t.Fatalf("dead-letter file: %v", err)
	}
	defer f.Close()
	seen := map[int64]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var dl struct {
			Cube      string `json:"cube"`
			Partition int32  `json:"partition"`
			Offset    int64  `json:"offset"`
			Error     string `json:"error"`
			Value     string `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			t.Errorf("dead-letter line %q: %v", sc.Text(), err)
			continue
		}
		want, ok := bad[dl.Offset]
		switch {
		case !ok:
			t.Errorf("dead letter for offset %d, which is a good line (bad lines: 3, 5, 7): %s", dl.Offset, sc.Text())
		case seen[dl.Offset]:
			t.Errorf("offset %d dead-lettered twice", dl.Offset)
		case dl.Cube != "dl" || dl.Partition != 0 || dl.Error == "" || dl.Value != want:
			t.Errorf("dead letter %s; want cube dl, partition 0, an error, value %q", sc.Text(), want)
		}
		seen[dl.Offset] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 {
		t.Errorf("dead-lettered offsets %v; want 3, 5, 7", seen)
	}

	// The good events, counted by hand: hour 00 has #en a, #en b, #de a; hour 01 has #en c,
	// #de a, #de b and one event without a channel.
	q := `{"cube":"dl","measures":["pv","uv"],"dimensions":["channel"],"granularity":"hour","limit":0}`
	out := runCubed(t, "", 60*time.Second, "query", "--config", cfg, "--data-dir", data, q)
	if out.exitCode != 0 {
		t.Fatalf("cubed query %s: exit code %d\n%s\n%s", q, out.exitCode, out.stdout, out.stderr)
	}
	cubes, err := oLoadModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseQueryAnswer(cubes[0], 0, 1, out.stdout)
	if err != nil {
		t.Fatal(err)
	}
	h0 := time.Date(2015, 9, 12, 0, 0, 0, 0, time.UTC).UnixMilli()
	h1 := time.Date(2015, 9, 12, 1, 0, 0, 0, time.UTC).UnixMilli()
	want := []oRow{
		{h0, 0, []string{"#de"}, []oNum{{v: 1}, {v: 1}}},
		{h0, 0, []string{"#en"}, []oNum{{v: 2}, {v: 2}}},
		{h1, 0, []string{""}, []oNum{{v: 1}, {v: 1}}},
		{h1, 0, []string{"#de"}, []oNum{{v: 2}, {v: 2}}},
		{h1, 0, []string{"#en"}, []oNum{{v: 1}, {v: 1}}},
	}
	if d := diffRows(cubes[0], []string{"pv", "uv"}, want, got); d != "" {
		t.Errorf("query %s: %s", q, d)
	}

	// A query error is the bad_data envelope and exit code 1.
	badQ := `{"cube":"dl","measures":["nope"],"dimensions":[],"granularity":"hour"}`
	out = runCubed(t, "", 60*time.Second, "query", "--config", cfg, "--data-dir", data, badQ)
	var env struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(out.stdout, &env); err != nil || out.exitCode != 1 || env.Status != "error" || env.ErrorType != "bad_data" || !strings.Contains(env.Error, "nope") {
		t.Errorf("cubed query %s: exit code %d, stdout %q; want 1 and {\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"...nope...\"}", badQ, out.exitCode, out.stdout)
	}
}
