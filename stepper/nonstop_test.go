package stepper

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// pollFor polls e until a stop comes, within d.
func pollFor(e *Engine, d time.Duration) (*Stop, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		st, err := e.Poll()
		if err != nil || st != nil {
			return st, err
		}
		time.Sleep(time.Millisecond)
	}
	return nil, errors.New("no stop in time")
}

// The per-thread contract in non-stop mode: one thread steps 300
// instructions, through the section again and again, while three others
// run the same section. Every step ends on the stepped thread, never
// inside the section; the others report nothing (they pass its temporary
// breakpoints); a stop requested for one other thread is reported for
// it alone; the program ends with exact sums (exit 0).
func TestNonStopStepsWhileOthersRun(t *testing.T) {
	prog := filepath.Join(fixtures(t), "nonstop")
	p, e := launch(t, prog, "4", "1000000")
	var fail error
	p.Do(func() {
		fail = func() error {
			bias := e.biasOf(p.ExecPath())
			if _, err := e.SetBreakpoint(symbolAddr(t, prog, "ns_stepped", bias)); err != nil {
				return err
			}
			if err := e.SetNonStop(true); err != nil {
				return err
			}
			if err := e.SetInspect(true); !errors.Is(err, ErrNonStopInspect) {
				return fmt.Errorf("inspect mode in non-stop mode: %v", err)
			}
			if st, err := e.Continue(p.Pid(), nil); err != nil || st != nil {
				return fmt.Errorf("continue: %v %v", st, err)
			}
			st, err := pollFor(e, 20*time.Second)
			if err != nil {
				return err
			}
			if st.Kind != StopBreakpoint {
				return fmt.Errorf("first stop %v", st.Kind)
			}
			tid := st.Tid
			for i := 0; i < 300; i++ {
				st, err := e.StepInstruction(tid, 0, OthersRun)
				if err != nil {
					return fmt.Errorf("step %d: %w", i, err)
				}
				if st.Tid != tid || st.Kind != StopStep || st.Inside != nil {
					return fmt.Errorf("step %d: %+v", i, st)
				}
				if i%50 == 0 {
					if o, err := e.Poll(); err != nil || o != nil {
						return fmt.Errorf("another thread reported %+v (%v)", o, err)
					}
				}
			}
			s := e.Stats()
			t.Logf("stats: %+v", s)
			if s.RegionRuns < 5 || s.Commits < 5 || s.StepsInside != 0 {
				return fmt.Errorf("stats %+v", s)
			}
			var other int
			for _, th := range p.Threads() {
				if th != tid && th != p.Pid() {
					other = th
					break
				}
			}
			if !e.Running(other) {
				return fmt.Errorf("thread %d is not running", other)
			}
			if err := e.StopThread(other); err != nil {
				return err
			}
			st, err = pollFor(e, 10*time.Second)
			if err != nil || st.Tid != other || st.Kind != StopInterrupt {
				return fmt.Errorf("requested stop of %d: %+v %v", other, st, err)
			}
			for _, th := range []int{tid, other} {
				if st, err := e.ContinueThread(th, 0); err != nil || st != nil {
					return fmt.Errorf("continuing %d: %+v %v", th, st, err)
				}
			}
			// The workers' exits come first (Poll reports them: their
			// client waits for them), then the process's.
			for {
				st, err = pollFor(e, 60*time.Second)
				if err != nil || st.Kind != StopThreadExited {
					break
				}
			}
			if err != nil || st.Kind != StopExited || st.Code != 0 {
				return fmt.Errorf("want exit 0 (exact sums), got %+v %v", st, err)
			}
			return nil
		}()
	})
	if fail != nil {
		t.Fatal(fail)
	}
}

// A thread asked to stop that first meets a breakpoint it does not own
// (here an int3 the target holds that no user set, which every worker
// runs into all the time) is stepped past it and then reported stopped:
// that stop satisfied the request, whose SIGSTOP the target swallows, so
// passing it over would lose the stop for good. A hit cancelled by a
// pause (another worker's step-over) satisfies nothing: the request
// stands. Either way the stop is reported; with neither rule it was lost
// (seen: no stop in 10 s, 20000 breakpoints passed over).
func TestNonStopStopRequestAtForeignBreakpoint(t *testing.T) {
	prog := filepath.Join(fixtures(t), "nonstop")
	p, e := launch(t, prog, "4", "1000000000")
	var fail error
	p.Do(func() {
		fail = func() error {
			if err := e.SetNonStop(true); err != nil {
				return err
			}
			if st, err := e.Continue(p.Pid(), nil); err != nil || st != nil {
				return fmt.Errorf("continue: %v %v", st, err)
			}
			for i := 0; i < 200 && len(p.Threads()) < 5; i++ {
				if st, err := e.Poll(); err != nil || st != nil {
					return fmt.Errorf("poll: %+v %v", st, err)
				}
				time.Sleep(time.Millisecond)
			}
			if len(p.Threads()) < 5 {
				return fmt.Errorf("threads %v", p.Threads())
			}
			addr := symbolAddr(t, prog, "inc_ns", e.biasOf(p.ExecPath()))
			if err := p.InsertBreakpoint(addr); err != nil {
				return err
			}
			// Unpolled, the workers sit in their trap stops: the stop
			// request's SIGSTOP comes after the breakpoint for sure.
			time.Sleep(50 * time.Millisecond)
			worker := p.Threads()[2]
			if err := e.StopThread(worker); err != nil {
				return err
			}
			st, err := pollFor(e, 10*time.Second)
			if err != nil || st.Tid != worker || st.Kind != StopInterrupt {
				return fmt.Errorf("requested stop of %d: %+v %v (passed over %d)", worker, st, err, e.Stats().PassedNotOwned)
			}
			t.Logf("passed over %d", e.Stats().PassedNotOwned)
			return nil // the cleanup kills it
		}()
	})
	if fail != nil {
		t.Fatal(fail)
	}
}

// A thread's exit in non-stop mode is a stop of its own: the step that
// drives it over its exit system call ends with StopThreadExited for it
// (nsexit mode 0), and the exit of a thread continued on its own comes
// from Poll (mode 1); the process's exit follows.
func TestNonStopThreadExit(t *testing.T) {
	prog := filepath.Join(fixtures(t), "nsexit")
	for _, tc := range []struct{ mode, fn string }{{"0", "nsx_exit_now"}, {"1", "nsx_last"}} {
		p, e := launch(t, prog, tc.mode, "300")
		var fail error
		p.Do(func() {
			fail = func() error {
				bias := e.biasOf(p.ExecPath())
				if _, err := e.SetBreakpoint(symbolAddr(t, prog, tc.fn, bias)); err != nil {
					return err
				}
				if err := e.SetNonStop(true); err != nil {
					return err
				}
				if st, err := e.Continue(p.Pid(), nil); err != nil || st != nil {
					return fmt.Errorf("continue: %v %v", st, err)
				}
				st, err := pollFor(e, 20*time.Second)
				if err != nil || st.Kind != StopBreakpoint {
					return fmt.Errorf("first stop %+v %v", st, err)
				}
				tid := st.Tid
				if tc.mode == "0" {
					for i := 0; st.Kind != StopThreadExited; i++ {
						if i == 10 {
							return fmt.Errorf("no exit in 10 steps: %+v", st)
						}
						if st, err = e.StepInstruction(tid, 0, OthersStay); err != nil {
							return fmt.Errorf("step %d: %w", i, err)
						}
					}
				} else {
					if st, err := e.ContinueThread(tid, 0); err != nil || st != nil {
						return fmt.Errorf("continuing %d: %+v %v", tid, st, err)
					}
					if st, err = pollFor(e, 20*time.Second); err != nil || st.Kind != StopThreadExited {
						return fmt.Errorf("want the worker's exit, got %+v %v", st, err)
					}
				}
				if st.Tid != tid {
					return fmt.Errorf("exit of %d, want %d", st.Tid, tid)
				}
				if st, err = pollFor(e, 20*time.Second); err != nil || st.Kind != StopExited || st.Code != 0 {
					return fmt.Errorf("want exit 0, got %+v %v", st, err)
				}
				return nil
			}()
		})
		if fail != nil {
			t.Fatalf("mode %s: %v", tc.mode, fail)
		}
	}
}
