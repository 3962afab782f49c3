package main_test

import (
	"bufio"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// startBroker runs `cubed broker` (kfake with its log in dir) on port as its own process and
// returns its address and a stop function (SIGKILL).
func startBroker(t testing.TB, dir string, port int, topics string) (string, func()) {
	t.Helper()
	addr, _, stop := startBrokerCmd(t, dir, port, topics)
	return addr, stop
}

// startBrokerCmd is startBroker that also returns the broker's process.
func startBrokerCmd(t testing.TB, dir string, port int, topics string) (string, *exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(cubedBinary(t), "broker", "--data-dir", dir, "--port", fmt.Sprint(port), "--topics", topics)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Kill()
		<-done
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		t.Fatalf("broker did not start: %v", err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "broker listening on "))
	return addr, cmd, stop
}

// TestKafkaCrash: a Kafka-protocol broker in its own process holds wikiticker and online_retail;
// `cubed run` consumes both with a checkpoint every 200 ms and is killed with SIGKILL at 5
// random points, the broker is restarted once in the middle, and after the last restart the
// results equal the oracle exactly (no loss, no double count).
func TestKafkaCrash(t *testing.T) {
	type src struct{ name, file string }
	srcs := []src{{"wikiticker", "wikiticker-2015-09-12.json.gz"}, {"online_retail", "online_retail.csv.gz"}}
	tmp := t.TempDir()
	port := freePort(t)
	brokerDir := filepath.Join(tmp, "broker")
	addr, stopBroker := startBroker(t, brokerDir, port, "crash_wikiticker:4,crash_online_retail:4")
	defer func() { stopBroker() }()

	var all []*oCube
	var cubes []any
	for _, s := range srcs {
		data := dataFile(t, s.file)
		cfgPath := filepath.Join(repoRoot(t), "configs", s.name+".yaml")
		oc, err := oLoadModel(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		oc[0].File = data
		all = append(all, oc[0])
		_, header := produceLines(t, []string{addr}, "crash_"+s.name, 4, data, oc[0].Format)
		res, err := oCached(oc[0])
		if err != nil {
			t.Fatal(err)
		}
		model := rewriteModel(t, cfgPath, func(c map[string]any) {
			src := subMap(c, "source")
			delete(src, "file")
			src["kafka"] = map[string]any{"brokers": []string{addr}, "topic": "crash_" + s.name, "group": "crash-" + s.name}
			if oc[0].Format == "csv" {
				src["columns"] = header
			}
			span := res.MaxT.Sub(res.MinT) + 48*time.Hour
			et := subMap(c, "event_time")
			et["max_out_of_orderness"] = fmt.Sprintf("%dh", int(span.Hours())+1)
			for _, w := range c["windows"].([]any) {
				w.(map[string]any)["emit_every"] = "1s"
			}
		})
		var m map[string]any
		if err := yaml.Unmarshal(model, &m); err != nil {
			t.Fatal(err)
		}
		// The first cube only: the others of the file (online_retail_weekly) would share its
		// topic and consumer group.
		cubes = append(cubes, m["cubes"].([]any)[0])
	}
	combined, err := yaml.Marshal(map[string]any{"version": 1, "cubes": cubes})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "crash.yaml")
	if err := os.WriteFile(cfg, combined, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "data")
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for kill := 0; kill < 5; kill++ {
		if kill == 2 { // a broker restart mid-run, on the same port and log
			stopBroker()
			addr2, stop2 := startBroker(t, brokerDir, port, "")
			if addr2 != addr {
				t.Fatalf("broker came back on %s, not %s", addr2, addr)
			}
			stopBroker = stop2
		}
		httpAddr := freeAddr(t)
		p := startRun(t, cfg, dir, httpAddr, "--checkpoint-every", "200ms")
		after := time.Duration(700+r.Intn(2500)) * time.Millisecond
		select {
		case <-p.done:
			t.Fatalf("cubed run exited on its own (%v):\n%s", p.cmd.ProcessState, tail(p.stderr.Bytes(), 40))
		case <-time.After(after):
		}
		p.cmd.Process.Kill() // SIGKILL
		<-p.done
		t.Logf("cubed run %d killed after %v", kill, after)
	}
	httpAddr := freeAddr(t)
	restart := time.Now()
	p := startRun(t, cfg, dir, httpAddr)
	p.waitReady(t, httpAddr, 60*time.Second)
	t.Logf("restarted and ready in %v", time.Since(restart).Round(time.Millisecond))
	var results []*oResult
	for _, c := range all {
		res, err := oCached(c)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	waitForOracle(t, httpAddr, p, results, time.Now(), 120*time.Second)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}
