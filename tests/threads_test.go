package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A next that another thread's breakpoint ends abandons the stepped
// thread's single-step. Its completion must not surface later as a SIGTRAP
// nobody asked for (issue: a stray SIGTRAP at start_thread or in
// pthread_create@plt in 1 run of 5). 20 runs of: break on the line creating
// threads, break in the thread function, next while threads are created,
// then delete and continue to a normal exit.
func TestGDBNoStrayTrapAfterAbandonedStep(t *testing.T) {
	needTool(t, "gdb")
	line := markerLine(t, "thread_churn.c", "CREATE-LINE")
	cmds := []string{fmt.Sprintf("break thread_churn.c:%d", line), "continue", "break thread_fn"}
	for i := 0; i < 8; i++ {
		cmds = append(cmds, "next")
	}
	cmds = append(cmds, "delete", "continue")
	for run := 0; run < 20; run++ {
		srv := startRseqdbg(t, nil, fixture("thread_churn"), "16")
		out := gdb(t, srv.port, fixture("thread_churn"), false, cmds, time.Minute)
		srv.wait(t, 30*time.Second)
		if strings.Contains(out, "received signal") || !strings.Contains(out, "exited normally") {
			t.Fatalf("run %d:\n%s", run, tail(out))
		}
		if r := result(t, srv.stdout.String()); r["sum"] != 16*17/2 {
			t.Fatalf("run %d: %v", run, r)
		}
	}
}
