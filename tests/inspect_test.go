package tests

import (
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
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
	if s := sectionOf(t, out, "rip"); !strings.Contains(s, "<inc_full.rseq_abort>") {
		t.Errorf("after flushregs gdb shows rip:\n%s", s)
	}
	// The step after the abort reports the handler's first instruction
	// without executing it.
	var pc uint64
	if m := regexp.MustCompile(`in the abort handler, pc (0x[0-9a-f]+)`).FindStringSubmatch(out); m != nil {
		fmt.Sscan(m[1], &pc)
	}
	if s := sectionOf(t, out, "stepi"); pc == 0 || !strings.Contains(s, fmt.Sprintf("0x%016x in inc_full.rseq_abort ()", pc)) {
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

var (
	threadAffRE = regexp.MustCompile(`@@thread (\d+) affinity (\S+)`)
	pinnedRE    = regexp.MustCompile(`@@pinned (\S+)`)
	areaRE      = regexp.MustCompile(`@@area (0x[0-9a-f]+) (0x[0-9a-f]+)`)
	allowedRE   = regexp.MustCompile(`Cpus_allowed_list:\s*(\S+)`)
)

// inspectPrelude stops one thread two instructions into full_tables'
// inc_full section in inspect mode and prints its tid, affinity (before,
// and pinned), rseq area and rseq_cs.
func inspectPrelude(t *testing.T) []string {
	start := startBreak(t, "full_tables", "inc_full")
	return []string{
		"break " + start, "continue", "delete",
		`python import gdb; p = gdb.selected_thread().ptid; print("@@thread %d affinity %s" % (p[1], [l.split()[1] for l in open("/proc/%d/task/%d/status" % (p[0], p[1])) if l.startswith("Cpus_allowed_list:")][0]))`,
		"monitor rseq inspect on", "stepi", "stepi",
		`python import gdb, re; p = gdb.selected_thread().ptid; print("@@pinned %s" % [l.split()[1] for l in open("/proc/%d/task/%d/status" % (p[0], p[1])) if l.startswith("Cpus_allowed_list:")][0])`,
		`python import gdb, re; p = gdb.selected_thread().ptid; s = [l for l in gdb.execute("monitor rseq status", to_string=True).splitlines() if l.startswith("thread %d:" % p[1])][0]; print("@@area %s %s" % (re.search(r"rseq area (0x[0-9a-f]+)", s).group(1), re.search(r"rseq_cs (0x[0-9a-f]+)", s).group(1)))`,
	}
}

func cpusAllowed(t *testing.T, pid, tid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Cpus_allowed_list:\s*(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no Cpus_allowed_list in %s", b)
	}
	return string(m[1])
}

// Issue 13, acceptance 2: a client that disconnects mid-inspection leaves
// the thread with its affinity back and rseq_cs as the program wrote it; a
// SIGTERM of rseqdbg mid-inspection gives the affinity back too. The
// program, detached (--keep), finishes with exact sums.
func TestGDBInspectReleased(t *testing.T) {
	needTool(t, "gdb")
	prog := fixture("full_tables")
	args := []string{"4", "400000000", "--signals"}
	check := func(t *testing.T, out string) (tid int, before string) {
		m := threadAffRE.FindStringSubmatch(out)
		p := pinnedRE.FindStringSubmatch(out)
		if m == nil || p == nil {
			t.Fatalf("gdb did not stop inside the section:\n%s", tail(out))
		}
		if p[1] == m[2] || strings.ContainsAny(p[1], "-,") {
			t.Errorf("inside the section the thread's affinity is %s (before %s): not pinned", p[1], m[2])
		}
		fmt.Sscan(m[1], &tid)
		return tid, m[2]
	}
	t.Run("disconnect", func(t *testing.T) {
		srv := startServing(t, []string{"--keep"}, append([]string{prog}, args...)...)
		pid := srv.pidFromNotices(t)
		out := gdb(t, srv.port, prog, false, append(inspectPrelude(t), "disconnect"), time.Minute)
		tid, before := check(t, out)
		time.Sleep(200 * time.Millisecond)
		if got := cpusAllowed(t, pid, tid); got != before {
			t.Errorf("after the disconnect thread %d has affinity %s, before %s", tid, got, before)
		}
		a := areaRE.FindStringSubmatch(out)
		if a == nil {
			t.Fatalf("no rseq area:\n%s", tail(out))
		}
		var area, cs uint64
		fmt.Sscan(a[1], &area)
		fmt.Sscan(a[2], &cs)
		if cs == 0 {
			t.Errorf("rseq_cs 0 inside the section")
		}
		mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
		if err != nil {
			t.Fatal(err)
		}
		var b [8]byte
		_, err = mem.ReadAt(b[:], int64(area+8))
		mem.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := bin.LittleEndian.Uint64(b[:]); got != cs {
			t.Errorf("after the disconnect rseq_cs is %#x, the program's value %#x", got, cs)
		}
		srv.cmd.Process.Signal(syscall.SIGTERM)
		srv.wait(t, time.Minute)
		exactSums(t, srv.stdout.String())
	})
	t.Run("sigterm", func(t *testing.T) {
		srv := startServing(t, []string{"--keep"}, append([]string{prog}, args...)...)
		pid := srv.pidFromNotices(t)
		out, _ := gdbRun(t, srv.port, prog, false, append(inspectPrelude(t),
			fmt.Sprintf("shell kill -TERM %d", srv.cmd.Process.Pid), "shell sleep 0.5",
			"echo @@after\\n", fmt.Sprintf("shell grep -h Cpus_allowed_list /proc/%d/task/*/status", pid), "echo @@end\\n",
		), time.Minute)
		_, before := check(t, out)
		after := allowedRE.FindAllStringSubmatch(sectionOf(t, out, "after"), -1)
		if len(after) < 4 {
			t.Fatalf("no affinities after the SIGTERM:\n%s", tail(out))
		}
		for _, a := range after {
			if a[1] != before {
				t.Errorf("after SIGTERM of rseqdbg a thread has affinity %s, before %s", a[1], before)
			}
		}
		srv.wait(t, time.Minute)
		if !strings.Contains(srv.stderr.String(), "Detached from process") {
			t.Errorf("rseqdbg did not detach:\n%s", srv.stderr.String())
		}
		exactSums(t, srv.stdout.String())
	})
}

// Issue 13, acceptance 1 through `rseqdbg run --json`: for every flavour,
// 4 threads under the signal timer, `set inspect on` and stepi from the
// function's entry: the stops inside the section say "inspect": true with
// offsets rising one instruction at a time to the commit (no kernel abort
// moves the thread to the handler), rseq_cs (displayed at every stop) is
// the descriptor's address throughout, and the sums are exact.
func TestHeadlessInspectWalksSections(t *testing.T) {
	for _, f := range flavours {
		if f.prog == "branch_exit" {
			continue
		}
		t.Run(f.prog, func(t *testing.T) {
			cmds := []string{"break " + f.fn, "continue", "delete", "display rs->rseq_cs", "set inspect on"}
			for i := 0; i < 40; i++ {
				cmds = append(cmds, "stepi")
			}
			cmds = append(cmds, "info stats")
			s := run(t, cmds, []string{"--continue"}, fixture(f.prog), "4", "300", "--signals")
			s.exact(t)
			walked := false
			var tid, prevOff int
			var start, commit, abort, cs string
			inWalk := false
			for i, e := range s.events {
				if e.str("event") != "stop" || e.str("reason") != "step" {
					continue
				}
				disp := ""
				if i+1 < len(s.events) && s.events[i+1].str("event") == "display" {
					disp = s.events[i+1].str("value")
				}
				in, _ := e["inside"].(map[string]any)
				ev := event(in)
				switch {
				case !inWalk && in != nil && ev["inspect"] == true && ev.num("offset") == 0 && ev["in_callee"] == nil:
					inWalk, tid, prevOff = true, e.num("thread"), 0
					start, commit, abort, cs = ev.str("start"), ev.str("commit"), ev.str("abort"), disp
					if cs == "" || cs == "0" {
						t.Errorf("rseq_cs at the start of %s reads %q", ev.str("name"), cs)
					}
				case !inWalk:
				case e.num("thread") != tid:
					t.Errorf("a stop of thread %d during the walk of thread %d", e.num("thread"), tid)
				case e.str("pc") == commit:
					walked, inWalk = true, false
				case e.str("pc") == abort:
					// The section's own cpu check at its head may send it to
					// the handler (the thread moved before the section
					// began); a kernel abort would come from anywhere.
					if prevOff > 9 {
						t.Errorf("thread left %s at +%d for its abort handler", start, prevOff)
					}
					inWalk = false
				case in == nil || ev["inspect"] != true:
					t.Errorf("stop at %s during the walk of %s is not inspected: %v", e.str("pc"), start, e)
					inWalk = false
				case ev["in_callee"] == true:
				default:
					if ev.num("offset") <= prevOff {
						t.Errorf("offset %d after %d", ev.num("offset"), prevOff)
					}
					prevOff = ev.num("offset")
					if disp != cs {
						t.Errorf("rseq_cs at +%d reads %q, at the start %q", prevOff, disp, cs)
					}
				}
				if walked {
					break
				}
			}
			if !walked {
				t.Fatalf("no walk from the start of a section to its commit:\n%s", s.stderr)
			}
			for _, e := range s.of("stats") {
				if e.num("inspected_steps") < 3 || e.num("steps_inside") != 0 {
					t.Errorf("stats %v", e)
				}
			}
		})
	}
}

// Issue 13, acceptance 2 through DAP: `rseqdbg dap` attached to a running
// program, stopped two instructions into a section in inspect mode (the
// thread pinned), is sent SIGTERM: it detaches, every thread has its
// affinity back, and the program finishes with exact sums.
func TestDAPInspectSIGTERM(t *testing.T) {
	prog := exec.Command(fixture("full_tables"), "4", "400000000", "--signals")
	var progOut syncBuffer
	prog.Stdout = &progOut
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	progDone := make(chan struct{})
	go func() { prog.Wait(); close(progDone) }()
	t.Cleanup(func() { prog.Process.Kill(); <-progDone })
	pid := prog.Process.Pid
	time.Sleep(100 * time.Millisecond)
	before := cpusAllowed(t, pid, pid)

	c := startDAP(t)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("attach", map[string]any{"processId": pid, "inspect": true})
	c.event("initialized")
	var regs struct {
		Body struct {
			Regions []struct{ Kind, Name, Start string }
		}
	}
	json.Unmarshal(c.call("rseqRegions", nil), &regs)
	start := ""
	for _, r := range regs.Body.Regions {
		if r.Kind == "rseq" && strings.HasPrefix(r.Name, "inc_full") {
			start = r.Start
		}
	}
	if start == "" {
		t.Fatalf("no inc_full section in %+v", regs.Body.Regions)
	}
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": start}}})
	c.call("configurationDone", nil)
	var ev struct {
		Body struct {
			ThreadID    int    `json:"threadId"`
			Description string `json:"description"`
		} `json:"body"`
	}
	json.Unmarshal(c.event("stopped"), &ev)
	tid := ev.Body.ThreadID
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []any{}})
	for i := 0; i < 2; i++ {
		c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
		ev.Body.Description = ""
		json.Unmarshal(c.event("stopped"), &ev)
	}
	if !strings.HasPrefix(ev.Body.Description, "inspecting critical section inc_full") {
		t.Fatalf("not inspecting after two instruction steps: %+v", ev.Body)
	}
	if got := cpusAllowed(t, pid, tid); strings.ContainsAny(got, "-,") {
		t.Fatalf("inspected thread %d not pinned: %s", tid, got)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("rseqdbg dap did not end on SIGTERM:\n%s", c.stderr.String())
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		var id int
		fmt.Sscan(task.Name(), &id)
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, id)); err == nil {
			if m := allowedRE.FindSubmatch(b); m != nil && string(m[1]) != before {
				t.Errorf("after SIGTERM of rseqdbg dap thread %d has affinity %s, before %s", id, m[1], before)
			}
		}
	}
	select {
	case <-progDone:
	case <-time.After(time.Minute):
		t.Fatal("the program did not finish")
	}
	exactSums(t, progOut.String())
}

// lldb 14 through `process plugin packet monitor`: inspect mode steps inside
// the section, a forced abort is shown by the next step (lldb, like gdb,
// keeps the registers of the stop until then), and the program counts one
// abort with exact sums.
func TestLLDBInspectAndForcedAbort(t *testing.T) {
	port, done := direct(t, fixture("full_tables"), "1", "100")
	start := sections(t, "full_tables")
	addr := uint64(0)
	for _, r := range start {
		if r.fn == "inc_full" {
			addr = r.start + 0x555555554000
		}
	}
	out := lldb(t, port, fixture("full_tables"), []string{
		fmt.Sprintf("breakpoint set -a %#x", addr), "continue", "breakpoint delete -f",
		"process plugin packet monitor rseq inspect on",
		"thread step-inst",
		"process plugin packet monitor rseq abort",
		"thread step-inst",
		"register read rip",
		"process plugin packet monitor rseq stats",
		"continue",
	}, 2*time.Minute)
	output := done()
	if !strings.Contains(out, "inspecting critical section inc_full+") {
		t.Errorf("no inspecting line:\n%s", tail(out))
	}
	if !strings.Contains(out, "forced abort of inc_full+") {
		t.Errorf("no forced abort:\n%s", tail(out))
	}
	// At the handler's first instruction: the step after the abort only
	// reported it.
	if rips := lldbSections(out, "register read rip"); len(rips) != 1 || !regexp.MustCompile(`inc_full\.rseq_abort\s*$`).MatchString(rips[0]) {
		t.Errorf("rip after the forced abort and a step: %q", rips)
	}
	if st := stats(t, out); st["forced aborts"] != 1 || st["inspected steps"] != 1 {
		t.Errorf("counters %v", st)
	}
	if r := exactSums(t, output); r["aborts"] < 1 {
		t.Errorf("the program counted no abort: %v", r)
	}
}

// Proxy mode cannot pin a thread through a stub: inspect mode is refused
// with the reason, and stepping stays atomic.
func TestProxyRefusesInspect(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	port, done := proxy(t, fixture("full_tables"), "1", "50")
	out := gdb(t, port, fixture("full_tables"), false, []string{
		"echo @@inspect\\n", "monitor rseq inspect on", "echo @@state\\n", "monitor rseq inspect", "echo @@end\\n",
		"continue",
	}, time.Minute)
	done()
	if s := sectionOf(t, out, "inspect"); !strings.Contains(s, "inspect mode refused") || !strings.Contains(s, "remote stub cannot be pinned") {
		t.Errorf("monitor rseq inspect on in proxy mode said:\n%s", s)
	}
	if s := sectionOf(t, out, "state"); !strings.Contains(s, "inspect mode: off") {
		t.Errorf("inspect mode after the refusal:\n%s", s)
	}
}

var dapInspectingRE = regexp.MustCompile(`^inspecting critical section (\S+) at \+(\d+) of (\d+)$`)

// Issue 13, acceptance 1 through DAP: for every flavour, 4 threads under the
// signal timer, launched with "inspect": true, instruction steps from the
// function's entry walk the section: the stopped events say "inspecting
// critical section NAME at +K of L" with K rising one instruction at a time
// (the PC is start+K), the walk ends at the commit, and the sums are exact.
func TestDAPInspectWalksSections(t *testing.T) {
	for _, f := range flavours {
		if f.prog == "branch_exit" {
			continue
		}
		t.Run(f.prog, func(t *testing.T) {
			c := startDAP(t)
			c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
			c.call("launch", map[string]any{"program": fixture(f.prog), "args": []string{"4", "300", "--signals"}, "inspect": true})
			c.event("initialized")
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": f.fn}}})
			c.call("configurationDone", nil)
			type stopped struct {
				Body struct {
					ThreadID    int    `json:"threadId"`
					Description string `json:"description"`
				} `json:"body"`
			}
			var ev stopped
			json.Unmarshal(c.event("stopped"), &ev)
			tid := ev.Body.ThreadID
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []any{}})
			pcOf := func() uint64 {
				var st struct {
					Body struct {
						StackFrames []struct {
							InstructionPointerReference string `json:"instructionPointerReference"`
						} `json:"stackFrames"`
					} `json:"body"`
				}
				json.Unmarshal(c.call("stackTrace", map[string]any{"threadId": tid, "levels": 1}), &st)
				var pc uint64
				fmt.Sscan(st.Body.StackFrames[0].InstructionPointerReference, &pc)
				return pc
			}
			var start, length uint64
			last, walked, inWalk := -1, false, false
			for i := 0; i < 120 && !walked; i++ {
				c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
				ev = stopped{}
				json.Unmarshal(c.event("stopped"), &ev)
				if ev.Body.ThreadID != tid {
					t.Fatalf("thread %d stopped during the steps of %d", ev.Body.ThreadID, tid)
				}
				pc := pcOf()
				m := dapInspectingRE.FindStringSubmatch(ev.Body.Description)
				switch {
				case m != nil && m[2] == "0" && !inWalk:
					inWalk, start, last = true, pc, 0
					fmt.Sscan(m[3], &length)
				case !inWalk:
				case m != nil:
					var k int
					fmt.Sscan(m[2], &k)
					if k <= last || pc != start+uint64(k) {
						t.Fatalf("stop at %#x says +%d after +%d (start %#x)", pc, k, last, start)
					}
					last = k
				case strings.Contains(ev.Body.Description, "in a function it called"):
				case pc == start+length:
					walked = true
				case last <= 9:
					// The section's cpu check at its head sent it to its
					// handler (the thread moved before the section began).
					inWalk = false
				default:
					t.Fatalf("left the section at +%d for %#x: %q", last, pc, ev.Body.Description)
				}
			}
			if !walked {
				t.Fatal("no walk from a section's start to its commit")
			}
			c.call("continue", map[string]any{"threadId": tid})
			c.event("exited")
			exactSums(t, c.out.String())
		})
	}
}
