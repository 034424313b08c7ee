package stepper

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A fork met while the engine steps a thread by itself, with fork children
// kept, is the run's fork stop, not an error: stepping off an int3 of ours
// on the forking syscall instruction (another thread's temporary
// breakpoint, the return of a recursive call), and delivering a signal the
// program ignores to a thread about to fork (the step executes the
// instruction).
func TestForkWhileSteppingAlone(t *testing.T) {
	dir := fixtures(t)
	prog := filepath.Join(dir, "fork_child")
	for _, how := range []string{"step-over-own", "deliver"} {
		t.Run(how, func(t *testing.T) {
			p, e := launch(t, prog, "rawfork", "1")
			p.KeepForks(true)
			e.Do(func() {
				at := symbolAddr(t, prog, "fork_syscall", e.biasOf(p.ExecPath()))
				st, err := e.RunTo(p.Pid(), at, OthersStay)
				if err != nil || st.Kind != StopStep || st.PC != at {
					t.Errorf("run to the fork syscall: %v %+v", err, st)
					return
				}
				if how == "step-over-own" {
					if err := p.InsertBreakpoint(at); err != nil {
						t.Error(err)
						return
					}
					st, err = e.stepOverOwn(p.Pid())
				} else {
					// SIGWINCH is ignored by default: the step runs the
					// syscall.
					st, err = e.deliverTo(p.Pid(), int(unix.SIGWINCH))
				}
				if err != nil || st == nil || st.Kind != StopFork || st.Child == 0 || st.Tid != p.Pid() || st.PC != at+2 {
					t.Errorf("want a fork stop of %d past the syscall at %#x, got %v %+v", p.Pid(), at+2, err, st)
					return
				}
				if p.BreakpointAt(at) != (how == "step-over-own") {
					t.Errorf("the int3 at %#x was not put back as it was", at)
				}
				child, drop, err := p.ForkChild(st.Child)
				if err != nil {
					t.Error(err)
					return
				}
				if err := drop(); err != nil {
					t.Error(err)
				}
				child.Kill()
			})
		})
	}
}
