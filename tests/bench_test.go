package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var gdbTimeRE = regexp.MustCompile(`GDB-SECONDS ([0-9.]+)`)

// timeGDB measures, from gdb's side, how long gdb takes for cmd once
// stopped at the LOOP-LINE of loop_next through the server on port; then
// gdb ends the session with end.
func timeGDB(b *testing.B, port, line int, cmd, end string) float64 {
	out, err := gdbRun(b, port, fixture("loop_next"), false, []string{
		fmt.Sprintf("break loop_next.c:%d", line), "continue", "delete",
		"python import time",
		"python t0 = time.time()",
		cmd,
		`python print("GDB-SECONDS %f" % (time.time() - t0))`,
		end,
	}, 10*time.Minute)
	if err != nil {
		b.Fatalf("gdb: %v\n%s", err, out)
	}
	m := gdbTimeRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no timing:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// timeNext measures one gdb `next` over the LOOP-LINE (8000 iterations of
// one source line).
func timeNext(b *testing.B, port, line int) float64 {
	return timeGDB(b, port, line, "next", "continue")
}

// timeStepi measures n gdb stepi at the LOOP-LINE: n round trips a user
// waits for.
func timeStepi(b *testing.B, port, line, n int) float64 {
	return timeGDB(b, port, line, fmt.Sprintf("stepi %d", n), "kill")
}

// BenchmarkGDBNext compares gdb's `next` over a one-line 8000-iteration
// loop through rseqdbg (the range runs natively between exits) and through
// gdbserver (which single-steps every instruction of the range), same run.
func BenchmarkGDBNext(b *testing.B) {
	compareNext(b, "rseqdbg", func() (int, func()) {
		srv := startRseqdbg(b, nil, fixture("loop_next"), "8000")
		return srv.port, func() { srv.wait(b, time.Minute) }
	})
}

// compareNext times gdb's next over the 8000-iteration loop through a
// server that start starts (its port and a wait for its end), then
// through gdbserver alone, in each round, and reports both and the
// speedup.
func compareNext(b *testing.B, label string, start func() (port int, wait func())) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	line := markerLine(b, "loop_next.c", "LOOP-LINE")
	var ours, theirs float64
	for i := 0; i < b.N; i++ {
		port, wait := start()
		ours += timeNext(b, port, line)
		wait()
		gs := startGDBServer(b, fixture("loop_next"), "8000")
		theirs += timeNext(b, gs.port, line)
		gs.wait(b, time.Minute)
	}
	n := float64(b.N)
	b.ReportMetric(ours/n*1000, label+"-ms/next")
	b.ReportMetric(theirs/n*1000, "gdbserver-ms/next")
	b.ReportMetric(theirs/ours, "speedup")
	b.Logf("gdb next over 8000 iterations: %s %.1f ms, gdbserver alone %.1f ms, %.0fx faster", label, ours/n*1000, theirs/n*1000, theirs/ours)
}

// BenchmarkGDBStepi compares the latency of one gdb `stepi` (a vCont;s and
// its stop reply, and what gdb reads after it) through rseqdbg and through
// gdbserver, same run, on plain code where both do the same.
func BenchmarkGDBStepi(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	const n = 1000
	line := markerLine(b, "loop_next.c", "LOOP-LINE")
	var ours, theirs float64
	for i := 0; i < b.N; i++ {
		srv := startRseqdbg(b, nil, fixture("loop_next"), "8000")
		ours += timeStepi(b, srv.port, line, n)
		srv.wait(b, time.Minute)
		gs := startGDBServer(b, fixture("loop_next"), "8000")
		theirs += timeStepi(b, gs.port, line, n)
		gs.wait(b, time.Minute)
	}
	per := float64(b.N * n)
	b.ReportMetric(ours/per*1e6, "rseqdbg-us/stepi")
	b.ReportMetric(theirs/per*1e6, "gdbserver-us/stepi")
	b.ReportMetric(ours/theirs, "ratio")
	b.Logf("gdb stepi round trip: rseqdbg %.0f µs, gdbserver %.0f µs", ours/per*1e6, theirs/per*1e6)
}

// BenchmarkProxyStepi compares gdb's stepi round trip through rseqdbg in
// front of gdbserver with gdbserver alone, same run (target: at most
// 1.3x). It also measures gdb through a byte relay with no logic at all
// (fixtures/relay.c) in front of gdbserver: what the extra process and
// hop alone cost on this machine, the floor any proxy starts from.
func BenchmarkProxyStepi(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	const n = 500
	line := markerLine(b, "loop_next.c", "LOOP-LINE")
	var proxy, direct, relayed float64
	for i := 0; i < b.N; i++ {
		gs := startGDBServer(b, fixture("loop_next"), "8000")
		direct += timeStepi(b, gs.port, line, n)
		gs.wait(b, time.Minute)
		p := viaGDBServer(b, fixture("loop_next"), "8000")
		proxy += timeStepi(b, p.port(), line, n)
		p.wait(b)
		r := viaRelay(b, fixture("loop_next"), "8000")
		relayed += timeStepi(b, r.port, line, n)
		r.wait(b, time.Minute)
	}
	per := func(v float64) float64 { return v / float64(b.N) / n * 1e6 }
	b.ReportMetric(per(proxy), "proxy-us/stepi")
	b.ReportMetric(per(direct), "gdbserver-us/stepi")
	b.ReportMetric(per(relayed), "relay-us/stepi")
	b.ReportMetric(proxy/direct, "ratio")
	b.ReportMetric(relayed/direct, "relay-ratio")
	b.Logf("gdb stepi round trip: through the proxy %.0f us, gdbserver alone %.0f us: %.2fx; through a bare relay %.0f us: %.2fx",
		per(proxy), per(direct), proxy/direct, per(relayed), relayed/direct)
}

// viaRelay starts gdbserver for prog behind fixtures/relay; the returned
// stub is the relay, which exits when gdbserver or the client hangs up.
func viaRelay(b *testing.B, prog ...string) *stub {
	gs := startGDBServer(b, prog...)
	r := &stub{port: freePort(b)}
	r.start(b, fixture("relay"), strconv.Itoa(r.port), strconv.Itoa(gs.port))
	r.waitListening(b)
	return r
}

// BenchmarkProxyNext compares gdb's next over the 8000-iteration loop
// through rseqdbg in front of gdbserver with gdbserver alone (target: at
// least 50x faster).
func BenchmarkProxyNext(b *testing.B) {
	compareNext(b, "proxy", func() (int, func()) {
		p := viaGDBServer(b, fixture("loop_next"), "8000")
		return p.port(), func() { p.wait(b) }
	})
}

// gdbSeconds reads the "LABEL-SECONDS f" line a timed gdb script prints.
func gdbSeconds(b *testing.B, out, label string) float64 {
	m := regexp.MustCompile(label + `-SECONDS ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no %s timing:\n%s", label, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
