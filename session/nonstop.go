package session

import "github.com/rseqdbg/rseqdbg/stepper"

// Non-stop mode: threads stop and run one by one (docs/design.md,
// "Non-stop mode"). The policy is the all-stop one, applied per thread:
// a breakpoint hit the store declines (a false condition, a count not yet
// reached, a log point) resumes its thread alone, and a thread's signal
// goes with its own resumption.

// SetNonStop switches non-stop mode (every thread stopped). Fork
// children are not followed in non-stop mode (they are let go clean, the
// default); following is taken up again when it ends.
func (s *Session) SetNonStop(on bool) error {
	if err := s.Eng.SetNonStop(on); err != nil {
		return err
	}
	if on && s.forks != nil {
		s.followAfterNonStop = true
		s.FollowForks(false)
	} else if !on && s.followAfterNonStop {
		s.followAfterNonStop = false
		s.FollowForks(true)
	}
	return nil
}

// NonStop reports whether non-stop mode is on.
func (s *Session) NonStop() bool { return s.Eng.NonStop() }

// ContinueThread lets tid run on its own with sig (0: the signal it
// stopped with, when the session keeps it). A stop returned here ended
// moving it off its breakpoint or out of its section; nil means it runs,
// and its next stop comes from Poll.
func (s *Session) ContinueThread(tid, sig int) (*Stop, error) {
	delete(s.atBreakpoint, tid)
	if sig == 0 {
		sig = s.pendingSig[tid]
	}
	delete(s.pendingSig, tid)
	return s.threadStop(s.Eng.ContinueThread(tid, sig))
}

// StopThread asks running thread tid to stop; Poll reports it.
func (s *Session) StopThread(tid int) error { return s.Eng.StopThread(tid) }

// Poll returns the next stop the user must see of a thread that runs on
// its own (its exit included), or nil when there is none yet; it does not
// block.
func (s *Session) Poll() (*Stop, error) {
	for {
		st, err := s.Eng.Poll()
		if err != nil || st == nil {
			return nil, err
		}
		out, err := s.threadStop(st, nil)
		if err != nil || out != nil {
			return out, err
		}
	}
}

// threadStop filters one thread's stop as Continue does: a declined
// breakpoint hit resumes the thread, a thread's exit is reported as such
// (its client waits for it), an exec is reported after the breakpoints
// are resolved again.
func (s *Session) threadStop(st *stepper.Stop, err error) (*Stop, error) {
	for err == nil && st != nil && !s.Eng.Exited() {
		switch st.Kind {
		case stepper.StopThreadExited:
			// Reported: the thread's client resumed it and waits for its
			// stop (gdb's 'w', DAP's thread exited event).
			s.Forget(st.Tid)
			return &Stop{Stop: st}, nil
		case stepper.StopLibrary:
			s.Sync()
			st, err = s.Eng.ContinueThread(st.Tid, 0)
			continue
		case stepper.StopExec:
			out := s.stopped(st, nil)
			s.Sync()
			if s.Events.Exec != nil {
				s.Events.Exec(s.T.ExecPath())
			}
			return out, nil
		case stepper.StopBreakpoint:
			if stop, hits := s.decide(st); stop {
				return s.stopped(st, hits), nil
			}
			st, err = s.Eng.ContinueThread(st.Tid, 0)
			continue
		}
		break
	}
	if err != nil || st == nil {
		return nil, err
	}
	return s.stopped(st, nil), nil
}
