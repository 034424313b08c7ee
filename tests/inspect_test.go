package tests

import (
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// inspectWalk is the gdb Python script that walks a section in inspect
// mode, stepi by stepi, and checks each stop (testdata/inspect_walk.py).
func inspectWalk(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "inspect_walk.py")
}

// Issue 13, acceptance 1 through gdb: for every flavour, with 4 threads
// running the same section under a 100 µs signal timer, gdb in inspect mode
// steps from the function's entry into the section and stepi by stepi to its
// commit. Each stop is at the next instruction of the path (so no abort
// moved it to the handler), rseq_cs reads as the descriptor whose start_ip
// is the section's start, the thread is pinned to one CPU while inside and
// has its affinity back after, and the sums are exact at exit.
func TestGDBInspectWalksSections(t *testing.T) {
	needTool(t, "gdb")
	script := inspectWalk(t)
	for _, f := range flavours {
		if f.prog == "branch_exit" {
			continue // not one of issue 13's flavours
		}
		t.Run(f.prog, func(t *testing.T) {
			port, done := direct(t, fixture(f.prog), "4", "300", "--signals")
			out := gdb(t, port, fixture(f.prog), false, []string{
				"break " + f.fn, "continue", "delete",
				"source " + script,
				"monitor rseq stats",
				"continue",
			}, 3*time.Minute)
			output := done()
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "@@FAIL") {
					t.Error(l)
				}
			}
			if !strings.Contains(out, "@@OK") {
				t.Fatalf("the walk did not finish:\n%s", tail(out))
			}
			st := stats(t, out)
			if st["inspected steps"] < 3 || st["steps inside a section"] != 0 {
				t.Errorf("counters: %v", st)
			}
			if !strings.Contains(out, "exited normally") {
				t.Errorf("program did not exit normally:\n%s", tail(out))
			}
			exactSums(t, output)
			m := regexp.MustCompile(`@@OK .*`).FindString(out)
			t.Log(m)
		})
	}
}

var abortsRE = regexp.MustCompile(`@@aborts\n\$\d+ = (\d+)`)

// Issue 13, acceptance 3 through gdb: a forced abort lands in the abort
// handler (the next stepi shows it, and `info registers rip` after flushregs
// too), the program's own abort counter rises by exactly one, and the sums
// stay exact.
func TestGDBForcedAbort(t *testing.T) {
	needTool(t, "gdb")
	port, done := direct(t, fixture("full_tables"), "1", "100")
	start := startBreak(t, "full_tables", "inc_full")
	out := gdb(t, port, fixture("full_tables"), false, []string{
		"break " + start, "continue", "delete",
		"echo @@aborts\\n", "print *aborts",
		"monitor rseq inspect on", "stepi", "stepi",
		"echo @@abort\\n", "monitor rseq abort",
		"flushregs",
		"echo @@rip\\n", "info registers rip",
		"echo @@stepi\\n", "stepi",
		"echo @@commit\\n", "tbreak *((char*)" + start[len("*((char*)"):len(start)-1] + ")", "continue",
		"echo @@aborts\\n", "print *aborts",
		"monitor rseq stats",
		"continue",
	}, 2*time.Minute)
	output := done()
	if s := sectionOf(t, out, "abort"); !strings.Contains(s, "forced abort of inc_full+") || !strings.Contains(s, ": in the abort handler") {
		t.Errorf("monitor rseq abort said:\n%s", s)
	}
	if s := sectionOf(t, out, "rip"); !strings.Contains(s, "rseq_abort") {
		t.Errorf("after flushregs gdb shows rip:\n%s", s)
	}
	if s := sectionOf(t, out, "stepi"); !strings.Contains(s, "rseq_abort") {
		t.Errorf("the stepi after the abort is not in the abort handler:\n%s", s)
	}
	m := abortsRE.FindAllStringSubmatch(out, -1)
	if len(m) != 2 || m[0][1] != "0" || m[1][1] != "1" {
		t.Errorf("the thread's abort counter before and after: %v\n%s", m, tail(out))
	}
	if st := stats(t, out); st["forced aborts"] != 1 {
		t.Errorf("counters: %v", st)
	}
	r := exactSums(t, output)
	if r["aborts"] < 1 {
		t.Errorf("the program counted no abort: %v", r)
	}
}

// Issue 13, acceptance 3, the refusal: broken_a_nosig's abort_ip has no
// signature before it, so the kernel would kill the thread. The thread is
// moved into it (it is never executed), the abort is refused with that
// message, nothing changes (PC, rseq_cs, counters), and once moved back the
// program finishes with exact sums.
func TestGDBForcedAbortRefused(t *testing.T) {
	needTool(t, "gdb")
	port, done := direct(t, fixture("broken_table"), "1", "100")
	out := gdb(t, port, fixture("broken_table"), false, []string{
		"break inc_broken", "continue", "delete",
		"set $old = $pc", "set $pc = broken_a_nosig",
		"echo @@status-before\\n", "monitor rseq status",
		"echo @@abort\\n", "monitor rseq abort",
		"echo @@status-after\\n", "monitor rseq status",
		"echo @@rip\\n", "flushregs", "info registers rip",
		"monitor rseq stats",
		"set $pc = $old",
		"continue",
	}, 2*time.Minute)
	output := done()
	if s := sectionOf(t, out, "abort"); !strings.Contains(s, "abort refused") || !strings.Contains(s, "kill the thread with SIGSEGV") || !strings.Contains(s, "nothing changed") {
		t.Errorf("monitor rseq abort said:\n%s", s)
	}
	if b, a := sectionOf(t, out, "status-before"), sectionOf(t, out, "status-after"); a != b {
		t.Errorf("status changed by a refused abort:\n%s\n---\n%s", b, a)
	}
	if s := sectionOf(t, out, "rip"); !strings.Contains(s, "<broken_a_nosig>") {
		t.Errorf("rip after the refused abort:\n%s", s)
	}
	if st := stats(t, out); st["forced aborts"] != 0 || st["aborts"] != 0 {
		t.Errorf("counters: %v", st)
	}
	if !strings.Contains(out, "exited normally") {
		t.Errorf("program did not exit normally:\n%s", tail(out))
	}
	exactSums(t, output)
}
