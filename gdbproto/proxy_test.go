package gdbproto

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
)

func TestInsertLibraries(t *testing.T) {
	lib := `<library name="/x.so" lm="0x1" l_addr="0x2" l_ld="0x3"/>`
	for in, want := range map[string]string{
		`<library-list-svr4 version="1.0"></library-list-svr4>`: `<library-list-svr4 version="1.0">` + lib + "\n</library-list-svr4>",
		`<library-list-svr4 version="1.0"/>` + "\n":             `<library-list-svr4 version="1.0">` + "\n" + lib + "\n</library-list-svr4>\n",
	} {
		if got := string(insertLibraries([]byte(in), []string{lib})); got != want {
			t.Errorf("%s:\ngot  %q\nwant %q", in, got, want)
		}
	}
}

func TestWithLmid(t *testing.T) {
	for in, want := range map[string]string{
		// lldb-server's form: no namespace, no main-lm.
		`<library-list-svr4 version="1.0"><library name="/lib/a.so" lm="0x1" l_addr="0x2" l_ld="0x3" /><library name="b" lm="0x4" l_addr="0" l_ld="0"></library></library-list-svr4>`: `<library-list-svr4 version="1.0"><library name="/lib/a.so" lm="0x1" l_addr="0x2" l_ld="0x3" lmid="0x0"/><library name="b" lm="0x4" l_addr="0" l_ld="0" lmid="0x0"></library></library-list-svr4>`,
		// gdbserver's form is left alone.
		`<library name="/lib/a.so" lm="0x1" l_addr="0x2" l_ld="0x3" lmid="0x7"/>`: `<library name="/lib/a.so" lm="0x1" l_addr="0x2" l_ld="0x3" lmid="0x7"/>`,
		`<library-list-svr4 version="1.0"/>`:                                      `<library-list-svr4 version="1.0"/>`,
	} {
		if got := string(withLmid([]byte(in))); got != want {
			t.Errorf("%s:\ngot  %s\nwant %s", in, got, want)
		}
	}
}

// The client against this package's own server (a real TCP connection and
// a real ptrace-free exchange): handshake, no-ack, requests, qXfer,
// pipelining, forwarding of console output, and a server that hangs up.
func TestClientAgainstServer(t *testing.T) {
	srv := NewServer(ServerConfig{Launcher: &testLauncher{prog: testProgram(t)}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := wire.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.NoAck() || !c.Supports("qXfer:features:read") || c.PacketSize() != packetSize {
		t.Errorf("handshake: noack %v qXfer:features %v size %#x", c.NoAck(), c.Supports("qXfer:features:read"), c.PacketSize())
	}
	doc, err := c.ReadXfer("features", "target.xml")
	if err != nil || !strings.Contains(string(doc), "org.gnu.gdb.i386.core") {
		t.Fatalf("qXfer: %v %q", err, doc)
	}
	replies, err := c.Pipeline("qC", "vMustReplyEmpty", "qfThreadInfo")
	if err == nil || len(replies) != 3 {
		t.Errorf("pipeline: %q %v (want the empty reply reported)", replies, err)
	}
	out, err := c.Forward([]byte("qRcmd," + string(wire.AppendHex(nil, []byte("rseq help")))))
	if err != nil || len(out) < 2 || out[0][0] != 'O' || string(out[0]) == "OK" || string(out[len(out)-1]) != "OK" {
		t.Errorf("forwarded monitor command: %q %v", out, err)
	}
	if _, err := c.Request("m0,4"); err == nil {
		t.Error("memory read without a process succeeded")
	}
	srv.Shutdown()
	c.Timeout = 10 * time.Second
	if _, err := c.Request("qC"); err == nil || c.Err() == nil {
		t.Errorf("request after the server hung up: %v, connection error %v", err, c.Err())
	}
}
