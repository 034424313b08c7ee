package ptrace

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

const nonStopSrc = `
#include <pthread.h>
volatile long counts[3];
volatile int done, hit;
void marker(void) {}
void tick(void) {}
void *work(void *a) {
	long i = (long)a;
	while (!done) {
		counts[i]++;
		tick();
		if (i == 0 && !hit && counts[1] && counts[2]) { hit = 1; marker(); }
	}
	return 0;
}
int main(void) {
	pthread_t t[3];
	for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, work, (void *)i);
	for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
	return 5;
}
`

// TestNonStopCapability drives the non-stop capability directly: one
// thread stops at a breakpoint while the others run on (their counters
// advance), a pause holds them all, one running thread is stopped alone,
// and a step of the stopped thread completes while the others run.
func TestNonStopCapability(t *testing.T) {
	prog := buildC(t, nonStopSrc, "-pthread", "-no-pie")
	p, err := Launch(LaunchOptions{Path: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	marker := symbol(t, prog, "marker")
	counts := symbol(t, prog, "counts")
	done := symbol(t, prog, "done")
	var ns target.NonStop = p
	var fail error
	read := func(i int) int64 {
		var b [8]byte
		if _, err := p.ReadMemory(counts+uint64(8*i), b[:]); err != nil {
			t.Errorf("reading counts[%d] while threads run: %v", i, err)
		}
		return int64(binary.LittleEndian.Uint64(b[:]))
	}
	// advanced reports whether counts[i] moves within a while.
	advanced := func(i int) bool {
		a := read(i)
		time.Sleep(30 * time.Millisecond)
		return read(i) != a
	}
	p.Do(func() {
		defer p.Kill()
		if err := p.InsertBreakpoint(marker); err != nil {
			fail = err
			return
		}
		if err := ns.SetNonStop(true); err != nil {
			fail = err
			return
		}
		if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
			fail = err
			return
		}
		var hit int
		for hit == 0 {
			ev, err := p.Wait()
			if err != nil {
				fail = err
				return
			}
			if ev.Trap == target.TrapBreakpoint && ev.Addr == marker {
				hit = ev.Tid
			} else if ev.Kind != target.EventThreadExited {
				fail = fmt.Errorf("unexpected event %v", ev)
				return
			}
		}
		if ns.Running(hit) {
			fail = fmt.Errorf("thread %d reported a stop but counts as running", hit)
			return
		}
		var others []int
		for _, tid := range p.Threads() {
			if tid != hit && tid != p.Pid() {
				others = append(others, tid)
				if !ns.Running(tid) {
					t.Errorf("thread %d stopped with the one at the breakpoint", tid)
				}
			}
		}
		if len(others) != 2 {
			fail = fmt.Errorf("want 2 other workers, have %v", others)
			return
		}
		if !advanced(1) || !advanced(2) {
			fail = fmt.Errorf("the other workers do not run while thread %d is stopped", hit)
			return
		}
		// A pause holds every thread; resuming lets them go on.
		if err := ns.PauseAll(); err != nil {
			fail = err
			return
		}
		for _, tid := range others {
			if ns.Running(tid) {
				t.Errorf("thread %d runs during a pause", tid)
			}
		}
		if advanced(1) || advanced(2) {
			t.Fatal("counters advance during a pause")
		}
		// The stopped thread steps off its breakpoint while the others
		// stay paused (what a step-over does), then they resume.
		if err := p.RemoveBreakpoint(marker); err != nil {
			fail = err
			return
		}
		if err := p.Resume(map[int]target.Action{hit: {Kind: target.Step}}, target.Action{Kind: target.Stay}); err != nil {
			fail = err
			return
		}
		ev, err := p.Wait()
		if err != nil || ev.Tid != hit || ev.Trap != target.TrapStep {
			fail = fmt.Errorf("want thread %d's step, got %v %v", hit, ev, err)
			return
		}
		if err := ns.ResumePaused(); err != nil {
			fail = err
			return
		}
		if !advanced(1) || !advanced(2) {
			t.Fatal("counters do not advance after ResumePaused")
		}
		// Stop one running thread alone.
		if err := ns.StopThread(others[0]); err != nil {
			fail = err
			return
		}
		ev, err = p.Wait()
		if err != nil || ev.Tid != others[0] || !ev.Async || ev.Sig != int(unix.SIGSTOP) {
			fail = fmt.Errorf("want thread %d's requested stop, got %v %v", others[0], ev, err)
			return
		}
		if !ns.Running(others[1]) {
			fail = fmt.Errorf("thread %d stopped with thread %d", others[1], others[0])
			return
		}
		// Poll finds nothing more to report while the last one runs.
		if _, ok, err := ns.Poll(); ok || err != nil {
			fail = fmt.Errorf("poll reports something: %v %v", ok, err)
			return
		}
		// A breakpoint inserted while a worker runs (through
		// /proc/PID/mem) traps it.
		tick := symbol(t, prog, "tick")
		if err := p.InsertBreakpoint(tick); err != nil {
			fail = err
			return
		}
		ev, err = p.Wait()
		if err != nil || ev.Trap != target.TrapBreakpoint || ev.Addr != tick || ev.Tid != others[1] {
			fail = fmt.Errorf("want thread %d at the breakpoint inserted while it ran, got %v %v", others[1], ev, err)
			return
		}
		if err := p.RemoveBreakpoint(tick); err != nil {
			fail = err
			return
		}
		// Let them all finish.
		if _, err := p.WriteMemory(done, []byte{1, 0, 0, 0}); err != nil {
			fail = err
			return
		}
		if err := p.Resume(nil, target.Action{Kind: target.Continue}); err != nil {
			fail = err
			return
		}
		for {
			ev, err := p.Wait()
			if err != nil {
				fail = err
				return
			}
			if ev.Kind == target.EventExited {
				if ev.Code != 5 {
					fail = fmt.Errorf("exit code %d", ev.Code)
					return
				}
				return
			}
			if ev.Kind == target.EventStop {
				fail = fmt.Errorf("unexpected stop %v", ev)
				return
			}
		}
	})
	if fail != nil {
		t.Fatal(fail)
	}
}
