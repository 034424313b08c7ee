package gdbproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
)

func newTestServer(t testing.TB) (*Server, *fakeLauncher) {
	t.Helper()
	l := &fakeLauncher{}
	srv := NewServer(ServerConfig{Launcher: l, Program: &LaunchSpec{Path: "/fake"}, FS: noFS{}})
	srv.onPanic = func(v any) { t.Errorf("handler panicked: %v", v) }
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, l
}

func hexs(s string) string { return string(AppendHex(nil, []byte(s))) }

// consoleText decodes the O packets of a reply.
func consoleText(out [][]byte) string {
	var b strings.Builder
	for _, p := range out {
		if len(p) > 1 && p[0] == 'O' && string(p) != "OK" {
			d, _ := DecodeHex(string(p[1:]))
			b.Write(d)
		}
	}
	return b.String()
}

// TestDispatch walks a gdb-like session through the dispatcher.
func TestDispatch(t *testing.T) {
	srv, l := newTestServer(t)
	s := newSession(srv, nil)
	fake := l.launched[0]
	steps := []struct {
		pkt  string
		want string // regexp on the last packet of the reply
	}{
		{"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", `^PacketSize=8000;.*qXfer:libraries-svr4:read\+.*vContSupported\+;multiprocess\+;swbreak\+;hwbreak\+$`},
		{"QStartNoAckMode", `^OK$`},
		{"?", `^T0506:0000000000000000;07:0000ff7f00000000;10:0000400000000000;thread:p3e9\.3e9;$`},
		{"g", `^0{112}0000ff7f000000000{128}000040000000000002020000`},
		{"p10", `^0000400000000000$`},
		{"P10=0100400000000000", `^OK$`},
		{"p10", `^0100400000000000$`},
		{"P10=0000400000000000", `^OK$`},
		{"P28=00112233445566778899aabbccddeeff", `^OK$`},
		{"p28", `^00112233445566778899aabbccddeeff$`},
		{"p22", `^ffff0000$`},
		{"p3a", `^0070000000000000$`},
		{"p4c", `^E01$`},
		{"P4c=00", `^E01$`},
		{"P1=zz", `^E01$`},
		{"m400000,4", `^90909090$`},
		{"m0,4", `^E01$`},
		{"m", `^E01$`},
		{"M400000,2:cccc", `^OK$`},
		{"m400000,2", `^cccc$`},
		{"X400002,3:#$}", `^OK$`},
		{"m400002,3", `^23247d$`},
		{"M400000,5:9090909090", `^OK$`},
		{"M400000,5:90", `^E01$`},
		{"x0,0", `^OK$`},
		{"Z0,400010,1", `^OK$`},
		{"z0,400010,1", `^OK$`},
		{"Z0,zz,1", `^E01$`},
		{"Z3,400010,8", `^$`},
		{"Z2,400010,8", `^E01$`}, // the fake's debug registers never fire
		{"qXfer:features:read:target.xml:0,fff", `^[lm]<\?xml`},
		{"qXfer:features:read:other.xml:0,fff", `^E00$`},
		{"qXfer:auxv:read::0,100", "^l\x00{16}$"},
		{"qXfer:threads:read::0,1000", `^l<\?xml version="1.0"\?>\n<threads>\n<thread id="p3e9\.3e9"/>\n</threads>\n$`},
		{"qXfer:libraries-svr4:read::0,1000", `^l<library-list-svr4 version="1.0"/>\n$`},
		{"qXfer:exec-file:read:3e9:0,100", `^l$`},
		{"qXfer:features:read:target.xml:zz", `^E00$`},
		{"qfThreadInfo", `^mp3e9\.3e9$`},
		{"qsThreadInfo", `^l$`},
		{"qC", `^QCp3e9\.3e9$`},
		{"Hgp3e9.3e9", `^OK$`},
		{"Hg99999", `^E01$`},
		{"Hc-1", `^OK$`},
		{"H", `^E01$`},
		{"Tp3e9.3e9", `^OK$`},
		{"T999", `^E01$`},
		{"qAttached:3e9", `^0$`},
		{"qOffsets", `^$`},
		{"qSymbol::", `^OK$`},
		{"vCont?", `^vCont;c;C;s;S;t;r$`},
		{"vCont;s:p3e9.3e9", `^T05.*10:0100400000000000;thread:p3e9\.3e9;$`},
		{"vCont;r400001,400010:p3e9.3e9", `^T05.*10:1000400000000000;thread:p3e9\.3e9;$`},
		{"vCont;x", `^E01$`},
		{"vCont;s:p3e9.999", `^E01$`},
		{"vCont;t:p3e9.3e9", `^OK$`},
		{"Z0,400020,1", `^OK$`},
		{"vCont;c", `^T05swbreak:;.*10:2000400000000000;thread:p3e9\.3e9;$`},
		{"c", `^W00;process:3e9$`},
		{"?", `^W00$`},
		{"g", `^E01$`},
		{"vRun;", `^T05.*thread:p3eb\.3eb;$`}, // 3ea was the debug register probe
		{"qFooBar", `^$`},
		{"vFile:setfs:0", `^F0$`},
		{"vFile:open:" + hexs("/etc/passwd") + ",0,0", `^F-1,2$`},
		{"vFile:pread:7,10,0", `^F-1,9$`},
		{"vFile:open:zz,0,0", `^E01$`},
		{"QPassSignals:e;14", `^OK$`},
		{"QEnvironmentHexEncoded:" + hexs("A=1"), `^OK$`},
		{"QSetWorkingDir:" + hexs("/tmp"), `^OK$`},
		{"QNonStop:1", `^E01$`},
		{"QNonStop:0", `^OK$`},
	}
	for _, st := range steps {
		out := s.dispatch([]byte(st.pkt))
		if len(out) == 0 {
			t.Fatalf("%q: no reply", st.pkt)
		}
		last := string(out[len(out)-1])
		if !regexp.MustCompile(st.want).MatchString(last) {
			t.Fatalf("%q: got %q, want %s", st.pkt, last, st.want)
		}
	}
	if fake.bps[0x400010] != 0 {
		t.Errorf("breakpoint left behind")
	}
	pol := srv.proc.eng.Policy()
	if !pol.NoStop[14] || !pol.NoStop[17] || pol.NoStop[2] {
		t.Errorf("QPassSignals:e;14 (gdb ALRM, CHLD) gave %v", pol.NoStop)
	}
	if s.env[len(s.env)-1] != "A=1" || s.cwd != "/tmp" {
		t.Errorf("environment %v, cwd %q", s.env[len(s.env)-1:], s.cwd)
	}
	// gdb's k is answered by no packet and ends a non-extended session.
	if out := s.dispatch([]byte("k")); out != nil || !s.quit {
		t.Errorf("k: %q, quit %v", out, s.quit)
	}
}

func TestMonitor(t *testing.T) {
	srv, _ := newTestServer(t)
	s := newSession(srv, nil)
	for cmd, want := range map[string]string{
		"rseq stats":    "single-steps 0\nregion runs 0\ncommits 0",
		"rseq help":     "monitor rseq regions",
		"help":          "monitor rseq status",
		"rseq status":   "thread 1001: pc 0x400000 outside any region; no rseq area registered",
		"rseq regions":  "kind",
		"rseq vdso off": "stepped as regions: off",
		"rseq bogus":    "unknown rseq command",
		"bogus":         "unknown monitor command",
	} {
		out := s.dispatch([]byte("qRcmd," + hexs(cmd)))
		if string(out[len(out)-1]) != "OK" || !strings.Contains(consoleText(out), want) {
			t.Errorf("monitor %s: %q", cmd, consoleText(out))
		}
	}
	if out := s.dispatch([]byte("qRcmd,zz")); string(out[0]) != "E01" {
		t.Errorf("bad hex: %q", out)
	}
}

// TestRecoverPanic: a handler that panics (here the target) gets E01 and
// the server goes on.
func TestRecoverPanic(t *testing.T) {
	srv, l := newTestServer(t)
	var got any
	srv.onPanic = func(v any) { got = v }
	s := newSession(srv, nil)
	l.launched[0].panicRegs = true
	if out := s.dispatch([]byte("g")); string(out[0]) != "E01" || got == nil {
		t.Fatalf("g: %q, panic %v", out, got)
	}
	l.launched[0].panicRegs = false
	if out := s.dispatch([]byte("g")); string(out[0]) == "E01" {
		t.Fatalf("g after recovery: %q", out)
	}
}

func TestRegisterFile(t *testing.T) {
	x := make([]byte, 1024)
	regs := target.Regs{Rax: 1, Rip: 0x401000, Eflags: 0x246, Cs: 0x33, FsBase: 0x7000}
	// st0 = 1.0: exponent 0x3fff, integer bit set; physical register 7
	// is the top of stack, valid.
	binary.LittleEndian.PutUint16(x[fxFSW:], 7<<11)
	x[fxFTW] = 0x80
	binary.LittleEndian.PutUint64(x[fxST:], 1<<63)
	binary.LittleEndian.PutUint16(x[fxST+8:], 0x3fff)
	if tag := fullTag(x); tag != 0x3fff {
		t.Errorf("tag word %#x, want 0x3fff (st0 valid, the rest empty)", tag)
	}
	list := registers(false)
	var g []byte
	for _, ri := range list {
		g = appendReg(g, &regs, x, ri)
	}
	if len(g) != 2*RegisterFileSize(false) {
		t.Fatalf("g is %d hex digits, want %d", len(g), 2*RegisterFileSize(false))
	}
	// Round trip: write every register back into zeroed state.
	var r2 target.Regs
	x2 := make([]byte, 1024)
	for _, ri := range list {
		val, err := DecodeHex(string(g[2*ri.Offset : 2*(ri.Offset+ri.Size)]))
		if err != nil {
			t.Fatal(err)
		}
		setReg(&r2, x2, ri, val)
	}
	if r2 != regs {
		t.Errorf("registers did not round-trip: %+v", r2)
	}
	if !bytes.Equal(x2[:512], x[:512]) {
		t.Errorf("FXSAVE area did not round-trip")
	}
	if bv := binary.LittleEndian.Uint64(x2[xsaveBV:]); bv&3 != 3 {
		t.Errorf("XSTATE_BV %#x: x87 and SSE not marked present", bv)
	}
}

func TestSignals(t *testing.T) {
	for sig := 1; sig <= 64; sig++ {
		g := gdbSignal(sig)
		if sig == 16 {
			continue // SIGSTKFLT has no gdb name
		}
		if back := linuxSignal(int(g)); back != sig {
			t.Errorf("signal %d -> gdb %d -> %d", sig, g, back)
		}
	}
	for linux, g := range map[int]uint8{5: 5, 10: 30, 14: 14, 17: 20, 19: 17, 34: 46, 32: 77} {
		if got := gdbSignal(linux); got != g {
			t.Errorf("gdbSignal(%d) = %d, want %d", linux, got, g)
		}
	}
}

func TestWatchChunks(t *testing.T) {
	for _, c := range []struct {
		addr, n uint64
		want    string
	}{
		{0x1000, 8, "[[4096 8]]"},
		{0x1001, 4, "[[4097 1] [4098 2] [4100 1]]"},
		{0x1004, 8, "[[4100 4] [4104 4]]"},
	} {
		if got := fmt.Sprint(chunks(c.addr, c.n)); got != c.want {
			t.Errorf("chunks(%#x, %d) = %s, want %s", c.addr, c.n, got, c.want)
		}
	}
	var h hwState
	f := newFake(1)
	if err := h.insert(f, '2', 0x1000, 8); err != nil {
		t.Fatal(err)
	}
	if f.dr[0] != 0x1000 || f.dr[7] != 1|1<<16|2<<18 {
		t.Errorf("DR0 %#x DR7 %#x", f.dr[0], f.dr[7])
	}
	if err := h.insert(f, '4', 0x2001, 8); err == nil {
		t.Errorf("an unaligned 8-byte watch fit in the 3 registers left")
	}
	h.remove(f, '2', 0x1000, 8)
	if f.dr[7] != 0 || f.dr[0] != 0 {
		t.Errorf("DR0 %#x DR7 %#x after remove", f.dr[0], f.dr[7])
	}
}

// rawClient talks bytes to a server over a pipe.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

func framed(payload string) string { return string(AppendPacket(nil, []byte(payload))) }

// expect reads one ack byte and, when reply is not "", a packet.
func (r *rawClient) expect(ack byte, reply string) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if ack != 0 {
		b, err := r.br.ReadByte()
		if err != nil || b != ack {
			r.t.Fatalf("want ack %q, got %q %v", ack, b, err)
		}
	}
	if reply == "-" {
		return
	}
	rd := NewReader(r.br, 0)
	m, err := rd.Next()
	if err != nil || m.Kind != KindPacket || !regexp.MustCompile(reply).Match(m.Payload) {
		r.t.Fatalf("want reply %s, got %v %q %v", reply, m.Kind, clip(string(m.Payload)), err)
	}
	r.send("+")
}

// TestServeConnBadInput: damaged, truncated, oversized and unknown packets
// get the protocol's answers, and the server keeps serving.
func TestServeConnBadInput(t *testing.T) {
	srv, l := newTestServer(t)
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(a) }()
	r := &rawClient{t: t, c: b, br: bufio.NewReader(b)}
	r.send("+" + framed("qSupported:swbreak+"))
	r.expect('+', `^PacketSize=`)
	r.send("$g#00")
	r.expect('-', "-")
	r.send("$m40") // truncated: the next packet starts before it ends
	r.send(framed("qFooBar"))
	r.expect('+', `^$`)
	r.send("$" + strings.Repeat("a", maxIncoming+10) + "#00")
	r.expect('+', `^E01$`)
	r.send(framed("vCont;zz"))
	r.expect('+', `^E01$`)
	r.send(framed("?"))
	r.expect('+', `^T05`)
	b.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeConn: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after the client left")
	}
	if !l.launched[0].exited || srv.proc != nil {
		t.Errorf("the launched process was not killed when the client left")
	}
}

// FuzzDispatch: no packet makes a handler panic.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"qSupported:multiprocess+;swbreak+\n?\ng\nvCont;s:p3e9.3e9",
		"Z0,400010,1\nvCont;c\nz0,400010,1\nc",
		"vCont;r400000,400100:p3e9.3e9;c\nG" + strings.Repeat("00", 560),
		"P10=00\nP10=0000400000000000\np57\nqXfer:threads:read::0,10\nqXfer:threads:read::10,10",
		"qRcmd,7273657120737461747573\nqRcmd,72736571207664736f206f6e",
		"vRun;\nvAttach;10\nvKill;10\nD\nk\n!",
		"qMemoryRegionInfo:400000\nqThreadStopInfo3e9\nqRegisterInfo3a\nQThreadSuffixSupported\np10;thread:3e9;",
		"vFile:open:2f,0,0\nvFile:pread:3,10,0\nvFile:fstat:3\nvFile:close:3",
		"Z2,400000,8\nZ1,400000,1\nz2,400000,8\nQPassSignals:e;0;ff\nS05;400010\nC0e",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, _ := newTestServer(t)
		s := newSession(srv, nil)
		for _, pkt := range bytes.Split(data, []byte("\n")) {
			s.dispatch(pkt)
		}
	})
}
