// Package target is one debugged process as the core sees it: threads,
// registers, memory, software breakpoints as bytes, resume and wait, auxv and
// the thread's rseq area. Native ptrace and remote stubs implement it; nothing
// here knows about rseq regions or DWARF.
package target

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Regs are the x86-64 general registers in the kernel's user_regs_struct
// order, so the ptrace implementation can copy them without translation.
type Regs struct {
	R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8 uint64
	Rax, Rcx, Rdx, Rsi, Rdi, OrigRax               uint64
	Rip, Cs, Eflags, Rsp, Ss                       uint64
	FsBase, GsBase                                 uint64
	Ds, Es, Fs, Gs                                 uint64
}

// ActionKind says what a thread does when the target resumes.
type ActionKind uint8

const (
	// Stay keeps the thread stopped.
	Stay ActionKind = iota
	// Continue runs the thread freely.
	Continue
	// Step executes one instruction (hardware single-step).
	Step
	// ContinueSyscalls runs the thread and stops it at every system call's
	// entry and exit (TrapSyscallEntry, TrapSyscallExit). Only targets that
	// implement ThreadControl honour it; it lets the stepper keep a change
	// of the thread's signal mask from being seen by any system call.
	ContinueSyscalls
)

// Action is one thread's part of a resume: what to do and which signal to
// deliver (0 for none).
type Action struct {
	Kind ActionKind
	Sig  int
}

// EventKind classifies what Wait reports.
type EventKind uint8

const (
	// EventStop: a thread stopped with a signal (SIGTRAP for breakpoints,
	// single-steps and watchpoints; SIGSTOP for interrupts).
	EventStop EventKind = iota + 1
	// EventExited: the process exited normally (Code).
	EventExited
	// EventSignaled: the process was killed by a signal (Sig).
	EventSignaled
	// EventThreadExited: one thread (not the whole process) ended.
	EventThreadExited
	// EventThreadCreated: a new thread exists (Tid is the new thread); it is
	// stopped like the others.
	EventThreadCreated
	// EventExec: the process executed a new program; every breakpoint is gone.
	EventExec
	// EventFork: thread Tid forked process Child, which a ForkFollower
	// target keeps traced and stopped (only after KeepForks(true)); the
	// parent is stopped like any stop. Vfork says the child was made by
	// vfork and shares the parent's memory until it execs or exits.
	EventFork
	// EventVforkDone: the vfork child of thread Tid, reported by an
	// EventFork with Vfork, no longer shares its memory (it exec'd or
	// exited): the kernel's PTRACE_EVENT_VFORK_DONE, reported only after
	// KeepVforks(true, true).
	EventVforkDone
)

// TrapKind refines an EventStop with SIGTRAP.
type TrapKind uint8

const (
	TrapNone TrapKind = iota
	// TrapBreakpoint: the thread executed an int3 that this target inserted;
	// its PC has already been rewound to the breakpoint address.
	TrapBreakpoint
	// TrapStep: a hardware single-step completed. When the stepped
	// instruction was a trap instruction (int3), the SIGTRAP is the
	// program's own: the caller, which decoded it, must report it so.
	TrapStep
	// TrapWatch: a debug-register watchpoint or hardware breakpoint fired.
	TrapWatch
	// TrapOther: a SIGTRAP not caused by the debugger (the program's own int3,
	// a kill(SIGTRAP)). It is the program's signal.
	TrapOther
	// TrapSyscallEntry and TrapSyscallExit: a thread resumed with
	// ContinueSyscalls is at a system call's entry (Event.Syscall is its
	// number) or exit. A syscall stop collected while the other threads
	// were being stopped is reported at the thread's next ContinueSyscalls
	// resumption only; any other resumption that runs the thread drops it
	// and lets the call go on.
	TrapSyscallEntry
	TrapSyscallExit
)

// Event is one thing Wait reports. In all-stop operation every thread is
// stopped when Wait returns an event for a live process.
type Event struct {
	Kind  EventKind
	Tid   int
	Sig   int
	Trap  TrapKind
	Code  int    // exit code for EventExited
	Addr  uint64 // breakpoint or watched address when known
	Async bool   // the stop came from Interrupt
	Child int    // the new process of an EventFork
	Vfork bool   // an EventFork's child was made by vfork
	// Syscall is the system call number at a TrapSyscallEntry.
	Syscall int
}

func (e Event) String() string {
	switch e.Kind {
	case EventStop:
		return fmt.Sprintf("thread %d stopped by signal %d (trap %d)", e.Tid, e.Sig, e.Trap)
	case EventExited:
		return fmt.Sprintf("process exited with code %d", e.Code)
	case EventSignaled:
		return fmt.Sprintf("process killed by signal %d", e.Sig)
	case EventThreadExited:
		return fmt.Sprintf("thread %d exited", e.Tid)
	case EventThreadCreated:
		return fmt.Sprintf("thread %d created", e.Tid)
	case EventExec:
		return fmt.Sprintf("thread %d executed a new program", e.Tid)
	case EventFork:
		if e.Vfork {
			return fmt.Sprintf("thread %d vforked process %d", e.Tid, e.Child)
		}
		return fmt.Sprintf("thread %d forked process %d", e.Tid, e.Child)
	case EventVforkDone:
		return fmt.Sprintf("thread %d's vfork child let go of its memory", e.Tid)
	}
	return "unknown event"
}

// RseqArea is where a thread's struct rseq lives and how it registered.
type RseqArea struct {
	Addr      uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	// Known is false when the thread registered no area (or the target cannot
	// tell, e.g. qemu-user); Addr is then meaningless.
	Known bool
}

// Mapping is one line of the process's memory map.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64
	Path       string
}

// Exec reports whether the mapping is executable.
func (m Mapping) Exec() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// ErrExited is returned by operations on a process that is gone.
var ErrExited = errors.New("process has exited")

// ErrNotNow is what an optional capability fails with where it may work
// later, in another state of the process.
var ErrNotNow = errors.New("not possible in the process's present state")

// Target is one debugged process in all-stop mode. Its methods are not safe
// for concurrent use, and the native implementation requires every call but
// Interrupt to run inside Do, on the thread that traces the process.
type Target interface {
	// Do runs f on the target's tracer thread and waits for it.
	Do(f func())
	Pid() int
	// Threads lists the live threads, leader first.
	Threads() []int
	Regs(tid int) (Regs, error)
	SetRegs(tid int, r Regs) error
	// FPRegs returns the XSAVE area (legacy FXSAVE layout in its first 512
	// bytes) and SetFPRegs writes it back.
	FPRegs(tid int) ([]byte, error)
	SetFPRegs(tid int, xsave []byte) error
	// ReadMemory reads as much of [addr, addr+len(buf)) as is readable and
	// returns the count; inserted breakpoints are hidden.
	ReadMemory(addr uint64, buf []byte) (int, error)
	// WriteMemory writes data, keeping inserted breakpoints in place.
	WriteMemory(addr uint64, data []byte) (int, error)
	// InsertBreakpoint puts an int3 at addr; it nests (a count per address).
	InsertBreakpoint(addr uint64) error
	// RemoveBreakpoint undoes one InsertBreakpoint.
	RemoveBreakpoint(addr uint64) error
	// BreakpointAt reports whether an int3 of ours is at addr.
	BreakpointAt(addr uint64) bool
	// Resume starts threads; actions maps tid to its action, others get def.
	Resume(actions map[int]Action, def Action) error
	// Wait blocks until an event; all threads are stopped again before a stop
	// event is returned.
	Wait() (Event, error)
	// Interrupt asks a running target to stop; safe from any goroutine.
	Interrupt()
	// ForgetStep abandons tid's single-step: a completion the target holds
	// for it (it finished while another thread's stop was being reported)
	// is dropped, so it is not reported later as a stray SIGTRAP.
	ForgetStep(tid int)
	// SetDebugReg writes debug register n (0-7) of every thread.
	SetDebugReg(n int, value uint64) error
	Auxv() ([]byte, error)
	Maps() ([]Mapping, error)
	RseqArea(tid int) (RseqArea, error)
	// ExecPath is the path of the program the process runs.
	ExecPath() string
	Kill() error
	// Detach removes every breakpoint and lets the process run on.
	Detach() error
}

// File is an object file of the debugged process, read where the process
// runs.
type File interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// FileReader is implemented by targets whose files need not be the
// debugger's own (a remote stub, an emulator): the core reads the
// executable and libraries through it instead of opening local paths.
type FileReader interface {
	OpenFile(path string) (File, error)
}

// StopRegs is implemented by targets where reading every register costs a
// round trip (a remote stub) but a thread's PC, stack and frame pointers
// are known cheaply once it stopped (the stub's stop reply carries them):
// the core asks for those alone where they are all it needs. ok is false
// when they are not known without reading the registers.
type StopRegs interface {
	StopRegs(tid int) (pc, sp, fp uint64, ok bool)
}

// QuickRegs returns a thread's registers, or, from a target that knows
// only the PC, stack and frame pointers of a stopped thread cheaply (a
// remote stub's stop reply), a Regs holding just those (full false). What
// needs only those (stop replies, thread lists, most instruction steps)
// then costs no register read.
func QuickRegs(t Target, tid int) (r Regs, full bool, err error) {
	if q, ok := t.(StopRegs); ok {
		if pc, sp, fp, ok := q.StopRegs(tid); ok {
			return Regs{Rip: pc, Rsp: sp, Rbp: fp}, false, nil
		}
	}
	r, err = t.Regs(tid)
	return r, true, err
}

// The optional capabilities below are what a target behind another stub
// (target/remote) offers a GDB protocol proxy in front of it. A front end
// checks for each once, when it takes the process, and keeps the result;
// each implementation asserts it at compile time, so that a renamed method
// breaks the build instead of silently turning the feature off.

// LibraryLister is implemented by targets that list the dynamic linker's
// objects themselves (a stub's qXfer:libraries-svr4 document).
type LibraryLister interface {
	Libraries() ([]byte, error)
}

// StackPrefetcher is implemented by targets that can read the top of a
// stopped thread's stack ahead, while a client reads the stop reply.
type StackPrefetcher interface {
	PrefetchStack(tid int)
}

// RseqNoter is implemented by targets that can explain how they found a
// thread's rseq area, or why they found none (`monitor rseq status`).
type RseqNoter interface {
	RseqNote(tid int) string
}

// ConsoleTee is implemented by targets whose console output (a stub's O
// packets) can be copied to f while a resumption runs, until restore.
type ConsoleTee interface {
	TeeConsole(f func(text string)) (restore func())
}

// ClientWatcher is implemented by targets that wait for a stub: every wait
// also watches fd (the proxy's client) and calls onReady, on the thread
// waiting for the target, whenever fd is readable, until restore.
type ClientWatcher interface {
	WatchClient(fd int, onReady func()) (restore func())
}

// RegisterGaps is implemented by targets that cannot read some registers
// (lldb-server describes no fs_base): they are reported unavailable rather
// than as zero.
type RegisterGaps interface {
	Lacks(name string) bool
}

// ThreadControl is implemented by targets that can pin a thread to CPUs and
// block its signals, which a remote stub cannot. Inspect mode needs both:
// a pinned thread cannot migrate inside a critical section, and a blocked
// asynchronous signal stays pending in the kernel until it is unblocked, so
// none is lost even if the debugger dies meanwhile. Such a target also
// honours ContinueSyscalls, so a changed mask can be put back before any
// system call of the thread sees it.
type ThreadControl interface {
	Affinity(tid int) (unix.CPUSet, error)
	SetAffinity(tid int, set unix.CPUSet) error
	// SignalMask and SetSignalMask read and write the blocked-signal mask
	// (bit n-1 for signal n) of a stopped thread.
	SignalMask(tid int) (uint64, error)
	SetSignalMask(tid int, mask uint64) error
	// Asleep reports whether the running thread tid sleeps in the kernel
	// (waits in a system call) rather than runs or waits for a CPU.
	// Unlike the other methods it is safe from any goroutine.
	Asleep(tid int) (bool, error)
}

// CodeMapper is implemented by targets that can map fresh memory for code
// into the process, by having one of its stopped threads make the mmap
// system call. The stepper copies the instruction under a breakpoint
// there, followed by a jump back, so that a thread continued from a
// breakpoint runs the copy instead of being single-stepped over the lifted
// int3: one ptrace stop per hit instead of two, and the int3 stays in
// place for the other threads.
type CodeMapper interface {
	// MapCode has stopped thread tid map size bytes, readable and
	// executable (the debugger writes them through its memory access),
	// preferably near hint, and returns where. The thread is left as it
	// was: registers, signal mask and pending signals. It fails, changing
	// nothing, where a system call made for the debugger could harm the
	// program (a seccomp filter may kill it for the call), and with
	// ErrNotNow while the memory is not the process's own (a vfork child
	// and its parent share it until the child execs).
	MapCode(tid int, hint uint64, size int) (uint64, error)
	// UnmapCode undoes MapCode, before the process is let go.
	UnmapCode(tid int, addr uint64, size int) error
}

// ForkFollower is implemented by targets that can keep a fork child under
// control instead of letting it go (gdb's fork events, `set detach-on-fork
// off`). Without KeepForks(true) a fork child is released clean and
// untraced, as always, and without KeepVforks(true, ...) a vfork child.
//
// A vfork child kept shares the parent's memory until it execs or exits,
// and with it the int3s: each process records its own breakpoints, memory
// holds the int3s of both, and neither process's reads show the other's.
// A process let go (Detach, Kill) while they share takes out only the
// int3s the other one has no record of. Further:
//   - a vfork child let go while it shares the memory takes the parent's
//     int3s out too, until the parent's VFORK_DONE puts them back, as for
//     a vfork child never kept;
//   - a vfork parent detached while its child shares the memory stays
//     traced and stopped until the child execs, exits or is let go, and
//     is let go then, when none of the child's int3s is left in its
//     memory; to its owner it is gone at once.
type ForkFollower interface {
	// KeepForks turns the keeping of fork children on or off; children
	// kept inherit the setting.
	KeepForks(on bool)
	// KeepVforks does so for vfork children (reported as EventFork with
	// Vfork set); with reportDone the parent's end of the sharing is
	// reported as an EventVforkDone (gdb waits for it to insert its
	// breakpoints again), otherwise it is taken silently.
	KeepVforks(on, reportDone bool)
	// ForkChild hands over the child an EventFork reported, stopped, as
	// its own Target. It shares the parent's tracer (its Do is the
	// parent's) and is released on its own (Close, Detach, Kill). Its
	// memory is the parent's copy, with every breakpoint the parent had
	// inserted still there and recorded as inserted: the caller inserts
	// the ones it wants in the child, then calls dropInherited, which
	// takes the inherited records away (their int3s leave memory unless
	// the caller inserted one at the same address), so no breakpoint the
	// caller wants is ever missing from the child's memory.
	ForkChild(pid int) (child Target, dropInherited func() error, err error)
}

// NonStop is implemented by targets that can run some threads while
// others stay stopped, and report one thread's stop without stopping the
// rest (gdb's non-stop mode, DAP's nonStop launch option). A remote stub
// need not offer it: a front end then refuses non-stop (gdbserver answers
// QNonStop:1 with an error when it cannot). It is checked once, when the
// engine takes the process.
//
// In non-stop mode the Target methods change meaning as follows:
//   - Resume starts the stopped threads actions names (and def for the
//     other stopped threads, unless it is Stay); running threads run on.
//     A thread with a stop kept by PauseAll is not started: its stop is
//     reported by the next Wait instead.
//   - Wait returns the next event of any one thread; the others keep
//     running.
//   - Interrupt is not used: InterruptThread names the thread.
//
// Memory can be read and written, and breakpoints inserted, while threads
// run (through /proc/PID/mem, which needs no stopped thread).
type NonStop interface {
	// SetNonStop switches the mode. Switching off stops every thread.
	SetNonStop(on bool) error
	// Running reports whether tid is running.
	Running(tid int) bool
	// StopThread asks running thread tid to stop; Wait or Poll reports
	// the stop with Async set and Sig SIGSTOP. A thread that reports
	// another stop first has its request satisfied by it.
	StopThread(tid int) error
	// InterruptThread is StopThread for a running thread, safe from any
	// goroutine (a run's time budget); its stop is reported with Async.
	InterruptThread(tid int)
	// Poll is Wait without blocking: ok is false when no thread has
	// anything to report yet.
	Poll() (ev Event, ok bool, err error)
	// PauseAll stops every running thread, keeping what they report, so
	// that an int3 can be lifted for one thread's step without the
	// others running past it; ResumePaused restarts them as they ran
	// (a thread created meanwhile runs too). Calls do not nest.
	PauseAll() error
	ResumePaused() error
}

// The XSAVE area FPRegs returns and SetFPRegs takes, as the kernel's
// NT_X86_XSTATE regset lays it out: the FXSAVE image (its first 512
// bytes), XCR0 in its software-reserved bytes, the XSAVE header, then the
// AVX upper halves.
const (
	FxFCW      = 0
	FxFSW      = 2
	FxFTW      = 4 // abridged: one bit per physical register
	FxFOP      = 6
	FxFIP      = 8
	FxFCS      = 12
	FxFDP      = 16
	FxFDS      = 20
	FxMXCSR    = 24
	FxST       = 32
	FxXMM      = 160
	XsaveXCR0  = 464 // sw_reserved: the kernel stores XCR0 here for ptrace
	XsaveBV    = 512 // XSTATE_BV of the header
	XsaveYMMH  = 576
	XsaveAVXOK = XsaveYMMH + 16*16 // an area this long holds the AVX state

	// State components, bits of XCR0 and XSTATE_BV.
	XfeatureX87 = 1 << 0
	XfeatureSSE = 1 << 1
	XfeatureAVX = 1 << 2
)

// MemReader reads target memory; it returns the count read.
type MemReader func(addr uint64, buf []byte) (int, error)

// ReadUpTo reads up to len(buf) bytes at addr and returns those it read.
func ReadUpTo(read MemReader, addr uint64, buf []byte) []byte {
	n, _ := read(addr, buf)
	if n < 0 {
		n = 0
	}
	if n > len(buf) {
		n = len(buf)
	}
	return buf[:n]
}
