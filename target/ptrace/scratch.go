package ptrace

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

var _ target.CodeMapper = (*Process)(nil)

// MapCode makes thread tid call mmap for the debugger (target.CodeMapper).
func (p *Process) MapCode(tid int, hint uint64, size int) (uint64, error) {
	ret, err := p.callFor(tid, unix.SYS_MMAP, hint, uint64(size), unix.PROT_READ|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return 0, fmt.Errorf("mapping code in %d: %w", p.pid, err)
	}
	return ret, nil
}

// UnmapCode makes thread tid call munmap for the debugger.
func (p *Process) UnmapCode(tid int, addr uint64, size int) error {
	if _, err := p.callFor(tid, unix.SYS_MUNMAP, addr, uint64(size), 0, 0, 0, 0); err != nil {
		return fmt.Errorf("unmapping code in %d: %w", p.pid, err)
	}
	return nil
}

// callFor makes stopped thread tid make system call nr and returns its
// result. The call is made at a syscall instruction of the vDSO, so no
// byte of the program's code changes, even for an instant, and no thread
// running meanwhile could execute anything of ours. Every signal is
// blocked for that one instruction, so nothing but SIGSTOP or SIGKILL can
// come first; the thread's registers and mask are put back after.
func (p *Process) callFor(tid int, nr uint64, a1, a2, a3, a4, a5, a6 uint64) (uint64, error) {
	t := p.threads[tid]
	if p.exited || t == nil || t.running || t.pending != nil {
		return 0, fmt.Errorf("thread %d is not stopped with nothing to report", tid)
	}
	if p.vforkPeer() != nil {
		// The memory is a vfork parent's: what is mapped now would stay
		// in the parent after the child execs.
		return 0, fmt.Errorf("the process shares its memory with a vfork parent or child: %w", target.ErrNotNow)
	}
	if filtered, err := p.seccompFiltered(tid); err != nil || filtered {
		if err == nil {
			err = errors.New("a seccomp filter could kill the process for a system call of ours")
		}
		return 0, err
	}
	at, err := p.syscallInsn()
	if err != nil {
		return 0, err
	}
	saved, err := p.Regs(tid)
	if err != nil {
		return 0, err
	}
	mask, err := p.SignalMask(tid)
	if err != nil {
		return 0, err
	}
	if err := p.SetSignalMask(tid, ^uint64(0)); err != nil {
		return 0, err
	}
	r := saved
	r.Rip, r.OrigRax = at, ^uint64(0) // not in a system call: nothing to restart
	r.Rax, r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = nr, a1, a2, a3, a4, a5, a6
	ret, callErr := p.syscallAt(t, r)
	// Put back even after a failed call: a thread that died meanwhile
	// just refuses.
	if err := p.SetRegs(tid, saved); err != nil && callErr == nil {
		callErr = err
	}
	if err := p.SetSignalMask(tid, mask); err != nil && callErr == nil {
		callErr = err
	}
	if callErr != nil {
		return 0, callErr
	}
	if int64(ret) < 0 && int64(ret) > -4096 {
		return 0, fmt.Errorf("system call %d: %w", nr, unix.Errno(-int64(ret)))
	}
	return ret, nil
}

// syscallAt single-steps t through the syscall instruction r.Rip points at,
// with registers r, and returns rax after it. A stop that comes before the
// call (SIGSTOP, the only signal a full mask lets through) is put back in
// the thread's queue; an exit is kept for the next Wait.
func (p *Process) syscallAt(t *threadState, r target.Regs) (uint64, error) {
	if err := p.writeRegs(t.tid, r); err != nil {
		return 0, err
	}
	t.regsValid, t.regsDirty = false, false
	if err := ptraceRequest(unix.PTRACE_SINGLESTEP, t.tid, 0); err != nil {
		return 0, fmt.Errorf("stepping thread %d through a system call: %w", t.tid, err)
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for thread %d: %w", t.tid, err)
		}
		break
	}
	switch {
	case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() <= 0:
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(t.tid, &regs); err != nil {
			return 0, fmt.Errorf("reading registers of %d: %w", t.tid, err)
		}
		if regs.Rip != r.Rip+2 {
			return 0, fmt.Errorf("thread %d did not make the system call (stopped at %#x)", t.tid, regs.Rip)
		}
		return regs.Rax, nil
	case ws.Stopped() && ws.TrapCause() <= 0:
		// Dequeued for its delivery stop and not delivered: queued again,
		// it stops the thread where it would have.
		unix.Tgkill(p.pid, t.tid, ws.StopSignal())
		return 0, fmt.Errorf("thread %d stopped for %v before the system call", t.tid, ws.StopSignal())
	default:
		// Ended or reporting an event: the next Wait digests it.
		p.stash = append(p.stash, waitStatus{t.tid, ws})
		return 0, fmt.Errorf("thread %d did not come back from the system call (status %#x)", t.tid, uint32(ws))
	}
}

// syscallInsn finds a syscall instruction (0f 05) in the vDSO, whose code
// every process has and nothing of ours patches.
func (p *Process) syscallInsn() (uint64, error) {
	if p.vdsoSyscall != 0 {
		return p.vdsoSyscall, nil
	}
	raw, err := p.Auxv()
	if err != nil {
		return 0, err
	}
	base := auxv.ParseAuxv(raw)[auxv.AtSysinfoEhdr]
	if base == 0 {
		return 0, errors.New("no vDSO to make a system call from")
	}
	code := make([]byte, 16<<10)
	n := p.readPartial(base, code)
	i := bytes.Index(code[:n], []byte{0x0f, 0x05})
	if i < 0 {
		return 0, errors.New("no syscall instruction in the vDSO")
	}
	p.vdsoSyscall = base + uint64(i)
	return p.vdsoSyscall, nil
}

// seccompFiltered reports whether a seccomp filter or strict mode applies
// to tid (the Seccomp field of its status).
func (p *Process) seccompFiltered(tid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", p.pid, tid))
	if err != nil {
		return false, fmt.Errorf("reading the status of %d: %w", tid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			return strings.TrimSpace(v) != "0", nil
		}
	}
	return false, nil
}
