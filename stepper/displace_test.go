package stepper

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/arch/x86/x86asm"
)

// descriptorLoad finds, in worker of full_tables, the RIP-relative lea that
// loads a section's descriptor right before the store publishing it: an
// instruction whose copy must have its displacement rewritten.
func descriptorLoad(t *testing.T, e *Engine, worker uint64) uint64 {
	pc := worker
	for i := 0; i < 80; i++ {
		in, err := e.decode(pc)
		if err != nil {
			t.Fatalf("decoding worker: %v", err)
		}
		if m, ok := in.Inst.Args[1].(x86asm.Mem); in.Inst.Op == x86asm.LEA && ok && m.Base == x86asm.RIP {
			store, err := e.decode(in.Next())
			if err == nil {
				if r := e.idx.Lookup(store.Next()); r != nil && r.Kind == regions.KindCriticalSection && r.Start == store.Next() {
					return pc
				}
			}
		}
		pc = in.Next()
	}
	t.Fatal("no RIP-relative descriptor load before a section in worker")
	return 0
}

// Threads continued from a breakpoint run a copy of its instruction (one
// stop per hit, no single-step), including a RIP-relative one, while other
// threads hit the same breakpoints and signals arrive. No thread is ever
// seen in a copy, and the program's per-CPU sums come out exact.
func TestContinueDisplaced(t *testing.T) {
	for _, args := range [][]string{{"4", "4000"}, {"4", "4000", "--signals=100"}} {
		t.Run(args[len(args)-1], func(t *testing.T) {
			prog := filepath.Join(fixtures(t), "full_tables")
			p, e := launch(t, prog, args...)
			e.Do(func() {
				defer func() {
					if t.Failed() {
						e.Kill()
					}
				}()
				bias := e.biasOf(p.ExecPath())
				entry := symbolAddr(t, prog, "inc_full", bias)
				lea := descriptorLoad(t, e, symbolAddr(t, prog, "worker", bias))
				for _, a := range []uint64{entry, lea} {
					if _, err := e.SetBreakpoint(a); err != nil {
						t.Errorf("breakpoint at %#x: %v", a, err)
						return
					}
				}
				hits := map[uint64]int{}
				tid := p.Pid()
				for i := 0; i < 600; i++ {
					st, err := e.Continue(tid, nil)
					if err != nil || st.Kind != StopBreakpoint {
						t.Errorf("continue %d: %v %+v", i, err, st)
						return
					}
					hits[st.PC]++
					tid = st.Tid
					for _, th := range p.Threads() {
						regs, err := p.Regs(th)
						if err != nil {
							continue
						}
						if _, in := e.disp.copies[regs.Rip&^(slotSize-1)]; in {
							t.Errorf("after continue %d thread %d is in a displaced copy at %#x", i, th, regs.Rip)
							return
						}
					}
				}
				stats := e.Stats()
				if hits[entry] == 0 || hits[lea] == 0 {
					t.Errorf("hits %v: both breakpoints should be hit", hits)
				}
				if stats.Displaced < 500 {
					t.Errorf("%d continues from a breakpoint ran a copy of its instruction, want nearly all of 600", stats.Displaced)
				}
				if e.disp.settled == 0 {
					t.Errorf("no thread was ever stopped in a copy: the scenario no longer tests putting them back")
				}
				e.ClearAll()
				st, err := e.Continue(tid, nil)
				if err != nil || st.Kind != StopExited || st.Code != 0 {
					t.Errorf("to the end (exit 0 when the sums are exact): %v %+v", err, st)
				}
				t.Logf("%d displaced, %d put back, %d single-steps, hits %v", stats.Displaced, e.disp.settled, stats.SingleSteps, hits)
			})
		})
	}
}

// An instruction that cannot run from elsewhere is stepped over as before:
// a call (its return address) is never displaced.
func TestDisplaceRefusesCalls(t *testing.T) {
	prog := filepath.Join(fixtures(t), "full_tables")
	p, e := launch(t, prog, "1", "100")
	e.Do(func() {
		worker := symbolAddr(t, prog, "worker", e.biasOf(p.ExecPath()))
		pc := worker
		for i := 0; i < 80; i++ {
			in, err := e.decode(pc)
			if err != nil {
				t.Errorf("decoding worker: %v", err)
				return
			}
			if in.Kind == x86.FlowCall {
				break
			}
			pc = in.Next()
		}
		if _, err := e.SetBreakpoint(pc); err != nil {
			t.Error(err)
			return
		}
		tid, hits := p.Pid(), 0
		for {
			st, err := e.Continue(tid, nil)
			if err != nil {
				t.Errorf("continue: %v", err)
				return
			}
			if st.Kind == StopExited {
				if st.Code != 0 {
					t.Errorf("exit code %d: the sums are wrong", st.Code)
				}
				break
			}
			if st.Kind != StopBreakpoint || st.PC != pc {
				t.Errorf("continue: %+v", st)
				return
			}
			hits++
			tid = st.Tid
		}
		if hits != 50 {
			t.Errorf("%d hits of the call in 100 iterations, want 50", hits)
		}
		if n := e.Stats().Displaced; n != 0 {
			t.Errorf("a call was displaced %d times", n)
		}
		if n := e.Stats().SingleSteps; n < hits {
			t.Errorf("%d single-steps for %d continues from the call", n, hits)
		}
	})
}

// Detaching takes the scratch mapping of the displaced copies out of the
// process, which runs on to exact sums.
func TestDetachUnmapsScratch(t *testing.T) {
	prog := filepath.Join(fixtures(t), "full_tables")
	cmd, p, e := attachRunning(t, prog, "2", "400000000")
	mapped := func(base uint64) bool {
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(maps), fmt.Sprintf("%x-", base))
	}
	var base uint64
	e.Do(func() {
		if _, err := e.SetBreakpoint(symbolAddr(t, prog, "inc_full", e.biasOf(p.ExecPath()))); err != nil {
			t.Error(err)
			return
		}
		tid := p.Pid()
		for i := 0; i < 5; i++ {
			st, err := e.Continue(tid, nil)
			if err != nil || st.Kind != StopBreakpoint {
				t.Errorf("continue: %v %+v", err, st)
				return
			}
			tid = st.Tid
		}
		if len(e.disp.mapped) != 1 {
			t.Errorf("scratch mappings %v, want one", e.disp.mapped)
			return
		}
		base = e.disp.mapped[0]
		if !mapped(base) {
			t.Errorf("scratch %#x not in the process's maps", base)
		}
		if err := e.Detach(); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}
	if mapped(base) {
		t.Errorf("scratch %#x still mapped after detach", base)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the detached program: %v (exit 1: its sums are wrong)", err)
	}
}
