package tests

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// vforkModes are fork_child's ways of making a child that shares the
// parent's memory until it execs: vfork(), whose child also calls
// before_exec in that memory, and posix_spawn (glibc's clone with
// CLONE_VM|CLONE_VFORK).
var vforkModes = []struct {
	mode string
	// childCode is a function only the child runs, before its exec.
	childCode string
}{
	{"vfork", "before_exec"},
	{"spawn", "execve"},
}

// gdb's defaults with vfork events: breakpoints in code only the vfork
// child runs (before its exec, in the parent's memory) leave it unharmed,
// as gdb removes its breakpoints from the parent and we take the rest
// out, and the parent stops at its breakpoint after each vfork: gdb puts
// its breakpoints back at the vforkdone.
func TestGDBVforkDetachChild(t *testing.T) {
	needTool(t, "gdb")
	parentLine := markerLine(t, "fork_child.c", "PARENT-LINE")
	for _, m := range vforkModes {
		t.Run(m.mode, func(t *testing.T) {
			srv := startRseqdbg(t, nil, fixture("fork_child"), m.mode, "3")
			out := gdb(t, srv.port, fixture("fork_child"), false, []string{
				"break " + m.childCode, "break before_exec",
				fmt.Sprintf("break fork_child.c:%d", parentLine),
				"continue", "continue", "continue", "continue",
			}, time.Minute)
			srv.wait(t, 30*time.Second)
			if n := strings.Count(out, "[Detaching after vfork from child process"); n != 3 {
				t.Errorf("gdb let %d vfork children go, want 3 (vfork events):\n%s", n, tail(out))
			}
			hits := regexp.MustCompile(`Breakpoint 3, main \(`).FindAllString(out, -1)
			if len(hits) != 3 {
				t.Errorf("the parent stopped %d times after a vfork, want 3:\n%s", len(hits), tail(out))
			}
			if strings.Contains(out, "hit Breakpoint 1") || strings.Contains(out, "Breakpoint 1, ") {
				t.Errorf("a breakpoint only the child meets stopped gdb:\n%s", tail(out))
			}
			if !strings.Contains(out, "exited normally") {
				t.Errorf("no normal exit:\n%s", tail(out))
			}
			forkResult(t, result(t, srv.stdout.String()), 3)
		})
	}
}

// follow-fork-mode child: gdb follows the vfork child, which stops at a
// breakpoint in the parent's memory (vfork), then execs the fixture and
// stops at a breakpoint in the new program. gdb lets the parent go only
// after the exec, when none of the child's int3s is in its memory: it
// runs on, makes its second child untraced and calls child_work, where
// the breakpoint was, unharmed.
func TestGDBFollowVforkChild(t *testing.T) {
	needTool(t, "gdb")
	for _, m := range vforkModes {
		t.Run(m.mode, func(t *testing.T) {
			srv := startRseqdbg(t, nil, fixture("fork_child"), m.mode, "2")
			cmds := []string{"set follow-fork-mode child", "break child_work"}
			if m.mode == "vfork" {
				cmds = append(cmds, "break before_exec", "continue", "echo @@BEFORE\\n", "bt 1", "echo @@END\\n")
			}
			cmds = append(cmds, "continue", "echo @@INFERIORS\\n", "info inferiors", "echo @@END\\n", "continue")
			out := gdb(t, srv.port, fixture("fork_child"), false, cmds, time.Minute)
			srv.wait(t, 30*time.Second)
			mm := regexp.MustCompile(`\[Attaching after Thread (\d+)\.\d+ vfork to child Thread (\d+)\.\d+\]`).FindStringSubmatch(out)
			if mm == nil {
				t.Fatalf("gdb did not follow the vfork child:\n%s", tail(out))
			}
			parent, child := mm[1], mm[2]
			if m.mode == "vfork" && !strings.Contains(sectionOf(t, out, "BEFORE"), "#0  before_exec") {
				t.Errorf("the child did not stop in before_exec:\n%s", tail(out))
			}
			if !strings.Contains(out, "[Detaching vfork parent process "+parent+" after child exec]") ||
				!strings.Contains(out, "process "+child+" is executing new program") {
				t.Errorf("gdb did not let the parent go at the child's exec:\n%s", tail(out))
			}
			if !regexp.MustCompile(`Thread 2\.1 "[^"]*" hit Breakpoint 1(\.\d+)?, child_work \(k=0\)`).MatchString(out) {
				t.Errorf("no breakpoint hit in the exec'd child:\n%s", tail(out))
			}
			if inf := sectionOf(t, out, "INFERIORS"); !strings.Contains(inf, "process "+child) || strings.Contains(inf, "process "+parent) {
				t.Errorf("info inferiors should show the child alone:\n%s", inf)
			}
			if !regexp.MustCompile(`\[Inferior 2 \(process ` + child + `\) exited normally\]`).MatchString(out) {
				t.Errorf("the child did not exit normally:\n%s", tail(out))
			}
			forkResult(t, result(t, srv.stdout.String()), 2)
		})
	}
}

// detach-on-fork off, following the child: both processes are inferiors,
// the child execs and stops at the breakpoint in the new program, and
// once it has ended the parent, whose vfork is over, goes on to the same
// breakpoint. (gdb refuses to continue the parent while it holds the
// vfork child stopped, with gdbserver as here.)
func TestGDBVforkDetachOnForkOff(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("fork_child"), "vfork", "1")
	out := gdb(t, srv.port, fixture("fork_child"), false, []string{
		"set detach-on-fork off", "set follow-fork-mode child",
		"break child_work", "continue",
		"echo @@INFERIORS\\n", "info inferiors", "echo @@END\\n",
		"continue", "inferior 1", "continue", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	mm := regexp.MustCompile(`\[Attaching after Thread (\d+)\.\d+ vfork to child Thread (\d+)\.\d+\]`).FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("gdb did not follow the vfork child:\n%s", tail(out))
	}
	parent, child := mm[1], mm[2]
	inferiors := sectionOf(t, out, "INFERIORS")
	if !strings.Contains(inferiors, "process "+parent) || !strings.Contains(inferiors, "process "+child) {
		t.Errorf("info inferiors should show both processes:\n%s", inferiors)
	}
	if !regexp.MustCompile(`Thread 2\.1 "[^"]*" hit Breakpoint 1(\.\d+)?, child_work \(k=0\)`).MatchString(out) {
		t.Errorf("no breakpoint hit in the exec'd child:\n%s", tail(out))
	}
	if !regexp.MustCompile(`Thread 1 "fork_child" hit Breakpoint 1(\.\d+)?, child_work \(k=0\)`).MatchString(out) {
		t.Errorf("the parent did not go on to the breakpoint after its child:\n%s", tail(out))
	}
	if !regexp.MustCompile(`\[Inferior 2 \(process `+child+`\) exited normally\]`).MatchString(out) ||
		!regexp.MustCompile(`\[Inferior 1 \(process `+parent+`\) exited normally\]`).MatchString(out) {
		t.Errorf("both processes should exit normally:\n%s", tail(out))
	}
	forkResult(t, result(t, srv.stdout.String()), 1)
}

// The vfork-events protocol as a client speaks it: offered only where
// asked for; the vfork stop names the child; the child, detached, runs
// clean and the parent's vforkdone follows once it exec'd. A client that
// takes fork events but not vfork events never hears of the vfork.
func TestRemoteVforkEvents(t *testing.T) {
	srv := startRseqdbg(t, []string{"--multi"})
	c := dialServer(t, srv.port)
	reply, err := c.Request("qSupported:multiprocess+;fork-events+;vfork-events+")
	if err != nil || !strings.Contains(string(reply), "vfork-events+") {
		t.Fatalf("qSupported: %q %v", reply, err)
	}
	run := "vRun;" + hexs(fixture("fork_child")) + ";" + hexs("vfork") + ";" + hexs("1")
	if reply, err := c.Request(run); err != nil || reply[0] != 'T' {
		t.Fatalf("vRun: %q %v", reply, err)
	}
	reply, err = c.Request("vCont;c")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^T05vfork:p([0-9a-f]+)\.([0-9a-f]+);.*thread:p([0-9a-f]+)\.([0-9a-f]+);`).FindStringSubmatch(string(reply))
	if m == nil || m[1] != m[2] || m[1] == m[3] {
		t.Fatalf("stop %q, want a vfork stop naming the child", reply)
	}
	child, parent, ptid := m[1], m[3], m[4]
	if r, err := c.Request("D;" + child); err != nil || string(r) != "OK" {
		t.Fatalf("detaching the child: %q %v", r, err)
	}
	reply, err = c.Request(fmt.Sprintf("vCont;c:p%s.%s", parent, ptid))
	if want := fmt.Sprintf(`^T05vforkdone:;.*thread:p%s\.%s;`, parent, ptid); err != nil || !regexp.MustCompile(want).Match(reply) {
		t.Fatalf("after the child: %q %v, want the parent's vforkdone", reply, err)
	}
	reply = resumeToEnd(t, c, parent)
	if want := "W00;process:" + parent; string(reply) != want {
		t.Errorf("the parent ended with %q, want %q", reply, want)
	}
	c.Close()

	// Only fork events: the vfork child goes unannounced, clean.
	srv = startRseqdbg(t, []string{"--multi"})
	c = dialServer(t, srv.port)
	if reply, err := c.Request("qSupported:multiprocess+;fork-events+"); err != nil || strings.Contains(string(reply), "vfork-events+") {
		t.Fatalf("qSupported: %q %v", reply, err)
	}
	if reply, err := c.Request(run); err != nil || reply[0] != 'T' {
		t.Fatalf("vRun: %q %v", reply, err)
	}
	resume := "vCont;c"
	for i := 0; ; i++ {
		reply, err = c.Request(resume)
		if err != nil || i > 10 || strings.Contains(string(reply), "vfork") {
			t.Fatalf("running with fork events only: %q %v", reply, err)
		}
		if reply[0] != 'T' {
			break
		}
		resume = fmt.Sprintf("vCont;C%s", reply[1:3])
	}
	if !strings.HasPrefix(string(reply), "W00") {
		t.Errorf("the program ended with %q, want exit 0", reply)
	}
	c.Close()
}

// rseqdbg run, follow-fork-mode child: the continue goes on in the vfork
// child, which stops at a breakpoint in its parent's memory (vfork), then
// in a function with a critical section of the program it exec'd; the
// parent, let go once the child exec'd, runs on clean.
func TestHeadlessFollowVforkChild(t *testing.T) {
	for _, m := range vforkModes {
		t.Run(m.mode, func(t *testing.T) {
			cmds := []string{"set follow-fork-mode child", "break percpu_inc", "break before_exec", "continue", "continue"}
			s := run(t, cmds, []string{"--continue"}, fixture("fork_child"), m.mode, "2")
			forks := s.of("fork")
			if len(forks) != 1 || forks[0].str("follow") != "child" || forks[0]["vfork"] != true {
				t.Fatalf("fork events %v, want one vfork followed into the child; stderr:\n%s", forks, s.stderr)
			}
			child, parent := forks[0].num("child"), forks[0].num("parent")
			if d := s.of("detached"); len(d) != 1 || d[0].num("pid") != parent {
				t.Errorf("detached events %v, want the parent %d", d, parent)
			}
			want := []string{"percpu_inc"}
			if m.mode == "vfork" {
				want = []string{"before_exec", "percpu_inc"}
			}
			stops := s.of("stop")[1:]
			if len(stops) < len(want) {
				t.Fatalf("stops %v, want %v in child %d", stops, want, child)
			}
			for i, fn := range want {
				if st := stops[i]; st.str("reason") != "breakpoint" || st.num("thread") != child || !strings.HasPrefix(st.str("function"), fn) {
					t.Errorf("stop %d: %v, want %s in child %d", i, st, fn, child)
				}
			}
			forkResult(t, s.result(t), 2)
			if s.code != 0 {
				t.Errorf("exit code %d; stderr:\n%s", s.code, s.stderr)
			}
		})
	}
}

// rseqdbg run with detach-on-fork off: the vfork child is debugged (a
// breakpoint in its parent's memory, then one in the program it exec'd)
// while the parent is kept, and the parent, debugged again once the child
// ended (the third continue ends with that switch), stops at the same
// breakpoint after its vfork is over.
func TestHeadlessVforkDetachOnForkOff(t *testing.T) {
	s := run(t, []string{"set follow-fork-mode child", "set detach-on-fork off", "break before_exec", "break percpu_inc", "continue", "continue", "continue", "continue"},
		[]string{"--continue"}, fixture("fork_child"), "vfork", "1")
	forks := s.of("fork")
	if len(forks) != 1 || forks[0].str("follow") != "child" || forks[0]["vfork"] != true {
		t.Fatalf("fork events %v; stderr:\n%s", forks, s.stderr)
	}
	child, parent := forks[0].num("child"), forks[0].num("parent")
	if d := s.of("detached"); len(d) != 0 {
		t.Errorf("detached %v: the parent should be kept", d)
	}
	stops := s.of("stop")
	if len(stops) != 4 || stops[1].num("thread") != child || !strings.HasPrefix(stops[1].str("function"), "before_exec") ||
		stops[2].num("thread") != child || !strings.HasPrefix(stops[2].str("function"), "percpu_inc") ||
		stops[3].num("thread") != parent || !strings.HasPrefix(stops[3].str("function"), "percpu_inc") {
		t.Fatalf("stops %v, want the entry, before_exec and percpu_inc in child %d, percpu_inc in parent %d", stops, child, parent)
	}
	ex := s.of("exited")
	if len(ex) != 2 || ex[0].num("pid") != child || ex[1].num("pid") != parent || ex[0].num("code") != 0 || ex[1].num("code") != 0 {
		t.Errorf("exits %v, want the child's then the parent's, both 0", ex)
	}
	forkResult(t, s.result(t), 1)
	if s.code != 0 {
		t.Errorf("exit code %d", s.code)
	}
}

// lldb 14 takes vfork events too (it offers vfork-events+ and detaches
// each child): the child runs clean of a breakpoint in code only it runs,
// and the parent stops at its breakpoint after each vfork.
func TestLLDBVforkDetachChild(t *testing.T) {
	needTool(t, "lldb")
	parentLine := markerLine(t, "fork_child.c", "PARENT-LINE")
	srv := startRseqdbg(t, nil, fixture("fork_child"), "vfork", "2")
	out := lldb(t, srv.port, fixture("fork_child"), []string{
		"breakpoint set -n before_exec", fmt.Sprintf("breakpoint set -f fork_child.c -l %d", parentLine),
		"continue", "continue", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if n := strings.Count(out, "stop reason = breakpoint 2."); n != 2 {
		t.Errorf("the parent stopped %d times after a vfork, want 2:\n%s", n, tail(out))
	}
	if strings.Contains(out, "stop reason = breakpoint 1.") {
		t.Errorf("a breakpoint only the child meets stopped lldb:\n%s", tail(out))
	}
	if n := strings.Count(srv.stderr.String(), "Detached from process"); n != 2 {
		t.Errorf("lldb detached %d vfork children, want 2 (vfork events):\n%s", n, srv.stderr.String())
	}
	forkResult(t, result(t, srv.stdout.String()), 2)
}

// glibc's vfork keeps its return address in rdi around the system call
// (the child returns on the same stack and would overwrite it there), so
// its CFA is the stack pointer: the backtrace from there reaches main, and
// a next over vfork() followed into the child ends on the next line of
// main there, as gdb's does, rather than inside __vfork.
func TestHeadlessNextOverVforkFollowsChild(t *testing.T) {
	s := run(t, []string{"break main", "continue", "break *__vfork+8", "continue", "bt", "delete"}, []string{"--continue"},
		fixture("fork_child"), "vfork", "1")
	bts := s.of("backtrace")
	if len(bts) != 1 {
		t.Fatalf("backtraces %v", bts)
	}
	frames, _ := bts[0]["frames"].([]any)
	if len(frames) < 2 {
		t.Fatalf("backtrace from __vfork+8: %v", frames)
	}
	if f1, _ := frames[1].(map[string]any); f1["function"] != "main" {
		t.Errorf("the caller of __vfork+8 is %v, want main", frames[1])
	}

	nextOverForkFollowsChild(t, "vfork", "VFORK-LINE")
}

// A stepi over the system call that vforks, following the parent (gdb's
// default) or the child, and a vfork catchpoint (posix_spawn) go as with
// gdbserver: the same stops, at the same instructions, and the same
// messages.
func TestGDBStepiOverVforkAsGDBServer(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	numbers := regexp.MustCompile(`\d{3,}`)
	for _, mode := range []string{"parent", "child", "catch"} {
		t.Run(mode, func(t *testing.T) {
			prog := []string{fixture("fork_child"), "vfork", "1"}
			cmds := []string{"set follow-fork-mode " + mode, "break main", "continue",
				"echo @@SYSCALL\\n", "x/i __vfork+6", "echo @@END\\n",
				"break *__vfork+6", "continue", "delete",
				"echo @@STEPS\\n", "stepi", "x/i $pc", "stepi", "x/i $pc", "continue", "echo @@END\\n"}
			if mode == "catch" {
				prog = []string{fixture("fork_child"), "spawn", "1"}
				cmds = []string{"catch vfork", "echo @@STEPS\\n", "continue", "info inferiors", "continue", "echo @@END\\n"}
			}
			ours := startRseqdbg(t, nil, prog...)
			out := gdb(t, ours.port, fixture("fork_child"), false, cmds, time.Minute)
			ours.wait(t, 30*time.Second)
			if mode != "catch" && !strings.Contains(sectionOf(t, out, "SYSCALL"), "syscall") {
				t.Skipf("__vfork+6 is no system call in this glibc:\n%s", sectionOf(t, out, "SYSCALL"))
			}
			theirs := startGDBServer(t, prog...)
			ref := gdb(t, theirs.port, fixture("fork_child"), false, cmds, time.Minute)
			// What gdb reads differs (our synthesized CFI among it), not
			// what it does.
			norm := func(sec string) string {
				var keep []string
				for _, l := range strings.Split(sec, "\n") {
					if !strings.HasPrefix(l, "Reading ") && !strings.HasPrefix(l, "warning: ") {
						keep = append(keep, numbers.ReplaceAllString(l, "N"))
					}
				}
				return strings.Join(keep, "\n")
			}
			got, want := norm(sectionOf(t, out, "STEPS")), norm(sectionOf(t, ref, "STEPS"))
			if got != want {
				t.Errorf("stepi over vfork, following the %s:\n%s\nwith gdbserver:\n%s", mode, got, want)
			}
			if !strings.Contains(got, "vfork") || !strings.Contains(got, "exited normally") {
				t.Errorf("no vfork followed to a normal end:\n%s", got)
			}
		})
	}
}
