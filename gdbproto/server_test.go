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

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/target"
)

func hexs(s string) string { return string(wire.AppendHex(nil, []byte(s))) }

// consoleText decodes the O packets of a reply.
func consoleText(out [][]byte) string {
	var b strings.Builder
	for _, p := range out {
		if len(p) > 1 && p[0] == 'O' && string(p) != "OK" {
			d, _ := wire.DecodeHex(string(p[1:]))
			b.Write(d)
		}
	}
	return b.String()
}

// le is a hex little-endian 64-bit value, as g and p show registers.
func le(v uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return string(wire.AppendHex(nil, b[:]))
}

// TestDispatch walks a gdb-like session through the dispatcher over a
// real process.
func TestDispatch(t *testing.T) {
	srv, l := newTestServer(t)
	s := newSession(srv, nil)
	prog := l.prog
	pid := srv.Pid()
	th := fmt.Sprintf("p%x.%x", pid, pid)
	code := prog.start
	rip := func(off uint64) string { return le(code + off) }
	at := func(off uint64) string { return fmt.Sprintf("%x", code+off) }
	hw := `^E01$` // refused: debug registers do not trigger on this machine
	if srv.debugRegistersWork(prog.path) {
		hw = `^OK$`
	}
	type step struct {
		pkt  string
		want string // regexp on the last packet of the reply
	}
	steps := []step{
		{"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386", `^PacketSize=8000;.*qXfer:libraries-svr4:read\+.*vContSupported\+;ConditionalBreakpoints\+;QNonStop\+;multiprocess\+;swbreak\+;hwbreak\+$`},
		{"QStartNoAckMode", `^OK$`},
		{"?", `^T0506:0000000000000000;07:[0-9a-f]{16};10:` + rip(0) + `;thread:` + th + `;$`},
		{"g", `^[0-9a-f]{256}` + rip(0)},
		{"p10", `^` + rip(0) + `$`},
		{"P10=" + rip(1), `^OK$`},
		{"p10", `^` + rip(1) + `$`},
		{"P10=" + rip(0), `^OK$`},
		{"P28=00112233445566778899aabbccddeeff", `^OK$`},
		{"p28", `^00112233445566778899aabbccddeeff$`},
		{"p22", `^ffff0000$`},         // ftag: every x87 register empty
		{"p3a", `^0000000000000000$`}, // fs_base: no libc, no TLS
		{"p4c", `^E01$`},
		{"P4c=00", `^E01$`},
		{"P1=zz", `^E01$`},
		{"m" + at(0) + ",4", `^90909090$`},
		{"m0,4", `^E01$`},
		{"m", `^E01$`},
		{"M" + at(0) + ",2:cccc", `^OK$`},
		{"m" + at(0) + ",2", `^cccc$`},
		{"X" + at(2) + ",3:#$}", `^OK$`},
		{"m" + at(2) + ",3", `^23247d$`},
		{"M" + at(0) + ",5:9090909090", `^OK$`},
		{"M" + at(0) + ",5:90", `^E01$`},
		{"x0,0", `^OK$`},
		{"Z0," + at(0x10) + ",1", `^OK$`},
		{"m" + at(0x10) + ",1", `^90$`}, // the client never sees its int3
	}
	run := func(steps []step) {
		t.Helper()
		for _, st := range steps {
			out := s.dispatch([]byte(st.pkt))
			if len(out) == 0 {
				t.Fatalf("%q: no reply", st.pkt)
			}
			last := string(out[len(out)-1])
			if !regexp.MustCompile(st.want).MatchString(last) {
				t.Fatalf("%q: got %q, want %s", st.pkt, wire.Clip(last), st.want)
			}
		}
	}
	run(steps)
	run([]step{
		{"z0," + at(0x10) + ",1", `^OK$`},
		{"Z0,zz,1", `^E01$`},
		// A condition as agent bytecode (const8 1, end), one the server
		// could not decide (trace), one whose length lies.
		{"Z0," + at(0x10) + ",1;X3,220127", `^OK$`},
		{"z0," + at(0x10) + ",1", `^OK$`},
		{"Z0," + at(0x10) + ",1;X2,0c27", `^E01$`},
		{"Z0," + at(0x10) + ",1;X9,2201", `^E01$`},
		{"qSupported:exec-events+", `;exec-events\+$`},
		{"Z3," + at(0x10) + ",8", `^$`},
		{"Z2," + at(0x10) + ",8", hw},
		{"z2," + at(0x10) + ",8", `^(OK|E01)$`},
	})
	if b := readByte(t, srv, code+0x10); b != 0x90 {
		t.Fatalf("breakpoint left behind: %#x", b)
	}
	exe := regexp.QuoteMeta(prog.path)
	run([]step{
		{"qXfer:features:read:target.xml:0,fff", `^[lm]<\?xml`},
		{"qXfer:features:read:other.xml:0,fff", `^E00$`},
		{"qXfer:auxv:read::0,1000", "^l(?s:.{16})+$"},
		{"qXfer:threads:read::0,1000", `^l<\?xml version="1.0"\?>\n<threads>\n<thread id="` + th + `" name="nops"/>\n</threads>\n$`},
		{"qXfer:libraries-svr4:read::0,1000", `^l<library-list-svr4 version="1.0"`},
		{fmt.Sprintf("qXfer:exec-file:read:%x:0,100", pid), `^l` + exe + `$`},
		{"qXfer:features:read:target.xml:zz", `^E00$`},
		{"qfThreadInfo", `^m` + th + `$`},
		{"qsThreadInfo", `^l$`},
		{"qC", `^QC` + th + `$`},
		{"Hg" + th, `^OK$`},
		{"Hg99999", `^E01$`},
		{"Hc-1", `^OK$`},
		{"H", `^E01$`},
		{"T" + th, `^OK$`},
		{"T999", `^E01$`},
		{fmt.Sprintf("qAttached:%x", pid), `^0$`},
		{"qOffsets", `^$`},
		{"qSymbol::", `^OK$`},
		{"vCont?", `^vCont;c;C;s;S;t;r$`},
		{"vCont;s:" + th, `^T05.*10:` + rip(1) + `;thread:` + th + `;$`},
		{"vCont;r" + at(1) + "," + at(0x10) + ":" + th, `^T05.*10:` + rip(0x10) + `;thread:` + th + `;$`},
		{"vCont;x", `^E01$`},
		{fmt.Sprintf("vCont;s:p%x.999", pid), `^E01$`},
		{"vCont;t:" + th, `^OK$`},
		{"Z0," + at(0x20) + ",1", `^OK$`},
		{"vCont;c", `^T05swbreak:;.*10:` + rip(0x20) + `;thread:` + th + `;$`},
		{"z0," + at(0x20) + ",1", `^OK$`},
	})
	if b := readByte(t, srv, code+0x20); b != 0x90 {
		t.Fatalf("breakpoint left behind after its hit: %#x", b)
	}
	run([]step{
		{"c", fmt.Sprintf(`^W00;process:%x$`, pid)},
		{"?", `^W00$`},
		{"g", `^E01$`},
		{"vRun;", `^T05.*thread:p([0-9a-f]+)\.([0-9a-f]+);$`},
		{"qFooBar", `^$`},
		{"vFile:setfs:0", `^F0$`},
		{"vFile:open:" + hexs("/etc/passwd") + ",0,0", `^F-1,2$`},
		{"vFile:pread:7,10,0", `^F-1,9$`},
		{"vFile:open:zz,0,0", `^E01$`},
		{"vRun;" + hexs("/bin/true"), `^E`},
		{"vAttach;1", `^E`},
		{"QPassSignals:e;14", `^OK$`},
		{"QEnvironmentHexEncoded:" + hexs("A=1"), `^OK$`},
		{"QSetWorkingDir:" + hexs("/tmp"), `^OK$`},
		{"QNonStop:1", `^E01$`}, // no connection to poll while threads run
		{"QNonStop:0", `^OK$`},
	})
	waitGone(t, pid)
	if srv.Pid() == pid || srv.Pid() == 0 {
		t.Errorf("vRun did not start a new process (pid %d)", srv.Pid())
	}
	pol := srv.proc.eng.Policy()
	if !pol.NoStop[14] || !pol.NoStop[17] || pol.NoStop[2] {
		t.Errorf("QPassSignals:e;14 (gdb ALRM, CHLD) gave %v", pol.NoStop)
	}
	if s.env[len(s.env)-1] != "A=1" || s.cwd != "/tmp" {
		t.Errorf("environment %v, cwd %q", s.env[len(s.env)-1:], s.cwd)
	}
	// gdb's k is answered by no packet and ends a non-extended session.
	second := srv.Pid()
	if out := s.dispatch([]byte("k")); out != nil || !s.quit {
		t.Errorf("k: %q, quit %v", out, s.quit)
	}
	waitGone(t, second)
}

func TestMonitor(t *testing.T) {
	srv, l := newTestServer(t)
	s := newSession(srv, nil)
	for cmd, want := range map[string]string{
		"rseq stats":    "single-steps 0\nregion runs 0\ncommits 0",
		"rseq help":     "monitor rseq regions",
		"help":          "monitor rseq status",
		"rseq status":   fmt.Sprintf("thread %d: pc %#x outside any region; no rseq area registered", srv.Pid(), l.prog.start),
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

// TestRecoverPanic: a handler that panics (here the target, by injection)
// gets E01 and the server goes on.
func TestRecoverPanic(t *testing.T) {
	srv, l := newTestServerWith(t, func(p Process) Process { return &panicky{Process: p} })
	var got any
	srv.onPanic = func(v any) { got = v }
	s := newSession(srv, nil)
	p := l.first().(*panicky)
	p.panicRegs = true
	if out := s.dispatch([]byte("g")); string(out[0]) != "E01" || got == nil {
		t.Fatalf("g: %q, panic %v", out, got)
	}
	p.panicRegs = false
	if out := s.dispatch([]byte("g")); string(out[0]) == "E01" {
		t.Fatalf("g after recovery: %q", out)
	}
}

func TestRegisterFile(t *testing.T) {
	x := make([]byte, 1024)
	regs := target.Regs{Rax: 1, Rip: 0x401000, Eflags: 0x246, Cs: 0x33, FsBase: 0x7000}
	// st0 = 1.0: exponent 0x3fff, integer bit set; physical register 7
	// is the top of stack, valid.
	binary.LittleEndian.PutUint16(x[target.FxFSW:], 7<<11)
	x[target.FxFTW] = 0x80
	binary.LittleEndian.PutUint64(x[target.FxST:], 1<<63)
	binary.LittleEndian.PutUint16(x[target.FxST+8:], 0x3fff)
	if tag := wire.X87TagWord(x); tag != 0x3fff {
		t.Errorf("tag word %#x, want 0x3fff (st0 valid, the rest empty)", tag)
	}
	list := wire.Registers(false)
	var g []byte
	for _, ri := range list {
		g = appendReg(g, &regs, x, ri)
	}
	if len(g) != 2*wire.RegisterFileSize(false) {
		t.Fatalf("g is %d hex digits, want %d", len(g), 2*wire.RegisterFileSize(false))
	}
	// Round trip: write every register back into zeroed state.
	var r2 target.Regs
	x2 := make([]byte, 1024)
	for _, ri := range list {
		val, err := wire.DecodeHex(string(g[2*ri.Offset : 2*(ri.Offset+ri.Size)]))
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
	if bv := binary.LittleEndian.Uint64(x2[target.XsaveBV:]); bv&3 != 3 {
		t.Errorf("XSTATE_BV %#x: x87 and SSE not marked present", bv)
	}
}

func TestSignals(t *testing.T) {
	for sig := 1; sig <= 64; sig++ {
		g := wire.GDBSignal(sig)
		if sig == 16 {
			continue // SIGSTKFLT has no gdb name
		}
		if back := wire.LinuxSignal(int(g)); back != sig {
			t.Errorf("signal %d -> gdb %d -> %d", sig, g, back)
		}
	}
	for linux, g := range map[int]uint8{5: 5, 10: 30, 14: 14, 17: 20, 19: 17, 34: 46, 32: 77} {
		if got := wire.GDBSignal(linux); got != g {
			t.Errorf("wire.GDBSignal(%d) = %d, want %d", linux, got, g)
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
	// The kernel checks every value written to the debug registers of
	// the real process.
	srv, l := newTestServerWith(t, func(p Process) Process { return &drRecorder{Process: p} })
	f := l.first().(*drRecorder)
	var h hwState
	var err error
	srv.proc.eng.Do(func() { err = h.insert(f, '2', 0x1000, 8) })
	if err != nil {
		t.Fatal(err)
	}
	if f.dr[0] != 0x1000 || f.dr[7] != 1|1<<16|2<<18 {
		t.Errorf("DR0 %#x DR7 %#x", f.dr[0], f.dr[7])
	}
	srv.proc.eng.Do(func() { err = h.insert(f, '4', 0x2001, 8) })
	if err == nil {
		t.Errorf("an unaligned 8-byte watch fit in the 3 registers left")
	}
	srv.proc.eng.Do(func() { h.remove(f, '2', 0x1000, 8) })
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

func framed(payload string) string { return string(wire.AppendPacket(nil, []byte(payload))) }

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
	rd := wire.NewReader(r.br, 0)
	m, err := rd.Next()
	if err != nil || m.Kind != wire.KindPacket || !regexp.MustCompile(reply).Match(m.Payload) {
		r.t.Fatalf("want reply %s, got %v %q %v", reply, m.Kind, wire.Clip(string(m.Payload)), err)
	}
	r.send("+")
}

// TestServeConnBadInput: damaged, truncated, oversized and unknown packets
// get the protocol's answers, and the server keeps serving.
func TestServeConnBadInput(t *testing.T) {
	srv, _ := newTestServer(t)
	pid := srv.Pid()
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
	if srv.proc != nil {
		t.Errorf("the server still holds the process after the client left")
	}
	waitGone(t, pid)
}

// FuzzDispatch: no packet makes a handler panic. Each input is a session
// on a fresh real process; @P in it stands for the process's pid and @C for
// the address of its NOPs, so that mutations stay near meaningful packets.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"qSupported:multiprocess+;swbreak+\n?\ng\nvCont;s:p@P.@P",
		"Z0,@C,1\nvCont;c\nz0,@C,1\nc",
		"vCont;r@C,@C:p@P.@P;c\nG" + strings.Repeat("00", 560),
		"P10=00\nP10=@C\np57\nqXfer:threads:read::0,10\nqXfer:threads:read::10,10",
		"qRcmd,7273657120737461747573\nqRcmd,72736571207664736f206f6e",
		"vRun;\nvAttach;@P\nvKill;@P\nD\nk\n!",
		"qMemoryRegionInfo:@C\nqThreadStopInfo@P\nqRegisterInfo3a\nQThreadSuffixSupported\np10;thread:@P;",
		"vFile:open:2f,0,0\nvFile:pread:3,10,0\nvFile:fstat:3\nvFile:close:3",
		"Z2,@C,8\nZ1,@C,1\nz2,@C,8\nQPassSignals:e;0;ff\nS05;@C\nC0e",
		"M@C,2:ebfe\nc",
	} {
		f.Add([]byte(s))
	}
	prog := testProgram(f)
	l := &testLauncher{prog: prog}
	srv := NewServer(ServerConfig{Launcher: l, Program: &LaunchSpec{Path: prog.path}, FS: noFS{}})
	srv.onPanic = func(v any) { f.Errorf("handler panicked: %v", v) }
	f.Cleanup(func() { srv.release(true) })
	f.Fuzz(func(t *testing.T, data []byte) {
		if srv.proc == nil {
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
		}
		defer srv.release(true)
		pid := fmt.Sprintf("%x", srv.Pid())
		code := fmt.Sprintf("%x", prog.start)
		// A patched program may loop forever: interrupt it as gdb's ^C would.
		stop := make(chan struct{})
		defer close(stop)
		eng := srv.proc.eng
		go func() {
			select {
			case <-stop:
			case <-time.After(2 * time.Second):
				eng.Interrupt()
			}
		}()
		s := newSession(srv, nil)
		for _, pkt := range bytes.Split(data, []byte("\n")) {
			pkt = bytes.ReplaceAll(pkt, []byte("@P"), []byte(pid))
			pkt = bytes.ReplaceAll(pkt, []byte("@C"), []byte(code))
			s.dispatch(pkt)
		}
	})
}
