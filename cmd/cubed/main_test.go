// Black-box tests of the cubed binary: TestMain's helpers build it once (go build -o <tmp>/cubed .)
// and the tests run it as a subprocess, the way a user does, and compare what it answers with an
// independent brute-force oracle over the raw data files (oracle_test.go).
//
// The tests are in package main_test so that nothing here can collide with, or reach into, the
// command's own code.
package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	binDir   string // temporary folder holding the built binary; removed by TestMain
	buildBin sync.Once
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "cubed-blackbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a folder for the cubed binary:", err)
		os.Exit(2)
	}
	// The oracle holds millions of small objects for online_retail; collect less often.
	debug.SetGCPercent(400)
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// goTool finds the go command that runs these tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}

// cubedBinary builds the cubed binary once (lazily, so that the oracle's own tests run without
// it) and returns its path; a build failure fails the calling test with the compiler output.
func cubedBinary(t testing.TB) string {
	t.Helper()
	buildBin.Do(func() {
		binPath = filepath.Join(binDir, "cubed")
		cmd := exec.Command(goTool(), "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -o %s . in cmd/cubed: %w\n%s", binPath, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// repoRoot is the module root (this package lives in cmd/cubed).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("resolving the repository root: %v", err)
	}
	return root
}

// dataDir returns the shared real-data folder next to the repository. When it is absent the
// test fails if the environment variable CI is set and is skipped loudly otherwise.
func dataDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "data")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("real data folder %s is missing (CI is set, so this is a failure): %v", dir, err)
		}
		t.Skipf("!!! SKIPPED: real data folder %s is missing (%v); these tests check cubed against real data and did NOT run", dir, err)
	}
	return dir
}

// dataFile returns the absolute path of one file of the shared data folder.
func dataFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(dataDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("data file %s: %v", p, err)
	}
	return p
}

// cmdResult is what one run of the binary produced.
type cmdResult struct {
	stdout, stderr []byte
	exitCode       int
}

// runCubed runs the binary with args in dir (the package folder when dir is "") and waits for it,
// at most timeout. Only a failure to start or a timeout fails the test; the exit code is returned.
func runCubed(t testing.TB, dir string, timeout time.Duration, args ...string) cmdResult {
	t.Helper()
	bin := cubedBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		t.Fatalf("cubed %s: did not finish within %v\nstderr (tail):\n%s", strings.Join(args, " "), timeout, tail(res.stderr, 40))
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("cubed %s: %v", strings.Join(args, " "), err)
		}
		res.exitCode = ee.ExitCode()
	}
	return res
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// replaySummary is one line of `cubed replay` stdout.
type replaySummary struct {
	Cube       string `json:"cube"`
	Events     int64  `json:"events"`
	BadEvents  int64  `json:"bad_events"`
	LateEvents int64  `json:"late_events"`
	Rows       int64  `json:"rows"`
	// State memory figures (see pipeline.Summary).
	PeakStateBytes int64 `json:"peak_state_bytes"`
	Evictions      int64 `json:"evictions"`
	BlockLoads     int64 `json:"block_loads"`
	DictTrims      int64 `json:"dictionary_trims"`
}

// runReplay runs `cubed replay --config cfg --data-dir dataDir`, requires exit code 0, and returns
// the summaries by cube name.
func runReplay(t testing.TB, cfg, dataDir string, timeout time.Duration) map[string]replaySummary {
	t.Helper()
	res := runCubed(t, "", timeout, "replay", "--config", cfg, "--data-dir", dataDir)
	if res.exitCode != 0 {
		t.Fatalf("cubed replay --config %s: exit code %d\nstdout:\n%s\nstderr (tail):\n%s", cfg, res.exitCode, tail(res.stdout, 20), tail(res.stderr, 40))
	}
	out := map[string]replaySummary{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.stdout)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var s replaySummary
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("cubed replay: stdout line %q is not a summary {cube, events, bad_events, late_events, rows}: %v", line, err)
		}
		if _, dup := out[s.Cube]; dup {
			t.Fatalf("cubed replay: two summaries for cube %q", s.Cube)
		}
		out[s.Cube] = s
	}
	return out
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// lockedBuffer is an io.Writer safe for a subprocess's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}
