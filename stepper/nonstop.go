package stepper

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
)

// Non-stop mode (docs/design.md, "Non-stop mode"): a front end drives one
// thread at a time while the others run. The stepping loops are the
// all-stop ones; what changes is underneath them:
//
//   - the target starts only the driven thread and reports one thread's
//     stop at a time (target.NonStop);
//   - wait hands the loops the driven thread's events only. Another
//     thread that hits a breakpoint the driven thread's step or region
//     run inserted (they belong to the driven thread) is stepped past it
//     and resumed without a report; one that stops for a reason of its
//     own (a user breakpoint, a signal the policy stops for) stays
//     stopped, and its stop waits in deferred for Poll;
//   - lifting an int3 so that one thread can execute the instruction
//     under it pauses every running thread until it is back, as
//     gdbserver does around a step-over: a thread running meanwhile
//     could run past the lifted breakpoint.

// ErrNonStopUnsupported is returned by SetNonStop on a target that cannot
// run some threads while others are stopped (a remote stub).
var ErrNonStopUnsupported = errors.New("non-stop mode needs the native target: this target stops every thread at each stop")

// ErrNonStopInspect is returned when non-stop and inspect mode are asked
// for together: inspecting a section keeps every other thread stopped.
var ErrNonStopInspect = errors.New("inspect mode keeps every other thread stopped while a section is inspected: it cannot be combined with non-stop mode")

// SetNonStop switches non-stop mode; every thread must be stopped.
func (e *Engine) SetNonStop(on bool) error {
	if on == e.nonStop {
		return nil
	}
	if on && e.ns == nil {
		return ErrNonStopUnsupported
	}
	if on && e.inspect {
		return ErrNonStopInspect
	}
	if err := e.ns.SetNonStop(on); err != nil {
		return fmt.Errorf("switching non-stop mode: %w", err)
	}
	e.nonStop = on
	// The pacer and the interrupt flags are all-stop's.
	e.paceRelease(true)
	e.userInterrupt.Store(false)
	if !on {
		e.deferred = nil
	}
	return nil
}

// NonStop reports whether non-stop mode is on.
func (e *Engine) NonStop() bool { return e.nonStop }

// Running reports whether tid runs (non-stop mode; false otherwise).
func (e *Engine) Running(tid int) bool { return e.nonStop && e.ns.Running(tid) }

// drive makes tid the thread whose events the loops see, until the
// returned function restores the previous one.
func (e *Engine) drive(tid int) func() {
	prev := e.owner
	e.owner = tid
	return func() { e.owner = prev }
}

// waitDriven is the target's Wait for the stepping loops: in non-stop
// mode what the threads other than the driven one report is dealt with
// here.
func (e *Engine) waitDriven() (target.Event, error) {
	for {
		ev, err := e.t.Wait()
		if err != nil || !e.nonStop || e.owner == 0 || ev.Tid == e.owner {
			return ev, err
		}
		switch ev.Kind {
		case target.EventThreadExited:
			// Its client resumed it and waits for it: the exit is its
			// stop, kept for Poll like another thread's stop.
			e.deferred = append(e.deferred, e.terminal(ev))
			continue
		case target.EventStop:
		default:
			return ev, nil
		}
		st, err := e.otherStop(ev)
		if err != nil {
			return ev, err
		}
		if st != nil {
			e.deferred = append(e.deferred, st)
		}
	}
}

// otherStop handles a stop of a thread nothing drives (non-stop mode): a
// breakpoint that is no user's (the driven thread's temporary ones, the
// dynamic linker's) is stepped over and the thread goes on unreported, as
// does a signal the policy does not stop for. Anything else is that
// thread's own stop, returned for reporting; the thread stays stopped.
func (e *Engine) otherStop(ev target.Event) (*Stop, error) {
	// A stop asked for (StopThread) is satisfied by whatever stops the
	// thread first (the target then swallows its SIGSTOP): that stop is
	// reported, not passed over.
	wanted := e.stopWanted[ev.Tid]
	delete(e.stopWanted, ev.Tid)
	switch {
	case ev.Trap == target.TrapBreakpoint && len(e.byAddr[ev.Addr]) == 0:
		if e.internalBreakpoint(ev.Addr) {
			e.refreshLinkMap()
		}
		e.stats.PassedNotOwned++
		st, err := e.stepOverOwn(ev.Tid)
		if err != nil {
			return nil, err
		}
		if e.exited {
			return nil, nil
		}
		if st != nil {
			// Its step over the int3 forked (or ended the thread): that
			// is its stop.
			return st, nil
		}
		if wanted {
			// Off the breakpoint that is not its own, stopped as asked.
			return e.otherFinish(&Stop{Kind: StopInterrupt, Tid: ev.Tid, Sig: ev.Sig}), nil
		}
		return nil, e.continueOther(ev.Tid, 0)
	case e.silent(ev) && !wanted:
		e.signalSeen[ev.Tid] = time.Now()
		sig := ev.Sig
		if e.policy.NoPass[sig] {
			sig = 0
		}
		return nil, e.continueOther(ev.Tid, sig)
	}
	st := e.eventStop(ev)
	if st.Kind == StopBreakpoint {
		e.reported[ev.Tid] = ev.Addr
	}
	return e.otherFinish(st), nil
}

// otherFinish fills the PC and the inside-section note of another
// thread's stop (finish would take the driven thread's note).
func (e *Engine) otherFinish(st *Stop) *Stop {
	if r, _, err := e.quickRegs(st.Tid); err == nil {
		st.PC = r.Rip
		st.Inside = e.insideCS(r.Rip)
	}
	return st
}

// continueOther lets a thread nothing drives run on. One that is gone
// (it exited meanwhile) is no error: its exit is reported by the target.
func (e *Engine) continueOther(tid, sig int) error {
	err := e.t.Resume(map[int]target.Action{tid: {Kind: target.Continue, Sig: sig}}, target.Action{Kind: target.Stay})
	if err != nil && !e.threadGone(tid) {
		return fmt.Errorf("resuming thread %d past a breakpoint it does not own: %w", tid, err)
	}
	return nil
}

func (e *Engine) threadGone(tid int) bool {
	for _, t := range e.t.Threads() {
		if t == tid {
			return false
		}
	}
	return true
}

// pauseOthers holds every running thread stopped (non-stop mode) until
// the returned function is called; nested holds share one pause.
func (e *Engine) pauseOthers() func() {
	if !e.nonStop || e.exited {
		return func() {}
	}
	if e.pauses == 0 {
		e.stats.Pauses++
		if err := e.ns.PauseAll(); err != nil {
			slog.Debug("pausing the running threads", "err", err)
		}
	}
	e.pauses++
	return func() {
		e.pauses--
		if e.pauses == 0 && !e.exited {
			if err := e.ns.ResumePaused(); err != nil {
				slog.Debug("resuming the paused threads", "err", err)
			}
		}
	}
}

// interrupt ends a run's time budget: the driven thread alone in non-stop
// mode, the target otherwise. Called from a timer goroutine.
func (e *Engine) interrupt(tid int) {
	if e.nonStop {
		e.ns.InterruptThread(tid)
		return
	}
	e.t.Interrupt()
}

// ContinueThread (non-stop mode) lets tid run, the others staying as they
// are: off the breakpoint it reported, or out of the critical section it
// stopped in (contract point 4), first. Its later stops come from Poll. A
// stop returned here ended that first move; the thread is then stopped.
func (e *Engine) ContinueThread(tid, sig int) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	if !e.nonStop {
		return nil, errors.New("continuing one thread alone needs non-stop mode")
	}
	defer e.drive(tid)()
	if old, ok := e.pinned[tid]; ok {
		e.threadCtl.SetAffinity(tid, old)
		delete(e.pinned, tid)
	}
	st, err := e.reapIfDead(e.moveOff(tid, sig))
	if err != nil {
		return nil, err
	}
	if st != nil {
		if st.Kind != StopStep {
			return st, nil
		}
		sig = 0
	}
	delete(e.reported, tid)
	e.forgetUnregistered(tid)
	e.syscallGen++
	if err := e.t.Resume(map[int]target.Action{tid: {Kind: target.Continue, Sig: sig}}, target.Action{Kind: target.Stay}); err != nil {
		return nil, fmt.Errorf("continuing thread %d: %w", tid, err)
	}
	return nil, nil
}

// StopThread (non-stop mode) asks running thread tid to stop; Poll reports
// the stop as StopInterrupt.
func (e *Engine) StopThread(tid int) error {
	if !e.nonStop {
		return errors.New("stopping one thread alone needs non-stop mode")
	}
	if !e.ns.Running(tid) {
		return nil
	}
	if err := e.ns.StopThread(tid); err != nil {
		return err
	}
	e.stopWanted[tid] = true
	return nil
}

// Poll (non-stop mode) returns the next stop of a thread nothing drives
// (its exit included, StopThreadExited), or nil when none is ready; it
// does not block. A breakpoint stop is noted so
// the thread's next resumption steps off it.
func (e *Engine) Poll() (*Stop, error) {
	if len(e.deferred) > 0 {
		st := e.deferred[0]
		e.deferred = e.deferred[1:]
		return st, nil
	}
	if e.exited || !e.nonStop {
		return nil, nil
	}
	for {
		ev, ok, err := e.ns.Poll()
		if err != nil || !ok {
			return nil, err
		}
		if st := e.terminal(ev); st != nil {
			// A thread's exit is reported too: in non-stop mode its
			// client resumed it and waits for its stop, which will
			// never come otherwise.
			return st, nil
		}
		if ev.Kind != target.EventStop {
			continue
		}
		st, err := e.otherStop(ev)
		if err != nil || st != nil {
			return st, err
		}
	}
}
