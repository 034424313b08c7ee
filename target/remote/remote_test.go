package remote

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

// A real gdbserver, started over a pipe as --upstream-cmd does, running a
// small C program: registers by name, memory, breakpoints, steps, files
// and the rseq area without ptrace.

const src = `
#include <stdio.h>
#include <sys/rseq.h>
volatile long counter;
int marker(long v) { counter += v; return (int)counter; }
int main(void) {
	for (int i = 0; i < 3; i++) marker(i);
	printf("size %u\n", __rseq_size);
	return 4;
}
`

func build(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gdbserver"); err != nil {
		t.Skipf("gdbserver is not installed: %v", err)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "p.c")
	os.WriteFile(c, []byte(src), 0o644)
	out := filepath.Join(dir, "p")
	if b, err := exec.Command("gcc", "-g", "-O0", "-o", out, c).CombinedOutput(); err != nil {
		t.Skipf("gcc unavailable: %v\n%s", err, b)
	}
	return out
}

func symbol(t *testing.T, path, name string) uint64 {
	t.Helper()
	v, err := symbols.Value(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGDBServerUpstream(t *testing.T) {
	prog := build(t)
	tg, err := Start("exec gdbserver - "+prog, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if tg.ExecPath() != prog || !tg.Launched() || tg.Pid() <= 0 || len(tg.Threads()) != 1 {
		t.Fatalf("exe %q launched %v pid %d threads %v", tg.ExecPath(), tg.Launched(), tg.Pid(), tg.Threads())
	}
	tid := tg.Threads()[0]
	av, err := tg.Auxv()
	if err != nil || len(av) < 32 {
		t.Fatalf("auxv: %v", err)
	}
	maps, err := tg.Maps()
	if err != nil || len(maps) == 0 {
		t.Fatalf("maps: %v", err)
	}
	var bias uint64
	for _, m := range maps {
		if m.Path == prog && m.Offset == 0 {
			bias = m.Start
		}
	}
	marker := bias + symbol(t, prog, "marker")

	// Breakpoint, continue: a breakpoint event at the address.
	if err := tg.InsertBreakpoint(marker); err != nil {
		t.Fatal(err)
	}
	tg.InsertBreakpoint(marker) // nests
	if err := tg.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
		t.Fatal(err)
	}
	ev, err := tg.Wait()
	if err != nil || ev.Kind != target.EventStop || ev.Trap != target.TrapBreakpoint || ev.Addr != marker {
		t.Fatalf("want a breakpoint stop at %#x, got %v %+v", marker, err, ev)
	}
	r, err := tg.Regs(tid)
	if err != nil || r.Rip != marker || r.FsBase == 0 || r.Rsp == 0 {
		t.Fatalf("regs %v %+v", err, r)
	}
	if pc, sp, _, ok := tg.StopRegs(tid); !ok || pc != r.Rip || sp != r.Rsp {
		t.Errorf("stop regs %#x %#x %v", pc, sp, ok)
	}
	// glibc's thread list, for stubs without fs_base, gives the same
	// thread pointer.
	if err := tg.findRseqSymbols(); err != nil || tg.rseq.rtldGlobal == 0 || len(tg.rseq.db) != len(threadDBFields) {
		t.Fatalf("glibc's thread list symbols: %v, _rtld_global %#x, descriptors %v", err, tg.rseq.rtldGlobal, tg.rseq.db)
	}
	if tp, err := walkThreadLists(tg.ReadMemory, tg.rseq.rtldGlobal, tg.rseq.db, tid); err != nil || tp != r.FsBase {
		t.Errorf("thread pointer from glibc's list %#x (%v), fs_base %#x", tp, err, r.FsBase)
	}
	if _, err := walkThreadLists(tg.ReadMemory, tg.rseq.rtldGlobal, tg.rseq.db, tid+1000000); err == nil {
		t.Error("a thread that does not exist was found")
	}
	// Memory hides the stub's breakpoint; writes read back.
	code := make([]byte, 4)
	if n, err := tg.ReadMemory(marker, code); n != 4 || err != nil || code[0] == 0xcc {
		t.Errorf("code at the breakpoint %x %v", code, err)
	}
	// Registers: write rdi (the argument) and xmm1, read them back.
	r.Rdi = 41
	if err := tg.SetRegs(tid, r); err != nil {
		t.Fatal(err)
	}
	x, err := tg.FPRegs(tid)
	if err != nil || len(x) < 512 {
		t.Fatalf("fp regs %v", err)
	}
	copy(x[target.FxXMM+16:], bytes.Repeat([]byte{0xab}, 16))
	if err := tg.SetFPRegs(tid, x); err != nil {
		t.Fatal(err)
	}
	tg.invalidate(false)
	if r2, _ := tg.Regs(tid); r2.Rdi != 41 {
		t.Errorf("rdi %d after writing 41", r2.Rdi)
	}
	if x2, _ := tg.FPRegs(tid); !bytes.Equal(x2[target.FxXMM+16:target.FxXMM+32], x[target.FxXMM+16:target.FxXMM+32]) {
		t.Errorf("xmm1 %x", x2[target.FxXMM+16:target.FxXMM+32])
	}
	// A step with the breakpoint lifted: a step event.
	tg.RemoveBreakpoint(marker)
	tg.RemoveBreakpoint(marker)
	if tg.BreakpointAt(marker) {
		t.Error("breakpoint still counted")
	}
	if err := tg.Resume(map[int]target.Action{tid: {Kind: target.Step}}, target.Action{Kind: target.Stay}); err != nil {
		t.Fatal(err)
	}
	if ev, err := tg.Wait(); err != nil || ev.Trap != target.TrapStep || ev.Tid != tid {
		t.Fatalf("step: %v %+v", err, ev)
	}
	// glibc registered rseq: the area is found without ptrace.
	area, err := tg.RseqArea(tid)
	if err != nil || !area.Known || area.Signature != glibcSignature || area.Addr < r.FsBase-1<<20 {
		t.Errorf("rseq area %v %+v (%s)", err, area, tg.RseqNote(tid))
	}
	// Files: the executable matches the local one; read through vFile it
	// is the same bytes.
	f, err := tg.OpenFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	if _, local := f.(localFile); !local {
		t.Error("the executable was not recognised as the local file")
	}
	f.Close()
	fd, err := tg.openRemote(prog)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(prog)
	rf := &remoteFile{t: tg, fd: fd, entry: &fileEntry{size: int64(len(want)), blocks: map[int64][]byte{}}}
	got := make([]byte, len(want))
	if n, err := rf.ReadAt(got, 0); n != len(want) || !bytes.Equal(got, want) {
		t.Errorf("vFile read %d of %d bytes: %v", n, len(want), err)
	}
	rf.Close()
	if _, err := tg.OpenFile("/nonexistent/lib.so"); err == nil {
		t.Error("opening a missing file succeeded")
	}
	// To the end: the exit code.
	if err := tg.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
		t.Fatal(err)
	}
	ev, err = tg.Wait()
	if err != nil || ev.Kind != target.EventExited || ev.Code != 4 {
		t.Fatalf("exit: %v %+v", err, ev)
	}
	if _, err := tg.Regs(tid); err != target.ErrExited {
		t.Errorf("registers of an exited process: %v", err)
	}
}

// A stub that dies: every call fails with ErrUpstreamLost, none panics.
func TestUpstreamLost(t *testing.T) {
	prog := build(t)
	tg, err := Start("exec gdbserver - "+prog, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	tid := tg.Threads()[0]
	tg.cmd.Process.Signal(unix.SIGKILL)
	if err := tg.Resume(nil, target.Action{Kind: target.Continue}); err == nil {
		_, err = tg.Wait()
		if err == nil {
			t.Fatal("wait succeeded after the stub died")
		}
	}
	if _, err := tg.Regs(tid); !errors.Is(err, ErrUpstreamLost) {
		t.Errorf("registers from a dead stub: %v", err)
	}
	if _, err := tg.ReadMemory(0x1000, make([]byte, 8)); err == nil {
		t.Error("memory read from a dead stub")
	}
	if err := tg.Kill(); err == nil {
		t.Error("kill through a dead stub succeeded")
	}
}
