package tests

import (
	"fmt"
	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forkModes are fork_child's ways of making a child, with the marker of
// the line that makes it.
var forkModes = []struct{ mode, line string }{
	{"fork", "FORK-LINE"},
	{"vfork", "VFORK-LINE"},
}

// forkResult checks fork_child's RESULT line: every child exited 0 (a child
// that kept one of our int3s dies of SIGTRAP) and the parent met
// child_work in every round.
func forkResult(t *testing.T, r map[string]int, rounds int) {
	t.Helper()
	if r["children"] != rounds || r["ok"] != rounds || r["parent"] != rounds {
		t.Fatalf("children lost: %v, want %d rounds all ok", r, rounds)
	}
}

// A breakpoint in a function the fork child calls, and the temporary
// breakpoints of a next over fork(), stay in the parent: the children exit
// normally, and each next moves on to the next line.
func TestHeadlessForkChildKeepsNoBreakpoints(t *testing.T) {
	for _, m := range forkModes {
		t.Run(m.mode, func(t *testing.T) {
			s := run(t, []string{"break child_work", "continue", "continue", "continue", "delete"}, []string{"--continue"},
				fixture("fork_child"), m.mode, "3")
			forkResult(t, s.result(t), 3)
			if n := len(s.of("stop")); n != 4 { // entry + one hit per round, all in the parent
				t.Errorf("%d stops, want 4: %v", n, s.of("stop"))
			}
			if s.code != 0 {
				t.Errorf("exit code %d", s.code)
			}
		})
	}
}

func TestHeadlessNextOverFork(t *testing.T) {
	for _, m := range forkModes {
		t.Run(m.mode, func(t *testing.T) {
			line := markerLine(t, "fork_child.c", m.line)
			s := run(t, []string{fmt.Sprintf("break fork_child.c:%d", line), "continue", "next", "next", "delete"}, []string{"--continue"},
				fixture("fork_child"), m.mode, "2")
			stops := s.of("stop")
			if len(stops) != 4 {
				t.Fatalf("stops %v", stops)
			}
			// The first next ends on the line after fork(), by a step.
			if st := stops[2]; st.str("reason") != "step" || st.num("line") != line+1 {
				t.Errorf("next over fork() stopped %v, want a step to line %d", st, line+1)
			}
			if st := stops[3]; st.str("reason") != "step" || st.num("line") <= line+1 {
				t.Errorf("second next stopped %v", st)
			}
			forkResult(t, s.result(t), 2)
		})
	}
}

// The same through gdb: a breakpoint the child meets, and gdb's next over
// fork() (a range step whose temporary breakpoints the child inherits).
func TestGDBForkChildKeepsNoBreakpoints(t *testing.T) {
	needTool(t, "gdb")
	for _, fm := range forkModes {
		mode := fm.mode
		t.Run(mode, func(t *testing.T) {
			line := markerLine(t, "fork_child.c", fm.line)
			srv := startRseqdbg(t, nil, fixture("fork_child"), mode, "3")
			out := gdb(t, srv.port, fixture("fork_child"), false, []string{
				"break child_work", "continue", "delete",
				fmt.Sprintf("break fork_child.c:%d", line), "continue", "delete",
				"echo NEXT\\n", "next", "info line *$pc", "continue",
			}, time.Minute)
			srv.wait(t, 30*time.Second)
			_, after, ok := strings.Cut(out, "NEXT\n")
			if !ok {
				t.Fatalf("no next:\n%s", out)
			}
			if m := infoLineRE.FindStringSubmatch(after); m == nil || m[1] != strconv.Itoa(line+1) {
				t.Errorf("next over %s() did not end on line %d:\n%s", mode, line+1, tail(out))
			}
			forkResult(t, result(t, srv.stdout.String()), 3)
		})
	}
}

// A program that execs itself stops at a breakpoint set before the exec:
// rseqdbg run resolves it again in the new image, and gdb, told of the
// exec (exec-events), reloads the program and inserts it again.
func TestHeadlessExecKeepsBreakpoints(t *testing.T) {
	s := run(t, []string{"break child_work", "continue", "bt", "delete"}, []string{"--continue"}, fixture("fork_child"), "exec", "3")
	stops := s.of("stop")
	if len(stops) != 2 || stops[1].str("reason") != "breakpoint" || !strings.HasPrefix(stops[1].str("function"), "child_work") {
		t.Fatalf("stops %v", stops)
	}
	if s.code != 0 {
		t.Fatalf("exit code %d", s.code)
	}
}

func TestGDBExecKeepsBreakpoints(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, []string{"--once"}, fixture("fork_child"), "exec", "3")
	out := gdb(t, srv.port, fixture("fork_child"), false, []string{"break child_work", "continue", "continue"}, time.Minute)
	srv.wait(t, 30*time.Second)
	if !strings.Contains(out, "is executing new program") || !strings.Contains(out, "Breakpoint 1, child_work (k=3)") || !strings.Contains(out, "exited normally") {
		t.Fatalf("gdb did not stop at the breakpoint after the exec:\n%s", tail(out))
	}
}

// gdb keeps both processes with detach-on-fork off: it follows the child
// (the parent waits for it) to a breakpoint in a function with a critical
// section, each process shows its own regions, and both exit normally.
func TestGDBDetachOnForkOff(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("fork_child"), "fork", "1")
	out := gdb(t, srv.port, fixture("fork_child"), false, []string{
		"set detach-on-fork off", "set follow-fork-mode child",
		"break percpu_inc", "continue",
		"echo @@INFERIORS\\n", "info inferiors",
		"echo @@CHILD-REGIONS\\n", "monitor rseq regions",
		"continue",
		"inferior 1",
		"echo @@PARENT-REGIONS\\n", "monitor rseq regions",
		"continue", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	m := regexp.MustCompile(`\[Attaching after .* fork to child .*?(\d+)\.\d+\]`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("gdb did not follow the child:\n%s", tail(out))
	}
	child := m[1]
	inferiors := sectionOf(t, out, "INFERIORS")
	if n := strings.Count(inferiors, "process "); n != 2 {
		t.Errorf("info inferiors shows %d processes, want 2:\n%s", n, inferiors)
	}
	hits := regexp.MustCompile(`Breakpoint 1(\.\d+)?, percpu_inc`).FindAllString(out, -1)
	for _, who := range []string{"CHILD-REGIONS", "PARENT-REGIONS"} {
		if regions := sectionOf(t, out, who); !strings.Contains(regions, "percpu_inc") {
			t.Errorf("%s: no section of percpu_inc:\n%s", who, regions)
		}
	}
	if !strings.Contains(sectionOf(t, out, "CHILD-REGIONS"), "regions of process "+child) {
		t.Errorf("the child's regions are not the child's:\n%s", sectionOf(t, out, "CHILD-REGIONS"))
	}
	if !regexp.MustCompile(`\[Inferior 2 \(process `+child+`\) exited normally\]`).MatchString(out) ||
		!regexp.MustCompile(`\[Inferior 1 \(process \d+\) exited normally\]`).MatchString(out) {
		t.Errorf("both processes should exit normally:\n%s", tail(out))
	}
	// The child met the breakpoint, then the parent.
	if len(hits) != 2 || !strings.Contains(out, "Thread 2.1 \"fork_child\" hit Breakpoint 1") {
		t.Errorf("breakpoint hits %q, want 2, the child's first:\n%s", hits, tail(out))
	}
	forkResult(t, result(t, srv.stdout.String()), 1)
}

// follow-fork-mode child: gdb detaches the parent, which runs on and
// exits normally, and stops at a breakpoint in the child.
func TestGDBFollowForkChild(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("fork_child"), "fork", "2")
	out := gdb(t, srv.port, fixture("fork_child"), false, []string{
		"set follow-fork-mode child", "break percpu_inc", "continue",
		"echo @@INFERIORS\\n", "info inferiors", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if !strings.Contains(out, "[Attaching after") || !strings.Contains(out, "[Detaching after fork from parent process") {
		t.Fatalf("gdb did not follow the child:\n%s", tail(out))
	}
	if !regexp.MustCompile(`Breakpoint 1(\.\d+)?, percpu_inc`).MatchString(out) {
		t.Errorf("no breakpoint hit in the child:\n%s", tail(out))
	}
	if !regexp.MustCompile(`\[Inferior 2 \(process \d+\) exited normally\]`).MatchString(out) {
		t.Errorf("the child did not exit normally:\n%s", tail(out))
	}
	// The parent, detached, forks its second child untraced.
	forkResult(t, result(t, srv.stdout.String()), 2)
}

// rseqdbg run with follow-fork-mode child: the continue goes on in the
// child, which stops at a breakpoint in a function with a critical
// section; the parent, detached, runs on and makes its second child
// untraced; the child exits normally.
func TestHeadlessFollowForkChild(t *testing.T) {
	s := run(t, []string{"set follow-fork-mode child", "break percpu_inc", "continue", "info regions", "continue"}, nil,
		fixture("fork_child"), "fork", "2")
	forks := s.of("fork")
	if len(forks) != 1 || forks[0].str("follow") != "child" || forks[0].num("child") == 0 {
		t.Fatalf("fork events %v, want one followed into the child", forks)
	}
	child, parent := forks[0].num("child"), forks[0].num("parent")
	if d := s.of("detached"); len(d) != 1 || d[0].num("pid") != parent {
		t.Errorf("detached events %v, want the parent %d", d, parent)
	}
	stops := s.of("stop")
	if len(stops) != 2 || stops[1].str("reason") != "breakpoint" || stops[1].num("thread") != child ||
		!strings.HasPrefix(stops[1].str("function"), "percpu_inc") {
		t.Fatalf("stops %v, want the entry and percpu_inc in child %d", stops, child)
	}
	if ex := s.of("exited"); len(ex) != 1 || ex[0].num("code") != 0 {
		t.Errorf("exits %v, want the child's, code 0", ex)
	}
	forkResult(t, s.result(t), 2)
	if s.code != 0 {
		t.Errorf("exit code %d; stderr:\n%s", s.code, s.stderr)
	}
}

// A next over fork() with follow-fork-mode child ends on the next line in
// the child, as gdb's: the step goes on there from the same frame.
func TestHeadlessNextOverForkFollowsChild(t *testing.T) {
	nextOverForkFollowsChild(t, "fork", "FORK-LINE")
}

// nextOverForkFollowsChild: next over the line at marker of fork_child in
// mode, following the child.
func nextOverForkFollowsChild(t *testing.T, mode, marker string) {
	line := markerLine(t, "fork_child.c", marker)
	s := run(t, []string{"set follow-fork-mode child", fmt.Sprintf("break fork_child.c:%d", line), "continue", "next", "delete"}, []string{"--continue"},
		fixture("fork_child"), mode, "2")
	forks := s.of("fork")
	if len(forks) != 1 || forks[0].str("follow") != "child" {
		t.Fatalf("fork events %v", forks)
	}
	stops := s.of("stop")
	if len(stops) != 3 {
		t.Fatalf("stops %v", stops)
	}
	if st := stops[2]; st.str("reason") != "step" || st.num("line") != line+1 || st.num("thread") != forks[0].num("child") {
		t.Errorf("next over %s() stopped %v, want a step to line %d in child %d", mode, st, line+1, forks[0].num("child"))
	}
	forkResult(t, s.result(t), 2)
}

// The fork-events protocol as a client speaks it: the fork stop names the
// child, both processes' threads are listed, a thread selection reaches
// the child, vKill;PID ends the child alone, and the parent, resumed by a
// vCont naming it, sees its child killed and exits with its own code.
func TestRemoteForkEvents(t *testing.T) {
	srv := startRseqdbg(t, nil, fixture("fork_child"), "fork", "1")
	c := dialServer(t, srv.port)
	if reply, err := c.Request("qSupported:multiprocess+;fork-events+"); err != nil || !strings.Contains(string(reply), "fork-events+") {
		t.Fatalf("qSupported: %q %v", reply, err)
	}
	reply, err := c.Request("vCont;c")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^T05fork:p([0-9a-f]+)\.([0-9a-f]+);.*thread:p([0-9a-f]+)\.([0-9a-f]+);`).FindStringSubmatch(string(reply))
	if m == nil || m[1] != m[2] || m[1] == m[3] {
		t.Fatalf("stop %q, want a fork stop naming the child", reply)
	}
	child, parent := m[1], m[3]
	list, err := c.Request("qfThreadInfo")
	if err != nil || string(list) != fmt.Sprintf("mp%s.%s,p%s.%s", parent, parent, child, child) {
		t.Errorf("threads %q %v, want the parent's and the child's", list, err)
	}
	if r, err := c.Request(fmt.Sprintf("Hgp%s.%s", child, child)); err != nil || string(r) != "OK" {
		t.Fatalf("Hg to the child: %q %v", r, err)
	}
	if r, err := c.Request(fmt.Sprintf("Tp%s.%s", child, child)); err != nil || string(r) != "OK" {
		t.Errorf("child alive: %q %v", r, err)
	}
	if r, err := c.Request("vKill;" + child); err != nil || string(r) != "OK" {
		t.Fatalf("vKill of the child: %q %v", r, err)
	}
	if list, err := c.Request("qfThreadInfo"); err != nil || string(list) != fmt.Sprintf("mp%s.%s", parent, parent) {
		t.Errorf("threads after the kill %q %v, want the parent's alone", list, err)
	}
	// fork_child exits 1 when a child did not exit 0, after saying so.
	// Signal stops on the way (SIGCHLD) are passed on.
	reply = resumeToEnd(t, c, parent)
	if want := "W01;process:" + parent; string(reply) != want {
		t.Errorf("the parent ended with %q, want %q", reply, want)
	}
	c.Close()
	srv.wait(t, 30*time.Second)
	if !strings.Contains(srv.stdout.String(), "child 0: status 0x9") || !strings.Contains(srv.stdout.String(), "RESULT children=1 ok=0 parent=1") {
		t.Errorf("the parent did not see its child killed:\n%s", srv.stdout.String())
	}
}

// rseqdbg run with detach-on-fork off and follow-fork-mode child: the
// parent is kept while the child is debugged, and is debugged again once
// the child ended, each stopping at the breakpoint.
func TestHeadlessDetachOnForkOff(t *testing.T) {
	s := run(t, []string{"set follow-fork-mode child", "set detach-on-fork off", "break percpu_inc", "continue", "continue", "continue"},
		[]string{"--continue"}, fixture("fork_child"), "fork", "1")
	forks := s.of("fork")
	if len(forks) != 1 || forks[0].str("follow") != "child" {
		t.Fatalf("fork events %v", forks)
	}
	child, parent := forks[0].num("child"), forks[0].num("parent")
	if d := s.of("detached"); len(d) != 0 {
		t.Errorf("detached %v: the parent should be kept", d)
	}
	stops := s.of("stop")
	if len(stops) != 3 || stops[1].num("thread") != child || stops[2].num("thread") != parent ||
		!strings.HasPrefix(stops[1].str("function"), "percpu_inc") || !strings.HasPrefix(stops[2].str("function"), "percpu_inc") {
		t.Fatalf("stops %v, want the entry, then percpu_inc in child %d, then in parent %d", stops, child, parent)
	}
	ex := s.of("exited")
	if len(ex) != 2 || ex[0].num("pid") != child || ex[1].num("pid") != parent || ex[0].num("code") != 0 || ex[1].num("code") != 0 {
		t.Errorf("exits %v, want the child's then the parent's, both 0", ex)
	}
	if sw := s.of("switched"); len(sw) != 1 || sw[0].num("pid") != parent {
		t.Errorf("switched %v, want back to the parent %d", sw, parent)
	}
	forkResult(t, s.result(t), 1)
	if s.code != 0 {
		t.Errorf("exit code %d", s.code)
	}
}

// A stepi over the instruction that forks (fork_child rawfork, a user
// breakpoint on it), following the child: the instruction is done when
// the fork is reported, so the step ends as a step in the child right
// after it (as a nexti there does), not as a bare fork stop; the parent,
// detached, and the child both finish normally.
func TestHeadlessStepiOverForkFollowsChild(t *testing.T) {
	s := run(t, []string{"set follow-fork-mode child", "break *fork_syscall", "continue", "stepi", "delete"}, []string{"--continue"},
		fixture("fork_child"), "rawfork", "2")
	forks := s.of("fork")
	if len(forks) != 1 || forks[0].str("follow") != "child" {
		t.Fatalf("fork events %v, want one followed into the child; stderr:\n%s", forks, s.stderr)
	}
	stops := s.of("stop")
	if len(stops) != 3 || stops[1].str("reason") != "breakpoint" || stops[1].str("function") != "fork_syscall" {
		t.Fatalf("stops %v, want the entry, the breakpoint on the syscall, the step", stops)
	}
	if st := stops[2]; st.str("reason") != "step" || st.num("thread") != forks[0].num("child") || st.str("function") != "fork_syscall+2" {
		t.Errorf("stepi over the fork stopped %v, want a step to fork_syscall+2 in child %d", st, forks[0].num("child"))
	}
	forkResult(t, s.result(t), 2)
	if s.code != 0 {
		t.Errorf("exit code %d; stderr:\n%s", s.code, s.stderr)
	}
}

// gdb with detach-on-fork off, a breakpoint on the instruction that forks
// and a stepi over it: the fork is reported during the step (gdb adds the
// child inferior) and the stepi ends right after the instruction, as with
// gdbserver; both processes then run to a normal exit.
func TestGDBStepiOverFork(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("fork_child"), "rawfork", "1")
	out := gdb(t, srv.port, fixture("fork_child"), false, []string{
		"set detach-on-fork off", "set schedule-multiple on",
		"break *fork_syscall", "continue", "delete", "stepi",
		"echo @@PC\\n", "x/i $pc",
		"echo @@INFERIORS\\n", "info inferiors",
		"continue", "inferior 1", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if pc := sectionOf(t, out, "PC"); !strings.Contains(pc, "<raw_fork+11>") {
		t.Errorf("stepi over the fork ended at\n%s\nwant raw_fork+11, right after the syscall:\n%s", pc, tail(out))
	}
	if n := len(regexp.MustCompile(`(?m)^[* ] +\d+ +process `).FindAllString(sectionOf(t, out, "INFERIORS"), -1)); n != 2 {
		t.Errorf("info inferiors shows %d processes, want 2:\n%s", n, tail(out))
	}
	if !regexp.MustCompile(`\[Inferior 2 \(process \d+\) exited normally\]`).MatchString(out) ||
		!regexp.MustCompile(`\[Inferior 1 \(process \d+\) exited normally\]`).MatchString(out) {
		t.Errorf("both processes should exit normally:\n%s", tail(out))
	}
	forkResult(t, result(t, srv.stdout.String()), 1)
}

// resumeToEnd resumes process parent until it ends, passing on the signals
// it stops for (SIGCHLD), and returns the end's reply.
func resumeToEnd(t *testing.T, c *wire.Client, parent string) []byte {
	t.Helper()
	resume := fmt.Sprintf("vCont;c:p%s.-1", parent)
	for i := 0; ; i++ {
		reply, err := c.Request(resume)
		if err != nil || i > 10 {
			t.Fatalf("resuming the parent: %q %v", reply, err)
		}
		if reply[0] != 'T' {
			return reply
		}
		resume = fmt.Sprintf("vCont;C%s:p%s.-1", reply[1:3], parent)
	}
}
