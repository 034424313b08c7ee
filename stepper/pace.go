package stepper

import (
	"log/slog"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/sys/unix"
)

// Signal pacing: when a ptrace signal stop and resume costs more than the
// period of a timer firing at a thread, a run (a continue, a range step,
// finish) never gets past the signal: the next one is pending when the
// handler returns, is delivered right there, stops the thread again, and
// the program makes no progress at all. The pacer rate-limits delivery for
// such a thread, with nothing of it visible to the program:
//
//  1. A passed signal stop at the same PC and stack pointer as the
//     thread's previous one, shortly after it, made no progress. Its
//     signal is delivered as usual, and the thread runs stopping at system
//     calls (target.ContinueSyscalls).
//  2. When the handler's rt_sigreturn has restored the thread's mask (at
//     its exit stop, before the kernel looks for the next signal), the
//     asynchronous signals are added to it: the thread runs its own code
//     again, with the next signals pending in the kernel.
//  3. The hold ends at the thread's next system call entry, before the
//     call runs (so no call ever sees or saves the changed mask, and a
//     call that waits for a signal gets it), after paceHold by an
//     interrupt, and before any stop is reported. The pending signals are
//     then delivered: once each, in order, as the kernel queues them.
//
// A handler's own system calls are let through; a handler that does not
// return by rt_sigreturn (siglongjmp) ends the pacing of its thread after a
// few calls. Pacing needs the target's ThreadControl.
const (
	// paceWindow: two signal stops further apart than this are not a
	// storm, whatever their PCs.
	paceWindow = 5 * time.Millisecond
	// paceHold is how long a paced thread runs with its signals held.
	paceHold = time.Millisecond
	// paceHandlerCalls bounds the system calls seen in a handler before
	// the pacer gives up waiting for its rt_sigreturn.
	paceHandlerCalls = 16
)

type pacePhase uint8

const (
	paceNone pacePhase = iota
	// paceHandler: the signal was delivered; waiting for rt_sigreturn.
	paceHandler
	// paceSigreturn: in rt_sigreturn; its exit is where signals are held.
	paceSigreturn
	// paceHeld: asynchronous signals are blocked until the next system
	// call, the release or a reported stop.
	paceHeld
)

type paceState struct {
	// The previous passed signal stop.
	pc, sp uint64
	at     time.Time
	phase  pacePhase
	calls  int
	// saved is the thread's own mask while held.
	saved uint64
}

// sawSignal records a signal stop of tid; passed says the signal is
// delivered when tid resumes. It starts pacing tid when the stop made no
// progress since its previous one.
func (e *Engine) sawSignal(tid int, passed bool) {
	now := time.Now()
	e.signalSeen[tid] = now
	if !passed || e.threadCtl == nil || e.nonStop {
		// In non-stop mode the other threads keep running, so the
		// pacer's resumption of every thread as it was does not apply.
		return
	}
	regs, _, err := e.quickRegs(tid)
	if err != nil {
		return
	}
	p := e.pace[tid]
	if p == nil {
		p = &paceState{}
		e.pace[tid] = p
	}
	if p.phase == paceHeld {
		// A signal the hold does not block (a fault): the mask it runs
		// its handler with, and restores after, must be the thread's own.
		e.unhold(tid, p)
	}
	stuck := p.phase == paceNone && !p.at.IsZero() && now.Sub(p.at) < paceWindow && regs.Rip == p.pc && regs.Rsp == p.sp
	p.pc, p.sp, p.at = regs.Rip, regs.Rsp, now
	if stuck {
		p.phase, p.calls = paceHandler, 0
		e.stats.PacedSignals++
	}
}

// pacedSyscall advances tid's pacing at one of its syscall stops.
func (e *Engine) pacedSyscall(ev target.Event) {
	p := e.pace[ev.Tid]
	if p == nil {
		return
	}
	entry := ev.Trap == target.TrapSyscallEntry
	switch p.phase {
	case paceHandler:
		if entry && ev.Syscall == unix.SYS_RT_SIGRETURN {
			p.phase = paceSigreturn
			return
		}
		if p.calls++; p.calls > paceHandlerCalls {
			p.phase = paceNone
		}
	case paceSigreturn:
		if entry {
			return
		}
		p.phase = paceNone
		m, err := e.threadCtl.SignalMask(ev.Tid)
		if err != nil || m|asyncMask == m {
			return
		}
		if err := e.threadCtl.SetSignalMask(ev.Tid, m|asyncMask); err != nil {
			slog.Debug("holding signals", "tid", ev.Tid, "err", err)
			return
		}
		p.phase, p.saved = paceHeld, m
		if e.paceTimer == nil {
			e.paceTimer = time.AfterFunc(paceHold, func() {
				e.paceDue.Store(true)
				e.t.Interrupt()
			})
		}
	case paceHeld:
		if entry {
			e.unhold(ev.Tid, p)
		}
	}
}

// unhold gives a held thread its own mask back.
func (e *Engine) unhold(tid int, p *paceState) {
	if p.phase != paceHeld {
		return
	}
	p.phase = paceNone
	if !e.exited {
		e.threadCtl.SetSignalMask(tid, p.saved)
	}
}

// paceRelease ends every hold (the release timer fired); with all, it
// ends every thread's pacing, before a stop is reported or the process
// is let go.
func (e *Engine) paceRelease(all bool) {
	if e.paceTimer != nil {
		e.paceTimer.Stop()
		e.paceTimer = nil
	}
	e.paceDue.Store(false)
	for tid, p := range e.pace {
		e.unhold(tid, p)
		if all {
			p.phase = paceNone
		}
	}
}

// pacedActions gives threads that are being paced their resumption: they
// run stopping at system calls. A held thread stays held through a step,
// which the next signal would otherwise take the place of, unless the
// step executes a system call: a step reports no syscall stop, so that
// call would see the held mask.
func (e *Engine) pacedActions(actions map[int]target.Action, def target.Action) map[int]target.Action {
	var out map[int]target.Action
	for tid, p := range e.pace {
		if p.phase == paceNone {
			continue
		}
		act, ok := actions[tid]
		if !ok {
			act = def
		}
		switch act.Kind {
		case target.Step:
			if p.phase == paceHeld && e.atSyscall(tid) {
				e.unhold(tid, p)
			}
		case target.Continue:
			if out == nil {
				out = make(map[int]target.Action, len(actions)+1)
				for k, v := range actions {
					out[k] = v
				}
			}
			act.Kind = target.ContinueSyscalls
			out[tid] = act
		}
	}
	if out == nil {
		return actions
	}
	return out
}

// atSyscall reports whether tid's next instruction is a system call, or
// may be (it cannot be decoded).
func (e *Engine) atSyscall(tid int) bool {
	regs, _, err := e.quickRegs(tid)
	if err != nil {
		return true
	}
	in, err := e.decode(regs.Rip)
	return err != nil || in.Kind == x86.FlowSyscall
}

// resume is the engine's Target.Resume: paced threads stop at system
// calls, and a release that came due while everything was stopped is done
// now.
func (e *Engine) resume(actions map[int]target.Action, def target.Action) error {
	if e.paceDue.Swap(false) {
		e.paceRelease(false)
	}
	e.lastActions, e.lastDefault = actions, def
	return e.t.Resume(e.pacedActions(actions, def), def)
}

// wait is the engine's Target.Wait (waitDriven in non-stop mode). Syscall
// stops and the pacer's own
// interrupt are the pacer's business: it acts, resumes every thread as
// they were (their signals were delivered by the first resumption), and
// waits on. budgetFired says an interrupt returned is a run budget's.
func (e *Engine) wait() (target.Event, error) {
	if e.nonStop {
		// The others run anyway: no pacing. An interrupt of the driven
		// thread is its run's budget's or a stop request's.
		ev, err := e.waitDriven()
		if err == nil && ev.Async {
			e.budgetFired = e.budgetDue.Swap(false)
		}
		return ev, err
	}
	for {
		ev, err := e.t.Wait()
		if err != nil || ev.Kind != target.EventStop {
			return ev, err
		}
		switch {
		case ev.Trap == target.TrapSyscallEntry || ev.Trap == target.TrapSyscallExit:
			e.pacedSyscall(ev)
		case ev.Async:
			// Every interrupt is ours (the user's goes through
			// Engine.Interrupt): one nobody is waiting for any more is a
			// timer's that raced with the stop it was for.
			user, budget := e.userInterrupt.Swap(false), e.budgetDue.Swap(false)
			if e.paceDue.Swap(false) {
				e.paceRelease(false)
			}
			if !user && !budget {
				break
			}
			e.budgetFired = !user
			return ev, nil
		default:
			return ev, nil
		}
		again := make(map[int]target.Action, len(e.lastActions))
		for tid, a := range e.lastActions {
			a.Sig = 0
			again[tid] = a
		}
		def := e.lastDefault
		def.Sig = 0
		if err := e.resume(again, def); err != nil {
			return target.Event{}, err
		}
	}
}

// Interrupt stops a running process for the user: the stop is reported
// as an interrupt, never taken for a budget's or the pacer's. Safe from
// any goroutine.
func (e *Engine) Interrupt() {
	e.userInterrupt.Store(true)
	e.t.Interrupt()
}
