// Package tests holds rseqdbg's end-to-end tests: the real binary against
// real C fixtures under ptrace, and real gdb, lldb and DAP clients.
package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var (
	binary   string // the rseqdbg binary under test
	fixtures string // tests/fixtures/build
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	fixtures = filepath.Join(dir, "fixtures", "build")
	if out, err := exec.Command("make", "-C", filepath.Join(dir, "fixtures")).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building fixtures: %v\n%s", err, out)
		os.Exit(1)
	}
	tmp, err := os.MkdirTemp("", "rseqdbg-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(tmp, "rseqdbg")
	build := exec.Command("go", "build", "-o", binary, "./cmd/rseqdbg")
	build.Dir = filepath.Dir(dir)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building rseqdbg: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func fixture(name string) string { return filepath.Join(fixtures, name) }

// markerLine finds the line number of a marker comment in a fixture source.
func markerLine(t testing.TB, src, marker string) int {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "fixtures", src))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "/* "+marker+" */") {
			return i + 1
		}
	}
	t.Fatalf("no marker %s in %s", marker, src)
	return 0
}

type event map[string]any

func (e event) str(k string) string { s, _ := e[k].(string); return s }
func (e event) num(k string) int    { f, _ := e[k].(float64); return int(f) }

// session is the outcome of one `rseqdbg run --json`.
type session struct {
	events []event
	code   int
	stderr string
	output string // the program's stdout
}

func (s *session) of(kind string) []event {
	var out []event
	for _, e := range s.events {
		if e.str("event") == kind {
			out = append(out, e)
		}
	}
	return out
}

// result parses the fixture's RESULT line.
func (s *session) result(t *testing.T) map[string]int {
	t.Helper()
	m := regexp.MustCompile(`RESULT (.*)`).FindStringSubmatch(s.output)
	if m == nil {
		t.Fatalf("no RESULT line; program output:\n%s\nstderr:\n%s", s.output, s.stderr)
	}
	out := map[string]int{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		out[k], _ = strconv.Atoi(v)
	}
	return out
}

// exact asserts the fixture finished with exact sums.
func (s *session) exact(t *testing.T) {
	t.Helper()
	r := s.result(t)
	if r["total"] != r["expected"] || r["expected"] == 0 {
		t.Fatalf("sums not exact: %v", r)
	}
	if s.code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", s.code, s.stderr)
	}
}

// run executes rseqdbg run --json with commands and a program.
func run(t *testing.T, cmds []string, extra []string, prog ...string) *session {
	t.Helper()
	args := []string{"run", "--json"}
	for _, c := range cmds {
		args = append(args, "-ex", c)
	}
	args = append(args, extra...)
	args = append(args, "--")
	args = append(args, prog...)
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	s := &session{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		s.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.stderr, "panic:") {
		t.Fatalf("rseqdbg panicked:\n%s", s.stderr)
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		if e.str("event") == "output" && e.str("stream") == "stdout" {
			s.output += e.str("text")
		}
		if e.str("event") == "error" {
			t.Logf("rseqdbg error event: %s", e.str("message"))
		}
		s.events = append(s.events, e)
	}
	return s
}
