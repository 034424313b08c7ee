package tests

import (
	"strings"
	"testing"
	"time"
)

// Issue's first scenario: break in the section's function, continue, stepi
// ×3, stepi 30, continue, with a 100 µs SIGALRM timer on the stepped
// thread. gdb steps over its breakpoint asking to see every signal, so a
// step that let the signal in never completed (0 of 5 runs). 20 of 20 runs
// complete with exact sums.
func TestGDBStepiUnderSignalStorm(t *testing.T) {
	needTool(t, "gdb")
	for run := 0; run < 20; run++ {
		srv := startRseqdbg(t, []string{"--once"}, fixture("full_tables"), "1", "300", "--signals=100")
		out := gdb(t, srv.port, fixture("full_tables"), false, []string{
			"break inc_full", "continue", "stepi", "stepi", "stepi", "stepi 30", "nexti 3", "delete", "continue",
		}, time.Minute)
		srv.wait(t, 30*time.Second)
		exactSums(t, srv.stdout.String())
		if !strings.Contains(out, "exited normally") {
			t.Fatalf("run %d:\n%s", run, tail(out))
		}
	}
}

// The same commands and line steps through rseqdbg run.
func TestHeadlessStepsUnderSignalStorm(t *testing.T) {
	for i := 0; i < 20; i++ {
		s := run(t, []string{"break inc_full", "continue", "stepi 3", "stepi 30", "nexti 5", "delete", "next", "step", "finish"},
			[]string{"--continue"}, fixture("full_tables"), "1", "300", "--signals=100")
		s.exact(t)
		if n := len(s.of("stop")); n < 8 {
			t.Fatalf("run %d: %d stops: %v", i, n, s.of("stop"))
		}
	}
}
