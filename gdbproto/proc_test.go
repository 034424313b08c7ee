package gdbproto

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
)

// The package's tests serve real processes under ptrace. The program is
// built from this source with no libc, so its layout is known: a block of
// NOPs the tests step, range-step and break in, then exit(0).
const nopsSource = `
	.text
	.globl _start
_start:
	.globl nops
nops:
	.fill 4096, 1, 0x90
	.globl nops_end
nops_end:
	mov $60, %eax
	xor %edi, %edi
	syscall
`

// nopsProgram is the built program and where its NOPs are.
type nopsProgram struct {
	path       string
	start, end uint64
}

var (
	nopsOnce sync.Once
	nopsProg nopsProgram
	nopsErr  error
)

// testProgram builds the NOP program once per test binary.
func testProgram(t testing.TB) nopsProgram {
	t.Helper()
	nopsOnce.Do(func() { nopsProg, nopsErr = buildNops() })
	if nopsErr != nil {
		t.Fatalf("building the test program: %v", nopsErr)
	}
	return nopsProg
}

func buildNops() (nopsProgram, error) {
	dir, err := os.MkdirTemp("", "gdbproto-test")
	if err != nil {
		return nopsProgram{}, err
	}
	src := filepath.Join(dir, "nops.S")
	exe := filepath.Join(dir, "nops")
	if err := os.WriteFile(src, []byte(nopsSource), 0o644); err != nil {
		return nopsProgram{}, err
	}
	out, err := exec.Command("cc", "-nostdlib", "-static", "-no-pie", "-o", exe, src).CombinedOutput()
	if err != nil {
		return nopsProgram{}, fmt.Errorf("cc: %v\n%s", err, out)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return nopsProgram{}, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nopsProgram{}, err
	}
	p := nopsProgram{path: exe}
	for _, s := range syms {
		switch s.Name {
		case "nops":
			p.start = s.Value
		case "nops_end":
			p.end = s.Value
		}
	}
	if p.start == 0 || p.end != p.start+4096 {
		return nopsProgram{}, fmt.Errorf("nops symbols not found in %s", exe)
	}
	return p, nil
}

// testLauncher launches the test program under ptrace. It refuses any
// other program and attaches only to processes the test started, so that
// fuzzed vRun and vAttach packets never reach the rest of the machine.
type testLauncher struct {
	prog nopsProgram
	// wrap, when set, decorates each real process (fault injection).
	wrap func(Process) Process

	mu       sync.Mutex
	launched []Process
	children []int // pids a test may attach to
}

func (l *testLauncher) Launch(spec LaunchSpec) (Process, error) {
	if spec.Path != l.prog.path {
		return nil, fmt.Errorf("test launcher: only %s may run, not %q", l.prog.path, spec.Path)
	}
	p, err := ptrace.Launch(ptrace.LaunchOptions{Path: spec.Path, Args: spec.Args, Env: []string{}, Dir: spec.Dir})
	if err != nil {
		return nil, err
	}
	return l.add(p), nil
}

func (l *testLauncher) Attach(pid int) (Process, error) {
	l.mu.Lock()
	ok := slices.Contains(l.children, pid)
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test launcher: %d is not a process of this test", pid)
	}
	p, err := ptrace.Attach(pid)
	if err != nil {
		return nil, err
	}
	return l.add(p), nil
}

func (l *testLauncher) add(p Process) Process {
	if l.wrap != nil {
		p = l.wrap(p)
	}
	l.mu.Lock()
	l.launched = append(l.launched, p)
	l.mu.Unlock()
	return p
}

func (l *testLauncher) first() Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.launched[0]
}

// newTestServer starts a server on a freshly launched test program; the
// process is killed when the test ends.
func newTestServer(t testing.TB) (*Server, *testLauncher) {
	t.Helper()
	return newTestServerWith(t, nil)
}

func newTestServerWith(t testing.TB, wrap func(Process) Process) (*Server, *testLauncher) {
	t.Helper()
	prog := testProgram(t)
	l := &testLauncher{prog: prog, wrap: wrap}
	srv := NewServer(ServerConfig{Launcher: l, Program: &LaunchSpec{Path: prog.path}, FS: noFS{}, DebugRegisters: ptrace.ProbeDebugRegisters})
	srv.onPanic = func(v any) { t.Errorf("handler panicked: %v", v) }
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.release(true) })
	return srv, l
}

// readByte reads target memory directly, under the server's breakpoints.
func readByte(t testing.TB, srv *Server, addr uint64) byte {
	t.Helper()
	var b [1]byte
	var err error
	srv.proc.eng.Do(func() { _, err = srv.proc.p.ReadMemory(addr, b[:]) })
	if err != nil {
		t.Fatalf("reading %#x: %v", addr, err)
	}
	return b[0]
}

// waitGone waits until pid no longer exists (killed and reaped).
func waitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still exists", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// panicky makes a real process's Regs panic on demand.
type panicky struct {
	Process
	panicRegs bool
}

func (p *panicky) Regs(tid int) (target.Regs, error) {
	if p.panicRegs {
		panic("injected Regs panic")
	}
	return p.Process.Regs(tid)
}

// drRecorder passes debug register writes to a real process and keeps
// the values, which ptrace gives no way to read back.
type drRecorder struct {
	Process
	dr [8]uint64
}

func (d *drRecorder) SetDebugReg(n int, v uint64) error {
	if err := d.Process.SetDebugReg(n, v); err != nil {
		return err
	}
	d.dr[n] = v
	return nil
}

// noFS refuses every file, so fuzzing never touches the host.
type noFS struct{}

func (noFS) Open(string, int, os.FileMode) (File, error) { return nil, os.ErrNotExist }
func (noFS) Readlink(string) (string, error)             { return "", os.ErrNotExist }
func (noFS) Unlink(string) error                         { return os.ErrPermission }
