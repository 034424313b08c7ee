package dap

import (
	"fmt"
	"time"

	"github.com/google/go-dap"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
)

// Non-stop mode (the "nonStop" launch option; docs/design.md, "Non-stop
// mode"). Only the thread that stops stops: its stopped event says
// allThreadsStopped false. Continue, the steps and pause act on the thread
// they name. No request holds the whole program: a continue returns once
// its thread runs, a step runs on the ptrace thread until its thread
// stops (the others run meanwhile), and a poller reports the stops of
// running threads as they come. Requests about a stopped thread (stack,
// variables) are answered while others run; memory is read while they run.

// pollEvery is how often the poller looks for stops of running threads
// after one came; the interval doubles up to pollMax while none does.
const (
	pollEvery = 2 * time.Millisecond
	pollMax   = 16 * time.Millisecond
)

// startNonStop switches the session to non-stop mode and starts its poller.
func (ss *session) startNonStop(on bool) error {
	if !on {
		return nil
	}
	var err error
	if derr := ss.do(func() { err = ss.rc.SetNonStop(true) }); derr != nil {
		return derr
	}
	if err != nil {
		return fmt.Errorf("nonStop: %w", err)
	}
	ss.nonStop = true
	ss.runs.Add(1)
	go ss.pollStops()
	return nil
}

// resumeThread is resume in non-stop mode: body runs on the ptrace thread
// (a step to its end, a continue until its thread runs) on a goroutine of
// its own, and a stop it returns is reported for its thread alone.
func (ss *session) resumeThread(tid int, reason string, body func() (*sess.Stop, error)) {
	ss.runs.Add(1)
	go func() {
		defer ss.runs.Done()
		var events []dap.Message
		var exited bool
		err := ss.do(func() {
			// The other threads' frames stay valid: they did not move.
			ss.invalidateThread(tid)
			ss.mu.Lock()
			ss.driving = tid
			ss.mu.Unlock()
			st, err := body()
			ss.mu.Lock()
			ss.driving = 0
			ss.mu.Unlock()
			if err != nil {
				if ss.eng.Exited() {
					events = ss.endEvents(128 + 9)
					return
				}
				events = append(events, ss.errorStop(err))
				return
			}
			if st == nil {
				return // it runs: its stop comes from the poller
			}
			if st.Kind != stepper.StopStep {
				reason = ""
			}
			events, exited = ss.stopEvents(st, reason)
		})
		if err != nil {
			events = []dap.Message{ss.errorStop(err)}
		}
		if exited {
			ss.waitOutput()
		}
		for _, m := range events {
			ss.srv.send(m)
		}
	}()
}

// pauseThread stops one running thread; the poller reports its stop. A
// thread a step drives (a step over a call that waits for a stopped
// thread can last for ever) is interrupted from here, without the ptrace
// thread the step holds: the step ends with the pause.
func (ss *session) pauseThread(tid int) error {
	ss.mu.Lock()
	driven := ss.driving == tid && tid != 0
	ss.mu.Unlock()
	if driven {
		ss.proc.InterruptThread(tid)
		return nil
	}
	var err error
	if derr := ss.do(func() {
		if ss.eng.Exited() {
			return
		}
		if !ss.alive(tid) {
			err = fmt.Errorf("no thread %d", tid)
			return
		}
		err = ss.rc.StopThread(tid)
	}); derr != nil {
		return derr
	}
	return err
}

// pollStops reports the stops of running threads until the session ends.
func (ss *session) pollStops() {
	defer ss.runs.Done()
	wait := pollEvery
	for {
		time.Sleep(wait)
		wait = min(2*wait, pollMax)
		ss.mu.Lock()
		over := ss.ended || ss.closed
		ss.mu.Unlock()
		if over {
			return
		}
		var events []dap.Message
		var exited bool
		err := ss.do(func() {
			for !ss.eng.Exited() {
				st, err := ss.rc.Poll()
				if err != nil {
					events = append(events, ss.errorStop(err))
					return
				}
				if st == nil {
					return
				}
				ss.invalidateThread(st.Tid)
				evs, ex := ss.stopEvents(st, "")
				events = append(events, evs...)
				if exited = ex; ex {
					return
				}
			}
		})
		if err != nil {
			ss.log.Error("dap: polling threads in non-stop mode", "err", err)
			return
		}
		if exited {
			ss.waitOutput()
		}
		if len(events) > 0 {
			wait = pollEvery
		}
		for _, m := range events {
			ss.srv.send(m)
		}
		if exited {
			return
		}
	}
}

// invalidateThread forgets what a thread's frames were: it ran since.
// Frame ids stay unique over the session; they are all dropped now and
// then, as at every stop in all-stop mode.
func (ss *session) invalidateThread(tid int) {
	if len(ss.frameIDs) > 4096 {
		ss.invalidate()
		return
	}
	delete(ss.frames, tid)
	for i, f := range ss.frameIDs {
		if f != nil && f.Tid == tid {
			ss.frameIDs[i] = nil
		}
	}
}
