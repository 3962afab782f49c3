package source

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readLetters(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q is not JSON: %v", path, sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeadLetterLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dead.jsonl")
	d, err := OpenDeadLetter(path)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UTC().Truncate(time.Millisecond)
	if err := d.Write("wiki", 2, 42, []byte(`{"ts":"x","é":1}`), errors.New(`decoding event time field "ts": bad`)); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0xff, 0xfe, 0x00, 'a'}
	if err := d.Write("wiki", 0, 7, bin, nil); err != nil {
		t.Fatal(err)
	}
	if d.Count() != 2 {
		t.Errorf("Count() = %d, want 2", d.Count())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("wiki", 0, 8, nil, nil); err == nil {
		t.Error("Write after Close succeeded")
	}
	got := readLetters(t, path)
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2", len(got))
	}
	l := got[0]
	if l["cube"] != "wiki" || l["partition"] != 2.0 || l["offset"] != 42.0 || l["value"] != `{"ts":"x","é":1}` ||
		l["error"] != `decoding event time field "ts": bad` || l["value_base64"] != nil {
		t.Errorf("first letter = %v", l)
	}
	ts, err := time.Parse(time.RFC3339Nano, l["time"].(string))
	if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v (%v) is not the time of writing", l["time"], err)
	}
	l = got[1]
	raw, err := base64.StdEncoding.DecodeString(l["value"].(string))
	if err != nil || string(raw) != string(bin) || l["value_base64"] != true || l["error"] != "" {
		t.Errorf("binary letter = %v (decoded %q, %v)", l, raw, err)
	}

	// Reopening appends.
	d, err = OpenDeadLetter(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write("wiki", 1, 1, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if n := len(readLetters(t, path)); n != 3 {
		t.Errorf("after reopening: %d lines, want 3", n)
	}
}

func TestDeadLetterRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	const limit = 2000
	d, err := OpenDeadLetter(path, WithDeadLetterMaxBytes(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	checkSizes := func() {
		t.Helper()
		for _, p := range []string{path, path + ".1"} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if st.Size() > limit || st.Size() == 0 {
				t.Errorf("%s is %d bytes, want 1..%d", p, st.Size(), limit)
			}
		}
		if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
			t.Errorf("%s.2 exists: only one old file is kept", path)
		}
	}

	// Sequential: the two files hold the newest letters, contiguous, ending with the last one.
	const n = 100
	for i := 0; i < n; i++ {
		if err := d.Write("c", 0, int64(i), []byte(strings.Repeat("v", 40)), fmt.Errorf("bad %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	checkSizes()
	letters := append(readLetters(t, path+".1"), readLetters(t, path)...)
	for i, l := range letters {
		if want := float64(n - len(letters) + i); l["offset"] != want {
			t.Fatalf("kept letter %d has offset %v, want %v", i, l["offset"], want)
		}
	}
	if len(letters) < 10 { // each line is about 130 bytes: both files together hold over 15
		t.Errorf("only %d letters kept", len(letters))
	}

	// Concurrent writers: every letter lands whole and Count sees them all.
	const writers, each = 4, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := d.Write("c", int32(w+1), int64(i), []byte(strings.Repeat("v", 40)), nil); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if d.Count() != n+writers*each {
		t.Errorf("Count() = %d, want %d", d.Count(), n+writers*each)
	}
	checkSizes()
	readLetters(t, path+".1") // every line parses
	readLetters(t, path)
}
