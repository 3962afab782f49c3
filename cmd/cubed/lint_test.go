package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// diagLine is the shape of one `cubed lint` problem line.
var diagLine = regexp.MustCompile(`^(.+):(\d+):(\d+): (.+)$`)

// badModel has one problem on each of the lines named in badModelProblems.
const badModel = `version: 1
cubes:
  - name: bad_cube
    source:
      file: {path: events.json}
      format: json
    event_time:
      field: time
    dimensions:
      - name: country
      - name: os
    measures:
      - {name: pv, type: count}
      - {name: uv, type: count_distinct}
      - {name: spend, type: average, field: amount}
    grouping_sets:
      - [country]
      - [contry]
    windows:
      - {granularity: day, emit_every: 10s}
      - {granularity: fortnight}
    sink:
      tabel: x
`

// badModelProblems: line of the model → a word the diagnostic on that line must contain.
var badModelProblems = map[int]string{
	14: "field",     // count_distinct without a field
	15: "average",   // unknown measure type
	18: "contry",    // unknown dimension in a grouping set
	21: "fortnight", // unknown granularity
	23: "tabel",     // unknown key
}

// TestLintCLI checks `cubed lint`: every problem of a bad model on its own FILE:LINE:COL line and
// exit code 1; the models of configs/ lint clean with exit code 0.
func TestLintCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("bad.yaml", badModel)
	write("syntax.yaml", "version: 1\ncubes:\n  - name: [unclosed\n")
	good := write("good.yaml", `version: 1
cubes:
  - name: good_cube
    source:
      file: {path: events.json}
    event_time: {field: time}
    dimensions: [{name: country}]
    measures: [{name: pv, type: count}]
    grouping_sets: [[], [country]]
    windows: [{granularity: hour}]
`)

	// fileOf accepts the file named as given on the command line or made absolute.
	fileOf := func(got, given string) bool {
		return got == given || got == filepath.Join(dir, given)
	}

	t.Run("bad", func(t *testing.T) {
		res := runCubed(t, dir, 60*time.Second, "lint", "good.yaml", "bad.yaml")
		if res.exitCode != 1 {
			t.Fatalf("cubed lint good.yaml bad.yaml: exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", res.exitCode, res.stdout, res.stderr)
		}
		found := map[int]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(res.stdout)), "\n") {
			m := diagLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("stdout line %q is not FILE:LINE:COL: message", line)
				continue
			}
			if !fileOf(m[1], "bad.yaml") {
				t.Errorf("diagnostic %q names file %q; only bad.yaml has problems", line, m[1])
				continue
			}
			found[atoi(t, m[2])] += " " + m[4]
			if atoi(t, m[3]) < 1 {
				t.Errorf("diagnostic %q has column < 1", line)
			}
		}
		for ln, word := range badModelProblems {
			if !strings.Contains(found[ln], word) {
				t.Errorf("no diagnostic on line %d mentioning %q (line %d: %q)\nstdout:\n%s", ln, word, ln, strings.Split(badModel, "\n")[ln-1], res.stdout)
			}
		}
		if !strings.Contains(found[18], "country") || !strings.Contains(found[18], "os") {
			t.Errorf("the unknown grouping-set dimension should list the valid ones (country, os): %q", found[18])
		}
		if !strings.Contains(found[23], "table") {
			t.Errorf("the unknown sink key should list the valid keys (table): %q", found[23])
		}
	})

	t.Run("syntax", func(t *testing.T) {
		res := runCubed(t, dir, 60*time.Second, "lint", "syntax.yaml")
		out := strings.TrimSpace(string(res.stdout))
		if res.exitCode != 1 || out == "" {
			t.Fatalf("cubed lint syntax.yaml: exit code %d, stdout %q; want 1 and a diagnostic", res.exitCode, out)
		}
		for _, line := range strings.Split(out, "\n") {
			m := diagLine.FindStringSubmatch(line)
			if m == nil || !fileOf(m[1], "syntax.yaml") || atoi(t, m[2]) < 1 {
				t.Errorf("stdout line %q is not syntax.yaml:LINE:COL: message", line)
			}
		}
	})

	t.Run("good", func(t *testing.T) {
		res := runCubed(t, dir, 60*time.Second, "lint", good)
		if res.exitCode != 0 || strings.TrimSpace(string(res.stdout)) != "" {
			t.Errorf("cubed lint good.yaml: exit code %d, stdout %q; want 0 and nothing", res.exitCode, res.stdout)
		}
	})

	t.Run("configs", func(t *testing.T) {
		configs, err := filepath.Glob(filepath.Join(repoRoot(t), "configs", "*.yaml"))
		if err != nil || len(configs) < 3 {
			t.Fatalf("configs/*.yaml: %v %v; want at least the three real-data models", configs, err)
		}
		res := runCubed(t, "", 60*time.Second, append([]string{"lint"}, configs...)...)
		if res.exitCode != 0 || strings.TrimSpace(string(res.stdout)) != "" {
			t.Errorf("cubed lint configs/*.yaml: exit code %d, want 0 and nothing on stdout\nstdout:\n%s\nstderr:\n%s", res.exitCode, res.stdout, res.stderr)
		}
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
