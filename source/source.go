// Package source is the source-level layer over the stepping core: symbol
// and CFI tables kept in step with the objects the engine loads,
// source-line stepping (next, step, finish) built on the stepper's range
// steps, and instruction and stub naming.
package source

import (
	"fmt"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/unwind"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/arch/x86/x86asm"
)

// Core bundles the engine with the tables a source-level front end needs.
// Like the engine, its methods must run inside Eng.Do.
type Core struct {
	T      target.Target
	Eng    *stepper.Engine
	Syms   *symbols.Table
	Unwind *unwind.Unwinder
	loaded map[string]uint64 // path → bias of what Syms and Unwind hold
}

// New returns a core over eng with empty tables; call Sync to fill them.
func New(eng *stepper.Engine) *Core {
	return &Core{T: eng.Target(), Eng: eng, Syms: &symbols.Table{}, Unwind: unwind.New(), loaded: map[string]uint64{}}
}

// vdsoImageSize bounds the in-memory vDSO image read for its symbols and
// CFI; the vDSO is two pages on current kernels.
const vdsoImageSize = 8192

// Sync loads symbols and CFI for the objects the engine knows that the
// tables do not, and forgets objects the engine dropped (dlclose). It
// reports whether anything changed, so callers can re-resolve pending
// breakpoints.
func (c *Core) Sync() bool {
	changed := false
	seen := map[string]bool{}
	for _, o := range c.Eng.Objects() {
		seen[o.Path] = true
		if bias, ok := c.loaded[o.Path]; ok && bias == o.Bias {
			continue
		}
		c.loaded[o.Path] = o.Bias
		changed = true
		if o.Path == "[vdso]" {
			base := c.Eng.Auxv()[auxv.AtSysinfoEhdr]
			img := make([]byte, vdsoImageSize)
			if n, _ := c.T.ReadMemory(base, img); n > 0 {
				c.Syms.LoadImage(o.Path, img[:n], o.Bias)
				c.Unwind.AddImage(o.Path, img[:n], base)
			}
			continue
		}
		// An object without symbols or CFI is still stepped; it just has no
		// names or frames, so errors are not fatal here.
		c.Syms.Load(o.Path, o.Bias)
		c.Unwind.AddObject(o.Path, o.Bias)
	}
	for path := range c.loaded {
		if !seen[path] {
			delete(c.loaded, path)
			c.Syms.Remove(path)
			c.Unwind.RemoveObject(path)
			changed = true
		}
	}
	return changed
}

// StepLine is a source-line step of tid: next (over) runs calls to their
// return, step enters functions that have line information. Threads other
// than tid do as others says.
func (c *Core) StepLine(tid int, over bool, others stepper.Others) (*stepper.Stop, error) {
	var crossed []stepper.Crossing
	var st *stepper.Stop
	for guard := 0; guard < 10000; guard++ {
		r, err := c.T.Regs(tid)
		if err != nil {
			return nil, err
		}
		lo, hi, ok := c.Syms.LineRange(r.Rip)
		if !ok {
			// No line information: leave the function (gdb's step-out of
			// code without lines), or step one instruction.
			if guard == 0 {
				st, err = c.Finish(tid, others)
			} else {
				st, err = c.Eng.StepInstruction(tid, 0, others)
			}
			if err != nil {
				return nil, err
			}
			crossed = append(crossed, st.Crossed...)
			st.Crossed = crossed
			if st.Kind != stepper.StopStep || guard > 0 {
				return st, nil
			}
			continue
		}
		st, err = c.Eng.RangeStep(tid, lo, hi, 0, others, over)
		if err != nil {
			return nil, err
		}
		crossed = append(crossed, st.Crossed...)
		st.Crossed = crossed
		if st.Kind != stepper.StopStep {
			return st, nil
		}
		pc := st.PC
		if !over {
			if f, ok := c.Syms.Func(pc); ok && f.Lo == pc {
				if c.Syms.HasLines(pc) {
					// Entered a function: stop after its prologue.
					after := c.Syms.AfterPrologue(f)
					if after != pc {
						st2, err := c.Eng.RunTo(tid, after, others)
						if err != nil {
							return nil, err
						}
						st2.Crossed = append(crossed, st2.Crossed...)
						return st2, nil
					}
					return st, nil
				}
				// A function without lines (libc, PLT): run it to its return.
				st2, err := c.Finish(tid, others)
				if err != nil {
					return nil, err
				}
				crossed = append(crossed, st2.Crossed...)
				if st2.Kind != stepper.StopStep {
					st2.Crossed = crossed
					return st2, nil
				}
				continue
			}
		}
		if c.Syms.HasLines(pc) && !c.Syms.IsStmtStart(pc) {
			// Back in a caller mid-statement: finish that line too.
			continue
		}
		return st, nil
	}
	return st, nil
}

// Finish runs the current function of tid to its return (gdb's finish).
func (c *Core) Finish(tid int, others stepper.Others) (*stepper.Stop, error) {
	r, err := c.T.Regs(tid)
	if err != nil {
		return nil, err
	}
	ret, cfa, ok := c.Unwind.ReturnAddress(r, c.T.ReadMemory)
	if !ok {
		return nil, fmt.Errorf("cannot find the return address at %#x", r.Rip)
	}
	return c.Eng.StepOut(tid, ret, cfa, others)
}

// NextInstruction steps one instruction of tid, running a call to its
// return (gdb's nexti).
func (c *Core) NextInstruction(tid int, others stepper.Others) (*stepper.Stop, error) {
	r, err := c.T.Regs(tid)
	if err != nil {
		return nil, err
	}
	var code [16]byte
	n, _ := c.T.ReadMemory(r.Rip, code[:])
	in, err := x86.Decode(code[:n], r.Rip)
	if err == nil && (in.Kind == x86.FlowCall || in.Kind == x86.FlowIndirectCall) {
		return c.Eng.RangeStep(tid, r.Rip, in.Next(), 0, others, true)
	}
	return c.Eng.StepInstruction(tid, 0, others)
}

// GNUSyntax renders an instruction in AT&T syntax with symbolic targets.
func GNUSyntax(in x86.Insn, syms *symbols.Table) string {
	return x86asm.GNUSyntax(in.Inst, in.Addr, func(addr uint64) (string, uint64) {
		// Sizeless symbols (_fini) would otherwise claim every address
		// after them, data included.
		if f, ok := syms.Func(addr); ok && (addr < f.Hi || addr == f.Lo) {
			return f.Name, f.Lo
		}
		return "", 0
	})
}

// StubName names code without a function symbol that holds pc, such as an
// abort handler in __rseq_failure ("inc_call.rseq_abort", the name gdb
// sees in the synthesized debug object), and pc's offset in it.
func (c *Core) StubName(pc uint64) (string, uint64, bool) {
	return c.Unwind.StubName(c.Eng.Index(), pc, c.T.ReadMemory)
}

// Describe is pc as "function+offset", naming stubs as StubName does.
func (c *Core) Describe(pc uint64) string {
	if _, ok := c.Syms.Func(pc); !ok {
		if name, off, ok := c.StubName(pc); ok {
			if off == 0 {
				return name
			}
			return fmt.Sprintf("%s+%d", name, off)
		}
	}
	return c.Syms.Describe(pc)
}
