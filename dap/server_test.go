package dap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// TestLaunchFullTables walks the acceptance path of a VS Code session on
// full_tables: a breakpoint on the line of an inline critical section, the
// stack, locals and registers there, the disassembly marks, next over the
// section (committed), instruction steps through it, the per-CPU counters
// in memory, the program's output and its exit.
func TestLaunchFullTables(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	src := fixture("../full_tables.c")
	// --main: the worker runs on the main thread, so its stack reaches
	// main(). From iteration 40 on, to see counters that are not zero.
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "200", "--main"}})

	bps := c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []map[string]any{{"line": line, "condition": "i >= 40"}}}).(*dap.SetBreakpointsResponse)
	if len(bps.Body.Breakpoints) != 1 || !bps.Body.Breakpoints[0].Verified || bps.Body.Breakpoints[0].Line != line {
		t.Fatalf("breakpoint not verified on line %d: %+v", line, bps.Body.Breakpoints)
	}
	bpID := bps.Body.Breakpoints[0].Id
	c.call("configurationDone", nil)

	st := c.stopped()
	if st.Body.Reason != "breakpoint" || len(st.Body.HitBreakpointIds) != 1 || st.Body.HitBreakpointIds[0] != bpID || !st.Body.AllThreadsStopped {
		t.Fatalf("want a breakpoint stop on %d, got %+v", bpID, st.Body)
	}
	tid := st.Body.ThreadId
	threads := c.call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	if len(threads) != 1 || threads[0].Id != tid {
		t.Errorf("want the main thread %d alone, got %+v", tid, threads)
	}

	// The stack: the section runs in worker, called through
	// fixture_thread_start by fixture_main, called by main; each on the
	// source line of the call.
	fs := c.frames(tid)
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	want := []struct {
		fn, file string
		line     int
	}{
		{"worker", "full_tables.c", line},
		{"fixture_thread_start", "fixture_common.c", lineWith(t, "fixture_common.c", "return fixture_worker(arg);")},
		{"fixture_main", "fixture_common.c", lineWith(t, "fixture_common.c", "fixture_thread_start(&ts[0]);")},
		{"main", "full_tables.c", lineWith(t, "full_tables.c", "return fixture_main(")},
	}
	if len(fs) < len(want) {
		t.Fatalf("stack %q, want worker ← fixture_thread_start ← fixture_main ← main", names)
	}
	for i, w := range want {
		f := fs[i]
		if !strings.HasPrefix(f.Name, w.fn) || f.Source == nil || !strings.HasSuffix(f.Source.Path, "/"+w.file) || f.Line != w.line {
			t.Errorf("frame %d: %s at %+v:%d, want %s at %s:%d (stack %q)", i, f.Name, f.Source, f.Line, w.fn, w.file, w.line, names)
		}
		if f.InstructionPointerReference == "" {
			t.Errorf("frame %d (%s) has no instruction pointer", i, f.Name)
		}
	}
	top := fs[0].Id

	// Locals: i is even on the inline iterations, t points at the thread's
	// bookkeeping.
	locals := c.variables(c.scope(top, "Locals"))
	iv, ok := find(locals, "i")
	if !ok {
		t.Fatalf("no local i in %+v", locals)
	}
	if iv.Value != "40" {
		t.Errorf("i = %q, want 40 (the first hit of i >= 40)", iv.Value)
	}
	tv, ok := find(locals, "t")
	if !ok || tv.VariablesReference == 0 || !strings.HasPrefix(tv.Value, "0x") {
		t.Fatalf("t = %+v, want an expandable pointer", tv)
	}
	deref := c.variables(tv.VariablesReference)
	if len(deref) != 1 || deref[0].VariablesReference == 0 {
		t.Fatalf("*t = %+v", deref)
	}
	fields := c.variables(deref[0].VariablesReference)
	if it, ok := find(fields, "iterations"); !ok || it.Value != "200" {
		t.Errorf("t->iterations = %+v, want 200 (fields %+v)", it, fields)
	}
	if got := c.evaluate(top, "t->iterations").Result; got != "200" {
		t.Errorf("evaluate t->iterations = %q", got)
	}
	if got := c.evaluate(top, "i % 2 == 0 && t->iterations > 100").Result; got != "1" {
		t.Errorf("evaluate condition = %q", got)
	}
	// The per-CPU counters at the breakpoint: one count per iteration
	// committed so far, 0 to 39, whatever CPUs they ran on.
	if total := counters(c, top); total != 40 {
		t.Errorf("per-CPU counters sum to %d at i = 40, want 40", total)
	}

	// Hovering a word that is no variable here fails quietly: VS Code
	// would turn showUser into a notification on every such hover.
	if e := c.fail("evaluate", map[string]any{"expression": "INC_FULL_ASM", "frameId": top, "context": "hover"}); e.Body.Error == nil || e.Body.Error.ShowUser {
		t.Errorf("failed hover evaluate: %+v, want an error without showUser", e.Body.Error)
	}

	// Registers, with eflags decoded and the thread pointer.
	regs := c.variables(c.scope(top, "Registers"))
	rip, _ := find(regs, "rip")
	if !strings.HasPrefix(rip.Value, fs[0].InstructionPointerReference) {
		t.Errorf("rip %q, frame at %s", rip.Value, fs[0].InstructionPointerReference)
	}
	if ef, ok := find(regs, "eflags"); !ok || !strings.Contains(ef.Value, "[") || ef.VariablesReference == 0 {
		t.Errorf("eflags %+v not decoded", ef)
	}
	if fsb, ok := find(regs, "fs_base"); !ok || fsb.Value == "0x0" {
		t.Errorf("fs_base %+v", fsb)
	}
	set := c.call("setVariable", map[string]any{"variablesReference": c.scope(top, "Registers"), "name": "rax", "value": "0x1234"}).(*dap.SetVariableResponse)
	if set.Body.Value != "0x1234" {
		t.Errorf("setVariable rax = %q", set.Body.Value)
	}
	rseqVars := c.variables(c.scope(top, "rseq"))
	if cs, ok := find(rseqVars, "cpu_id"); !ok || cs.Value == "" {
		t.Errorf("rseq scope %+v", rseqVars)
	}

	// Disassembly around the breakpoint marks the section.
	dis := c.call("disassemble", map[string]any{"memoryReference": fs[0].InstructionPointerReference, "instructionOffset": -4, "instructionCount": 40}).(*dap.DisassembleResponse)
	if len(dis.Body.Instructions) != 40 {
		t.Fatalf("%d instructions, want 40", len(dis.Body.Instructions))
	}
	if dis.Body.Instructions[4].Address != fs[0].InstructionPointerReference {
		t.Errorf("instruction 4 at %s, want the pc %s", dis.Body.Instructions[4].Address, fs[0].InstructionPointerReference)
	}
	text := ""
	marks := map[string]string{}
	for _, in := range dis.Body.Instructions {
		text += in.Address + " " + in.Instruction + "\n"
		marks[in.Address] = in.Instruction
	}

	regionsResp := c.call("rseqRegions", nil).(*RseqRegionsResponse)
	var sec RseqRegion
	for _, r := range regionsResp.Body.Regions {
		if r.Kind == "rseq" && (r.Source == "full_tables.c:"+strconv.Itoa(line) || strings.HasSuffix(r.Source, "/full_tables.c:"+strconv.Itoa(line))) {
			sec = r
		}
	}
	if sec.Commit == "" || sec.Abort == "" {
		t.Fatalf("rseqRegions lacks the section of full_tables.c:%d: %+v", line, regionsResp.Body.Regions)
	}
	// The section's start and commit are marked on their instructions,
	// the ones between as run atomically, and the abort handler too.
	if m := marks[sec.Start]; !strings.Contains(m, "critical section") || !strings.Contains(m, "start") {
		t.Errorf("start %s not marked:\n%s", sec.Start, text)
	}
	if m := marks[sec.Commit]; !strings.Contains(m, "commit") {
		t.Errorf("commit %s not marked:\n%s", sec.Commit, text)
	}
	if !strings.Contains(text, "inside rseq") {
		t.Errorf("the instructions inside the section are not marked:\n%s", text)
	}
	handler := c.call("disassemble", map[string]any{"memoryReference": sec.Abort, "instructionCount": 1}).(*dap.DisassembleResponse).Body.Instructions
	if len(handler) != 1 || !strings.Contains(handler[0].Instruction, "abort handler") {
		t.Errorf("abort handler %s not marked: %+v", sec.Abort, handler)
	}

	// next runs the section atomically and lands on the commit path.
	c.call("next", map[string]any{"threadId": tid})
	st = c.stopped()
	if st.Body.Reason != "step" || st.Body.Description != "critical section committed" {
		t.Fatalf("next: %+v, want a step that committed", st.Body)
	}
	fs = c.frames(tid)
	if fs[0].Line == line || !strings.HasPrefix(fs[0].Name, "worker") {
		t.Errorf("after next at %s:%d, want another line of worker", fs[0].Name, fs[0].Line)
	}

	// The section of iteration 40 committed: one more count.
	if total := counters(c, fs[0].Id); total != 41 {
		t.Errorf("per-CPU counters sum to %d after next, want 41", total)
	}

	// Back to the breakpoint, then instruction steps through the section:
	// the step that enters it ends at the commit.
	c.call("continue", map[string]any{"threadId": tid})
	st = c.stopped()
	if st.Body.Reason != "breakpoint" {
		t.Fatalf("continue: %+v", st.Body)
	}
	committed := false
	for i := 0; i < 40 && !committed; i++ {
		c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
		st = c.stopped()
		if st.Body.Reason != "step" || strings.Contains(st.Body.Description, "inside") {
			t.Fatalf("instruction step %d: %+v", i, st.Body)
		}
		committed = st.Body.Description == "critical section committed"
	}
	if !committed {
		t.Fatalf("40 instruction steps did not reach the commit")
	}
	stats := c.call("rseqStats", nil).(*RseqStatsResponse)
	if stats.Body.StepsInside != 0 || stats.Body.Commits < 2 {
		t.Errorf("stats %+v", stats.Body)
	}

	// Run to the end.
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []any{}})
	c.call("continue", map[string]any{"threadId": tid})
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if out := c.out(); !strings.Contains(out, "RESULT total=200 expected=200") {
		t.Errorf("no RESULT line in the output:\n%s", out)
	}
	t.Logf("stack %q\nlocals %+v\ndisassembly:\n%s\noutput:\n%s", names, locals, text, c.out())
	c.call("disconnect", nil)
}

// TestCallerLocals stops in inc_full on its third call: the caller
// worker's locals (i, t) are read in its frame through the registers
// inc_full saved, the arguments match them, and the per-CPU counters hold
// the five iterations done.
func TestCallerLocals(t *testing.T) {
	c := newClient(t, Options{})
	entry := markerLine(t, "full_tables.c", "FUNC-ENTRY")
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "200", "--main"}})
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []map[string]any{{"line": entry, "hitCondition": "3"}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	fs := c.frames(st.Body.ThreadId)
	callLine := lineWith(t, "full_tables.c", "t->commits += inc_full(")
	if len(fs) < 5 || !strings.HasPrefix(fs[0].Name, "inc_full") || !strings.HasPrefix(fs[1].Name, "worker") || fs[1].Line != callLine || !strings.HasPrefix(fs[4].Name, "main") {
		t.Fatalf("stack %+v, want inc_full ← worker (line %d) ← fixture_thread_start ← fixture_main ← main", fs, callLine)
	}
	// Odd iterations call inc_full: the third call is iteration 5.
	locals := c.variables(c.scope(fs[1].Id, "Locals"))
	if iv, ok := find(locals, "i"); !ok || iv.Value != "5" {
		t.Errorf("worker's i = %+v, want 5 (locals %+v)", iv, locals)
	}
	tv, ok := find(locals, "t")
	if !ok || !strings.HasPrefix(tv.Value, "0x") {
		t.Fatalf("worker's t = %+v", tv)
	}
	if got := c.evaluate(fs[1].Id, "t->iterations").Result; got != "200" {
		t.Errorf("t->iterations in worker's frame = %q", got)
	}
	// inc_full's arguments are what worker passed.
	args := c.variables(c.scope(fs[0].Id, "Arguments"))
	ab, _ := find(args, "aborts")
	if want := c.evaluate(fs[1].Id, "&t->aborts").Result; ab.Value == "" || !strings.HasPrefix(ab.Value, want) {
		t.Errorf("inc_full's aborts = %q, worker's &t->aborts = %q", ab.Value, want)
	}
	// The caller's registers: its pc is the return address of the call.
	regs := c.variables(c.scope(fs[1].Id, "Registers"))
	if rip, ok := find(regs, "rip"); !ok || !strings.HasPrefix(rip.Value, fs[1].InstructionPointerReference) {
		t.Errorf("worker's rip %+v, frame at %s", rip, fs[1].InstructionPointerReference)
	}
	if total := counters(c, fs[0].Id); total != 5 {
		t.Errorf("per-CPU counters sum to %d in the third call, want 5 (iterations 0-4)", total)
	}
	c.call("disconnect", nil)
}

// TestPauseStopsAllThreads pauses a busy four-worker fixture: every thread
// is stopped (ptrace stop state) and has a stack.
func TestPauseStopsAllThreads(t *testing.T) {
	c := newClient(t, Options{})
	pe := c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"4", "2000000000"}})
	c.call("configurationDone", nil)
	// While it runs, threads lists every thread the kernel has, the
	// workers started since launch included.
	var running []dap.Thread
	for deadline := time.Now().Add(timeout); len(running) != 5; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("threads while running: %+v, want main and 4 workers", running)
		}
		running = c.call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	}
	if running[0].Id != pe.Body.SystemProcessId || !strings.Contains(running[0].Name, "main") {
		t.Errorf("threads while running: %+v, want the main thread first", running)
	}
	c.call("pause", map[string]any{"threadId": pe.Body.SystemProcessId})
	st := c.stopped()
	if st.Body.Reason != "pause" || !st.Body.AllThreadsStopped {
		t.Fatalf("pause: %+v", st.Body)
	}
	threads := c.call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	if len(threads) != 5 {
		t.Fatalf("%d threads, want 5", len(threads))
	}
	for _, th := range threads {
		state := threadState(t, pe.Body.SystemProcessId, th.Id)
		if state != "t" {
			t.Errorf("thread %d is in state %q, want t (traced stop)", th.Id, state)
		}
		fs := c.frames(th.Id)
		if len(fs) == 0 {
			t.Errorf("thread %d has no frames", th.Id)
		}
		if th.Id == pe.Body.SystemProcessId {
			// The main thread waits in pthread_join, called from main.
			names := ""
			for _, f := range fs {
				names += f.Name + " "
			}
			if !strings.Contains(names, "fixture_main ") || !strings.Contains(names, "main ") {
				t.Errorf("main thread stack: %s", names)
			}
		}
	}
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
}

// counters reads fixture_counters (256 per-CPU slots of 64 bytes, a long
// count first) through evaluate's memory reference and readMemory, and sums
// the counts.
func counters(c *client, frameID int) int64 {
	c.t.Helper()
	ev := c.evaluate(frameID, "fixture_counters")
	if ev.MemoryReference == "" || ev.IndexedVariables != 256 {
		c.t.Fatalf("fixture_counters: %+v", ev)
	}
	mem := c.call("readMemory", map[string]any{"memoryReference": ev.MemoryReference, "count": 256 * 64}).(*dap.ReadMemoryResponse)
	data, err := base64.StdEncoding.DecodeString(mem.Body.Data)
	if err != nil || len(data) != 256*64 || mem.Body.UnreadableBytes != 0 {
		c.t.Fatalf("readMemory: %d bytes (%d unreadable), %v", len(data), mem.Body.UnreadableBytes, err)
	}
	var total int64
	for i := 0; i < 256; i++ {
		total += int64(binary.LittleEndian.Uint64(data[i*64:]))
	}
	return total
}

func threadState(t *testing.T, pid, tid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatalf("reading thread state: %v", err)
	}
	// The state follows the parenthesized command name.
	i := bytes.LastIndexByte(b, ')')
	return strings.Fields(string(b[i+1:]))[0]
}

// TestAttach attaches to a running fixture, stops it at a breakpoint and
// detaches: the program finishes with exact sums.
func TestAttach(t *testing.T) {
	var out bytes.Buffer
	// About a second of work natively: still running when we attach.
	cmd := exec.Command(fixture("full_tables"), "1", "1000000000")
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Attach once the worker runs, so the attach meets a program at work.
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if tids, err := liveThreads(cmd.Process.Pid); err == nil && len(tids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixture's worker thread did not start")
		}
	}

	c := newClient(t, Options{})
	c.call("initialize", map[string]any{"adapterID": "rseqdbg"})
	c.call("attach", map[string]any{"processId": cmd.Process.Pid})
	if pe := c.event("process").(*dap.ProcessEvent); pe.Body.StartMethod != "attach" || pe.Body.SystemProcessId != cmd.Process.Pid {
		t.Errorf("process event %+v", pe.Body)
	}
	c.event("initialized")
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	bps := c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../full_tables.c")}, "breakpoints": []map[string]any{{"line": line, "hitCondition": "3"}}}).(*dap.SetBreakpointsResponse)
	if !bps.Body.Breakpoints[0].Verified {
		t.Fatalf("breakpoint %+v", bps.Body.Breakpoints[0])
	}
	c.call("configurationDone", nil)
	st := c.stopped()
	if st.Body.Reason != "breakpoint" {
		t.Fatalf("%+v", st.Body)
	}
	if fs := c.frames(st.Body.ThreadId); !strings.HasPrefix(fs[0].Name, "worker") || fs[0].Line != line {
		t.Errorf("stopped at %s:%d", fs[0].Name, fs[0].Line)
	}
	c.call("disconnect", nil)

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after detach the program failed: %v\n%s", err, out.String())
		}
	case <-time.After(2 * timeout):
		t.Fatal("the detached program did not finish")
	}
	if !strings.Contains(out.String(), "RESULT total=1000000000 expected=1000000000") {
		t.Errorf("output %q", out.String())
	}
}

// TestConditionsAndLogPoints checks that a false condition and a log point
// do not stop, and a C-variable condition does.
func TestConditionsAndLogPoints(t *testing.T) {
	c := newClient(t, Options{})
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	before := markerLine(t, "full_tables.c", "BEFORE-RSEQ-LINE")
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "100"}})
	src := map[string]any{"path": fixture("../full_tables.c")}
	c.call("setBreakpoints", map[string]any{"source": src, "breakpoints": []map[string]any{
		{"line": before, "logMessage": "iteration {i}"},
		{"line": line, "condition": "i == 40"},
	}})
	fb := c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "inc_full", "condition": "$rdi == 0"}}}).(*dap.SetFunctionBreakpointsResponse)
	if !fb.Body.Breakpoints[0].Verified {
		t.Errorf("function breakpoint %+v", fb.Body.Breakpoints[0])
	}
	c.call("configurationDone", nil)
	st := c.stopped()
	fs := c.frames(st.Body.ThreadId)
	if got := c.evaluate(fs[0].Id, "i").Result; got != "40" || fs[0].Line != line {
		t.Fatalf("stopped at line %d with i = %s, want line %d with i = 40", fs[0].Line, got, line)
	}
	if !strings.Contains(c.out(), "iteration 38") {
		t.Errorf("log point output missing:\n%s", c.out())
	}
	// next over the section with log points and a false function
	// breakpoint condition on the way.
	c.call("next", map[string]any{"threadId": st.Body.ThreadId})
	if st = c.stopped(); st.Body.Reason != "step" {
		t.Errorf("next: %+v", st.Body)
	}
	c.call("disconnect", nil)
}

// TestMalformedMessages sends broken requests: each gets an error response
// and the session goes on.
func TestMalformedMessages(t *testing.T) {
	c := newClient(t, Options{})
	c.sendRaw([]byte(`{"seq": 1, "type": "request", "command": "setBreakpoints", "arguments": "nope"}`))
	if r := c.response(1); r.GetResponse().Success {
		t.Errorf("bad arguments accepted: %+v", r)
	}
	c.sendRaw([]byte(`{not json`))
	if r := c.response(0); r.GetResponse().Success {
		t.Errorf("bad JSON accepted")
	}
	c.seq = 10
	c.fail("noSuchCommand", nil)
	// What the user started is shown (a dialog for launch and attach, a
	// notification otherwise); what the workbench asks by itself is not.
	shown := func(e *dap.ErrorResponse, want bool) {
		t.Helper()
		if e.Body.Error == nil || e.Body.Error.ShowUser != want {
			t.Errorf("%s error %+v: want showUser %v", e.Command, e.Body.Error, want)
		}
	}
	shown(c.fail("stackTrace", map[string]any{"threadId": 1}), false)
	shown(c.fail("launch", map[string]any{"program": "/nonexistent/program"}), true)
	shown(c.fail("launch", map[string]any{}), true)
	shown(c.fail("attach", map[string]any{"processId": "zero"}), true)
	shown(c.fail("evaluate", map[string]any{"expression": "(((", "frameId": 0, "context": "hover"}), false)
	shown(c.fail("next", map[string]any{"threadId": 1}), true)
	shown(c.fail("noSuchCommand", nil), false)
	// A bad header, then a good request.
	if _, err := c.conn.Write([]byte("Content-Type: nonsense\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.call("initialize", map[string]any{"adapterID": "rseqdbg"})
	c.call("disconnect", nil)
}

// TestStdioStyleStreams serves over a separate reader and writer, as with
// stdin and stdout, and ends at EOF.
func TestStdioStyleStreams(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	srv := NewServer(inR, outW, Options{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	dap.WriteProtocolMessage(inW, &dap.InitializeRequest{Request: dap.Request{ProtocolMessage: dap.ProtocolMessage{Seq: 1, Type: "request"}, Command: "initialize"}})
	m, err := dap.ReadProtocolMessage(bufio.NewReader(outR))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.(*dap.InitializeResponse); !ok || !r.Success {
		t.Fatalf("%+v", m)
	}
	inW.Close()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatal("server did not end at EOF")
	}
}

// TestTCP runs a short session over a TCP connection, as with
// `rseqdbg dap --listen`.
func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	c := newClientOver(t, Options{}, a, b)
	c.launch(map[string]any{"program": fixture("legacy_table"), "args": []string{"2", "500"}})
	c.call("configurationDone", nil)
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(c.out(), "RESULT total=1000 expected=1000") {
		t.Errorf("output %q", c.out())
	}
	c.call("disconnect", nil)
}
