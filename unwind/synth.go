package unwind

import (
	"bytes"
	"maps"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/arch/x86/x86asm"
)

// Synthesis derives rules for code without CFI by interpreting it
// symbolically. Every register and tracked stack slot holds an affine value
// over the registers at a reference point (the PC for stubs, the entry for
// functions): "register R plus k", "the 8 bytes at register R plus k", or
// unknown. Control flow is followed on all paths with a join at merge points,
// so loops whose stack depth is stable are fine; anything that makes rsp
// unknown, an indirect jump, or conflicting stack depths ends the analysis
// without a row. The result is never a guess: a row is only produced when
// every path agrees on where the return address and the CFA are.

// Register indexes in x86asm order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
// R8..R15).
const (
	xRAX = 0
	xRCX = 1
	xRDX = 2
	xRBX = 3
	xRSP = 4
	xRBP = 5
	xRSI = 6
	xRDI = 7
	xR8  = 8
	xR9  = 9
	xR10 = 10
	xR11 = 11
)

var x86ToDwarf = [16]uint64{0, 2, 1, 3, 7, 6, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15}
var dwarfToX86 = [16]uint8{0, 2, 1, 3, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15}

// Bounds on the work of one synthesis: a stub is short by nature, a
// function without CFI is interpreted from its entry to the PC.
const (
	stubBudget  = 64
	entryBudget = 4096
	// maxStore bounds the bytes an instruction of unknown width (fxsave,
	// xsave) is assumed to write.
	maxStore = 4096
)

// gpr maps an x86asm register to its index; full is false for the 8-, 16-
// and 32-bit names, whose writes leave no affine value.
func gpr(r x86asm.Reg) (idx uint8, full, ok bool) {
	switch {
	case r >= x86asm.RAX && r <= x86asm.R15:
		return uint8(r - x86asm.RAX), true, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return uint8(r - x86asm.EAX), false, true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return uint8(r - x86asm.AX), false, true
	case r >= x86asm.AL && r <= x86asm.BL:
		return uint8(r - x86asm.AL), false, true
	case r >= x86asm.AH && r <= x86asm.BH:
		return uint8(r - x86asm.AH), false, true
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return uint8(r-x86asm.SPB) + 4, false, true
	}
	return 0, false, false
}

type svKind uint8

const (
	svUnknown svKind = iota
	svReg            // value of register base at the reference point, plus off
	svMem            // the 8 bytes at (register base at the reference point + off), unmodified since
)

type sval struct {
	kind svKind
	base uint8
	off  int64
}

var unknown = sval{}

type slotKey struct {
	base uint8
	off  int64
}

// state is what is known at one instruction boundary.
type state struct {
	regs [16]sval
	// slots are 8-byte stack locations written since the reference point;
	// an unknown value means "written with something we cannot name".
	slots map[slotKey]sval
	// clob: per base register, addresses below this offset were overwritten
	// by a callee whose writes are not tracked.
	clob map[uint8]int64
}

func identity() *state {
	st := &state{slots: map[slotKey]sval{}, clob: map[uint8]int64{}}
	for i := range st.regs {
		st.regs[i] = sval{kind: svReg, base: uint8(i)}
	}
	return st
}

func (st *state) clone() *state {
	return &state{regs: st.regs, slots: maps.Clone(st.slots), clob: maps.Clone(st.clob)}
}

func (st *state) equal(o *state) bool {
	return st.regs == o.regs && maps.Equal(st.slots, o.slots) && maps.Equal(st.clob, o.clob)
}

// join merges the states of two paths reaching the same instruction. The
// stack depth must agree; anything else that differs becomes unknown.
func join(a, b *state) (*state, bool) {
	if a.regs[xRSP] != b.regs[xRSP] {
		return nil, false
	}
	j := &state{slots: map[slotKey]sval{}, clob: maps.Clone(a.clob)}
	for i := range j.regs {
		if a.regs[i] == b.regs[i] {
			j.regs[i] = a.regs[i]
		}
	}
	for k, v := range a.slots {
		if w, ok := b.slots[k]; ok && w == v {
			j.slots[k] = v
		} else {
			j.slots[k] = unknown
		}
	}
	for k := range b.slots {
		if _, ok := a.slots[k]; !ok {
			j.slots[k] = unknown
		}
	}
	for k, v := range b.clob {
		if w, ok := j.clob[k]; !ok || v > w {
			j.clob[k] = v
		}
	}
	return j, true
}

// addr resolves a memory operand to an affine address.
func (st *state) addr(m x86asm.Mem, in x86.Insn) (uint8, int64, bool) {
	if in.Inst.AddrSize != 64 || m.Index != 0 {
		return 0, 0, false
	}
	switch m.Segment {
	case 0, x86asm.ES, x86asm.CS, x86asm.SS, x86asm.DS:
	default:
		return 0, 0, false // fs/gs: thread-local data, not the stack
	}
	i, full, ok := gpr(m.Base)
	if !ok || !full || st.regs[i].kind != svReg {
		return 0, 0, false
	}
	return st.regs[i].base, st.regs[i].off + m.Disp, true
}

func (st *state) load(b uint8, off int64) sval {
	if v, ok := st.slots[slotKey{b, off}]; ok {
		return v
	}
	for k := range st.slots {
		if k.base == b && k.off < off+8 && off < k.off+8 {
			return unknown
		}
	}
	if c, ok := st.clob[b]; ok && off < c {
		return unknown
	}
	return sval{kind: svMem, base: b, off: off}
}

// store records a write of size bytes; anything but an 8-byte store of a
// known value leaves the bytes unknown.
func (st *state) store(b uint8, off, size int64, v sval) {
	if size <= 0 || size > maxStore {
		size = maxStore
	}
	for k := range st.slots {
		if k.base == b && k.off < off+size && off < k.off+8 {
			st.slots[k] = unknown
		}
	}
	if size == 8 {
		st.slots[slotKey{b, off}] = v
		return
	}
	for p := off; p < off+size; p += 8 {
		st.slots[slotKey{b, p}] = unknown
	}
}

func (st *state) push(v sval) bool {
	sp := st.regs[xRSP]
	if sp.kind != svReg {
		return false
	}
	st.regs[xRSP].off -= 8
	st.store(sp.base, sp.off-8, 8, v)
	return true
}

func (st *state) pop() (sval, bool) {
	sp := st.regs[xRSP]
	if sp.kind != svReg {
		return unknown, false
	}
	st.regs[xRSP].off += 8
	return st.load(sp.base, sp.off), true
}

// setReg writes a register; an rsp that becomes unknown ends the analysis.
func (st *state) setReg(i uint8, v sval) bool {
	if i == xRSP && v.kind != svReg {
		return false
	}
	st.regs[i] = v
	return true
}

// call models a call that returns by the ABI: rsp is back, caller-saved
// registers and everything below rsp are lost.
func (st *state) call() bool {
	sp := st.regs[xRSP]
	if sp.kind != svReg {
		return false
	}
	for _, i := range []uint8{xRAX, xRCX, xRDX, xRSI, xRDI, xR8, xR9, xR10, xR11} {
		st.regs[i] = unknown
	}
	for k := range st.slots {
		if k.base == sp.base && k.off < sp.off {
			delete(st.slots, k)
		}
	}
	if c, ok := st.clob[sp.base]; !ok || sp.off > c {
		st.clob[sp.base] = sp.off
	}
	return true
}

// Instructions whose first operand is read, not written.
var readsFirst = map[x86asm.Op]bool{
	x86asm.CMP: true, x86asm.TEST: true, x86asm.BT: true, x86asm.NOP: true,
	x86asm.PREFETCHNTA: true, x86asm.PREFETCHT0: true, x86asm.PREFETCHT1: true,
	x86asm.PREFETCHT2: true, x86asm.PREFETCHW: true, x86asm.CLFLUSH: true,
	x86asm.UCOMISS: true, x86asm.UCOMISD: true, x86asm.COMISS: true, x86asm.COMISD: true,
	x86asm.PTEST: true, x86asm.MUL: true, x86asm.DIV: true, x86asm.IDIV: true,
}

// Registers written without being named as the first operand.
var implicitWrites = map[x86asm.Op][]uint8{
	x86asm.MUL: {xRAX, xRDX}, x86asm.DIV: {xRAX, xRDX}, x86asm.IDIV: {xRAX, xRDX},
	x86asm.CQO: {xRDX}, x86asm.CDQ: {xRDX}, x86asm.CWD: {xRDX},
	x86asm.CDQE: {xRAX}, x86asm.CWDE: {xRAX}, x86asm.CBW: {xRAX},
	x86asm.RDTSC: {xRAX, xRDX}, x86asm.RDTSCP: {xRAX, xRDX, xRCX}, x86asm.RDPMC: {xRAX, xRDX},
	x86asm.XGETBV: {xRAX, xRDX}, x86asm.CPUID: {xRAX, xRBX, xRCX, xRDX},
	x86asm.SYSCALL: {xRAX, xRCX, xR11}, x86asm.LAHF: {xRAX}, x86asm.XLATB: {xRAX},
	x86asm.CMPXCHG: {xRAX}, x86asm.CMPXCHG8B: {xRAX, xRDX}, x86asm.CMPXCHG16B: {xRAX, xRDX},
	x86asm.LOOP: {xRCX}, x86asm.LOOPE: {xRCX}, x86asm.LOOPNE: {xRCX},
}

var stringOps = map[x86asm.Op]bool{
	x86asm.MOVSB: true, x86asm.MOVSW: true, x86asm.MOVSD: true, x86asm.MOVSQ: true,
	x86asm.STOSB: true, x86asm.STOSW: true, x86asm.STOSD: true, x86asm.STOSQ: true,
	x86asm.LODSB: true, x86asm.LODSW: true, x86asm.LODSD: true, x86asm.LODSQ: true,
	x86asm.SCASB: true, x86asm.SCASW: true, x86asm.SCASD: true, x86asm.SCASQ: true,
	x86asm.CMPSB: true, x86asm.CMPSW: true, x86asm.CMPSD: true, x86asm.CMPSQ: true,
	x86asm.INSB: true, x86asm.INSW: true, x86asm.INSD: true,
	x86asm.OUTSB: true, x86asm.OUTSW: true, x86asm.OUTSD: true,
}

// Instructions that move rsp in ways not modelled here (control transfers
// are handled by the walker before exec).
var movesStack = map[x86asm.Op]bool{
	x86asm.ENTER: true, x86asm.CALL: true, x86asm.LCALL: true, x86asm.RET: true, x86asm.LRET: true,
	x86asm.IRET: true, x86asm.IRETD: true, x86asm.IRETQ: true, x86asm.SYSRET: true,
	x86asm.SYSEXIT: true, x86asm.INT: true, x86asm.LJMP: true, x86asm.PUSHA: true,
	x86asm.PUSHAD: true, x86asm.POPA: true, x86asm.POPAD: true, x86asm.PUSHF: true,
	x86asm.POPF: true, x86asm.PUSHFD: true, x86asm.POPFD: true,
}

// exec applies the data effect of one instruction. false: rsp becomes
// something the model cannot name.
func (st *state) exec(in x86.Insn) bool {
	inst := in.Inst
	a0, a1 := inst.Args[0], inst.Args[1]
	switch inst.Op {
	case x86asm.PUSH:
		if inst.DataSize == 16 {
			return false
		}
		v := unknown
		switch a := a0.(type) {
		case x86asm.Reg:
			if i, full, ok := gpr(a); ok {
				if !full {
					return false
				}
				v = st.regs[i]
			}
		case x86asm.Mem:
			if inst.MemBytes != 8 {
				return false
			}
			if b, off, ok := st.addr(a, in); ok {
				v = st.load(b, off)
			}
		}
		return st.push(v)
	case x86asm.POP:
		if inst.DataSize == 16 {
			return false
		}
		v, ok := st.pop()
		if !ok {
			return false
		}
		switch a := a0.(type) {
		case x86asm.Reg:
			if i, full, ok := gpr(a); ok {
				if !full {
					return false
				}
				return st.setReg(i, v)
			}
		case x86asm.Mem:
			if inst.MemBytes != 8 {
				return false
			}
			// The address uses rsp after the increment.
			if b, off, ok := st.addr(a, in); ok {
				st.store(b, off, 8, v)
			}
		}
		return true
	case x86asm.PUSHFQ:
		return st.push(unknown)
	case x86asm.POPFQ:
		_, ok := st.pop()
		return ok
	case x86asm.LEAVE:
		if inst.DataSize == 16 || !st.setReg(xRSP, st.regs[xRBP]) {
			return false
		}
		v, ok := st.pop()
		return ok && st.setReg(xRBP, v)
	case x86asm.ADD, x86asm.SUB:
		if r, ok := a0.(x86asm.Reg); ok {
			if i, full, ok := gpr(r); ok && full {
				if imm, ok := a1.(x86asm.Imm); ok && st.regs[i].kind == svReg {
					d := int64(imm)
					if inst.Op == x86asm.SUB {
						d = -d
					}
					st.regs[i].off += d
					return true
				}
			}
		}
	case x86asm.LEA:
		if r, ok := a0.(x86asm.Reg); ok {
			if i, full, ok := gpr(r); ok {
				v := unknown
				if m, ok := a1.(x86asm.Mem); ok && full {
					if b, off, ok := st.addr(m, in); ok {
						v = sval{kind: svReg, base: b, off: off}
					}
				}
				return st.setReg(i, v)
			}
		}
	case x86asm.MOV:
		switch d := a0.(type) {
		case x86asm.Reg:
			if i, full, ok := gpr(d); ok {
				v := unknown
				if full {
					switch s := a1.(type) {
					case x86asm.Reg:
						if j, f2, ok := gpr(s); ok && f2 {
							v = st.regs[j]
						}
					case x86asm.Mem:
						if inst.MemBytes == 8 {
							if b, off, ok := st.addr(s, in); ok {
								v = st.load(b, off)
							}
						}
					}
				}
				return st.setReg(i, v)
			}
		case x86asm.Mem:
			v := unknown
			if s, ok := a1.(x86asm.Reg); ok && inst.MemBytes == 8 {
				if j, full, ok := gpr(s); ok && full {
					v = st.regs[j]
				}
			}
			if b, off, ok := st.addr(d, in); ok {
				st.store(b, off, int64(inst.MemBytes), v)
			}
			return true
		}
	}
	return st.generic(in)
}

// generic applies the conservative effect of any other instruction: what it
// writes becomes unknown.
func (st *state) generic(in x86.Insn) bool {
	inst := in.Inst
	if movesStack[inst.Op] {
		return false
	}
	oneOpImul := inst.Op == x86asm.IMUL && inst.Args[1] == nil
	for idx, arg := range inst.Args {
		if arg == nil {
			break
		}
		written := idx == 0 && !readsFirst[inst.Op] && !oneOpImul
		if idx == 1 && (inst.Op == x86asm.XCHG || inst.Op == x86asm.XADD) {
			written = true
		}
		if !written {
			continue
		}
		switch a := arg.(type) {
		case x86asm.Reg:
			if i, _, ok := gpr(a); ok && !st.setReg(i, unknown) {
				return false
			}
		case x86asm.Mem:
			if b, off, ok := st.addr(a, in); ok {
				st.store(b, off, int64(inst.MemBytes), unknown)
			}
		}
	}
	for _, i := range implicitWrites[inst.Op] {
		st.regs[i] = unknown
	}
	if oneOpImul {
		st.regs[xRAX], st.regs[xRDX] = unknown, unknown
	}
	if stringOps[inst.Op] {
		st.regs[xRSI], st.regs[xRDI], st.regs[xRCX], st.regs[xRAX] = unknown, unknown, unknown, unknown
	}
	return true
}

// walker runs the data-flow analysis over decoded code.
type walker struct {
	u      *Unwinder
	read   target.MemReader
	budget int
	insns  map[uint64]x86.Insn
	states map[uint64]*state
	work   []uint64
	queued map[uint64]bool
}

func newWalker(u *Unwinder, read target.MemReader, budget int) *walker {
	return &walker{u: u, read: read, budget: budget, insns: map[uint64]x86.Insn{},
		states: map[uint64]*state{}, queued: map[uint64]bool{}}
}

var endbr = [][]byte{{0xf3, 0x0f, 0x1e, 0xfa}, {0xf3, 0x0f, 0x1e, 0xfb}}

func (w *walker) decode(addr uint64) (x86.Insn, bool) {
	if in, ok := w.insns[addr]; ok {
		return in, true
	}
	var code [16]byte
	n, _ := w.read(addr, code[:])
	if n <= 0 || n > len(code) {
		return x86.Insn{}, false
	}
	in, err := x86.Decode(code[:n], addr)
	if err != nil || in.Len <= 0 {
		return x86.Insn{}, false
	}
	if in.Inst.Op == 0 {
		// x86asm has no name for endbr64/endbr32 (CET landing pads, the
		// first instruction of most functions): they are nops. Any other
		// nameless instruction has unknown effects.
		isEndbr := false
		for _, e := range endbr {
			if n >= len(e) && bytes.Equal(code[:len(e)], e) {
				isEndbr = true
			}
		}
		if !isEndbr {
			return x86.Insn{}, false
		}
		in.Inst = x86asm.Inst{Op: x86asm.NOP, Len: 4}
		in.Len = 4
	}
	w.insns[addr] = in
	return in, true
}

// flow merges st into the state at addr and queues addr when that changed.
func (w *walker) flow(addr uint64, st *state) bool {
	old, ok := w.states[addr]
	if ok {
		j, ok := join(old, st)
		if !ok {
			return false
		}
		if j.equal(old) {
			return true
		}
		st = j
	}
	w.states[addr] = st
	if !w.queued[addr] {
		w.queued[addr] = true
		w.work = append(w.work, addr)
	}
	return true
}

func (w *walker) next() (uint64, *state, bool) {
	if len(w.work) == 0 {
		return 0, nil, false
	}
	addr := w.work[len(w.work)-1]
	w.work = w.work[:len(w.work)-1]
	w.queued[addr] = false
	return addr, w.states[addr], true
}

// successor runs in on a copy of st and passes the result on. A call is
// stepped over as the ABI has it return, unless what follows it shows that
// it does not: compilers put nothing reachable after a call to a noreturn
// function (abort, __stack_chk_fail), only alignment padding, a trap, or the
// next function. Falling through into the start of another function is not
// a path either: the code there describes another frame.
func (w *walker) successor(in x86.Insn, st *state) bool {
	nst := st.clone()
	fall := func(s *state) bool {
		if w.u.funcStart(in.Next()) {
			return true
		}
		return w.flow(in.Next(), s)
	}
	if in.Kind == x86.FlowCall || in.Kind == x86.FlowIndirectCall {
		if next, ok := w.decode(in.Next()); !ok || isPadding(next) {
			return true
		}
	}
	switch in.Kind {
	case x86.FlowSeq, x86.FlowSyscall:
		return nst.exec(in) && fall(nst)
	case x86.FlowJump:
		return w.flow(in.Target, nst)
	case x86.FlowCondJump:
		if in.Target == 0 || !nst.exec(in) {
			return false
		}
		return w.flow(in.Target, nst) && fall(nst.clone())
	case x86.FlowCall, x86.FlowIndirectCall:
		return nst.call() && fall(nst)
	}
	return false
}

// isPadding reports instructions that only appear where control does not
// flow: alignment nops and traps.
func isPadding(in x86.Insn) bool {
	switch in.Inst.Op {
	case x86asm.NOP, x86asm.INT, x86asm.UD0, x86asm.UD1, x86asm.UD2, x86asm.HLT:
		return true
	}
	return false
}

// synthForward derives the row at pc, code without an FDE, by decoding
// forward to where the code leaves: a jump or fall-through into code that
// has CFI (the row there, shifted by what the stub did), or a ret.
func (u *Unwinder) synthForward(pc uint64, read target.MemReader) (row, bool) {
	w := newWalker(u, read, stubBudget)
	w.flow(pc, identity())
	exits := map[uint64]bool{}
	rets := map[uint64]bool{}
	for {
		addr, st, ok := w.next()
		if !ok {
			break
		}
		if addr != pc {
			if fde, _ := u.fde(addr); fde != nil {
				exits[addr] = true
				continue
			}
		}
		if w.budget--; w.budget < 0 {
			return row{}, false
		}
		in, ok := w.decode(addr)
		if !ok {
			return row{}, false
		}
		switch in.Kind {
		case x86.FlowRet:
			if in.Inst.Op != x86asm.RET || in.Inst.Args[0] != nil {
				return row{}, false // ret imm16, lret, iret
			}
			rets[addr] = true
		case x86.FlowTrap:
			// The path ends in a signal: it leaves no frame to describe.
		default:
			if !w.successor(in, st) {
				return row{}, false
			}
		}
	}
	var rows []row
	for addr := range exits {
		r, ok := u.composeJump(w.states[addr], addr)
		if !ok {
			return row{}, false
		}
		rows = append(rows, r)
	}
	for addr := range rets {
		r, ok := composeRet(w.states[addr])
		if !ok {
			return row{}, false
		}
		rows = append(rows, r)
	}
	return mergeRows(rows)
}

// translate expresses a value known at the exit in terms of the frame at
// the reference PC, as the rule for DWARF register n, given CFA = cfaBase +
// c.
func translate(v sval, n uint64, cfaBase uint8, c int64) frame.DWRule {
	switch v.kind {
	case svReg:
		if v.off == 0 {
			if x86ToDwarf[v.base] == n {
				return frame.DWRule{Rule: frame.RuleSameVal}
			}
			return frame.DWRule{Rule: frame.RuleRegister, Reg: x86ToDwarf[v.base]}
		}
		if v.base == cfaBase {
			return frame.DWRule{Rule: frame.RuleValOffset, Offset: v.off - c}
		}
	case svMem:
		if v.base == cfaBase {
			return frame.DWRule{Rule: frame.RuleOffset, Offset: v.off - c}
		}
	}
	return frame.DWRule{Rule: frame.RuleUndefined}
}

// sane checks what any real frame satisfies: the CFA lies above rsp and the
// return address is read from at or above rsp.
func sane(r row) bool {
	if r.cfa.Rule != frame.RuleCFA {
		return false
	}
	ra := r.regs[dwRIP]
	switch ra.Rule {
	case frame.RuleOffset, frame.RuleRegister:
	default:
		return false
	}
	if r.cfa.Reg == dwRSP {
		if r.cfa.Offset < 8 {
			return false
		}
		if ra.Rule == frame.RuleOffset && r.cfa.Offset+ra.Offset < 0 {
			return false
		}
	}
	return true
}

// composeRet builds the row for a path that leaves by ret: the return
// address is on top of the stack and the CFA is just above it.
func composeRet(st *state) (row, bool) {
	if st == nil {
		return row{}, false
	}
	sp := st.regs[xRSP]
	if sp.kind != svReg {
		return row{}, false
	}
	c := sp.off + 8
	r := row{
		cfa:   frame.DWRule{Rule: frame.RuleCFA, Reg: x86ToDwarf[sp.base], Offset: c},
		regs:  map[uint64]frame.DWRule{},
		ra:    dwRIP,
		synth: true,
	}
	r.regs[dwRIP] = translate(st.load(sp.base, sp.off), dwRIP, sp.base, c)
	for i := range uint8(16) {
		if i == xRSP {
			continue
		}
		n := x86ToDwarf[i]
		if rule := translate(st.regs[i], n, sp.base, c); rule.Rule != frame.RuleSameVal {
			r.regs[n] = rule
		}
	}
	return r, sane(r)
}

// composeJump builds the row for a path that enters code with CFI at addr:
// that code's row, seen from before the stub ran.
func (u *Unwinder) composeJump(st *state, addr uint64) (row, bool) {
	fde, bias := u.fde(addr)
	if st == nil || fde == nil {
		return row{}, false
	}
	cr, err := cfiRow(fde, addr, bias)
	if err != nil || cr.signal || cr.cfa.Rule != frame.RuleCFA || cr.cfa.Reg >= 16 || cr.ra != dwRIP {
		return row{}, false
	}
	y := st.regs[dwarfToX86[cr.cfa.Reg]]
	if y.kind != svReg {
		return row{}, false
	}
	base, c := y.base, y.off+cr.cfa.Offset
	r := row{
		cfa:   frame.DWRule{Rule: frame.RuleCFA, Reg: x86ToDwarf[base], Offset: c},
		regs:  map[uint64]frame.DWRule{},
		ra:    dwRIP,
		synth: true,
	}
	for n := range uint64(nDw) {
		rule, has := cr.regs[n]
		if n == dwRSP && !has {
			continue // the CFA is the caller's rsp
		}
		if !has {
			rule = frame.DWRule{Rule: frame.RuleSameVal}
		}
		var out frame.DWRule
		switch rule.Rule {
		case frame.RuleSameVal:
			if n == dwRIP {
				return row{}, false
			}
			out = translate(st.regs[dwarfToX86[n]], n, base, c)
		case frame.RuleOffset:
			out = translate(st.load(base, c+rule.Offset), n, base, c)
		case frame.RuleValOffset:
			out = rule
		case frame.RuleRegister:
			if rule.Reg < 16 {
				out = translate(st.regs[dwarfToX86[rule.Reg]], n, base, c)
			} else {
				out = frame.DWRule{Rule: frame.RuleUndefined}
			}
		default:
			// Undefined stays so; an expression over the registers at the
			// exit cannot be moved back to the PC.
			out = frame.DWRule{Rule: frame.RuleUndefined}
		}
		if out.Rule != frame.RuleSameVal {
			r.regs[n] = out
		}
	}
	if cr.regs[dwRIP].Rule == frame.RuleUndefined {
		// The stub runs into the outermost frame (_start, a thread entry):
		// there is no caller, which is an answer too.
		return r, r.cfa.Reg != dwRSP || r.cfa.Offset >= 8
	}
	return r, sane(r)
}

func sameRule(a, b frame.DWRule) bool {
	return a.Rule == b.Rule && a.Offset == b.Offset && a.Reg == b.Reg && bytes.Equal(a.Expression, b.Expression)
}

// mergeRows combines the rows of every exit: CFA and return address must
// agree; a register saved differently on different paths is lost.
func mergeRows(rows []row) (row, bool) {
	if len(rows) == 0 {
		return row{}, false
	}
	m := rows[0]
	m.regs = maps.Clone(m.regs)
	for _, r := range rows[1:] {
		if !sameRule(r.cfa, m.cfa) || !sameRule(r.regs[dwRIP], m.regs[dwRIP]) {
			return row{}, false
		}
		for n := range uint64(nDw) {
			a, okA := m.regs[n]
			b, okB := r.regs[n]
			if okA != okB || !sameRule(a, b) {
				m.regs[n] = frame.DWRule{Rule: frame.RuleUndefined}
			}
		}
	}
	return m, true
}

// synthFromEntry derives the row at pc inside a function [entry, end) that
// has no CFI, by interpreting it from its entry, where CFA = rsp+8.
func (u *Unwinder) synthFromEntry(entry, pc, end uint64, read target.MemReader) (row, bool) {
	w := newWalker(u, read, entryBudget)
	w.flow(entry, identity())
	for {
		addr, st, ok := w.next()
		if !ok {
			break
		}
		if addr == pc || addr < entry || addr >= end {
			continue // collected, or the path left the function (tail call)
		}
		if w.budget--; w.budget < 0 {
			return row{}, false
		}
		in, ok := w.decode(addr)
		if !ok {
			return row{}, false
		}
		switch in.Kind {
		case x86.FlowRet, x86.FlowTrap:
		default:
			if !w.successor(in, st) {
				return row{}, false
			}
		}
	}
	return composeEntry(w.states[pc])
}

// composeEntry turns the state at the PC, relative to the function entry,
// into a row relative to the PC.
func composeEntry(st *state) (row, bool) {
	if st == nil {
		return row{}, false
	}
	// Find a register that still holds entry-rsp plus a constant; rsp
	// first, then rbp (a frame pointer survives stack realignment).
	order := []uint8{xRSP, xRBP, 0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	var base uint8
	var k int64
	found := false
	for _, i := range order {
		if v := st.regs[i]; v.kind == svReg && v.base == xRSP {
			base, k, found = i, v.off, true
			break
		}
	}
	if !found {
		return row{}, false
	}
	// CFA = entry rsp + 8 = base - k + 8.
	c := 8 - k
	r := row{
		cfa:   frame.DWRule{Rule: frame.RuleCFA, Reg: x86ToDwarf[base], Offset: c},
		regs:  map[uint64]frame.DWRule{},
		ra:    dwRIP,
		synth: true,
	}
	// The return address sits at entry rsp unless something overwrote it.
	if st.load(xRSP, 0) != (sval{kind: svMem, base: xRSP}) {
		return row{}, false
	}
	r.regs[dwRIP] = frame.DWRule{Rule: frame.RuleOffset, Offset: -8}
	for i := range uint8(16) {
		if i == xRSP {
			continue
		}
		n := x86ToDwarf[i]
		want := sval{kind: svReg, base: i}
		if st.regs[i] == want {
			continue
		}
		rule := frame.DWRule{Rule: frame.RuleUndefined}
		for j := range uint8(16) {
			if st.regs[j] == want {
				rule = frame.DWRule{Rule: frame.RuleRegister, Reg: x86ToDwarf[j]}
				break
			}
		}
		if rule.Rule == frame.RuleUndefined {
			for key, v := range st.slots {
				if v == want && key.base == xRSP {
					// entry rsp + off = CFA - 8 + off
					rule = frame.DWRule{Rule: frame.RuleOffset, Offset: key.off - 8}
					break
				}
			}
		}
		r.regs[n] = rule
	}
	if base == xRSP && st.regs[xRSP].off > 0 {
		return row{}, false // above the return address: not inside this frame
	}
	return r, sane(r)
}

// entryRow is the row at a function's first instruction.
func entryRow() row {
	return row{
		cfa:   frame.DWRule{Rule: frame.RuleCFA, Reg: dwRSP, Offset: 8},
		regs:  map[uint64]frame.DWRule{dwRIP: {Rule: frame.RuleOffset, Offset: -8}},
		ra:    dwRIP,
		synth: true,
	}
}

// synthesize finds rules for a frame whose PC has no usable CFI: forward
// to the stub's exit first, then from the entry of the function symbol
// that contains it.
func (u *Unwinder) synthesize(f *Frame, read target.MemReader) (row, bool) {
	// For a return address whose call ends a CFI-less stub, PC itself may
	// start the next function; decoding from there would describe the wrong
	// code.
	if fde, _ := u.fde(f.PC); !f.retAddr || fde == nil {
		if r, ok := u.synthForward(f.PC, read); ok {
			return r, true
		}
	}
	// Abort handlers in __rseq_failure are entered by a jump from their
	// critical section, never by a call: their symbols (when they have
	// any) do not start frames.
	if s, ok := u.symbolAt(f.LookupPC()); ok && !s.stub {
		if f.PC == s.start {
			return entryRow(), true
		}
		if r, ok := u.synthFromEntry(s.start, f.PC, s.end, read); ok {
			return r, true
		}
	}
	return row{}, false
}
