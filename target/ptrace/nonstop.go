package ptrace

import (
	"errors"
	"fmt"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

// Non-stop mode (target.NonStop): threads run and stop one by one. The
// bookkeeping is the all-stop one (running, sigstopPending, pending); what
// differs is that Resume leaves running threads alone and Wait does not
// stop the world before it returns.

// SetNonStop switches between all-stop and non-stop operation. Switching
// off stops every running thread; their stops are kept and reported by
// the next Wait, as all-stop does with stops that race a stop of the world.
func (p *Process) SetNonStop(on bool) error {
	if p.exited {
		return target.ErrExited
	}
	if !on && p.nonStop {
		if err := p.stopAll(); err != nil {
			return err
		}
		for _, t := range p.threads {
			t.paused = false
		}
		p.pausing = false
	}
	p.nonStop = on
	return nil
}

// Running reports whether tid runs (resumed and not seen stopped).
func (p *Process) Running(tid int) bool {
	t := p.threads[tid]
	return t != nil && t.running
}

// StopThread sends tid a SIGSTOP whose stop is reported (Async) rather
// than swallowed. A thread already stopped, or with one of our SIGSTOPs on
// the way, needs no other.
func (p *Process) StopThread(tid int) error {
	t := p.threads[tid]
	if t == nil {
		return fmt.Errorf("stopping thread %d: no such thread", tid)
	}
	if !t.running {
		return nil
	}
	if !t.sigstopPending {
		if err := unix.Tgkill(p.pid, tid, unix.SIGSTOP); err != nil {
			return fmt.Errorf("stopping thread %d: %w", tid, err)
		}
		t.sigstopPending = true
	}
	t.stopRequested = true
	return nil
}

// InterruptThread stops tid from any goroutine: the SIGSTOP it sends is
// reported with Async (the interrupt flag tells it from ours).
func (p *Process) InterruptThread(tid int) {
	p.interruptTid.Store(int64(tid))
	p.interrupt.Store(true)
	unix.Tgkill(p.pid, tid, unix.SIGSTOP)
}

// Poll returns an event if one is ready, without blocking.
func (p *Process) Poll() (target.Event, bool, error) {
	return p.waitNonStop(false)
}

// PauseAll stops every running thread; stops they report meanwhile are
// kept (a breakpoint hit is cancelled by rewinding the PC, as in all-stop)
// and reported once they are resumed.
func (p *Process) PauseAll() error {
	if p.exited {
		return target.ErrExited
	}
	for _, t := range p.threads {
		if t.running {
			t.paused = true
		}
	}
	p.pausing = true
	return p.stopAll()
}

// ResumePaused restarts what PauseAll stopped, each thread as it ran. A
// thread that reported a stop meanwhile is not restarted: its stop goes
// to the queue the next Wait or Poll reads first.
func (p *Process) ResumePaused() error {
	p.pausing = false
	if p.exited {
		return nil
	}
	var firstErr error
	for _, tid := range p.order {
		t := p.threads[tid]
		if !t.paused {
			continue
		}
		t.paused = false
		if t.running {
			continue
		}
		if t.pending != nil {
			p.queued = append(p.queued, *t.pending)
			t.pending = nil
			continue
		}
		act := t.last
		act.Sig = 0 // a signal went in with the first resumption
		if act.Kind == target.Stay {
			act.Kind = target.Continue
		}
		if err := p.resumeThread(t, act); err != nil && !errors.Is(err, unix.ESRCH) && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// resumeNonStop starts the stopped threads actions names (def for other
// stopped threads unless it is Stay), leaving running ones alone.
func (p *Process) resumeNonStop(actions map[int]target.Action, def target.Action) error {
	first, queued := 0, false
	for _, tid := range p.order {
		t := p.threads[tid]
		act, ok := actions[tid]
		if !ok {
			act = def
		}
		if act.Kind == target.Stay || t.running || t.paused {
			continue
		}
		if t.pending != nil {
			p.queued = append(p.queued, *t.pending)
			t.pending = nil
			queued = true
			continue
		}
		if err := p.startThread(t, act); err != nil {
			return err
		}
		if first == 0 {
			first = tid
		}
	}
	if first == 0 && !queued && !p.anyRunning() {
		return errors.New("resume: no thread to run")
	}
	if first != 0 {
		p.signalTid.Store(int64(first))
		p.running.Store(true)
	}
	return nil
}

// waitNonStop returns the next event of one thread, leaving the others as
// they are; without block it returns ok false when nothing is ready.
func (p *Process) waitNonStop(block bool) (target.Event, bool, error) {
	if len(p.queued) > 0 {
		ev := p.queued[0]
		p.queued = p.queued[1:]
		return ev, true, nil
	}
	if p.exited {
		return target.Event{}, false, target.ErrExited
	}
	for {
		if !p.anyRunning() {
			if !block {
				return target.Event{}, false, nil
			}
			return target.Event{}, false, errors.New("wait: no thread is running")
		}
		var ws unix.WaitStatus
		flags := unix.WALL | unix.WNOTHREAD
		if !block {
			flags |= unix.WNOHANG
		}
		tid, err := unix.Wait4(-1, &ws, flags, nil)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.ECHILD {
				p.exited = true
				return target.Event{Kind: target.EventSignaled, Sig: int(unix.SIGKILL)}, true, nil
			}
			return target.Event{}, false, fmt.Errorf("waiting for %d: %w", p.pid, err)
		}
		if tid == 0 {
			return target.Event{}, false, nil
		}
		ev, report := p.handleStatus(tid, ws, false)
		if !report {
			continue
		}
		if ev.Kind == target.EventStop && tid == int(p.interruptTid.Load()) && !ev.Async && p.interrupt.Swap(false) {
			// An interrupt lost the race with this stop: its SIGSTOP is
			// still queued on this thread and is swallowed later.
			if t := p.threads[tid]; t != nil {
				t.sigstopPending = true
			}
		}
		return ev, true, nil
	}
}
