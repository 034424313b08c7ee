package stepper

import (
	"errors"
	"fmt"
	"time"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"
)

// Others says what the threads other than the stepped one do meanwhile.
type Others uint8

const (
	// OthersStay keeps them stopped (scheduler locking).
	OthersStay Others = iota
	// OthersRun lets them run (gdb's default all-stop behaviour).
	OthersRun
)

func (o Others) action() target.Action {
	if o == OthersRun {
		return target.Action{Kind: target.Continue}
	}
	return target.Action{Kind: target.Stay}
}

// exitSet is the set of addresses a run waits for.
type exitSet []uint64

func (s exitSet) has(a uint64) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func (s *exitSet) add(a uint64) {
	if a != 0 && !s.has(a) {
		*s = append(*s, a)
	}
}

// runResult is how runToExits ended.
type runResult struct {
	stop   *Stop  // a reportable stop other than reaching an exit
	at     uint64 // exit reached (stop == nil)
	budget bool   // the budget ran out
}

// runLimit bounds a run: it is interrupted after d (0: never). A solo run
// (the other threads kept stopped) is extended, d at a time up to
// soloMax, while its thread is not asleep in the kernel: only a sleeping
// thread can be waiting for another, and on a loaded machine a run that
// merely waits for a CPU would otherwise pay for resuming and stopping
// every parked thread.
type runLimit struct {
	d    time.Duration
	solo bool
}

// soloMax bounds a solo run's extensions: a thread spinning on another
// thread's progress in user space gets the others after this.
const soloMax = 50 * time.Millisecond

// runToExits is the one primitive: put temporary breakpoints on exits,
// continue tid (others as given) and wait until tid reaches one of them.
// Breakpoints at exits are never placed inside a critical section.
func (e *Engine) runToExits(tid int, sig int, exits exitSet, others Others, limit runLimit, inRegion bool) (runResult, error) {
	if others == OthersRun && limit.d == 0 && e.opts.SoloBudget > 0 && len(e.t.Threads()) > 1 {
		// Most runs (a line, a call) end within microseconds: the other
		// threads stay stopped for a short budget rather than each being
		// resumed and stopped again, a cost that grows with every parked
		// thread. A run still going then (it waits for another thread)
		// goes on with them running.
		res, err := e.runToExits(tid, sig, exits, OthersStay, runLimit{d: e.opts.SoloBudget, solo: true}, inRegion)
		if err != nil || !res.budget {
			return res, err
		}
		sig = 0
	}
	var inserted []uint64
	defer func() {
		for _, a := range inserted {
			e.t.RemoveBreakpoint(a)
		}
	}()
	from := uint64(0)
	if regs, err := e.t.Regs(tid); err == nil {
		from = regs.Rip
	}
	for _, a := range exits {
		// Never inside a section (but for an inspected thread, which does
		// not abort); never where the thread resumes from, or it would trap
		// before moving (a retry after an abort starts at the abort exit).
		if r := e.insideCS(a); (r != nil && e.inspecting[tid] == nil) || a == from {
			continue
		}
		if err := e.t.InsertBreakpoint(a); err != nil {
			continue // unmapped exit: it cannot be reached either
		}
		inserted = append(inserted, a)
	}
	var expired bool
	if limit.d > 0 {
		stop := e.limitRun(tid, limit)
		defer stop()
	}
	for {
		if others == OthersRun {
			e.ran(0)
		} else {
			e.ran(tid)
		}
		if err := e.resume(map[int]target.Action{tid: {Kind: target.Continue, Sig: sig}}, others.action()); err != nil {
			return runResult{}, err
		}
		sig = 0
		ev, err := e.wait()
		if err != nil {
			return runResult{}, err
		}
		if st := e.terminal(ev); st != nil {
			return runResult{stop: st}, nil
		}
		if ev.Kind != target.EventStop {
			continue
		}
		if others == OthersRun {
			e.countCaught(ev.Tid)
		}
		if ev.Async && e.budgetFired && limit.d > 0 && !expired {
			// Our own budget interrupt.
			expired = true
			return runResult{budget: true, stop: &Stop{Kind: StopInterrupt, Tid: ev.Tid}}, nil
		}
		if ev.Trap == target.TrapBreakpoint {
			internal := e.internalBreakpoint(ev.Addr)
			user := e.byAddr[ev.Addr]
			if ev.Tid == tid && exits.has(ev.Addr) {
				if len(user) > 0 && !inRegion {
					// Both an exit and a user breakpoint: the user's stop.
					return runResult{stop: e.breakpointStop(ev)}, nil
				}
				return runResult{at: ev.Addr}, nil
			}
			if len(user) > 0 {
				return runResult{stop: e.breakpointStop(ev)}, nil
			}
			if internal {
				e.refreshLinkMap()
				if e.opts.ReportLibraries {
					return runResult{stop: &Stop{Kind: StopLibrary, Tid: ev.Tid, PC: ev.Addr}}, nil
				}
			}
			// Another thread's temporary breakpoint or our internal one:
			// step that thread past it and go on.
			if st, err := e.stepOverOwn(ev.Tid); err != nil || st != nil {
				return runResult{stop: st}, err
			}
			continue
		}
		if e.silent(ev) {
			e.sawSignal(ev.Tid, !e.policy.NoPass[ev.Sig])
			if ev.Tid == tid && inRegion {
				e.stats.SignalsInRuns++
			}
			if e.policy.NoPass[ev.Sig] {
				continue
			}
			// Pass it on resume: the kernel aborts the section if inside.
			if ev.Tid == tid {
				sig = ev.Sig
			} else if st, err := e.deliverTo(ev.Tid, ev.Sig); err != nil || st != nil {
				return runResult{stop: st}, err
			}
			continue
		}
		return runResult{stop: e.eventStop(ev)}, nil
	}
}

// limitRun interrupts tid's run when its limit is reached, and returns
// what ends the watch when the run ends first.
func (e *Engine) limitRun(tid int, limit runLimit) (stop func()) {
	gen := e.budgetGen.Add(1)
	done := make(chan struct{})
	deadline := time.Now().Add(soloMax)
	go func() {
		t := time.NewTimer(limit.d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if limit.solo && e.threadCtl != nil && time.Now().Before(deadline) {
				if asleep, err := e.threadCtl.Asleep(tid); err == nil && !asleep {
					t.Reset(limit.d)
					continue
				}
			}
			if e.budgetGen.Load() == gen {
				e.budgetDue.Store(true)
				e.interrupt(tid)
			}
			return
		}
	}()
	return func() {
		close(done)
		e.budgetGen.Add(1)
		e.budgetDue.Store(false)
	}
}

// deliverTo hands a pending signal to a thread other than the one being
// run, by resuming it alone with the signal until it is back in user code.
// Delivery happens in the resume itself; stepping once is enough for the
// handler frame to be set up. A signal the program ignores lets the step
// execute the instruction itself, which can fork, exec or end the thread
// or process: that event is returned as the run's stop (see stepOverOwn).
func (e *Engine) deliverTo(tid, sig int) (*Stop, error) {
	defer e.t.ForgetStep(tid)
	if err := e.resume(map[int]target.Action{tid: {Kind: target.Step, Sig: sig}}, target.Action{Kind: target.Stay}); err != nil {
		return nil, fmt.Errorf("delivering signal %d to thread %d: %w", sig, tid, err)
	}
	ev, err := e.wait()
	if err != nil {
		return nil, fmt.Errorf("delivering signal %d to thread %d: %w", sig, tid, err)
	}
	if st := e.terminal(ev); st != nil {
		return e.finish(st), nil
	}
	return nil, nil
}

func (e *Engine) internalBreakpoint(addr uint64) bool { return addr != 0 && addr == e.dlBreak }

// terminal converts process-ending events into stops.
func (e *Engine) terminal(ev target.Event) *Stop {
	switch ev.Kind {
	case target.EventExited:
		e.exited = true
		return &Stop{Kind: StopExited, Tid: ev.Tid, Code: ev.Code}
	case target.EventSignaled:
		e.exited = true
		return &Stop{Kind: StopKilled, Tid: ev.Tid, Sig: ev.Sig}
	case target.EventThreadExited:
		delete(e.rseq, ev.Tid)
		delete(e.pace, ev.Tid)
		// Its id may come back as a new thread's, whose name must not
		// be taken for a cached one.
		delete(e.threadGen, ev.Tid)
		e.ran(0)
		delete(e.stopWanted, ev.Tid)
		return &Stop{Kind: StopThreadExited, Tid: ev.Tid}
	case target.EventExec:
		e.objs = map[string]*regions.Object{}
		e.order = nil
		e.idx = regions.NewIndex()
		e.bps = map[int]*Breakpoint{}
		e.byAddr = map[uint64][]*Breakpoint{}
		clear(e.insns)
		clear(e.rseq)
		clear(e.pace)
		e.disp = newDisplacer(e.t) // its mappings went with the old image
		e.ran(0)                   // a new program, and its threads' new names
		e.dlBreak = 0
		e.declared = nil
		e.load()
		return &Stop{Kind: StopExec, Tid: ev.Tid}
	case target.EventFork:
		// Ends any resumption: the child waits, stopped, for the front
		// end to take it (session.Fork) or let it go.
		return &Stop{Kind: StopFork, Tid: ev.Tid, Sig: ev.Sig, Child: ev.Child, Vfork: ev.Vfork}
	case target.EventVforkDone:
		// Ends any resumption too: the client inserts again what it
		// kept out of the memory the child shared.
		return &Stop{Kind: StopVforkDone, Tid: ev.Tid, Sig: ev.Sig}
	}
	return nil
}

func (e *Engine) breakpointStop(ev target.Event) *Stop {
	st := &Stop{Kind: StopBreakpoint, Tid: ev.Tid, PC: ev.Addr, Sig: int(unix.SIGTRAP)}
	if list := e.byAddr[ev.Addr]; len(list) > 0 {
		st.Breakpoint = list[0]
		for _, b := range list {
			b.Hits++
		}
	}
	return st
}

func (e *Engine) eventStop(ev target.Event) *Stop {
	st := &Stop{Tid: ev.Tid, Sig: ev.Sig}
	switch {
	case ev.Async:
		st.Kind = StopInterrupt
	case ev.Trap == target.TrapBreakpoint:
		return e.breakpointStop(ev)
	case ev.Trap == target.TrapWatch:
		st.Kind, st.WatchAddr = StopWatch, ev.Addr
	case ev.Trap == target.TrapStep:
		st.Kind = StopStep
	default:
		st.Kind = StopSignal
		e.signalSeen[ev.Tid] = time.Now()
	}
	return st
}

// finish fills the PC and the inside-region note of a stop.
func (e *Engine) finish(st *Stop) *Stop {
	if st.Kind == StopExited || st.Kind == StopKilled || st.Kind == StopThreadExited || e.exited {
		return st
	}
	if r, _, err := e.quickRegs(st.Tid); err == nil {
		st.PC = r.Rip
		st.Inside = e.insideCS(r.Rip)
		st.Inspect = e.inspectionOf(st.Tid, r.Rip)
	}
	if st.Note == "" {
		st.Note, e.note = e.note, ""
	}
	return st
}

// stepOverOwn moves a thread off an int3 of ours: out of memory, one
// hardware step with every other thread stopped, back in. The instruction
// there is never inside a critical section (we never put one there except
// for user breakpoints, which go through the region pass instead).
//
// The instruction can be a system call that forks (a fork child kept,
// target.ForkFollower), execs or ends the thread or process: the step then
// ends with that event, which is returned as a stop for the caller to end
// its run with, as any resumption does (terminal). A fork stop leaves the
// thread past the instruction (its system call returns on the next
// resumption), so the int3 goes back behind it.
func (e *Engine) stepOverOwn(tid int) (*Stop, error) {
	// In non-stop mode every running thread is held for the step, as
	// gdbserver does around a step-over: one running past a lifted int3
	// would miss it, and the step of a thread driven further out (its
	// step can complete meanwhile) must stay that thread's event, kept
	// by the pause, not be taken here as another thread's stop.
	defer e.pauseOthers()()
	defer e.drive(tid)()
	r, err := e.t.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("stepping thread %d off a breakpoint: %w", tid, err)
	}
	restore, _, err := e.lift(r.Rip)
	defer restore()
	if err != nil {
		return nil, err
	}
	// A signal taking the place of the step would be lost here.
	if in, err := e.decode(r.Rip); err == nil {
		if e.stormy(tid) {
			defer e.holdSignals(tid, in)()
		}
		if in.Kind == x86.FlowSyscall {
			e.ran(tid)
		}
	} else {
		e.ran(tid)
	}
	// An event that ends the step early leaves no completion behind to
	// be taken later for a step nobody asked for.
	defer e.t.ForgetStep(tid)
	if err := e.resume(map[int]target.Action{tid: {Kind: target.Step}}, target.Action{Kind: target.Stay}); err != nil {
		return nil, fmt.Errorf("stepping thread %d off a breakpoint: %w", tid, err)
	}
	ev, err := e.wait()
	if err != nil {
		return nil, fmt.Errorf("stepping thread %d off a breakpoint: %w", tid, err)
	}
	e.stats.SingleSteps++
	if st := e.terminal(ev); st != nil {
		return e.finish(st), nil
	}
	return nil, nil
}

// lift takes every int3 at addr out of memory (a user breakpoint and one
// of ours can share an address) so a thread can execute the instruction
// there, and returns how to put them back; nothing is put back into a
// process that is gone. Stepping off a breakpoint, running a region from
// one and passing a section with breakpoints inside all do this.
func (e *Engine) lift(addr uint64) (restore func(), lifted bool, err error) {
	n := 0
	// In non-stop mode the running threads are held while the int3 is
	// out, or they could run past it (design.md, "Non-stop mode").
	unpause := func() {}
	if e.nonStop && e.t.BreakpointAt(addr) {
		unpause = e.pauseOthers()
	}
	restore = func() {
		for i := 0; i < n && !e.exited; i++ {
			e.t.InsertBreakpoint(addr)
		}
		unpause()
	}
	for e.t.BreakpointAt(addr) {
		if err := e.t.RemoveBreakpoint(addr); err != nil {
			return restore, n > 0, fmt.Errorf("lifting the breakpoint at %#x: %w", addr, err)
		}
		n++
	}
	return restore, n > 0, nil
}

// entering reports the region control would enter if the instruction at pc
// executed now, and that instruction's successors. It also discovers a
// section with no table when the instruction stores its descriptor into
// the thread's rseq_cs.
func (e *Engine) entering(tid int, regs *target.Regs) (*regions.Region, x86.Insn, [2]uint64, int, error) {
	var succ [2]uint64
	in, err := e.decode(regs.Rip)
	if err != nil {
		return nil, in, succ, 0, err
	}
	if in.Inst.Op == 0 {
		return nil, in, succ, 0, nil
	}
	list := x86.Successors(in, regs, e.read)
	n := copy(succ[:], list)
	if in.Kind == x86.FlowSeq {
		e.discover(tid, in, regs)
	}
	cur := e.idx.Lookup(regs.Rip)
	for _, s := range succ[:n] {
		if r := e.idx.Lookup(s); r != nil && r != cur {
			if r.Kind == regions.KindVDSO && e.opts.NoVDSO {
				continue
			}
			// Entering a section at its start or by a jump from outside;
			// a vDSO function only by its entry (calls and tail calls).
			if r.Kind == regions.KindVDSO && s != r.Start {
				continue
			}
			return r, in, succ, n, nil
		}
	}
	return nil, in, succ, n, nil
}

// discover handles a store into the thread's rseq_cs of a descriptor that
// no table listed.
func (e *Engine) discover(tid int, in x86.Insn, regs *target.Regs) {
	addr, value, ok := x86.StoreTo(in, regs)
	if !ok || value == 0 {
		return
	}
	area := e.RseqArea(tid)
	if !area.Known || addr != area.Addr+8 {
		return
	}
	var b [32]byte
	if n, _ := e.t.ReadMemory(value, b[:]); n != 32 {
		return
	}
	d, err := regions.ParseDescriptor(b[:])
	if err != nil {
		return
	}
	if r := e.idx.Lookup(d.StartIP); r != nil {
		return
	}
	r, err := regions.RegionFromDescriptor(d, value, e.read, "runtime")
	if err != nil {
		e.warn(fmt.Sprintf("descriptor at %#x stored by %#x: %v", value, in.Addr, err))
		return
	}
	for _, w := range e.idx.Add("runtime", r) {
		e.warn(w)
	}
	e.stats.Discovered++
}

// regionExits are the places a run through r waits for.
func (e *Engine) regionExits(r *regions.Region, regs *target.Regs, in x86.Insn) exitSet {
	var exits exitSet
	switch r.Kind {
	case regions.KindVDSO:
		// Entered by a call: its return address; by a jump: the address at
		// the top of the stack.
		if in.Kind == x86.FlowCall || in.Kind == x86.FlowIndirectCall {
			exits.add(in.Next())
		} else if v, ok := readU64(e.read, regs.Rsp); ok {
			exits.add(v)
		}
	default:
		// Exits already hold commit and abort, and never an address inside
		// the section (a broken abort_ip inside is left out).
		for _, x := range r.Exits {
			exits.add(x.Addr)
		}
	}
	return exits
}

// entryExits are the exits of a run that enters r by the instruction in:
// r's own, and the instruction's successors outside r (a conditional
// branch into r may as well fall through).
func (e *Engine) entryExits(r *regions.Region, regs *target.Regs, in x86.Insn, succ []uint64) exitSet {
	exits := e.regionExits(r, regs, in)
	for _, s := range succ {
		if !r.Contains(s) {
			exits.add(s)
		}
	}
	return exits
}

func readU64(read target.MemReader, addr uint64) (uint64, bool) {
	var b [8]byte
	if n, err := read(addr, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return le64(b[:]), true
}

func (e *Engine) outcome(r *regions.Region, at uint64) Outcome {
	switch {
	case r.Kind == regions.KindVDSO:
		return Returned
	case at == r.End:
		return Committed
	case at == r.Abort:
		return Aborted
	}
	if k, ok := r.ExitKindAt(at); ok && k == regions.ExitPoint {
		return ExitedAtPoint
	}
	return ExitedBranch
}

func (e *Engine) count(o Outcome) {
	switch o {
	case Committed:
		e.stats.Commits++
	case Aborted:
		e.stats.Aborts++
	case ExitedAtPoint, ExitedBranch:
		e.stats.ExitPoints++
	case Interrupted:
		e.stats.Interrupted++
	}
}

// stepInstruction is contract point 1 (docs/design.md): one instruction, or a whole region
// run natively when the instruction enters one. From inside a critical
// section it is the region pass (point 4).
func (e *Engine) stepInstruction(tid int, sig int, others Others) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	// Most instructions need only the PC (and the stack pointer for ret)
	// to tell where they lead: a remote target spares reading the rest.
	regs, full, err := e.quickRegs(tid)
	if err != nil {
		return nil, err
	}
	inside := e.insideCS(regs.Rip)
	if !full {
		in, derr := e.decode(regs.Rip)
		if inside != nil || derr != nil || needsFullRegs(in) {
			if regs, err = e.t.Regs(tid); err != nil {
				return nil, err
			}
		}
	}
	if ins := e.inspecting[tid]; e.inspect && (inside != nil || ins != nil) {
		r := inside
		if r == nil {
			r = ins.region
		}
		// Inspection reads the stack pointer and rewrites memory: the full
		// registers (cached by a native target) are wanted.
		if regs, err = e.t.Regs(tid); err != nil {
			return nil, err
		}
		st, note, err := e.inspectStep(tid, sig, r, &regs)
		if err != nil || st != nil {
			return st, err
		}
		e.note = note
	}
	if r := inside; r != nil {
		st, err := e.pass(tid, sig, r, &regs)
		if err != nil || st != nil {
			return e.finishErr(st, err)
		}
		return e.finish(&Stop{Kind: StopStep, Tid: tid, Crossed: e.lastCrossed()}), nil
	}
	r, in, succ, n, err := e.entering(tid, &regs)
	if err != nil {
		return nil, err
	}
	if r != nil && e.inspect {
		// Entered one instruction at a time: a section is inspected from
		// its first stop inside; a vDSO function or declared range is
		// simply single-stepped, and its retry loop can repeat.
		if r.Kind != regions.KindCriticalSection {
			e.note = fmt.Sprintf("inspecting %s one instruction at a time: its retry loop can repeat while it is stepped", r.Name)
		}
		return e.hardwareStep(tid, sig, regs.Rip, others)
	}
	if r != nil {
		return e.regionRun(tid, sig, r, e.entryExits(r, &regs, in, succ[:n]), false)
	}
	if in.Kind == x86.FlowSyscall {
		e.forgetUnregistered(tid)
	}
	return e.hardwareStep(tid, sig, regs.Rip, others)
}

func (e *Engine) finishErr(st *Stop, err error) (*Stop, error) {
	if err != nil {
		return nil, err
	}
	return e.finish(st), nil
}

// hardwareStep is a plain single-step, lifting an int3 of ours at pc. A
// signal the policy passes silently is delivered and its handler run to its
// return before the step is retried, as gdb does, so a signal storm does not
// turn one step into a walk through the handler.
func (e *Engine) hardwareStep(tid int, sig int, pc uint64, others Others) (*Stop, error) {
	if e.insideCS(pc) != nil && e.inspecting[tid] == nil {
		e.stats.StepsInside++
	}
	restore, lifted, err := e.lift(pc)
	defer restore()
	if err != nil {
		return nil, err
	}
	if lifted {
		// With the int3 lifted, other threads must not run past it.
		others = OthersStay
	}
	// Registers are cached by the target while the thread is stopped.
	// The handler path needs the PC and stack pointer only.
	regs0, _, err := e.quickRegs(tid)
	if err != nil {
		return nil, err
	}
	syscall := true
	if in, err := e.decode(pc); err == nil {
		syscall = in.Kind == x86.FlowSyscall
		if sig == 0 && e.stormy(tid) {
			defer e.holdSignals(tid, in)()
		}
		if in.Kind != x86.FlowSyscall {
			// One instruction that is not a system call completes without
			// any other thread; letting them run for it would cost a
			// resume and a stop of every thread (gdb's stepi asks for
			// that: vCont;s:TID;c). A system call may wait for another
			// thread, so they run for it.
			others = OthersStay
		}
	}
	if others == OthersRun {
		e.ran(0)
	} else if syscall {
		e.ran(tid)
	}
	e.pinForSteps(tid)
	// Whatever ends the step other than its own completion (another
	// thread's stop or exit, a signal) abandons it: a completion the
	// target kept must not surface at the next resumption as a SIGTRAP
	// nobody asked for. After a completion there is nothing to forget.
	defer e.t.ForgetStep(tid)
	actions := map[int]target.Action{tid: {Kind: target.Step, Sig: sig}}
	for {
		if err := e.resume(actions, others.action()); err != nil {
			return nil, err
		}
		ev, err := e.wait()
		if err != nil {
			return nil, err
		}
		e.stats.SingleSteps++
		if st := e.terminal(ev); st != nil {
			// A fork stop of the stepped thread comes before its system
			// call returns: the instruction is behind it (PC past it),
			// and the step's own trap follows when it is resumed.
			return e.finish(st), nil
		}
		actions = map[int]target.Action{tid: {Kind: target.Step}}
		if e.silent(ev) {
			e.sawSignal(ev.Tid, false)
			pass := ev.Sig
			if e.policy.NoPass[ev.Sig] {
				pass = 0
			}
			if ev.Tid != tid {
				actions[ev.Tid] = target.Action{Kind: target.Continue, Sig: pass}
				continue
			}
			if pass == 0 {
				continue
			}
			st, err := e.runHandler(tid, pass, regs0)
			if err != nil || st != nil {
				return st, err
			}
			if r, err := e.t.Regs(tid); err == nil && r.Rip != pc {
				// The signal was ignored and the step executed.
				return e.finish(&Stop{Kind: StopStep, Tid: tid}), nil
			}
			continue
		}
		st := e.eventStop(ev)
		if ev.Kind == target.EventStop && ev.Tid == tid && ev.Trap == target.TrapStep {
			st.Kind = StopStep
			if in, err := e.decode(pc); err == nil && in.Kind == x86.FlowTrap && in.Inst.Op == x86asm.INT {
				// The program's own int3: its SIGTRAP, not our step.
				st.Kind = StopSignal
			}
		}
		if ev.Trap == target.TrapBreakpoint && e.internalBreakpoint(ev.Addr) && len(e.byAddr[ev.Addr]) == 0 && ev.Tid != tid {
			// Another thread hit the dynamic linker breakpoint meanwhile:
			// the step goes on (a completed one is reported at once).
			e.refreshLinkMap()
			st, err := e.stepOverOwn(ev.Tid)
			if err != nil {
				return nil, err
			}
			if st != nil && st.Kind != StopThreadExited {
				// Its instruction forked, exec'd or ended the process;
				// that thread ending leaves the step to go on.
				return st, nil
			}
			continue
		}
		if e.internalBreakpoint(pc) && ev.Tid == tid {
			e.refreshLinkMap()
		}
		return e.finish(st), nil
	}
}

// silent reports a signal stop the policy does not report: the run goes
// on, passing the signal unless the policy withholds it. Every resume loop
// asks this one question.
func (e *Engine) silent(ev target.Event) bool {
	return ev.Kind == target.EventStop && !ev.Async && ev.Trap == target.TrapNone && ev.Sig > 0 && ev.Sig < len(e.policy.NoStop) &&
		ev.Sig != int(unix.SIGSTOP) && ev.Sig != int(unix.SIGTRAP) && e.policy.NoStop[ev.Sig]
}

// runHandler delivers sig to tid (stopped before the instruction at
// regs0.Rip) and runs the handler until it returns there.
func (e *Engine) runHandler(tid, sig int, regs0 target.Regs) (*Stop, error) {
	if err := e.resume(map[int]target.Action{tid: {Kind: target.Step, Sig: sig}}, target.Action{Kind: target.Stay}); err != nil {
		return nil, err
	}
	ev, err := e.wait()
	if err != nil {
		return nil, err
	}
	if st := e.terminal(ev); st != nil {
		// The signal was ignored and the instruction stepped forked
		// (or exec'd, or ended): the step ends with that.
		return e.finish(st), nil
	}
	r, err := e.t.Regs(tid)
	if err != nil {
		return nil, err
	}
	// A handler frame sits well below the red zone; otherwise the signal
	// was ignored and the instruction itself was stepped.
	if r.Rsp+128 >= regs0.Rsp {
		return nil, nil
	}
	st, err := e.runToReturn(tid, 0, regs0.Rip, regs0.Rsp, OthersStay)
	if st != nil && st.Kind == StopBreakpoint && st.Tid == tid && st.PC == regs0.Rip {
		// Back where the step started: a user breakpoint there is the one
		// being stepped off, not a new hit. Reporting it would make every
		// step from a breakpoint under a signal storm end where it began.
		delete(e.reported, tid)
		return nil, nil
	}
	return st, err
}

// regionRun runs tid natively through region r until one of exits.
func (e *Engine) regionRun(tid, sig int, r *regions.Region, exits exitSet, untilCommit bool) (*Stop, error) {
	e.stats.RegionRuns++
	// A signal would abort the section (and, in a storm, every retry):
	// it waits for the run's end, where the kernel would have delivered
	// it after the abort, and delivery after the commit is equivalent.
	// A signal the run was asked to deliver goes in first.
	if sig == 0 {
		defer e.holdSignals(tid, x86.Insn{})()
	}
	// An int3 of ours where the run starts would trap at once; the thread
	// runs alone, so lifting it for the run hides it from nobody else.
	if regs, err := e.t.Regs(tid); err == nil && !exits.has(regs.Rip) {
		restore, _, err := e.lift(regs.Rip)
		defer restore()
		if err != nil {
			return nil, err
		}
	}
	budget := time.Duration(0)
	if len(r.Indirect) > 0 || untilCommit {
		budget = e.opts.RunBudget
	}
	crossing := Crossing{Region: r}
	deadline := time.Now().Add(budget)
	for {
		left := time.Duration(0)
		if budget > 0 {
			if left = time.Until(deadline); left <= time.Millisecond {
				left = time.Millisecond
			}
		}
		res, err := e.runToExits(tid, sig, exits, OthersStay, runLimit{d: left}, true)
		sig = 0
		if err != nil {
			return nil, err
		}
		if res.stop != nil {
			if res.budget {
				crossing.Outcome = Interrupted
				e.count(Interrupted)
				return e.finish(&Stop{Kind: StopStep, Tid: tid, Crossed: []Crossing{crossing}}), nil
			}
			st := res.stop
			if st.Kind != StopExited && st.Kind != StopKilled {
				crossing.Outcome = Interrupted
				st.Crossed = []Crossing{crossing}
			}
			return e.finish(st), nil
		}
		o := e.outcome(r, res.at)
		if !exits.has(res.at) || (res.at != r.Abort && o == Aborted) {
			o = ExitedBranch
		}
		e.count(o)
		crossing.Outcome, crossing.At = o, res.at
		if o == Aborted && untilCommit {
			crossing.Aborts++
			continue
		}
		return e.finish(&Stop{Kind: StopStep, Tid: tid, Crossed: []Crossing{crossing}}), nil
	}
}

// lastCrossed carries the crossing of the most recent pass.
func (e *Engine) lastCrossed() []Crossing { c := e.passCrossing; e.passCrossing = nil; return c }

// pass is contract point 4: tid stopped inside critical section r. Rewind
// to the descriptor store when nothing of r has run; lift r's breakpoints;
// run alone until r commits or leaves by a non-abort exit (aborts retry),
// within the budget; re-arm. It returns a stop only when something
// reportable ended the pass early.
func (e *Engine) pass(tid, sig int, r *regions.Region, regs *target.Regs) (*Stop, error) {
	if e.inspect {
		st, note, err := e.inspectRun(tid, sig, r, regs)
		if note == "" {
			return st, err
		}
		e.note = note
	}
	if regs.Rip == r.Start {
		if store, ok := e.storeBefore(tid, r, regs); ok {
			regs.Rip = store
			if err := e.t.SetRegs(tid, *regs); err != nil {
				return nil, err
			}
		}
	}
	for a := range e.byAddr {
		if r.Contains(a) {
			restore, _, err := e.lift(a)
			defer restore()
			if err != nil {
				return nil, err
			}
		}
	}
	exits := e.regionExits(r, regs, x86.Insn{})
	st, err := e.regionRun(tid, sig, r, exits, true)
	if err != nil {
		return nil, err
	}
	if st.Kind == StopStep {
		e.passCrossing = st.Crossed
		return nil, nil
	}
	// The stop carries the crossing itself; kept here too, it would be
	// reported twice, or by a later pass that did not make it.
	e.passCrossing = nil
	return st, nil
}

// storeBefore finds the instruction right before r's start that stores r's
// descriptor into the thread's rseq_cs (the ABI's canonical shape).
func (e *Engine) storeBefore(tid int, r *regions.Region, regs *target.Regs) (uint64, bool) {
	area := e.RseqArea(tid)
	var code [16]byte
	if n, _ := e.t.ReadMemory(r.Start-16, code[:]); n != 16 {
		return 0, false
	}
	for k := 2; k <= 15; k++ {
		in, err := x86.Decode(code[16-k:], r.Start-uint64(k))
		if err != nil || in.Len != k {
			continue
		}
		addr, value, ok := x86.StoreTo(in, regs)
		if !ok {
			continue
		}
		if area.Known && addr != area.Addr+8 {
			continue
		}
		if r.Descriptor != 0 && value != r.Descriptor {
			continue
		}
		return in.Addr, true
	}
	return 0, false
}

// resumeAll resumes every thread (contract points 4 and 5): threads stopped
// inside a critical section or on a breakpoint they reported are first
// moved past it, then all run until something is reportable. sigs holds
// the signal each thread is to receive.
func (e *Engine) resumeAll(tid int, sigs map[int]int) (st *Stop, err error) {
	defer func() { e.settleDisplaced(st) }()
	if e.exited {
		return nil, target.ErrExited
	}
	// A thread pinned for its steps runs free again.
	e.unpinAll()
	var crossed []Crossing
	movers := []int{tid}
	for th := range e.reported {
		if th != tid {
			movers = append(movers, th)
		}
	}
	for _, th := range movers {
		if e.displaceOff(th, sigs[th]) {
			continue
		}
		st, err := e.moveOff(th, sigs[th])
		if err != nil {
			return nil, err
		}
		if st != nil {
			if st.Kind != StopStep {
				return st, nil
			}
			delete(sigs, th)
			crossed = append(crossed, st.Crossed...)
		}
	}
	clear(e.reported)
	for th, a := range e.rseq {
		if !a.Known {
			delete(e.rseq, th)
		}
	}
	for {
		actions := map[int]target.Action{}
		for th, s := range sigs {
			actions[th] = target.Action{Kind: target.Continue, Sig: s}
		}
		e.ran(0)
		if err := e.resume(actions, target.Action{Kind: target.Continue}); err != nil {
			return nil, err
		}
		sigs = nil
		ev, err := e.wait()
		if err != nil {
			return nil, err
		}
		if st := e.terminal(ev); st != nil {
			if st.Kind == StopThreadExited {
				continue
			}
			st.Crossed = crossed
			return st, nil
		}
		if ev.Kind != target.EventStop {
			continue
		}
		e.countCaught(ev.Tid)
		if ev.Trap == target.TrapBreakpoint && len(e.byAddr[ev.Addr]) == 0 {
			if e.internalBreakpoint(ev.Addr) {
				e.refreshLinkMap()
				if e.opts.ReportLibraries {
					e.reported[ev.Tid] = ev.Addr
					return e.finish(&Stop{Kind: StopLibrary, Tid: ev.Tid, PC: ev.Addr, Crossed: crossed}), nil
				}
			}
			st, err := e.stepOverOwn(ev.Tid)
			if err != nil {
				return nil, err
			}
			if st != nil && st.Kind != StopThreadExited {
				// Its instruction forked, exec'd or ended the process.
				st.Crossed = crossed
				return st, nil
			}
			continue
		}
		if e.silent(ev) {
			e.sawSignal(ev.Tid, !e.policy.NoPass[ev.Sig])
			if !e.policy.NoPass[ev.Sig] {
				sigs = map[int]int{ev.Tid: ev.Sig}
			}
			if _, onBreakpoint := e.leaveSlot(ev.Tid); onBreakpoint {
				// Stopped before its displaced instruction ran: stepped
				// over the int3 with its handler run first, as a signal
				// during any step off a breakpoint is.
				st, err := e.moveOff(ev.Tid, sigs[ev.Tid])
				if err != nil {
					return nil, err
				}
				if st != nil && st.Kind != StopStep {
					st.Crossed = crossed
					return st, nil
				}
				sigs = nil
			}
			continue
		}
		st := e.eventStop(ev)
		if st.Kind == StopBreakpoint {
			e.reported[ev.Tid] = ev.Addr
		}
		st.Crossed = crossed
		return e.finish(st), nil
	}
}

// moveOff gets a thread off an int3 of ours or out of a critical section
// before it runs with the others. It returns nil when nothing was needed.
func (e *Engine) moveOff(tid, sig int) (*Stop, error) {
	regs, err := e.t.Regs(tid)
	if err != nil {
		return nil, nil // the thread is gone
	}
	r := e.insideCS(regs.Rip)
	if ins := e.inspecting[tid]; r == nil && ins != nil && e.inspect {
		// In a function an inspected section called: it returns into the
		// section, which must not abort either.
		r = ins.region
	}
	if r != nil {
		st, err := e.pass(tid, sig, r, &regs)
		if err != nil || st != nil {
			return e.finishErr(st, err)
		}
		return &Stop{Kind: StopStep, Tid: tid, Crossed: e.lastCrossed()}, nil
	}
	if e.t.BreakpointAt(regs.Rip) {
		return e.stepInstruction(tid, sig, OthersStay)
	}
	return nil, nil
}

// rangeStep is contract point 2: step tid until its PC leaves [lo, hi) or
// something reportable happens, running natively between the places where
// control can leave the range. Critical sections inside run atomically and
// retry through aborts, so a line holding one ends on its commit path.
// stepOverCalls runs called functions to their return (DAP and headless
// `next`); without it a call's target is a place the range is left (gdb's
// vCont;r).
func (e *Engine) rangeStep(tid int, lo, hi uint64, sig int, others Others, stepOverCalls bool) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	var crossed []Crossing
	// fold takes in a step or region run made on the way: its crossings
	// join the range step's, and a stop that is not a step ends it.
	fold := func(st *Stop) *Stop {
		crossed = append(crossed, st.Crossed...)
		if st.Kind != StopStep {
			st.Crossed = crossed
			return st
		}
		return nil
	}
	first := true
	for {
		regs, err := e.t.Regs(tid)
		if err != nil {
			return nil, err
		}
		pc := regs.Rip
		if !first && (pc < lo || pc >= hi) {
			return e.finish(&Stop{Kind: StopStep, Tid: tid, Crossed: crossed}), nil
		}
		first = false
		if r := e.insideCS(pc); r != nil && e.inspect {
			st, done, err := e.inspectRangeStep(tid, sig, r, &regs, lo, hi, stepOverCalls)
			sig = 0
			if err != nil {
				return nil, err
			}
			if st != nil {
				st.Crossed = append(crossed, st.Crossed...)
				return st, nil
			}
			if done {
				continue
			}
		}
		if r := e.insideCS(pc); r != nil {
			st, err := e.pass(tid, sig, r, &regs)
			sig = 0
			if err != nil {
				return nil, err
			}
			crossed = append(crossed, e.lastCrossed()...)
			if st != nil {
				st.Crossed = append(crossed, st.Crossed...)
				return e.finish(st), nil
			}
			continue
		}
		r, in, succ, n, err := e.entering(tid, &regs)
		if err != nil {
			return nil, err
		}
		if r != nil {
			st, err := e.regionRun(tid, sig, r, e.entryExits(r, &regs, in, succ[:n]), r.Kind == regions.KindCriticalSection)
			sig = 0
			if err != nil {
				return nil, err
			}
			if end := fold(st); end != nil {
				return end, nil
			}
			continue
		}
		if stepOverCalls && (in.Kind == x86.FlowCall || in.Kind == x86.FlowIndirectCall) {
			ret, rspAtCall := in.Next(), regs.Rsp
			if e.t.BreakpointAt(pc) {
				// A continue would execute the int3 at once and report
				// the breakpoint the step started on: step the call
				// itself, which lifts it, then run the callee.
				st, err := e.stepInstruction(tid, sig, OthersStay)
				sig = 0
				if err != nil {
					return nil, err
				}
				if end := fold(st); end != nil {
					return end, nil
				}
			}
			st, err := e.runToReturn(tid, sig, ret, rspAtCall, others)
			sig = 0
			if err != nil {
				return nil, err
			}
			if st != nil {
				st.Crossed = append(crossed, st.Crossed...)
				return e.finish(st), nil
			}
			continue
		}
		flow := e.rangeFlow(lo, hi)
		if flow == nil || flow.stopAt.has(pc) || e.t.BreakpointAt(pc) {
			st, err := e.hardwareStep(tid, sig, pc, others)
			sig = 0
			if err != nil {
				return nil, err
			}
			if st.Kind != StopStep {
				st.Crossed = crossed
				return st, nil
			}
			continue
		}
		res, err := e.runToExits(tid, sig, flow.exits, others, runLimit{}, false)
		sig = 0
		if err != nil {
			return nil, err
		}
		if res.stop != nil {
			if res.stop.Kind == StopBreakpoint {
				e.reported[res.stop.Tid] = res.stop.PC
			}
			res.stop.Crossed = crossed
			return e.finish(res.stop), nil
		}
	}
}

// runToReturn runs until the call at hand returns to ret with the stack
// back where it was (recursion hits the same address deeper first).
func (e *Engine) runToReturn(tid, sig int, ret, rspAtCall uint64, others Others) (*Stop, error) {
	for {
		res, err := e.runToExits(tid, sig, exitSet{ret}, others, runLimit{}, false)
		sig = 0
		if err != nil {
			return nil, err
		}
		if res.stop != nil {
			if res.stop.Kind == StopBreakpoint {
				e.reported[res.stop.Tid] = res.stop.PC
			}
			return res.stop, nil
		}
		regs, err := e.t.Regs(tid)
		if err != nil {
			return nil, err
		}
		if regs.Rsp >= rspAtCall {
			return nil, nil
		}
		if st, err := e.stepOverOwn(tid); err != nil || st != nil {
			return st, err
		}
	}
}

// stepOut runs tid until the current function returns to ret with the
// stack pointer at or above cfa (gdb's finish).
func (e *Engine) stepOut(tid int, ret, cfa uint64, others Others) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	if st, err := e.moveOff(tid, 0); err != nil || (st != nil && st.Kind != StopStep) {
		return st, err
	}
	st, err := e.runToReturn(tid, 0, ret, cfa, others)
	if err != nil || st != nil {
		return e.finishErr(st, err)
	}
	return e.finish(&Stop{Kind: StopStep, Tid: tid}), nil
}

// flow is a decoded step range: where a native run through it must stop.
type flow struct {
	exits  exitSet // where control leaves the range, plus stopAt
	stopAt exitSet // instructions inside that must be single-stepped
}

// rangeFlow decodes [lo, hi) once. Direct branch and call targets outside
// the range and the fall-through end are exits; indirect branches, calls,
// returns and instructions that enter a region get a breakpoint on
// themselves. nil means the range cannot be decoded: single-step it.
func (e *Engine) rangeFlow(lo, hi uint64) *flow {
	key := [2]uint64{lo, hi}
	if f, ok := e.flows[key]; ok {
		return f
	}
	if hi <= lo || hi-lo > 1<<16 {
		return nil
	}
	code := make([]byte, hi-lo+16)
	n, _ := e.t.ReadMemory(lo, code)
	if uint64(n) < hi-lo {
		return nil
	}
	f := &flow{}
	for pc := lo; pc < hi; {
		in, err := x86.Decode(code[pc-lo:n], pc)
		if err != nil || in.Len == 0 {
			return nil
		}
		switch in.Kind {
		case x86.FlowJump, x86.FlowCondJump:
			if in.Target < lo || in.Target >= hi || e.idx.Lookup(in.Target) != nil {
				f.stopAt.add(pc)
			}
		case x86.FlowCall, x86.FlowIndirectCall, x86.FlowIndirectJump, x86.FlowRet, x86.FlowTrap:
			f.stopAt.add(pc)
		}
		if r := e.idx.Lookup(in.Next()); r != nil && !r.Contains(pc) {
			f.stopAt.add(pc)
		} else if mayStoreDescriptor(in) {
			// A section no table lists is found when its descriptor is
			// stored: step that store so discovery sees it.
			f.stopAt.add(pc)
		}
		pc = in.Next()
		if pc >= hi {
			f.exits.add(pc)
		}
	}
	for _, a := range f.stopAt {
		if e.insideCS(a) == nil {
			f.exits.add(a)
		}
	}
	if e.flows == nil {
		e.flows = map[[2]uint64]*flow{}
	}
	e.flows[key] = f
	return f
}

// runTo runs until tid reaches addr (a temporary breakpoint), others as
// given.
func (e *Engine) runTo(tid int, addr uint64, others Others) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	if st, err := e.moveOff(tid, 0); err != nil || (st != nil && st.Kind != StopStep) {
		return st, err
	}
	st, err := e.runToReturn(tid, 0, addr, 0, others)
	if err != nil || st != nil {
		return e.finishErr(st, err)
	}
	return e.finish(&Stop{Kind: StopStep, Tid: tid}), nil
}

// mayStoreDescriptor recognises the shape of a store into rseq_cs: a
// 64-bit register store to 8(reg) or through %fs.
func mayStoreDescriptor(in x86.Insn) bool {
	if in.Inst.Op != x86asm.MOV || in.Inst.MemBytes != 8 {
		return false
	}
	m, ok := in.Inst.Args[0].(x86asm.Mem)
	if !ok {
		return false
	}
	_, isReg := in.Inst.Args[1].(x86asm.Reg)
	return isReg && (m.Disp == 8 || m.Segment == x86asm.FS)
}

// The public stepping calls: a process killed while stopped answers the
// next ptrace request with ESRCH; its death is then collected and reported
// as the stop it is.

// In non-stop mode each call drives its thread alone: the others run
// on whatever others says (they are not stopped or started by it).

// StepInstruction is contract point 1 (see stepInstruction).
func (e *Engine) StepInstruction(tid int, sig int, others Others) (*Stop, error) {
	e.begin()
	defer e.drive(tid)()
	return e.reapIfDead(e.stepInstruction(tid, sig, e.othersFor(others)))
}

// RangeStep is contract point 2 (see rangeStep).
func (e *Engine) RangeStep(tid int, lo, hi uint64, sig int, others Others, stepOverCalls bool) (*Stop, error) {
	e.begin()
	defer e.drive(tid)()
	return e.reapIfDead(e.rangeStep(tid, lo, hi, sig, e.othersFor(others), stepOverCalls))
}

// Continue resumes every thread (see resumeAll). In non-stop mode it is
// ContinueThread of tid (nil stop: it runs).
func (e *Engine) Continue(tid int, sigs map[int]int) (*Stop, error) {
	e.begin()
	if e.nonStop {
		return e.ContinueThread(tid, sigs[tid])
	}
	return e.reapIfDead(e.resumeAll(tid, sigs))
}

// StepOut runs to the return of the current function (see stepOut).
func (e *Engine) StepOut(tid int, ret, cfa uint64, others Others) (*Stop, error) {
	e.begin()
	defer e.drive(tid)()
	return e.reapIfDead(e.stepOut(tid, ret, cfa, e.othersFor(others)))
}

// RunTo runs tid to addr (see runTo).
func (e *Engine) RunTo(tid int, addr uint64, others Others) (*Stop, error) {
	e.begin()
	defer e.drive(tid)()
	return e.reapIfDead(e.runTo(tid, addr, e.othersFor(others)))
}

// othersFor is what the other threads are asked to do: in non-stop mode
// nothing, as they already do what their own client asked.
func (e *Engine) othersFor(o Others) Others {
	if e.nonStop {
		return OthersStay
	}
	return o
}

// begin starts a command: an interrupt the user asked for before it (as
// the previous one ended, when the target drops it) is not this one's.
// Front ends that interrupt repeat it until the run stops.
func (e *Engine) begin() { e.userInterrupt.Store(false) }

func (e *Engine) reapIfDead(st *Stop, err error) (*Stop, error) {
	// Whatever stops is reported: the program is seen with its own masks.
	e.paceRelease(true)
	if err == nil || !errors.Is(err, unix.ESRCH) || e.exited {
		return st, err
	}
	ev, werr := e.wait()
	if werr != nil {
		return nil, err
	}
	if dead := e.terminal(ev); dead != nil && (dead.Kind == StopKilled || dead.Kind == StopExited) {
		return dead, nil
	}
	return nil, err
}

// quickRegs is target.QuickRegs of the engine's target.
func (e *Engine) quickRegs(tid int) (target.Regs, bool, error) { return target.QuickRegs(e.t, tid) }

// needsFullRegs reports whether deciding where in leads takes more than
// the PC and stack pointer: an indirect branch's operand, or a store that
// may publish a descriptor into rseq_cs.
func needsFullRegs(in x86.Insn) bool {
	switch in.Kind {
	case x86.FlowIndirectJump, x86.FlowIndirectCall:
		return true
	case x86.FlowSeq:
		if in.Inst.Op == x86asm.MOV {
			_, mem := in.Inst.Args[0].(x86asm.Mem)
			return mem
		}
	}
	return false
}
