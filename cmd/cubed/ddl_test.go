package main_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubed-olap/cubed/internal/chtest"
)

// TestPlanDDLRunsOnClickHouse pipes `cubed plan --ddl` for the wikiticker model into a real
// clickhouse-server with clickhouse-client: the statements run, and the table has the columns
// the model implies (listed here by hand from configs/wikiticker.yaml).
func TestPlanDDLRunsOnClickHouse(t *testing.T) {
	srv := chtest.Start(t)
	res := runCubed(t, "", time.Minute, "plan", "--ddl", repoRoot(t)+"/configs/wikiticker.yaml")
	if res.exitCode != 0 {
		t.Fatalf("cubed plan --ddl: exit %d: %s", res.exitCode, res.stderr)
	}
	ddl := string(res.stdout)
	if !strings.HasPrefix(ddl, "CREATE TABLE IF NOT EXISTS `default`.`wikiticker`") || !strings.HasSuffix(ddl, ";\n") {
		t.Fatalf("cubed plan --ddl printed:\n%s", ddl)
	}
	for i := 0; i < 2; i++ { // IF NOT EXISTS: running it twice is fine
		cmd := exec.Command("clickhouse-client", "--host=127.0.0.1", "--port="+strconv.Itoa(srv.Port()), "--multiquery")
		cmd.Stdin = strings.NewReader(ddl)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("clickhouse-client --multiquery < (cubed plan --ddl): %v\n%s\nDDL:\n%s", err, out, ddl)
		}
	}
	got := srv.Query("SELECT name, type FROM system.columns WHERE database = 'default' AND table = 'wikiticker'")
	want := strings.Join([]string{
		"window_start\tDateTime", "window_end\tDateTime", "granularity\tString", "grouping_set\tUInt16",
		"channel\tString", "namespace\tString", "country\tString", "robot\tString", "anonymous\tString", "new_page\tString",
		"pv\tUInt64", "added\tFloat64", "deleted\tFloat64", "delta\tFloat64", "min_delta\tNullable(Float64)",
		"max_delta\tNullable(Float64)", "uv\tUInt64", "version\tUInt64"}, "\n") + "\n"
	if got != want {
		t.Errorf("columns of default.wikiticker:\n%s\nwant:\n%s", got, want)
	}
	if got := srv.Query("SELECT engine FROM system.tables WHERE database = 'default' AND name = 'wikiticker'"); got != "ReplacingMergeTree\n" {
		t.Errorf("engine %q, want ReplacingMergeTree", got)
	}
}
