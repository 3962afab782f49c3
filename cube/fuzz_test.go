package cube

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must not panic, every diagnostic of an input with
// content has a position (line and column ≥ 1), diagnostics are sorted, and a model accepted
// without diagnostics must compile.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "\n", "~", "[]", "version: 1", "version: 1\ncubes: []\n", "a: &a [*a]\n",
		"version: 1\ncubes:\n  - &c {name: x, <<: *c}\n", "<<: {version: 1}\ncubes: 3\n",
		"version: 1\ncubes: [{name: c, source: {kafka: {brokers: [b], topic: t}}, event_time: {field: ts}, measures: [{name: pv, type: count}], windows: [{granularity: day, step: 1d}]}]\n",
		"--- a\n--- b\n", "\t", "\xff\xfe", "? [a]\n: b\n", "version: !!int 1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, diags := Parse("f.yaml", data)
		if (m == nil) == (len(diags) == 0) {
			t.Fatalf("model %v with %d diagnostics", m, len(diags))
		}
		hasContent := len(bytes.TrimSpace(data)) > 0
		for i, d := range diags {
			if hasContent && (d.Line < 1 || d.Col < 1) {
				t.Errorf("diagnostic without position: %v", d)
			}
			if d.File != "f.yaml" || d.Message == "" {
				t.Errorf("diagnostic %v: bad file or empty message", d)
			}
			if i > 0 && (diags[i-1].Line > d.Line || diags[i-1].Line == d.Line && diags[i-1].Col > d.Col) {
				t.Errorf("diagnostics out of order: %v then %v", diags[i-1], d)
			}
		}
		if m == nil {
			return
		}
		for _, c := range m.Cubes {
			p, err := Compile(c)
			if err != nil {
				t.Fatalf("accepted model does not compile: %v", err)
			}
			if _, err := p.JSON(); err != nil {
				t.Fatal(err)
			}
			_ = p.Text()
			_ = p.DOT()
		}
	})
}
