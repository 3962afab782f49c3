package main_test

import (
	"math/rand"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// checkAgainstOracle queries every grouping set of every window of c from the data dir with
// `cubed query` and compares the rows with the oracle's; it returns the number of rows checked.
func checkAgainstOracle(t *testing.T, c *oCube, res *oResult, cfg, dir string) int64 {
	t.Helper()
	var total int64
	for w := range c.Windows {
		for g := range c.Sets {
			want := res.Rows(w, g, false)
			total += int64(len(want))
			q := queryFor(c, w, g)
			out := runCubed(t, "", 60*time.Second, "query", "--config", cfg, "--data-dir", dir, string(q))
			if out.exitCode != 0 {
				t.Errorf("cubed query %s: exit code %d\nstdout: %s\nstderr: %s", q, out.exitCode, truncate(out.stdout, 500), tail(out.stderr, 20))
				continue
			}
			got, err := parseQueryAnswer(c, w, g, out.stdout)
			if err != nil {
				t.Errorf("cube %s window %v grouping set %v: %v", c.Name, c.Windows[w], c.Sets[g], err)
				continue
			}
			if d := diffRows(c, measureNames(c), want, got); d != "" {
				t.Errorf("cube %s window %v grouping set %v (query %s): %s", c.Name, c.Windows[w], c.Sets[g], q, d)
			}
		}
	}
	return total
}

// TestReplayCrash kills `cubed replay` of online_retail with SIGKILL at random points (with a
// checkpoint every 100 ms), then runs it to the end on the same data dir, then once more: the
// results equal the oracle exactly (no event lost, none counted twice) and the last run changes
// nothing.
func TestReplayCrash(t *testing.T) {
	data := dataFile(t, "online_retail.csv.gz")
	tmp := t.TempDir()
	model := rewriteModel(t, filepath.Join(repoRoot(t), "configs", "online_retail.yaml"), func(c map[string]any) {
		subMap(subMap(c, "source"), "file")["path"] = data
	})
	cfg := filepath.Join(tmp, "online_retail.yaml")
	cubes, wait := startOracle(t, cfg, model)
	dir := filepath.Join(tmp, "data")
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	bin := cubedBinary(t)
	for kill := 0; kill < 4; kill++ {
		after := time.Duration(200+r.Intn(1300)) * time.Millisecond
		cmd := exec.Command(bin, "replay", "--config", cfg, "--data-dir", dir, "--checkpoint-every", "100ms")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("run %d finished before the kill at %v (%v)", kill, after, err)
		case <-time.After(after):
			cmd.Process.Kill() // SIGKILL
			<-done
			t.Logf("run %d killed after %v", kill, after)
		}
	}
	sums := runReplay(t, cfg, dir, 150*time.Second)
	t.Logf("run to the end: %v", sums)
	again := runReplay(t, cfg, dir, 60*time.Second)
	if s := again["online_retail"]; s.Events != 0 || s.Rows != 0 {
		t.Errorf("replay after the end read %d events and wrote %d rows, want nothing", s.Events, s.Rows)
	}
	res := wait(t)[0]
	n := checkAgainstOracle(t, cubes[0], res, cfg, dir)
	t.Logf("%d result rows equal the oracle", n)
}
