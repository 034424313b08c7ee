// Package remote implements target.Target over another GDB remote stub
// (gdbserver, qemu-user's gdbstub, lldb-server): registers through the
// stub's target description, memory, Z0 breakpoints, vCont resumption and
// stop replies, threads and auxv, object files through vFile. It lets the
// stepping core, and so the GDB server of gdbproto, run as an rseq-aware
// proxy in front of a stub that knows nothing of restartable sequences.
package remote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

// ErrUpstreamLost is wrapped by every operation once the connection to the
// stub is gone: the process may live on there, but it is out of reach.
var ErrUpstreamLost = errors.New("connection to the upstream stub lost")

// Options configure a connection.
type Options struct {
	// ExecPath is the program's path when the stub does not tell it
	// (qXfer:exec-file); AT_EXECFN from auxv is the last resort.
	ExecPath string
	// Console receives console output the stub sends while the target runs.
	Console func(text string)
}

// Target is a process behind a remote stub, in all-stop mode.
type Target struct {
	c       *wire.Client
	closeRW func() error
	fd      *wire.FDConn // the connection, when it is one (not in tests)
	cmd     *exec.Cmd

	pid          int
	multiprocess bool
	threadEvents bool
	swbreak      bool
	vfile        bool
	launched     bool
	exe          string

	regs   []wire.RemoteRegister
	offs   []int // byte offset of regs[i] in the register file
	size   int   // register file size
	byName map[string]int
	lacks  map[string]bool // general registers the stub does not have
	gCount int             // registers the g packet carried (the rest need p)
	// gByOffset: the g packet is laid out by the registers' offsets
	// (lldb-server), not one register after another in number order.
	gByOffset bool
	pcReg     int // index of rip

	cache   map[int]*regFile
	exp     map[int][3]uint64 // pc, sp, fp from the last stop reply
	regnum  [3]int            // numbers of rip, rsp, rbp
	hg      int               // thread the stub's Hg points at; 0 unknown
	threads []int
	fresh   bool // threads is current

	bps map[uint64]int // breakpoints wanted, with their counts
	// upstream holds the breakpoints the stub has inserted. A debugger
	// removes every breakpoint at each stop and inserts them again before
	// each resumption (gdb does, the engine does too around a step): the
	// stub is told only at the next resumption, and only of what changed,
	// which saves four round trips per stepi. An address is inserted at
	// once the first time, so a stub's refusal reaches the caller.
	upstream map[uint64]bool
	accepted map[uint64]bool // addresses the stub accepted a breakpoint at
	running  atomic.Bool
	intr     atomic.Bool
	stepping map[int]bool
	acts     map[int]target.Action
	def      target.Action
	exited   bool
	lost     error

	auxv  []byte
	files *fileCache
	// pending is a memory read sent ahead (see PrefetchStack); mem holds
	// what such reads brought, valid until the target runs or is written.
	pending []memRange // reads sent ahead, answers not yet received
	mem     []memRange
	rseq    rseqSymbols
}

// regFile is one thread's registers as the stub sent them.
type regFile struct {
	raw  []byte
	have []bool
}

// Dial connects to a stub listening at addr (HOST:PORT).
func Dial(addr string, opts Options) (*Target, error) {
	w, err := wire.DialFD(addr, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the upstream stub at %s: %w", addr, err)
	}
	t, err := newTarget(w, opts)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("upstream %s: %w", addr, err)
	}
	return t, nil
}

// Start runs command with the shell and speaks to it over its stdin and
// stdout, as gdb's `target remote | command` does (gdbserver - PROG).
func Start(command string, opts Options) (*Target, error) {
	w, stdin, stdout, err := wire.PipeFD()
	if err != nil {
		return nil, fmt.Errorf("upstream command: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, os.Stderr
	err = cmd.Start()
	stdin.Close()
	stdout.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("starting upstream %q: %w", command, err)
	}
	t, err := newTarget(w, opts)
	if err != nil {
		w.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("upstream %q: %w", command, err)
	}
	t.cmd = cmd
	return t, nil
}

func newTarget(rw io.ReadWriteCloser, opts Options) (*Target, error) {
	c, err := wire.NewClient(rw)
	if err != nil {
		return nil, err
	}
	c.Console = opts.Console
	t := &Target{
		c: c, closeRW: c.Close, byName: map[string]int{}, cache: map[int]*regFile{}, exp: map[int][3]uint64{},
		bps: map[uint64]int{}, upstream: map[uint64]bool{}, accepted: map[uint64]bool{}, stepping: map[int]bool{},
		multiprocess: c.Supports("multiprocess"), swbreak: c.Supports("swbreak"),
		vfile: true, pcReg: -1,
	}
	t.files = &fileCache{t: t, entries: map[string]*fileEntry{}}
	t.fd, _ = rw.(*wire.FDConn)
	if err := t.handshake(opts); err != nil {
		c.Close()
		return nil, err
	}
	return t, nil
}

func (t *Target) handshake(opts Options) error {
	if _, err := t.cl().Request("vCont?"); err != nil {
		return fmt.Errorf("the stub does not support vCont: %w", err)
	}
	// No QThreadEvents: gdbserver 13 crashes reporting a thread's exit in
	// all-stop mode. Threads are listed again after each stop instead, and
	// a solo run whose thread ends comes back as "N" (no-resumed+).
	// gdbserver describes the registers of its current thread: pick one
	// first, as gdb does.
	if _, err := t.cl().Request("Hg0"); err != nil && !errors.Is(err, wire.ErrUnsupported) {
		slog.Debug("upstream Hg0", "err", err)
	}
	if err := t.describe(); err != nil {
		return err
	}
	reply, err := t.cl().Request("?")
	if err != nil {
		return fmt.Errorf("initial stop: %w", err)
	}
	st, err := wire.ParseStopReply(reply)
	if err != nil {
		return fmt.Errorf("initial stop: %w", err)
	}
	if st.Kind != 'T' {
		return fmt.Errorf("the upstream has no live process (%q)", reply)
	}
	if st.HasThread && st.Thread.Pid > 0 {
		t.pid = int(st.Thread.Pid)
	}
	if err := t.refreshThreads(); err != nil {
		return err
	}
	if len(t.threads) == 0 {
		return errors.New("the upstream reports no thread")
	}
	if t.pid == 0 {
		t.pid = t.threads[0]
	}
	// qAttached: 1 attached, 0 created by the stub.
	if reply, err := t.cl().Request(fmt.Sprintf("qAttached:%x", t.pid)); err == nil {
		t.launched = string(reply) == "0"
	} else {
		t.launched = true
	}
	if doc, err := t.cl().ReadXfer("exec-file", fmt.Sprintf("%x", t.pid)); err == nil && len(doc) > 0 {
		t.exe = string(doc)
	} else if opts.ExecPath != "" {
		t.exe = opts.ExecPath
	} else if av, err := t.Auxv(); err == nil {
		if p := auxv.ParseAuxv(av)[auxv.AtExecfn]; p != 0 {
			t.exe = linkmap.ReadCString(t.ReadMemory, p, 4096)
		}
	}
	if t.exe == "" {
		return errors.New("the upstream does not say which program it runs: give its path (--file)")
	}
	if opts.ExecPath != "" && opts.ExecPath != t.exe {
		slog.Warn("upstream program path differs from --file; using the upstream's", "upstream", t.exe, "file", opts.ExecPath)
	}
	return nil
}

// describe reads the target description and lays out the register file.
func (t *Target) describe() error {
	regs, err := wire.ParseTargetDescription(func(annex string) ([]byte, error) {
		return t.cl().ReadXfer("features", annex)
	})
	if err != nil {
		return fmt.Errorf("reading the upstream's registers: %w", err)
	}
	return t.layout(regs)
}

// maxRegisterFile bounds the register file a description may lay out:
// the sizes and offsets are the stub's, and x86-64 with AVX-512 needs
// under 4 KiB.
const maxRegisterFile = 1 << 16

// layout lays out the register file of the described registers.
func (t *Target) layout(regs []wire.RemoteRegister) error {
	if t.byName == nil {
		t.byName = map[string]int{}
	}
	t.regs = regs
	t.offs = make([]int, len(regs))
	off := 0
	for i, r := range regs {
		if r.Size() <= 0 || r.Size() > maxRegisterFile || r.Offset > maxRegisterFile {
			return fmt.Errorf("the upstream's register %s has %d bits at offset %d: not a register file rseqdbg can lay out",
				r.Name, r.Bitsize, r.Offset)
		}
		t.offs[i] = off
		off += r.Size()
		t.byName[r.Name] = i
	}
	if off > maxRegisterFile {
		return fmt.Errorf("the upstream's registers take %d bytes: not a register file rseqdbg can lay out", off)
	}
	t.size = off
	if _, ok := t.byName["eflags"]; !ok {
		if i, ok := t.byName["rflags"]; ok { // lldb-server's name
			t.byName["eflags"] = i
		}
	}
	t.lacks = map[string]bool{}
	for _, name := range gprNames {
		if _, ok := t.byName[name]; !ok {
			t.lacks[name] = true
		}
	}
	pc, ok := t.byName["rip"]
	if !ok {
		return errors.New("the upstream's target description has no rip: not an x86-64 target")
	}
	t.pcReg = pc
	t.regnum = [3]int{regs[pc].Regnum, -1, -1}
	for i, name := range []string{"rsp", "rbp"} {
		if j, ok := t.byName[name]; ok {
			t.regnum[i+1] = regs[j].Regnum
		}
	}
	t.gCount = len(regs)
	t.gByOffset = false
	for _, r := range regs {
		if r.Offset >= 0 {
			t.gByOffset = true
		} else if !r.Pseudo {
			t.gByOffset = false
			break
		}
	}
	return nil
}

// inG reports whether the g packet carries register i.
func (t *Target) inG(i int) bool {
	if t.gByOffset {
		return !t.regs[i].Pseudo && t.regs[i].Offset >= 0
	}
	return i < t.gCount
}

// Do runs f; calls are serialized by the caller (the server's session).
func (t *Target) Do(f func()) {
	// One thread for a run of packets: its waits are raw system calls
	// (see wire.FDConn), and a goroutine that moved between threads
	// would wake a second one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f()
}

// Pid is the process id the stub reports.
func (t *Target) Pid() int { return t.pid }

// ExecPath is the program's path on the stub's side.
func (t *Target) ExecPath() string { return t.exe }

// Launched reports whether the stub created the process (rather than
// attached to it).
func (t *Target) Launched() bool { return t.launched }

func (t *Target) check() error {
	if t.lost != nil {
		return t.lost
	}
	if t.exited {
		return target.ErrExited
	}
	return nil
}

// fail records a broken connection: from now on everything fails.
func (t *Target) fail(err error) error {
	if err == nil {
		return nil
	}
	var se *wire.StubError
	if errors.As(err, &se) || errors.Is(err, wire.ErrUnsupported) {
		return err
	}
	var fe *wire.FileError
	if errors.As(err, &fe) {
		return err
	}
	if t.c.Err() == nil {
		return err
	}
	if t.lost == nil {
		t.lost = fmt.Errorf("%w: %v", ErrUpstreamLost, err)
		t.running.Store(false)
	}
	return t.lost
}

func (t *Target) request(pkt string) ([]byte, error) {
	if t.lost != nil {
		return nil, t.lost
	}
	r, err := t.cl().Request(pkt)
	return r, t.fail(err)
}

func (t *Target) threadID(tid int) string {
	return string(wire.ThreadID{Pid: int64(t.pid), Tid: int64(tid)}.AppendTo(nil, t.multiprocess))
}

// Threads lists the live threads, leader first.
func (t *Target) Threads() []int {
	if !t.fresh && t.check() == nil {
		if err := t.refreshThreads(); err != nil {
			slog.Debug("listing upstream threads", "err", err)
		}
	}
	return append([]int(nil), t.threads...)
}

func (t *Target) refreshThreads() error {
	var list []int
	// Both requests at once: the first reply usually lists every thread.
	if t.lost != nil {
		return t.lost
	}
	replies, err := t.cl().Pipeline("qfThreadInfo", "qsThreadInfo")
	err = t.fail(err)
	var reply []byte
	if err == nil {
		reply = replies[0]
	}
	for i := 1; err == nil && len(reply) > 0 && reply[0] == 'm'; i++ {
		for _, f := range strings.Split(string(reply[1:]), ",") {
			id, perr := wire.ParseThreadID(f)
			if perr != nil || id.Tid <= 0 {
				continue
			}
			if t.pid == 0 && id.Pid > 0 {
				t.pid = int(id.Pid)
			}
			list = append(list, int(id.Tid))
		}
		if i < len(replies) {
			reply = replies[i]
		} else {
			reply, err = t.request("qsThreadInfo")
		}
	}
	if err != nil {
		return fmt.Errorf("listing threads: %w", err)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i] == t.pid && list[j] != t.pid })
	t.threads = list
	t.fresh = true
	return nil
}

// selectThread points the stub's Hg at tid.
func (t *Target) selectThread(tid int) error {
	if t.hg == tid {
		return nil
	}
	if _, err := t.request("Hg" + t.threadID(tid)); err != nil {
		return fmt.Errorf("selecting thread %d: %w", tid, err)
	}
	t.hg = tid
	return nil
}

// fetch returns tid's registers, read once per stop: Hg and g pipelined.
func (t *Target) fetch(tid int) (*regFile, error) {
	if rf := t.cache[tid]; rf != nil {
		return rf, nil
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	pkts := []string{"g"}
	if t.hg != tid {
		pkts = []string{"Hg" + t.threadID(tid), "g"}
	}
	replies, err := t.cl().Pipeline(pkts...)
	if err = t.fail(err); err != nil {
		t.hg = 0
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	t.hg = tid
	rf := t.decodeG(string(replies[len(replies)-1]))
	t.cache[tid] = rf
	return rf, nil
}

// decodeG reads a g reply: registers the stub did not send ('x' digits,
// a short reply) stay unknown, to be read with p.
func (t *Target) decodeG(g string) *regFile {
	rf := &regFile{raw: make([]byte, t.size), have: make([]bool, len(t.regs))}
	if t.gByOffset {
		for i, r := range t.regs {
			if !t.inG(i) || 2*(r.Offset+r.Size()) > len(g) {
				continue
			}
			field := g[2*r.Offset : 2*(r.Offset+r.Size())]
			if b, err := wire.DecodeHex(field); err == nil && !strings.ContainsRune(field, 'x') {
				copy(rf.raw[t.offs[i]:], b)
				rf.have[i] = true
			}
		}
		return rf
	}
	pos := 0
	for i, r := range t.regs {
		n := 2 * r.Size()
		if pos+n > len(g) {
			if i < t.gCount {
				t.gCount = i
			}
			break
		}
		field := g[pos : pos+n]
		pos += n
		if strings.ContainsRune(field, 'x') {
			continue
		}
		if b, err := wire.DecodeHex(field); err == nil {
			copy(rf.raw[t.offs[i]:], b)
			rf.have[i] = true
		}
	}
	return rf
}

// value returns register name of rf, fetching it with p when the g packet
// did not carry it.
func (t *Target) value(tid int, rf *regFile, name string) ([]byte, bool) {
	i, ok := t.byName[name]
	if !ok {
		return nil, false
	}
	if !rf.have[i] && (!t.inG(i) || t.gByOffset) {
		if err := t.selectThread(tid); err == nil {
			if reply, err := t.request(fmt.Sprintf("p%x", t.regs[i].Regnum)); err == nil && !bytes.ContainsRune(reply, 'x') {
				if b, err := wire.DecodeHex(string(reply)); err == nil {
					copy(rf.raw[t.offs[i]:t.offs[i]+t.regs[i].Size()], b)
					rf.have[i] = true
				}
			}
		}
	}
	if !rf.have[i] {
		return nil, false
	}
	return rf.raw[t.offs[i] : t.offs[i]+t.regs[i].Size()], true
}

func le(b []byte) uint64 {
	var buf [8]byte
	copy(buf[:], b)
	return binary.LittleEndian.Uint64(buf[:])
}

// gprNames maps target.Regs fields to the names target descriptions use.
// gprNames are the general registers target.Regs carries, as gdb names
// them, in the order of gprFields.
var gprNames = [...]string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "eflags",
	"cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "orig_rax"}

func gprFields(r *target.Regs) [len(gprNames)]*uint64 {
	return [...]*uint64{&r.Rax, &r.Rbx, &r.Rcx, &r.Rdx, &r.Rsi, &r.Rdi, &r.Rbp, &r.Rsp,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15, &r.Rip, &r.Eflags,
		&r.Cs, &r.Ss, &r.Ds, &r.Es, &r.Fs, &r.Gs, &r.FsBase, &r.GsBase, &r.OrigRax}
}

// Regs returns the general registers.
func (t *Target) Regs(tid int) (target.Regs, error) {
	var r target.Regs
	rf, err := t.fetch(tid)
	if err != nil {
		return r, err
	}
	for k, p := range gprFields(&r) {
		if b, ok := t.value(tid, rf, gprNames[k]); ok {
			*p = le(b)
		}
	}
	return r, nil
}

// write stores new bytes for register i: P, or G when the stub has no P.
func (t *Target) write(tid int, rf *regFile, i int, val []byte) error {
	r := t.regs[i]
	if err := t.selectThread(tid); err != nil {
		return err
	}
	_, err := t.request(fmt.Sprintf("P%x=%s", r.Regnum, wire.AppendHex(nil, val)))
	if errors.Is(err, wire.ErrUnsupported) && !t.gByOffset && t.inG(i) {
		raw := append([]byte(nil), rf.raw...)
		copy(raw[t.offs[i]:], val)
		var g []byte
		for j := 0; j < t.gCount; j++ {
			if rf.have[j] || j == i {
				g = wire.AppendHex(g, raw[t.offs[j]:t.offs[j]+t.regs[j].Size()])
			} else {
				g = append(g, bytes.Repeat([]byte("x"), 2*t.regs[j].Size())...)
			}
		}
		_, err = t.request("G" + string(g))
	}
	if err != nil {
		return fmt.Errorf("writing %s of thread %d: %w", r.Name, tid, err)
	}
	copy(rf.raw[t.offs[i]:], val)
	rf.have[i] = true
	return nil
}

// SetRegs writes the registers that changed.
func (t *Target) SetRegs(tid int, regs target.Regs) error {
	delete(t.exp, tid)
	rf, err := t.fetch(tid)
	if err != nil {
		return err
	}
	for k, p := range gprFields(&regs) {
		name := gprNames[k]
		i, ok := t.byName[name]
		if !ok {
			continue
		}
		old, _ := t.value(tid, rf, name)
		size := t.regs[i].Size()
		val := make([]byte, size)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], *p)
		copy(val, b[:])
		if old != nil && bytes.Equal(old, val) {
			continue
		}
		if old == nil && *p == 0 {
			continue // unknown and not set: leave it
		}
		if err := t.write(tid, rf, i, val); err != nil {
			return err
		}
	}
	return nil
}

func (t *Target) hasAVX() bool { _, ok := t.byName["ymm0h"]; return ok }

// FPRegs assembles an XSAVE area from the stub's x87, SSE and AVX
// registers.
func (t *Target) FPRegs(tid int) ([]byte, error) {
	rf, err := t.fetch(tid)
	if err != nil {
		return nil, err
	}
	size, features := target.XsaveYMMH, uint64(3)
	if t.hasAVX() {
		size, features = target.XsaveAVXOK, 7
	}
	x := make([]byte, size)
	for _, r := range t.regs {
		off, n, ok := wire.XsaveSlot(r.Name)
		if !ok || off+n > len(x) {
			continue
		}
		if b, ok := t.value(tid, rf, r.Name); ok {
			copy(x[off:off+n], b)
		}
	}
	if b, ok := t.value(tid, rf, "ftag"); ok {
		// The stub has the full tag word; XSAVE keeps one bit per register.
		tag := le(b)
		var abridged byte
		for i := 0; i < 8; i++ {
			if (tag>>(2*i))&3 != 3 {
				abridged |= 1 << i
			}
		}
		x[target.FxFTW] = abridged
	}
	binary.LittleEndian.PutUint64(x[target.XsaveXCR0:], features)
	binary.LittleEndian.PutUint64(x[target.XsaveBV:], features)
	return x, nil
}

// SetFPRegs writes back the floating-point and vector registers that
// changed.
func (t *Target) SetFPRegs(tid int, x []byte) error {
	old, err := t.FPRegs(tid)
	if err != nil {
		return err
	}
	rf := t.cache[tid]
	for i, r := range t.regs {
		off, n, ok := wire.XsaveSlot(r.Name)
		if !ok || off+n > len(x) || off+n > len(old) || bytes.Equal(x[off:off+n], old[off:off+n]) {
			continue
		}
		val := make([]byte, r.Size())
		copy(val, x[off:off+n])
		if err := t.write(tid, rf, i, val); err != nil {
			return err
		}
	}
	if i, ok := t.byName["ftag"]; ok && len(x) > target.FxFTW && x[target.FxFTW] != old[target.FxFTW] {
		val := make([]byte, t.regs[i].Size())
		binary.LittleEndian.PutUint16(val, wire.X87TagWord(x))
		if err := t.write(tid, rf, i, val); err != nil {
			return err
		}
	}
	return nil
}

// chunk is the most memory one m or M packet moves.
func (t *Target) chunk() int { return min(t.c.PacketSize()/2-32, 0x4000) }

// ReadMemory reads what is readable of [addr, addr+len(buf)); the stub
// hides its breakpoints.
func (t *Target) ReadMemory(addr uint64, buf []byte) (int, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	t.cl()
	if t.cached(addr, buf) {
		return len(buf), nil
	}
	done := 0
	for done < len(buf) {
		at := addr + uint64(done)
		n := min(len(buf)-done, t.chunk())
		reply, err := t.request(fmt.Sprintf("m%x,%x", at, n))
		if toPage := int(pageSize - at%pageSize); err != nil && toPage < n && isStubError(err) {
			// lldb-server refuses a whole read that runs into an unmapped
			// page where gdbserver returns what it could: read up to the
			// page boundary, and the next round finds where memory ends.
			n = toPage
			reply, err = t.request(fmt.Sprintf("m%x,%x", at, n))
		}
		if err != nil {
			if done > 0 && t.lost == nil {
				return done, nil
			}
			return done, fmt.Errorf("reading memory at %#x: %w", addr+uint64(done), err)
		}
		b, err := wire.DecodeHex(string(reply))
		if err != nil || len(b) > n {
			return done, fmt.Errorf("reading memory at %#x: bad reply %q", addr+uint64(done), clip(reply))
		}
		copy(buf[done:], b)
		done += len(b)
		if len(b) < n {
			break
		}
	}
	return done, nil
}

func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

const pageSize = 4096

func isStubError(err error) bool {
	var se *wire.StubError
	return errors.As(err, &se)
}

// WriteMemory writes data; the stub keeps its breakpoints in place.
func (t *Target) WriteMemory(addr uint64, data []byte) (int, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	t.cl()
	t.mem = nil
	done := 0
	for done < len(data) {
		n := min(len(data)-done, t.chunk())
		a := addr + uint64(done)
		if _, err := t.request(fmt.Sprintf("M%x,%x:%s", a, n, wire.AppendHex(nil, data[done:done+n]))); err != nil {
			return done, fmt.Errorf("writing memory at %#x: %w", a, err)
		}
		done += n
	}
	return done, nil
}

// InsertBreakpoint asks the stub for a software breakpoint (Z0); they nest.
func (t *Target) InsertBreakpoint(addr uint64) error {
	if err := t.check(); err != nil {
		return err
	}
	if t.bps[addr] == 0 && !t.upstream[addr] && !t.accepted[addr] {
		if _, err := t.request(fmt.Sprintf("Z0,%x,1", addr)); err != nil {
			return fmt.Errorf("inserting a breakpoint at %#x: %w", addr, err)
		}
		t.upstream[addr], t.accepted[addr] = true, true
	}
	t.bps[addr]++
	return nil
}

// RemoveBreakpoint undoes one InsertBreakpoint.
func (t *Target) RemoveBreakpoint(addr uint64) error {
	n := t.bps[addr]
	if n == 0 {
		return fmt.Errorf("no breakpoint at %#x", addr)
	}
	if n > 1 {
		t.bps[addr] = n - 1
		return nil
	}
	delete(t.bps, addr)
	return t.check()
}

// syncBreakpoints tells the stub what changed since it last ran: removals
// first, then insertions, in one pipelined batch.
func (t *Target) syncBreakpoints() error {
	var pkts []string
	var addrs []uint64
	for addr := range t.upstream {
		if t.bps[addr] == 0 {
			pkts, addrs = append(pkts, fmt.Sprintf("z0,%x,1", addr)), append(addrs, addr)
		}
	}
	removals := len(pkts)
	for addr, n := range t.bps {
		if n > 0 && !t.upstream[addr] {
			pkts, addrs = append(pkts, fmt.Sprintf("Z0,%x,1", addr)), append(addrs, addr)
		}
	}
	if len(pkts) == 0 {
		return nil
	}
	replies, err := t.cl().Pipeline(pkts...)
	if len(replies) != len(pkts) {
		if err == nil {
			err = errors.New("short reply")
		}
		return t.fail(fmt.Errorf("updating breakpoints: %w", err))
	}
	for i, r := range replies {
		ok := string(r) == "OK"
		switch {
		case i < removals && ok:
			delete(t.upstream, addrs[i])
		case i < removals:
			slog.Warn("removing a breakpoint", "addr", addrs[i], "reply", string(r))
			delete(t.upstream, addrs[i])
		case ok:
			t.upstream[addrs[i]] = true
		default:
			return fmt.Errorf("inserting a breakpoint at %#x: %q", addrs[i], r)
		}
	}
	return nil
}

// BreakpointAt reports whether a breakpoint of ours is at addr.
func (t *Target) BreakpointAt(addr uint64) bool { return t.bps[addr] > 0 }

// invalidate forgets what a resumption may change. The thread list stays
// valid across a single-step of one thread with the others stopped: only
// threads running freely create threads unnoticed (a stepped thread that
// ends comes back as "N").
func (t *Target) invalidate(threads bool) {
	t.cl()
	t.mem = nil
	clear(t.cache)
	clear(t.exp)
	t.hg = 0
	if threads && !t.threadEvents {
		t.fresh = false
	}
}

// StopRegs returns the PC, stack and frame pointers of a stopped thread
// without reading its registers when the stub expedited them.
func (t *Target) StopRegs(tid int) (pc, sp, fp uint64, ok bool) {
	if rf := t.cache[tid]; rf != nil {
		r, err := t.Regs(tid)
		return r.Rip, r.Rsp, r.Rbp, err == nil
	}
	if e, ok := t.exp[tid]; ok {
		return e[0], e[1], e[2], true
	}
	return 0, 0, 0, false
}

// Resume sends one vCont: per-thread actions, then the default.
func (t *Target) Resume(actions map[int]target.Action, def target.Action) error {
	if err := t.check(); err != nil {
		return err
	}
	t.acts, t.def = actions, def
	if err := t.syncBreakpoints(); err != nil {
		return err
	}
	return t.resume()
}

func (t *Target) resume() error {
	var b strings.Builder
	b.WriteString("vCont")
	clear(t.stepping)
	any := false
	for _, tid := range t.threads {
		a, ok := t.acts[tid]
		if !ok || a.Kind == target.Stay {
			continue
		}
		any = true
		kind := byte('c')
		if a.Kind == target.Step {
			kind = 's'
			t.stepping[tid] = true
		}
		if a.Sig != 0 {
			fmt.Fprintf(&b, ";%c%02x:%s", kind-'a'+'A', wire.GDBSignal(a.Sig), t.threadID(tid))
		} else {
			fmt.Fprintf(&b, ";%c:%s", kind, t.threadID(tid))
		}
	}
	free := len(t.stepping) == 0
	if t.def.Kind == target.Continue {
		any, free = true, true
		b.WriteString(";c")
	}
	if !any {
		return errors.New("resume: no thread to run")
	}
	t.invalidate(free || len(t.stepping) > 1)
	t.running.Store(true)
	if err := t.cl().Send(b.String()); err != nil {
		t.running.Store(false)
		return t.fail(err)
	}
	return nil
}

// WatchClient makes every wait for the stub also watch fd (the proxy's
// client), calling onReady on the waiting goroutine when it is readable,
// until restore is called: a ^C is then read where the stub is waited
// for, with no goroutine watching the client.
func (t *Target) WatchClient(fd int, onReady func()) (restore func()) {
	if t.fd == nil {
		return func() {}
	}
	t.fd.WatchWhileWaiting(fd, onReady)
	return func() { t.fd.WatchWhileWaiting(-1, nil) }
}

// Lacks reports whether the upstream has no register for a general
// register the target interface carries (lldb-server's fs_base), so the
// proxy reports it unavailable, not zero.
func (t *Target) Lacks(name string) bool { return t.lacks[name] }

// TeeConsole sends the stub's console output (the program's output, for
// lldb-server) to f as well as where it went, until the returned function
// undoes it.
func (t *Target) TeeConsole(f func(text string)) (restore func()) {
	old := t.c.Console
	t.c.Console = func(text string) {
		f(text)
		if old != nil {
			old(text)
		}
	}
	return func() { t.c.Console = old }
}

// Interrupt asks the stub to stop the running target (^C). Safe from any
// goroutine.
func (t *Target) Interrupt() {
	if !t.running.Load() {
		return
	}
	t.intr.Store(true)
	if err := t.c.Interrupt(); err != nil {
		slog.Debug("interrupting the upstream", "err", err)
	}
}

// Wait reads stop replies until one is an event for the core. Thread
// creation and the end of a thread while others run are absorbed: the
// threads are resumed as they were.
func (t *Target) Wait() (target.Event, error) {
	if err := t.check(); err != nil {
		return target.Event{}, err
	}
	for {
		reply, err := t.cl().Receive(0)
		if err != nil {
			return target.Event{}, t.fail(err)
		}
		slog.Debug("upstream ->", "packet", clip(reply))
		st, err := wire.ParseStopReply(reply)
		if err != nil {
			if len(reply) > 0 && reply[0] == 'E' {
				t.running.Store(false)
				return target.Event{}, fmt.Errorf("the upstream refused to resume: %s", reply)
			}
			slog.Warn("ignoring an unexpected packet from the upstream", "packet", clip(reply))
			continue
		}
		t.running.Store(false)
		ev, again, err := t.event(st)
		if err != nil {
			return ev, err
		}
		if again {
			if err := t.resume(); err != nil {
				return target.Event{}, err
			}
			continue
		}
		return ev, nil
	}
}

// event turns a stop reply into an event, or says to resume again.
func (t *Target) event(st wire.StopReply) (target.Event, bool, error) {
	switch st.Kind {
	case 'W', 'X':
		t.exited = true
		t.threads = nil
		if st.Kind == 'W' {
			return target.Event{Kind: target.EventExited, Tid: t.pid, Code: st.Code}, false, nil
		}
		return target.Event{Kind: target.EventSignaled, Tid: t.pid, Sig: wire.LinuxSignal(int(st.Signal))}, false, nil
	case 'N':
		return target.Event{Kind: target.EventThreadExited, Tid: t.firstRunning()}, false, nil
	case 'w':
		tid := int(st.Thread.Tid)
		t.dropThread(tid)
		if t.othersResumed(tid) {
			delete(t.acts, tid)
			return target.Event{}, true, nil
		}
		return target.Event{Kind: target.EventThreadExited, Tid: tid}, false, nil
	}
	tid := int(st.Thread.Tid)
	if !st.HasThread || tid <= 0 {
		tid = t.firstRunning()
	}
	if st.HasThread && st.Thread.Pid > 0 && t.pid == 0 {
		t.pid = int(st.Thread.Pid)
	}
	t.addThread(tid)
	sig := wire.LinuxSignal(int(st.Signal))
	switch st.Reason {
	case "create":
		t.fresh = false
		if err := t.refreshThreads(); err != nil {
			return target.Event{}, false, err
		}
		return target.Event{}, true, nil
	case "exec":
		t.execReset()
		return target.Event{Kind: target.EventExec, Tid: t.pid, Sig: int(unix.SIGTRAP)}, false, nil
	}
	if len(st.Regs) > 0 {
		var e [3]uint64
		n := 0
		for i, num := range t.regnum {
			if b, ok := st.Regs[num]; ok && num >= 0 && len(b) >= 8 {
				e[i] = le(b)
				n++
			}
		}
		if n == 3 {
			t.exp[tid] = e
		}
	}
	ev := target.Event{Kind: target.EventStop, Tid: tid, Sig: sig}
	if t.intr.Load() && (sig == int(unix.SIGINT) || sig == int(unix.SIGSTOP)) {
		t.intr.Store(false)
		ev.Async = true
		return ev, false, nil
	}
	if sig != int(unix.SIGTRAP) {
		return ev, false, nil
	}
	pc, pcOK := t.expeditedPC(st)
	switch st.Reason {
	case "swbreak":
		ev.Trap, ev.Addr = target.TrapBreakpoint, pc
		if !pcOK {
			r, err := t.Regs(tid)
			if err != nil {
				return ev, false, err
			}
			ev.Addr = r.Rip
		}
		return ev, false, nil
	case "hwbreak":
		ev.Trap, ev.Addr = target.TrapWatch, pc
		return ev, false, nil
	case "watch", "rwatch", "awatch":
		ev.Trap, ev.Addr = target.TrapWatch, st.Addr
		return ev, false, nil
	}
	if t.stepping[tid] {
		ev.Trap = target.TrapStep
		return ev, false, nil
	}
	if !pcOK {
		r, err := t.Regs(tid)
		if err != nil {
			return ev, false, err
		}
		pc = r.Rip
	}
	if !t.swbreak && t.bps[pc] > 0 {
		// A stub that does not say swbreak (qemu) stops at the
		// breakpoint's address.
		ev.Trap, ev.Addr = target.TrapBreakpoint, pc
		return ev, false, nil
	}
	ev.Trap = target.TrapOther
	return ev, false, nil
}

func (t *Target) expeditedPC(st wire.StopReply) (uint64, bool) {
	if t.pcReg < 0 {
		return 0, false
	}
	b, ok := st.Regs[t.regs[t.pcReg].Regnum]
	if !ok || len(b) < 8 {
		return 0, false
	}
	return le(b), true
}

func (t *Target) firstRunning() int {
	for _, tid := range t.threads {
		if a, ok := t.acts[tid]; ok && a.Kind != target.Stay {
			return tid
		}
	}
	if len(t.threads) > 0 {
		return t.threads[0]
	}
	return t.pid
}

// othersResumed reports whether a thread other than tid was running.
func (t *Target) othersResumed(tid int) bool {
	if t.def.Kind == target.Continue && len(t.threads) > 0 {
		return true
	}
	for th, a := range t.acts {
		if th != tid && a.Kind != target.Stay {
			return true
		}
	}
	return false
}

func (t *Target) addThread(tid int) {
	for _, th := range t.threads {
		if th == tid {
			return
		}
	}
	t.threads = append(t.threads, tid)
}

func (t *Target) dropThread(tid int) {
	for i, th := range t.threads {
		if th == tid {
			t.threads = append(t.threads[:i], t.threads[i+1:]...)
			break
		}
	}
	delete(t.cache, tid)
	delete(t.rseq.tp, tid) // the tid may be reused by another thread
}

// execReset forgets the old program: breakpoints went with it.
func (t *Target) execReset() {
	clear(t.bps)
	t.auxv = nil
	t.files.reset()
	t.rseq = rseqSymbols{}
	t.fresh = false
	if doc, err := t.cl().ReadXfer("exec-file", fmt.Sprintf("%x", t.pid)); err == nil && len(doc) > 0 {
		t.exe = string(doc)
	}
	t.refreshThreads()
}

// SetDebugReg is not available through the protocol: watchpoints go to the
// stub as Z2-Z4 packets instead.
func (t *Target) SetDebugReg(n int, value uint64) error {
	return errors.New("debug registers are the upstream stub's: use its Z1-Z4 packets")
}

// Auxv reads the auxiliary vector (qXfer:auxv:read), once per program.
func (t *Target) Auxv() ([]byte, error) {
	if t.auxv != nil {
		return t.auxv, nil
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	b, err := t.cl().ReadXfer("auxv", "")
	if err = t.fail(err); err != nil {
		return nil, fmt.Errorf("reading auxv from the upstream: %w", err)
	}
	t.auxv = b
	return b, nil
}

// Maps reads /proc/PID/maps through vFile.
func (t *Target) Maps() ([]target.Mapping, error) {
	f, err := t.openRemote(fmt.Sprintf("/proc/%d/maps", t.pid))
	if err != nil {
		return nil, fmt.Errorf("reading the memory map: %w", err)
	}
	var data []byte
	for len(data) < 16<<20 {
		b, err := t.c.FilePread(f, t.c.PacketSize(), int64(len(data)))
		if err != nil {
			t.cl().FileClose(f)
			return nil, fmt.Errorf("reading the memory map: %w", t.fail(err))
		}
		if len(b) == 0 {
			break
		}
		data = append(data, b...)
	}
	t.cl().FileClose(f)
	var out []target.Mapping
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		var m target.Mapping
		if _, err := fmt.Sscanf(f[0], "%x-%x", &m.Start, &m.End); err != nil {
			continue
		}
		m.Perms = f[1]
		fmt.Sscanf(f[2], "%x", &m.Offset)
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, nil
}

// Kill ends the process through the stub.
func (t *Target) Kill() error {
	if err := t.check(); err != nil {
		if errors.Is(err, target.ErrExited) {
			return nil
		}
		return err
	}
	t.exited = true
	if t.multiprocess {
		if _, err := t.request(fmt.Sprintf("vKill;%x", t.pid)); err == nil {
			return nil
		}
	}
	// k has no reply; the stub may close the connection.
	if err := t.cl().Send("k"); err != nil {
		return t.fail(err)
	}
	return nil
}

// Detach removes our breakpoints and lets the process run on.
func (t *Target) Detach() error {
	if err := t.check(); err != nil {
		return err
	}
	clear(t.bps)
	if err := t.syncBreakpoints(); err != nil {
		slog.Warn("removing breakpoints before detaching", "err", err)
	}
	t.exited = true
	pkt := "D"
	if t.multiprocess {
		pkt = fmt.Sprintf("D;%x", t.pid)
	}
	if _, err := t.request(pkt); err != nil {
		return fmt.Errorf("detaching: %w", err)
	}
	return nil
}

// Close ends the connection and, for a stub started as a command, waits
// for it to exit (killing it if it lingers).
func (t *Target) Close() {
	t.closeRW()
	if t.cmd == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		t.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.cmd.Process.Kill()
		<-done
	}
}

// Forward passes a packet the proxy does not interpret to the stub and
// returns its answer unchanged. What the stub did may change the target,
// so cached registers and threads are dropped.
func (t *Target) Forward(pkt []byte) ([][]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	out, err := t.cl().Forward(pkt)
	t.invalidate(true)
	return out, t.fail(err)
}

// ForgetStep has nothing to drop: the stub keeps the other threads' stops
// and reports one stop per resumption.
func (t *Target) ForgetStep(tid int) {}

var _ target.Target = (*Target)(nil)
var _ target.FileReader = (*Target)(nil)
var _ target.StopRegs = (*Target)(nil)
var (
	_ target.LibraryLister   = (*Target)(nil)
	_ target.StackPrefetcher = (*Target)(nil)
	_ target.RseqNoter       = (*Target)(nil)
	_ target.ConsoleTee      = (*Target)(nil)
	_ target.ClientWatcher   = (*Target)(nil)
	_ target.RegisterGaps    = (*Target)(nil)
)

// Libraries is the upstream's qXfer:libraries-svr4 document, when it has
// one.
func (t *Target) Libraries() ([]byte, error) {
	if !t.c.Supports("qXfer:libraries-svr4:read") {
		return nil, wire.ErrUnsupported
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	doc, err := t.cl().ReadXfer("libraries-svr4", "")
	return doc, t.fail(err)
}

// memRange is target memory read ahead.
type memRange struct {
	addr uint64
	data []byte
}

// cl is the client, once any read sent ahead has been answered.
func (t *Target) cl() *wire.Client {
	pending := t.pending
	t.pending = nil
	for _, p := range pending {
		reply, err := t.c.Receive(t.c.Timeout)
		if err != nil {
			t.fail(err)
			break
		}
		if b, derr := wire.DecodeHex(string(reply)); derr == nil && len(b) > 0 {
			t.mem = append(t.mem, memRange{addr: p.addr, data: b})
		}
	}
	return t.c
}

// PrefetchStack reads the top of a stopped thread's stack ahead, while the
// proxy's client is busy with the stop reply: gdb reads those bytes right
// after every stop to find the frame, and the answer is then already here.
func (t *Target) PrefetchStack(tid int) {
	e, ok := t.exp[tid]
	if !ok || t.pending != nil || !t.c.NoAck() || t.check() != nil {
		return
	}
	// gdb reads at the stack pointer, and at the frame pointer when the
	// frame has one: both are sent at once, one round trip.
	const n, near = 64, 512
	sp, fp := e[1], e[2]
	reads := []memRange{{addr: sp, data: make([]byte, n)}}
	switch {
	case fp >= sp && fp+n-sp <= near:
		// One read covers both: the stub answers one request, not two.
		reads[0].data = make([]byte, fp+n-sp)
	case fp != 0:
		reads = append(reads, memRange{addr: fp, data: make([]byte, n)})
	}
	for _, r := range reads {
		if err := t.c.Send(fmt.Sprintf("m%x,%x", r.addr, len(r.data))); err != nil {
			t.fail(err)
			return
		}
		t.pending = append(t.pending, memRange{addr: r.addr})
	}
}

// cached answers a read from memory read ahead.
func (t *Target) cached(addr uint64, buf []byte) bool {
	for _, m := range t.mem {
		if addr >= m.addr && addr-m.addr+uint64(len(buf)) <= uint64(len(m.data)) {
			copy(buf, m.data[addr-m.addr:])
			return true
		}
	}
	return false
}
