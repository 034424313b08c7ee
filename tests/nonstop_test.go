package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gdbNonStop runs a gdb batch session in non-stop mode (set before the
// connection, as gdb requires) against port and returns its output.
func gdbNonStop(t *testing.T, port int, exe string, cmds []string, timeout time.Duration) string {
	t.Helper()
	needTool(t, "gdb")
	script := append([]string{"set confirm off", "set pagination off", "set width 0", "set non-stop on",
		fmt.Sprintf("target remote :%d", port)}, cmds...)
	file := filepath.Join(t.TempDir(), "cmds.gdb")
	if err := os.WriteFile(file, []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, timeout, "gdb", "-nx", "-batch", "-x", file, exe)
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	return out
}

var countsRE = regexp.MustCompile(`\$\d+ = \{(\d+), (\d+), (\d+), (\d+),`)

// nsCounts reads the four threads' counts from the prints of ns_counts
// in a transcript section; it wants two prints.
func nsCounts(t *testing.T, section string) [2][4]int64 {
	t.Helper()
	m := countsRE.FindAllStringSubmatch(section, -1)
	if len(m) != 2 {
		t.Fatalf("want two prints of ns_counts, have %d:\n%s", len(m), section)
	}
	var c [2][4]int64
	for i := range 2 {
		for j := range 4 {
			c[i][j], _ = strconv.ParseInt(m[i][j+1], 10, 64)
		}
	}
	return c
}

// othersAdvanced checks that threads 1-3 committed between two reads of
// their counts while thread 0, stopped, did not.
func othersAdvanced(t *testing.T, what string, c [2][4]int64) {
	t.Helper()
	if c[0][0] != c[1][0] {
		t.Errorf("%s: the stopped thread's count moved: %d then %d", what, c[0][0], c[1][0])
	}
	for j := 1; j < 4; j++ {
		if c[1][j] <= c[0][j] {
			t.Errorf("%s: thread %d did not commit while thread 0 was stopped: %d then %d", what, j, c[0][j], c[1][j])
		}
	}
}

// Issue 14, point 4: gdb's non-stop mode. One thread stops at a breakpoint
// and steps 200 instructions, through the section several times, while
// the other three keep committing in the same section: their counts
// advance while it is stopped, its stepi's region runs commit and never
// stop it inside the section, the others pass its temporary breakpoints
// (on the section's commit and abort) without a report, and the sums are
// exact.
func TestGDBNonStop(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("nonstop"), "4", "3000000")
	out := gdbNonStop(t, srv.port, fixture("nonstop"), []string{
		// In non-stop mode gdb stays on the thread it was on; worker 0
		// is the first thread created, gdb's thread 2.
		"break ns_stepped", "continue", "thread 2",
		`printf "FUNC %lx\n", (long)&inc_ns`,
		"echo @@threads\\n", "info threads",
		"echo @@before\\n", "print ns_counts", "shell sleep 0.3", "print ns_counts",
		"set $i = 0",
		"while $i < 200",
		"  stepi",
		`  printf "PC %lx\n", $pc`,
		"  set $i = $i + 1",
		"end",
		// Line steps: range steps (vCont;r), and gdb's step-resume
		// breakpoints over calls, which the other threads hit and gdb
		// steps them over.
		"next", "next", "next", "next", "next", "next",
		// gdb steps the other threads over its step-resume breakpoint
		// (displaced steps, two buffers, a third thread queued behind
		// them) as it handles their stops, which it does only while a
		// command waits for a stop: the stops still queued when the
		// last next ends leave those threads stopped by gdb, not by
		// rseqdbg, until the next command that waits. A stepi inserts
		// no breakpoint, and each of its waits handles the queued
		// stops first; the counts are read once gdb holds no thread.
		"stepi 4",
		"echo @@after\\n", "print ns_counts", "shell sleep 0.3", "print ns_counts",
		"echo @@stats\\n", "monitor rseq stats",
		"echo @@end\\n", "delete", "continue",
	}, 2*time.Minute)
	srv.wait(t, 30*time.Second)
	output := srv.stdout.String()

	if !strings.Contains(out, `Thread 2 "nonstop" hit Breakpoint 1, ns_stepped`) {
		t.Fatalf("no thread stopped at ns_stepped:\n%s", head(out))
	}
	threads := sectionOf(t, out, "threads")
	if running := strings.Count(threads, "(running)"); running != 4 {
		// The main thread (in pthread_join) and the three other workers.
		t.Errorf("want 4 running threads beside the stopped one, have %d:\n%s", running, threads)
	}
	if strings.Contains(out, "received signal") {
		// Another thread's stop at a temporary breakpoint of the stepped
		// thread's (or at one just removed) surfaced as a SIGTRAP.
		t.Errorf("a stop gdb did not ask for was reported:\n%s", out)
	}
	othersAdvanced(t, "at the breakpoint", nsCounts(t, sectionOf(t, out, "before")))
	othersAdvanced(t, "after 200 stepi, 6 next and 4 stepi", nsCounts(t, sectionOf(t, out, "after")))

	commits, inside := commitHits(t, "nonstop", "inc_ns", out)
	if commits < 2 || inside != 0 {
		t.Errorf("the stepped thread stopped %d times at the commit (want several) and %d times inside the section (want none)", commits, inside)
	}
	st := stats(t, sectionOf(t, out, "stats"))
	if st["region runs"] < 2 || st["commits"] < 2 || st["steps inside a section"] != 0 {
		t.Errorf("stats: %v", st)
	}
	// How often the others met the stepped thread's breakpoints varies
	// with the scheduling; that none of those stops surfaced is checked
	// above.
	t.Logf("stats: %v", st)
	if !strings.Contains(out, "exited normally") {
		t.Errorf("program did not exit normally:\n%s", tail(out))
	}
	r := exactSums(t, output)
	t.Logf("%v", r)
}

// gdb's interrupt in non-stop mode stops one running thread (vCont;t),
// reported with signal 0 (T00): it holds while the others run on.
func TestGDBNonStopInterrupt(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("nonstop"), "4", "3000000")
	out := gdbNonStop(t, srv.port, fixture("nonstop"), []string{
		"break ns_stepped", "continue", "thread 2",
		// A batch gdb handles a stop notification while it waits for a
		// stop: thread 2's stepi, which ends at thread 3's, the first to
		// come (gdb reads its notification before the OK to vCont).
		"thread 3", "interrupt", "shell sleep 0.3", "thread 2", "stepi",
		"echo @@interrupt\\n", "info threads", "print ns_counts", "shell sleep 0.3", "print ns_counts",
		"echo @@end\\n", "kill",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	// gdb's thread 3 is worker 1: stopped by gdb's interrupt, it holds
	// while thread 0 and the others run.
	intr := sectionOf(t, out, "interrupt")
	line3 := regexp.MustCompile(`(?m)^. 3 +Thread .*$`).FindString(intr)
	if line3 == "" || strings.Contains(line3, "(running)") {
		t.Errorf("want thread 3 stopped after interrupt:\n%s", intr)
	}
	if c := nsCounts(t, intr); c[0][1] != c[1][1] || c[1][2] <= c[0][2] || c[1][3] <= c[0][3] {
		t.Errorf("after interrupting thread 3: counts %v", c)
	}
	if !strings.Contains(out, `Thread 3 "nonstop" stopped.`) {
		t.Errorf("gdb did not see thread 3 stop with signal 0 (T00):\n%s", tail(out))
	}
}

// A proxied stub's target cannot run threads independently: the proxy
// refuses QNonStop:1, as gdbserver does when it cannot, and gdb says so.
func TestProxyRefusesNonStop(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	port, done := proxy(t, fixture("nonstop"), "1", "1000")
	script := []string{"set confirm off", "set pagination off", "set non-stop on",
		fmt.Sprintf("target remote :%d", port), "echo @@after\\n"}
	file := filepath.Join(t.TempDir(), "cmds.gdb")
	if err := os.WriteFile(file, []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := runTool(t, time.Minute, "gdb", "-nx", "-batch", "-x", file, fixture("nonstop"))
	if !strings.Contains(out, "non-stop") || strings.Contains(out, "@@after") {
		t.Errorf("gdb connected in non-stop mode through the proxy:\n%s", out)
	}
	t.Log(strings.TrimSpace(tail(out)))
	done()
}

// gdb's detach in non-stop mode, with threads running and one stopped
// after steps: every thread goes on untraced and the program ends with
// exact sums.
func TestGDBNonStopDetach(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("nonstop"), "4", "2000000")
	out := gdbNonStop(t, srv.port, fixture("nonstop"), []string{
		"break ns_stepped", "continue", "thread 2", "stepi", "stepi", "detach",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if !strings.Contains(out, "detached]") {
		t.Errorf("no detach:\n%s", tail(out))
	}
	exactSums(t, srv.stdout.String())
}
