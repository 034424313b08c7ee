package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var nextTimeRE = regexp.MustCompile(`NEXT-SECONDS ([0-9.]+)`)

// timeNext measures one gdb `next` over the LOOP-LINE of loop_next (8000
// iterations of one source line) through a server, from gdb's side.
func timeNext(b *testing.B, srv *stub, line int) float64 {
	out, err := gdbRun(b, srv.port, fixture("loop_next"), false, []string{
		fmt.Sprintf("break loop_next.c:%d", line), "continue", "delete",
		"python import time",
		"python t0 = time.time()",
		"next",
		`python print("NEXT-SECONDS %f" % (time.time() - t0))`,
		"continue",
	}, 10*time.Minute)
	if err != nil {
		b.Fatalf("gdb: %v\n%s", err, out)
	}
	m := nextTimeRE.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no timing:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// BenchmarkGDBNext compares gdb's `next` over a one-line 8000-iteration
// loop through rseqdbg (the range runs natively between exits) and through
// gdbserver (which single-steps every instruction of the range), same run.
func BenchmarkGDBNext(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	line := 0
	src, err := os.ReadFile(filepath.Join(filepath.Dir(fixtures), "loop_next.c"))
	if err != nil {
		b.Fatal(err)
	}
	for i, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, "/* LOOP-LINE */") {
			line = i + 1
		}
	}
	var ours, theirs float64
	for i := 0; i < b.N; i++ {
		srv := startRseqdbg(b, nil, fixture("loop_next"), "8000")
		ours += timeNext(b, srv, line)
		srv.wait(b, time.Minute)
		gs := startGDBServer(b, fixture("loop_next"), "8000")
		theirs += timeNext(b, gs, line)
		gs.wait(b, time.Minute)
	}
	n := float64(b.N)
	b.ReportMetric(ours/n*1000, "rseqdbg-ms/next")
	b.ReportMetric(theirs/n*1000, "gdbserver-ms/next")
	b.ReportMetric(theirs/ours, "speedup")
	b.Logf("gdb next over 8000 iterations: rseqdbg %.1f ms, gdbserver %.1f ms, %.0fx faster", ours/n*1000, theirs/n*1000, theirs/ours)
}
