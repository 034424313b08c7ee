package tests

import (
	"os/exec"
	"syscall"
	"testing"
)

// BenchmarkMemory reports rseqdbg's peak RSS while it steps a
// multi-threaded fixture through its critical sections.
func BenchmarkMemory(b *testing.B) {
	var peak int64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(binary, "run", "--json", "-ex", "break inc_full", "-ex", "continue", "-ex", "delete",
			"-ex", "stepi 2000", "-ex", "bt", "-ex", "info regions", "--continue", "--", fixture("full_tables"), "4", "2000")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peak {
			peak = ru.Maxrss
		}
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
}
