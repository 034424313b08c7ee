// Package stepper implements the stepping contract of docs/design.md: instruction
// steps, range steps and continues that never stop a thread inside a
// restartable region, the region step-over for threads stopped inside one,
// and the stop reasons front ends report. It drives a target.Target and asks
// regions where the regions are.
package stepper

import (
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/sys/unix"
)

// StopKind classifies a Stop.
type StopKind uint8

const (
	// StopStep: an instruction step or range step finished.
	StopStep StopKind = iota + 1
	// StopBreakpoint: a user breakpoint was hit.
	StopBreakpoint
	// StopWatch: a hardware watchpoint or breakpoint fired.
	StopWatch
	// StopSignal: the thread received a signal the policy says to stop for.
	StopSignal
	// StopInterrupt: Interrupt (gdb's ^C, DAP pause) stopped the target.
	StopInterrupt
	// StopExited: the process exited (Code).
	StopExited
	// StopKilled: the process died of a signal (Sig).
	StopKilled
	// StopThreadExited: the only running thread exited.
	StopThreadExited
	// StopExec: the process executed a new program.
	StopExec
	// StopLibrary: the dynamic linker changed the object list and the client
	// asked to hear of it.
	StopLibrary
	// StopFork: thread Tid forked process Child, kept stopped under the
	// debugger (the target keeps fork children, target.ForkFollower).
	// Vfork says it shares Tid's memory until it execs or exits.
	StopFork
	// StopVforkDone: the vfork child of thread Tid exec'd or exited, so
	// the two no longer share memory (only when the target was asked to
	// report it, target.ForkFollower.KeepVforks).
	StopVforkDone
)

func (k StopKind) String() string {
	return [...]string{"", "step", "breakpoint", "watchpoint", "signal", "interrupt", "exited", "killed", "thread-exited", "exec", "library", "fork", "vforkdone"}[k]
}

// Outcome is how a region run ended.
type Outcome uint8

const (
	Committed Outcome = iota + 1
	Aborted
	ExitedAtPoint // an exit point from __rseq_exit_point_array
	ExitedBranch  // a decoded branch out of the region
	Returned      // a vDSO function returned
	Interrupted   // the run budget ran out, or a stop happened inside
)

func (o Outcome) String() string {
	return [...]string{"", "commit", "abort", "exit-point", "branch-exit", "return", "interrupted"}[o]
}

// Crossing records one region run: which region, and how it ended.
type Crossing struct {
	Region  *regions.Region
	Outcome Outcome
	At      uint64
	Aborts  int // aborts seen during a step-over pass before it ended
	// Forced: the abort was the debugger's (ForceAbort), not the kernel's.
	Forced bool
}

// Stop is what a resumption ends with.
type Stop struct {
	Kind       StopKind
	Tid        int
	PC         uint64
	Sig        int
	Code       int
	Breakpoint *Breakpoint
	WatchAddr  uint64
	Crossed    []Crossing
	// Inside is set when the thread stopped inside a critical section: the
	// kernel will abort it when the thread resumes (contract point 3),
	// unless Inspect is set too.
	Inside *regions.Region
	// Inspect is set in inspect mode when the thread stopped inside a
	// critical section (or in a function it called): resuming it does not
	// abort the section.
	Inspect *Inspection
	// Note is for the user: why a requested inspection did not happen.
	Note string
	// Child is the new process of a StopFork; Vfork says vfork made it.
	Child int
	Vfork bool
}

// Breakpoint is a user breakpoint. Conditions are the front end's business.
type Breakpoint struct {
	ID   int
	Addr uint64
	Hits int
}

// Stats are the counters `monitor rseq stats` and rseqStats show.
type Stats struct {
	SingleSteps   int
	RegionRuns    int
	Commits       int
	Aborts        int
	ExitPoints    int
	Interrupted   int
	SignalsInRuns int
	Discovered    int
	// StepsInside counts hardware steps started inside a critical section
	// outside inspect mode. The contract says never; it is counted so tests
	// can prove it.
	StepsInside int
	// InspectedSteps counts instruction steps inside sections in inspect
	// mode; ForcedAborts the aborts ForceAbort made.
	InspectedSteps int
	ForcedAborts   int
	// CaughtInside counts threads a stop of the world caught inside a
	// critical section (not the one that stopped): each aborts when it
	// resumes.
	CaughtInside int
	// PacedSignals counts signals whose delivery the pacer slowed: each
	// came before its thread made progress since the one before.
	PacedSignals int
	// PassedNotOwned counts, in non-stop mode, stops of threads at a
	// breakpoint another thread's step or region run owns: each was
	// stepped past it and resumed unreported. Pauses counts the times
	// every running thread was held for an int3 to be lifted.
	PassedNotOwned int
	Pauses         int
	// Displaced counts threads continued from a breakpoint through a copy
	// of its instruction, with no step over the lifted int3 (displace.go).
	Displaced int
}

// Options tune the engine.
type Options struct {
	// RunBudget bounds a region run that may leave through an unknown exit
	// and a step-over pass that keeps aborting.
	RunBudget time.Duration
	// NoVDSO stops treating vDSO functions as regions, which they are by
	// default (`monitor rseq vdso off`).
	NoVDSO bool
	// ReportLibraries turns dynamic-linker events into StopLibrary.
	ReportLibraries bool
	// SoloBudget is how long a run that lets the other threads run keeps
	// them stopped first (0: they run from the start).
	SoloBudget time.Duration
}

// Engine is the stepping core over one target. Its methods must be called
// inside Do.
type Engine struct {
	t      target.Target
	idx    *regions.Index
	opts   Options
	objs   map[string]*regions.Object
	order  []string
	bps    map[int]*Breakpoint
	byAddr map[uint64][]*Breakpoint
	nextID int

	insns    map[uint64]x86.Insn
	flows    map[[2]uint64]*flow
	rseq     map[int]target.RseqArea
	auxv     map[uint64]uint64
	dlBreak  uint64
	vdsoBase uint64
	policy   SignalPolicy
	stats    Stats
	// passCrossing is the crossing of the last region pass, for the stop
	// that follows it.
	passCrossing []Crossing
	// reported are threads whose breakpoint stop was reported at this PC:
	// resuming them must step over the int3 instead of trapping again.
	reported map[int]uint64
	exited   bool
	warnings []string

	// files is the target's FileReader, or nil: checked once.
	files target.FileReader
	// threadCtl is the target's ThreadControl, or nil: checked once.
	threadCtl  target.ThreadControl
	inspect    bool
	inspecting map[int]*inspection
	// note is what the next stop tells the user (Stop.Note).
	note string
	// pinSteps pins a stepped thread to its CPU until it is continued;
	// pinned holds the affinity each pinned thread had.
	pinSteps bool
	pinned   map[int]unix.CPUSet
	// signalSeen is when each thread last stopped for a signal (stormy).
	signalSeen map[int]time.Time
	// syscallGen changes whenever every thread may have made a system
	// call (they all ran freely); threadGen[tid] when only tid may have
	// (it ran alone, or a step of it executed one). See SyscallGeneration.
	syscallGen uint64
	threadGen  map[int]uint64
	// declared are the regions users declared; an exec drops them with the
	// old image (the session declares them again by name).
	declared []*regions.Region

	// pace is the signal pacer's state per thread (pace.go).
	pace      map[int]*paceState
	paceTimer *time.Timer
	// paceDue, budgetDue and userInterrupt say who asked for an
	// interrupt: the pacer's release, a run's budget, the user.
	paceDue, budgetDue, userInterrupt atomic.Bool
	// budgetGen ties a budget's timer to its run: a timer that fires
	// after its run ended must not end the next one.
	budgetGen atomic.Uint64
	// budgetFired: the interrupt wait returned is a budget's.
	budgetFired bool
	// lastActions and lastDefault are the last resumption, repeated when
	// the pacer had the threads stopped for itself.
	lastActions map[int]target.Action
	lastDefault target.Action
	// ns is the target's NonStop, or nil: checked once. nonStop is the
	// mode (nonstop.go); owner the thread the stepping loops drive in it,
	// deferred the stops other threads made meanwhile, pauses the depth
	// of pauseOthers.
	ns       target.NonStop
	nonStop  bool
	owner    int
	deferred []*Stop
	pauses   int
	// stopWanted are the threads StopThread asked to stop whose stop has
	// not come yet.
	stopWanted map[int]bool
	// disp runs instructions under breakpoints out of line (displace.go).
	disp displacer
}

// New builds the engine: it reads auxv, loads the executable's and the
// vDSO's regions, and arms the dynamic linker breakpoint that keeps the
// region index current as objects load.
func New(t target.Target, opts Options) (*Engine, error) {
	e := build(t, opts)
	var err error
	t.Do(func() { err = e.load() })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// NewInDo is New for a caller already on t's tracer thread (inside Do):
// a fork child taken over while its parent's stop is handled.
func NewInDo(t target.Target, opts Options) (*Engine, error) {
	e := build(t, opts)
	if err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

// Options returns the options the engine was built with.
func (e *Engine) Options() Options { return e.opts }

func build(t target.Target, opts Options) *Engine {
	if opts.RunBudget == 0 {
		opts.RunBudget = 200 * time.Millisecond
	}

	e := &Engine{
		t: t, idx: regions.NewIndex(), opts: opts,
		objs: map[string]*regions.Object{}, bps: map[int]*Breakpoint{},
		byAddr: map[uint64][]*Breakpoint{}, insns: map[uint64]x86.Insn{},
		rseq: map[int]target.RseqArea{}, policy: DefaultSignalPolicy(),
		reported: map[int]uint64{}, inspecting: map[int]*inspection{}, signalSeen: map[int]time.Time{},
		pinned: map[int]unix.CPUSet{}, pace: map[int]*paceState{}, threadGen: map[int]uint64{},
		stopWanted: map[int]bool{},
	}
	e.threadCtl, _ = t.(target.ThreadControl)
	e.disp = newDisplacer(t)
	if e.opts.SoloBudget == 0 && e.threadCtl != nil {
		// Natively, resuming and stopping parked threads is what costs,
		// and an interrupt ends the budget at once. A remote stub's
		// interrupt is a round trip longer than the budget, and some
		// stubs report it as a signal: there the others run from the
		// start, as before.
		e.opts.SoloBudget = 2 * time.Millisecond
	}
	e.files, _ = t.(target.FileReader)
	e.ns, _ = t.(target.NonStop)
	return e
}

// Do runs f where the engine's methods may be called.
func (e *Engine) Do(f func()) { e.t.Do(f) }

// Target is the target the engine drives.
func (e *Engine) Target() target.Target { return e.t }

// Index is the region index.
func (e *Engine) Index() *regions.Index { return e.idx }

// Stats returns the counters.
func (e *Engine) Stats() Stats { return e.stats }

// Warnings returns what loading regions found suspicious.
func (e *Engine) Warnings() []string { return e.warnings }

// Objects lists the loaded objects, executable first.
func (e *Engine) Objects() []*regions.Object {
	out := make([]*regions.Object, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, e.objs[k])
	}
	return out
}

// Auxv returns the parsed auxiliary vector.
func (e *Engine) Auxv() map[uint64]uint64 { return e.auxv }

func (e *Engine) read(addr uint64, buf []byte) (int, error) { return e.t.ReadMemory(addr, buf) }

func (e *Engine) load() error {
	raw, err := e.t.Auxv()
	if err != nil {
		return err
	}
	e.auxv = auxv.ParseAuxv(raw)
	exe := e.t.ExecPath()
	if exe != "" {
		f, done, err := e.openELF(exe)
		if err != nil {
			return fmt.Errorf("opening executable %s: %w", exe, err)
		}
		bias := linkmap.ExecBias(e.auxv, f)
		interp := interpreter(f)
		done()
		e.addObject(exe, bias)
		if base := e.auxv[auxv.AtBase]; interp != "" && base != 0 {
			// The dynamic linker is linked at 0; it is in the link map only
			// once it ran, but its code runs from the first instruction.
			e.addObject(interp, base)
			if addr, err := e.dynamicLinkerBreakpoint(interp, base); err == nil {
				if err := e.t.InsertBreakpoint(addr); err == nil {
					e.dlBreak = addr
				}
			} else {
				e.warn(fmt.Sprintf("no dynamic linker breakpoint: %v", err))
			}
		}
	}
	if !e.opts.NoVDSO {
		e.loadVDSO()
	}
	// Attached processes already have their libraries.
	e.refreshLinkMap()
	return nil
}

func (e *Engine) warn(s string) {
	e.warnings = append(e.warnings, s)
	slog.Debug("regions", "warning", s)
}

func interpreter(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil {
				for i, c := range b {
					if c == 0 {
						return string(b[:i])
					}
				}
			}
		}
	}
	return ""
}

func (e *Engine) addObject(path string, bias uint64) {
	if _, ok := e.objs[path]; ok {
		return
	}
	obj, err := e.loadObject(path, bias)
	if err != nil {
		e.warn(fmt.Sprintf("%s: %v", path, err))
		obj = &regions.Object{Path: path, Bias: bias}
	}
	e.objs[path] = obj
	e.order = append(e.order, path)
	for _, w := range obj.Warnings {
		e.warn(fmt.Sprintf("%s: %s", path, w))
	}
	for _, w := range e.idx.SetObject(path, obj.Regions) {
		e.warn(w)
	}
	clear(e.insns)
	clear(e.flows)
	e.forgetSlots()
}

func (e *Engine) loadVDSO() {
	base := e.auxv[auxv.AtSysinfoEhdr]
	if base == 0 {
		return
	}
	maps, err := e.t.Maps()
	size := uint64(0)
	if err == nil {
		for _, m := range maps {
			if m.Start == base {
				size = m.End - m.Start
			}
		}
	}
	if size == 0 || size > 1<<20 {
		size = 2 * 4096
	}
	img := make([]byte, size)
	n, err := e.t.ReadMemory(base, img)
	if err != nil || n == 0 {
		e.warn(fmt.Sprintf("reading the vDSO at %#x: %v", base, err))
		return
	}
	obj, err := regions.LoadVDSO(img[:n], base)
	if err != nil {
		e.warn(fmt.Sprintf("vDSO: %v", err))
		return
	}
	e.vdsoBase = base
	e.objs["[vdso]"] = obj
	e.order = append(e.order, "[vdso]")
	e.idx.SetObject("[vdso]", obj.Regions)
}

// refreshLinkMap loads objects the dynamic linker added and drops those it
// removed.
func (e *Engine) refreshLinkMap() {
	exe := e.t.ExecPath()
	obj := e.objs[exe]
	if obj == nil {
		return
	}
	rd, err := e.findRDebug(exe, obj.Bias)
	if err != nil {
		return
	}
	list, err := linkmap.LinkMap(e.read, rd)
	if err != nil {
		e.warn(fmt.Sprintf("reading the link map: %v", err))
		return
	}
	seen := map[string]bool{exe: true, "[vdso]": true}
	for _, lo := range list {
		if lo.Name == "" || lo.Name[0] != '/' {
			continue
		}
		seen[lo.Name] = true
		e.addObject(lo.Name, lo.Bias)
	}
	for i := 0; i < len(e.order); i++ {
		k := e.order[i]
		if !seen[k] {
			e.idx.RemoveObject(k)
			e.idx.RemoveObject("scan:" + k)
			delete(e.objs, k)
			e.order = append(e.order[:i], e.order[i+1:]...)
			i--
			clear(e.insns)
			clear(e.flows)
			e.forgetSlots()
		}
	}
}

// SetVDSO turns the stepping of vDSO functions as regions on or off.
func (e *Engine) SetVDSO(on bool) {
	e.opts.NoVDSO = !on
	if on && e.objs["[vdso]"] == nil {
		e.loadVDSO()
	} else if !on && e.objs["[vdso]"] != nil {
		e.idx.RemoveObject("[vdso]")
		delete(e.objs, "[vdso]")
		for i, k := range e.order {
			if k == "[vdso]" {
				e.order = append(e.order[:i], e.order[i+1:]...)
				break
			}
		}
	}
}

// SetReportLibraries turns StopLibrary on or off at run time. A front end
// that resolves pending breakpoints wants it while continuing, but not while
// range stepping, where a stop deep inside dlopen could not be resumed as
// the same step.
func (e *Engine) SetReportLibraries(on bool) { e.opts.ReportLibraries = on }

// VDSO reports whether vDSO functions are stepped as regions.
func (e *Engine) VDSO() bool { return !e.opts.NoVDSO }

// Declare adds a user-declared region. One that overlaps a region already
// known is refused.
func (e *Engine) Declare(name string, start, end uint64) (*regions.Region, error) {
	r, err := regions.Declared(name, start, end, e.read)
	if err != nil {
		return nil, err
	}
	if ws := e.idx.Add("declared", r); len(ws) > 0 {
		return nil, fmt.Errorf("declaring %s: %s", name, ws[0])
	}
	e.declared = append(e.declared, r)
	clear(e.insns)
	clear(e.flows)
	e.forgetSlots()
	return r, nil
}

// SyscallGeneration changes whenever thread tid may have made a system
// call since the last look. What only system calls change (a thread's
// name) can be cached while it stays the same: a single step of any other
// instruction leaves it, and a step or a short run of one thread leaves
// the others' (a next that ends within the solo budget runs no other
// thread).
func (e *Engine) SyscallGeneration(tid int) uint64 { return e.syscallGen + e.threadGen[tid] }

// ran records that thread tid, or with 0 every thread, may make system
// calls in the resumption that follows.
func (e *Engine) ran(tid int) {
	if tid == 0 {
		e.syscallGen++
		return
	}
	e.threadGen[tid]++
}

// Declared lists the user-declared regions.
func (e *Engine) Declared() []*regions.Region { return append([]*regions.Region(nil), e.declared...) }

// Undeclare removes the declared regions keep says no to.
func (e *Engine) Undeclare(keep func(*regions.Region) bool) int {
	kept := e.declared[:0]
	for _, r := range e.declared {
		if keep(r) {
			kept = append(kept, r)
		}
	}
	removed := len(e.declared) - len(kept)
	e.declared = kept
	e.idx.RemoveObject("declared")
	for _, r := range kept {
		e.idx.Add("declared", r)
	}
	clear(e.insns)
	clear(e.flows)
	e.forgetSlots()
	return removed
}

// SetBreakpoint adds a user breakpoint.
func (e *Engine) SetBreakpoint(addr uint64) (*Breakpoint, error) {
	if err := e.t.InsertBreakpoint(addr); err != nil {
		return nil, err
	}
	e.nextID++
	bp := &Breakpoint{ID: e.nextID, Addr: addr}
	e.bps[bp.ID] = bp
	e.byAddr[addr] = append(e.byAddr[addr], bp)
	return bp, nil
}

// ClearBreakpoint removes a user breakpoint.
func (e *Engine) ClearBreakpoint(id int) error {
	bp, ok := e.bps[id]
	if !ok {
		return fmt.Errorf("no breakpoint %d", id)
	}
	delete(e.bps, id)
	list := e.byAddr[bp.Addr]
	for i, b := range list {
		if b == bp {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(e.byAddr, bp.Addr)
	} else {
		e.byAddr[bp.Addr] = list
	}
	if e.exited {
		return nil
	}
	return e.t.RemoveBreakpoint(bp.Addr)
}

// Breakpoints lists user breakpoints by id.
func (e *Engine) Breakpoints() []*Breakpoint {
	out := make([]*Breakpoint, 0, len(e.bps))
	for id := 1; id <= e.nextID; id++ {
		if bp, ok := e.bps[id]; ok {
			out = append(out, bp)
		}
	}
	return out
}

// ClearAll removes every user breakpoint (disconnect, detach).
func (e *Engine) ClearAll() {
	for id := range e.bps {
		e.ClearBreakpoint(id)
	}
}

// WriteMemory writes target memory and forgets decoded instructions there.
func (e *Engine) WriteMemory(addr uint64, data []byte) (int, error) {
	clear(e.insns)
	clear(e.flows)
	e.forgetSlots()
	return e.t.WriteMemory(addr, data)
}

// Exited reports whether the process is gone.
func (e *Engine) Exited() bool { return e.exited }

// RseqArea returns a thread's rseq area, cached. "None registered" is
// cached too until the thread makes a system call or runs freely, the only
// ways it can register one.
func (e *Engine) RseqArea(tid int) target.RseqArea {
	if a, ok := e.rseq[tid]; ok {
		return a
	}
	a, err := e.t.RseqArea(tid)
	if err != nil {
		a = target.RseqArea{}
	}
	e.rseq[tid] = a
	return a
}

// forgetUnregistered drops cached "no area" answers.
func (e *Engine) forgetUnregistered(tid int) {
	if a, ok := e.rseq[tid]; ok && !a.Known {
		delete(e.rseq, tid)
	}
}

// RseqCS reads the thread's rseq_cs field.
func (e *Engine) RseqCS(tid int) (uint64, error) {
	a := e.RseqArea(tid)
	if !a.Known {
		return 0, errors.New("no rseq area registered")
	}
	var b [8]byte
	if _, err := e.t.ReadMemory(a.Addr+8, b[:]); err != nil {
		return 0, fmt.Errorf("reading rseq area of %d: %w", tid, err)
	}
	return le64(b[:]), nil
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// decode returns the instruction at pc, cached. One read decodes the
// instructions that follow too: a step through new code then costs one
// memory read per 64 bytes instead of one per instruction.
func (e *Engine) decode(pc uint64) (x86.Insn, error) {
	if in, ok := e.insns[pc]; ok {
		return in, nil
	}
	var code [64]byte
	n, err := e.t.ReadMemory(pc, code[:])
	if n == 0 {
		return x86.Insn{}, fmt.Errorf("reading code at %#x: %w", pc, err)
	}
	in, err := x86.Decode(code[:n], pc)
	if err != nil {
		return x86.Insn{}, err
	}
	if len(e.insns) > 1<<20 {
		clear(e.insns)
	}
	e.insns[pc] = in
	// Only instructions wholly inside the buffer, with room for the longest
	// encoding, are trusted.
	for a := in.Next(); a-pc+15 <= uint64(n); {
		next, err := x86.Decode(code[a-pc:n], a)
		if err != nil || next.Len == 0 {
			break
		}
		if _, ok := e.insns[a]; !ok {
			e.insns[a] = next
		}
		a = next.Next()
	}
	return in, nil
}

// RegionAt returns the region holding pc, or nil.
func (e *Engine) RegionAt(pc uint64) *regions.Region { return e.idx.Lookup(pc) }

// insideCS returns the critical section pc lies in.
func (e *Engine) insideCS(pc uint64) *regions.Region {
	if r := e.idx.Lookup(pc); r != nil && r.Kind == regions.KindCriticalSection {
		return r
	}
	return nil
}

// Kill ends the process.
func (e *Engine) Kill() error {
	e.paceRelease(true)
	e.EndInspections()
	e.exited = true
	return e.t.Kill()
}

// Detach removes every breakpoint, ours included, and lets the process go.
func (e *Engine) Detach() error {
	e.paceRelease(true)
	e.EndInspections()
	e.ClearAll()
	if e.dlBreak != 0 {
		e.t.RemoveBreakpoint(e.dlBreak)
		e.dlBreak = 0
	}
	e.unmapScratch()
	e.exited = true
	return e.t.Detach()
}

// SignalPolicy says, per signal, whether a stop is reported and whether the
// signal reaches the program.
type SignalPolicy struct {
	NoStop [65]bool
	NoPass [65]bool
}

// DefaultSignalPolicy is gdb's default table.
func DefaultSignalPolicy() SignalPolicy {
	var p SignalPolicy
	for _, s := range []unix.Signal{unix.SIGALRM, unix.SIGURG, unix.SIGCHLD, unix.SIGWINCH, unix.SIGIO, unix.SIGVTALRM, unix.SIGPROF} {
		p.NoStop[s] = true
	}
	p.NoPass[unix.SIGINT] = true
	p.NoPass[unix.SIGTRAP] = true
	return p
}

// SetSignalPolicy replaces the policy.
func (e *Engine) SetSignalPolicy(p SignalPolicy) { e.policy = p }

// Policy returns the current signal policy.
func (e *Engine) Policy() SignalPolicy { return e.policy }
