package dap

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-dap"
)

// TestForkChildKeepsNoBreakpoints: a breakpoint in a function the fork
// child calls, and next over fork(), leave the children of a debugged
// program alive (a child that inherited an int3 dies of SIGTRAP), and next
// moves on to the line after fork().
func TestForkChildKeepsNoBreakpoints(t *testing.T) {
	for _, m := range []struct{ mode, marker string }{{"fork", "FORK-LINE"}, {"vfork", "VFORK-LINE"}} {
		t.Run(m.mode, func(t *testing.T) {
			src := fixture("../fork_child.c")
			work := markerLine(t, "fork_child.c", "CHILD-WORK")
			forkLine := markerLine(t, "fork_child.c", m.marker)
			c := newClient(t, Options{})
			c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{m.mode, "2"}})
			c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src},
				"breakpoints": []map[string]any{{"line": work}, {"line": forkLine}}})
			c.call("configurationDone", nil)
			st := c.stopped()
			tid := st.Body.ThreadId
			if fs := c.frames(tid); fs[0].Line != forkLine {
				t.Fatalf("first stop at line %d, want the %s line %d", fs[0].Line, m.mode, forkLine)
			}
			c.call("next", map[string]any{"threadId": tid})
			st = c.stopped()
			if fs := c.frames(tid); st.Body.Reason != "step" || fs[0].Line != forkLine+1 {
				t.Fatalf("next over %s() stopped (%s) at line %d, want line %d", m.mode, st.Body.Reason, fs[0].Line, forkLine+1)
			}
			// Only the parent stops in child_work; the round's child met the
			// same breakpoint and lived.
			c.call("continue", map[string]any{"threadId": tid})
			if st = c.stopped(); st.Body.Reason != "breakpoint" || c.frames(tid)[0].Line != work {
				t.Fatalf("continue: %+v", st.Body)
			}
			c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []map[string]any{}})
			c.call("continue", map[string]any{"threadId": tid})
			if code := c.waitExit(); code != 0 || !strings.Contains(c.out(), "RESULT children=2 ok=2 parent=2") {
				t.Fatalf("exit code %d, output:\n%s", code, c.out())
			}
		})
	}
}

// TestExecKeepsBreakpoints: a breakpoint set before the program execs
// itself is resolved again in the new image and hit there.
func TestExecKeepsBreakpoints(t *testing.T) {
	c := newClient(t, Options{})
	c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{"exec", "3"}})
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "child_work"}}})
	c.call("configurationDone", nil)
	// The exec is said on the console, not a stop, as gdb with exec
	// events: the first stop is the breakpoint in the new image.
	st := c.stopped()
	if !strings.Contains(c.out(), "is executing new program") {
		t.Errorf("no exec notice in the output:\n%s", c.out())
	}
	if fs := c.frames(st.Body.ThreadId); !strings.HasPrefix(fs[0].Name, "child_work") || fs[1].Name == "" {
		t.Fatalf("stopped in %+v", fs[:2])
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	c.call("continue", map[string]any{"threadId": st.Body.ThreadId})
	if code := c.waitExit(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestFollowForks: with followForks, the fork child is a second process of
// the session: it stops at a breakpoint in a function with a critical
// section, its threads are listed with their process, its end is an
// rseqProcessExited event, and then the parent goes on to the same
// breakpoint and both finish.
func TestFollowForks(t *testing.T) {
	c := newClient(t, Options{})
	parent := c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{"fork", "1"}, "followForks": true}).Body.SystemProcessId
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "percpu_inc"}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	child := c.event("process").(*dap.ProcessEvent).Body.SystemProcessId
	if child == parent || st.Body.ThreadId != child || st.Body.Reason != "function breakpoint" {
		t.Fatalf("first stop %+v, want the breakpoint in child %d (parent %d)", st.Body, child, parent)
	}
	if fs := c.frames(child); !strings.HasPrefix(fs[0].Name, "percpu_inc") {
		t.Fatalf("child stopped in %+v", fs[0])
	}
	threads := c.call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	names := map[int]string{}
	for _, th := range threads {
		names[th.Id] = th.Name
	}
	if len(threads) != 2 || !strings.Contains(names[child], "process "+strconv.Itoa(child)) ||
		!strings.Contains(names[parent], "process "+strconv.Itoa(parent)) {
		t.Fatalf("threads %+v, want the child's and the parent's, named with their process", threads)
	}
	regs := c.call("rseqRegions", nil).(*RseqRegionsResponse).Body.Regions
	found := false
	for _, r := range regs {
		found = found || strings.HasPrefix(r.Name, "percpu_inc")
	}
	if !found {
		t.Errorf("the child's regions lack percpu_inc's section: %+v", regs)
	}
	childThenParent(t, c, child, parent)
}

// childThenParent continues the child to its end, finds the parent stopped
// at percpu_inc's breakpoint, and runs it to a clean exit.
func childThenParent(t *testing.T, c *client, child, parent int) {
	t.Helper()
	c.call("continue", map[string]any{"threadId": child})
	if ex := c.event("rseqProcessExited").(*ProcessExitedEvent); ex.Body.Pid != child || ex.Body.ExitCode != 0 {
		t.Fatalf("child end %+v", ex.Body)
	}
	st := c.stopped()
	if st.Body.ThreadId != parent || !strings.HasPrefix(c.frames(parent)[0].Name, "percpu_inc") {
		t.Fatalf("after the child: %+v, want the parent %d at percpu_inc", st.Body, parent)
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	c.call("continue", map[string]any{"threadId": parent})
	if code := c.waitExit(); code != 0 || !strings.Contains(c.out(), "RESULT children=1 ok=1 parent=1") {
		t.Fatalf("exit code %d, output:\n%s", code, c.out())
	}
}

// TestFollowForksNext: next over fork() with followForks ends on the next
// line in the child.
func TestFollowForksNext(t *testing.T) { followForksNext(t, "fork", "FORK-LINE") }

// TestFollowVforksNext: next over vfork() with followForks ends on the next
// line in the child, which returned from vfork on its parent's stack.
func TestFollowVforksNext(t *testing.T) { followForksNext(t, "vfork", "VFORK-LINE") }

// followForksNext: next over the line at marker of fork_child in mode
// (fork or vfork), with followForks.
func followForksNext(t *testing.T, mode, marker string) {
	src := fixture("../fork_child.c")
	line := markerLine(t, "fork_child.c", marker)
	c := newClient(t, Options{})
	parent := c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{mode, "1"}, "followForks": true}).Body.SystemProcessId
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []map[string]any{{"line": line}}})
	c.call("configurationDone", nil)
	if st := c.stopped(); st.Body.ThreadId != parent {
		t.Fatalf("first stop %+v", st.Body)
	}
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []map[string]any{}})
	c.call("next", map[string]any{"threadId": parent})
	st := c.stopped()
	child := c.event("process").(*dap.ProcessEvent).Body.SystemProcessId
	if st.Body.ThreadId != child || st.Body.Reason != "step" || c.frames(child)[0].Line != line+1 {
		t.Fatalf("next over %s() stopped %+v at %+v, want a step to line %d in child %d", mode, st.Body, c.frames(st.Body.ThreadId)[0], line+1, child)
	}
	c.call("continue", map[string]any{"threadId": child})
	if code := c.waitExit(); code != 0 || !strings.Contains(c.out(), "RESULT children=1 ok=1 parent=1") {
		t.Fatalf("exit code %d, output:\n%s", code, c.out())
	}
}

// TestFollowForksStepInstruction: an instruction step over the syscall
// that forks, with followForks, is done when the fork comes: it ends as a
// step in the child right after the instruction (not a bare fork stop
// where the child starts), and both processes finish.
func TestFollowForksStepInstruction(t *testing.T) {
	addr := func(s string) uint64 { v, _ := strconv.ParseUint(s, 0, 64); return v }
	c := newClient(t, Options{})
	parent := c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{"rawfork", "1"}, "followForks": true}).Body.SystemProcessId
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "fork_syscall"}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	at := addr(c.frames(parent)[0].InstructionPointerReference)
	if st.Body.ThreadId != parent || at == 0 {
		t.Fatalf("first stop %+v at %#x", st.Body, at)
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	c.call("stepIn", map[string]any{"threadId": parent, "granularity": "instruction"})
	st = c.stopped()
	child := c.event("process").(*dap.ProcessEvent).Body.SystemProcessId
	if pc := addr(c.frames(child)[0].InstructionPointerReference); st.Body.ThreadId != child || st.Body.Reason != "step" || pc != at+2 {
		t.Fatalf("instruction step over the fork stopped %+v at %#x, want a step to %#x in child %d", st.Body, pc, at+2, child)
	}
	c.call("continue", map[string]any{"threadId": child})
	if code := c.waitExit(); code != 0 || !strings.Contains(c.out(), "RESULT children=1 ok=1 parent=1") {
		t.Fatalf("exit code %d, output:\n%s", code, c.out())
	}
}

// TestFollowVforks: with followForks, a vfork child (vfork, whose child
// runs before_exec in its parent's memory, or posix_spawn) is followed like
// a fork child: it stops at a breakpoint before its exec (vfork), then at
// one in the program it exec'd; its end is an rseqProcessExited event, and
// the parent, whose vfork is then over, goes on to the same breakpoint.
func TestFollowVforks(t *testing.T) {
	for _, mode := range []string{"vfork", "spawn"} {
		t.Run(mode, func(t *testing.T) {
			c := newClient(t, Options{})
			parent := c.launch(map[string]any{"program": fixture("fork_child"), "args": []string{mode, "1"}, "followForks": true}).Body.SystemProcessId
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "before_exec"}, {"name": "percpu_inc"}}})
			c.call("configurationDone", nil)
			st := c.stopped()
			pe := c.event("process").(*dap.ProcessEvent).Body
			child := pe.SystemProcessId
			if child == parent || st.Body.ThreadId != child || !strings.Contains(pe.Name, "vfork child") {
				t.Fatalf("first stop %+v in %+v, want vfork child of %d", st.Body, pe, parent)
			}
			if mode == "vfork" {
				if fs := c.frames(child); !strings.HasPrefix(fs[0].Name, "before_exec") {
					t.Fatalf("child stopped in %+v, want before_exec", fs[0])
				}
				c.call("continue", map[string]any{"threadId": child})
				st = c.stopped()
			}
			if fs := c.frames(child); st.Body.ThreadId != child || !strings.HasPrefix(fs[0].Name, "percpu_inc") {
				t.Fatalf("child stopped (%+v) in %+v, want percpu_inc after its exec", st.Body, fs[0])
			}
			if !strings.Contains(c.out(), "is executing new program") {
				t.Errorf("no exec notice for the child:\n%s", c.out())
			}
			childThenParent(t, c, child, parent)
		})
	}
}
