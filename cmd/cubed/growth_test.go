package main_test

// Tests of the new_users and retention measures against the brute-force oracle beyond the
// shipped models (configs/online_retail.yaml has them and is checked by TestReplayOracle,
// TestKafkaOracle and the crash tests): new users on wikiticker's hourly curve, and the history
// import.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestNewUsersWikiticker replays wikiticker with new users and day-1 retention in a cumulative
// day window with 1-hour steps (new users hour by hour) and a tumbling day window, and compares
// every grouping set with the oracle. The file's dozen edits dated 2015-09-08 .. 2015-09-20 come
// out of order, so some users are first seen on a day the stream reaches after a later one.
func TestNewUsersWikiticker(t *testing.T) {
	data := dataFile(t, "wikiticker-2015-09-12.json.gz")
	tmp := t.TempDir()
	model := rewriteModel(t, filepath.Join(repoRoot(t), "configs", "wikiticker.yaml"), func(c map[string]any) {
		subMap(subMap(c, "source"), "file")["path"] = data
		c["measures"] = append(c["measures"].([]any),
			map[string]any{"name": "new_users", "type": "new_users", "field": "user"},
			map[string]any{"name": "d1", "type": "retention", "field": "user", "days": 1},
			map[string]any{"name": "d1_new", "type": "retention", "field": "user", "days": 1, "cohort": "new"})
		c["windows"] = []any{
			map[string]any{"granularity": "day", "step": "1h", "emit_every": "10s"},
			map[string]any{"granularity": "day", "emit_every": "10s"},
		}
	})
	cfg := filepath.Join(tmp, "wikiticker.yaml")
	cubes, wait := startOracle(t, cfg, model)
	dir := filepath.Join(tmp, "data")
	sums := runReplay(t, cfg, dir, 120*time.Second)
	res := wait(t)[0]
	if s := sums["wikiticker"]; s.Events != res.Events || s.LateEvents != 0 {
		t.Fatalf("replay summary %+v, want %d events, none late", s, res.Events)
	}
	n := checkAgainstOracle(t, cubes[0], res, cfg, dir)
	// Not vacuous: the hourly curve of the grand total has new users at every step of the day.
	hours := 0
	col := slices.Index(measureNames(cubes[0]), "new_users")
	for _, r := range res.Rows(0, 0, false) {
		if time.UnixMilli(r.Start).UTC().Day() == 12 && r.Vals[col].v > 0 {
			hours++
		}
	}
	if hours != 24 {
		t.Errorf("the oracle's 2015-09-12 curve has new users in %d steps, want 24", hours)
	}
	t.Logf("%d result rows equal the oracle", n)
}

// firstCubeModel returns the model file path with only its first cube, reading file.
func firstCubeModel(t *testing.T, path, file string) []byte {
	t.Helper()
	model := rewriteModel(t, path, func(c map[string]any) {
		subMap(subMap(c, "source"), "file")["path"] = file
	})
	var m map[string]any
	if err := yaml.Unmarshal(model, &m); err != nil {
		t.Fatal(err)
	}
	m["cubes"] = m["cubes"].([]any)[:1]
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHistoryImport imports the customers of online_retail's first 100 trading days with
// `cubed history import` (half of them with their first day, half without a date), replays the
// rest of the file, and checks that every day of the rest has the new customers, customers and
// lines of a full run, as the oracle computes them from the whole file.
func TestHistoryImport(t *testing.T) {
	data := dataFile(t, "online_retail.csv.gz")
	tmp := t.TempDir()
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	// Split the file (in time order) after its 100th day.
	const days = 100
	restPath := filepath.Join(tmp, "rest.csv")
	rest, err := os.Create(restPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(rest)
	var header []string
	var cutoff time.Time // start of day 101
	firstDay := map[string]string{}
	var order []string
	seenDays := map[string]bool{}
	inRest := false
	err = oLines(data, func(line int64, b []byte) error {
		if header == nil {
			h, err := parseCSVHeader(b)
			if err != nil {
				return err
			}
			header = h
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		if !inRest {
			fields := splitCSV(b)
			if len(fields) != len(header) {
				return fmt.Errorf("line %d has %d fields", line, len(fields))
			}
			ts, err := time.ParseInLocation("2006-01-02 15:04:05", fields[slices.Index(header, "InvoiceDate")], loc)
			if err != nil {
				return fmt.Errorf("line %d: %v", line, err)
			}
			day := ts.Format(time.DateOnly)
			if !seenDays[day] && len(seenDays) == days {
				inRest = true
				cutoff = time.Date(ts.Year(), ts.Month(), ts.Day(), 0, 0, 0, 0, loc)
			} else {
				seenDays[day] = true
				if id := fields[slices.Index(header, "CustomerID")]; id != "" {
					if _, ok := firstDay[id]; !ok {
						firstDay[id] = day
						order = append(order, id)
					}
				}
				return nil
			}
		}
		_, err := fmt.Fprintf(w, "%s\n", b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rest.Close()
	var hist strings.Builder
	for i, id := range order {
		if i%2 == 0 {
			fmt.Fprintf(&hist, "%s,%s\n", id, firstDay[id])
		} else {
			fmt.Fprintf(&hist, "%s\n", id)
		}
	}
	histPath := filepath.Join(tmp, "history.csv")
	if err := os.WriteFile(histPath, []byte(hist.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("first %d days: %d customers; the rest starts %s", days, len(order), cutoff.Format(time.DateOnly))

	cfg := filepath.Join(tmp, "retail.yaml")
	if err := os.WriteFile(cfg, firstCubeModel(t, filepath.Join(repoRoot(t), "configs", "online_retail.yaml"), restPath), 0o644); err != nil {
		t.Fatal(err)
	}
	// The oracle reads the whole file: only the columns a history import makes equal.
	cubes, err := oLoadModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := cubes[0]
	c.File = data
	var keep []oMeasure
	for _, m := range c.Measures {
		if m.Name == "lines" || m.Name == "customers" || m.Name == "new_customers" {
			keep = append(keep, m)
		}
	}
	c.Measures = keep
	wait := computeAsync([]*oCube{c})

	dir := filepath.Join(tmp, "data")
	res := runCubed(t, "", time.Minute, "history", "import", "--config", cfg, "--data-dir", dir,
		"--cube", "online_retail", "--measure", "new_customers", "--input", histPath)
	if res.exitCode != 0 {
		t.Fatalf("cubed history import: exit %d\n%s", res.exitCode, res.stderr)
	}
	var sum struct {
		Cube, Measure, Field string
		IDs, Dated, Changed  int
		Checkpoint           uint64
	}
	if err := json.Unmarshal(res.stdout, &sum); err != nil {
		t.Fatalf("history import printed %q: %v", res.stdout, err)
	}
	if sum.IDs != len(order) || sum.Dated != (len(order)+1)/2 || sum.Changed != len(order) || sum.Field != "CustomerID" || sum.Checkpoint == 0 {
		t.Errorf("history import summary %+v, want %d ids, %d dated, all changed, field CustomerID", sum, len(order), (len(order)+1)/2)
	}
	sums := runReplay(t, cfg, dir, 150*time.Second)
	if s := sums["online_retail"]; s.LateEvents != 0 || s.BadEvents != 0 || s.Events == 0 {
		t.Fatalf("replay of the rest: %+v", s)
	}
	// A second import after the stream started is refused.
	again := runCubed(t, "", time.Minute, "history", "import", "--config", cfg, "--data-dir", dir,
		"--cube", "online_retail", "--measure", "new_customers", "--input", histPath)
	if again.exitCode == 0 || !strings.Contains(string(again.stderr), "only be imported before the stream starts") {
		t.Errorf("import after the replay: exit %d, %s", again.exitCode, again.stderr)
	}

	full := wait(t)[0]
	checked := 0
	for wi := range c.Windows {
		for g := range c.Sets {
			var want []oRow
			for _, r := range full.Rows(wi, g, false) {
				if r.Start >= cutoff.UnixMilli() {
					want = append(want, r)
				}
			}
			checked += len(want)
			out := runCubed(t, "", time.Minute, "query", "--config", cfg, "--data-dir", dir, string(queryFor(c, wi, g)))
			if out.exitCode != 0 {
				t.Fatalf("cubed query: exit %d\n%s", out.exitCode, out.stdout)
			}
			got, err := parseQueryAnswer(c, wi, g, out.stdout)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffRows(c, measureNames(c), want, got); d != "" {
				t.Errorf("window %v grouping set %v: %s", c.Windows[wi], c.Sets[g], d)
			}
		}
	}
	t.Logf("%d rows of the remaining days equal a full run's", checked)
}

// splitCSV splits a CSV line with quoted fields ("a,b",c).
func splitCSV(b []byte) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(b); i++ {
		switch ch := b[i]; {
		case ch == '"' && quoted && i+1 < len(b) && b[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted = !quoted
		case ch == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	return append(out, cur.String())
}

// cubeProgress is what TestGrowthCrashAcrossRollover reads from GET /api/v1/status.
type cubeProgress struct {
	Events      uint64 `json:"events"`
	Watermark   *time.Time
	Partitions  []struct{ Offset int64 }
	Checkpoints []struct {
		Seq uint64 `json:"seq"`
	}
}

// progress returns cube's status from the running cubed at addr (ok false while unavailable).
func progress(addr, cube string) (cubeProgress, bool) {
	resp, err := httpClient.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		return cubeProgress{}, false
	}
	defer resp.Body.Close()
	var env struct {
		Data struct {
			Cubes []struct {
				Name string `json:"name"`
				cubeProgress
			} `json:"cubes"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&env) != nil {
		return cubeProgress{}, false
	}
	for _, c := range env.Data.Cubes {
		if c.Name == cube {
			return c.cubeProgress, true
		}
	}
	return cubeProgress{}, false
}

// TestGrowthCrashAcrossRollover runs `cubed run` on online_retail (new users and retention,
// windows closing day after day, a checkpoint every 50 ms) and kills it with SIGKILL right after
// a checkpoint at four points of the file, each several days past the last: the restarts restore
// the first-seen state and the ring of closed days from checkpoints taken between day rollovers,
// re-read the lines after them, and the results equal the oracle: no new user or returning
// customer lost or counted twice.
func TestGrowthCrashAcrossRollover(t *testing.T) {
	data := dataFile(t, "online_retail.csv.gz")
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "retail.yaml")
	cubes, wait := startOracle(t, cfg, firstCubeModel(t, filepath.Join(repoRoot(t), "configs", "online_retail.yaml"), data))
	dir := filepath.Join(tmp, "data")
	const total = 541909
	var lastWatermark time.Time
	for k, frac := range []float64{0.15, 0.35, 0.55, 0.8} {
		target := int64(frac * total)
		addr := freeAddr(t)
		p := startRun(t, cfg, dir, addr, "--checkpoint-every", "50ms")
		p.waitReady(t, addr, 60*time.Second)
		deadline := time.Now().Add(90 * time.Second)
		for {
			st, ok := progress(addr, "online_retail")
			if ok && len(st.Partitions) > 0 && st.Partitions[0].Offset >= target && len(st.Checkpoints) > 0 {
				p.cmd.Process.Kill() // SIGKILL, just after a checkpoint at or past the target line
				<-p.done
				if st.Watermark != nil {
					if !st.Watermark.After(lastWatermark.Add(48 * time.Hour)) {
						t.Fatalf("kill %d: watermark %v is not days past the last kill's %v", k, st.Watermark, lastWatermark)
					}
					lastWatermark = *st.Watermark
				}
				t.Logf("kill %d at line %d (target %d), watermark %v, checkpoint %d", k, st.Partitions[0].Offset, target, st.Watermark, st.Checkpoints[len(st.Checkpoints)-1].Seq)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: line %d not reached after 90 s (status %+v, %v)", k, target, st, ok)
			}
			select {
			case <-p.done:
				t.Fatalf("cubed run exited before line %d", target)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	sums := runReplay(t, cfg, dir, 150*time.Second)
	s := sums["online_retail"]
	if s.Events == 0 || s.Events >= total*4/5 || s.LateEvents != 0 {
		t.Errorf("the last run aggregated %d events (late %d): it should resume from the last checkpoint, past 80%% of %d", s.Events, s.LateEvents, total)
	}
	res := wait(t)[0]
	n := checkAgainstOracle(t, cubes[0], res, cfg, dir)
	t.Logf("%d result rows equal the oracle", n)
}
