package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
)

// lldb runs lldb in batch mode against port, one -o per command.
func lldb(t *testing.T, port int, exe string, cmds []string, timeout time.Duration) string {
	t.Helper()
	needTool(t, "lldb")
	args := []string{"-b", "--no-lldbinit", "-o", fmt.Sprintf("gdb-remote %d", port)}
	for _, c := range cmds {
		args = append(args, "-o", c)
	}
	args = append(args, exe)
	out, err := runTool(t, timeout, "lldb", args...)
	if err != nil {
		t.Fatalf("lldb: %v\n%s", err, out)
	}
	return out
}

// lldbSection is the output of the command echoed as "(lldb) CMD" for the
// n-th occurrence of cmd.
func lldbSections(out, cmd string) []string {
	parts := strings.Split(out, "(lldb) "+cmd+"\n")
	var list []string
	for _, p := range parts[1:] {
		if i := strings.Index(p, "(lldb) "); i >= 0 {
			p = p[:i]
		}
		list = append(list, p)
	}
	return list
}

// Acceptance 3: lldb 14 through `gdb-remote PORT`.
func TestLLDB(t *testing.T) {
	needTool(t, "lldb")
	checkLLDB(t, true, func(prog ...string) (int, func()) {
		srv := startRseqdbg(t, nil, prog...)
		return srv.port, func() { srv.wait(t, 30*time.Second) }
	})
}

// checkLLDB runs the lldb scenario against a server that start starts for
// a program; it returns the port and a wait for the server's end.
func checkLLDB(t *testing.T, haveFsBase bool, start func(prog ...string) (int, func())) {
	const prog = "full_tables"
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	var syms symbols.Table
	if err := syms.Load(fixture(prog), 0); err != nil {
		t.Fatal(err)
	}
	addrs, _ := syms.LineAddrs("full_tables.c", line)
	if len(addrs) == 0 {
		t.Fatal("no code at the RSEQ-LINE")
	}
	worker := symbolValue(t, prog, "worker")
	var commit, abort uint64
	for _, r := range sections(t, prog) {
		if r.fn == "inc_full" {
			commit = r.commit
			abort, _ = strconv.ParseUint(strings.TrimPrefix(r.Abort, "0x"), 16, 64)
		}
	}

	cmds := []string{"breakpoint set -n inc_full", "continue", "bt"}
	// Enough steps for a retry: the fixture's own cpu check aborts an
	// attempt when the thread migrated between two steps before the
	// section, which single-stepping on two busy cores makes likely.
	for i := 0; i < 40; i++ {
		cmds = append(cmds, "thread step-inst")
	}
	cmds = append(cmds, "process plugin packet monitor rseq stats", "register read fs_base",
		"breakpoint delete 1",
		// lldb's own line lookup picks a hoisted instruction of the line;
		// put the breakpoint where the statement starts, as gdb does.
		fmt.Sprintf("breakpoint set -n worker -K false -R %#x", addrs[0]-worker),
		"continue", "process plugin packet monitor rseq stats", "thread step-over",
		"process plugin packet monitor rseq stats", "process kill")
	port, wait := start(fixture(prog), "1", "100")
	out := lldb(t, port, fixture(prog), cmds, 2*time.Minute)
	wait()

	// The breakpoint stop is a breakpoint stop at the breakpoint's address.
	bp := regexp.MustCompile(`Breakpoint 1: where = \S+inc_full(?: \+ (\d+))? .*address = 0x([0-9a-f]+)`).FindStringSubmatch(out)
	if bp == nil {
		t.Fatalf("breakpoint not resolved:\n%s", out)
	}
	cont := lldbSections(out, "continue")
	if len(cont) < 2 || !regexp.MustCompile(`stop reason = breakpoint 1\.1\s+frame #0: 0x0*`+bp[2]+` `).MatchString(cont[0]) {
		t.Fatalf("no breakpoint stop at %s:\n%v", bp[2], cont)
	}
	bpAddr, _ := strconv.ParseUint(bp[2], 16, 64)
	off, _ := strconv.ParseUint(bp[1], 10, 64)
	bias := bpAddr - off - symbolValue(t, prog, "inc_full")

	// step-inst through the section reaches its commit in one step, or,
	// when a preemption really aborted that attempt (the contract reports
	// it), its abort handler.
	atCommit, atAbort := false, false
	for _, s := range lldbSections(out, "thread step-inst") {
		atCommit = atCommit || strings.Contains(s, fmt.Sprintf("frame #0: 0x%016x ", commit+bias))
		atAbort = atAbort || strings.Contains(s, fmt.Sprintf("frame #0: 0x%016x ", abort+bias))
	}
	statsOut := lldbSections(out, "process plugin packet monitor rseq stats")
	if len(statsOut) != 3 {
		t.Fatalf("want 3 stats outputs, got %d", len(statsOut))
	}
	first, beforeNext, afterNext := stats(t, statsOut[0]), stats(t, statsOut[1]), stats(t, statsOut[2])
	if !atCommit && !(atAbort && first["aborts"] > 0) {
		t.Errorf("thread step-inst stopped neither at the commit %#x nor, after a real abort, at the abort handler %#x:\n%s",
			commit+bias, abort+bias, out)
	}
	if first["commits"]+first["aborts"] < 1 || afterNext["steps inside a section"] != 0 {
		t.Errorf("step-inst stats %v, final %v", first, afterNext)
	}
	if regs := lldbSections(out, "register read fs_base"); haveFsBase && (len(regs) == 0 || !regexp.MustCompile(`fs_base = 0x0*[1-9a-f][0-9a-f]+`).MatchString(regs[0])) {
		t.Errorf("no fs_base:\n%v", regs)
	}
	if bt := lldbSections(out, "bt"); len(bt) == 0 || !regexp.MustCompile("(?s)frame #0: .*inc_full.*frame #1: .*worker").MatchString(bt[0]) {
		t.Errorf("bad backtrace:\n%v", bt)
	}

	// next over the RSEQ-LINE: lldb puts its own breakpoint on the branch
	// inside the section; the stop there aborts that attempt, and stepping
	// on runs the retry to its commit.
	if !regexp.MustCompile(fmt.Sprintf(`stop reason = breakpoint 2\.1[^\n]*\n[^\n]*full_tables.c:%d`, line)).MatchString(cont[1]) {
		t.Errorf("no stop at the RSEQ-LINE:\n%s", cont[1])
	}
	next := lldbSections(out, "thread step-over")
	if len(next) == 0 || !strings.Contains(next[0], "stop reason = step over") {
		t.Fatalf("thread step-over did not finish:\n%v", next)
	}
	if m := regexp.MustCompile(`full_tables.c:(\d+)`).FindStringSubmatch(next[0]); m == nil || m[1] == strconv.Itoa(line) {
		t.Errorf("next did not leave the RSEQ-LINE:\n%s", next[0])
	}
	if afterNext["commits"] <= beforeNext["commits"] {
		t.Errorf("next did not commit: before %v after %v", beforeNext, afterNext)
	}
	if !regexp.MustCompile(`exited with status = 9`).MatchString(out) {
		t.Errorf("process kill:\n%s", tail(out))
	}
}
