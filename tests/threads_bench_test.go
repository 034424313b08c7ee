package tests

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// timeParked measures, from gdb's side, 100 stepi and one next over the
// LOOP-LINE of parked (the main thread's loop of n iterations beside
// threads parked on a condition variable) through the server on port.
func timeParked(b *testing.B, port, line int) (stepi, next float64) {
	out, err := gdbRun(b, port, fixture("parked"), false, []string{
		fmt.Sprintf("break parked.c:%d", line), "continue", "delete",
		"python import time",
		"python t0 = time.time()", "stepi 100", `python print("STEPI-SECONDS %f" % (time.time() - t0))`,
		"python t0 = time.time()", "next", `python print("NEXT-SECONDS %f" % (time.time() - t0))`,
		"kill",
	}, 10*time.Minute)
	if err != nil {
		b.Fatalf("gdb: %v\n%s", err, out)
	}
	return gdbSeconds(b, out, "STEPI"), gdbSeconds(b, out, "NEXT")
}

// BenchmarkThreadCount: gdb's stepi and next with 1, 64 and 256 threads
// parked in the kernel, through rseqdbg and gdbserver in the same run.
// Target: at 256 threads at most 2x the 1-thread cost. Each figure is the
// median of the runs: one next is a few milliseconds, and one run that a
// loaded VM delays would otherwise decide the mean.
func BenchmarkThreadCount(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	line := markerLine(b, "parked.c", "LOOP-LINE")
	for _, threads := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("parked=%d", threads), func(b *testing.B) {
			var s, n, gs, gn []float64
			for i := 0; i < b.N; i++ {
				srv := startRseqdbg(b, []string{"--once"}, fixture("parked"), fmt.Sprint(threads), "1000")
				si, ne := timeParked(b, srv.port, line)
				srv.wait(b, time.Minute)
				g := startGDBServer(b, fixture("parked"), fmt.Sprint(threads), "1000")
				gsi, gne := timeParked(b, g.port, line)
				g.wait(b, time.Minute)
				s, n, gs, gn = append(s, si), append(n, ne), append(gs, gsi), append(gn, gne)
			}
			b.ReportMetric(median(s)*1000/100, "rseqdbg-ms/stepi")
			b.ReportMetric(median(n)*1000, "rseqdbg-ms/next")
			b.ReportMetric(median(gs)*1000/100, "gdbserver-ms/stepi")
			b.ReportMetric(median(gn)*1000, "gdbserver-ms/next")
		})
	}
}

// median of xs (not empty), which it sorts.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// BenchmarkBusyThreads: 100 gdb stepi in a thread while 15 others run the
// same critical section, through rseqdbg and gdbserver in the same run.
// Target: never slower than gdbserver.
func BenchmarkBusyThreads(b *testing.B) {
	needTool(b, "gdb")
	needTool(b, "gdbserver")
	time100 := func(port int) float64 {
		out, err := gdbRun(b, port, fixture("full_tables"), false, []string{
			"break inc_full", "continue", "delete",
			"python import time",
			"python t0 = time.time()", "stepi 100", `python print("STEPI-SECONDS %f" % (time.time() - t0))`,
			"kill",
		}, 10*time.Minute)
		if err != nil {
			b.Fatalf("gdb: %v\n%s", err, out)
		}
		return gdbSeconds(b, out, "STEPI")
	}
	var ours, theirs float64
	for i := 0; i < b.N; i++ {
		srv := startRseqdbg(b, []string{"--once"}, fixture("full_tables"), "16", "4000000")
		ours += time100(srv.port)
		srv.wait(b, time.Minute)
		g := startGDBServer(b, fixture("full_tables"), "16", "4000000")
		theirs += time100(g.port)
		g.wait(b, time.Minute)
	}
	k := float64(b.N)
	b.ReportMetric(ours/k*10, "rseqdbg-ms/stepi")
	b.ReportMetric(theirs/k*10, "gdbserver-ms/stepi")
}
