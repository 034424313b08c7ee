package stepper

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"github.com/rseqdbg/rseqdbg/x86"
)

// testAbort unwinds a test body running on the tracer thread: t.Fatal
// there would end that thread and hang the cleanup (see launch).
type testAbort struct{}

func fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Errorf(format, args...)
	panic(testAbort{})
}

// onTracer runs body inside e.Do; fatalf in it ends only the body.
func onTracer(e *Engine, body func()) {
	e.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(testAbort); !ok {
					panic(r)
				}
			}
		}()
		body()
	})
}

// sectionOf finds the critical section of the function fn.
func sectionOf(t *testing.T, e *Engine, fn string) *regions.Region {
	t.Helper()
	for _, r := range e.Index().All() {
		if r.Kind == regions.KindCriticalSection && strings.HasPrefix(r.Name, fn) {
			return r
		}
	}
	fatalf(t, "no section in %s", fn)
	return nil
}

// continueTo continues until a breakpoint stop at addr.
func continueTo(t *testing.T, e *Engine, tid int, addr uint64) *Stop {
	t.Helper()
	for i := 0; i < 100; i++ {
		st, err := e.Continue(tid, nil)
		if err != nil {
			fatalf(t, "continue: %v", err)
		}
		if st.Kind == StopBreakpoint && st.PC == addr {
			return st
		}
		if st.Kind == StopExited || st.Kind == StopKilled {
			fatalf(t, "process ended before reaching %#x: %+v", addr, st)
		}
		tid = st.Tid
	}
	fatalf(t, "no stop at %#x", addr)
	return nil
}

func runToEnd(t *testing.T, e *Engine, tid int) *Stop {
	t.Helper()
	for i := 0; i < 1000; i++ {
		st, err := e.Continue(tid, nil)
		if err != nil {
			fatalf(t, "continue: %v", err)
		}
		if st.Kind == StopExited || st.Kind == StopKilled {
			return st
		}
		tid = st.Tid
	}
	fatalf(t, "%v", "the program did not end")
	return nil
}

// Inspect mode: from the first instruction of a section to its commit, one
// instruction at a time, while 4 threads run the same section under a
// 100 µs signal timer. Every stop is the next instruction of the path,
// rseq_cs reads as the descriptor, the kernel never aborts the entry, the
// thread's affinity is back afterwards and the sums are exact.
func TestInspectStepsToCommit(t *testing.T) {
	dir := fixtures(t)
	for _, fx := range []struct{ prog, fn string }{{"full_tables", "inc_full"}, {"call_helper", "inc_call"}} {
		t.Run(fx.prog, func(t *testing.T) {
			_, e := launch(t, filepath.Join(dir, fx.prog), "4", "300", "--signals")
			onTracer(e, func() {
				r := sectionOf(t, e, fx.fn)
				if err := e.SetInspect(true); err != nil {
					fatalf(t, "%v", err)
				}
				bp, err := e.SetBreakpoint(r.Start)
				if err != nil {
					fatalf(t, "%v", err)
				}
				st := continueTo(t, e, e.Target().Pid(), r.Start)
				tid := st.Tid
				if st.Inspect == nil || st.Inspect.Offset != 0 {
					t.Errorf("stop at the start: inspect %+v", st.Inspect)
				}
				before, err := e.threadCtl.Affinity(tid)
				if err != nil {
					fatalf(t, "%v", err)
				}
				if err := e.ClearBreakpoint(bp.ID); err != nil {
					fatalf(t, "%v", err)
				}
				pc, steps := r.Start, 0
				for r.Contains(pc) || e.inspecting[tid] != nil {
					in, err := e.decode(pc)
					if err != nil {
						fatalf(t, "%v", err)
					}
					regs, _ := e.Target().Regs(tid)
					succ := x86.Successors(in, &regs, e.read)
					st, err := e.StepInstruction(tid, 0, OthersStay)
					if err != nil {
						fatalf(t, "step %d at %#x: %v", steps, pc, err)
					}
					steps++
					if st.Kind != StopStep || st.Tid != tid {
						fatalf(t, "step %d at %#x: %+v", steps, pc, st)
					}
					ok := false
					for _, s := range succ {
						ok = ok || s == st.PC
					}
					if !ok {
						fatalf(t, "step %d: %#x → %#x, not a successor of %v (%#x)", steps, pc, st.PC, in.Inst, succ)
					}
					if st.PC == r.Abort {
						fatalf(t, "step %d at %#x: the section aborted", steps, pc)
					}
					if r.Contains(st.PC) {
						if cs, err := e.RseqCS(tid); err != nil || cs != r.Descriptor {
							t.Errorf("rseq_cs at +%d is %#x (%v), want the descriptor %#x", st.PC-r.Start, cs, err, r.Descriptor)
						}
						if st.Inspect == nil || st.Inspect.Offset != st.PC-r.Start {
							t.Errorf("stop at +%d: inspect %+v", st.PC-r.Start, st.Inspect)
						}
					}
					if steps > 10000 {
						fatalf(t, "%v", "no way out of the section")
					}
					pc = st.PC
				}
				if pc != r.End {
					t.Errorf("left the section at %#x, want the commit %#x", pc, r.End)
				}
				if e.Stats().InspectedSteps < 2 || e.Stats().StepsInside != 0 {
					t.Errorf("stats %+v", e.Stats())
				}
				after, err := e.threadCtl.Affinity(tid)
				if err != nil || after != before {
					t.Errorf("affinity after the section %v (%v), before %v", after, err, before)
				}
				if err := e.SetInspect(false); err != nil {
					fatalf(t, "%v", err)
				}
				if st := runToEnd(t, e, tid); st.Kind != StopExited || st.Code != 0 {
					t.Errorf("program ended %+v: sums not exact", st)
				}
			})
		})
	}
}

// A forced abort at the section's start lands in the abort handler with
// rseq_cs cleared, as the kernel's fixup leaves it; the handler retries and
// the program still ends with exact sums. A descriptor whose abort_ip is
// not preceded by the registered signature is refused and nothing changes.
func TestForceAbort(t *testing.T) {
	dir := fixtures(t)
	_, e := launch(t, filepath.Join(dir, "full_tables"), "1", "50")
	onTracer(e, func() {
		r := sectionOf(t, e, "inc_full")
		bp, err := e.SetBreakpoint(r.Start)
		if err != nil {
			t.Error(err)
			return
		}
		st := continueTo(t, e, e.Target().Pid(), r.Start)
		e.ClearBreakpoint(bp.ID)
		tid := st.Tid
		regs0, _ := e.Target().Regs(tid)
		// A wrong signature: abort_ip one byte on, so the 4 bytes before
		// it are not the signature.
		r.Abort++
		_, err = e.ForceAbort(tid)
		r.Abort--
		if !errors.Is(err, ErrAbortRefused) {
			t.Errorf("abort with a wrong signature: %v", err)
		}
		if regs, _ := e.Target().Regs(tid); regs.Rip != regs0.Rip {
			t.Errorf("refused abort moved the PC to %#x", regs.Rip)
		}
		st, err = e.ForceAbort(tid)
		if err != nil {
			t.Errorf("forced abort: %v", err)
			return
		}
		if st.PC != r.Abort || len(st.Crossed) != 1 || !st.Crossed[0].Forced {
			t.Errorf("forced abort stop %+v", st)
		}
		if cs, err := e.RseqCS(tid); err != nil || cs != 0 {
			t.Errorf("rseq_cs after the abort %#x %v", cs, err)
		}
		if e.Stats().ForcedAborts != 1 {
			t.Errorf("stats %+v", e.Stats())
		}
		if st := runToEnd(t, e, tid); st.Kind != StopExited || st.Code != 0 {
			t.Errorf("program ended %+v", st)
		}
	})
}

// A remote stub cannot pin threads: inspect mode is refused there (the
// native target's capability is asserted at compile time).
func TestInspectNeedsThreadControl(t *testing.T) {
	e := &Engine{inspecting: map[int]*inspection{}}
	if err := e.SetInspect(true); !errors.Is(err, ErrInspectUnsupported) || e.Inspect() {
		t.Errorf("SetInspect without ThreadControl: %v", err)
	}
	e.threadCtl = (*ptrace.Process)(nil)
	if err := e.SetInspect(true); err != nil || !e.Inspect() {
		t.Errorf("SetInspect with ThreadControl: %v", err)
	}
}
