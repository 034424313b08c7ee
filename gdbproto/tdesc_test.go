package gdbproto

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRegistersNumbering(t *testing.T) {
	// gdb's amd64-linux numbering, which gdbserver also uses.
	want := []string{
		"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
		"rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
		"st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7",
		"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop",
		"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		"xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
		"mxcsr", "orig_rax", "fs_base", "gs_base",
	}
	for i := range 16 {
		want = append(want, fmt.Sprintf("ymm%dh", i))
	}
	for _, avx := range []bool{false, true} {
		regs := Registers(avx)
		n := 60
		size := 560
		if avx {
			n, size = 76, 816
		}
		if len(regs) != n {
			t.Fatalf("avx=%v: %d registers, want %d", avx, len(regs), n)
		}
		off := 0
		for i, r := range regs {
			if r.Name != want[i] || r.Regnum != i {
				t.Errorf("avx=%v: register %d is %s (regnum %d), want %s", avx, i, r.Name, r.Regnum, want[i])
			}
			if r.Offset != off {
				t.Errorf("avx=%v: %s at offset %d, want %d", avx, r.Name, r.Offset, off)
			}
			if r.Size*8 != r.Bitsize || r.Size == 0 {
				t.Errorf("avx=%v: %s size %d bytes, bitsize %d", avx, r.Name, r.Size, r.Bitsize)
			}
			off += r.Size
		}
		if off != size || RegisterFileSize(avx) != size {
			t.Errorf("avx=%v: register file %d bytes (RegisterFileSize %d), want %d", avx, off, RegisterFileSize(avx), size)
		}
	}
	spot := map[string]RegInfo{}
	for _, r := range Registers(true) {
		spot[r.Name] = r
	}
	checks := []struct {
		name          string
		size, offset  int
		generic, typ  string
		dwarf, regnum int
	}{
		{"rip", 8, 128, "pc", "code_ptr", 16, 16},
		{"rsp", 8, 56, "sp", "data_ptr", 7, 7},
		{"rbp", 8, 48, "fp", "data_ptr", 6, 6},
		{"eflags", 4, 136, "flags", "i386_eflags", 49, 17},
		{"st0", 10, 164, "", "i387_ext", 33, 24},
		{"xmm0", 16, 276, "", "vec128", 17, 40},
		{"mxcsr", 4, 532, "", "i386_mxcsr", 64, 56},
		{"orig_rax", 8, 536, "", "int", -1, 57},
		{"fs_base", 8, 544, "", "int", 58, 58},
		{"ymm0h", 16, 560, "", "uint128", -1, 60},
	}
	for _, c := range checks {
		r := spot[c.name]
		if r.Size != c.size || r.Offset != c.offset || r.Generic != c.generic || r.Type != c.typ || r.DWARF != c.dwarf || r.Regnum != c.regnum {
			t.Errorf("%s = %+v, want size %d offset %d generic %q type %q dwarf %d regnum %d",
				c.name, r, c.size, c.offset, c.generic, c.typ, c.dwarf, c.regnum)
		}
	}
	// Callers get their own copy.
	Registers(false)[0].Name = "clobbered"
	if Registers(false)[0].Name != "rax" {
		t.Error("Registers returned shared state")
	}
}

type xmlTarget struct {
	Architecture string `xml:"architecture"`
	OSABI        string `xml:"osabi"`
	Features     []struct {
		Name string `xml:"name,attr"`
		Regs []struct {
			Name    string `xml:"name,attr"`
			Bitsize int    `xml:"bitsize,attr"`
			Type    string `xml:"type,attr"`
			Regnum  int    `xml:"regnum,attr"`
			Generic string `xml:"generic,attr"`
		} `xml:"reg"`
	} `xml:"feature"`
}

func TestTargetXML(t *testing.T) {
	for _, avx := range []bool{false, true} {
		files := TargetXML(avx)
		if len(files) != 1 || files["target.xml"] == nil {
			t.Fatalf("avx=%v: documents %v, want only target.xml", avx, files)
		}
		var doc xmlTarget
		dec := xml.NewDecoder(bytes.NewReader(files["target.xml"]))
		dec.Strict = true
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("avx=%v: target.xml is not well-formed: %v", avx, err)
		}
		if doc.Architecture != "i386:x86-64" || doc.OSABI != "GNU/Linux" {
			t.Errorf("avx=%v: architecture %q osabi %q", avx, doc.Architecture, doc.OSABI)
		}
		wantFeatures := []string{featCore, featSSE, featLinux, featSegments}
		if avx {
			wantFeatures = append(wantFeatures, featAVX)
		}
		var gotFeatures []string
		regs := Registers(avx)
		i := 0
		for _, f := range doc.Features {
			gotFeatures = append(gotFeatures, f.Name)
			for _, r := range f.Regs {
				if i >= len(regs) {
					t.Fatalf("avx=%v: more registers in XML than in table", avx)
				}
				w := regs[i]
				if r.Name != w.Name || r.Bitsize != w.Bitsize || r.Type != w.Type || r.Regnum != w.Regnum || r.Generic != w.Generic || f.Name != w.Feature {
					t.Errorf("avx=%v: XML register %+v in %s, table has %+v", avx, r, f.Name, w)
				}
				i++
			}
		}
		if i != len(regs) {
			t.Errorf("avx=%v: %d registers in XML, %d in table", avx, i, len(regs))
		}
		if strings.Join(gotFeatures, ",") != strings.Join(wantFeatures, ",") {
			t.Errorf("avx=%v: features %v, want %v", avx, gotFeatures, wantFeatures)
		}
		// Every type referenced is built in or defined in the document.
		body := string(files["target.xml"])
		for _, typ := range []string{"i386_eflags", "i386_mxcsr", "vec128"} {
			if !strings.Contains(body, `id="`+typ+`"`) {
				t.Errorf("avx=%v: type %s used but not defined", avx, typ)
			}
		}
	}
	TargetXML(false)["target.xml"][0] = 'X'
	if TargetXML(false)["target.xml"][0] != '<' {
		t.Error("TargetXML returned shared state")
	}
}

func TestRegisterInfoReply(t *testing.T) {
	tests := []struct {
		i    int
		avx  bool
		want string
	}{
		{0, false, "name:rax;bitsize:64;offset:0;encoding:uint;format:hex;set:general;ehframe:0;dwarf:0;"},
		{16, false, "name:rip;bitsize:64;offset:128;encoding:uint;format:hex;set:general;ehframe:16;dwarf:16;generic:pc;"},
		{5, false, "name:rdi;bitsize:64;offset:40;encoding:uint;format:hex;set:general;ehframe:5;dwarf:5;generic:arg1;"},
		{24, false, "name:st0;bitsize:80;offset:164;encoding:vector;format:vector-uint8;set:float;ehframe:33;dwarf:33;"},
		{34, false, "name:ftag;bitsize:32;offset:252;encoding:uint;format:hex;set:float;"},
		{57, false, "name:orig_rax;bitsize:64;offset:536;encoding:uint;format:hex;set:system;"},
		{59, false, "name:gs_base;bitsize:64;offset:552;encoding:uint;format:hex;set:general;ehframe:59;dwarf:59;"},
		{60, false, "E45"},
		{-1, false, "E45"},
		{75, true, "name:ymm15h;bitsize:128;offset:800;encoding:vector;format:vector-uint8;set:vector;"},
		{76, true, "E45"},
	}
	for _, tt := range tests {
		if got := RegisterInfoReply(tt.i, tt.avx); got != tt.want {
			t.Errorf("RegisterInfoReply(%d, %v) = %q, want %q", tt.i, tt.avx, got, tt.want)
		}
	}
}

// fakeTarget serves one debugger connection for a stopped, single-threaded
// process whose register file is a known pattern, using only this package.
// It stands in for the real server so that the target description and the
// g layout can be checked against the real gdb and lldb.
type fakeTarget struct {
	avx      bool
	xml      bool // advertise qXfer:features:read
	regs     []byte
	received []string
}

func newFakeTarget(avx, xml bool) *fakeTarget {
	ft := &fakeTarget{avx: avx, xml: xml, regs: make([]byte, RegisterFileSize(avx))}
	for _, r := range Registers(avx) {
		for i := range r.Size {
			ft.regs[r.Offset+i] = byte(r.Regnum + 1)
		}
	}
	rip := Registers(avx)[16]
	for i := range 8 {
		ft.regs[rip.Offset+i] = byte(uint64(0x401000) >> (8 * i))
	}
	return ft
}

func (ft *fakeTarget) serve(nc net.Conn) error {
	c := NewConn(nc, 0)
	defer c.Close()
	doc := TargetXML(ft.avx)["target.xml"]
	for {
		pkt, err := c.ReadPacket()
		if err != nil {
			if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrBadChecksum) {
				return err
			}
			return nil
		}
		p := string(pkt)
		ft.received = append(ft.received, p)
		var reply []byte
		switch {
		case strings.HasPrefix(p, "qSupported"):
			s := "PacketSize=4000;QStartNoAckMode+"
			if ft.xml {
				s += ";qXfer:features:read+"
			}
			reply = []byte(s)
		case p == "QStartNoAckMode":
			if err := c.WritePacket([]byte("OK")); err != nil {
				return err
			}
			c.SetNoAck()
			continue
		case strings.HasPrefix(p, "qXfer:features:read:"):
			x, err := ParseXferRead(p)
			if err != nil || x.Annex != "target.xml" || !ft.xml {
				reply = []byte("E00")
				break
			}
			reply = XferChunk(doc, x.Offset, x.Length)
		case strings.HasPrefix(p, "qRegisterInfo"):
			n, err := ParseHexUint64(p[len("qRegisterInfo"):])
			if err != nil {
				reply = []byte("E45")
				break
			}
			reply = []byte(RegisterInfoReply(int(n), ft.avx))
		case p == "?":
			reply, _ = AppendStopReply(nil, 5, ThreadPair(ThreadID{Tid: 1}, false),
				RegisterPair(16, ft.regs[128:136]))
		case p == "qHostInfo" && !ft.xml:
			// Without target.xml lldb learns the architecture, and so the
			// byte order, only from here.
			reply = []byte("triple:" + string(AppendHex(nil, []byte("x86_64-pc-linux-gnu"))) +
				";ptrsize:8;endian:little;ostype:linux;")
		case p == "qC":
			reply = []byte("QC1")
		case p == "qfThreadInfo":
			reply = []byte("m1")
		case p == "qsThreadInfo":
			reply = []byte("l")
		case p == "qAttached":
			reply = []byte("1")
		case strings.HasPrefix(p, "H"):
			reply = []byte("OK")
		case p == "g":
			reply = AppendHex(nil, ft.regs)
		case strings.HasPrefix(p, "p"):
			n, err := ParseHexUint64(strings.SplitN(p[1:], ";", 2)[0])
			regs := Registers(ft.avx)
			if err != nil || n >= uint64(len(regs)) {
				reply = []byte("E45")
				break
			}
			r := regs[n]
			reply = AppendHex(nil, ft.regs[r.Offset:r.Offset+r.Size])
		case strings.HasPrefix(p, "m"):
			_, length, _ := strings.Cut(p, ",")
			n, err := ParseHexUint64(length)
			if err != nil || n > 0x1000 {
				reply = []byte("E01")
				break
			}
			reply = AppendHex(nil, make([]byte, n))
		case p == "k" || p == "D" || strings.HasPrefix(p, "D;"):
			if p != "k" {
				c.WritePacket([]byte("OK"))
			}
			return nil
		}
		if err := c.WritePacket(reply); err != nil {
			return err
		}
	}
}

// runAgainst serves one connection from the debugger started by args (with
// "PORT" replaced by the listening port) and returns its combined output.
func runAgainst(t *testing.T, ft *fakeTarget, name string, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "PORT", port)
	}
	serveErr := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			serveErr <- err
			return
		}
		defer nc.Close()
		serveErr <- ft.serve(nc)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	ln.Close()
	select {
	case err := <-serveErr:
		if err != nil {
			t.Errorf("fake target: %v", err)
		}
	case <-time.After(5 * time.Second):
	}
	return string(out)
}

func pattern(b byte, n int) string {
	return "0x" + strings.Repeat(fmt.Sprintf("%02x", b), n)
}

// TestGDBAcceptsDescription connects the real gdb to a fake target using
// this package's description and register layout.
func TestGDBAcceptsDescription(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gdb")
	}
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
	for _, avx := range []bool{false, true} {
		t.Run(fmt.Sprintf("avx=%v", avx), func(t *testing.T) {
			ft := newFakeTarget(avx, true)
			exprs := []string{"$rax", "$r15", "$rip", "$eflags", "$gs", "$fop", "$xmm15.uint128", "$mxcsr", "$orig_rax", "$fs_base", "$gs_base"}
			want := []string{
				pattern(1, 8), pattern(0x10, 8), "0x401000", pattern(0x12, 4), pattern(0x18, 4), pattern(0x28, 4),
				pattern(0x38, 16), pattern(0x39, 4), pattern(0x3a, 8), pattern(0x3b, 8), pattern(0x3c, 8),
			}
			if avx {
				exprs = append(exprs, "$ymm15.v2_int128[1]")
				want = append(want, pattern(0x4c, 16))
			}
			args := []string{"-nx", "-batch", "-ex", "set debug xml 1", "-ex", "target remote 127.0.0.1:PORT"}
			for _, e := range exprs {
				args = append(args, "-ex", "echo VAL "+e+":", "-ex", "p/x "+e)
			}
			args = append(args, "-ex", "show architecture", "-ex", "show osabi", "-ex", "detach")
			out := runAgainst(t, ft, "gdb", args...)
			for i, e := range exprs {
				// gdb drops leading zeros.
				w := "0x" + strings.TrimLeft(strings.TrimPrefix(want[i], "0x"), "0")
				if !strings.Contains(out, "VAL "+e+":$"+strconv.Itoa(i+1)+" = "+w+"\n") {
					t.Errorf("gdb did not print %s = %s", e, want[i])
				}
			}
			for _, s := range []string{"i386:x86-64", "GNU/Linux"} {
				if !strings.Contains(out, s) {
					t.Errorf("gdb output lacks %q", s)
				}
			}
			// "set debug xml" reports every attribute and element gdb
			// does not understand; lldb's generic is the only one expected.
			for _, line := range strings.Split(out, "\n") {
				l := strings.ToLower(line)
				if strings.Contains(l, "ignoring unknown attribute generic") ||
					strings.Contains(l, "no executable has been specified") {
					continue
				}
				if strings.Contains(l, "warning") || strings.Contains(l, "ignoring") || strings.Contains(l, "error") {
					t.Errorf("gdb complained: %s", line)
				}
			}
			if t.Failed() {
				t.Logf("gdb output:\n%s", out)
			}
		})
	}
}

// TestLLDBAcceptsDescription does the same for lldb, through target.xml and
// through the qRegisterInfo fallback.
func TestLLDBAcceptsDescription(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lldb")
	}
	if _, err := exec.LookPath("lldb"); err != nil {
		t.Skip("lldb not installed")
	}
	for _, tc := range []struct{ avx, xml bool }{{false, true}, {true, true}, {false, false}, {true, false}} {
		t.Run(fmt.Sprintf("avx=%v,xml=%v", tc.avx, tc.xml), func(t *testing.T) {
			ft := newFakeTarget(tc.avx, tc.xml)
			regs := map[string]string{
				"rax": pattern(1, 8), "r15": pattern(0x10, 8), "rip": "0x0000000000401000",
				"eflags": pattern(0x12, 4), "fop": pattern(0x28, 4), "mxcsr": pattern(0x39, 4),
				"orig_rax": pattern(0x3a, 8), "fs_base": pattern(0x3b, 8), "gs_base": pattern(0x3c, 8),
			}
			names := []string{"rax", "r15", "rip", "eflags", "fop", "mxcsr", "orig_rax", "fs_base", "gs_base"}
			if tc.avx {
				names = append(names, "ymm15h")
			}
			args := []string{"-b", "-o", "gdb-remote 127.0.0.1:PORT",
				"-o", "register read " + strings.Join(names, " "),
				"-o", "register read pc sp fp xmm15"}
			if tc.avx {
				args = append(args, "-o", "register read ymm15")
			}
			out := runAgainst(t, ft, "lldb", append(args, "-o", "process detach")...)
			fields := map[string]string{}
			for _, line := range strings.Split(out, "\n") {
				name, val, ok := strings.Cut(line, " = ")
				if ok {
					fields[strings.TrimSpace(name)] = strings.TrimSpace(val)
				}
			}
			for name, want := range regs {
				if fields[name] != want {
					t.Errorf("lldb shows %s = %q, want %q", name, fields[name], want)
				}
			}
			// lldb resolves pc, sp and fp through the generic roles and
			// prints the real names.
			if strings.Contains(out, "Invalid register name") {
				t.Error("lldb does not know pc, sp or fp")
			}
			if got := fields["rsp"]; got != pattern(8, 8) {
				t.Errorf("lldb sp = %q", got)
			}
			if got := fields["rbp"]; got != pattern(7, 8) {
				t.Errorf("lldb fp = %q", got)
			}
			if got := fields["xmm15"]; got != "{"+strings.TrimSpace(strings.Repeat("0x38 ", 16))+"}" {
				t.Errorf("lldb xmm15 = %q", got)
			}
			if tc.avx && fields["ymm15h"] != "{"+strings.TrimSpace(strings.Repeat("0x4c ", 16))+"}" {
				t.Errorf("lldb ymm15h = %q", fields["ymm15h"])
			}
			// lldb builds ymm15 itself from xmm15 and ymm15h.
			if want := "{" + strings.Repeat("0x38 ", 16) + strings.TrimSpace(strings.Repeat("0x4c ", 16)) + "}"; tc.avx && fields["ymm15"] != want {
				t.Errorf("lldb ymm15 = %q, want %q", fields["ymm15"], want)
			}
			usedXML := false
			for _, p := range ft.received {
				usedXML = usedXML || strings.HasPrefix(p, "qXfer:features:read:target.xml")
			}
			if usedXML != tc.xml {
				t.Errorf("lldb read target.xml: %v, want %v", usedXML, tc.xml)
			}
			if t.Failed() {
				t.Logf("lldb output:\n%s\npackets: %q", out, ft.received)
			}
		})
	}
}
