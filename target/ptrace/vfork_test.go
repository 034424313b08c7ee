package ptrace

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

const vforkSrc = `
#include <sys/wait.h>
#include <unistd.h>
int marker(void) { return 7; }
int other(void) { return 9; }
int main(void) {
	int st = 0;
	pid_t pid = vfork();
	if (pid == 0) {
		marker();
		_exit(7);
	}
	waitpid(pid, &st, 0);
	other();
	marker();
	return WIFEXITED(st) ? 2 * WEXITSTATUS(st) : 1;
}
`

// vforkTest launches vforkSrc with vfork children kept and runs scenario
// on the tracer thread (no t.Fatal there: its Goexit would end the thread).
// Children it keeps go into kids, closed after (Close runs its own Do).
func vforkTest(t *testing.T, scenario func(p *Process, marker, other uint64, cont func(target.Target) target.Event, kids *[]*Process) error) {
	prog := buildC(t, vforkSrc, "-no-pie")
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	marker, other := symbol(t, prog, "marker"), symbol(t, prog, "other")
	cont := contPastSIGCHLD
	var failure error
	var kids []*Process
	defer func() {
		for _, k := range kids {
			k.Close()
		}
	}()
	p.Do(func() {
		p.KeepVforks(true, true)
		failure = scenario(p, marker, other, cont, &kids)
	})
	if failure != nil {
		t.Fatal(failure)
	}
}

// TestKeepVforks: a vfork child kept shares its parent's memory with its
// own int3s alone in it: the parent's are records meanwhile (hidden from
// both processes' reads), one the child lifts leaves memory although the
// parent has one there too, and when the child exits the parent's are
// back in, the child's gone; the parent's VFORK_DONE is then reported.
func TestKeepVforks(t *testing.T) {
	vforkTest(t, func(p *Process, marker, other uint64, cont func(target.Target) target.Event, kids *[]*Process) error {
		defer p.Kill()
		for _, a := range []uint64{marker, other} {
			if err := p.InsertBreakpoint(a); err != nil {
				return err
			}
		}
		origOther := rawByte(t, p.Pid(), other+1)
		ev := cont(p)
		if ev.Kind != target.EventFork || !ev.Vfork || ev.Tid != p.Pid() || ev.Child == 0 {
			return fmt.Errorf("want a vfork event, got %+v", ev)
		}
		ct, drop, err := p.ForkChild(ev.Child)
		if err != nil {
			return err
		}
		c := ct.(*Process)
		*kids = append(*kids, c)
		if err := c.InsertBreakpoint(marker); err != nil {
			return err
		}
		if err := drop(); err != nil {
			return err
		}
		// Scratch code mapped now would outlive the child in the parent.
		if _, err := c.MapCode(c.Pid(), 0, 4096); !errors.Is(err, target.ErrNotNow) {
			return fmt.Errorf("mapping code in a vfork child sharing its parent's memory: %v, want ErrNotNow", err)
		}
		if rawByte(t, p.Pid(), marker) != 0xcc || rawByte(t, p.Pid(), other) == 0xcc || !p.BreakpointAt(other) {
			return fmt.Errorf("shared memory: marker %#x other %#x, want the child's int3 alone", rawByte(t, p.Pid(), marker), rawByte(t, p.Pid(), other))
		}
		var b [1]byte
		if _, err := p.ReadMemory(marker, b[:]); err != nil || b[0] == 0xcc {
			return fmt.Errorf("the parent reads the child's int3: %#x %v", b[0], err)
		}
		if ev := cont(c); ev.Trap != target.TrapBreakpoint || ev.Addr != marker || ev.Tid != c.Pid() {
			return fmt.Errorf("child: want the breakpoint at %#x, got %+v", marker, ev)
		}
		// Lifted for a step, although the parent has one there too.
		if err := c.RemoveBreakpoint(marker); err != nil {
			return err
		}
		if rawByte(t, c.Pid(), marker) == 0xcc {
			return fmt.Errorf("the child's lifted breakpoint stayed in memory for the parent's record")
		}
		if ev := cont(c); ev.Kind != target.EventExited || ev.Code != 7 {
			return fmt.Errorf("child: want exit 7, got %+v", ev)
		}
		if rawByte(t, p.Pid(), marker) != 0xcc || rawByte(t, p.Pid(), other) != 0xcc || rawByte(t, p.Pid(), other+1) != origOther {
			return fmt.Errorf("after the child: marker %#x other %#x, want the parent's int3s back", rawByte(t, p.Pid(), marker), rawByte(t, p.Pid(), other))
		}
		if ev := cont(p); ev.Kind != target.EventVforkDone || ev.Tid != p.Pid() {
			return fmt.Errorf("parent: want its vfork done, got %+v", ev)
		}
		if ev := cont(p); ev.Trap != target.TrapBreakpoint || ev.Addr != other {
			return fmt.Errorf("parent: want the breakpoint at %#x, got %+v", other, ev)
		}
		p.RemoveBreakpoint(marker)
		p.RemoveBreakpoint(other)
		if ev := cont(p); ev.Kind != target.EventExited || ev.Code != 14 {
			return fmt.Errorf("parent: want exit 14, got %+v", ev)
		}
		return nil
	})
}

// TestDetachVforkParent: a parent detached while its vfork child shares its
// memory stays traced until the child is done with it, then goes clean: the
// child's int3 where the parent calls marker too is out of memory first.
func TestDetachVforkParent(t *testing.T) {
	vforkTest(t, func(p *Process, marker, other uint64, cont func(target.Target) target.Event, kids *[]*Process) error {
		if err := p.InsertBreakpoint(marker); err != nil {
			return err
		}
		ev := cont(p)
		if ev.Kind != target.EventFork || !ev.Vfork {
			return fmt.Errorf("want a vfork event, got %+v", ev)
		}
		ct, drop, err := p.ForkChild(ev.Child)
		if err != nil {
			return err
		}
		c := ct.(*Process)
		*kids = append(*kids, c)
		defer c.Kill()
		if err := c.InsertBreakpoint(marker); err != nil {
			return err
		}
		if err := drop(); err != nil {
			return err
		}
		pid := p.Pid()
		if err := p.Detach(); err != nil {
			return err
		}
		if tracerOf(pid) == 0 {
			return fmt.Errorf("the parent was let go while its child shares its memory")
		}
		if ev := cont(c); ev.Trap != target.TrapBreakpoint || ev.Addr != marker {
			return fmt.Errorf("child: want the breakpoint at %#x, got %+v", marker, ev)
		}
		// Step off it as a debugger does, leaving it inserted.
		if err := c.RemoveBreakpoint(marker); err != nil {
			return err
		}
		if err := c.Resume(nil, target.Action{Kind: target.Step}); err != nil {
			return err
		}
		if ev, err := c.Wait(); err != nil || ev.Trap != target.TrapStep {
			return fmt.Errorf("child: want a step, got %+v %v", ev, err)
		}
		if err := c.InsertBreakpoint(marker); err != nil {
			return err
		}
		if ev := cont(c); ev.Kind != target.EventExited || ev.Code != 7 {
			return fmt.Errorf("child: want exit 7, got %+v", ev)
		}
		if tracerOf(pid) != 0 {
			return fmt.Errorf("the parent is still traced after its child ended")
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 14 {
			return fmt.Errorf("the parent ended with %#x %v, want exit 14 (no int3 of the child left)", uint32(ws), err)
		}
		return nil
	})
}

// tracerOf is the TracerPid of pid's status, -1 when unreadable.
func tracerOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}
