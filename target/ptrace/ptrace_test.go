package ptrace

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
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
