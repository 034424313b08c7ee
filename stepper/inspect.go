package stepper

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/sys/unix"
)

// Inspect mode (docs/design.md, "Inspect mode and forced aborts") executes a
// critical section one instruction at a time. The kernel aborts a section
// when it returns to a thread whose rseq_cs names it and whose PC is inside
// it, so before every resumption of a thread inside the section its rseq_cs
// is written 0, and at every stop the program's value is written back. What
// the abort protects is protected by the debugger instead: the thread is
// pinned to the CPU its area names, the other threads stay stopped, and
// asynchronous signals stay blocked (pending in the kernel) until the
// thread leaves the section.

// ErrInspectUnsupported is returned by SetInspect on a target that cannot pin
// threads or block their signals (a remote stub).
var ErrInspectUnsupported = errors.New("inspect mode needs the native target: a thread behind a remote stub cannot be pinned to its CPU or have its signals held")

// syncSignals are the faults the kernel raises for the instruction itself;
// they are never blocked (the kernel would unblock them and reset their
// handler) and are reported as usual.
var syncSignals = []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP, unix.SIGSYS}

// inspection is a thread being executed inside a critical section.
type inspection struct {
	region *regions.Region
	// entrySP is the stack pointer when the inspection began: below it the
	// thread is in a function the section called, still inside it.
	entrySP  uint64
	affinity unix.CPUSet
	sigmask  uint64
}

// Inspection says where an inspected thread stopped.
type Inspection struct {
	Region *regions.Region
	// Offset is the PC's distance from the section's start; Length is the
	// section's size. A thread in a function the section called has
	// InCallee set and the offset of the call.
	Offset, Length uint64
	InCallee       bool
}

// SetInspect turns inspect mode on or off. Off ends every inspection: the
// threads get their affinity and signal mask back.
func (e *Engine) SetInspect(on bool) error {
	if on && e.threadCtl == nil {
		return ErrInspectUnsupported
	}
	if on && e.nonStop {
		return ErrNonStopInspect
	}
	e.inspect = on
	if !on {
		e.EndInspections()
	}
	return nil
}

// Inspect reports whether inspect mode is on.
func (e *Engine) Inspect() bool { return e.inspect }

// EndInspections restores every inspected thread's affinity and signal
// mask, and the affinity of threads pinned for their steps. Front ends call
// it when a client leaves or rseqdbg is signalled; Detach and Kill call it.
func (e *Engine) EndInspections() {
	for tid := range e.inspecting {
		e.endInspection(tid)
	}
	e.unpinAll()
}

// beginInspection pins tid to the CPU of its rseq area and blocks its
// asynchronous signals, remembering what to restore. It fails, changing
// nothing, when the thread cannot be pinned there (a cpuset without that
// CPU, no permission): the caller then runs the section atomically.
func (e *Engine) beginInspection(tid int, r *regions.Region, sp uint64) error {
	if ins := e.inspecting[tid]; ins != nil {
		if ins.region == r {
			return nil
		}
		e.endInspection(tid)
	}
	old, err := e.pinToAreaCPU(tid)
	if err != nil {
		return err
	}
	if p := e.pace[tid]; p != nil {
		e.unhold(tid, p)
	}
	mask, err := e.threadCtl.SignalMask(tid)
	if err == nil {
		block := ^uint64(0)
		for _, s := range syncSignals {
			block &^= 1 << (s - 1)
		}
		err = e.threadCtl.SetSignalMask(tid, mask|block)
	}
	if err != nil {
		e.threadCtl.SetAffinity(tid, old)
		return err
	}
	e.inspecting[tid] = &inspection{region: r, entrySP: sp, affinity: old, sigmask: mask}
	return nil
}

// pinToAreaCPU pins tid to the CPU its rseq area's cpu_id names, the one
// its code compares against, and returns the affinity it had.
func (e *Engine) pinToAreaCPU(tid int) (unix.CPUSet, error) {
	var old unix.CPUSet
	area := e.RseqArea(tid)
	if !area.Known {
		return old, fmt.Errorf("thread %d has no registered rseq area", tid)
	}
	var b [4]byte
	if n, err := e.t.ReadMemory(area.Addr+4, b[:]); n != 4 {
		return old, fmt.Errorf("reading the cpu_id of thread %d: %w", tid, err)
	}
	cpu := int(int32(binary.LittleEndian.Uint32(b[:])))
	if cpu < 0 {
		return old, fmt.Errorf("thread %d has no cpu_id yet", tid)
	}
	old, err := e.threadCtl.Affinity(tid)
	if err != nil {
		return old, err
	}
	var pin unix.CPUSet
	pin.Set(cpu)
	if err := e.threadCtl.SetAffinity(tid, pin); err != nil {
		return old, fmt.Errorf("pinning thread %d to CPU %d: %w", tid, cpu, err)
	}
	return old, nil
}

// endInspection gives the thread its affinity and signal mask back; signals
// that arrived meanwhile are delivered when it next runs.
func (e *Engine) endInspection(tid int) {
	ins := e.inspecting[tid]
	if ins == nil {
		return
	}
	delete(e.inspecting, tid)
	if e.exited {
		return
	}
	e.threadCtl.SetAffinity(tid, ins.affinity)
	e.threadCtl.SetSignalMask(tid, ins.sigmask)
}

// stillInside reports whether tid, inspected in its region, is still
// executing it: inside the range, or deeper on the stack in a function the
// section called.
func (ins *inspection) stillInside(regs *target.Regs) bool {
	return ins.region.Contains(regs.Rip) || regs.Rsp < ins.entrySP
}

// settleInspection ends tid's inspection if the thread left its section.
func (e *Engine) settleInspection(tid int) {
	ins := e.inspecting[tid]
	if ins == nil {
		return
	}
	if regs, err := e.t.Regs(tid); err != nil || !ins.stillInside(&regs) {
		e.endInspection(tid)
	}
}

// withRseqCSCleared runs resume with tid's rseq_cs written 0 and writes the
// program's value back afterwards, so the resumption's return to user
// space finds nothing to abort and every stop shows the true value.
func (e *Engine) withRseqCSCleared(tid int, resume func() error) error {
	area := e.RseqArea(tid)
	var saved [8]byte
	if n, err := e.t.ReadMemory(area.Addr+8, saved[:]); n != 8 {
		return fmt.Errorf("reading the rseq_cs of thread %d: %w", tid, err)
	}
	if _, err := e.t.WriteMemory(area.Addr+8, make([]byte, 8)); err != nil {
		return fmt.Errorf("clearing the rseq_cs of thread %d: %w", tid, err)
	}
	err := resume()
	if !e.exited {
		if _, werr := e.t.WriteMemory(area.Addr+8, saved[:]); werr != nil && err == nil {
			err = fmt.Errorf("restoring the rseq_cs of thread %d: %w", tid, werr)
		}
	}
	return err
}

// inspectStep executes one instruction of tid inside section r (or in a
// function r called) with the other threads stopped. ok is false when the
// thread cannot be inspected; st.Note then says why and the caller runs
// the section atomically.
func (e *Engine) inspectStep(tid, sig int, r *regions.Region, regs *target.Regs) (st *Stop, note string, err error) {
	if err := e.beginInspection(tid, r, regs.Rsp); err != nil {
		return nil, fmt.Sprintf("cannot inspect: %v; the section runs atomically", err), nil
	}
	err = e.withRseqCSCleared(tid, func() error {
		st, err = e.hardwareStep(tid, sig, regs.Rip, OthersStay)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	e.stats.InspectedSteps++
	e.settleInspection(tid)
	return e.finish(st), "", nil
}

// inspectRun runs tid, stopped inside section r, on to one of r's exits
// without the kernel aborting it: pinned, alone, rseq_cs cleared. Breakpoints
// inside r are reported (nothing aborts, so a stop there loops nowhere). It
// returns nil when the thread left r, and a stop when something reportable
// came first; note is set, and nothing done, when the thread cannot be
// inspected.
func (e *Engine) inspectRun(tid, sig int, r *regions.Region, regs *target.Regs) (st *Stop, note string, err error) {
	sp := regs.Rsp
	if ins := e.inspecting[tid]; ins != nil && ins.region == r {
		sp = ins.entrySP
	}
	if err := e.beginInspection(tid, r, sp); err != nil {
		return nil, fmt.Sprintf("cannot inspect: %v; the section runs atomically", err), nil
	}
	exits := e.regionExits(r, regs, x86.Insn{})
	budget := e.opts.RunBudget
	if len(r.Indirect) == 0 {
		budget = 0
	}
	var res runResult
	err = e.withRseqCSCleared(tid, func() error {
		var err error
		res, err = e.runToExits(tid, sig, exits, OthersStay, runLimit{d: budget}, false)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	crossing := Crossing{Region: r}
	if res.stop != nil {
		if res.stop.Kind == StopExited || res.stop.Kind == StopKilled {
			return res.stop, "", nil
		}
		e.settleInspection(tid)
		if res.budget {
			crossing.Outcome = Interrupted
			e.count(Interrupted)
			e.passCrossing = []Crossing{crossing}
			return nil, "", nil
		}
		return e.finish(res.stop), "", nil
	}
	e.endInspection(tid)
	o := e.outcome(r, res.at)
	e.count(o)
	crossing.Outcome, crossing.At = o, res.at
	e.passCrossing = []Crossing{crossing}
	return nil, "", nil
}

// inspectRangeStep is one move of a range step whose thread is inside
// section r in inspect mode: a call runs to its return (nexti, next over a
// helper), an instruction of a range that lies inside r is stepped; done is
// false when neither applies and the caller runs r to its exit. A non-nil
// stop ends the range step.
func (e *Engine) inspectRangeStep(tid, sig int, r *regions.Region, regs *target.Regs, lo, hi uint64, stepOverCalls bool) (*Stop, bool, error) {
	in, err := e.decode(regs.Rip)
	if err != nil {
		return nil, false, nil
	}
	isCall := in.Kind == x86.FlowCall || in.Kind == x86.FlowIndirectCall
	if !(isCall && stepOverCalls) && !(r.Contains(lo) && r.Contains(hi-1)) {
		return nil, false, nil
	}
	if !isCall || !stepOverCalls {
		st, note, err := e.inspectStep(tid, sig, r, regs)
		if note != "" {
			e.note = note
			return nil, false, nil
		}
		if err != nil || st.Kind != StopStep {
			return st, true, err
		}
		return nil, true, nil
	}
	if err := e.beginInspection(tid, r, regs.Rsp); err != nil {
		e.note = fmt.Sprintf("cannot inspect: %v; the section runs atomically", err)
		return nil, false, nil
	}
	var st *Stop
	err = e.withRseqCSCleared(tid, func() error {
		var err error
		st, err = e.runToReturn(tid, sig, in.Next(), regs.Rsp, OthersStay)
		return err
	})
	if err != nil {
		return nil, true, err
	}
	e.settleInspection(tid)
	if st != nil {
		return e.finish(st), true, nil
	}
	return nil, true, nil
}

// inspectionOf describes where tid stopped if inspect mode applies there:
// inside a critical section, or in a function an inspected section called.
func (e *Engine) inspectionOf(tid int, pc uint64) *Inspection {
	if !e.inspect {
		return nil
	}
	if r := e.insideCS(pc); r != nil {
		return &Inspection{Region: r, Offset: pc - r.Start, Length: r.End - r.Start}
	}
	if ins := e.inspecting[tid]; ins != nil {
		return &Inspection{Region: ins.region, Length: ins.region.End - ins.region.Start, InCallee: true}
	}
	return nil
}

// ErrAbortRefused is wrapped by ForceAbort's error when the kernel itself
// would not abort the section but kill the thread.
var ErrAbortRefused = errors.New("the kernel would kill the thread with SIGSEGV instead of aborting")

// ForceAbort does to tid, stopped inside a critical section, what the
// kernel's fixup does on preemption: check the signature before abort_ip
// against the one the thread registered (a mismatch kills the thread, so
// nothing is changed and the error says so), then move the PC to abort_ip
// and clear rseq_cs. The abort handler can then be stepped.
func (e *Engine) ForceAbort(tid int) (*Stop, error) {
	if e.exited {
		return nil, target.ErrExited
	}
	regs, err := e.t.Regs(tid)
	if err != nil {
		return nil, err
	}
	r := e.insideCS(regs.Rip)
	if r == nil {
		return nil, fmt.Errorf("thread %d is not inside a critical section (PC %#x)", tid, regs.Rip)
	}
	area := e.RseqArea(tid)
	if !area.Known {
		return nil, fmt.Errorf("thread %d registered no rseq area: the kernel would not abort its section", tid)
	}
	var b [4]byte
	if n, err := e.t.ReadMemory(r.Abort-4, b[:]); n != 4 {
		return nil, fmt.Errorf("reading the signature before abort_ip %#x: %w", r.Abort, err)
	}
	if got := binary.LittleEndian.Uint32(b[:]); got != area.Signature {
		return nil, fmt.Errorf("%w: the 4 bytes before abort_ip %#x are %#08x, thread %d registered %#08x; nothing changed",
			ErrAbortRefused, r.Abort, got, tid, area.Signature)
	}
	regs.Rip = r.Abort
	if err := e.t.SetRegs(tid, regs); err != nil {
		return nil, err
	}
	if _, err := e.t.WriteMemory(area.Addr+8, make([]byte, 8)); err != nil {
		return nil, fmt.Errorf("clearing the rseq_cs of thread %d: %w", tid, err)
	}
	e.endInspection(tid)
	e.stats.ForcedAborts++
	e.stats.Aborts++
	st := &Stop{Kind: StopStep, Tid: tid, Crossed: []Crossing{{Region: r, Outcome: Aborted, At: r.Abort, Forced: true}}}
	return e.finish(st), nil
}

// InspectionAt describes where tid, stopped at pc, is being inspected, or
// nil outside inspect mode or outside a section: for stops a front end
// builds itself (a source step's end).
func (e *Engine) InspectionAt(tid int, pc uint64) *Inspection { return e.inspectionOf(tid, pc) }
