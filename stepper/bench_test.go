package stepper

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
)

// loopLine launches loop_next and runs it to the start of its one-line
// loop; it returns the line's address range.
func loopLine(b *testing.B) (*Engine, int, uint64, uint64) {
	dir := fixtures(b)
	prog := filepath.Join(dir, "loop_next")
	p, e := launch(b, prog, "8000")
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "tests", "fixtures", "loop_next.c"))
	if err != nil {
		b.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, "/* LOOP-LINE */") {
			line = i + 1
		}
	}
	var lo, hi uint64
	e.Do(func() {
		syms := &symbols.Table{}
		for _, o := range e.Objects() {
			if o.Path == p.ExecPath() {
				syms.Load(o.Path, o.Bias)
			}
		}
		addrs, _ := syms.LineAddrs("loop_next.c", line)
		if len(addrs) == 0 {
			b.Fatalf("no code at loop_next.c:%d", line)
		}
		bp, _ := e.SetBreakpoint(addrs[0])
		if st, err := e.Continue(p.Pid(), nil); err != nil || st.Kind != StopBreakpoint {
			b.Fatalf("to the loop: %v %+v", err, st)
		}
		e.ClearBreakpoint(bp.ID)
		var ok bool
		lo, hi, ok = syms.LineRange(addrs[0])
		if !ok {
			b.Fatal("no line range")
		}
	})
	return e, p.Pid(), lo, hi
}

// BenchmarkNextLoop compares `next` over the 8000-iteration one-line loop
// (range stepping: native runs between the places control can leave the
// line) with single-stepping the same loop, in the same run.
func BenchmarkNextLoop(b *testing.B) {
	var rangeTime, stepTime time.Duration
	steps := 0
	for i := 0; i < b.N; i++ {
		e, tid, lo, hi := loopLine(b)
		start := time.Now()
		e.Do(func() {
			// The loop's range may be split by the line table; step ranges
			// until the PC is past the loop line, as `next` does.
			for {
				st, err := e.RangeStep(tid, lo, hi, 0, OthersStay, true)
				if err != nil || st.Kind != StopStep {
					b.Fatalf("range step: %v %+v", err, st)
				}
				if st.PC < lo || st.PC >= hi {
					break
				}
			}
		})
		rangeTime += time.Since(start)

		e, tid, lo, hi = loopLine(b)
		start = time.Now()
		e.Do(func() {
			for {
				st, err := e.StepInstruction(tid, 0, OthersStay)
				if err != nil || st.Kind != StopStep {
					b.Fatalf("step: %v %+v", err, st)
				}
				steps++
				if st.PC < lo || st.PC >= hi {
					break
				}
			}
		})
		stepTime += time.Since(start)
	}
	b.ReportMetric(float64(rangeTime.Microseconds())/float64(b.N)/1000, "next-ms")
	b.ReportMetric(float64(stepTime.Microseconds())/float64(b.N)/1000, "stepped-ms")
	b.ReportMetric(float64(steps)/float64(b.N), "instructions")
	b.ReportMetric(float64(stepTime)/float64(rangeTime), "speedup")
}

// BenchmarkStepRate compares the engine's instruction step with a plain C
// loop of PTRACE_SINGLESTEP + waitpid (tests/fixtures/stepbench) on the same
// program, in the same run. The two alternate in rounds, so that a change
// of load on the machine weighs on both alike.
func BenchmarkStepRate(b *testing.B) {
	const rounds, perRound = 10, 2000
	dir := fixtures(b)
	prog := filepath.Join(dir, "loop_next")
	nsRE := regexp.MustCompile(`ns_per_step=([0-9.]+)`)
	var cTotal, engineTotal float64 // ns
	for i := 0; i < b.N; i++ {
		p, e := launch(b, prog, "100000000")
		for range rounds {
			out, err := exec.Command(filepath.Join(dir, "stepbench"), prog, strconv.Itoa(perRound), "100000000").CombinedOutput()
			if err != nil {
				b.Fatalf("stepbench: %v\n%s", err, out)
			}
			m := nsRE.FindSubmatch(out)
			if m == nil {
				b.Fatalf("stepbench output: %s", out)
			}
			cNs, _ := strconv.ParseFloat(string(m[1]), 64)
			cTotal += cNs * perRound
			start := time.Now()
			e.Do(func() {
				for k := 0; k < perRound; k++ {
					if _, err := e.StepInstruction(p.Pid(), 0, OthersStay); err != nil {
						b.Fatal(err)
					}
				}
			})
			engineTotal += float64(time.Since(start).Nanoseconds())
		}
	}
	steps := float64(b.N * rounds * perRound)
	b.ReportMetric(engineTotal/steps, "engine-ns/step")
	b.ReportMetric(cTotal/steps, "c-ns/step")
	b.ReportMetric(100*cTotal/engineTotal, "%-of-c-rate")
}
