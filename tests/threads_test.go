package tests

import (
	"fmt"
	"regexp"
	"testing"
	"time"
)

// Thread names are cached per thread until a system call of that thread
// may have renamed it: a thread that renames itself in a next shows its
// new name in gdb's info threads (within the cache's 100 ms), while the
// parked threads keep theirs without being read again.
func TestGDBThreadRenameShows(t *testing.T) {
	needTool(t, "gdb")
	line := markerLine(t, "parked.c", "RENAME-LINE")
	srv := startRseqdbg(t, []string{"--once"}, fixture("parked"), "4", "100")
	out := gdb(t, srv.port, fixture("parked"), false, []string{
		fmt.Sprintf("break parked.c:%d", line), "continue", "info threads", "set scheduler-locking step", "next", "shell sleep 0.3", "info threads", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	current := regexp.MustCompile(`(?m)^\* 1 +Thread \S+ "(\w+)"`)
	m := current.FindAllStringSubmatch(out, -1)
	if len(m) != 2 || m[0][1] != "parked" || m[1][1] != "homeward" {
		t.Fatalf("thread 1's names before and after the rename: %v\n%s", m, tail(out))
	}
}
