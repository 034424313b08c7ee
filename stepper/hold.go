package stepper

import (
	"time"

	"github.com/rseqdbg/rseqdbg/x86"
)

// asyncMask are the signals holdSignals blocks: every one but the
// synchronous faults, which the kernel would unblock and reset.
var asyncMask = func() uint64 {
	m := ^uint64(0)
	for _, s := range syncSignals {
		m &^= 1 << (s - 1)
	}
	return m
}()

// stormWindow is how long after a signal stop a thread's steps hold its
// signals.
const stormWindow = 100 * time.Millisecond

// stormy reports whether tid had a signal stop recently. Holding costs
// three system calls a step (read the mask, block, restore), which a hot
// breakpoint pays at every hit, so steps hold only while signals come: the
// first step of a storm may end in a signal (gdb then steps again, and
// that step holds), a region run always holds.
func (e *Engine) stormy(tid int) bool {
	t, ok := e.signalSeen[tid]
	return ok && time.Since(t) < stormWindow
}

// holdSignals blocks tid's asynchronous signals for one hardware step of
// the instruction in, or for a region run (in zero), and returns what
// restores its mask. Under a signal
// storm a step that lets a signal in never completes: each attempt ends in
// the signal (gdb, stepping over a breakpoint, asks to see every signal
// and goes round a step-resume breakpoint; a handler run natively is
// itself interrupted), and the next signal is there before the retry. A
// signal that arrives during the one instruction instead stays pending in
// the kernel and is delivered at the thread's next resumption: once, in
// order, one instruction later, and a signal the client stops on still
// stops. A system call is stepped with the mask left alone: it may change
// the mask itself, and a blocking call must still be interrupted. Targets
// that cannot set masks (remote stubs) step as before.
func (e *Engine) holdSignals(tid int, in x86.Insn) func() {
	if e.threadCtl == nil {
		return func() {}
	}
	if p := e.pace[tid]; p != nil && p.phase == paceHeld {
		// The pacer holds them already, until a system call: a system
		// call stepped gets the thread's own mask back first.
		if in.Kind == x86.FlowSyscall {
			e.unhold(tid, p)
		}
		return func() {}
	}
	if in.Kind == x86.FlowSyscall {
		return func() {}
	}
	old, err := e.threadCtl.SignalMask(tid)
	if err != nil || old|asyncMask == old {
		return func() {}
	}
	if err := e.threadCtl.SetSignalMask(tid, old|asyncMask); err != nil {
		return func() {}
	}
	return func() {
		if !e.exited {
			e.threadCtl.SetSignalMask(tid, old)
		}
	}
}
