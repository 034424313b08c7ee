// Package ptrace is the native target: one Linux x86-64 process debugged
// with ptrace from a single locked OS thread.
package ptrace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

const (
	ptraceGetRseqConfiguration = 0x420f
	ptraceGetSigmask           = 0x420a
	ptraceSetSigmask           = 0x420b
	addrNoRandomize            = 0x0040000
	// offsetof(struct user, u_debugreg) on x86-64.
	debugRegOffset = 848
	siKernel       = 0x80
	trapTrace      = 2
	trapHwbkpt     = 4
	ntX86Xstate    = 0x202
	xsaveMax       = 4096
)

// LaunchOptions describe a program to start under the debugger.
type LaunchOptions struct {
	Path string
	Args []string // argv[1:]
	Env  []string // nil: the debugger's environment
	Dir  string
	// Stdin, Stdout, Stderr default to the debugger's own.
	Stdin, Stdout, Stderr *os.File
	// KeepASLR leaves address-space randomization on (gdb turns it off).
	KeepASLR bool
}

type threadState struct {
	tid int
	// running: resumed and not yet seen stopped.
	running bool
	// sigstopPending: we sent a SIGSTOP that has not been reported yet; it
	// is swallowed when it shows up.
	sigstopPending bool
	// pending is a stop that arrived while stopping the others; it is
	// reported before anything resumes.
	pending *target.Event
	last    target.Action
	// stepping remembers that the last resume was a single-step, for
	// classifying the SIGTRAP; stepFrom is the PC it started at, when the
	// registers were cached (0 otherwise).
	stepping bool
	stepFrom uint64
	// free: counted in Process.nfree (running, not single-stepping).
	free bool
	// regs caches the registers while the thread is stopped: a stop costs
	// one PTRACE_GETREGS however often the core looks at them.
	regs      target.Regs
	regsValid bool
	// regsDirty: regs were changed and are written at the next resumption
	// (SetRegs).
	regsDirty bool
	// stopRequested: StopThread sent the pending SIGSTOP, and its stop is
	// the client's (reported with Async), not swallowed. Any other stop
	// the thread reports first satisfies the request.
	stopRequested bool
	// paused: PauseAll stopped this thread (or it was created during the
	// pause); ResumePaused restarts it with its last action.
	paused bool
	// moribund are breakpoints removed while this thread ran: it may have
	// executed the int3 before the removal and report the trap after it,
	// when nothing is at PC-1 any more (gdb's moribund locations). Its
	// next stop settles it.
	moribund []uint64
	// vforked: this thread's vfork child was reported (EventFork), so its
	// VFORK_DONE is reported too when asked for.
	vforked bool
}

// Process is a traced process. Every method except Interrupt must be called
// inside Do.
type Process struct {
	pid      int
	exe      string
	threads  map[int]*threadState
	order    []int
	bps      map[uint64]*breakpoint
	mem      *os.File
	exited   bool
	queued   []target.Event
	debugReg [8]uint64
	// lifted: a vfork child shares our memory until it execs or exits, so
	// every int3 is out of memory until the parent's VFORK_DONE; p.bps
	// still records what is inserted.
	lifted bool
	// earlyForks holds fork children whose initial stop arrived before
	// their parent's fork event; they wait for it, stopped.
	earlyForks map[int]unix.WaitStatus
	// keepForks: fork children stay traced and are reported (EventFork)
	// instead of released; forked holds those not handed over yet.
	keepForks bool
	forked    map[int]*Process
	// keepVforks: vfork children are kept and reported too;
	// reportVforkDone: the parent's VFORK_DONE after one is an
	// EventVforkDone (target.ForkFollower).
	keepVforks, reportVforkDone bool
	// vforkChild (on the parent) and vforkParent (on the child) link a
	// vfork child kept and its parent while they share memory. Each
	// records its own int3s, but the memory holds the child's alone: the
	// child is the one that runs (the parent is blocked in vfork), and it
	// must neither meet the parent's nor find one it lifted to step over
	// still there because the parent has one at the same place. The
	// parent's are only records meanwhile (inMemory), as when lifted.
	// The link ends when the child execs, exits or either is let go
	// (unshare), and the memory left then gets exactly the int3s of the
	// process that goes on in it.
	vforkChild, vforkParent *Process
	// detachLater: Detach came while the vfork child shared our memory;
	// the threads stay traced and stopped until unshare lets them go.
	detachLater bool
	// stash holds wait statuses of our threads that another process of
	// the same tracer reaped (its Wait4(-1) sees every tracee).
	stash []waitStatus

	tr        *tracer
	running   atomic.Bool
	interrupt atomic.Bool
	signalTid atomic.Int64
	// intMu orders Interrupt against the end of a wait: an interrupt
	// either reaches a running process, or finds it stopped and does
	// nothing. Without it, a SIGSTOP sent as Wait returned stayed queued
	// with nobody expecting it, and stopped the thread later as if the
	// program had been sent SIGSTOP.
	intMu      sync.Mutex
	defaultAct target.Action
	// interruptTid is the thread InterruptThread sent its SIGSTOP to.
	interruptTid atomic.Int64
	// nonStop: Resume starts only the threads named and Wait reports one
	// thread's stop without stopping the others (target.NonStop).
	nonStop bool
	// pausing: PauseAll holds the running threads stopped.
	pausing bool
	// nrunning counts the running threads, nfree those of them not
	// single-stepping (setRunning); solo is the one thread the last
	// Resume started, if it started one.
	nrunning, nfree int
	solo            int
	// vdsoSyscall is where MapCode makes its system call (0: not found
	// yet; an exec maps another vDSO).
	vdsoSyscall uint64
}

// vforkPeer is the process sharing our memory, or nil.
func (p *Process) vforkPeer() *Process {
	if p.vforkChild != nil {
		return p.vforkChild
	}
	return p.vforkParent
}

// sharedBp is the peer's record at a.
func (p *Process) sharedBp(a uint64) *breakpoint {
	if q := p.vforkPeer(); q != nil {
		return q.bps[a]
	}
	return nil
}

// inMemory says whether our int3s are in memory: not while lifted, nor
// while a vfork child runs in it.
func (p *Process) inMemory() bool { return !p.lifted && p.vforkChild == nil }

type breakpoint struct {
	orig  byte
	count int
}

type waitStatus struct {
	tid int
	ws  unix.WaitStatus
}

// tracer is the OS thread that traces a process and the fork children kept
// with it: the kernel accepts ptrace requests for a tracee only from the
// thread that traces it, and a child auto-attached at fork is traced by
// the parent's tracer. Its processes are touched only on that thread.
type tracer struct {
	work chan func()
	done chan struct{}
	// procs are the live processes it traces, for routing wait statuses;
	// refs counts those not closed (guarded by mu: Close runs anywhere).
	procs []*Process
	mu    sync.Mutex
	refs  int
}

var (
	_ target.Target        = (*Process)(nil)
	_ target.ThreadControl = (*Process)(nil)
	_ target.ForkFollower  = (*Process)(nil)
	_ target.NonStop       = (*Process)(nil)
)

func newProcess() *Process {
	tr := &tracer{work: make(chan func()), done: make(chan struct{}), refs: 1}
	go tr.serve()
	return newTraced(tr)
}

func newTraced(tr *tracer) *Process {
	p := &Process{
		threads:    map[int]*threadState{},
		bps:        map[uint64]*breakpoint{},
		earlyForks: map[int]unix.WaitStatus{},
		forked:     map[int]*Process{},
		tr:         tr,
	}
	return p
}

// serve owns the tracer thread: ptrace requests are only valid from the
// thread that attached, so every call funnels through here.
func (tr *tracer) serve() {
	runtime.LockOSThread()
	// Never unlock: the thread dies with the goroutine, taking its tracer
	// identity with it, rather than being reused by an unrelated goroutine.
	for f := range tr.work {
		f()
	}
	close(tr.done)
}

// owner returns the process of tr that has thread tid, or nil.
func (tr *tracer) owner(tid int) *Process {
	for _, q := range tr.procs {
		// An exited process's pid may be reused by a new child.
		if !q.exited && (q.pid == tid || q.threads[tid] != nil) {
			return q
		}
	}
	return nil
}

func (tr *tracer) drop(p *Process) {
	for i, q := range tr.procs {
		if q == p {
			tr.procs = append(tr.procs[:i], tr.procs[i+1:]...)
			return
		}
	}
}

// Do runs f on the tracer thread.
func (p *Process) Do(f func()) {
	ch := make(chan struct{})
	p.tr.work <- func() { defer close(ch); f() }
	<-ch
}

// Close releases the process. The tracer thread ends with the last
// process it traces. The process must be killed or detached.
func (p *Process) Close() {
	n := 1
	p.Do(func() {
		p.tr.drop(p)
		// Children never handed over go as a fork child always did:
		// clean and untraced.
		for pid, c := range p.forked {
			c.Detach()
			c.mem.Close()
			p.tr.drop(c)
			delete(p.forked, pid)
			n++
		}
	})
	p.tr.mu.Lock()
	p.tr.refs -= n
	last := p.tr.refs == 0
	p.tr.mu.Unlock()
	if last {
		close(p.tr.work)
		<-p.tr.done
	}
	if p.mem != nil {
		p.mem.Close()
	}
}

// Launch starts a program stopped at its first instruction (the dynamic
// linker's entry for a dynamic executable), as gdbserver does.
func Launch(opts LaunchOptions) (*Process, error) {
	p := newProcess()
	var err error
	p.Do(func() { err = p.launch(opts) })
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Process) launch(opts LaunchOptions) error {
	path := opts.Path
	if !strings.Contains(path, "/") {
		if lp, err := lookPath(path); err == nil {
			path = lp
		}
	}
	files := []uintptr{0, 1, 2}
	for i, f := range []*os.File{opts.Stdin, opts.Stdout, opts.Stderr} {
		if f != nil {
			files[i] = f.Fd()
		}
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	attr := &syscall.ProcAttr{
		Dir:   opts.Dir,
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Ptrace: true, Setpgid: true},
	}
	if !opts.KeepASLR {
		// The child inherits the forking thread's personality; restore ours
		// right after.
		old, _, errno := syscall.RawSyscall(syscall.SYS_PERSONALITY, 0xffffffff, 0, 0)
		if errno == 0 {
			syscall.RawSyscall(syscall.SYS_PERSONALITY, old|addrNoRandomize, 0, 0)
			defer syscall.RawSyscall(syscall.SYS_PERSONALITY, old, 0, 0)
		}
	}
	pid, err := syscall.ForkExec(path, append([]string{opts.Path}, opts.Args...), attr)
	if err != nil {
		return fmt.Errorf("starting %s: %w", opts.Path, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("waiting for %s to start: %w", opts.Path, err)
	}
	if !ws.Stopped() {
		return fmt.Errorf("%s did not stop at exec (status %#x)", opts.Path, uint32(ws))
	}
	p.pid = pid
	if err := p.setOptions(pid, true); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	p.addThread(pid)
	p.tr.procs = append(p.tr.procs, p)
	return p.openMem()
}

// Attach stops and traces every thread of a running process.
func Attach(pid int) (*Process, error) {
	p := newProcess()
	var err error
	p.Do(func() { err = p.attach(pid) })
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Process) attach(pid int) error {
	p.pid = pid
	p.tr.procs = append(p.tr.procs, p)
	// Threads can be created while we attach: list until nothing is new.
	for round := 0; ; round++ {
		tids, err := listTasks(pid)
		if err != nil {
			return fmt.Errorf("attaching to %d: %w", pid, err)
		}
		added := false
		for _, tid := range tids {
			if _, ok := p.threads[tid]; ok {
				continue
			}
			if err := unix.PtraceAttach(tid); err != nil {
				if tid == pid {
					return fmt.Errorf("attaching to %d: %w", pid, err)
				}
				continue // the thread exited meanwhile
			}
			if err := p.waitAttachStop(tid); err != nil {
				continue
			}
			if err := p.setOptions(tid, false); err != nil {
				return err
			}
			p.addThread(tid)
			added = true
		}
		if !added || round > 100 {
			break
		}
	}
	return p.openMem()
}

// waitAttachStop waits for the SIGSTOP of PTRACE_ATTACH; other signals that
// arrive first are re-queued to the thread so none is lost.
func (p *Process) waitAttachStop(tid int) error {
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			return target.ErrExited
		}
		if ws.Stopped() && ws.StopSignal() == unix.SIGSTOP {
			return nil
		}
		if ws.Stopped() {
			unix.PtraceCont(tid, int(ws.StopSignal()))
		}
	}
}

func (p *Process) setOptions(tid int, launched bool) error {
	// Forks are traced only to be let go cleanly: a child that inherited
	// our int3s would die of SIGTRAP at the first one it meets.
	opts := unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEEXEC |
		unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_TRACEVFORKDONE |
		unix.PTRACE_O_TRACESYSGOOD
	if launched {
		opts |= unix.PTRACE_O_EXITKILL
	}
	if err := unix.PtraceSetOptions(tid, opts); err != nil {
		return fmt.Errorf("setting ptrace options of %d: %w", tid, err)
	}
	return nil
}

func (p *Process) openMem() error {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", p.pid), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening memory of %d: %w", p.pid, err)
	}
	p.mem = f
	p.exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid))
	return nil
}

func (p *Process) addThread(tid int) *threadState {
	t := &threadState{tid: tid}
	p.threads[tid] = t
	p.order = append(p.order, tid)
	for i, v := range p.debugReg {
		if v != 0 && i != 6 {
			pokeUser(tid, debugRegOffset+8*i, v)
		}
	}
	return t
}

func (p *Process) removeThread(tid int) {
	if t := p.threads[tid]; t != nil {
		p.setRunning(t, false)
	}
	delete(p.threads, tid)
	for i, t := range p.order {
		if t == tid {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
}

func (p *Process) Pid() int         { return p.pid }
func (p *Process) ExecPath() string { return p.exe }

func (p *Process) Threads() []int { return append([]int(nil), p.order...) }

func (p *Process) Regs(tid int) (target.Regs, error) {
	t := p.threads[tid]
	if t != nil && t.regsValid {
		return t.regs, nil
	}
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		if err == unix.ESRCH && t != nil {
			// Killed while stopped: it is dying, and the next Wait reaps it.
			p.setRunning(t, true)
		}
		return target.Regs{}, fmt.Errorf("reading registers of %d: %w", tid, err)
	}
	regs := target.Regs{
		R15: r.R15, R14: r.R14, R13: r.R13, R12: r.R12, Rbp: r.Rbp, Rbx: r.Rbx,
		R11: r.R11, R10: r.R10, R9: r.R9, R8: r.R8, Rax: r.Rax, Rcx: r.Rcx,
		Rdx: r.Rdx, Rsi: r.Rsi, Rdi: r.Rdi, OrigRax: r.Orig_rax, Rip: r.Rip,
		Cs: r.Cs, Eflags: r.Eflags, Rsp: r.Rsp, Ss: r.Ss, FsBase: r.Fs_base,
		GsBase: r.Gs_base, Ds: r.Ds, Es: r.Es, Fs: r.Fs, Gs: r.Gs,
	}
	if t != nil && !t.running {
		t.regs, t.regsValid = regs, true
	}
	return regs, nil
}

// SetRegs writes a stopped thread's registers when it is next resumed or
// let go (flushRegs): a breakpoint's PC rewound at the stop and then moved
// again before the thread runs costs one PTRACE_SETREGS, not two.
func (p *Process) SetRegs(tid int, g target.Regs) error {
	if t := p.threads[tid]; t != nil && !t.running {
		t.regs, t.regsValid, t.regsDirty = g, true, true
		return nil
	}
	return p.writeRegs(tid, g)
}

// flushRegs writes registers SetRegs left for t's resumption.
func (p *Process) flushRegs(t *threadState) error {
	if !t.regsDirty {
		return nil
	}
	t.regsDirty = false
	return p.writeRegs(t.tid, t.regs)
}

func (p *Process) writeRegs(tid int, g target.Regs) error {
	r := unix.PtraceRegs{
		R15: g.R15, R14: g.R14, R13: g.R13, R12: g.R12, Rbp: g.Rbp, Rbx: g.Rbx,
		R11: g.R11, R10: g.R10, R9: g.R9, R8: g.R8, Rax: g.Rax, Rcx: g.Rcx,
		Rdx: g.Rdx, Rsi: g.Rsi, Rdi: g.Rdi, Orig_rax: g.OrigRax, Rip: g.Rip,
		Cs: g.Cs, Eflags: g.Eflags, Rsp: g.Rsp, Ss: g.Ss, Fs_base: g.FsBase,
		Gs_base: g.GsBase, Ds: g.Ds, Es: g.Es, Fs: g.Fs, Gs: g.Gs,
	}
	if err := unix.PtraceSetRegs(tid, &r); err != nil {
		if t := p.threads[tid]; t != nil {
			t.regsValid = false
		}
		return fmt.Errorf("writing registers of %d: %w", tid, err)
	}
	if t := p.threads[tid]; t != nil {
		t.regs, t.regsValid = g, true
	}
	return nil
}

func (p *Process) FPRegs(tid int) ([]byte, error) {
	buf := make([]byte, xsaveMax)
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid), ntX86Xstate, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("reading vector registers of %d: %w", tid, errno)
	}
	return buf[:iov.Len], nil
}

func (p *Process) SetFPRegs(tid int, xsave []byte) error {
	if len(xsave) == 0 {
		return errors.New("empty xsave area")
	}
	iov := unix.Iovec{Base: &xsave[0], Len: uint64(len(xsave))}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid), ntX86Xstate, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if errno != 0 {
		return fmt.Errorf("writing vector registers of %d: %w", tid, errno)
	}
	return nil
}

// ReadMemory reads through /proc/pid/mem: one pread for the common case,
// page by page only when part of the range is unreadable.
func (p *Process) ReadMemory(addr uint64, buf []byte) (int, error) {
	if p.exited {
		return 0, target.ErrExited
	}
	n, err := p.mem.ReadAt(buf, int64(addr))
	if err != nil && n < len(buf) {
		n = p.readPartial(addr, buf)
		if n == 0 {
			return 0, fmt.Errorf("reading memory at %#x: %w", addr, err)
		}
	}
	for a, bp := range p.bps {
		if a >= addr && a < addr+uint64(n) {
			buf[a-addr] = bp.orig
		}
	}
	if q := p.vforkPeer(); q != nil {
		// The int3s of the process we share memory with are no more ours
		// to show than to hit.
		for a, bp := range q.bps {
			if a >= addr && a < addr+uint64(n) {
				buf[a-addr] = bp.orig
			}
		}
	}
	return n, nil
}

func (p *Process) readPartial(addr uint64, buf []byte) int {
	total := 0
	for total < len(buf) {
		a := addr + uint64(total)
		chunk := int(4096 - a%4096)
		if chunk > len(buf)-total {
			chunk = len(buf) - total
		}
		n, _ := p.mem.ReadAt(buf[total:total+chunk], int64(a))
		total += n
		if n < chunk {
			break
		}
	}
	return total
}

func (p *Process) WriteMemory(addr uint64, data []byte) (int, error) {
	if p.exited {
		return 0, target.ErrExited
	}
	buf := data
	for a, bp := range p.bps {
		if a >= addr && a < addr+uint64(len(data)) {
			if &buf[0] == &data[0] {
				buf = append([]byte(nil), data...)
			}
			bp.orig = data[a-addr]
			if p.inMemory() {
				buf[a-addr] = 0xcc
			}
		}
	}
	if q := p.vforkPeer(); q != nil {
		for a, bp := range q.bps {
			if a >= addr && a < addr+uint64(len(data)) {
				if &buf[0] == &data[0] {
					buf = append([]byte(nil), data...)
				}
				bp.orig = data[a-addr]
				if q.inMemory() {
					buf[a-addr] = 0xcc
				}
			}
		}
	}
	n, err := p.mem.WriteAt(buf, int64(addr))
	if err != nil {
		return n, fmt.Errorf("writing memory at %#x: %w", addr, err)
	}
	return n, nil
}

func (p *Process) InsertBreakpoint(addr uint64) error {
	if bp, ok := p.bps[addr]; ok {
		bp.count++
		return nil
	}
	var orig [1]byte
	if _, err := p.mem.ReadAt(orig[:], int64(addr)); err != nil {
		return fmt.Errorf("inserting breakpoint at %#x: %w", addr, err)
	}
	if sh := p.sharedBp(addr); sh != nil {
		// The memory we share may hold its int3 there.
		orig[0] = sh.orig
	}
	if p.inMemory() {
		if _, err := p.mem.WriteAt([]byte{0xcc}, int64(addr)); err != nil {
			return fmt.Errorf("inserting breakpoint at %#x: %w", addr, err)
		}
	}
	p.bps[addr] = &breakpoint{orig: orig[0], count: 1}
	return nil
}

func (p *Process) RemoveBreakpoint(addr uint64) error {
	bp, ok := p.bps[addr]
	if !ok {
		return nil
	}
	if bp.count--; bp.count > 0 {
		return nil
	}
	delete(p.bps, addr)
	if p.exited || !p.inMemory() {
		return nil
	}
	if bp.orig != 0xcc {
		for _, t := range p.threads {
			if t.running {
				t.moribund = append(t.moribund, addr)
			}
		}
	}
	if _, err := p.mem.WriteAt([]byte{bp.orig}, int64(addr)); err != nil {
		return fmt.Errorf("removing breakpoint at %#x: %w", addr, err)
	}
	return nil
}

func (p *Process) BreakpointAt(addr uint64) bool { _, ok := p.bps[addr]; return ok }

// removeAllBreakpoints restores every original byte regardless of counts.
func (p *Process) removeAllBreakpoints() {
	p.writeOriginals(p.mem)
	for a := range p.bps {
		delete(p.bps, a)
	}
	p.lifted = false
}

// writeOriginals puts back the bytes our int3s replaced, in mem: the
// process's own memory, or a fork child's copy of it.
func (p *Process) writeOriginals(mem *os.File) {
	if p.exited || p.lifted || (mem == p.mem && !p.inMemory()) {
		return
	}
	for a, bp := range p.bps {
		mem.WriteAt([]byte{bp.orig}, int64(a))
	}
}

// Resume starts the threads. A thread that already has an event waiting
// (collected while the others were being stopped) is reported by the next
// Wait without anything being resumed, so no event is lost or reordered.
func (p *Process) Resume(actions map[int]target.Action, def target.Action) error {
	if p.exited {
		return target.ErrExited
	}
	if p.nonStop {
		return p.resumeNonStop(actions, def)
	}
	p.defaultAct = def
	order := p.order
	if def.Kind == target.Stay && len(actions) < len(order) {
		// Only the threads named run: the parked ones are not looked at.
		order = make([]int, 0, len(actions))
		for tid := range actions {
			if p.threads[tid] != nil {
				order = append(order, tid)
			}
		}
		slices.Sort(order)
	}
	for _, tid := range order {
		t := p.threads[tid]
		act, ok := actions[tid]
		if !ok {
			act = def
		}
		if t.pending != nil && isSyscallStop(*t.pending) && act.Kind != target.ContinueSyscalls && act.Kind != target.Stay {
			// Nobody asked for it any more: the call goes on.
			t.pending = nil
		}
		if t.pending != nil && act.Kind != target.Stay {
			ev := *t.pending
			t.pending = nil
			p.queued = append(p.queued, ev)
			return nil
		}
	}
	first, started := 0, 0
	for _, tid := range order {
		t := p.threads[tid]
		act, ok := actions[tid]
		if !ok {
			act = def
		}
		if act.Kind == target.Stay {
			continue
		}
		if err := p.startThread(t, act); err != nil {
			return err
		}
		if first == 0 {
			first = tid
		}
		started++
	}
	p.solo = 0
	if started == 1 {
		p.solo = first
	}
	if first == 0 {
		return errors.New("resume: no thread to run")
	}
	p.signalTid.Store(int64(first))
	p.running.Store(true)
	return nil
}

// startThread resumes t for a Resume. A thread killed while stopped
// cannot be resumed but is dying, and Wait reports its end: it counts as
// running.
func (p *Process) startThread(t *threadState, act target.Action) error {
	err := p.resumeThread(t, act)
	if errors.Is(err, unix.ESRCH) {
		p.setRunning(t, true)
		return nil
	}
	return err
}

func (p *Process) resumeThread(t *threadState, act target.Action) error {
	var err error
	if err := p.flushRegs(t); err != nil {
		return fmt.Errorf("resuming thread %d: %w", t.tid, err)
	}
	t.last = act
	t.stepFrom = 0
	if act.Kind == target.Step && t.regsValid {
		t.stepFrom = t.regs.Rip
	}
	t.regsValid = false
	t.stepping = act.Kind == target.Step
	switch {
	case t.stepping:
		err = ptraceRequest(unix.PTRACE_SINGLESTEP, t.tid, act.Sig)
	case act.Kind == target.ContinueSyscalls:
		err = ptraceRequest(unix.PTRACE_SYSCALL, t.tid, act.Sig)
	default:
		err = unix.PtraceCont(t.tid, act.Sig)
	}
	if err != nil {
		return fmt.Errorf("resuming thread %d: %w", t.tid, err)
	}
	p.setRunning(t, true)
	return nil
}

// ForgetStep drops a single-step completion kept for tid. A step over the
// program's own int3 is its SIGTRAP, not only a step: that one stays, as
// the program's signal.
func (p *Process) ForgetStep(tid int) {
	t := p.threads[tid]
	if t == nil || t.pending == nil || t.pending.Trap != target.TrapStep {
		return
	}
	if t.stepFrom != 0 && !p.BreakpointAt(t.stepFrom) {
		var b [1]byte
		if n, _ := p.mem.ReadAt(b[:], int64(t.stepFrom)); n == 1 && b[0] == 0xcc {
			t.pending.Trap = target.TrapOther
			return
		}
	}
	t.pending = nil
}

// Interrupt stops a running process; the stop is reported by Wait with
// Async set. Safe from any goroutine.
func (p *Process) Interrupt() {
	p.intMu.Lock()
	defer p.intMu.Unlock()
	if !p.running.Load() {
		return
	}
	p.interrupt.Store(true)
	tid := int(p.signalTid.Load())
	if tid == 0 {
		tid = p.pid
	}
	unix.Tgkill(p.pid, tid, unix.SIGSTOP)
}

// takeInterrupt reports whether our own SIGSTOP that tid just reported
// also stands for a pending interrupt of tid: it merged with the
// interrupt's, or the interrupt's was sent after it was taken off the
// queue and still waits there (then not). Another thread's interrupt is
// its own SIGSTOP: taken for this one, it stopped its thread later as if
// the program had been sent SIGSTOP. Under intMu, so that no interrupt is
// between setting its flag and sending its signal.
func (p *Process) takeInterrupt(tid int) bool {
	p.intMu.Lock()
	defer p.intMu.Unlock()
	if !p.interrupt.Load() || tid != int(p.signalTid.Load()) || p.sigstopQueued(tid) {
		return false
	}
	p.interrupt.Store(false)
	return true
}

// interruptStop reports whether a SIGSTOP t reported, not one of ours, is
// an interrupt's. Interrupts repeated until the stop (as front ends do)
// each send one: one sent after this one was taken off the queue waits
// there, and is ours to swallow. Under intMu, as takeInterrupt.
func (p *Process) interruptStop(t *threadState) bool {
	p.intMu.Lock()
	defer p.intMu.Unlock()
	if !p.interrupt.Swap(false) {
		return false
	}
	if p.sigstopQueued(t.tid) {
		t.sigstopPending = true
	}
	return true
}

func (p *Process) anyRunning() bool { return p.nrunning > 0 }

// setRunning records that t runs or has stopped. The counts it keeps
// answer Wait's questions (is any thread running, is every running thread
// single-stepping) after every stop without a look at each thread, which
// with hundreds of parked threads cost as much as the step.
func (p *Process) setRunning(t *threadState, on bool) {
	if t.running == on {
		return
	}
	t.running = on
	if on {
		p.nrunning++
		t.free = !t.stepping
		if t.free {
			p.nfree++
		}
		return
	}
	p.nrunning--
	if t.free {
		p.nfree--
		t.free = false
	}
}

// Wait returns the next event with every thread stopped.
func (p *Process) Wait() (target.Event, error) {
	if p.nonStop {
		ev, _, err := p.waitNonStop(true)
		p.running.Store(false)
		return ev, err
	}
	ev, err := p.wait()
	p.settleInterrupt()
	return ev, err
}

// settleInterrupt ends the window in which Interrupt acts. An interrupt
// that lost the race with the event being reported left its SIGSTOP
// queued on its thread: that thread swallows it when it shows up (if it
// is still running, stopAll waits for that very SIGSTOP, with which its
// own would merge).
func (p *Process) settleInterrupt() {
	p.intMu.Lock()
	defer p.intMu.Unlock()
	p.running.Store(false)
	if p.interrupt.Swap(false) {
		if t := p.threads[int(p.signalTid.Load())]; t != nil {
			t.sigstopPending = true
		}
	}
}

func (p *Process) wait() (target.Event, error) {
	if len(p.queued) > 0 {
		ev := p.queued[0]
		p.queued = p.queued[1:]
		return ev, nil
	}
	if p.exited {
		return target.Event{}, target.ErrExited
	}
	for {
		var ws unix.WaitStatus
		tid, err := 0, error(nil)
		if len(p.stash) > 0 {
			// Reaped by another process's wait while we were stopped.
			tid, ws = p.stash[0].tid, p.stash[0].ws
			p.stash = p.stash[1:]
		} else if !p.anyRunning() {
			return target.Event{}, errors.New("wait: no thread is running")
		} else {
			tid, err = p.wait4(&ws)
		}
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.ECHILD {
				p.exited = true
				return target.Event{Kind: target.EventSignaled, Sig: int(unix.SIGKILL)}, nil
			}
			return target.Event{}, fmt.Errorf("waiting for %d: %w", p.pid, err)
		}
		ev, report := p.handleStatus(tid, ws, false)
		if !report {
			continue
		}
		if ev.Kind == target.EventExited || ev.Kind == target.EventSignaled {
			return ev, nil
		}
		if ev.Kind == target.EventThreadExited {
			if p.anyRunning() {
				continue
			}
			return ev, nil
		}
		p.settleInterrupt()
		if err := p.stopAll(); err != nil {
			return ev, err
		}
		return ev, nil
	}
}

// wait4 waits for any of our tracees. When the only running thread is
// single-stepping the wait lasts one instruction, and a raw system call
// spares the runtime's syscall bookkeeping: sysmon would otherwise hand our
// P away after 20 µs and the return would have to win it back, a cost paid
// on every step.
//
// When one thread runs alone, the wait names it: the kernel then looks at
// that thread only, instead of at every tracee (hundreds of parked threads
// cost more than the step). The others are stopped and report nothing.
// Not with fork children kept beside the process: statuses of theirs that
// come first (the initial stop of a new one) must not wait behind ours.
func (p *Process) wait4(ws *unix.WaitStatus) (int, error) {
	who := -1
	if t := p.threads[p.solo]; p.solo != 0 && p.nrunning == 1 && t != nil && t.running && len(p.tr.procs) == 1 {
		who = p.solo
	}
	if p.nfree > 0 {
		return unix.Wait4(who, ws, unix.WALL|unix.WNOTHREAD, nil)
	}
	r, _, errno := unix.RawSyscall6(unix.SYS_WAIT4, uintptr(who), uintptr(unsafe.Pointer(ws)), unix.WALL|unix.WNOTHREAD, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// handleStatus digests one wait status. report says whether it is an event
// for the caller; otherwise the thread was resumed again or bookkeeping was
// done. During stopAll (stopping), stops are recorded instead of resumed.
func (p *Process) handleStatus(tid int, ws unix.WaitStatus, stopping bool) (target.Event, bool) {
	t := p.threads[tid]
	if t == nil && tid != p.pid {
		if q := p.tr.owner(tid); q != nil && q != p {
			// A thread of a fork child we kept: its own Wait reports it.
			q.stash = append(q.stash, waitStatus{tid, ws})
			return target.Event{}, false
		}
	}
	if t == nil && tid != p.pid && !p.inThreadGroup(tid) {
		// A fork child whose initial stop came before its parent's fork
		// event: it keeps our int3s until that event lets it go.
		if ws.Stopped() {
			p.earlyForks[tid] = ws
		}
		return target.Event{}, false
	}
	switch {
	case ws.Exited() || ws.Signaled():
		if tid == p.pid || len(p.threads) <= 1 {
			// A vfork child's memory lives on in its parent (and a
			// parent's in its child): our int3s leave it.
			p.unshare(p.mem)
			p.exited = true
			p.removeAllBreakpoints()
			if t != nil {
				p.removeThread(tid)
			}
			for _, o := range p.threads {
				p.setRunning(o, false)
			}
			if ws.Exited() {
				return target.Event{Kind: target.EventExited, Tid: tid, Code: ws.ExitStatus()}, true
			}
			return target.Event{Kind: target.EventSignaled, Tid: tid, Sig: int(ws.Signal())}, true
		}
		if t != nil {
			p.removeThread(tid)
		}
		return target.Event{Kind: target.EventThreadExited, Tid: tid}, true
	case !ws.Stopped():
		return target.Event{}, false
	}
	if t == nil {
		// A new thread whose initial stop arrived before its parent's clone
		// event: it is traced and stopped; keep it so.
		nt := p.addThread(tid)
		if ws.StopSignal() == unix.SIGSTOP {
			return target.Event{}, false
		}
		nt.pending = &target.Event{Kind: target.EventStop, Tid: tid, Sig: int(ws.StopSignal())}
		return target.Event{}, false
	}
	p.setRunning(t, false)
	sig := ws.StopSignal()
	if sig == unix.SIGTRAP|0x80 {
		ev := syscallStop(t.tid)
		if stopping {
			t.pending = &ev
			return target.Event{}, false
		}
		return ev, true
	}
	if sig == unix.SIGTRAP && ws.TrapCause() > 0 {
		switch ws.TrapCause() {
		case unix.PTRACE_EVENT_CLONE:
			msg, err := unix.PtraceGetEventMsg(tid)
			if err == nil {
				p.newThread(int(msg), t, stopping)
			}
		case unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
			msg, err := unix.PtraceGetEventMsg(tid)
			vfork := ws.TrapCause() == unix.PTRACE_EVENT_VFORK
			keep := p.keepForks
			if vfork {
				// One vfork child shares our memory at a time: a second
				// (another thread's) goes as one never kept.
				keep = p.keepVforks && p.vforkChild == nil && !p.lifted
			}
			if err == nil && keep {
				if c := p.keepChild(int(msg), vfork); c != nil {
					ev := target.Event{Kind: target.EventFork, Tid: tid, Sig: int(unix.SIGTRAP), Child: c.pid, Vfork: vfork}
					t.vforked = vfork
					if stopping {
						t.pending = &ev
						return target.Event{}, false
					}
					return ev, true
				}
			} else if err == nil {
				p.releaseChild(int(msg), vfork)
			}
		case unix.PTRACE_EVENT_VFORK_DONE:
			if c := p.vforkChild; c != nil {
				// The child exec'd or exited, and we have not seen it
				// yet: its int3s leave what is now our memory alone.
				c.unshare(p.mem)
			}
			p.reinsertBreakpoints()
			if t.vforked {
				t.vforked = false
				if p.reportVforkDone {
					ev := target.Event{Kind: target.EventVforkDone, Tid: tid, Sig: int(unix.SIGTRAP)}
					if stopping {
						t.pending = &ev
						return target.Event{}, false
					}
					return ev, true
				}
			}
		case unix.PTRACE_EVENT_EXEC:
			return p.handleExec(tid), true
		}
		if !stopping {
			p.resumeThread(t, t.last)
		}
		return target.Event{}, false
	}
	if sig == unix.SIGSTOP {
		if t.sigstopPending && t.stopRequested {
			// StopThread's stop: the client asked for it.
			t.sigstopPending, t.stopRequested = false, false
			ev := target.Event{Kind: target.EventStop, Tid: tid, Sig: int(unix.SIGSTOP), Async: true}
			if stopping {
				t.pending = &ev
				return target.Event{}, false
			}
			return ev, true
		}
		if t.sigstopPending {
			t.sigstopPending = false
			if !stopping {
				if p.takeInterrupt(tid) {
					return target.Event{Kind: target.EventStop, Tid: tid, Sig: int(unix.SIGSTOP), Async: true}, true
				}
				p.resumeThread(t, t.last)
			}
			return target.Event{}, false
		}
		if p.interruptStop(t) {
			ev := target.Event{Kind: target.EventStop, Tid: tid, Sig: int(unix.SIGSTOP), Async: true}
			if stopping {
				t.pending = &ev
				return target.Event{}, false
			}
			return ev, true
		}
	}
	ev := p.classify(t, sig)
	// Any stop satisfies a stop request; its SIGSTOP, still to come, is
	// swallowed (sigstopPending stays set).
	requested := t.stopRequested
	t.stopRequested = false
	if stopping {
		if ev.Trap == target.TrapBreakpoint {
			// Cancel it, as gdbserver does: the PC is already rewound, so
			// the thread executes the int3 again if it is still there. A
			// cancelled stop satisfies no request.
			t.stopRequested = requested
			return target.Event{}, false
		}
		t.pending = &ev
		return target.Event{}, false
	}
	return ev, true
}

func (p *Process) newThread(tid int, parent *threadState, stopping bool) {
	nt, known := p.threads[tid]
	if !known {
		// Its initial SIGSTOP is still to come.
		nt = p.addThread(tid)
		p.setRunning(nt, true)
		nt.sigstopPending = true
		var ws unix.WaitStatus
		if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err == nil && ws.Stopped() {
			p.setRunning(nt, false)
			nt.sigstopPending = ws.StopSignal() != unix.SIGSTOP
		} else if err == nil {
			p.removeThread(tid)
			return
		}
	}
	if p.nonStop {
		// A client in non-stop mode takes a thread it did not see stop
		// for running (gdb does), so it runs, unless the others are
		// held by a pause, which it then joins.
		if stopping || p.pausing {
			nt.paused = true
			return
		}
		p.resumeThread(nt, target.Action{Kind: target.Continue})
		return
	}
	// The new thread runs when its parent is running freely with the
	// others; during a solo step or region run it stays stopped.
	if !stopping && parent.last.Kind == target.Continue && p.defaultAct.Kind == target.Continue {
		p.resumeThread(nt, target.Action{Kind: target.Continue})
	}
}

// inThreadGroup tells a thread of ours from a fork child, which ptrace
// reports to us as well: tgkill with signal 0 finds tid only among our
// threads.
func (p *Process) inThreadGroup(tid int) bool {
	return unix.Tgkill(p.pid, tid, 0) == nil
}

// releaseChild lets a fork or vfork child go as gdbserver does: with none of
// our int3s in its memory, and untraced. A vfork child shares the parent's
// memory until it execs or exits, so the int3s leave that memory until the
// parent's VFORK_DONE puts them back; a fork child gets its own copy
// cleaned. Debug registers and single-stepping are not inherited.
func (p *Process) releaseChild(child int, vfork bool) {
	ws, seen := p.earlyForks[child]
	delete(p.earlyForks, child)
	if !seen {
		if _, err := unix.Wait4(child, &ws, unix.WALL, nil); err != nil {
			slog.Warn("waiting for a forked child", "pid", child, "err", err)
			return
		}
	}
	if !ws.Stopped() {
		return
	}
	if vfork {
		p.liftBreakpoints()
	} else if len(p.bps) > 0 {
		mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", child), os.O_RDWR, 0)
		if err != nil {
			slog.Warn("cleaning a forked child's breakpoints", "pid", child, "err", err)
		} else {
			p.writeOriginals(mem)
			mem.Close()
		}
	}
	if s := ws.StopSignal(); s != unix.SIGSTOP {
		// A signal beat the child's initial SIGSTOP: hand it on, and take
		// the SIGSTOP still pending, or the child would stop for good once
		// untraced.
		drainChildSigstop(child, int(s))
	}
	if err := ptraceRequest(unix.PTRACE_DETACH, child, 0); err != nil && err != unix.ESRCH {
		slog.Warn("detaching a forked child", "pid", child, "err", err)
	}
}

// keepChild takes a fork child under control instead of releasing it: it
// stays stopped, traced by our tracer thread, with our int3s still in its
// copy of memory and recorded as inserted there (ForkChild). nil when the
// child is already gone.
//
// A vfork child shares our memory: the two are linked (vforkChild,
// vforkParent) until unshare.
func (p *Process) keepChild(child int, vfork bool) *Process {
	ws, seen := p.earlyForks[child]
	delete(p.earlyForks, child)
	if !seen {
		if _, err := unix.Wait4(child, &ws, unix.WALL, nil); err != nil {
			slog.Warn("waiting for a forked child", "pid", child, "err", err)
			return nil
		}
	}
	if !ws.Stopped() {
		return nil
	}
	c := newTraced(p.tr)
	c.pid, c.keepForks = child, p.keepForks
	c.keepVforks, c.reportVforkDone = p.keepVforks, p.reportVforkDone
	ct := c.addThread(child)
	if s := ws.StopSignal(); s != unix.SIGSTOP {
		// A signal beat the child's initial SIGSTOP: that signal is its
		// first stop, and the SIGSTOP still to come is swallowed.
		ct.sigstopPending = true
		ct.pending = &target.Event{Kind: target.EventStop, Tid: child, Sig: int(s)}
	}
	if !p.lifted {
		for a, bp := range p.bps {
			c.bps[a] = &breakpoint{orig: bp.orig, count: bp.count}
		}
	}
	if err := c.openMem(); err != nil {
		slog.Warn("keeping a forked child", "pid", child, "err", err)
		c.bps = map[uint64]*breakpoint{}
		if vfork {
			p.liftBreakpoints()
		}
		p.releaseStopped(child, ws)
		return nil
	}
	p.tr.procs = append(p.tr.procs, c)
	p.tr.mu.Lock()
	p.tr.refs++
	p.tr.mu.Unlock()
	p.forked[child] = c
	if vfork {
		p.vforkChild, c.vforkParent = c, p
	}
	return c
}

// unshare ends the sharing of memory between a vfork child and its parent
// as p leaves it: the child exec'd or exited (seen by either), or p is let
// go. mem is p's last view of the shared memory (a child's, opened before
// its exec, still reaches it). What is left there gets exactly the int3s
// of the other process, if it goes on under us, and none of p's. A
// parent detached meanwhile is let go now, clean.
func (p *Process) unshare(mem *os.File) {
	q := p.vforkPeer()
	if q == nil {
		return
	}
	if mem != nil {
		// After the link, q's int3s are in memory unless lifted.
		stays := !q.exited && !q.lifted
		for _, recs := range []map[uint64]*breakpoint{p.bps, q.bps} {
			for a, bp := range recs {
				b := bp.orig
				if qb := q.bps[a]; qb != nil && stays {
					b = 0xcc
				}
				if _, err := mem.WriteAt([]byte{b}, int64(a)); err != nil {
					slog.Debug("leaving vfork-shared memory", "pid", p.pid, "addr", a, "err", err)
				}
			}
		}
	}
	p.vforkChild, p.vforkParent, q.vforkChild, q.vforkParent = nil, nil, nil, nil
	for _, x := range []*Process{p, q} {
		if x.detachLater {
			x.detachLater = false
			if err := x.detachThreads(); err != nil {
				slog.Warn("detaching a vfork parent", "pid", x.pid, "err", err)
			}
		}
	}
}

// releaseStopped lets go of a stopped fork child whose memory we could not
// open: it keeps our int3s, which is what releaseChild exists to avoid, so
// it is said.
func (p *Process) releaseStopped(child int, ws unix.WaitStatus) {
	if len(p.bps) > 0 {
		slog.Warn("a forked child keeps the debugger's breakpoints", "pid", child)
	}
	if s := ws.StopSignal(); s != unix.SIGSTOP {
		drainChildSigstop(child, int(s))
	}
	ptraceRequest(unix.PTRACE_DETACH, child, 0)
}

// KeepForks makes fork children stay traced and reported (EventFork)
// instead of being released.
func (p *Process) KeepForks(on bool) { p.keepForks = on }

// KeepVforks does so for vfork children (see target.ForkFollower).
func (p *Process) KeepVforks(on, reportDone bool) {
	p.keepVforks, p.reportVforkDone = on, on && reportDone
}

// ForkChild hands over a fork child EventFork reported (see
// target.ForkFollower).
func (p *Process) ForkChild(pid int) (target.Target, func() error, error) {
	c := p.forked[pid]
	if c == nil {
		return nil, nil, fmt.Errorf("process %d is no fork child kept by %d", pid, p.pid)
	}
	delete(p.forked, pid)
	inherited := map[uint64]int{}
	for a, bp := range c.bps {
		inherited[a] = bp.count
	}
	drop := func() error {
		var first error
		for a, n := range inherited {
			for i := 0; i < n; i++ {
				if err := c.RemoveBreakpoint(a); err != nil && first == nil {
					first = fmt.Errorf("dropping the breakpoints process %d inherited: %w", pid, err)
				}
			}
		}
		inherited = nil
		return first
	}
	return c, drop, nil
}

// drainChildSigstop resumes a new child with sig until its initial SIGSTOP
// shows, passing on any other signal; bounded like drainSigstop.
func drainChildSigstop(child, sig int) {
	for i := 0; i < 100; i++ {
		if err := unix.PtraceCont(child, sig); err != nil {
			return
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(child, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			return
		}
		if ws.StopSignal() == unix.SIGSTOP {
			return
		}
		sig = int(ws.StopSignal())
	}
}

// liftBreakpoints takes every int3 out of memory, keeping the records.
func (p *Process) liftBreakpoints() {
	p.writeOriginals(p.mem)
	p.lifted = true
}

// reinsertBreakpoints undoes liftBreakpoints once the vfork child no
// longer shares our memory.
func (p *Process) reinsertBreakpoints() {
	if !p.lifted || p.exited {
		return
	}
	p.lifted = false
	for a, bp := range p.bps {
		var cur [1]byte
		if _, err := p.mem.ReadAt(cur[:], int64(a)); err == nil {
			// The program may have written code there meanwhile.
			bp.orig = cur[0]
		}
		p.mem.WriteAt([]byte{0xcc}, int64(a))
	}
}

func (p *Process) handleExec(tid int) target.Event {
	// A vfork child leaves its parent's memory, which our old handle on
	// it still reaches, with none of our int3s in it.
	p.unshare(p.mem)
	// Every other thread is gone and the old image with our breakpoints.
	for k := range p.bps {
		delete(p.bps, k)
	}
	p.lifted = false
	p.vdsoSyscall = 0
	for _, o := range p.order {
		if o != p.pid {
			delete(p.threads, o)
		}
	}
	p.order = []int{p.pid}
	if tid != p.pid {
		delete(p.threads, tid)
	}
	p.threads[p.pid] = &threadState{tid: p.pid}
	p.nrunning, p.nfree = 0, 0
	if p.mem != nil {
		p.mem.Close()
	}
	p.openMem()
	return target.Event{Kind: target.EventExec, Tid: p.pid, Sig: int(unix.SIGTRAP)}
}

func (p *Process) classify(t *threadState, sig unix.Signal) target.Event {
	moribund := t.moribund
	t.moribund = nil
	ev := target.Event{Kind: target.EventStop, Tid: t.tid, Sig: int(sig)}
	if sig != unix.SIGTRAP {
		return ev
	}
	if t.stepping && p.debugReg[7] == 0 {
		// With no debug register armed a stepping thread's SIGTRAP is the
		// step, or the stepped instruction was itself a trap (int3): the
		// caller knows the instruction and tells the two apart. Skipping
		// PTRACE_GETSIGINFO and DR6 saves system calls on every step.
		ev.Trap = target.TrapStep
		return ev
	}
	if !t.stepping && p.debugReg[7] == 0 {
		// A running thread stopped right after an int3 of ours executed
		// it: a kill(SIGTRAP) landing there would merge with its trap.
		// Skipping PTRACE_GETSIGINFO saves a system call per hit of a
		// hot breakpoint.
		if regs, err := p.Regs(t.tid); err == nil && p.BreakpointAt(regs.Rip-1) {
			regs.Rip--
			p.SetRegs(t.tid, regs)
			ev.Trap, ev.Addr = target.TrapBreakpoint, regs.Rip
			return ev
		}
	}
	info, err := getSiginfo(t.tid)
	code := int32(0)
	if err == nil {
		code = info.Code
	}
	switch {
	case code == siKernel:
		regs, err := p.Regs(t.tid)
		if err == nil && (p.BreakpointAt(regs.Rip-1) || slices.Contains(moribund, regs.Rip-1)) {
			regs.Rip--
			p.SetRegs(t.tid, regs)
			ev.Trap, ev.Addr = target.TrapBreakpoint, regs.Rip
			return ev
		}
		ev.Trap = target.TrapOther
	case t.stepping && code == trapTrace && p.debugReg[7] == 0:
		// No debug register armed: DR6 can only say "single step".
		ev.Trap = target.TrapStep
	case code == trapHwbkpt || code == trapTrace || code == 1:
		dr6, _ := peekUser(t.tid, debugRegOffset+8*6)
		if dr6&0xf != 0 {
			ev.Trap = target.TrapWatch
			for i := 0; i < 4; i++ {
				if dr6&(1<<i) != 0 {
					ev.Addr = p.debugReg[i]
				}
			}
			pokeUser(t.tid, debugRegOffset+8*6, 0)
		} else if t.stepping || dr6&0x4000 != 0 {
			ev.Trap = target.TrapStep
		} else {
			ev.Trap = target.TrapOther
		}
	case t.stepping && err != nil:
		ev.Trap = target.TrapStep
	default:
		ev.Trap = target.TrapOther
	}
	return ev
}

// stopAll brings every running thread to a stop, keeping what they report
// for later.
func (p *Process) stopAll() error {
	if !p.anyRunning() {
		return nil
	}
	for _, t := range p.threads {
		if t.running && !t.sigstopPending {
			if err := unix.Tgkill(p.pid, t.tid, unix.SIGSTOP); err == nil {
				t.sigstopPending = true
			}
		}
	}
	for p.anyRunning() {
		var ws unix.WaitStatus
		tid, err := 0, error(nil)
		if len(p.stash) > 0 {
			tid, ws = p.stash[0].tid, p.stash[0].ws
			p.stash = p.stash[1:]
		} else {
			tid, err = unix.Wait4(-1, &ws, unix.WALL|unix.WNOTHREAD, nil)
		}
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			if err == unix.ECHILD {
				for _, t := range p.threads {
					p.setRunning(t, false)
				}
				return nil
			}
			return fmt.Errorf("stopping threads of %d: %w", p.pid, err)
		}
		ev, report := p.handleStatus(tid, ws, true)
		if report && (ev.Kind == target.EventExited || ev.Kind == target.EventSignaled) {
			p.queued = append(p.queued, ev)
			return nil
		}
		if report && ev.Kind == target.EventExec {
			p.queued = append(p.queued, ev)
		}
	}
	return nil
}

// ptraceRequest issues a resume-style request whose data is a signal.
func ptraceRequest(req int, tid int, sig int) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), 0, uintptr(sig), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// sigstopQueued reports whether a SIGSTOP waits in tid's own queue
// (SigPnd of its status).
func (p *Process) sigstopQueued(tid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", p.pid, tid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && m&(1<<(unix.SIGSTOP-1)) != 0
		}
	}
	return false
}

func isSyscallStop(ev target.Event) bool {
	return ev.Trap == target.TrapSyscallEntry || ev.Trap == target.TrapSyscallExit
}

// syscallStop describes a syscall stop (PTRACE_O_TRACESYSGOOD).
// PTRACE_GET_SYSCALL_INFO (Linux 5.3) tells entry from exit, where
// counting stops would be fooled by one collected and dropped while the
// other threads were being stopped.
func syscallStop(tid int) target.Event {
	const getSyscallInfo = 0x420e
	var info struct {
		Op   uint8
		_    [3]uint8
		Arch uint32
		IP   uint64
		SP   uint64
		Nr   uint64 // entry: the number; exit: the return value
		_    [6]uint64
	}
	ev := target.Event{Kind: target.EventStop, Tid: tid, Sig: int(unix.SIGTRAP), Trap: target.TrapSyscallExit}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, getSyscallInfo, uintptr(tid), unsafe.Sizeof(info), uintptr(unsafe.Pointer(&info)), 0, 0)
	if errno == 0 && info.Op == 1 {
		ev.Trap, ev.Syscall = target.TrapSyscallEntry, int(info.Nr)
	}
	return ev
}

type siginfo struct {
	Signo int32
	Errno int32
	Code  int32
	_     [128 - 12]byte
}

func getSiginfo(tid int) (siginfo, error) {
	var si siginfo
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(tid), 0, uintptr(unsafe.Pointer(&si)), 0, 0)
	if errno != 0 {
		return si, errno
	}
	return si, nil
}

func peekUser(tid int, off int) (uint64, error) {
	var v uint64
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, uintptr(tid), uintptr(off), uintptr(unsafe.Pointer(&v)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return v, nil
}

func pokeUser(tid int, off int, v uint64) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_POKEUSR, uintptr(tid), uintptr(off), uintptr(v), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// SetDebugReg writes a debug register in every thread (new threads get it
// when they appear: debug registers are not inherited across clone).
func (p *Process) SetDebugReg(n int, value uint64) error {
	if n < 0 || n > 7 || n == 4 || n == 5 {
		return fmt.Errorf("no debug register %d", n)
	}
	for _, tid := range p.order {
		if err := pokeUser(tid, debugRegOffset+8*n, value); err != nil {
			return fmt.Errorf("writing debug register %d of %d: %w", n, tid, err)
		}
	}
	p.debugReg[n] = value
	return nil
}

func (p *Process) Affinity(tid int) (unix.CPUSet, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &set); err != nil {
		return set, fmt.Errorf("reading the CPU affinity of %d: %w", tid, err)
	}
	return set, nil
}

func (p *Process) SetAffinity(tid int, set unix.CPUSet) error {
	if err := unix.SchedSetaffinity(tid, &set); err != nil {
		return fmt.Errorf("setting the CPU affinity of %d: %w", tid, err)
	}
	return nil
}

func (p *Process) SignalMask(tid int) (uint64, error) {
	var mask uint64
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceGetSigmask, uintptr(tid), 8, uintptr(unsafe.Pointer(&mask)), 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("reading the signal mask of %d: %w", tid, errno)
	}
	return mask, nil
}

func (p *Process) SetSignalMask(tid int, mask uint64) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceSetSigmask, uintptr(tid), 8, uintptr(unsafe.Pointer(&mask)), 0, 0)
	if errno != 0 {
		return fmt.Errorf("setting the signal mask of %d: %w", tid, errno)
	}
	return nil
}

// Asleep reads the thread's scheduler state: S (interruptible sleep) and
// D (uninterruptible) are a wait in the kernel; R is running or runnable.
func (p *Process) Asleep(tid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", p.pid, tid))
	if err != nil {
		return false, fmt.Errorf("reading the state of %d: %w", tid, err)
	}
	// The command name in parentheses may hold spaces and parentheses:
	// the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, fmt.Errorf("reading the state of %d: malformed stat %q", tid, b)
	}
	st := b[i+2]
	return st == 'S' || st == 'D', nil
}

func (p *Process) Auxv() ([]byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", p.pid))
	if err != nil {
		return nil, fmt.Errorf("reading auxv of %d: %w", p.pid, err)
	}
	return b, nil
}

func (p *Process) Maps() ([]target.Mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", p.pid))
	if err != nil {
		return nil, fmt.Errorf("reading maps of %d: %w", p.pid, err)
	}
	defer f.Close()
	return parseMaps(f)
}

func parseMaps(f *os.File) ([]target.Mapping, error) {
	var out []target.Mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(fields[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		m := target.Mapping{Start: start, End: end, Perms: fields[1], Offset: off}
		if len(fields) >= 6 {
			m.Path = strings.Join(fields[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// RseqArea asks the kernel where the thread registered its struct rseq.
func (p *Process) RseqArea(tid int) (target.RseqArea, error) {
	var conf struct {
		Addr      uint64
		Size      uint32
		Signature uint32
		Flags     uint32
		Pad       uint32
	}
	r, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceGetRseqConfiguration, uintptr(tid), unsafe.Sizeof(conf), uintptr(unsafe.Pointer(&conf)), 0, 0)
	if errno != 0 {
		return target.RseqArea{}, fmt.Errorf("reading rseq configuration of %d: %w", tid, errno)
	}
	if r < 16 || conf.Addr == 0 {
		return target.RseqArea{}, nil
	}
	if conf.Flags != 0 {
		slog.Debug("rseq registration has flags", "tid", tid, "flags", conf.Flags)
	}
	return target.RseqArea{Addr: conf.Addr, Size: conf.Size, Signature: conf.Signature, Flags: conf.Flags, Known: true}, nil
}

// Kill ends the process and reaps it.
func (p *Process) Kill() error {
	if p.exited {
		return nil
	}
	// The memory may live on in a vfork peer, which must not meet our
	// int3s.
	p.unshare(p.mem)
	p.bps = map[uint64]*breakpoint{}
	if err := unix.Kill(p.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
		return fmt.Errorf("killing %d: %w", p.pid, err)
	}
	for _, st := range p.stash {
		if st.ws.Exited() || st.ws.Signaled() {
			p.removeThread(st.tid)
			if st.tid == p.pid {
				p.threads = map[int]*threadState{}
				p.nrunning, p.nfree = 0, 0
			}
		}
	}
	p.stash = nil
	for len(p.threads) > 0 {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOTHREAD, nil)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			break
		}
		if q := p.tr.owner(tid); q != nil && q != p {
			q.stash = append(q.stash, waitStatus{tid, ws})
			continue
		}
		if ws.Exited() || ws.Signaled() {
			p.removeThread(tid)
			if tid == p.pid {
				break
			}
		}
	}
	p.exited = true
	p.running.Store(false)
	return nil
}

// Detach removes every breakpoint and debug register and lets the threads
// run on, delivering any signal they were stopped with.
func (p *Process) Detach() error {
	if p.exited {
		return nil
	}
	if p.nonStop {
		// Only a stopped thread can be detached.
		if err := p.stopAll(); err != nil {
			slog.Debug("stopping threads to detach", "err", err)
		}
	}
	p.removeAllBreakpoints()
	for i := range p.debugReg {
		if p.debugReg[i] != 0 && i != 6 {
			p.SetDebugReg(i, 0)
		}
	}
	if c := p.vforkChild; c != nil {
		// The child still runs in our memory, with its int3s: we would
		// meet them once it execs. We go when it does (unshare).
		p.detachLater = true
		p.exited = true
		return nil
	}
	if q := p.vforkParent; q != nil {
		// A vfork child let go runs in its parent's memory: the parent's
		// int3s leave it until its VFORK_DONE, as for a child never kept.
		p.unshare(nil)
		if !q.exited {
			q.liftBreakpoints()
		}
	}
	err := p.detachThreads()
	p.exited = true
	return err
}

// detachThreads lets every thread go, delivering any signal it was stopped
// with.
func (p *Process) detachThreads() error {
	var firstErr error
	for _, tid := range p.order {
		t := p.threads[tid]
		sig := 0
		if t.pending != nil && t.pending.Sig != int(unix.SIGSTOP) && t.pending.Sig != int(unix.SIGTRAP) {
			sig = t.pending.Sig
		}
		if err := p.flushRegs(t); err != nil && firstErr == nil {
			firstErr = err
		}
		if t.sigstopPending {
			// Swallow our SIGSTOP first, or the thread stays stopped after
			// we let go of it.
			p.drainSigstop(t)
		}
		if err := ptraceRequest(unix.PTRACE_DETACH, tid, sig); err != nil && err != unix.ESRCH && firstErr == nil {
			firstErr = fmt.Errorf("detaching from %d: %w", tid, err)
		}
	}
	return firstErr
}

func (p *Process) drainSigstop(t *threadState) {
	if err := unix.PtraceCont(t.tid, 0); err != nil {
		return
	}
	// Bounded: if our bookkeeping were wrong, no SIGSTOP would come, and a
	// detach must not hang on it.
	for i := 0; i < 200; i++ {
		var ws unix.WaitStatus
		got, err := unix.Wait4(t.tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil {
			return
		}
		if got == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		if !ws.Stopped() {
			return
		}
		if ws.StopSignal() == unix.SIGSTOP {
			t.sigstopPending = false
			return
		}
		unix.PtraceCont(t.tid, int(ws.StopSignal()))
	}
}

func listTasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	// Leader first.
	for i, t := range out {
		if t == pid {
			out[0], out[i] = out[i], out[0]
		}
	}
	return out, nil
}

func lookPath(name string) (string, error) {
	for _, dir := range strings.Split(os.Getenv("PATH"), ":") {
		if dir == "" {
			dir = "."
		}
		path := dir + "/" + name
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode()&0111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}
