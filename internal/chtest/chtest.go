// Package chtest runs a private clickhouse-server for tests: a real server (Debian's 18.16 on
// these machines, any release elsewhere) in a temporary folder on free ports, stopped when the
// test ends. Assertions can go through clickhouse-client (Query), a client independent of the
// clickhouse-go driver that cubed writes with.
package chtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one private clickhouse-server process (restartable on the same folder and ports).
type Server struct {
	t    testing.TB
	dir  string
	port int
	tls  *tlsConfig // nil: no secure port
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// tlsConfig is the secure native port of a server started WithTLS.
type tlsConfig struct {
	port                      int
	certFile, keyFile, caFile string
}

// Option configures Start.
type Option func(*Server)

// WithTLS also opens the secure native port (tcp_port_secure, see SecureAddr) with the PEM
// server certificate certFile and its key keyFile (openSSL.server of 18.16's config.xml, with no
// Diffie-Hellman parameters file). With clientCAFile set, the port requires a client
// certificate issued by that CA (verificationMode strict); otherwise it asks for none.
func WithTLS(certFile, keyFile, clientCAFile string) Option {
	return func(s *Server) {
		s.tls = &tlsConfig{port: freePort(s.t), certFile: certFile, keyFile: keyFile, caFile: clientCAFile}
	}
}

// Config is the server configuration the Debian package installs; the command line overrides
// the paths, ports and logs.
const Config = "/etc/clickhouse-server/config.xml"

// Require fails the test when clickhouse-server or clickhouse-client is missing and env CI is
// set (CI must run every test), and skips it with a loud message otherwise.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	for _, bin := range []string{"clickhouse-server", "clickhouse-client"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat(Config); err != nil {
		missing = append(missing, Config)
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("ClickHouse tests need %s (run scripts/ensure-clickhouse.sh, which make test does)", strings.Join(missing, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
}

// Start starts a private server in a temporary folder on a free port and registers its stop
// (and the folder's removal) with t.Cleanup. It fails the test when the server does not answer
// within 30 s.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	Require(t)
	s := &Server{t: t, dir: t.TempDir(), port: freePort(t)}
	for _, o := range opts {
		o(s)
	}
	s.start()
	t.Cleanup(func() { s.Stop() })
	return s
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is the native-protocol address, 127.0.0.1:PORT.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the native-protocol port.
func (s *Server) Port() int { return s.port }

// SecureAddr is the TLS native-protocol address, 127.0.0.1:PORT, of a server started WithTLS
// ("" otherwise).
func (s *Server) SecureAddr() string {
	if s.tls == nil {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(s.tls.port)
}

// PID is the process id of the running server (0 when stopped), for reading its CPU time from
// /proc/PID/stat.
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// CPU is the CPU time (user + system, all threads) the running server has used so far; it
// fails the test when the server is not running.
func (s *Server) CPU() time.Duration {
	s.t.Helper()
	d, err := ProcessCPU(s.PID())
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// ProcessCPU returns the CPU time (user + system, all threads) process pid has used so far, from
// fields 14 and 15 of /proc/PID/stat, in clock ticks of USER_HZ = 100 per second (the fixed unit
// of /proc on Linux): a resolution of 10 ms. It fails when the process does not exist.
func ProcessCPU(pid int) (time.Duration, error) {
	fields, err := processStat(pid)
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %q", pid, fields)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// ProcessMemory returns process pid's peak resident set (VmHWM of /proc/PID/status, in bytes),
// its minor page faults (field 10 of /proc/PID/stat) and its system CPU time (field 15, as in
// ProcessCPU): memory touched for the first time costs a fault and the kernel's zeroing of the
// page in the process's own system time. It fails when the process does not exist.
func ProcessMemory(pid int) (peak, minflt int64, sys time.Duration, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading the memory figures of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("parsing /proc/%d/status: %q", pid, line)
			}
			peak = kb << 10
		}
	}
	fields, err := processStat(pid)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading the memory figures of process %d: %w", pid, err)
	}
	minflt, err1 := strconv.ParseInt(fields[7], 10, 64) // field 10
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, 0, 0, fmt.Errorf("parsing /proc/%d/stat: %q", pid, fields)
	}
	return peak, minflt, time.Duration(stime) * 10 * time.Millisecond, nil
}

// processStat returns the fields of /proc/PID/stat from field 3 on (fields[i] is field i+3), at
// least the 13 that ProcessCPU and ProcessMemory read.
func processStat(pid int) ([]string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from its end.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	if len(fields) < 13 {
		return nil, fmt.Errorf("parsing /proc/%d/stat: %q", pid, raw)
	}
	return fields, nil
}

func (s *Server) start() {
	s.t.Helper()
	d := s.dir
	args := []string{"--config-file=" + Config, "--",
		"--path=" + d + "/data/", "--tmp_path=" + d + "/tmp/", "--user_files_path=" + d + "/uf/",
		"--format_schema_path=" + d + "/fs/", "--tcp_port=" + strconv.Itoa(s.port), "--http_port=0",
		"--interserver_http_port=0", "--listen_host=127.0.0.1",
		"--logger.log=" + d + "/log.txt", "--logger.errorlog=" + d + "/err.txt", "--logger.level=warning"}
	if c := s.tls; c != nil {
		args = append(args, "--tcp_port_secure="+strconv.Itoa(c.port),
			"--openSSL.server.certificateFile="+c.certFile, "--openSSL.server.privateKeyFile="+c.keyFile,
			"--openSSL.server.dhParamsFile=")
		if c.caFile != "" {
			args = append(args, "--openSSL.server.verificationMode=strict", "--openSSL.server.caConfig="+c.caFile,
				"--openSSL.server.loadDefaultCAFile=false")
		}
	}
	cmd := exec.Command("clickhouse-server", args...)
	out, err := os.OpenFile(filepath.Join(d, "out.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("starting clickhouse-server: %v", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		out.Close()
		s.t.Fatalf("starting clickhouse-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(s.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.query("SELECT 1"); err == nil {
			return
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(d, "err.txt"))
			o, _ := os.ReadFile(filepath.Join(d, "out.txt"))
			s.t.Fatalf("clickhouse-server on port %d exited at start: %s\n%s", s.port, o, tail(log))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d, "err.txt"))
			s.t.Fatalf("clickhouse-server on port %d did not answer within 30s:\n%s", s.port, tail(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s) and waits for it to exit. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Kill kills the server with SIGKILL (no clean shutdown) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the stopped server again on the same folder and port.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatal("BUG: chtest: Restart of a running server")
	}
	s.start()
}

// Query runs one statement with clickhouse-client and returns its TSV output; it fails the
// test on error.
func (s *Server) Query(q string) string {
	s.t.Helper()
	out, err := s.query(q)
	if err != nil {
		s.t.Fatalf("clickhouse-client --query %q: %v", q, err)
	}
	return out
}

func (s *Server) query(q string) (string, error) {
	cmd := exec.Command("clickhouse-client", "--host=127.0.0.1", "--port="+strconv.Itoa(s.port), "--query="+q)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
