package tests

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	decidedRE   = regexp.MustCompile(`breakpoint conditions decided here (\d+)`)
	displacedRE = regexp.MustCompile(`continues from a breakpoint by a displaced copy (\d+)`)
)

// gdb's condition on a breakpoint in a hot loop comes as bytecode
// (ConditionalBreakpoints) and is decided in the server: 8000 hits, one
// stop, at the hit where it holds, and no round trip to gdb for the others.
// Each hit whose condition is false goes on through the displaced copy of
// the instruction under the breakpoint, with no single-step.
func TestGDBConditionDecidedInServer(t *testing.T) {
	needTool(t, "gdb")
	line := markerLine(t, "hotloop.c", "BODY-LINE")
	srv := startRseqdbg(t, []string{"--once"}, fixture("hotloop"), "8000")
	out := gdb(t, srv.port, fixture("hotloop"), false, []string{
		fmt.Sprintf("break hotloop.c:%d if i == 7999", line), "continue", "print i", "monitor rseq stats", "delete", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if !strings.Contains(out, "$1 = 7999") {
		t.Fatalf("did not stop where the condition holds:\n%s", tail(out))
	}
	if m := decidedRE.FindStringSubmatch(out); m == nil || m[1] != "8000" {
		t.Fatalf("conditions decided in the server: %v\n%s", m, tail(out))
	}
	if m := displacedRE.FindStringSubmatch(out); m == nil || m[1] != "7999" {
		t.Fatalf("continues through a displaced copy: %v, want the 7999 hits before the stop\n%s", m, tail(out))
	}
}

// BenchmarkHotConditional: continue to `break LINE if i == 7999` in the
// hot loop (8000 hits), gdb through rseqdbg and through gdbserver in the
// same run. Target: at least 2x faster than gdbserver.
func BenchmarkHotConditional(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	line := markerLine(b, "hotloop.c", "BODY-LINE")
	timeIt := func(port int) float64 {
		out, err := gdbRun(b, port, fixture("hotloop"), false, []string{
			fmt.Sprintf("break hotloop.c:%d if i == 7999", line),
			"python import time", "python t0 = time.time()", "continue",
			`python print("COND-SECONDS %f" % (time.time() - t0))`, "kill",
		}, 10*time.Minute)
		if err != nil {
			b.Fatalf("gdb: %v\n%s", err, out)
		}
		return gdbSeconds(b, out, "COND")
	}
	var ours, headless, adapter, theirs float64
	for i := 0; i < b.N; i++ {
		srv := startRseqdbg(b, []string{"--once"}, fixture("hotloop"), "8000")
		ours += timeIt(srv.port)
		srv.wait(b, time.Minute)
		// rseqdbg run decides the same condition (C over DWARF) in the
		// session layer; timed whole, start-up included.
		t0 := time.Now()
		out, err := exec.Command(binary, "run", "-ex", fmt.Sprintf("break hotloop.c:%d if i == 7999", line), "-ex", "continue", "-ex", "print i",
			"--", fixture("hotloop"), "8000").CombinedOutput()
		headless += time.Since(t0).Seconds()
		if err != nil || !strings.Contains(string(out), "i = 7999") {
			b.Fatalf("rseqdbg run: %v\n%s", err, out)
		}
		adapter += timeDAP(b, line)
		g := startGDBServer(b, fixture("hotloop"), "8000")
		theirs += timeIt(g.port)
		g.wait(b, time.Minute)
	}
	k := float64(b.N)
	b.ReportMetric(ours/k*1000, "rseqdbg-gdb-ms")
	b.ReportMetric(headless/k*1000, "rseqdbg-run-ms")
	b.ReportMetric(adapter/k*1000, "rseqdbg-dap-ms")
	b.ReportMetric(theirs/k*1000, "gdbserver-ms")
	b.ReportMetric(theirs/ours, "speedup")
}

// timeDAP times the same continue through rseqdbg dap: a source
// breakpoint with the condition, from configurationDone to the stop.
func timeDAP(b *testing.B, line int) float64 {
	c := startDAP(b)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("launch", map[string]any{"program": fixture("hotloop"), "args": []string{"8000"}})
	c.event("initialized")
	c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../hotloop.c")},
		"breakpoints": []map[string]any{{"line": line, "condition": "i == 7999"}}})
	t0 := time.Now()
	c.call("configurationDone", nil)
	c.event("stopped")
	d := time.Since(t0).Seconds()
	if raw := c.call("evaluate", map[string]any{"expression": "i", "context": "repl"}); !strings.Contains(string(raw), `"7999"`) {
		b.Fatalf("the DAP stop is not where the condition holds: %s", raw)
	}
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
	return d
}
