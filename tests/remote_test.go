package tests

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
)

// Helpers for driving rseqdbg's GDB remote server, Debian's gdbserver, and
// real gdb and lldb clients against them.

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor reports whether text shows up in s within d: a process's output
// is copied into s after the process wrote it.
func (s *syncBuffer) waitFor(text string, d time.Duration) bool {
	for deadline := time.Now().Add(d); !strings.Contains(s.String(), text); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// stub is a running remote server: rseqdbg --gdb-remote or gdbserver.
type stub struct {
	cmd    *exec.Cmd
	port   int
	stdout syncBuffer // the debugged program's output goes here too
	stderr syncBuffer
	done   chan struct{}
	err    error
}

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (apt-get install %s): %v", name, name, err)
	}
}

func (s *stub) start(t testing.TB, name string, args ...string) {
	t.Helper()
	s.cmd = exec.Command(name, args...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A program the server detached from (or one gdbserver left behind
	// when killed) may hold the output pipe; do not wait on it forever.
	s.cmd.WaitDelay = 20 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			// The whole group: a detached program must not outlive the test.
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
		if strings.Contains(s.stderr.String(), "panic:") {
			t.Errorf("%s panicked:\n%s", name, s.stderr.String())
		}
	})
}

var listeningRE = regexp.MustCompile(`Listening on port (\d+)`)

func (s *stub) waitPort(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(s.stderr.String()); m != nil {
			s.port, _ = strconv.Atoi(m[1])
			return
		}
		select {
		case <-s.done:
			t.Fatalf("server exited before listening: %v\n%s", s.err, s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not listen:\n%s", s.stderr.String())
}

// startRseqdbg starts `rseqdbg --gdb-remote :0 --once FLAGS -- PROG...`
// (no program when prog is empty; no --once with --multi): the tests wait
// for the server to end with its client.
func startRseqdbg(t testing.TB, flags []string, prog ...string) *stub {
	t.Helper()
	dir := t.TempDir()
	args := []string{"--gdb-remote", ":0", "--port-file", filepath.Join(dir, "port")}
	if !slices.Contains(flags, "--multi") {
		args = append(args, "--once")
	}
	args = append(args, flags...)
	if len(prog) > 0 {
		args = append(append(args, "--"), prog...)
	}
	s := &stub{}
	s.start(t, binary, args...)
	s.waitPort(t)
	return s
}

func startGDBServer(t testing.TB, prog ...string) *stub {
	t.Helper()
	needTool(t, "gdbserver")
	s := &stub{}
	s.start(t, "gdbserver", append([]string{"--once", ":0"}, prog...)...)
	s.waitPort(t)
	return s
}

// wait waits for the server to end, which it does when its client leaves
// (and, for a detached program, when that program closes the output).
func (s *stub) wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("server did not exit within %v\nstderr:\n%s", timeout, s.stderr.String())
	}
}

// result parses the fixture's RESULT line from the program's output.
func result(t *testing.T, out string) map[string]int {
	t.Helper()
	m := regexp.MustCompile(`RESULT (.*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no RESULT line in the program's output:\n%s", out)
	}
	r := map[string]int{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		r[k], _ = strconv.Atoi(v)
	}
	return r
}

func exactSums(t *testing.T, out string) map[string]int {
	t.Helper()
	r := result(t, out)
	if r["total"] != r["expected"] || r["expected"] == 0 {
		t.Fatalf("sums not exact: %v", r)
	}
	return r
}

// gdb runs a gdb batch session against port with the commands in a script
// file (so while loops and command lists work) and returns its output.
func gdb(t testing.TB, port int, exe string, extended bool, cmds []string, timeout time.Duration) string {
	t.Helper()
	needTool(t, "gdb")
	out, err := gdbRun(t, port, exe, extended, cmds, timeout)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	return out
}

func gdbRun(t testing.TB, port int, exe string, extended bool, cmds []string, timeout time.Duration) (string, error) {
	t.Helper()
	mode := "remote"
	if extended {
		mode = "extended-remote"
	}
	script := append([]string{"set confirm off", "set pagination off", "set breakpoint pending on", "set width 0",
		fmt.Sprintf("target %s :%d", mode, port)}, cmds...)
	file := filepath.Join(t.TempDir(), "cmds.gdb")
	if err := os.WriteFile(file, []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-nx", "-batch", "-x", file}
	if exe != "" {
		args = append(args, exe)
	}
	return runTool(t, timeout, "gdb", args...)
}

// runTool runs a debugger to its end, or kills it after timeout, and
// returns its combined output.
func runTool(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s timed out after %v", name, timeout)
	}
}

// region is a critical section as `rseqdbg regions --json` reports it, at
// link-time addresses, with the function holding it.
type region struct {
	Name, Start, Commit, Abort string
	start, commit              uint64
	fn                         string
	fnAddr                     uint64
}

// sections lists the critical sections a fixture's tables describe.
func sections(t *testing.T, prog string) []region {
	t.Helper()
	out, err := exec.Command(binary, "regions", "--json", fixture(prog)).Output()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Objects []struct{ Regions []region } }
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	objs := doc.Objects
	f, err := elf.Open(fixture(prog))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	var list []region
	for _, o := range objs {
		for _, r := range o.Regions {
			r.start, _ = strconv.ParseUint(strings.TrimPrefix(r.Start, "0x"), 16, 64)
			r.commit, _ = strconv.ParseUint(strings.TrimPrefix(r.Commit, "0x"), 16, 64)
			for _, s := range syms {
				if elf.ST_TYPE(s.Info) == elf.STT_FUNC && r.start >= s.Value && r.start < s.Value+s.Size {
					r.fn, r.fnAddr = s.Name, s.Value
				}
			}
			list = append(list, r)
		}
	}
	return list
}

// symbolValue is a function's link-time address.
func symbolValue(t *testing.T, prog, name string) uint64 {
	t.Helper()
	v, err := symbols.Value(fixture(prog), name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var (
	pcRE    = regexp.MustCompile(`(?m)^PC ([0-9a-f]+)$`)
	funcRE  = regexp.MustCompile(`(?m)^FUNC ([0-9a-f]+)$`)
	statsRE = regexp.MustCompile(`(?m)^(single-steps|region runs|commits|aborts|other exits|interrupted|signals during runs|steps inside a section|inspected steps|forced aborts|breakpoints of another thread passed|pauses of running threads) (\d+)$`)
)

// stats parses the last `monitor rseq stats` in a gdb transcript.
func stats(t *testing.T, out string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, f := range statsRE.FindAllStringSubmatch(out, -1) {
		m[f[1]], _ = strconv.Atoi(f[2])
	}
	if len(m) == 0 {
		t.Fatalf("no monitor rseq stats output:\n%s", out)
	}
	return m
}

// stepiScript steps 400 instructions from the entry of fn, printing each PC.
func stepiScript(fn string, monitor bool) []string {
	cmds := []string{
		"break " + fn, "continue", "delete",
		fmt.Sprintf(`printf "FUNC %%lx\n", (long)&%s`, fn),
		"set $i = 0",
		"while $i < 400",
		"  stepi",
		`  printf "PC %lx\n", $pc`,
		"  set $i = $i + 1",
		"end",
	}
	if monitor {
		cmds = append(cmds, "monitor rseq stats")
	}
	return append(cmds, "continue")
}

// commitHits counts the PCs of a transcript that are commits of prog's
// sections, and those inside a section.
func commitHits(t *testing.T, prog, fn, out string) (commits, inside int) {
	t.Helper()
	fm := funcRE.FindStringSubmatch(out)
	if fm == nil {
		t.Fatalf("no FUNC line:\n%s", out)
	}
	rt, _ := strconv.ParseUint(fm[1], 16, 64)
	bias := rt - symbolValue(t, prog, fn)
	secs := sections(t, prog)
	for _, m := range pcRE.FindAllStringSubmatch(out, -1) {
		pc, _ := strconv.ParseUint(m[1], 16, 64)
		for _, r := range secs {
			switch {
			case pc == r.commit+bias:
				commits++
			case pc >= r.start+bias && pc < r.commit+bias:
				inside++
			}
		}
	}
	return commits, inside
}

var (
	drOnce  sync.Once
	drWorks bool
)

// debugRegistersWork tells whether debug registers trigger on this machine
// (some hypervisors accept them and never raise #DB), by the probe the
// server uses.
func debugRegistersWork(t *testing.T) bool {
	drOnce.Do(func() { drWorks = ptrace.ProbeDebugRegisters(fixture("loop_next")) })
	return drWorks
}
