package unwind

import (
	"encoding/binary"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/rseqdbg/rseqdbg/target"
)

const (
	fuzzCode  = 0x10000
	fuzzStack = 0x7fff_0000
)

// FuzzSynthesize feeds random code to the synthesizer and the walker: no
// panic, and any row claimed must describe a real frame (CFA above rsp, the
// return address read from at or above rsp).
func FuzzSynthesize(f *testing.F) {
	f.Add([]byte{0xc3}, uint16(0), uint8(0))
	f.Add([]byte{0x53, 0x48, 0x83, 0xec, 0x18, 0x48, 0x83, 0xc4, 0x18, 0x5b, 0xc3}, uint16(64), uint8(2))
	f.Add([]byte{0x55, 0x48, 0x89, 0xe5, 0xc9, 0xc3}, uint16(8), uint8(1))
	f.Add([]byte{0x74, 0x02, 0x5b, 0xc3, 0x5b, 0xc3}, uint16(0), uint8(0))
	f.Add([]byte{0xe8, 0, 0, 0, 0, 0xeb, 0xfe}, uint16(0), uint8(0))
	f.Add([]byte{0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05}, uint16(0), uint8(0))
	f.Fuzz(synthesizeOne)
}

func synthesizeOne(t *testing.T, code []byte, rspOff uint16, pcOff uint8) {
	{
		if len(code) == 0 || len(code) > 512 {
			return
		}
		stack := make([]byte, 8192)
		for i := range stack {
			stack[i] = code[i%len(code)] ^ byte(i)
		}
		rsp := fuzzStack + uint64(rspOff%4096)&^7
		pc := fuzzCode + uint64(int(pcOff)%len(code))
		read := memReader(map[uint64][]byte{fuzzCode: code, fuzzStack: stack})
		u := asmUnwinder(code, fuzzCode)

		if r, ok := u.synthForward(pc, read); ok {
			checkRow(t, "forward", r)
		}
		if r, ok := u.synthFromEntry(fuzzCode, pc, fuzzCode+uint64(len(code)), read); ok {
			checkRow(t, "entry", r)
		}
		regs := target.Regs{Rip: pc, Rsp: rsp, Rbp: binary.LittleEndian.Uint64(stack[rspOff%4096:])}
		frames, err := u.Frames(regs, read, 16)
		if err != nil || len(frames) == 0 {
			t.Fatalf("Frames: %v, %d frames", err, len(frames))
		}
		for i, fr := range frames {
			if fr.CFA != 0 && !fr.Signal && fr.CFA <= fr.Regs.Rsp {
				t.Fatalf("frame %d: CFA %#x at or below rsp %#x", i, fr.CFA, fr.Regs.Rsp)
			}
			if i > 0 && !frames[i-1].Signal && fr.CFA != 0 && frames[i-1].CFA != 0 && !fr.Signal && fr.CFA <= frames[i-1].CFA {
				t.Fatalf("frame %d: CFA %#x does not grow from %#x", i, fr.CFA, frames[i-1].CFA)
			}
		}
		u.ReturnAddress(regs, read)
		u.Step(Frame{PC: pc, Regs: regs}, read)
	}
}

func checkRow(t *testing.T, how string, r row) {
	t.Helper()
	if !sane(r) || !r.synth {
		t.Fatalf("%s: insane row %+v", how, r)
	}
	if r.cfa.Reg == dwRSP && r.cfa.Offset < 8 {
		t.Fatalf("%s: CFA rsp%+d is not above rsp", how, r.cfa.Offset)
	}
}

// progModel is an independent model of the stub shapes FuzzSynthesizeModel
// assembles: only the stack depth and who is in which slot.
type progModel struct {
	depth      int64         // bytes pushed below the entry rsp
	slots      map[int64]int // entry-rsp-relative offset -> register pushed unmodified, or -1
	modified   [16]bool
	rbpDepth   int64
	rbpValid   bool
	unmodelled bool
}

var fuzzRegs = []uint8{xRAX, xRCX, xRDX, xRBX, xRBP, xRSI, xRDI, 8, 9, 10, 11, 12, 13, 14, 15}

// assemble turns fuzz bytes into a stub that ends in ret, tracking the
// model as it goes.
func assemble(prog []byte) ([]byte, progModel) {
	m := progModel{slots: map[int64]int{}}
	var code []byte
	arg := func(i int) byte {
		if i+1 < len(prog) {
			return prog[i+1]
		}
		return 0
	}
	for i := 0; i < len(prog) && i < 48 && !m.unmodelled; i += 2 {
		a := arg(i)
		switch prog[i] % 13 {
		case 0: // push r
			r := fuzzRegs[int(a)%len(fuzzRegs)]
			code = append(code, pushPop(0x50, r)...)
			m.depth += 8
			if m.modified[r] {
				m.slots[-m.depth] = -1
			} else {
				m.slots[-m.depth] = int(r)
			}
		case 1: // pop r
			r := fuzzRegs[int(a)%len(fuzzRegs)]
			code = append(code, pushPop(0x58, r)...)
			m.depth -= 8
			m.modified[r] = true
			if r == xRBP {
				m.rbpValid = false
			}
		case 2: // sub $k*8,%rsp
			k := int64(a%16) * 8
			code = append(code, 0x48, 0x83, 0xec, byte(k))
			m.depth += k
		case 3: // add $k*8,%rsp
			k := int64(a%16) * 8
			code = append(code, 0x48, 0x83, 0xc4, byte(k))
			m.depth -= k
		case 4: // lea d(%rsp),%rsp, d in [-64, 56]
			d := int64(int8(a)%8) * 8
			code = append(code, 0x48, 0x8d, 0x64, 0x24, byte(int8(d)))
			m.depth -= d
		case 5: // mov %rsp,%rbp
			code = append(code, 0x48, 0x89, 0xe5)
			m.rbpDepth, m.rbpValid, m.modified[xRBP] = m.depth, true, true
		case 6: // mov %rbp,%rsp, only when rbp holds a stack address
			if m.rbpValid {
				code = append(code, 0x48, 0x89, 0xec)
				m.depth = m.rbpDepth
			}
		case 7: // nop, mov %rax,%rcx, xor %eax,%eax
			switch a % 3 {
			case 0:
				code = append(code, 0x90)
			case 1:
				code = append(code, 0x48, 0x89, 0xc1)
				m.modified[xRCX] = true
			case 2:
				code = append(code, 0x31, 0xc0)
				m.modified[xRAX] = true
			}
		case 8: // and $-16,%rsp
			code = append(code, 0x48, 0x83, 0xe4, 0xf0)
			m.unmodelled = true
		case 9: // jmp *%rax
			code = append(code, 0xff, 0xe0)
			m.unmodelled = true
		case 10: // mov $imm,%rsp
			code = append(code, 0x48, 0xc7, 0xc4, a, 0, 0, 0)
			m.unmodelled = true
		case 11: // jmp .+2
			code = append(code, 0xeb, 0x00)
		case 12: // je over a nop
			code = append(code, 0x74, 0x01, 0x90)
		}
	}
	return append(code, 0xc3), m
}

func pushPop(op byte, r uint8) []byte {
	if r >= 8 {
		return []byte{0x41, op + r - 8}
	}
	return []byte{op + r}
}

// FuzzSynthesizeModel assembles stubs from a menu of instructions and checks
// the synthesized row against an independent model: exact CFA and return
// address when the model knows them, no row when an instruction the
// synthesizer must not model appears, or when the stub leaves with rsp
// below where it started.
func FuzzSynthesizeModel(f *testing.F) {
	f.Add([]byte{0, 3, 2, 4, 3, 4, 1, 3})
	f.Add([]byte{5, 0, 2, 8, 6, 0, 1, 4})
	f.Add([]byte{0, 3, 8, 0})
	f.Add([]byte{12, 0, 11, 0, 0, 1, 1, 2})
	f.Fuzz(func(t *testing.T, prog []byte) {
		code, m := assemble(prog)
		u := asmUnwinder(code, fuzzCode)
		r, ok := u.synthForward(fuzzCode, memReader(map[uint64][]byte{fuzzCode: code}))
		if m.unmodelled {
			if ok {
				t.Fatalf("row %+v claimed for a stub with an unmodelled instruction: % x", r, code)
			}
			return
		}
		if m.depth > 0 {
			if ok {
				t.Fatalf("row %+v claimed for a stub that returns below its entry rsp: % x", r, code)
			}
			return
		}
		slot, written := m.slots[-m.depth]
		if written && slot < 0 {
			// The return address comes from a slot the model cannot name;
			// the synthesizer may know better, the CFA must still match.
			if ok && (r.cfa.Reg != dwRSP || r.cfa.Offset != 8-m.depth) {
				t.Fatalf("cfa %+v, model says rsp%+d: % x", r.cfa, 8-m.depth, code)
			}
			return
		}
		if !ok {
			t.Fatalf("no row for a modelled stub (depth %d): % x", m.depth, code)
		}
		if r.cfa.Rule != frame.RuleCFA || r.cfa.Reg != dwRSP || r.cfa.Offset != 8-m.depth {
			t.Fatalf("cfa %+v, model says rsp%+d: % x", r.cfa, 8-m.depth, code)
		}
		ra := r.regs[dwRIP]
		switch {
		case written && (ra.Rule != frame.RuleRegister || ra.Reg != x86ToDwarf[slot]):
			t.Fatalf("ra %+v, model says register %d: % x", ra, slot, code)
		case !written && (ra.Rule != frame.RuleOffset || ra.Offset != -8):
			t.Fatalf("ra %+v, model says cfa-8: % x", ra, code)
		}
		for _, x := range fuzzRegs {
			if m.modified[x] {
				continue
			}
			if rule, has := r.regs[x86ToDwarf[x]]; has && rule.Rule != frame.RuleSameVal {
				t.Fatalf("untouched register %d has rule %+v: % x", x, rule, code)
			}
		}
	})
}

// The walker's read must tolerate short reads at the end of code.
var _ target.MemReader = memReader(nil)

// FuzzAddImage loads this process's vDSO with random bytes patched in (its
// headers, CFI, code) and unwinds through it: no panic, no hang in the CFA
// interpreter. Patching keeps the inputs small for the fuzzer.
func FuzzAddImage(f *testing.F) {
	vdso, base := readVDSO(f)
	f.Add([]byte{0xff, 0xff}, uint16(0x38), uint16(0x780), false)        // e_phnum
	f.Add([]byte{0x2e, 0x10, 0x2f}, uint16(0x680), uint16(0x810), false) // inside .eh_frame
	f.Add([]byte{0}, uint16(0), uint16(0x780), true)
	f.Fuzz(func(t *testing.T, patch []byte, at, pcOff uint16, short bool) {
		img := append([]byte(nil), vdso...)
		if short {
			img = img[:min(len(img), 4096)]
		}
		copy(img[int(at)%len(img):], patch)
		u := New()
		_ = u.AddImage("[vdso]", img, base)
		stack := make([]byte, 512)
		for i := range stack {
			stack[i] = byte(i * 7)
		}
		read := memReader(map[uint64][]byte{base: img, fuzzStack: stack})
		regs := target.Regs{Rip: base + uint64(pcOff), Rsp: fuzzStack + 64, Rbp: fuzzStack + 128}
		if _, err := u.Frames(regs, read, 8); err != nil {
			t.Fatal(err)
		}
		u.RemoveObject("[vdso]")
	})
}
