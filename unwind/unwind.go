// Package unwind computes call stacks: CFI read from .eh_frame/.debug_frame,
// CFI synthesized for stubs and vDSO code that have none, and a frame
// unwinder.
package unwind

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/rseqdbg/rseqdbg/target"
)

// Frame is one frame of a call stack. CFA, Synthesized and Signal describe
// the row used at this frame's PC, so they are only known once the unwinder
// has looked at the frame (the last frame of a walk may have CFA 0).
type Frame struct {
	PC, CFA uint64
	// Regs holds the registers of this frame: rip and rsp always, the
	// callee-saved registers recovered from the callee's row, and the rest
	// copied from the callee (their real values are lost).
	Regs target.Regs
	// Synthesized: the rules at PC came from decoding code (stubs, code
	// without CFI) or from the frame-pointer chain, not from CFI.
	Synthesized bool
	// Signal: the frame is a signal trampoline (__restore_rt, an 'S' CIE);
	// the frame above it was interrupted, not calling.
	Signal bool

	// retAddr: PC is a return address, so the call that owns the frame ends
	// just before PC and rules must be looked up at PC-1 (a call can be the
	// last instruction of a function).
	retAddr bool
}

// LookupPC is the address to use for symbols and lines of this frame: PC for
// the innermost frame, for frames interrupted by a signal and for signal
// trampolines (entered by a handler's return, not a call), PC-1 for frames
// that called something.
func (f Frame) LookupPC() uint64 {
	if f.retAddr && !f.Signal && f.PC > 0 {
		return f.PC - 1
	}
	return f.PC
}

// Unwinder holds the CFI and function symbols of the loaded objects. It is
// safe for concurrent use.
type Unwinder struct {
	mu   sync.RWMutex
	objs []*object
}

// New returns an unwinder that knows no object yet.
func New() *Unwinder { return &Unwinder{} }

// DWARF register numbers on x86-64 (System V psABI, figure 3.36).
const (
	dwRSP = 7
	dwRBP = 6
	dwRIP = 16
	nDw   = 17
)

// row is the unwind rule set at one PC, in DWARF terms whatever its source.
type row struct {
	cfa frame.DWRule
	// regs maps DWARF register numbers to rules; an absent register keeps
	// its value (same value), as in DWARF.
	regs   map[uint64]frame.DWRule
	ra     uint64 // return-address column
	bias   uint64 // static base of the object, for DW_OP_addr
	signal bool
	synth  bool
}

// stepResult says why a step ended.
type stepResult uint8

const (
	stepOK stepResult = iota
	// stepOutermost: the rules say there is no caller (undefined return
	// address, as glibc marks _start and thread entry points).
	stepOutermost
	stepUnknown
)

func toDwarf(r *target.Regs) [nDw]uint64 {
	return [nDw]uint64{r.Rax, r.Rdx, r.Rcx, r.Rbx, r.Rsi, r.Rdi, r.Rbp, r.Rsp,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15, r.Rip}
}

func setDwarf(r *target.Regs, n uint64, v uint64) {
	p := [nDw]*uint64{&r.Rax, &r.Rdx, &r.Rcx, &r.Rbx, &r.Rsi, &r.Rdi, &r.Rbp, &r.Rsp,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15, &r.Rip}
	if n < nDw {
		*p[n] = v
	}
}

func readU64(read target.MemReader, addr uint64) (uint64, bool) {
	var b [8]byte
	if n, err := read(addr, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

// opReader adapts a MemReader to pkg/dwarf/op, which takes the arguments in
// the other order and trusts a nil error to mean a full read.
func opReader(read target.MemReader) op.ReadMemoryFunc {
	return func(buf []byte, addr uint64) (int, error) {
		n, err := read(addr, buf)
		if err == nil && n < len(buf) {
			err = fmt.Errorf("short read at %#x: %d of %d bytes", addr, n, len(buf))
		}
		return n, err
	}
}

// evalExpr runs a DWARF expression against the frame's registers. When
// pushCFA is set the CFA is pushed first, as DWARF 5 §6.4.2.3 requires for
// DW_CFA_expression and DW_CFA_val_expression: delve's own stack walker
// (proc/stack.go executeFrameRegRule) calls op.ExecuteStackProgram on the
// bare expression, so glibc's rules that start from the CFA would read the
// wrong stack slot. There is no API to seed the stack, so the expression is
// prefixed with DW_OP_call_frame_cfa.
func evalExpr(expr []byte, regs *[nDw]uint64, cfa uint64, pushCFA bool, bias uint64, read target.MemReader) (v uint64, ok bool) {
	defer func() {
		// pkg/dwarf/op indexes its stack without checking on some opcodes
		// (DW_OP_plus_uconst on an empty stack): malformed CFI must not
		// bring the debugger down.
		if recover() != nil {
			ok = false
		}
	}()
	dregs := make([]*op.DwarfRegister, nDw)
	for i := range dregs {
		dregs[i] = op.DwarfRegisterFromUint64(regs[i])
	}
	dr := op.NewDwarfRegisters(bias, dregs, binary.LittleEndian, dwRIP, dwRSP, dwRBP, 0)
	if pushCFA {
		if cfa == 0 {
			return 0, false
		}
		dr.CFA = int64(cfa)
		expr = append([]byte{byte(op.DW_OP_call_frame_cfa)}, expr...)
	}
	res, pieces, err := op.ExecuteStackProgram(*dr, expr, 8, opReader(read))
	if err != nil || pieces != nil {
		return 0, false
	}
	return uint64(res), true
}

// apply evaluates r in frame f and returns f's CFA and its caller.
func apply(r row, f *Frame, read target.MemReader) (cfa uint64, next Frame, res stepResult) {
	regs := toDwarf(&f.Regs)
	switch r.cfa.Rule {
	case frame.RuleCFA:
		if r.cfa.Reg >= nDw {
			return 0, Frame{}, stepUnknown
		}
		cfa = regs[r.cfa.Reg] + uint64(r.cfa.Offset)
	case frame.RuleExpression:
		v, ok := evalExpr(r.cfa.Expression, &regs, 0, false, r.bias, read)
		if !ok {
			return 0, Frame{}, stepUnknown
		}
		cfa = v
	default:
		return 0, Frame{}, stepUnknown
	}
	// A caller's frame lies above its callee's stack pointer; only a signal
	// frame may switch stacks (sigaltstack). It is at the stack pointer in
	// code that keeps its return address in a register: glibc's vfork
	// pops it into rdi around the system call, so that the child, which
	// returns on the same stack, cannot overwrite it for the parent.
	if !r.signal && (cfa < f.Regs.Rsp || cfa == f.Regs.Rsp && r.regs[r.ra].Rule != frame.RuleRegister) {
		return 0, Frame{}, stepUnknown
	}
	ra, ok := r.regs[r.ra]
	if !ok || ra.Rule == frame.RuleUndefined {
		return cfa, Frame{}, stepOutermost
	}
	next = Frame{Regs: f.Regs, retAddr: !r.signal}
	next.Regs.Rsp = cfa
	for n, rule := range r.regs {
		if n >= nDw {
			continue
		}
		var v uint64
		switch rule.Rule {
		case frame.RuleOffset:
			if v, ok = readU64(read, cfa+uint64(rule.Offset)); !ok {
				if n == r.ra {
					return cfa, Frame{}, stepUnknown
				}
				continue
			}
		case frame.RuleValOffset:
			v = cfa + uint64(rule.Offset)
		case frame.RuleRegister:
			if rule.Reg >= nDw {
				continue
			}
			v = regs[rule.Reg]
		case frame.RuleExpression, frame.RuleValExpression:
			addr, ok := evalExpr(rule.Expression, &regs, cfa, true, r.bias, read)
			if !ok {
				if n == r.ra {
					return cfa, Frame{}, stepUnknown
				}
				continue
			}
			v = addr
			if rule.Rule == frame.RuleExpression {
				if v, ok = readU64(read, addr); !ok {
					if n == r.ra {
						return cfa, Frame{}, stepUnknown
					}
					continue
				}
			}
		case frame.RuleSameVal:
			continue
		default:
			// Undefined or unsupported: the value is lost; keep the callee's
			// as the best effort the API promises.
			if n == r.ra {
				return cfa, Frame{}, stepUnknown
			}
			continue
		}
		setDwarf(&next.Regs, n, v)
	}
	if r.ra != dwRIP {
		if r.ra >= nDw {
			return cfa, Frame{}, stepUnknown
		}
		next.Regs.Rip = toDwarf(&next.Regs)[r.ra]
	}
	next.PC = next.Regs.Rip
	if next.PC == 0 {
		return cfa, Frame{}, stepOutermost
	}
	return cfa, next, stepOK
}

// step fills in f's CFA, Synthesized and Signal and returns its caller.
func (u *Unwinder) step(f *Frame, read target.MemReader) (Frame, stepResult) {
	if r, ok := u.rowAt(f, read); ok {
		cfa, next, res := apply(r, f, read)
		if res != stepUnknown {
			f.CFA, f.Synthesized, f.Signal = cfa, r.synth, r.signal
			return next, res
		}
	}
	return rbpChain(f, read)
}

// rowAt finds the rules at f's PC: a signal trampoline by its code, then
// CFI, then synthesis from the code.
func (u *Unwinder) rowAt(f *Frame, read target.MemReader) (row, bool) {
	// The trampoline is recognised by its bytes before any CFI lookup: its
	// frame's PC is the handler's return address, and PC-1 may fall in
	// whatever function precedes a restorer that has no CFI of its own.
	if isSigreturn(f.PC, read) {
		return sigreturnRow(), true
	}
	pc := f.LookupPC()
	if fde, bias := u.fde(pc); fde != nil {
		if r, err := cfiRow(fde, pc, bias); err == nil {
			return r, true
		}
	}
	return u.synthesize(f, read)
}

// rbpChain is the last resort: the frame-pointer convention, believed only
// when rbp points into the stack above rsp.
func rbpChain(f *Frame, read target.MemReader) (Frame, stepResult) {
	rbp, rsp := f.Regs.Rbp, f.Regs.Rsp
	const maxFrame = 1 << 24
	if rbp <= rsp || rbp-rsp > maxFrame || rbp&7 != 0 {
		return Frame{}, stepUnknown
	}
	saved, ok1 := readU64(read, rbp)
	ret, ok2 := readU64(read, rbp+8)
	if !ok1 || !ok2 {
		return Frame{}, stepUnknown
	}
	f.CFA, f.Synthesized, f.Signal = rbp+16, true, false
	if ret == 0 {
		return Frame{}, stepOutermost
	}
	next := Frame{PC: ret, Regs: f.Regs, retAddr: true}
	next.Regs.Rbp, next.Regs.Rsp, next.Regs.Rip = saved, rbp+16, ret
	return next, stepOK
}

// Frames walks the stack from regs and returns at most max frames, frame 0
// being regs itself. The walk stops at a zero PC, when the CFA stops
// growing, at max, or when no rule can be determined; none of these is an
// error.
func (u *Unwinder) Frames(regs target.Regs, read target.MemReader, max int) ([]Frame, error) {
	if max < 1 {
		return nil, fmt.Errorf("unwinding from %#x: max frames %d < 1", regs.Rip, max)
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	cur := Frame{PC: regs.Rip, Regs: regs}
	var frames []Frame
	for len(frames) < max {
		next, res := u.step(&cur, read)
		if n := len(frames); n > 0 {
			prev := frames[n-1]
			// A CFA that does not grow means a bad rule or a corrupt stack;
			// the frame's PC is still right, its own rules are suspect. A
			// signal frame may sit on another stack (sigaltstack).
			if !prev.Signal && !cur.Signal && cur.CFA != 0 && cur.CFA <= prev.CFA {
				cur.CFA, cur.Synthesized, cur.Signal = 0, false, false
				frames = append(frames, cur)
				break
			}
		}
		frames = append(frames, cur)
		if res != stepOK {
			break
		}
		cur = next
	}
	return frames, nil
}

// Step returns the caller of f, with its own CFA, Synthesized and Signal
// filled in when its rules are known. f is frame 0 when built from a
// thread's registers (Frame{PC: regs.Rip, Regs: regs}) or a frame returned
// by Frames or Step.
func (u *Unwinder) Step(f Frame, read target.MemReader) (Frame, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	next, res := u.step(&f, read)
	if res != stepOK {
		return Frame{}, false
	}
	probe := next
	if _, res := u.step(&probe, read); res != stepUnknown {
		next.CFA, next.Synthesized, next.Signal = probe.CFA, probe.Synthesized, probe.Signal
	}
	return next, true
}

// CFA returns the canonical frame address of the function at regs (a
// frame base for its variables). A rule on registers alone reads no
// memory, which a condition decided at every hit of a hot breakpoint
// would otherwise pay for; other rules fall back to ReturnAddress. A
// signal trampoline has none.
func (u *Unwinder) CFA(regs target.Regs, read target.MemReader) (uint64, bool) {
	u.mu.RLock()
	f := Frame{PC: regs.Rip, Regs: regs}
	r, ok := u.rowAt(&f, read)
	u.mu.RUnlock()
	if ok && !r.signal && r.cfa.Rule == frame.RuleCFA && r.cfa.Reg < nDw {
		d := toDwarf(&f.Regs)
		if cfa := d[r.cfa.Reg] + uint64(r.cfa.Offset); cfa > regs.Rsp {
			return cfa, true
		}
	}
	_, cfa, ok := u.ReturnAddress(regs, read)
	return cfa, ok
}

// ReturnAddress returns where the function at regs returns to and its CFA,
// which is the stack pointer right after that return (what `finish` waits
// for). A signal trampoline has no return address.
func (u *Unwinder) ReturnAddress(regs target.Regs, read target.MemReader) (ret, cfa uint64, ok bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	f := Frame{PC: regs.Rip, Regs: regs}
	next, res := u.step(&f, read)
	if res != stepOK || f.Signal {
		return 0, 0, false
	}
	return next.PC, f.CFA, true
}
