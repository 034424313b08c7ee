package dap

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-dap"
)

// TestEntryStepInStepOut stops on entry (main), then steps into inc_full
// at line granularity, over its section, and out again.
func TestEntryStepInStepOut(t *testing.T) {
	c := newClient(t, Options{})
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "20"}, "stopOnEntry": true})
	c.call("configurationDone", nil)
	st := c.stopped()
	if st.Body.Reason != "entry" {
		t.Fatalf("entry stop: %+v", st.Body)
	}
	if fs := c.frames(st.Body.ThreadId); !strings.HasPrefix(fs[0].Name, "main") {
		t.Fatalf("entry stop in %s, want main", fs[0].Name)
	}
	// The call line of inc_full (odd iterations).
	callLine := markerLine(t, "full_tables.c", "BEFORE-RSEQ-LINE") - 3
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []map[string]any{{"line": callLine}}})
	c.call("continue", map[string]any{"threadId": st.Body.ThreadId})
	st = c.stopped()
	tid := st.Body.ThreadId
	if fs := c.frames(tid); fs[0].Line != callLine {
		t.Fatalf("stopped at line %d, want %d", fs[0].Line, callLine)
	}
	c.call("stepIn", map[string]any{"threadId": tid})
	st = c.stopped()
	fs := c.frames(tid)
	if !strings.HasPrefix(fs[0].Name, "inc_full") || !strings.HasPrefix(fs[1].Name, "worker") {
		t.Fatalf("stepIn landed in %s (caller %s)", fs[0].Name, fs[1].Name)
	}
	args := c.variables(c.scope(fs[0].Id, "Arguments"))
	if _, ok := find(args, "ctr"); !ok {
		t.Errorf("arguments of inc_full: %+v", args)
	}
	c.call("next", map[string]any{"threadId": tid})
	if st = c.stopped(); st.Body.Description != "critical section committed" {
		t.Errorf("next over the section of inc_full: %+v", st.Body)
	}
	c.call("stepOut", map[string]any{"threadId": tid})
	st = c.stopped()
	if fs := c.frames(tid); !strings.HasPrefix(fs[0].Name, "worker") {
		t.Errorf("stepOut landed in %s", fs[0].Name)
	}
	c.call("disconnect", nil)
}

// TestInstructionBreakpointInsideSection stops on the first instruction of
// a critical section: the stop says the kernel will abort it, continuing
// and stepping from there run it to its commit.
func TestInstructionBreakpointInsideSection(t *testing.T) {
	c := newClient(t, Options{})
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"2", "50"}})
	regs := c.call("rseqRegions", nil).(*RseqRegionsResponse).Body.Regions
	var start string
	for _, r := range regs {
		if r.Kind == "rseq" && strings.HasPrefix(r.Name, "inc_full") {
			start = r.Start
		}
	}
	if start == "" {
		t.Fatalf("no inc_full section in %+v", regs)
	}
	ib := c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": start}}}).(*dap.SetInstructionBreakpointsResponse)
	if b := ib.Body.Breakpoints[0]; !b.Verified || !strings.Contains(b.Message, "inside critical section") {
		t.Errorf("instruction breakpoint %+v", b)
	}
	c.call("configurationDone", nil)
	st := c.stopped()
	if st.Body.Reason != "instruction breakpoint" || st.Body.Description != "stopped inside a critical section: it will abort on resume" {
		t.Fatalf("stop at the section start: %+v", st.Body)
	}
	tid := st.Body.ThreadId
	if fs := c.frames(tid); !strings.Contains(fs[0].Name, "inside rseq critical section") {
		t.Errorf("frame name %q does not say it is inside", fs[0].Name)
	}
	c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
	if st = c.stopped(); st.Body.Description != "critical section committed" {
		t.Errorf("instruction step from the start: %+v", st.Body)
	}
	c.call("continue", map[string]any{"threadId": tid})
	if st = c.stopped(); st.Body.Reason != "instruction breakpoint" {
		t.Errorf("second hit: %+v", st.Body)
	}
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []any{}})
	c.call("continue", map[string]any{"threadId": tid})
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(c.out(), "RESULT total=100 expected=100") {
		t.Errorf("output %q", c.out())
	}
	stats := c.call("rseqStats", nil).(*RseqStatsResponse)
	if stats.Body.StepsInside != 0 {
		t.Errorf("hardware steps inside a section: %+v", stats.Body)
	}
	c.call("disconnect", nil)
}

// TestPendingBreakpointInLibrary sets a breakpoint in libpercpu.so before
// the program dlopen()s it: it is verified when the library loads, and hit.
func TestPendingBreakpointInLibrary(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "libpercpu.c", "RSEQ-LINE")
	c.launch(map[string]any{"program": fixture("dlopen_main"), "args": []string{"1", "20"}})
	bps := c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../libpercpu.c")}, "breakpoints": []map[string]any{{"line": line}}}).(*dap.SetBreakpointsResponse)
	if bps.Body.Breakpoints[0].Verified {
		t.Fatalf("breakpoint verified before the library is loaded: %+v", bps.Body.Breakpoints[0])
	}
	c.call("configurationDone", nil)
	be := c.event("breakpoint").(*dap.BreakpointEvent)
	if !be.Body.Breakpoint.Verified || be.Body.Breakpoint.Id != bps.Body.Breakpoints[0].Id {
		t.Errorf("breakpoint event %+v", be.Body)
	}
	st := c.stopped()
	fs := c.frames(st.Body.ThreadId)
	if st.Body.Reason != "breakpoint" || !strings.HasPrefix(fs[0].Name, "lib_loop") || fs[0].Line != line {
		t.Fatalf("stop %+v at %s:%d", st.Body, fs[0].Name, fs[0].Line)
	}
	// Without the breakpoint: a preemption can abort the section, and its
	// retry path passes the breakpoint again, which would be reported.
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../libpercpu.c")}, "breakpoints": []any{}})
	c.call("next", map[string]any{"threadId": st.Body.ThreadId})
	if st = c.stopped(); st.Body.Description != "critical section committed" {
		t.Errorf("next in the library: %+v", st.Body)
	}
	c.call("disconnect", nil)
}

// TestBreakpointWhileRunning sets a breakpoint while the program runs: the
// continue is interrupted for it, resumed, and the breakpoint is hit.
func TestBreakpointWhileRunning(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"2", "2000000000"}})
	c.call("configurationDone", nil)
	c.call("threads", nil)
	bps := c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []map[string]any{{"line": line}}}).(*dap.SetBreakpointsResponse)
	if !bps.Body.Breakpoints[0].Verified {
		t.Fatalf("%+v", bps.Body.Breakpoints[0])
	}
	st := c.stopped()
	if st.Body.Reason != "breakpoint" {
		t.Fatalf("%+v", st.Body)
	}
	// A variable of the thread's bookkeeping, set and read back.
	fs := c.frames(st.Body.ThreadId)
	tv, _ := find(c.variables(c.scope(fs[0].Id, "Locals")), "t")
	ref := c.variables(tv.VariablesReference)[0].VariablesReference
	set := c.call("setVariable", map[string]any{"variablesReference": ref, "name": "early", "value": "7 * 6"}).(*dap.SetVariableResponse)
	if set.Body.Value != "42" {
		t.Errorf("setVariable early = %q", set.Body.Value)
	}
	if got := c.evaluate(fs[0].Id, "t->early").Result; got != "42" {
		t.Errorf("t->early = %q after setVariable", got)
	}
	// writeMemory through the address evaluate gives for &t->early.
	addr := c.evaluate(fs[0].Id, "&t->early").MemoryReference
	w := c.call("writeMemory", map[string]any{"memoryReference": addr, "data": base64.StdEncoding.EncodeToString([]byte{5, 0, 0, 0, 0, 0, 0, 0})}).(*dap.WriteMemoryResponse)
	if w.Body.BytesWritten != 8 {
		t.Errorf("writeMemory wrote %d bytes", w.Body.BytesWritten)
	}
	if got := c.evaluate(fs[0].Id, "t->early").Result; got != "5" {
		t.Errorf("t->early = %q after writeMemory", got)
	}
	c.call("terminate", nil)
	if code := c.waitExit(); code == 0 {
		t.Errorf("terminated program exited with 0")
	}
	c.call("disconnect", nil)
}

// TestStepIntoVDSO steps instructions into clock_gettime: the vDSO function
// runs natively to its return, in one step.
func TestStepIntoVDSO(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "vdso_clock.c", "VDSO-CALL")
	c.launch(map[string]any{"program": fixture("vdso_clock"), "args": []string{"1", "10"}})
	// The second call: the first goes through the dynamic linker's lazy
	// binding.
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../vdso_clock.c")}, "breakpoints": []map[string]any{{"line": line, "hitCondition": "2"}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	tid := st.Body.ThreadId
	returned := false
	for i := 0; i < 200 && !returned; i++ {
		c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
		st = c.stopped()
		returned = strings.HasPrefix(st.Body.Description, "vDSO function")
		if testing.Verbose() {
			fs := c.frames(tid)
			t.Logf("%s %s %q", fs[0].InstructionPointerReference, fs[0].Name, st.Body.Description)
		}
	}
	if !returned {
		t.Fatalf("no vDSO crossing in 200 instruction steps (last stop %+v)", st.Body)
	}
	c.call("disconnect", nil)
}

// TestClangLocals reads locals of the clang-built lld_tables, whose DWARF
// uses location list indexes and address tables.
func TestClangLocals(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	c.launch(map[string]any{"program": fixture("lld_tables"), "args": []string{"1", "50"}})
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []map[string]any{{"line": line, "condition": "i == 4"}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	fs := c.frames(st.Body.ThreadId)
	locals := c.variables(c.scope(fs[0].Id, "Locals"))
	if iv, ok := find(locals, "i"); !ok || iv.Value != "4" {
		t.Errorf("i in the third inline iteration: %+v (locals %+v)", iv, locals)
	}
	if got := c.evaluate(fs[0].Id, "t->iterations").Result; got != "50" {
		t.Errorf("t->iterations = %q", got)
	}
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []any{}})
	c.call("next", map[string]any{"threadId": st.Body.ThreadId})
	if st = c.stopped(); st.Body.Description != "critical section committed" {
		t.Errorf("next: %+v", st.Body)
	}
	c.call("disconnect", nil)
}

// TestNextRetriesThroughAbort forces a real abort: the thread stops inside
// the RSEQ-LINE's section, so the kernel aborts it on resume, and the abort
// handler's retry passes a breakpoint on the same line. next must take the
// retry as part of the line and end on the commit path, not at that
// breakpoint.
func TestNextRetriesThroughAbort(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "50", "--main"}})
	var sec RseqRegion
	for _, r := range c.call("rseqRegions", nil).(*RseqRegionsResponse).Body.Regions {
		if r.Kind == "rseq" && strings.HasSuffix(r.Source, "full_tables.c:"+strconv.Itoa(line)) {
			sec = r
		}
	}
	if sec.Abort == "" {
		t.Fatalf("no section on full_tables.c:%d", line)
	}
	// The abort handler: incq of the abort counter, then jmp .Lretry.
	handler := c.call("disassemble", map[string]any{"memoryReference": sec.Abort, "instructionCount": 2}).(*dap.DisassembleResponse).Body.Instructions
	retry := ""
	if len(handler) == 2 && strings.HasPrefix(handler[1].Instruction, "jmp") {
		retry = strings.Fields(handler[1].Instruction)[1]
	}
	if !strings.HasPrefix(retry, "0x") {
		t.Fatalf("abort handler %+v does not jump back", handler)
	}
	// The second instruction of the section: stopped there, the section
	// has started and cannot be rewound.
	body := c.call("disassemble", map[string]any{"memoryReference": sec.Start, "instructionCount": 2}).(*dap.DisassembleResponse).Body.Instructions
	inside := body[1].Address
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": inside}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	if st.Body.Description != "stopped inside a critical section: it will abort on resume" {
		t.Fatalf("stop inside the section: %+v", st.Body)
	}
	tid := st.Body.ThreadId
	before := c.evaluate(c.frames(tid)[0].Id, "t->aborts").Result
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": retry}}})
	c.call("next", map[string]any{"threadId": tid})
	st = c.stopped()
	fs := c.frames(tid)
	if st.Body.Reason != "step" || st.Body.Description != "critical section committed" || fs[0].Line == line {
		t.Fatalf("next from inside: %+v at %s:%d, want a committed step past line %d", st.Body, fs[0].Name, fs[0].Line, line)
	}
	// The text tells each run of the section once: the aborted one, then
	// the retry that committed.
	if n := strings.Count(st.Body.Text, "ran natively"); n != 2 || !strings.Contains(st.Body.Text, "after 1 abort(s)") || !strings.Contains(st.Body.Text, "ran natively: committed at") {
		t.Errorf("next's text %q: want the aborted run, then the commit", st.Body.Text)
	}
	// The abort really happened: the handler counted it.
	if after := c.evaluate(fs[0].Id, "t->aborts").Result; after == before {
		t.Errorf("t->aborts still %s: the section did not abort", after)
	}
	c.call("disconnect", nil)
}

// TestNextUnderSignalStorm steps from a breakpoint while SIGALRM fires
// every 100 µs: a signal is pending whenever the thread resumes, its
// handler returns onto the breakpoint the step starts from, and that must
// not count as a new hit. Every next ends past the line, committed.
func TestNextUnderSignalStorm(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	src := map[string]any{"path": fixture("../full_tables.c")}
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "1000000", "--signals", "--main"}})
	c.call("setBreakpoints", map[string]any{"source": src, "breakpoints": []map[string]any{{"line": line}}})
	c.call("configurationDone", nil)
	for i := 0; i < 5; i++ {
		st := c.stopped()
		for st.Body.Reason == "exception" {
			// A SIGALRM the policy stops for is not what this is about.
			c.call("continue", map[string]any{"threadId": st.Body.ThreadId})
			st = c.stopped()
		}
		if st.Body.Reason != "breakpoint" {
			t.Fatalf("round %d: %+v, want the breakpoint", i, st.Body)
		}
		tid := st.Body.ThreadId
		c.call("next", map[string]any{"threadId": tid})
		st = c.stopped()
		fs := c.frames(tid)
		if st.Body.Reason != "step" || st.Body.Description != "critical section committed" || fs[0].Line == line {
			t.Fatalf("round %d: next ended %+v at %s:%d", i, st.Body, fs[0].Name, fs[0].Line)
		}
		c.call("continue", map[string]any{"threadId": tid})
	}
	c.call("disconnect", nil)
}
