package session

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
)

// launch starts a fixture (built by make fixtures) stopped at its first
// instruction.
func launch(t *testing.T, name string, args ...string) *stepper.Engine {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	prog := filepath.Join(filepath.Dir(file), "..", "tests", "fixtures", "build", name)
	if _, err := os.Stat(prog); err != nil {
		t.Skipf("fixture %s not built (make fixtures): %v", name, err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devnull.Close() })
	p, err := ptrace.Launch(ptrace.LaunchOptions{Path: prog, Args: args, Stdout: devnull})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := stepper.New(p, stepper.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Do(func() { p.Kill() })
		p.Close()
	})
	return eng
}

// gdb may insert a breakpoint twice at one address (two of its own
// breakpoints there); each z0 takes one away, and the int3 stays until
// the last goes.
func TestBareBreakpointsPairByAddress(t *testing.T) {
	eng := launch(t, "full_tables", "1", "10")
	eng.Do(func() {
		s := NewBare(eng)
		regs, err := eng.Target().Regs(eng.Target().Pid())
		if err != nil {
			t.Fatal(err)
		}
		pc := regs.Rip + 16
		for i := 0; i < 2; i++ {
			if b, err := s.Set(Spec{Kind: AtAddr, Addr: pc}, Options{}); err != nil || b.Pending() {
				t.Fatalf("Z0 %d at %#x: %v %+v", i, pc, err, b)
			}
		}
		if _, err := s.Set(Spec{Kind: AtFunc, Func: "inc_full"}, Options{}); err != nil {
			t.Fatal(err)
		} else if len(s.At(pc)) != 2 {
			t.Fatalf("breakpoints at %#x: %v", pc, s.At(pc))
		}
		if ok, err := s.DeleteAt(pc); !ok || err != nil {
			t.Fatalf("first z0: %v %v", ok, err)
		}
		if !eng.Target().BreakpointAt(pc) {
			t.Errorf("the int3 went with the first of two z0")
		}
		if ok, err := s.DeleteAt(pc); !ok || err != nil {
			t.Fatalf("second z0: %v %v", ok, err)
		}
		if eng.Target().BreakpointAt(pc) {
			t.Errorf("the int3 stayed after the last z0")
		}
		if ok, _ := s.DeleteAt(pc); ok {
			t.Errorf("a third z0 found a breakpoint")
		}
	})
}

// A breakpoint whose code is not loaded stays pending with its own
// options, and a bad condition is refused before anything is inserted.
func TestPendingKeepsItsOptions(t *testing.T) {
	eng := launch(t, "full_tables", "1", "10")
	eng.Do(func() {
		s := New(eng)
		b, err := s.Set(Spec{Kind: AtFunc, Func: "no_such_function"}, Options{Temp: false, Cond: "x == 1"})
		if err != nil || !b.Pending() || b.Temp {
			t.Fatalf("pending: %v %+v", err, b)
		}
		tb, err := s.Set(Spec{Kind: AtFunc, Func: "inc_full"}, Options{Temp: true})
		if err != nil || tb.Pending() || !tb.Temp {
			t.Fatalf("tbreak inc_full: %v %+v", err, tb)
		}
		// Loading objects later must not hand the pending one the last
		// set's temporary flag.
		s.resolvePending()
		if b.Temp {
			t.Errorf("the pending breakpoint turned temporary")
		}
		if _, err := s.Set(Spec{Kind: AtFunc, Func: "inc_full"}, Options{Cond: "i =="}); err == nil {
			t.Errorf("a bad condition was accepted")
		}
		if n := len(s.Breakpoints()); n != 2 {
			t.Errorf("%d breakpoints, want 2", n)
		}
	})
}
