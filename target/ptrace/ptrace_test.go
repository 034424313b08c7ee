package ptrace

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

// buildC compiles a small C program for the test.
func buildC(t *testing.T, src string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	c := filepath.Join(dir, "p.c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "p")
	args := append([]string{"-g", "-O0", "-o", out, c}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Skipf("gcc unavailable: %v\n%s", err, b)
	}
	return out
}

const threadsSrc = `
#include <pthread.h>
#include <stdio.h>
volatile long counter;
void *work(void *a) { for (int i = 0; i < 100000; i++) counter++; return 0; }
int marker(void) { return 7; }
int main(void) {
	pthread_t t[4];
	for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
	for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
	marker();
	return 3;
}
`

func symbol(t *testing.T, path, name string) uint64 {
	t.Helper()
	v, err := symbols.Value(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLaunchBreakpointThreadsExit(t *testing.T) {
	prog := buildC(t, threadsSrc, "-pthread", "-no-pie")
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	marker := symbol(t, prog, "marker")
	p.Do(func() {
		// A few single-steps from the entry point.
		for i := 0; i < 10; i++ {
			before, _ := p.Regs(p.Pid())
			if err := p.Resume(nil, target.Action{Kind: target.Step}); err != nil {
				t.Fatal(err)
			}
			ev, err := p.Wait()
			if err != nil || ev.Trap != target.TrapStep {
				t.Fatalf("step %d: %v %v", i, ev, err)
			}
			after, _ := p.Regs(p.Pid())
			if after.Rip == before.Rip {
				t.Fatalf("step did not move: %#x", after.Rip)
			}
		}
		if err := p.InsertBreakpoint(marker); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		p.ReadMemory(marker, b[:])
		if b[0] == 0xcc {
			t.Fatalf("breakpoint byte visible through ReadMemory")
		}
		if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
			t.Fatal(err)
		}
		ev, err := p.Wait()
		if err != nil || ev.Trap != target.TrapBreakpoint || ev.Addr != marker {
			t.Fatalf("want breakpoint at %#x, got %v %+v", marker, err, ev)
		}
		r, _ := p.Regs(ev.Tid)
		if r.Rip != marker {
			t.Fatalf("pc %#x not rewound to %#x", r.Rip, marker)
		}
		if len(p.Threads()) != 1 {
			t.Errorf("threads after join: %v", p.Threads())
		}
		p.RemoveBreakpoint(marker)
		p.Resume(nil, target.Action{Kind: target.Continue})
		ev, err = p.Wait()
		if err != nil || ev.Kind != target.EventExited || ev.Code != 3 {
			t.Fatalf("want exit 3, got %v %+v", err, ev)
		}
	})
}

func TestRseqArea(t *testing.T) {
	prog := buildC(t, "int main(void){return 0;}")
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Do(func() {
		defer p.Kill()
		// Before the dynamic linker ran no area is registered; run to main.
		f, _ := elf.Open(prog)
		defer f.Close()
		auxv, _ := p.Auxv()
		if len(auxv) == 0 {
			t.Fatal("no auxv")
		}
		_, err := p.RseqArea(p.Pid())
		if err != nil {
			t.Fatalf("PTRACE_GET_RSEQ_CONFIGURATION: %v", err)
		}
	})
}

const forkSrc = `
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
int marker(int k) { return k; }
int other(int k) { return k + 1; }
int main(void) {
	int st = 0, code = 0;
	pid_t c = fork();
	if (c == 0) { marker(1); _exit(7); }
	waitpid(c, &st, 0);
	code += WIFEXITED(st) ? WEXITSTATUS(st) : 100;
	c = fork();
	if (c == 0) { for (;;) pause(); }
	waitpid(c, &st, 0);
	code += WIFSIGNALED(st) ? WTERMSIG(st) : 100;
	marker(2);
	return code;
}
`

// rawByte reads pid's memory at addr as it is, int3s included.
func rawByte(t *testing.T, pid int, addr uint64) byte {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		t.Error(err)
		return 0
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], int64(addr)); err != nil {
		t.Error(err)
	}
	return b[0]
}

// TestKeepForks: a kept fork child is its own target on the same tracer,
// with the parent's breakpoints in its memory until dropInherited leaves
// only those inserted in it; a status of the child reaped by the parent's
// wait (the child killed while the parent runs) reaches the child's Wait.
func TestKeepForks(t *testing.T) {
	prog := buildC(t, forkSrc, "-no-pie")
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	marker, other := symbol(t, prog, "marker"), symbol(t, prog, "other")
	var kids []target.Target
	defer func() {
		for _, k := range kids {
			k.(*Process).Close()
		}
	}()
	cont := contPastSIGCHLD
	var failure error
	// No t.Fatal on the tracer thread: its Goexit would end the thread.
	p.Do(func() { failure = keepForksScenario(t, p, marker, other, cont, &kids) })
	if failure != nil {
		t.Fatal(failure)
	}
}

func keepForksScenario(t *testing.T, p *Process, marker, other uint64, cont func(target.Target) target.Event, kids *[]target.Target) error {
	{
		defer p.Kill()
		var ff target.ForkFollower = p
		ff.KeepForks(true)
		for _, a := range []uint64{marker, other} {
			if err := p.InsertBreakpoint(a); err != nil {
				return err
			}
		}
		ev := cont(p)
		if ev.Kind != target.EventFork || ev.Tid != p.Pid() || ev.Child == 0 {
			return fmt.Errorf("want a fork event, got %+v", ev)
		}
		c1, drop, err := ff.ForkChild(ev.Child)
		if err != nil {
			return err
		}
		*kids = append(*kids, c1)
		if c1.Pid() != ev.Child || !c1.BreakpointAt(marker) || !c1.BreakpointAt(other) {
			return fmt.Errorf("child %d: pid %d, inherited breakpoints %v %v", ev.Child, c1.Pid(), c1.BreakpointAt(marker), c1.BreakpointAt(other))
		}
		if err := c1.InsertBreakpoint(marker); err != nil {
			return err
		}
		if err := drop(); err != nil {
			return err
		}
		if rawByte(t, c1.Pid(), marker) != 0xcc || rawByte(t, c1.Pid(), other) == 0xcc || c1.BreakpointAt(other) {
			return fmt.Errorf("child memory after drop: marker %#x other %#x", rawByte(t, c1.Pid(), marker), rawByte(t, c1.Pid(), other))
		}
		if rawByte(t, p.Pid(), other) != 0xcc {
			return fmt.Errorf("dropping the child's breakpoints touched the parent")
		}
		if ev := cont(c1); ev.Trap != target.TrapBreakpoint || ev.Addr != marker || ev.Tid != c1.Pid() {
			return fmt.Errorf("child: want breakpoint at %#x, got %+v", marker, ev)
		}
		if err := c1.RemoveBreakpoint(marker); err != nil {
			return err
		}
		if ev := cont(c1); ev.Kind != target.EventExited || ev.Code != 7 {
			return fmt.Errorf("child: want exit 7, got %+v", ev)
		}
		ev = cont(p)
		if ev.Kind != target.EventFork || ev.Child == 0 {
			return fmt.Errorf("want the second fork, got %+v", ev)
		}
		c2, drop2, err := ff.ForkChild(ev.Child)
		if err != nil {
			return err
		}
		*kids = append(*kids, c2)
		drop2()
		// The parent waits for c2, which we kill: the parent's wait reaps
		// c2's end and must hand it to c2.
		if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
			return err
		}
		syscall.Kill(c2.Pid(), syscall.SIGKILL)
		ev, err = p.Wait()
		if err == nil && ev.Sig == int(syscall.SIGCHLD) {
			ev = cont(p)
		}
		if err != nil || ev.Trap != target.TrapBreakpoint || ev.Addr != marker || ev.Tid != p.Pid() {
			return fmt.Errorf("parent: want breakpoint at %#x, got %+v %v", marker, ev, err)
		}
		if ev, err := c2.Wait(); err != nil || ev.Kind != target.EventSignaled || ev.Sig != int(syscall.SIGKILL) {
			return fmt.Errorf("killed child: want its end, got %+v %v", ev, err)
		}
		p.RemoveBreakpoint(marker)
		p.RemoveBreakpoint(other)
		if ev := cont(p); ev.Kind != target.EventExited || ev.Code != 16 {
			return fmt.Errorf("parent: want exit 16, got %+v", ev)
		}
	}
	return nil
}

// ContinueSyscalls stops at a system call's entry, with its number, and at
// its exit; a plain continue from there lets the program go on as before.
func TestContinueSyscalls(t *testing.T) {
	prog := buildC(t, `
#include <unistd.h>
int main(void) { getppid(); getppid(); return 5; }
`)
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Do(func() {
		var seen []target.Event
		for len(seen) < 400 {
			if err := p.Resume(nil, target.Action{Kind: target.ContinueSyscalls}); err != nil {
				t.Fatal(err)
			}
			ev, err := p.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind != target.EventStop || (ev.Trap != target.TrapSyscallEntry && ev.Trap != target.TrapSyscallExit) {
				t.Fatalf("after %d syscall stops: %+v", len(seen), ev)
			}
			seen = append(seen, ev)
			if ev.Trap == target.TrapSyscallExit && len(seen) >= 2 && seen[len(seen)-2].Syscall == unix.SYS_GETPPID {
				break
			}
		}
		for i, ev := range seen {
			want := target.TrapSyscallEntry
			if i%2 == 1 {
				want = target.TrapSyscallExit
			}
			if ev.Trap != want {
				t.Fatalf("stop %d is %v, want %v: entries and exits alternate", i, ev.Trap, want)
			}
		}
		if seen[len(seen)-2].Syscall != unix.SYS_GETPPID {
			t.Fatalf("never stopped at getppid: %+v", seen)
		}
		if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
			t.Fatal(err)
		}
		ev, err := p.Wait()
		if err != nil || ev.Kind != target.EventExited || ev.Code != 5 {
			t.Fatalf("want exit 5, got %v %+v", err, ev)
		}
	})
}

// Asleep tells a thread waiting in the kernel from one on a CPU.
func TestAsleep(t *testing.T) {
	for _, c := range []struct {
		src    string
		asleep bool
	}{
		{"#include <unistd.h>\nint main(void) { pause(); return 0; }\n", true},
		{"volatile int spin = 1;\nint main(void) { while (spin) ; return 0; }\n", false},
	} {
		p, err := Launch(LaunchOptions{Path: buildC(t, c.src)})
		if err != nil {
			t.Fatal(err)
		}
		p.Do(func() {
			if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
				t.Fatal(err)
			}
		})
		got := !c.asleep
		for deadline := time.Now().Add(5 * time.Second); got != c.asleep && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got, err = p.Asleep(p.Pid()); err != nil {
				t.Fatal(err)
			}
		}
		p.Interrupt()
		p.Do(func() {
			p.Wait()
			p.Kill()
		})
		p.Close()
		if got != c.asleep {
			t.Errorf("%q: asleep %v, want %v", c.src, got, c.asleep)
		}
	}
}

// contPastSIGCHLD continues q to its next event but SIGCHLD, which it
// delivers; a failure is an event with Tid -1.
func contPastSIGCHLD(q target.Target) target.Event {
	sig := 0
	for {
		if err := q.Resume(nil, target.Action{Kind: target.Continue, Sig: sig}); err != nil {
			return target.Event{Tid: -1, Code: -1}
		}
		ev, err := q.Wait()
		if err != nil {
			return target.Event{Tid: -1, Code: -1}
		}
		if ev.Kind != target.EventStop || ev.Sig != int(syscall.SIGCHLD) {
			return ev
		}
		sig = ev.Sig
	}
}
