package x86

import (
	"fmt"

	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/arch/x86/x86asm"
)

// FlowKind is what an instruction does to control flow.
type FlowKind uint8

const (
	// FlowSeq falls through to the next instruction only.
	FlowSeq FlowKind = iota
	// FlowJump is an unconditional direct jump to Target.
	FlowJump
	// FlowCondJump goes to Target or falls through (jcc, jrcxz, loop).
	FlowCondJump
	// FlowCall is a direct call to Target.
	FlowCall
	// FlowIndirectJump is jmp r/m.
	FlowIndirectJump
	// FlowIndirectCall is call r/m.
	FlowIndirectCall
	// FlowRet returns to the address at the top of the stack.
	FlowRet
	// FlowTrap has no successor within the program (hlt, ud0/1/2, int3): the
	// kernel raises a signal.
	FlowTrap
	// FlowSyscall enters the kernel and normally falls through.
	FlowSyscall
)

func (k FlowKind) String() string {
	return [...]string{"seq", "jump", "condjump", "call", "indirect-jump", "indirect-call", "ret", "trap", "syscall"}[k]
}

// Insn is one decoded instruction and its control-flow effect.
type Insn struct {
	Addr   uint64
	Len    int
	Kind   FlowKind
	Target uint64 // for direct jumps and calls
	Inst   x86asm.Inst
}

// Next is the fall-through address.
func (i Insn) Next() uint64 { return i.Addr + uint64(i.Len) }

// Decode decodes the instruction at addr from code (which starts at addr).
func Decode(code []byte, addr uint64) (Insn, error) {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return Insn{}, fmt.Errorf("decoding instruction at %#x: %w", addr, err)
	}
	if inst.Op == 0 {
		// x86asm answers truncated input or a stray prefix with a one-byte
		// instruction of no operation and no error.
		return Insn{}, fmt.Errorf("decoding instruction at %#x: truncated or invalid", addr)
	}
	in := Insn{Addr: addr, Len: inst.Len, Inst: inst}
	rel, hasRel := inst.Args[0].(x86asm.Rel)
	switch inst.Op {
	case x86asm.JMP, x86asm.LJMP:
		if hasRel {
			in.Kind, in.Target = FlowJump, in.Next()+uint64(int64(rel))
		} else {
			in.Kind = FlowIndirectJump
		}
	case x86asm.CALL, x86asm.LCALL:
		if hasRel {
			in.Kind, in.Target = FlowCall, in.Next()+uint64(int64(rel))
		} else {
			in.Kind = FlowIndirectCall
		}
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ,
		x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		in.Kind = FlowCondJump
		if hasRel {
			in.Target = in.Next() + uint64(int64(rel))
		}
	case x86asm.RET, x86asm.LRET, x86asm.IRET, x86asm.IRETD, x86asm.IRETQ:
		in.Kind = FlowRet
	case x86asm.HLT, x86asm.UD0, x86asm.UD1, x86asm.UD2:
		in.Kind = FlowTrap
	case x86asm.INT:
		// int3 traps; int $0x80 is a system call that falls through.
		if imm, ok := inst.Args[0].(x86asm.Imm); ok && imm == 0x80 {
			in.Kind = FlowSyscall
		} else {
			in.Kind = FlowTrap
		}
	case x86asm.SYSCALL, x86asm.SYSENTER:
		in.Kind = FlowSyscall
	}
	return in, nil
}

// RegValue reads a general register (any width) from regs. ok is false for
// registers this package does not model (vector, control, segment selectors).
func RegValue(r *target.Regs, reg x86asm.Reg) (v uint64, ok bool) {
	switch {
	case reg >= x86asm.RAX && reg <= x86asm.R15:
		return full64(r, int(reg-x86asm.RAX)), true
	case reg >= x86asm.EAX && reg <= x86asm.R15L:
		return full64(r, int(reg-x86asm.EAX)) & 0xffffffff, true
	case reg >= x86asm.AX && reg <= x86asm.R15W:
		return full64(r, int(reg-x86asm.AX)) & 0xffff, true
	case reg >= x86asm.AL && reg <= x86asm.BL:
		return full64(r, int(reg-x86asm.AL)) & 0xff, true
	case reg >= x86asm.SPB && reg <= x86asm.R15B:
		return full64(r, int(reg-x86asm.SPB)+4) & 0xff, true
	case reg >= x86asm.AH && reg <= x86asm.BH:
		return full64(r, int(reg-x86asm.AH)) >> 8 & 0xff, true
	case reg == x86asm.RIP:
		return r.Rip, true
	case reg == x86asm.EIP:
		return r.Rip & 0xffffffff, true
	}
	return 0, false
}

// full64 maps x86asm's register order (ax, cx, dx, bx, sp, bp, si, di,
// r8..r15) onto Regs.
func full64(r *target.Regs, i int) uint64 {
	switch i {
	case 0:
		return r.Rax
	case 1:
		return r.Rcx
	case 2:
		return r.Rdx
	case 3:
		return r.Rbx
	case 4:
		return r.Rsp
	case 5:
		return r.Rbp
	case 6:
		return r.Rsi
	case 7:
		return r.Rdi
	case 8:
		return r.R8
	case 9:
		return r.R9
	case 10:
		return r.R10
	case 11:
		return r.R11
	case 12:
		return r.R12
	case 13:
		return r.R13
	case 14:
		return r.R14
	case 15:
		return r.R15
	}
	return 0
}

// EffectiveAddress computes a memory operand's address for the instruction
// in, given the registers before it executes. RIP-relative operands are
// relative to the next instruction; fs/gs use the segment bases.
func EffectiveAddress(in Insn, m x86asm.Mem, r *target.Regs) (uint64, bool) {
	var addr uint64
	if m.Base != 0 {
		if m.Base == x86asm.RIP {
			addr = in.Next()
		} else {
			v, ok := RegValue(r, m.Base)
			if !ok {
				return 0, false
			}
			addr = v
		}
	}
	if m.Index != 0 {
		v, ok := RegValue(r, m.Index)
		if !ok {
			return 0, false
		}
		addr += v * uint64(m.Scale)
	}
	addr += uint64(m.Disp)
	switch m.Segment {
	case x86asm.FS:
		addr += r.FsBase
	case x86asm.GS:
		addr += r.GsBase
	}
	if in.Inst.AddrSize == 32 {
		addr &= 0xffffffff
	}
	return addr, true
}

// Successors returns every address control can reach after in executes in
// the state r (memory through read): one for most instructions, two for a
// conditional jump, none for a trap or an unresolvable indirect operand.
// A call's successor is its target: the callee runs next.
func Successors(in Insn, r *target.Regs, read target.MemReader) []uint64 {
	switch in.Kind {
	case FlowSeq, FlowSyscall:
		return []uint64{in.Next()}
	case FlowJump, FlowCall:
		return []uint64{in.Target}
	case FlowCondJump:
		if in.Target == 0 {
			return []uint64{in.Next()}
		}
		return []uint64{in.Target, in.Next()}
	case FlowRet:
		if v, ok := readU64(read, r.Rsp); ok {
			return []uint64{v}
		}
	case FlowIndirectJump, FlowIndirectCall:
		if v, ok := IndirectTarget(in, r, read); ok {
			return []uint64{v}
		}
	}
	return nil
}

// IndirectTarget resolves the operand of an indirect jump or call.
func IndirectTarget(in Insn, r *target.Regs, read target.MemReader) (uint64, bool) {
	switch a := in.Inst.Args[0].(type) {
	case x86asm.Reg:
		return RegValue(r, a)
	case x86asm.Mem:
		ea, ok := EffectiveAddress(in, a, r)
		if !ok {
			return 0, false
		}
		return readU64(read, ea)
	}
	return 0, false
}

func readU64(read target.MemReader, addr uint64) (uint64, bool) {
	var b [8]byte
	if n, err := read(addr, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56, true
}

// StoreTo reports whether in writes a general register to memory, and if so
// the destination address and the stored value. It recognises the shape used
// to publish a descriptor into rseq_cs: mov %reg, mem.
func StoreTo(in Insn, r *target.Regs) (addr, value uint64, ok bool) {
	if in.Inst.Op != x86asm.MOV {
		return 0, 0, false
	}
	m, isMem := in.Inst.Args[0].(x86asm.Mem)
	if !isMem || in.Inst.MemBytes != 8 {
		return 0, 0, false
	}
	switch src := in.Inst.Args[1].(type) {
	case x86asm.Reg:
		value, ok = RegValue(r, src)
	case x86asm.Imm:
		value, ok = uint64(int64(src)), true
	}
	if !ok {
		return 0, 0, false
	}
	addr, ok = EffectiveAddress(in, m, r)
	return addr, value, ok
}
