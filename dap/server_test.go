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
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "200"}})

	bps := c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": src}, "breakpoints": []map[string]any{{"line": line}}}).(*dap.SetBreakpointsResponse)
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
	if len(threads) < 2 {
		t.Errorf("want main and a worker, got %+v", threads)
	}

	// The stack: the section runs in worker, started by fixture_thread_start.
	fs := c.frames(tid)
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if len(fs) < 3 || !strings.HasPrefix(fs[0].Name, "worker") || !strings.HasPrefix(fs[1].Name, "fixture_thread_start") {
		t.Fatalf("stack %q, want worker ← fixture_thread_start ← …", names)
	}
	if fs[0].Line != line || fs[0].Source == nil || !strings.HasSuffix(fs[0].Source.Path, "full_tables.c") || fs[0].InstructionPointerReference == "" {
		t.Errorf("top frame %+v, want full_tables.c:%d with an instruction pointer", fs[0], line)
	}
	if fs[1].Source == nil || !strings.HasSuffix(fs[1].Source.Path, "fixture_common.c") {
		t.Errorf("caller frame %+v has no source", fs[1])
	}
	top := fs[0].Id

	// Locals: i is even on the inline iterations, t points at the thread's
	// bookkeeping.
	locals := c.variables(c.scope(top, "Locals"))
	iv, ok := find(locals, "i")
	if !ok {
		t.Fatalf("no local i in %+v", locals)
	}
	if n, err := strconv.Atoi(iv.Value); err != nil || n%2 != 0 || n < 0 || n >= 200 {
		t.Errorf("i = %q, want an even iteration number", iv.Value)
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
	for _, in := range dis.Body.Instructions {
		text += in.Address + " " + in.Instruction + "\n"
	}
	for _, want := range []string{"critical section", "start", "commit"} {
		if !strings.Contains(text, want) {
			t.Errorf("disassembly does not mark %q:\n%s", want, text)
		}
	}

	regionsResp := c.call("rseqRegions", nil).(*RseqRegionsResponse)
	found := false
	for _, r := range regionsResp.Body.Regions {
		if r.Kind == "rseq" && strings.Contains(r.Source, "full_tables.c:") && r.Commit != "" && r.Abort != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("rseqRegions lacks the full_tables sections: %+v", regionsResp.Body.Regions)
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

	// The counters hold the commits so far.
	ev := c.evaluate(fs[0].Id, "fixture_counters")
	if ev.MemoryReference == "" || ev.IndexedVariables != 256 {
		t.Fatalf("fixture_counters: %+v", ev)
	}
	mem := c.call("readMemory", map[string]any{"memoryReference": ev.MemoryReference, "count": 256 * 64}).(*dap.ReadMemoryResponse)
	data, err := base64.StdEncoding.DecodeString(mem.Body.Data)
	if err != nil || len(data) != 256*64 {
		t.Fatalf("readMemory: %d bytes, %v", len(data), err)
	}
	var total int64
	for i := 0; i < 256; i++ {
		total += int64(binary.LittleEndian.Uint64(data[i*64:]))
	}
	if total < 1 || total > 200 {
		t.Errorf("per-CPU counters sum to %d", total)
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
	time.Sleep(100 * time.Millisecond)

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
