package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
)

// readVDSO reads this process's vDSO: AT_SYSINFO_EHDR from auxv, its extent
// from the maps, its bytes from /proc/self/mem.
func readVDSO(t testing.TB) ([]byte, uint64) {
	t.Helper()
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		t.Skipf("no auxv: %v", err)
	}
	var base uint64
	for i := 0; i+16 <= len(auxv); i += 16 {
		if binary.LittleEndian.Uint64(auxv[i:]) == 33 { // AT_SYSINFO_EHDR
			base = binary.LittleEndian.Uint64(auxv[i+8:])
		}
	}
	if base == 0 {
		t.Skip("no vDSO")
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	var end uint64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		if !strings.HasSuffix(sc.Text(), "[vdso]") {
			continue
		}
		lo, hi, _ := strings.Cut(strings.Fields(sc.Text())[0], "-")
		l, _ := strconv.ParseUint(lo, 16, 64)
		h, _ := strconv.ParseUint(hi, 16, 64)
		if l == base {
			end = h
		}
	}
	if end == 0 {
		t.Fatalf("vDSO at %#x not in the maps", base)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Skipf("/proc/self/mem: %v", err)
	}
	defer mem.Close()
	img := make([]byte, end-base)
	if _, err := mem.ReadAt(img, int64(base)); err != nil {
		t.Fatalf("reading the vDSO: %v", err)
	}
	return img, base
}

func vdsoSym(t *testing.T, img []byte, base uint64, names ...string) uint64 {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := firstLoad(f)
	syms, _ := f.DynamicSymbols()
	for _, n := range names {
		for _, s := range syms {
			if s.Name == n {
				return s.Value + base - first
			}
		}
	}
	t.Fatalf("no %v in the vDSO", names)
	return 0
}

func memReader(segs map[uint64][]byte) target.MemReader {
	return func(addr uint64, buf []byte) (int, error) {
		for lo, data := range segs {
			if addr >= lo && addr-lo < uint64(len(data)) {
				return copy(buf, data[addr-lo:]), nil
			}
		}
		return 0, os.ErrNotExist
	}
}

func TestVDSO(t *testing.T) {
	img, base := readVDSO(t)
	entry := vdsoSym(t, img, base, "__vdso_clock_gettime", "clock_gettime")
	const rsp = 0x7000_1000
	stack := make([]byte, 64)
	binary.LittleEndian.PutUint64(stack, 0x40_1234)
	read := memReader(map[uint64][]byte{base: img, rsp: stack})
	regs := target.Regs{Rip: entry, Rsp: rsp}

	check := func(t *testing.T, u *Unwinder, synth bool) {
		t.Helper()
		f := Frame{PC: entry, Regs: regs}
		r, ok := u.rowAt(&f, read)
		if !ok {
			t.Fatal("no row at clock_gettime's entry")
		}
		if r.cfa.Rule != frame.RuleCFA || r.cfa.Reg != dwRSP || r.cfa.Offset != 8 {
			t.Errorf("CFA rule %+v, want rsp+8", r.cfa)
		}
		if ra := r.regs[dwRIP]; ra.Rule != frame.RuleOffset || ra.Offset != -8 {
			t.Errorf("return address rule %+v, want cfa-8", ra)
		}
		if r.synth != synth {
			t.Errorf("synthesized %v, want %v", r.synth, synth)
		}
		frames, err := u.Frames(regs, read, 8)
		if err != nil || len(frames) < 2 || frames[1].PC != 0x40_1234 || frames[0].CFA != rsp+8 {
			t.Errorf("frames %+v, %v", frames, err)
		}
	}
	t.Run("cfi", func(t *testing.T) {
		u := New()
		if err := u.AddImage("[vdso]", img, base); err != nil {
			t.Fatal(err)
		}
		check(t, u, false)
	})
	t.Run("short-image", func(t *testing.T) {
		// Only the first page: no section headers, CFI through
		// PT_GNU_EH_FRAME.
		u := New()
		short := img[:4096]
		if _, err := elf.NewFile(bytes.NewReader(short)); err == nil {
			t.Log("the first page holds the section headers too")
		}
		if err := u.AddImage("[vdso]", short, base); err != nil {
			t.Fatal(err)
		}
		if fde, _ := u.fde(entry); fde == nil {
			t.Fatal("no FDE for clock_gettime from the program headers")
		}
		check(t, u, false)
	})
	t.Run("synthesized", func(t *testing.T) {
		u := New()
		if err := u.AddImage("[vdso]", img, base); err != nil {
			t.Fatal(err)
		}
		u.objs[0].fdes = nil // as a vDSO built without CFI
		check(t, u, true)
	})
}

// ruleAgree compares a synthesized row with CFI where both say something
// comparable: the same CFA register, and saved registers both on the stack.
func ruleAgree(cfi, syn row) (comparable, agree bool) {
	if cfi.cfa.Rule != frame.RuleCFA || cfi.cfa.Reg != syn.cfa.Reg {
		return false, true
	}
	if cfi.cfa.Offset != syn.cfa.Offset {
		return true, false
	}
	// Two rules can both be right: __vfork pops its return address into
	// rdi and pushes it back, and its CFI names rdi where the stack slot
	// holds the same value. Only two stack slots for one register conflict.
	for n := range uint64(nDw) {
		a, b := cfi.regs[n], syn.regs[n]
		if a.Rule == frame.RuleOffset && b.Rule == frame.RuleOffset && a.Offset != b.Offset {
			return true, false
		}
	}
	return true, true
}

// crossCheck synthesizes the row at every instruction of the given
// functions without CFI and compares it with the CFI.
func crossCheck(t *testing.T, withCFI, without *Unwinder, syms []symbol, read target.MemReader) {
	t.Helper()
	var checked, synthesized, disagree int
	for _, s := range syms {
		for pc := s.start; pc < s.end; {
			var code [16]byte
			n, _ := read(pc, code[:])
			in, err := x86.Decode(code[:n], pc)
			if err != nil || in.Len == 0 {
				break
			}
			fde, bias := withCFI.fde(pc)
			if fde == nil || isPadding(in) {
				// Padding between functions is never executed: any row
				// is as good as another there.
				pc = in.Next()
				continue
			}
			cfi, err := cfiRow(fde, pc, bias)
			if err != nil {
				t.Fatalf("%s+%#x: %v", s.name, pc-s.start, err)
			}
			checked++
			for _, how := range []string{"entry", "forward"} {
				var syn row
				var ok bool
				if how == "entry" {
					syn, ok = without.synthFromEntry(s.start, pc, s.end, read)
					if pc == s.start {
						syn, ok = entryRow(), true
					}
				} else {
					syn, ok = without.synthForward(pc, read)
				}
				if !ok {
					continue
				}
				synthesized++
				if comparable, agree := ruleAgree(cfi, syn); comparable && !agree {
					disagree++
					if disagree < 10 {
						t.Errorf("%s+%#x (%s): synthesized cfa %+v ra %+v regs %v; CFI cfa %+v regs %v",
							s.name, pc-s.start, how, syn.cfa, syn.regs[dwRIP], syn.regs, cfi.cfa, cfi.regs)
					}
				}
			}
			pc = in.Next()
		}
	}
	t.Logf("%d instructions with CFI, %d synthesized rows, %d disagree", checked, synthesized, disagree)
	if synthesized == 0 {
		t.Error("nothing synthesized")
	}
}

// TestSynthMatchesCFIVDSO: every row synthesized for the vDSO, from the
// function entry and forward to the exit, agrees with its CFI.
func TestSynthMatchesCFIVDSO(t *testing.T) {
	img, base := readVDSO(t)
	with, without := New(), New()
	if err := with.AddImage("[vdso]", img, base); err != nil {
		t.Fatal(err)
	}
	if err := without.AddImage("[vdso]", img, base); err != nil {
		t.Fatal(err)
	}
	without.objs[0].fdes = nil
	crossCheck(t, with, without, with.objs[0].syms, memReader(map[uint64][]byte{base: img}))
}

// TestSynthMatchesCFILibc does the same on a sample of libc's functions.
func TestSynthMatchesCFILibc(t *testing.T) {
	needFile(t, libc)
	with, without := loaded(t, libc), loaded(t, libc)
	without.objs[0].fdes = nil
	im := openImage(t, libc)
	var sample []symbol
	syms := with.objs[0].syms
	n := 400
	if testing.Short() {
		n = 40
	}
	step := max(1, len(syms)/n)
	for i := 0; i < len(syms); i += step {
		if s := syms[i]; s.end-s.start < 800 {
			sample = append(sample, s)
		}
	}
	crossCheck(t, with, without, sample, im.reader(0, nil))
}

// TestRbpChain: with no CFI and no code to decode, a frame-pointer chain
// that looks like a stack is followed, and one that does not is refused.
func TestRbpChain(t *testing.T) {
	const lo = 0x7000_0000
	stack := make([]byte, 256)
	put := func(addr, v uint64) { binary.LittleEndian.PutUint64(stack[addr-lo:], v) }
	put(lo+0x40, lo+0x80) // frame 0: saved rbp
	put(lo+0x48, 0x40_1111)
	put(lo+0x80, 0) // frame 1: end of the chain
	put(lo+0x88, 0x40_2222)
	read := memReader(map[uint64][]byte{lo: stack})
	u := New()
	frames, err := u.Frames(target.Regs{Rip: 0xdead_0000, Rsp: lo + 0x10, Rbp: lo + 0x40}, read, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 3 || frames[1].PC != 0x40_1111 || frames[2].PC != 0x40_2222 {
		t.Fatalf("frames %+v", frames)
	}
	if !frames[0].Synthesized || frames[0].CFA != lo+0x50 || frames[1].Regs.Rbp != lo+0x80 {
		t.Errorf("frame 0 %+v", frames[0])
	}
	// rbp below rsp is not a frame pointer.
	frames, _ = u.Frames(target.Regs{Rip: 0xdead_0000, Rsp: lo + 0x50, Rbp: lo + 0x40}, read, 8)
	if len(frames) != 1 {
		t.Errorf("followed an rbp below rsp: %+v", frames)
	}
}

// asmUnwinder maps code at base with a symbol covering it and nothing else.
func asmUnwinder(code []byte, base uint64) *Unwinder {
	u := New()
	u.objs = []*object{{name: "code", lo: base, hi: base + uint64(len(code)),
		syms: []symbol{{start: base, end: base + uint64(len(code)), name: "f"}}}}
	return u
}

// TestSynthForwardShapes checks hand-assembled stubs.
func TestSynthForwardShapes(t *testing.T) {
	const base = 0x1000
	cases := []struct {
		name string
		code []byte
		ok   bool
		cfa  int64 // rsp + cfa
		rbx  frame.DWRule
	}{
		{"ret", []byte{0xc3}, true, 8, frame.DWRule{Rule: frame.RuleSameVal}},
		{"pop-ret", []byte{0x5b, 0xc3}, true, 16, frame.DWRule{Rule: frame.RuleOffset, Offset: -16}},
		{"add-ret", []byte{0x48, 0x83, 0xc4, 0x18, 0xc3}, true, 32, frame.DWRule{Rule: frame.RuleSameVal}},
		{"push-pop-ret", []byte{0x53, 0x48, 0x31, 0xdb, 0x5b, 0xc3}, true, 8, frame.DWRule{Rule: frame.RuleSameVal}},
		// mov %rsp,%rbp; sub $32,%rsp; leave; ret: leave pops [rsp] into
		// rbp, so the return address is one slot higher.
		{"leave-ret", []byte{0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x20, 0xc9, 0xc3}, true, 16, frame.DWRule{Rule: frame.RuleSameVal}},
		{"jmp-back-loop", []byte{0xeb, 0xfe}, false, 0, frame.DWRule{}},
		{"indirect", []byte{0xff, 0xe0}, false, 0, frame.DWRule{}},
		{"align", []byte{0x48, 0x83, 0xe4, 0xf0, 0xc3}, false, 0, frame.DWRule{}},
		{"push-ret", []byte{0x50, 0xc3}, false, 0, frame.DWRule{}},
		{"branches-agree", []byte{0x74, 0x02, 0x5b, 0xc3, 0x5b, 0xc3}, true, 16, frame.DWRule{Rule: frame.RuleOffset, Offset: -16}},
		{"branches-differ", []byte{0x74, 0x01, 0x5b, 0xc3}, false, 0, frame.DWRule{}},
		{"mov-rbx-clobber", []byte{0x31, 0xdb, 0xc3}, true, 8, frame.DWRule{Rule: frame.RuleUndefined}},
		{"ud2", []byte{0x0f, 0x0b}, false, 0, frame.DWRule{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := asmUnwinder(c.code, base)
			r, ok := u.synthForward(base, memReader(map[uint64][]byte{base: c.code}))
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (row %+v)", ok, c.ok, r)
			}
			if !ok {
				return
			}
			if r.cfa.Reg != dwRSP || r.cfa.Offset != c.cfa {
				t.Errorf("cfa %+v, want rsp+%d", r.cfa, c.cfa)
			}
			rbx, has := r.regs[3]
			if !has {
				rbx = frame.DWRule{Rule: frame.RuleSameVal}
			}
			if !sameRule(rbx, c.rbx) {
				t.Errorf("rbx %+v, want %+v", rbx, c.rbx)
			}
		})
	}
}
