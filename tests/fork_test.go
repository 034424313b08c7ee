package tests

import (
	"fmt"
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
