package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/rseqdbg/rseqdbg/target"
)

const libc = "/lib/x86_64-linux-gnu/libc.so.6"

func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s: %v", path, err)
	}
}

// rawFDEs parses .eh_frame with delve and nothing else: the upstream
// behaviour the workarounds are about.
func rawFDEs(t *testing.T, path string) frame.FrameDescriptionEntries {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Section(".eh_frame")
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	fdes, err := frame.Parse(data, binary.LittleEndian, 0, 8, s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return fdes
}

func loaded(t *testing.T, path string) *Unwinder {
	t.Helper()
	u := New()
	if err := u.AddObject(path, 0); err != nil {
		t.Fatalf("AddObject(%s): %v", path, err)
	}
	return u
}

// cfaStep is one instruction of a CFA program with the location at which
// it takes effect.
type cfaStep struct {
	loc uint64
	in  cfaInsn
}

func cfaSteps(prog []byte, begin uint64, caf uint64) []cfaStep {
	var out []cfaStep
	loc := begin
	for i := 0; i < len(prog); {
		in, ok := decodeCFA(prog[i:])
		if !ok {
			break
		}
		b := prog[i:]
		switch in.op {
		case cfaAdvanceLoc:
			loc += uint64(b[0]&0x3f) * caf
		case cfaAdvanceLoc1:
			loc += uint64(b[1]) * caf
		case cfaAdvanceLoc2:
			loc += uint64(binary.LittleEndian.Uint16(b[1:])) * caf
		case cfaAdvanceLoc4:
			loc += uint64(binary.LittleEndian.Uint32(b[1:])) * caf
		}
		out = append(out, cfaStep{loc, in})
		i += in.n
	}
	return out
}

// TestFDEOrder: frame.Parse returns FDEs in section order and
// FrameDescriptionEntries.FDEForPC binary-searches them, so on libc, whose
// .eh_frame is not sorted by address, delve misses FDEs that exist. The
// unwinder sorts them.
func TestFDEOrder(t *testing.T) {
	needFile(t, libc)
	raw := rawFDEs(t, libc)
	u := loaded(t, libc)
	upstreamMisses := 0
	for _, fde := range raw {
		if _, err := raw.FDEForPC(fde.Begin()); err != nil {
			upstreamMisses++
		}
		if fde.End() == fde.Begin() {
			continue
		}
		if got, _ := u.fde(fde.Begin()); got == nil || !got.Cover(fde.Begin()) {
			t.Errorf("no FDE found for %#x", fde.Begin())
		}
	}
	if upstreamMisses == 0 {
		t.Logf("delve's FDEForPC found every FDE of an unsorted libc: upstream may have fixed the ordering trap")
	}
	t.Logf("delve FDEForPC on Parse output misses %d of %d FDEs of libc", upstreamMisses, len(raw))
}

var calleeSaved = []uint64{3, 6, 12, 13, 14, 15, dwRIP}

// TestRestore: delve's DW_CFA_restore reads FrameContext.initialRegs, which
// is never filled, so every restored register comes out undefined (glibc's
// epilogues restore rbx, rbp and r12-r15 after remember_state). After the
// rewrite a restored register follows the CIE's rule, which for these
// registers is "same value".
func TestRestore(t *testing.T) {
	needFile(t, libc)
	raw := rawFDEs(t, libc)
	u := loaded(t, libc)
	restores, upstreamUndefined := 0, 0
	for _, fde := range raw {
		steps := cfaSteps(fde.Instructions, fde.Begin(), fde.CIE.CodeAlignmentFactor)
		explicit := map[uint64]bool{}
		for _, s := range steps {
			if s.in.op == cfaUndefined {
				explicit[s.in.reg] = true
			}
		}
		for i, s := range steps {
			if s.in.op != cfaRestore && s.in.op != cfaRestoreExt {
				continue
			}
			// Skip restores overridden at the same location.
			overridden := false
			for _, later := range steps[i+1:] {
				if later.loc != s.loc {
					break
				}
				if later.in.hasReg && later.in.reg == s.in.reg {
					overridden = true
				}
			}
			if overridden || s.loc >= fde.End() {
				continue
			}
			restores++
			if delveSafe(steps) {
				if ctx, err := fde.EstablishFrame(s.loc); err == nil && ctx.Regs[s.in.reg].Rule == frame.RuleUndefined {
					upstreamUndefined++
				}
			}
			got, bias := u.fde(s.loc)
			if got == nil {
				t.Fatalf("no FDE at %#x", s.loc)
			}
			r, err := cfiRow(got, s.loc, bias)
			if err != nil {
				t.Fatalf("row at %#x: %v", s.loc, err)
			}
			for _, reg := range calleeSaved {
				if rule, ok := r.regs[reg]; ok && rule.Rule == frame.RuleUndefined && !explicit[reg] {
					t.Errorf("at %#x (after restore of r%d) r%d is undefined", s.loc, s.in.reg, reg)
				}
			}
			if rule, ok := r.regs[s.in.reg]; ok && rule.Rule != frame.RuleSameVal {
				t.Errorf("at %#x r%d restored to rule %v, want the CIE's (same value)", s.loc, s.in.reg, rule.Rule)
			}
		}
	}
	if restores < 100 {
		t.Fatalf("only %d restores in libc: test is not exercising anything", restores)
	}
	t.Logf("%d restores in libc; delve alone reports %d of them as undefined", restores, upstreamUndefined)
	if upstreamUndefined == 0 {
		t.Logf("delve no longer turns DW_CFA_restore into undefined: the rewrite may be unnecessary")
	}
}

// delveSafe reports whether delve's interpreter can run a program: on an
// opcode it does not know it records an error and then spins forever in
// ExecuteUntilPC (executeDwarfInstruction returns early without consuming
// input), so the tests must not hand it one.
func delveSafe(steps []cfaStep) bool {
	for _, s := range steps {
		if s.in.op == cfaGNUArgsSize || s.in.op == cfaGNUNegOff {
			return false
		}
	}
	return true
}

// TestGNUArgsSize: delve has no entry for DW_CFA_GNU_args_size (0x2e); it
// sets "unexpected DWARF CFA opcode" and then never returns (see delveSafe).
// libc has a few; the rewrite drops the opcode, which carries no rule.
func TestGNUArgsSize(t *testing.T) {
	needFile(t, libc)
	raw := rawFDEs(t, libc)
	u := loaded(t, libc)
	found := 0
	for _, fde := range raw {
		steps := cfaSteps(fde.Instructions, fde.Begin(), fde.CIE.CodeAlignmentFactor)
		has := false
		for _, s := range steps {
			if s.in.op == cfaGNUArgsSize {
				has = true
			}
		}
		if !has {
			continue
		}
		found++
		for _, s := range steps {
			if s.loc >= fde.End() {
				continue
			}
			got, bias := u.fde(s.loc)
			if got == nil {
				t.Fatalf("FDE at %#x dropped", fde.Begin())
			}
			if _, err := cfiRow(got, s.loc, bias); err != nil {
				t.Errorf("FDE at %#x, row %#x: %v", fde.Begin(), s.loc, err)
			}
		}
	}
	if found == 0 {
		t.Skip("this libc has no DW_CFA_GNU_args_size")
	}
}

// readelfRow is one row of `readelf -wF`.
type readelfRow struct {
	loc  uint64
	cfa  string
	regs map[uint64]string
}

var readelfRegs = map[string]uint64{"rax": 0, "rdx": 1, "rcx": 2, "rbx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7,
	"r8": 8, "r9": 9, "r10": 10, "r11": 11, "r12": 12, "r13": 13, "r14": 14, "r15": 15, "ra": 16}

func readelfRows(t *testing.T, path string) []readelfRow {
	t.Helper()
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("readelf not installed")
	}
	// readelf exits 1 after warnings about sections it does not decode;
	// the tables it printed are still complete.
	out, err := exec.Command("readelf", "-wF", path).Output()
	if len(out) == 0 {
		t.Fatalf("readelf -wF %s: %v", path, err)
	}
	var rows []readelfRow
	var cols []string
	inCIE := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "LOC" {
			cols = fields[1:]
			continue
		}
		if strings.Contains(sc.Text(), "FDE") || strings.Contains(sc.Text(), "CIE") {
			cols, inCIE = nil, strings.Contains(sc.Text(), "CIE")
			continue
		}
		loc, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || inCIE || cols == nil || len(fields) != len(cols)+1 {
			continue
		}
		r := readelfRow{loc: loc, cfa: fields[1], regs: map[uint64]string{}}
		for i, c := range cols[1:] {
			if n, ok := readelfRegs[c]; ok {
				r.regs[n] = fields[i+2]
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func ruleString(r frame.DWRule) string {
	switch r.Rule {
	case frame.RuleOffset:
		return fmt.Sprintf("c%+d", r.Offset)
	case frame.RuleValOffset:
		return fmt.Sprintf("v%+d", r.Offset)
	case frame.RuleExpression:
		return "exp"
	case frame.RuleValExpression:
		return "vexp"
	case frame.RuleRegister:
		for name, n := range readelfRegs {
			if n == r.Reg {
				return name
			}
		}
	case frame.RuleSameVal:
		return "s"
	}
	return "u"
}

// TestCFIMatchesReadelf compares every row of libc's (and ld.so's) CFI with
// binutils' interpretation. readelf prints "u" for registers never
// mentioned as well as for undefined ones, so "u" matches same value too.
func TestCFIMatchesReadelf(t *testing.T) {
	for _, path := range []string{libc, "/lib64/ld-linux-x86-64.so.2"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			needFile(t, path)
			rows := readelfRows(t, path)
			u := loaded(t, path)
			bad := 0
			for _, want := range rows {
				fde, bias := u.fde(want.loc)
				if fde == nil {
					t.Errorf("%#x: no FDE", want.loc)
					bad++
					continue
				}
				r, err := cfiRow(fde, want.loc, bias)
				if err != nil {
					t.Errorf("%#x: %v", want.loc, err)
					bad++
					continue
				}
				cfa := "exp"
				if r.cfa.Rule == frame.RuleCFA {
					cfa = "?"
					for name, n := range readelfRegs {
						if n == r.cfa.Reg {
							cfa = fmt.Sprintf("%s%+d", name, r.cfa.Offset)
						}
					}
				}
				mismatch := cfa != want.cfa
				for n, w := range want.regs {
					got := ruleString(r.regs[n])
					if _, ok := r.regs[n]; !ok {
						got = "u"
					}
					if got == "s" && w == "u" {
						got = "u"
					}
					if got != w {
						mismatch = true
					}
				}
				if mismatch {
					bad++
					if bad < 10 {
						t.Errorf("%#x: cfa %s regs %v; readelf: cfa %s regs %v", want.loc, cfa, r.regs, want.cfa, want.regs)
					}
				}
			}
			if len(rows) < 1000 && path == libc {
				t.Fatalf("only %d rows parsed from readelf", len(rows))
			}
			t.Logf("%d rows compared, %d mismatches", len(rows), bad)
		})
	}
}

// cfikinds.S exercises the rules delve evaluates differently from the
// standard, on real assembled CFI.
const cfiKinds = `
	.text
	.globl _start
	.type _start, @function
_start:
	.cfi_startproc
	.cfi_undefined rip
	xor %edi, %edi
	mov $60, %eax
	syscall
	.cfi_endproc

	.globl kinds
	.type kinds, @function
kinds:
	.cfi_startproc
	push %rbp
	.cfi_def_cfa_offset 16
	.cfi_offset rbp, -16
	/* DW_CFA_val_offset: rbx's value is CFA-24 (factored operand 3) */
	.cfi_val_offset rbx, -24
	/* r12 lives in r13 */
	.cfi_register r12, r13
	/* DW_CFA_expression r14: CFA 16 DW_OP_minus -> saved at CFA-16;
	   only right if the CFA is pushed first */
	.cfi_escape 0x10, 14, 2, 0x40, 0x1c
	/* DW_CFA_val_expression r15: CFA 8 DW_OP_plus -> value CFA+8 */
	.cfi_escape 0x16, 15, 2, 0x38, 0x22
	/* DW_CFA_GNU_args_size 16 */
	.cfi_escape 0x2e, 0x10
	nop
	/* Directives apply at the address of the next instruction, so each
	   label below sits one instruction after its directives. */
kinds_mid:
	nop
	.cfi_remember_state
	.cfi_restore rbp
	nop
kinds_restored:
	nop
	.cfi_restore_state
	nop
kinds_back:
	nop
	/* CFA from an expression: rsp+16 via DW_OP_breg7 16 */
	.cfi_escape 0x0f, 2, 0x77, 0x10
	nop
kinds_expr:
	pop %rbp
	ret
	.cfi_endproc
	.size kinds, .-kinds
`

func TestRuleKinds(t *testing.T) {
	needGCC(t)
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "kinds.S"), filepath.Join(dir, "kinds")
	if err := os.WriteFile(src, []byte(cfiKinds), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("gcc", "-nostdlib", "-static", "-no-pie", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	im := openImage(t, bin)
	u := loaded(t, bin)
	const rsp = 0x7000_0000
	stack := make([]byte, 64)
	put := func(off int, v uint64) { binary.LittleEndian.PutUint64(stack[off:], v) }
	// CFA = rsp+16: [rsp] saved rbp, [rsp+8] return address.
	put(0, 0xbbbb)
	put(8, 0x401000)
	read := im.reader(rsp, stack)
	regs := target.Regs{Rsp: rsp, Rbx: 1, R12: 2, R13: 0x1313, R14: 4, R15: 5, Rbp: 6}

	step := func(pc uint64) Frame {
		t.Helper()
		regs.Rip = pc
		f := Frame{PC: pc, Regs: regs}
		next, res := u.step(&f, read)
		if res != stepOK {
			t.Fatalf("no step at %#x (%v)", pc, res)
		}
		if f.CFA != rsp+16 {
			t.Fatalf("cfa %#x at %#x, want %#x", f.CFA, pc, rsp+16)
		}
		return next
	}
	mid := step(im.sym(t, "kinds_mid"))
	if mid.PC != 0x401000 || mid.Regs.Rbp != 0xbbbb {
		t.Errorf("ra %#x rbp %#x", mid.PC, mid.Regs.Rbp)
	}
	if mid.Regs.Rbx != rsp+16-24 {
		t.Errorf("val_offset: rbx %#x, want CFA-24 = %#x (delve leaves the operand unfactored)", mid.Regs.Rbx, rsp+16-24)
	}
	if mid.Regs.R12 != 0x1313 {
		t.Errorf("register rule: r12 %#x, want r13's 0x1313", mid.Regs.R12)
	}
	if mid.Regs.R14 != 0xbbbb {
		t.Errorf("expression rule: r14 %#x, want [CFA-16] = 0xbbbb (the CFA must be pushed first)", mid.Regs.R14)
	}
	if mid.Regs.R15 != rsp+16+8 {
		t.Errorf("val_expression rule: r15 %#x, want CFA+8", mid.Regs.R15)
	}
	if restored := step(im.sym(t, "kinds_restored")); restored.Regs.Rbp != 6 {
		t.Errorf("after restore rbp %#x, want the callee's 6 (same value)", restored.Regs.Rbp)
	}
	if back := step(im.sym(t, "kinds_back")); back.Regs.Rbp != 0xbbbb {
		t.Errorf("after restore_state rbp %#x, want 0xbbbb", back.Regs.Rbp)
	}
	if e := step(im.sym(t, "kinds_expr")); e.PC != 0x401000 {
		t.Errorf("CFA expression: ra %#x", e.PC)
	}
	// _start: the return address is undefined, the walk ends there.
	start := im.sym(t, "_start")
	frames, err := u.Frames(target.Regs{Rip: start + 2, Rsp: rsp}, read, 8)
	if err != nil || len(frames) != 1 || frames[0].CFA != rsp+8 {
		t.Errorf("outermost: %v %+v", err, frames)
	}
}
