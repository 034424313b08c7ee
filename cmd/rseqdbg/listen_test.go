package main

import (
	"net"
	"os"
	"testing"
)

// peerUID finds this process's own uid at the other end of real loopback
// connections: IPv4 (/proc/net/tcp), IPv6 (tcp6), and IPv4 through a
// dual-stack listener, which the kernel lists in tcp6 with IPv4-mapped
// addresses.
func TestPeerUIDLoopback(t *testing.T) {
	for _, c := range []struct{ listen, dial string }{
		{"tcp4", "127.0.0.1"},
		{"tcp6", "[::1]"},
		{"tcp", "127.0.0.1"},
	} {
		l, err := net.Listen(c.listen, c.dial+":0")
		if c.listen == "tcp" {
			l, err = net.Listen("tcp", ":0")
		}
		if err != nil {
			t.Logf("%s: %v (no such stack here)", c.listen, err)
			continue
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		client, err := net.Dial("tcp", c.dial+":"+port)
		if err != nil {
			t.Fatal(err)
		}
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		uid, err := peerUID(server)
		if err != nil || uid != os.Geteuid() {
			t.Errorf("%s to %s: uid %d, %v; want %d", c.listen, c.dial, uid, err, os.Geteuid())
		}
		client.Close()
		server.Close()
		l.Close()
	}
}

// The check reads the peer's entry, not ours: our end of the connection
// has the same addresses crossed, and the same uid, so a mix-up would pass
// unnoticed; the entry found must be the one whose local address is the
// peer's.
func TestProcNetUIDCrossed(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	local, remote := server.LocalAddr().(*net.TCPAddr), server.RemoteAddr().(*net.TCPAddr)
	if _, err := procNetUID("/proc/net/tcp", hexAddr4(remote), hexAddr4(local)); err != nil {
		t.Errorf("the peer's socket is not listed: %v", err)
	}
	if _, err := procNetUID("/proc/net/tcp", hexAddr4(remote), hexAddr4(remote)); err == nil {
		t.Error("a socket that does not exist was found")
	}
}
