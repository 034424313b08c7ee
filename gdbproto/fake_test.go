package gdbproto

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/rseqdbg/rseqdbg/target"
)

// fakeProc is a one-thread process in memory: a page of NOPs. Steps
// advance the PC by one byte, continues run to the next breakpoint or end
// the process. Enough for the engine to step, range-step and continue.
type fakeProc struct {
	pid     int
	base    uint64
	code    []byte
	regs    target.Regs
	xsave   []byte
	bps     map[uint64]int
	dr      [8]uint64
	exited  bool
	resumed *target.Action
	// panicRegs makes Regs panic, to test that handlers recover.
	panicRegs bool
}

const fakeBase = 0x400000

func newFake(pid int) *fakeProc {
	f := &fakeProc{pid: pid, base: fakeBase, code: make([]byte, 4096), xsave: make([]byte, 1024), bps: map[uint64]int{}}
	for i := range f.code {
		f.code[i] = 0x90
	}
	f.regs.Rip = fakeBase
	f.regs.Rsp = 0x7fff0000
	f.regs.FsBase = 0x7000
	f.regs.Eflags = 0x202
	return f
}

func (f *fakeProc) Do(fn func()) { fn() }
func (f *fakeProc) Pid() int     { return f.pid }
func (f *fakeProc) Close()       {}
func (f *fakeProc) Threads() []int {
	if f.exited {
		return nil
	}
	return []int{f.pid}
}

func (f *fakeProc) check(tid int) error {
	if f.exited {
		return target.ErrExited
	}
	if tid != f.pid {
		return fmt.Errorf("no thread %d", tid)
	}
	return nil
}

func (f *fakeProc) Regs(tid int) (target.Regs, error) {
	if f.panicRegs {
		panic("fake Regs panic")
	}
	return f.regs, f.check(tid)
}

func (f *fakeProc) SetRegs(tid int, r target.Regs) error {
	if err := f.check(tid); err != nil {
		return err
	}
	f.regs = r
	return nil
}

func (f *fakeProc) FPRegs(tid int) ([]byte, error) {
	return append([]byte(nil), f.xsave...), f.check(tid)
}

func (f *fakeProc) SetFPRegs(tid int, x []byte) error {
	if err := f.check(tid); err != nil {
		return err
	}
	copy(f.xsave, x)
	return nil
}

func (f *fakeProc) span(addr uint64, n int) (int, int, bool) {
	if addr < f.base || addr >= f.base+uint64(len(f.code)) {
		return 0, 0, false
	}
	off := int(addr - f.base)
	return off, min(n, len(f.code)-off), true
}

func (f *fakeProc) ReadMemory(addr uint64, buf []byte) (int, error) {
	if f.exited {
		return 0, target.ErrExited
	}
	off, n, ok := f.span(addr, len(buf))
	if !ok {
		return 0, fmt.Errorf("reading %#x: %w", addr, syscall.EIO)
	}
	return copy(buf, f.code[off:off+n]), nil
}

func (f *fakeProc) WriteMemory(addr uint64, data []byte) (int, error) {
	if f.exited {
		return 0, target.ErrExited
	}
	off, n, ok := f.span(addr, len(data))
	if !ok {
		return 0, fmt.Errorf("writing %#x: %w", addr, syscall.EIO)
	}
	return copy(f.code[off:off+n], data), nil
}

func (f *fakeProc) InsertBreakpoint(addr uint64) error {
	if _, _, ok := f.span(addr, 1); !ok {
		return fmt.Errorf("breakpoint at %#x: %w", addr, syscall.EIO)
	}
	f.bps[addr]++
	return nil
}

func (f *fakeProc) RemoveBreakpoint(addr uint64) error {
	if f.bps[addr]--; f.bps[addr] <= 0 {
		delete(f.bps, addr)
	}
	return nil
}

func (f *fakeProc) BreakpointAt(addr uint64) bool { return f.bps[addr] > 0 }

func (f *fakeProc) Resume(actions map[int]target.Action, def target.Action) error {
	if f.exited {
		return target.ErrExited
	}
	a, ok := actions[f.pid]
	if !ok {
		a = def
	}
	if a.Kind == target.Stay {
		return errors.New("resume: no thread to run")
	}
	f.resumed = &a
	return nil
}

func (f *fakeProc) Wait() (target.Event, error) {
	if f.exited {
		return target.Event{}, target.ErrExited
	}
	a := f.resumed
	if a == nil {
		return target.Event{}, errors.New("wait: no thread is running")
	}
	f.resumed = nil
	if a.Kind == target.Step {
		f.regs.Rip++
		return target.Event{Kind: target.EventStop, Tid: f.pid, Sig: int(syscall.SIGTRAP), Trap: target.TrapStep}, nil
	}
	for pc := f.regs.Rip; pc < f.base+uint64(len(f.code)); pc++ {
		if f.bps[pc] > 0 {
			f.regs.Rip = pc
			return target.Event{Kind: target.EventStop, Tid: f.pid, Sig: int(syscall.SIGTRAP), Trap: target.TrapBreakpoint, Addr: pc}, nil
		}
	}
	f.exited = true
	return target.Event{Kind: target.EventExited, Tid: f.pid}, nil
}

func (f *fakeProc) Interrupt() {}

func (f *fakeProc) SetDebugReg(n int, v uint64) error {
	if n < 0 || n > 7 {
		return fmt.Errorf("no debug register %d", n)
	}
	f.dr[n] = v
	return nil
}

func (f *fakeProc) DebugStatus(int) (uint64, error) { return 0, nil }
func (f *fakeProc) Auxv() ([]byte, error)           { return make([]byte, 16), nil }
func (f *fakeProc) Maps() ([]target.Mapping, error) {
	return []target.Mapping{{Start: f.base, End: f.base + uint64(len(f.code)), Perms: "r-xp", Path: "/fake"}}, nil
}
func (f *fakeProc) RseqArea(int) (target.RseqArea, error) { return target.RseqArea{}, nil }
func (f *fakeProc) ExecPath() string                      { return "" }
func (f *fakeProc) Kill() error                           { f.exited = true; return nil }
func (f *fakeProc) Detach() error                         { f.exited = true; return nil }

// fakeLauncher hands out fake processes.
type fakeLauncher struct {
	next     int
	launched []*fakeProc
}

func (l *fakeLauncher) Launch(LaunchSpec) (Process, error) {
	l.next++
	f := newFake(1000 + l.next)
	l.launched = append(l.launched, f)
	return f, nil
}

func (l *fakeLauncher) Attach(pid int) (Process, error) {
	f := newFake(pid)
	l.launched = append(l.launched, f)
	return f, nil
}

// noFS refuses every file, so fuzzing never touches the host.
type noFS struct{}

func (noFS) Open(string, int, os.FileMode) (File, error) { return nil, os.ErrNotExist }
func (noFS) Readlink(string) (string, error)             { return "", os.ErrNotExist }
func (noFS) Unlink(string) error                         { return os.ErrPermission }
