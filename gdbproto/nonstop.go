package gdbproto

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
)

// Non-stop mode (gdb's `set non-stop on`; docs/design.md, "Non-stop
// mode"). vCont is answered OK at once; each thread's stop comes later as
// a %Stop notification. Stops wait in stopQueue: the head is the one
// notified, and each vStopped acknowledges it and answers the next one
// (or OK once the queue is empty), as gdbserver's notif.cc does. While
// threads run the server polls the client and the target in turn on the
// tracer thread, so packets keep being answered and stops go out as they
// happen.

// pollInterval is how long the server waits for the client before it
// looks at the target again while threads run in non-stop mode; it
// doubles up to pollMax while nothing happens, so an idle session does
// not wake the tracer thread a thousand times a second.
const (
	pollInterval = time.Millisecond
	pollMax      = 16 * time.Millisecond
)

// nonStopState is a session's non-stop mode.
type nonStopState struct {
	on bool
	// stopQueue holds stop replies not yet acknowledged by vStopped; the
	// head has been sent as a notification.
	stopQueue [][]byte
	// stops are each stopped thread's last stop, for '?'.
	stops map[int]*stepper.Stop
	// after runs once the reply to the current packet is out: a resumption
	// answered OK runs then, and its stop follows as a notification.
	after func()
	// waited are the threads a vCont action named (not a wildcard) and
	// that have not stopped since: the client waits for their stop, so
	// their exit is reported ('w'). Other
	// threads' exits are not (unless QThreadEvents): gdb 13 takes a 'w'
	// of a thread it has not seen as a new thread's.
	waited map[int]bool
}

// setNonStop answers QNonStop:0 and QNonStop:1. A target that cannot run
// threads independently (a proxied stub) refuses, as gdbserver does; so
// does a connection the server cannot poll.
func (s *session) setNonStop(arg string) [][]byte {
	on := arg == "1"
	if arg != "0" && arg != "1" {
		return replyErr
	}
	if on && (s.w == nil || s.w.Fd() < 0) {
		return replyErr
	}
	if s.ns.stops == nil {
		s.ns.stops = map[int]*stepper.Stop{}
		s.ns.waited = map[int]bool{}
	}
	if pr := s.live(); pr != nil {
		if err := pr.rc.SetNonStop(on); err != nil {
			slog.Info("QNonStop refused", "err", err)
			return replyErr
		}
	} else if on {
		// No process yet (extended-remote before vRun): it is switched when
		// one is taken.
		s.ns.on = true
		return replyOK
	}
	s.ns.on = on
	s.ns.stopQueue = nil
	clear(s.ns.stops)
	clear(s.ns.waited)
	return replyOK
}

// vStopped acknowledges the notified stop and answers the next one.
func (s *session) vStopped() [][]byte {
	if !s.ns.on {
		return replyEmpty
	}
	if len(s.ns.stopQueue) > 0 {
		s.ns.stopQueue = s.ns.stopQueue[1:]
	}
	if len(s.ns.stopQueue) == 0 {
		s.ns.stopQueue = nil
		return replyOK
	}
	return [][]byte{s.ns.stopQueue[0]}
}

// questionNonStop answers '?' in non-stop mode: every stopped thread's stop
// is queued again, the first is the reply and vStopped gives the others;
// OK when every thread runs.
func (s *session) questionNonStop() [][]byte {
	s.ns.stopQueue = nil
	pr := s.live()
	if pr == nil {
		if p := s.srv.proc; p != nil && p.last != nil && p.exited {
			return [][]byte{s.stopPacket(p.last)}
		}
		return replyOK
	}
	for _, tid := range pr.p.Threads() {
		if pr.eng.Running(tid) {
			continue
		}
		st := s.ns.stops[tid]
		if st == nil && pr.last != nil && pr.last.Tid == tid {
			st = pr.last
		}
		if st == nil {
			// Stopped for no reason it reported (with the process at
			// attach, or as it was when the mode was switched): T00.
			st = &stepper.Stop{Kind: stepper.StopSignal, Tid: tid}
		}
		s.ns.stopQueue = append(s.ns.stopQueue, s.nonStopPacket(st))
	}
	if len(s.ns.stopQueue) == 0 {
		return replyOK
	}
	return [][]byte{s.ns.stopQueue[0]}
}

// nonStopPacket is a stop reply in non-stop mode: a stop gdb asked for
// with vCont;t carries signal 0, as gdbserver reports it; a thread's exit
// is 'w'.
func (s *session) nonStopPacket(st *stepper.Stop) []byte {
	if st.Kind == stepper.StopThreadExited {
		// "w AA;TID": the thread exited with status AA, as gdbserver
		// reports TARGET_WAITKIND_THREAD_EXITED (gdb takes it for a
		// thread it resumed and waits for without QThreadEvents); the exit
		// status of one thread is not known here (the kernel reports it
		// for the group only), 0.
		if pr := s.srv.proc; pr != nil {
			return []byte("w00;" + s.threadIDString(pr.p.Pid(), st.Tid))
		}
	}
	if st.Kind == stepper.StopInterrupt {
		c := *st
		c.Kind, c.Sig = stepper.StopSignal, 0
		st = &c
	}
	return s.stopPacket(st)
}

// vContNonStop applies a vCont to the stopped threads it names and stops
// the running ones 't' names; running threads ignore the other actions.
// The reply is OK; resumptions run once it is out.
func (s *session) vContNonStop(pr *process, acts []wire.VContAction) [][]byte {
	type job struct {
		tid int
		a   wire.VContAction
	}
	var jobs []job
	for _, tid := range pr.p.Threads() {
		for _, a := range acts {
			if !s.matches(a.Thread, pr.p.Pid(), tid) {
				continue
			}
			running := pr.eng.Running(tid)
			switch {
			case a.Action == 't' && running:
				if err := pr.rc.StopThread(tid); err != nil {
					slog.Debug("vCont;t", "tid", tid, "err", err)
				}
			case a.Action != 't' && !running:
				jobs = append(jobs, job{tid, a})
				if a.Thread.Tid > 0 {
					s.ns.waited[tid] = true
				}
			}
			break
		}
	}
	// Continues first: a thread stepped with "vCont;s:TID;c" steps while
	// the others it continues run, as it would in all-stop.
	sort.SliceStable(jobs, func(i, k int) bool {
		return isContinue(jobs[i].a.Action) && !isContinue(jobs[k].a.Action)
	})
	s.ns.after = func() {
		for _, j := range jobs {
			delete(s.ns.stops, j.tid)
			st, err := s.resumeNonStop(pr, j.tid, j.a)
			if err != nil {
				if errors.Is(err, target.ErrExited) {
					return
				}
				slog.Error("resuming in non-stop mode", "tid", j.tid, "err", err)
				// gdb waits for this thread's stop: say why it will not
				// come as the stop it asked for.
				st = &sess.Stop{Stop: &stepper.Stop{Kind: stepper.StopSignal, Tid: j.tid}}
			}
			if st != nil {
				s.notify(pr, st.Stop)
			}
		}
	}
	return replyOK
}

func isContinue(a byte) bool { return a == 'c' || a == 'C' }

// resumeNonStop runs one thread's action: a step or range step to its
// end (the other threads run meanwhile), or a continue that returns once
// the thread runs.
func (s *session) resumeNonStop(pr *process, tid int, a wire.VContAction) (*sess.Stop, error) {
	sig := 0
	if a.Action == 'C' || a.Action == 'S' {
		sig = s.hostSignal(int(a.Signal))
	}
	switch a.Action {
	case 's', 'S':
		return pr.rc.StepInstruction(tid, sig, stepper.OthersStay)
	case 'r':
		return pr.rc.RangeStep(tid, a.RangeStart, a.RangeEnd, sig, stepper.OthersStay)
	case 'c', 'C':
		return pr.rc.ContinueThread(tid, sig)
	}
	return nil, fmt.Errorf("vCont action %q", a.Action)
}

// notify queues a stop and sends it as a notification when nothing else
// waits for acknowledgement.
func (s *session) notify(pr *process, st *stepper.Stop) {
	switch st.Kind {
	case stepper.StopExited, stepper.StopKilled:
		pr.exited = true
		pr.last = st
	case stepper.StopThreadExited:
		// Gone: '?' has no stop of it to list, and the last stop stays
		// a live thread's.
		delete(s.ns.stops, st.Tid)
		waited := s.ns.waited[st.Tid]
		delete(s.ns.waited, st.Tid)
		if !waited && !s.threadEvents {
			slog.Debug("non-stop thread exit not reported", "tid", st.Tid)
			return
		}
	default:
		s.ns.stops[st.Tid] = st
		pr.last = st
		// The wait for it is over; the next vCont that names it starts
		// another.
		delete(s.ns.waited, st.Tid)
	}
	if st.Note != "" || st.Inside != nil {
		// No console output outside a reply in non-stop mode: the note
		// goes to the log.
		slog.Info("non-stop stop", "tid", st.Tid, "note", st.Note, "inside", st.Inside != nil)
	}
	pkt := s.nonStopPacket(st)
	s.ns.stopQueue = append(s.ns.stopQueue, pkt)
	if len(s.ns.stopQueue) > 1 || s.w == nil {
		return
	}
	slog.Debug("->", "notification", wire.Clip(string(pkt)))
	if err := s.w.WriteNotification(append([]byte("Stop:"), pkt...)); err != nil {
		slog.Debug("stop notification", "err", err)
		s.lost.Store(true)
	}
}

// awaitNonStop waits for the client's next packet while threads run,
// reporting their stops as they come.
func (s *session) awaitNonStop(c *wire.Conn, pr *process) error {
	wait := pollInterval
	for {
		if f := s.ns.after; f != nil {
			s.ns.after = nil
			f()
		}
		if s.lost.Load() {
			return nil
		}
		if pr.exited || pr.eng.Exited() {
			return nil
		}
		ready, err := c.Await(wait)
		if err != nil || ready {
			return err
		}
		wait = min(2*wait, pollMax)
		for !pr.exited {
			st, err := pr.rc.Poll()
			if err != nil {
				if !errors.Is(err, target.ErrExited) {
					slog.Error("waiting for threads in non-stop mode", "err", err)
				}
				break
			}
			if st == nil {
				break
			}
			s.notify(pr, st.Stop)
			wait = pollInterval
		}
	}
}
