package stepper

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"golang.org/x/sys/unix"
)

func fixtures(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "tests", "fixtures")
	if out, err := exec.Command("make", "-C", dir).CombinedOutput(); err != nil {
		t.Skipf("fixtures do not build here: %v\n%s", err, out)
	}
	return filepath.Join(dir, "build")
}

func launch(t testing.TB, prog string, args ...string) (*ptrace.Process, *Engine) {
	t.Helper()
	p, err := ptrace.Launch(ptrace.LaunchOptions{Path: prog, Args: args, Stdout: devnull(t)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Do(func() { p.Kill() })
		p.Close()
	})
	return p, e
}

// attachRunning starts prog with args untraced, lets it run a while and
// attaches to it; the process is killed at the end of the test.
func attachRunning(t *testing.T, prog string, args ...string) (*exec.Cmd, *ptrace.Process, *Engine) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	time.Sleep(50 * time.Millisecond)
	p, err := ptrace.Attach(cmd.Process.Pid)
	if err != nil {
		t.Skipf("cannot attach here: %v", err)
	}
	t.Cleanup(p.Close)
	e, err := New(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cmd, p, e
}

func devnull(t testing.TB) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func symbolAddr(t testing.TB, path, name string, bias uint64) uint64 {
	v, err := symbols.Value(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return v + bias
}

func (e *Engine) biasOf(path string) uint64 {
	for _, o := range e.Objects() {
		if o.Path == path {
			return o.Bias
		}
	}
	return 0
}

// A target SIGKILLed while a range step runs natively: a clear stop, no
// panic, no error about breakpoints.
func TestKilledDuringRangeStep(t *testing.T) {
	dir := fixtures(t)
	prog := filepath.Join(dir, "loop_next")
	p, e := launch(t, prog, "2000000000")
	// Failures are recorded with Errorf inside Do: Fatalf there would end
	// the tracer goroutine and hang the cleanup.
	e.Do(func() {
		mainAddr := symbolAddr(t, prog, "main", e.biasOf(p.ExecPath()))
		if _, err := e.SetBreakpoint(mainAddr); err != nil {
			t.Error(err)
			return
		}
		st, err := e.Continue(p.Pid(), nil)
		if err != nil || st.Kind != StopBreakpoint {
			t.Errorf("continue to main: %v %+v", err, st)
			return
		}
		e.ClearAll()
		time.AfterFunc(300*time.Millisecond, func() { unix.Kill(p.Pid(), unix.SIGKILL) })
		// The whole of main is one range: the loop runs natively.
		st, err = e.RangeStep(p.Pid(), mainAddr, mainAddr+4096, 0, OthersRun, true)
		if err != nil {
			t.Errorf("range step on a killed target: %v", err)
			return
		}
		if st.Kind != StopKilled || st.Sig != int(unix.SIGKILL) {
			t.Errorf("want killed by SIGKILL, got %+v", st)
			return
		}
		if _, err := e.StepInstruction(p.Pid(), 0, OthersStay); err != target.ErrExited {
			t.Errorf("step after death: %v", err)
			return
		}
	})
}

// Detaching leaves no int3 of ours in the target's memory.
func TestDetachRestoresMemory(t *testing.T) {
	prog := filepath.Join(fixtures(t), "full_tables")
	cmd, p, e := attachRunning(t, prog, "2", "2000000000")
	var text []byte
	var lo uint64
	e.Do(func() {
		r := e.Index().All()
		if len(r) == 0 {
			t.Fatal("no regions found in the attached process")
		}
		lo = r[0].Start - 64
		text = make([]byte, 256)
		p.ReadMemory(lo, text)
		for _, reg := range r {
			if reg.Kind != 0 && reg.Start > lo && reg.Start < lo+256 {
				e.SetBreakpoint(reg.Start)
			}
		}
		fn := symbolAddr(t, prog, "inc_full", e.biasOf(p.ExecPath()))
		e.SetBreakpoint(fn)
		st, err := e.Continue(p.Pid(), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Step a few instructions so temporary breakpoints come and go.
		for i := 0; i < 20; i++ {
			if _, err := e.StepInstruction(st.Tid, 0, OthersStay); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Detach(); err != nil {
			t.Fatal(err)
		}
	})
	// Read the memory as an outsider.
	mem, err := os.ReadFile(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
	_ = mem
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
	if err != nil {
		t.Skipf("cannot read /proc/pid/mem: %v", err)
	}
	defer f.Close()
	got := make([]byte, len(text))
	if _, err := f.ReadAt(got, int64(lo)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, text) {
		t.Fatalf("memory differs after detach:\n%x\n%x", got, text)
	}
	// And the process still runs.
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Signal(unix.Signal(0)); err != nil {
		t.Fatalf("process gone after detach: %v", err)
	}
}
