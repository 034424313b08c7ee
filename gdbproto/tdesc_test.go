package gdbproto

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/target"
)

// regPatterns puts a known pattern into the registers of the test
// program's real process and returns what the kernel kept, by register
// name, as the bytes a debugger must show (little-endian). The process
// is then served to the debugger under test, so the target description
// and the g layout are checked end to end against gdb and lldb.
func regPatterns(t *testing.T, srv *Server, avx bool) map[string][]byte {
	t.Helper()
	p := srv.proc.p
	pid := p.Pid()
	var regs target.Regs
	var x []byte
	var err error
	srv.proc.eng.Do(func() {
		if regs, err = p.Regs(pid); err != nil {
			return
		}
		gprs := []*uint64{&regs.Rax, &regs.Rbx, &regs.Rcx, &regs.Rdx, &regs.Rsi, &regs.Rdi, &regs.Rbp, &regs.Rsp,
			&regs.R8, &regs.R9, &regs.R10, &regs.R11, &regs.R12, &regs.R13, &regs.R14, &regs.R15}
		for i, r := range gprs {
			*r = 0x0101010101010101 * uint64(i+1)
		}
		// A return to user mode with a non-canonical stack pointer faults.
		regs.Rsp &= 1<<47 - 1
		// Away from the entry point: lldb takes a SIGTRAP there for a hit
		// of its own entry breakpoint and resumes.
		regs.Rip += 0x100
		regs.OrigRax = 0x3a3a3a3a3a3a3a3a
		regs.FsBase = 0x00003b3b3b3b3b3b // canonical user addresses
		regs.GsBase = 0x00003c3c3c3c3c3c
		if err = p.SetRegs(pid, regs); err != nil {
			return
		}
		if x, err = p.FPRegs(pid); err != nil {
			return
		}
		binary.LittleEndian.PutUint16(x[6:], 0x2828)              // fop
		binary.LittleEndian.PutUint32(x[target.FxMXCSR:], 0x1fbf) // default mask, every status flag
		copy(x[target.FxXMM+15*16:], bytes.Repeat([]byte{0x38}, 16))
		if avx {
			copy(x[target.XsaveYMMH+15*16:], bytes.Repeat([]byte{0x4c}, 16))
			x[target.XsaveBV] |= target.XfeatureAVX | target.XfeatureSSE
		}
		if err = p.SetFPRegs(pid, x); err != nil {
			return
		}
		if regs, err = p.Regs(pid); err != nil {
			return
		}
		x, err = p.FPRegs(pid)
	})
	if err != nil {
		t.Fatalf("setting the register patterns: %v", err)
	}
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	u32 := func(v uint64) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	want := map[string][]byte{
		"rax": u64(regs.Rax), "rsp": u64(regs.Rsp), "rbp": u64(regs.Rbp), "r15": u64(regs.R15),
		"rip": u64(regs.Rip), "eflags": u32(regs.Eflags), "gs": u32(regs.Gs),
		"fop":      u32(uint64(binary.LittleEndian.Uint16(x[6:]))),
		"mxcsr":    u32(uint64(binary.LittleEndian.Uint32(x[target.FxMXCSR:]))),
		"xmm15":    x[target.FxXMM+15*16 : target.FxXMM+16*16],
		"orig_rax": u64(regs.OrigRax), "fs_base": u64(regs.FsBase), "gs_base": u64(regs.GsBase),
	}
	if avx {
		want["ymm15h"] = x[target.XsaveYMMH+15*16 : target.XsaveYMMH+16*16]
	}
	return want
}

// scalar shows little-endian bytes as a number with n hex digits (0: no
// leading zeros, as gdb prints).
func scalar(b []byte, digits int) string {
	var v [16]byte
	copy(v[:], b)
	hi, lo := binary.LittleEndian.Uint64(v[8:]), binary.LittleEndian.Uint64(v[:8])
	s := fmt.Sprintf("%x%016x", hi, lo)
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "0"
	}
	if len(s) < digits {
		s = strings.Repeat("0", digits-len(s)) + s
	}
	return "0x" + s
}

// recordingConn keeps what the client sent.
type recordingConn struct {
	net.Conn
	mu   sync.Mutex
	sent bytes.Buffer
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.sent.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

// runAgainst serves one connection of the real server from the debugger
// started by args (with "PORT" replaced by the listening port) and returns
// its combined output and what it sent.
func runAgainst(t *testing.T, srv *Server, name string, args ...string) (string, string) {
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
	rc := &recordingConn{}
	serveErr := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			serveErr <- err
			return
		}
		rc.Conn = nc
		serveErr <- srv.ServeConn(rc)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	ln.Close()
	select {
	case err := <-serveErr:
		if err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("the server did not end the session after %s left", name)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return string(out), rc.sent.String()
}

// describedServer serves the test program with the AVX part of the
// description on or off (off whatever the CPU has, as on a CPU without it).
func describedServer(t *testing.T, avx, xml bool) *Server {
	t.Helper()
	srv, _ := newTestServer(t)
	var has bool
	srv.proc.eng.Do(func() { has = srv.proc.hasAVX() })
	if avx && !has {
		t.Skip("the CPU has no AVX")
	}
	srv.proc.avx = &avx
	srv.withoutTargetXML = !xml
	srv.cfg.FS = hostFS{} // the debuggers read the program through vFile
	return srv
}

// TestGDBAcceptsDescription connects the real gdb to the server over a
// real process whose registers hold known patterns.
func TestGDBAcceptsDescription(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gdb")
	}
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Fatal("gdb not installed (.ci/run installs it)")
	}
	for _, avx := range []bool{false, true} {
		t.Run(fmt.Sprintf("avx=%v", avx), func(t *testing.T) {
			srv := describedServer(t, avx, true)
			want := regPatterns(t, srv, avx)
			exprs := map[string]string{
				"$rax": "rax", "$r15": "r15", "$rip": "rip", "$eflags": "eflags", "$gs": "gs", "$fop": "fop",
				"$xmm15.uint128": "xmm15", "$mxcsr": "mxcsr", "$orig_rax": "orig_rax", "$fs_base": "fs_base", "$gs_base": "gs_base",
			}
			if avx {
				exprs["$ymm15.v2_int128[1]"] = "ymm15h"
			}
			args := []string{"-nx", "-batch", "-ex", "set debug xml 1", "-ex", "target remote 127.0.0.1:PORT"}
			var order []string
			for e := range exprs {
				order = append(order, e)
				args = append(args, "-ex", "echo VAL "+e+":", "-ex", "p/x "+e)
			}
			args = append(args, "-ex", "show architecture", "-ex", "show osabi", "-ex", "kill")
			out, _ := runAgainst(t, srv, "gdb", args...)
			for i, e := range order {
				w := scalar(want[exprs[e]], 0)
				if !strings.Contains(out, "VAL "+e+":$"+strconv.Itoa(i+1)+" = "+w+"\n") {
					t.Errorf("gdb did not print %s = %s", e, w)
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
				// gdb's threads.dtd gives <threads> a default version
				// attribute that gdb's own parser does not know.
				if strings.Contains(l, "ignoring unknown attribute generic") ||
					strings.Contains(l, "ignoring unknown attribute version") ||
					strings.Contains(l, "file transfers from remote targets can be slow") {
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
		t.Fatal("lldb not installed (.ci/run installs it)")
	}
	for _, tc := range []struct{ avx, xml bool }{{false, true}, {true, true}, {false, false}, {true, false}} {
		t.Run(fmt.Sprintf("avx=%v,xml=%v", tc.avx, tc.xml), func(t *testing.T) {
			srv := describedServer(t, tc.avx, tc.xml)
			want := regPatterns(t, srv, tc.avx)
			sizes := map[string]int{"rax": 8, "r15": 8, "rip": 8, "eflags": 4, "fop": 4, "mxcsr": 4, "orig_rax": 8, "fs_base": 8, "gs_base": 8}
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
			out, sent := runAgainst(t, srv, "lldb", append(args, "-o", "process kill")...)
			fields := map[string]string{}
			for _, line := range strings.Split(out, "\n") {
				name, val, ok := strings.Cut(line, " = ")
				if ok {
					// lldb appends the symbol: "0x... nops`nops + 256".
					val, _, _ = strings.Cut(strings.TrimSpace(val), "  ")
					fields[strings.TrimSpace(name)] = val
				}
			}
			for name, size := range sizes {
				if w := scalar(want[name], 2*size); fields[name] != w {
					t.Errorf("lldb shows %s = %q, want %q", name, fields[name], w)
				}
			}
			// lldb resolves pc, sp and fp through the generic roles and
			// prints the real names.
			if strings.Contains(out, "Invalid register name") {
				t.Error("lldb does not know pc, sp or fp")
			}
			if got, w := fields["rsp"], scalar(want["rsp"], 16); got != w {
				t.Errorf("lldb sp = %q, want %q", got, w)
			}
			if got, w := fields["rbp"], scalar(want["rbp"], 16); got != w {
				t.Errorf("lldb fp = %q, want %q", got, w)
			}
			vec := func(b []byte) string {
				var parts []string
				for _, c := range b {
					parts = append(parts, fmt.Sprintf("0x%02x", c))
				}
				return strings.Join(parts, " ")
			}
			if got, w := fields["xmm15"], "{"+vec(want["xmm15"])+"}"; got != w {
				t.Errorf("lldb xmm15 = %q, want %q", got, w)
			}
			if tc.avx {
				if got, w := fields["ymm15h"], "{"+vec(want["ymm15h"])+"}"; got != w {
					t.Errorf("lldb ymm15h = %q, want %q", got, w)
				}
				// lldb builds ymm15 itself from xmm15 and ymm15h.
				if got, w := fields["ymm15"], "{"+vec(want["xmm15"])+" "+vec(want["ymm15h"])+"}"; got != w {
					t.Errorf("lldb ymm15 = %q, want %q", got, w)
				}
			}
			if usedXML := strings.Contains(sent, "qXfer:features:read:target.xml"); usedXML != tc.xml {
				t.Errorf("lldb read target.xml: %v, want %v", usedXML, tc.xml)
			}
			if t.Failed() {
				t.Logf("lldb output:\n%s\nlldb sent: %q", out, sent)
			}
		})
	}
}
