package tests

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startServing starts `rseqdbg --gdb-remote :0 FLAGS -- PROG...` without
// --once: the default, where the server outlives its clients.
func startServing(t *testing.T, flags []string, prog ...string) *stub {
	t.Helper()
	args := append([]string{"--gdb-remote", ":0"}, flags...)
	s := &stub{}
	s.start(t, binary, append(append(args, "--"), prog...)...)
	s.waitPort(t)
	return s
}

func running(s *stub) bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// As gdbserver: a port probe and a client that disconnects neither end the
// server nor the program; the next gdb finds the program stopped where the
// last one left it, without the last one's breakpoints, and a kill or the
// program's end still ends the server.
func TestGDBReconnect(t *testing.T) {
	needTool(t, "gdb")
	prog := fixture("full_tables")
	srv := startServing(t, nil, prog, "1", "100")
	pid := srv.pidFromNotices(t)

	// A probe, as an IDE or a script waiting for the port does.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", srv.port))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	out := gdb(t, srv.port, prog, false, []string{
		"break inc_full", "continue", "info registers rip", "echo @@disconnect\\n", "disconnect",
	}, time.Minute)
	m := regexp.MustCompile(`rip\s+(0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "Breakpoint 1, ") {
		t.Fatalf("first gdb did not stop at inc_full:\n%s", out)
	}
	time.Sleep(200 * time.Millisecond)
	if !running(srv) || syscall.Kill(pid, 0) != nil {
		t.Fatalf("a disconnect ended the server (%v) or the program:\n%s", srv.err, srv.stderr.String())
	}

	// The second client: same stop, no breakpoint of the first, runs to the end.
	out = gdb(t, srv.port, prog, false, []string{
		"info registers rip", "echo @@continue\\n", "continue",
	}, time.Minute)
	if !strings.Contains(out, "rip            "+m[1]) && !regexp.MustCompile(`rip\s+`+m[1]+`\b`).MatchString(out) {
		t.Errorf("the second client does not find the program where the first left it (rip %s):\n%s", m[1], out)
	}
	rest, _ := cutSection(out, "continue")
	if strings.Contains(rest, "Breakpoint") || strings.Contains(rest, "SIGTRAP") || !strings.Contains(rest, "exited normally") {
		t.Errorf("the second client did not run to the end without the first's breakpoints:\n%s", out)
	}
	// gdbserver without --multi ends once its process is gone.
	srv.wait(t, 30*time.Second)
	exactSums(t, srv.stdout.String())
	if !strings.Contains(srv.stderr.String(), "will reopen the connection") {
		t.Errorf("no notice of the reopened connection:\n%s", srv.stderr.String())
	}
}

// kill still kills and detach detaches, and either ends the server; --once
// serves one client and kills the program it launched when that client
// disconnects.
func TestGDBKillAndOnce(t *testing.T) {
	needTool(t, "gdb")
	prog := fixture("full_tables")
	for _, c := range []struct {
		name  string
		flags []string
		cmds  []string
	}{
		{"kill", nil, []string{"break inc_full", "continue", "kill"}},
		{"once-disconnect", []string{"--once"}, []string{"break inc_full", "continue", "disconnect"}},
		{"detach", nil, []string{"break inc_full", "continue", "detach"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServing(t, c.flags, prog, "1", "400000000000")
			pid := srv.pidFromNotices(t)
			gdb(t, srv.port, prog, false, c.cmds, time.Minute)
			if c.name != "detach" {
				srv.wait(t, 30*time.Second)
				waitPidGone(t, pid)
				return
			}
			// Not srv.wait: the detached program holds the server's
			// output pipe, which Wait waits for.
			waitPidGone(t, srv.cmd.Process.Pid)
			defer syscall.Kill(pid, syscall.SIGKILL)
			if syscall.Kill(pid, 0) != nil || tracerPid(t, pid) != 0 {
				t.Errorf("detach: the program died or is still traced")
			}
		})
	}
}

var createdRE = regexp.MustCompile(`Process \S+ created; pid = (\d+)`)

func (s *stub) pidFromNotices(t *testing.T) int {
	t.Helper()
	m := createdRE.FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no pid in the server's notices:\n%s", s.stderr.String())
	}
	var pid int
	fmt.Sscan(m[1], &pid)
	return pid
}

func waitPidGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	t.Errorf("process %d outlived the server", pid)
}

// A client that vanishes while the program runs leaves it stopped (the
// server interrupts it, as it cannot tell the client), traced, and served
// to the next client.
func TestClientGoneWhileRunning(t *testing.T) {
	prog := fixture("full_tables")
	srv := startServing(t, nil, prog, "1", "400000000000")
	pid := srv.pidFromNotices(t)
	c := dialServer(t, srv.port)
	if err := c.Send("vCont;c"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	c.Close()
	time.Sleep(500 * time.Millisecond)
	if !running(srv) || syscall.Kill(pid, 0) != nil {
		t.Fatalf("the disconnect ended the server or the program:\n%s", srv.stderr.String())
	}
	next := dialServer(t, srv.port)
	reply, err := next.Request("?")
	if err != nil || reply[0] != 'T' {
		t.Fatalf("the next client finds %q, %v; want the program stopped", reply, err)
	}
	if tracerPid(t, pid) != srv.cmd.Process.Pid {
		t.Errorf("the program is not traced by the server any more")
	}
	next.Send("k")
	srv.wait(t, 30*time.Second)
	waitPidGone(t, pid)
}
