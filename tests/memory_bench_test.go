package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
		peak = max(peak, peakRSS(b, cmd))
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
}

// BenchmarkMemory100k reports rseqdbg's peak RSS while it debugs a program
// with 100 000 critical sections in its tables (generated and built here):
// load, break, step, list them all.
func BenchmarkMemory100k(b *testing.B) {
	const n = 100000
	dir := b.TempDir()
	var src strings.Builder
	for i := range n {
		fmt.Fprintf(&src, "\t.section __rseq_cs,\"aw\"\n\t.balign 32\n.Lcs%d:\t.long 0, 0\n"+
			"\t.quad .Ls%d, .Lp%d - .Ls%d, .La%d\n"+
			"\t.section __rseq_cs_ptr_array,\"aw\"\n\t.quad .Lcs%d\n"+
			"\t.text\n.Ls%d:\tnop\n\tnop\n.Lp%d:\tret\n\t.long 0x53053053\n.La%d:\tret\n",
			i, i, i, i, i, i, i, i, i)
	}
	src.WriteString("\t.section .note.GNU-stack,\"\",@progbits\n")
	asm, cfile, exe := filepath.Join(dir, "many.S"), filepath.Join(dir, "main.c"), filepath.Join(dir, "many")
	if err := os.WriteFile(asm, []byte(src.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(cfile, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cc", "-O0", "-o", exe, cfile, asm).CombinedOutput(); err != nil {
		b.Fatalf("cc: %v\n%s", err, out)
	}
	var peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(binary, "run", "-ex", "break main", "-ex", "continue", "-ex", "stepi 10",
			"-ex", "bt", "-ex", "info regions", "--continue", "--", exe)
		out := &strings.Builder{}
		cmd.Stdout = out
		peak = max(peak, peakRSS(b, cmd))
		if got := strings.Count(out.String(), "__rseq_cs_ptr_array"); got != n {
			b.Fatalf("info regions listed %d regions, want %d", got, n)
		}
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MB")
}

// peakRSS runs cmd and returns its peak resident set in kB.
func peakRSS(b *testing.B, cmd *exec.Cmd) int64 {
	b.Helper()
	if cmd.Stdout == nil {
		cmd.Stdout = &strings.Builder{}
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%v\n%s", err, stderr)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}
