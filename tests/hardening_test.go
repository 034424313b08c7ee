package tests

// Hostile and broken clients against real servers (issue 12): each test
// plays the attack and checks the server's answer.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
)

// dialServer connects a protocol client to a server on loopback.
func dialServer(t *testing.T, port int) *wire.Client {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wire.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

func hexs(s string) string { return hex.EncodeToString([]byte(s)) }

// tracerPid reads who traces pid (0: nobody).
func tracerPid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`TracerPid:\s+(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no TracerPid in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	if n == 0 {
		return 0
	}
	// TracerPid is the tracer's thread id: rseqdbg's tracer thread need
	// not be its main thread. The process is its thread group.
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", n))
	if err != nil {
		return n
	}
	if g := regexp.MustCompile(`Tgid:\s+(\d+)`).FindSubmatch(b); g != nil {
		n, _ = strconv.Atoi(string(g[1]))
	}
	return n
}

// A vFile open of a FIFO would wait for a writer on the tracer thread for
// good; a directory or a device is no file gdb can read either. The
// server refuses them at once, goes on serving, and a SIGTERM still
// detaches the process it attached to.
func TestVFileOpenFIFO(t *testing.T) {
	victim := &stub{}
	victim.start(t, fixture("full_tables"), "1", "400000000000")
	time.Sleep(100 * time.Millisecond)
	pid := victim.cmd.Process.Pid
	srv := startRseqdbg(t, []string{"--attach", strconv.Itoa(pid)})
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialServer(t, srv.port)
	for _, path := range []string{fifo, "/dev/zero", t.TempDir()} {
		start := time.Now()
		reply, err := c.Request("vFile:open:" + hexs(path) + ",0,0")
		if err != nil {
			t.Fatalf("vFile:open of %s: %v (after %v)", path, err, time.Since(start))
		}
		if !strings.HasPrefix(string(reply), "F-1,") {
			t.Errorf("vFile:open of %s: %q, want a refusal", path, reply)
		}
	}
	if reply, err := c.Request("vFile:open:" + hexs(fixture("full_tables")) + ",0,0"); err != nil || !strings.HasPrefix(string(reply), "F") || strings.HasPrefix(string(reply), "F-1") {
		t.Errorf("vFile:open of a regular file: %q, %v", reply, err)
	}
	if reply, err := c.Request("?"); err != nil || reply[0] != 'T' {
		t.Errorf("? after the refusals: %q, %v", reply, err)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.wait(t, 10*time.Second)
	if tp := tracerPid(t, pid); tp != 0 {
		t.Errorf("the attached process is still traced by %d", tp)
	}
	if syscall.Kill(pid, 0) != nil {
		t.Error("the attached process died")
	}
}

// A stuck tracer thread (here: the upstream stub stopped while the program
// runs) ignores the orderly end the first SIGTERM asks for; the second
// ends rseqdbg at once.
func TestSecondSignalForcesExit(t *testing.T) {
	needTool(t, "gdbserver")
	up := startGDBServer(t, fixture("full_tables"), "1", "400000000000")
	proxy := startProxy(t, up)
	c := dialServer(t, proxy.port)
	if err := c.Send("vCont;c"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// Only gdbserver: its program runs on, and gdbserver never answers.
	if err := syscall.Kill(up.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(up.cmd.Process.Pid, syscall.SIGCONT)
	proxy.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-proxy.done:
		t.Fatalf("the first SIGTERM ended the proxy: the tracer thread was not stuck, the test proves nothing\n%s", proxy.stderr.String())
	case <-time.After(time.Second):
	}
	proxy.cmd.Process.Signal(syscall.SIGTERM)
	proxy.wait(t, 5*time.Second)
	if !strings.Contains(proxy.stderr.String(), "second signal") {
		t.Errorf("no word of the forced exit:\n%s", proxy.stderr.String())
	}
}

// Outside extended mode vRun and vAttach do not replace the process the
// client debugs (gdbserver: "Already debugging a process"); after "!" they do.
func TestVRunVAttachNeedExtendedMode(t *testing.T) {
	prog := fixture("full_tables")
	srv := startRseqdbg(t, []string{"--multi"}, prog, "1", "10")
	pid := srv.pidFromNotices(t)
	victim := &stub{}
	victim.start(t, fixture("full_tables"), "1", "400000000000")
	c := dialServer(t, srv.port)
	for _, pkt := range []string{"vRun;" + hexs(prog) + ";" + hexs("1"), fmt.Sprintf("vAttach;%x", victim.cmd.Process.Pid)} {
		var se *wire.StubError
		if _, err := c.Request(pkt); !errors.As(err, &se) {
			t.Errorf("%s outside extended mode: %v, want an error reply", pkt, err)
		}
	}
	if syscall.Kill(pid, 0) != nil || tracerPid(t, pid) == 0 {
		t.Errorf("the first process %d was replaced", pid)
	}
	if tp := tracerPid(t, victim.cmd.Process.Pid); tp != 0 {
		t.Errorf("the victim is traced by %d", tp)
	}
	if !srv.stderr.waitFor("Already debugging a process", 10*time.Second) {
		t.Errorf("no notice:\n%s", srv.stderr.String())
	}
	if _, err := c.Request("!"); err != nil {
		t.Fatal(err)
	}
	if reply, err := c.Request("vRun;" + hexs(prog) + ";" + hexs("1") + ";" + hexs("10")); err != nil || reply[0] != 'T' {
		t.Errorf("vRun in extended mode: %q, %v", reply, err)
	}
	waitPidGone(t, pid)
	c.Send("k")
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.wait(t, 30*time.Second)
}

// --port-file at a symlink (planted by another user in a shared folder)
// replaces the link; its target keeps its content.
func TestPortFileSymlink(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious")
	if err := os.WriteFile(precious, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	portFile := filepath.Join(dir, "port")
	if err := os.Symlink(precious, portFile); err != nil {
		t.Fatal(err)
	}
	s := &stub{}
	s.start(t, binary, "--gdb-remote", ":0", "--once", "--port-file", portFile, "--", fixture("full_tables"), "1", "10")
	s.waitPort(t)
	if b, _ := os.ReadFile(precious); string(b) != "keep me\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	fi, err := os.Lstat(portFile)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the port file is no regular file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(portFile); strings.TrimSpace(string(b)) != strconv.Itoa(s.port) {
		t.Errorf("port file %q, port %d", b, s.port)
	}
	c := dialServer(t, s.port)
	c.Send("k")
	s.wait(t, 30*time.Second)
}

// cfiDirsOf lists the synthesized-CFI folders of pid.
func cfiDirsOf(pid int) []string {
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("rseqdbg-cfi-%d-*", pid)))
	return m
}

// A SIGKILLed server cannot remove its synthesized-CFI folder; the next
// one removes it at its start, and leaves those of live servers alone.
func TestStaleCFIDirRemoved(t *testing.T) {
	prog := fixture("full_tables")
	type server struct {
		s   *stub
		c   *wire.Client
		dir string
	}
	start := func() server {
		s := startRseqdbg(t, nil, prog, "1", "10")
		c := dialServer(t, s.port)
		if _, err := c.ReadXfer("libraries-svr4", ""); err != nil {
			t.Fatal(err)
		}
		dirs := cfiDirsOf(s.cmd.Process.Pid)
		if len(dirs) != 1 {
			t.Fatalf("server %d made the CFI folders %v, want one", s.cmd.Process.Pid, dirs)
		}
		return server{s, c, dirs[0]}
	}
	end := func(sv server) {
		sv.c.Send("k")
		sv.s.wait(t, 30*time.Second)
		if _, err := os.Stat(sv.dir); err == nil {
			t.Errorf("the server left its folder %s", sv.dir)
		}
	}
	killed := start()
	syscall.Kill(killed.s.cmd.Process.Pid, syscall.SIGKILL)
	killed.s.wait(t, 10*time.Second)
	if _, err := os.Stat(killed.dir); err != nil {
		t.Fatalf("SIGKILL removed the folder? %v", err)
	}
	live := start()
	if _, err := os.Stat(killed.dir); err == nil {
		t.Errorf("the stale folder %s is still there", killed.dir)
		os.RemoveAll(killed.dir)
	}
	third := start() // must leave the second's folder alone
	if _, err := os.Stat(live.dir); err != nil {
		t.Errorf("a live server's folder was removed: %v", err)
	}
	end(third)
	end(live)
}

// runAsNobody runs a command as user nobody.
func runAsNobody(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	return runTool(t, timeout, "setpriv", append([]string{"--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", name}, args...)...)
}

// Any local user could drive a server run by root: now a connection from
// another uid is refused on loopback (uid from /proc/net/tcp) and on a
// Unix socket (SO_PEERCRED), unless --only-same-user=false; the same uid
// is served, and gdb reaches the Unix socket with target remote PATH.
func TestOnlySameUser(t *testing.T) {
	needTool(t, "gdb")
	prog := fixture("full_tables")
	// A folder nobody can enter, for the Unix socket.
	shared, err := os.MkdirTemp("", "rseqdbg-sock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shared)
	os.Chmod(shared, 0o755)
	sock := filepath.Join(shared, "gdb.sock")

	tcp := startServing(t, nil, prog, "1", "10")
	uds := &stub{}
	uds.start(t, binary, "--gdb-remote", "unix:"+sock, "--", prog, "1", "10")
	if !uds.stderr.waitFor("Listening on unix:", 10*time.Second) {
		t.Fatalf("no unix listener:\n%s", uds.stderr.String())
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v, %v: want mode 0600", fi, err)
	}
	// Past the file mode, so that the peer check itself is what refuses.
	os.Chmod(sock, 0o666)

	for _, target := range []string{fmt.Sprintf(":%d", tcp.port), sock} {
		out, _ := runAsNobody(t, time.Minute, "gdb", "-nx", "-batch", "-ex", "target remote "+target, "-ex", "info registers rip")
		if strings.Contains(out, "rip ") {
			t.Errorf("user nobody debugged through %s:\n%s", target, out)
		}
	}
	for _, s := range []*stub{tcp, uds} {
		if !strings.Contains(s.stderr.String(), "refused a connection from uid 65534") {
			t.Errorf("no refusal reported:\n%s", s.stderr.String())
		}
	}
	for _, target := range []string{fmt.Sprintf(":%d", tcp.port), sock} {
		out, _ := runTool(t, time.Minute, "gdb", "-nx", "-batch", "-ex", "target remote "+target, "-ex", "info registers rip", "-ex", "kill")
		if !regexp.MustCompile(`rip\s+0x`).MatchString(out) {
			t.Errorf("the same user was not served through %s:\n%s", target, out)
		}
	}
	tcp.wait(t, 30*time.Second)
	uds.wait(t, 30*time.Second)
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the socket %s outlived the server", sock)
	}

	// The check can be turned off.
	open := startServing(t, []string{"--only-same-user=false"}, prog, "1", "10")
	out, _ := runAsNobody(t, time.Minute, "gdb", "-nx", "-batch", "-ex", fmt.Sprintf("target remote :%d", open.port), "-ex", "info registers rip", "-ex", "kill")
	if !regexp.MustCompile(`rip\s+0x`).MatchString(out) {
		t.Errorf("--only-same-user=false: nobody was not served:\n%s", out)
	}
	open.wait(t, 30*time.Second)
}

// listenDAP starts `rseqdbg dap ARGS` and returns the address it prints.
func listenDAP(t *testing.T, args ...string) (*stub, string) {
	t.Helper()
	s := &stub{}
	s.start(t, binary, append([]string{"dap"}, args...)...)
	re := regexp.MustCompile(`DAP server listening at: (\S+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(s.stdout.String()); m != nil {
			return s, m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("dap did not listen:\n%s%s", s.stdout.String(), s.stderr.String())
		}
	}
}

// dapInitializeScript sends a DAP initialize request to the address in
// argv[1] and says whether a response came.
const dapInitializeScript = `
import socket, sys
addr = sys.argv[1]
if addr.startswith("unix:"):
    s = socket.socket(socket.AF_UNIX); s.connect(addr[5:])
else:
    host, port = addr.rsplit(":", 1); s = socket.create_connection((host, int(port)))
body = b'{"seq":1,"type":"request","command":"initialize","arguments":{"adapterID":"t"}}'
s.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
s.settimeout(10)
data = b""
try:
    while b'"initialize"' not in data:
        d = s.recv(4096)
        if not d: break
        data += d
except Exception as e:
    print("error", e)
print("RESPONSE" if b'"success":true' in data else "NO RESPONSE")
`

// rseqdbg dap --listen :0 listens on loopback only, warns for another
// host, and serves only its own user (TCP and Unix socket).
func TestDAPListen(t *testing.T) {
	s, addr := listenDAP(t, "--listen", ":0")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("--listen :0 listens at %s, want loopback", addr)
	}
	out, _ := runAsNobody(t, 30*time.Second, python3Path, "-c", dapInitializeScript, addr)
	if !strings.Contains(out, "NO RESPONSE") {
		t.Errorf("user nobody was served:\n%s", out)
	}
	out, _ = runTool(t, 30*time.Second, python3Path, "-c", dapInitializeScript, addr)
	if !strings.Contains(out, "RESPONSE") || strings.Contains(out, "NO RESPONSE") {
		t.Errorf("the same user was not served:\n%s\n%s", out, s.stderr.String())
	}
	s.wait(t, 30*time.Second)

	w, _ := listenDAP(t, "--listen", "0.0.0.0:0")
	if !strings.Contains(w.stderr.String(), "warning: listening on 0.0.0.0:0") {
		t.Errorf("no warning for a non-loopback address:\n%s", w.stderr.String())
	}

	sock := filepath.Join(t.TempDir(), "dap.sock")
	u, addr := listenDAP(t, "--listen", "unix:"+sock)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v, %v: want mode 0600", fi, err)
	}
	out, _ = runTool(t, 30*time.Second, python3Path, "-c", dapInitializeScript, addr)
	if !strings.Contains(out, "RESPONSE") || strings.Contains(out, "NO RESPONSE") {
		t.Errorf("the same user was not served through %s:\n%s", addr, out)
	}
	u.wait(t, 30*time.Second)
}

// python3Path is the system's python: a user's shim (pyenv) may be out of
// reach of nobody.
const python3Path = "/usr/bin/python3"

// Through a proxy: a FIFO refused here is not passed on to the upstream
// (gdbserver would block on it in turn), and a client's disconnect takes
// the watchpoints it had the upstream insert with it, the program staying
// for the next client.
func TestProxyFIFOAndDisconnect(t *testing.T) {
	needTool(t, "gdbserver")
	up := startGDBServer(t, fixture("full_tables"), "1", "10")
	proxy := &stub{} // without --once: the process outlives the client
	proxy.start(t, binary, "--gdb-remote", ":0", "-v", "--upstream", fmt.Sprintf("127.0.0.1:%d", up.port))
	proxy.waitPort(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialServer(t, proxy.port)
	if reply, err := c.Request("vFile:open:" + hexs(fifo) + ",0,0"); err != nil || !strings.HasPrefix(string(reply), "F-1,") {
		t.Fatalf("vFile:open of a FIFO through the proxy: %q, %v", reply, err)
	}
	sp, err := c.Request("p7") // rsp: a writable address to watch
	if err != nil {
		t.Fatal(err)
	}
	b, _ := hex.DecodeString(string(sp))
	var addr uint64
	for i := len(b) - 1; i >= 0; i-- {
		addr = addr<<8 | uint64(b[i])
	}
	z := fmt.Sprintf("2,%x,8", addr&^7)
	if reply, err := c.Request("Z" + z); err != nil || string(reply) != "OK" {
		t.Skipf("the upstream takes no watchpoint here: %q, %v", reply, err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(proxy.stderr.String(), "packet=z"+z) {
		if time.Now().After(deadline) {
			t.Fatalf("the watchpoint was not removed from the upstream at the disconnect:\n%s", proxy.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	next := dialServer(t, proxy.port)
	if reply, err := next.Request("?"); err != nil || reply[0] != 'T' {
		t.Errorf("the next client finds %q, %v", reply, err)
	}
}
