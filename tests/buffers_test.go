package tests

// Clients that send more than they should: the servers' memory stays
// bounded (issue 12, hardening 5). Memory is the server process's own, read
// from /proc.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
)

// memKB reads a field of /proc/PID/status (VmRSS, VmHWM) in kB; 0 when the
// process is gone.
func memKB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// flood writes up to total bytes of frames to c until the peer stops
// reading (the write deadline passes) or the connection breaks, and
// returns how much went out.
func flood(c net.Conn, frame []byte, total int, within time.Duration) int {
	c.SetWriteDeadline(time.Now().Add(within))
	defer c.SetWriteDeadline(time.Time{})
	sent := 0
	for sent < total {
		n, err := c.Write(frame)
		sent += n
		if err != nil {
			break
		}
	}
	return sent
}

// Packets sent while the program runs are queued up to a bound; past it
// the server stops reading and the client's writes block. Natively (the
// client watched by a goroutine) and in front of gdbserver (the client
// polled by the thread waiting for the stub).
func TestQueuedPacketsBounded(t *testing.T) {
	for _, mode := range []string{"native", "proxy"} {
		t.Run(mode, func(t *testing.T) {
			prog := []string{fixture("full_tables"), "1", "400000000000"}
			var srv *stub
			if mode == "native" {
				srv = startRseqdbg(t, nil, prog...)
			} else {
				needTool(t, "gdbserver")
				srv = startProxy(t, startGDBServer(t, prog...))
			}
			queuedPacketsBounded(t, srv)
		})
	}
}

func queuedPacketsBounded(t *testing.T, srv *stub) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", srv.port))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wire.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.NoAck() {
		t.Fatal("no no-ack mode")
	}
	if err := c.Send("vCont;c"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	payload := append([]byte("X555555554000,7f00:"), bytes.Repeat([]byte{'a'}, 0x7f00)...)
	frame := wire.AppendPacket(nil, payload)
	const total = 200 << 20
	sent := flood(conn, frame, total, 5*time.Second)
	hwm := memKB(srv.cmd.Process.Pid, "VmHWM")
	t.Logf("sent %d MB while the program ran; server peak RSS %d MB", sent>>20, hwm>>10)
	if sent >= total {
		t.Errorf("the server read all %d MB sent while the program ran", total>>20)
	}
	if hwm == 0 || hwm > 80<<10 {
		t.Errorf("server peak RSS %d kB, want below 80 MB", hwm)
	}
}

// qXfer reads with made-up annexes do not pile up documents.
func TestXferCacheBounded(t *testing.T) {
	srv := startRseqdbg(t, nil, fixture("full_tables"), "1", "10")
	c := dialServer(t, srv.port)
	pid := srv.cmd.Process.Pid
	annex := strings.Repeat("a", 60<<10)
	read := func(n int) {
		for i := range n {
			if _, err := c.Request(fmt.Sprintf("qXfer:libraries-svr4:read:%s%d:0,100", annex, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	read(20)
	before := memKB(pid, "VmRSS")
	read(400)
	after := memKB(pid, "VmRSS")
	t.Logf("RSS %d kB before, %d kB after 400 reads with 60 KB annexes", before, after)
	if after-before > 12<<10 {
		t.Errorf("400 reads with 60 KB annexes grew the server by %d kB", after-before)
	}
	c.Send("k")
	srv.wait(t, 30*time.Second)
}

// A DAP header line without end is cut at a bound: the session ends with
// a framing error after a few kilobytes instead of growing with the line.
func TestDAPHeaderBounded(t *testing.T) {
	s, addr := listenDAP(t, "--listen", ":0")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pid := s.cmd.Process.Pid
	peak := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			peak = max(peak, memKB(pid, "VmHWM"))
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	conn.Write([]byte("Content-Length: "))
	const total = 300 << 20
	sent := flood(conn, bytes.Repeat([]byte{'1'}, 1<<20), total, 15*time.Second)
	close(stop)
	<-done
	t.Logf("sent %d MB of header; server peak RSS %d MB", sent>>20, peak>>10)
	if sent >= total {
		t.Errorf("the server read a %d MB header line", total>>20)
	}
	if peak > 60<<10 {
		t.Errorf("server peak RSS %d kB, want below 60 MB", peak)
	}
	s.wait(t, 30*time.Second)
}
