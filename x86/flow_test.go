package x86

import (
	"encoding/binary"
	"testing"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/arch/x86/x86asm"
)

func TestDecodeKinds(t *testing.T) {
	const pc = 0x1000
	for _, tc := range []struct {
		code   []byte
		kind   FlowKind
		target uint64
		len    int
	}{
		{[]byte{0x90}, FlowSeq, 0, 1},
		{[]byte{0xeb, 0xfe}, FlowJump, pc, 2},
		{[]byte{0xe9, 0x10, 0, 0, 0}, FlowJump, pc + 0x15, 5},
		{[]byte{0x0f, 0x85, 0xf0, 0xff, 0xff, 0xff}, FlowCondJump, pc + 6 - 0x10, 6},
		{[]byte{0x74, 0x02}, FlowCondJump, pc + 4, 2},
		{[]byte{0xe3, 0x02}, FlowCondJump, pc + 4, 2}, // jrcxz
		{[]byte{0xe2, 0xfe}, FlowCondJump, pc, 2},     // loop
		{[]byte{0xe8, 0, 0, 0, 0}, FlowCall, pc + 5, 5},
		{[]byte{0xff, 0xd0}, FlowIndirectCall, 0, 2},
		{[]byte{0xff, 0x25, 0, 0, 0, 0}, FlowIndirectJump, 0, 6},
		{[]byte{0xc3}, FlowRet, 0, 1},
		{[]byte{0xc2, 0x08, 0x00}, FlowRet, 0, 3},
		{[]byte{0xcc}, FlowTrap, 0, 1},
		{[]byte{0x0f, 0x0b}, FlowTrap, 0, 2},
		{[]byte{0x0f, 0xb9, 0x3d, 0x53, 0x30, 0x05, 0x53}, FlowTrap, 0, 7}, // the rseq signature: ud1 0x53053053(%rip),%edi
		{[]byte{0xf4}, FlowTrap, 0, 1},
		{[]byte{0x0f, 0x05}, FlowSyscall, 0, 2},
	} {
		in, err := Decode(tc.code, pc)
		if err != nil {
			t.Errorf("% x: %v", tc.code, err)
			continue
		}
		if in.Kind != tc.kind || in.Target != tc.target || in.Len != tc.len || in.Next() != pc+uint64(tc.len) {
			t.Errorf("% x: %v target %#x len %d, want %v %#x %d", tc.code, in.Kind, in.Target, in.Len, tc.kind, tc.target, tc.len)
		}
	}
	// x86asm answers a truncated instruction with a one-byte pseudo
	// instruction (Op 0) and no error; DecodeFlow must refuse it.
	for _, c := range [][]byte{{0x0f}, {0x0f, 0x85, 0}, {0xe8, 0, 0}, {0x48}, {0x06}} {
		if q, err := DecodeFlow(c, pc); err == nil {
			t.Errorf("% x decoded as %+v", c, q)
		}
	}
}

func TestSuccessorsAndStores(t *testing.T) {
	mem := map[uint64]uint64{0x7000: 0x4444, 0x2000 + 0x10 + 6: 0x5555}
	read := func(addr uint64, b []byte) (int, error) {
		v, ok := mem[addr]
		if !ok || len(b) != 8 {
			return 0, nil
		}
		binary.LittleEndian.PutUint64(b, v)
		return 8, nil
	}
	regs := &target.Regs{Rax: 0x1234, Rsp: 0x7000, Rsi: 0x3000, Rcx: 0xaabbccdd11223344, FsBase: 0x100000}
	dec := func(code ...byte) Insn {
		in, err := Decode(code, 0x2000)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	eq := func(name string, got []uint64, want ...uint64) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %#x, want %#x", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: %#x, want %#x", name, got, want)
			}
		}
	}
	eq("nop", Successors(dec(0x90), regs, read), 0x2001)
	eq("jne", Successors(dec(0x75, 0x10), regs, read), 0x2012, 0x2002)
	eq("call", Successors(dec(0xe8, 0, 1, 0, 0), regs, read), 0x2105)
	eq("ret", Successors(dec(0xc3), regs, read), 0x4444)
	eq("jmp *%rax", Successors(dec(0xff, 0xe0), regs, read), 0x1234)
	eq("jmp *0x10(%rip)", Successors(dec(0xff, 0x25, 0x10, 0, 0, 0), regs, read), 0x5555)
	eq("ud2", Successors(dec(0x0f, 0x0b), regs, read))
	eq("call *(%rdi) unreadable", Successors(dec(0xff, 0x17), regs, read))

	for _, tc := range []struct {
		reg  x86asm.Reg
		want uint64
	}{{x86asm.RCX, 0xaabbccdd11223344}, {x86asm.ECX, 0x11223344}, {x86asm.CX, 0x3344}, {x86asm.CL, 0x44}, {x86asm.CH, 0x33}, {x86asm.SIB, 0x00}, {x86asm.RIP, 0}} {
		if v, ok := RegValue(regs, tc.reg); !ok || v != tc.want {
			t.Errorf("%v = %#x %v, want %#x", tc.reg, v, ok, tc.want)
		}
	}
	if _, ok := RegValue(regs, x86asm.X0); ok {
		t.Error("xmm0 modelled")
	}

	// movq %rax, 8(%rsi): the descriptor store before start.
	addr, val, ok := StoreTo(dec(0x48, 0x89, 0x46, 0x08), regs)
	if !ok || addr != 0x3008 || val != 0x1234 {
		t.Errorf("store: %#x %#x %v", addr, val, ok)
	}
	// movq %rax, %fs:8: relative to the thread pointer.
	addr, _, ok = StoreTo(dec(0x64, 0x48, 0x89, 0x04, 0x25, 0x08, 0, 0, 0), regs)
	if !ok || addr != 0x100008 {
		t.Errorf("fs store: %#x %v", addr, ok)
	}
	if _, _, ok := StoreTo(dec(0x89, 0x46, 0x08), regs); ok {
		t.Error("32-bit store taken for a descriptor store")
	}
	if _, _, ok := StoreTo(dec(0x48, 0x8b, 0x46, 0x08), regs); ok {
		t.Error("load taken for a store")
	}
}
