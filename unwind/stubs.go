package unwind

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
)

// Entry is where code without CFI is entered that a debugger should be
// able to unwind from: an abort handler, a jump stub, an exit target.
type Entry struct {
	// Name is what the code is called in backtraces; by convention the
	// owner's name and what the code is ("inc_call.rseq_abort").
	Name string
	PC   uint64
}

// SynthFunc is code without CFI as the unwinder describes it to a
// debugger: a named extent and the rows synthesized for it.
type SynthFunc struct {
	Name   string
	Lo, Hi uint64
	// Rows are sorted and do not overlap. Instructions whose effect could
	// not be determined have none: a debugger falls back on its own
	// heuristics there rather than following wrong rules.
	Rows []SynthRow
}

// SynthRow is the rule set for the instructions in [Lo, Hi).
type SynthRow struct {
	Lo, Hi uint64
	r      row
}

// CFA describes the row's CFA rule as "reg+offset" in DWARF register
// numbers (for tests and diagnostics).
func (r SynthRow) CFA() (reg uint64, offset int64) { return r.r.cfa.Reg, r.r.cfa.Offset }

// Entries lists where code without CFI may be entered in idx's regions:
// the abort handler of every critical section, exits into code outside the
// section's function (stubs), and the start of every declared region. The
// names are what gdb sees in the synthesized debug object and what the
// other front ends show.
func Entries(idx *regions.Index) []Entry {
	var out []Entry
	for _, r := range idx.All() {
		out = appendEntries(out, r)
	}
	return out
}

func appendEntries(out []Entry, r *regions.Region) []Entry {
	owner, _, _ := strings.Cut(r.Name, "+")
	if owner == "" || strings.HasPrefix(owner, "0x") {
		owner = fmt.Sprintf("rseq_%x", r.Start)
	}
	switch r.Kind {
	case regions.KindCriticalSection:
		if r.Abort != 0 {
			out = append(out, Entry{Name: owner + ".rseq_abort", PC: r.Abort})
		}
		for _, x := range r.Exits {
			if x.Kind == regions.ExitPoint || x.Kind == regions.ExitBranch {
				out = append(out, Entry{Name: owner + ".rseq_exit", PC: x.Addr})
			}
		}
	case regions.KindDeclared:
		out = append(out, Entry{Name: owner, PC: r.Start})
	}
	return out
}

// StubName names the code without CFI that holds pc, if pc is in the
// extent of one of idx's entries ("inc_call.rseq_abort", as gdb names it),
// and gives pc's offset from the start of that code. Only entries shortly
// before pc are described, so the cost does not grow with the number of
// regions.
func (u *Unwinder) StubName(idx *regions.Index, pc uint64, read target.MemReader) (name string, off uint64, ok bool) {
	var near []Entry
	for _, e := range Entries(idx) {
		if e.PC <= pc && pc-e.PC < stubInsns*16 {
			near = append(near, e)
		}
	}
	for _, f := range u.Describe(near, read) {
		if pc >= f.Lo && pc < f.Hi {
			return f.Name, pc - f.Lo, true
		}
	}
	return "", 0, false
}

// stubInsns bounds the instructions one stub may span.
const stubInsns = 256

// Describe synthesizes CFI for the code reached from each entry that has
// no CFI of its own, and for the functions of images (the vDSO) that lack
// it. Entries covered by CFI, or whose first instruction cannot be decoded,
// are left out; two entries into the same code are described once, under
// the first name.
func (u *Unwinder) Describe(entries []Entry, read target.MemReader) []SynthFunc {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var out []SynthFunc
	covered := func(pc uint64) bool {
		for _, f := range out {
			if pc >= f.Lo && pc < f.Hi {
				return true
			}
		}
		return false
	}
	for _, e := range entries {
		if fde, _ := u.fde(e.PC); fde != nil || covered(e.PC) {
			continue
		}
		insns := u.stubExtent(e.PC, read)
		if len(insns) == 0 {
			continue
		}
		f := SynthFunc{Name: e.Name, Lo: insns[0].Addr, Hi: insns[len(insns)-1].Next()}
		for _, in := range insns {
			fr := Frame{PC: in.Addr}
			if r, ok := u.synthesize(&fr, read); ok {
				f.Rows = append(f.Rows, SynthRow{Lo: in.Addr, Hi: in.Next(), r: r})
			}
		}
		out = append(out, f)
	}
	for _, o := range u.objs {
		if o.name != "[vdso]" {
			continue
		}
		for _, s := range o.syms {
			if s.end-s.start < 2 || covered(s.start) {
				continue
			}
			if fde, _ := u.fde(s.start); fde != nil {
				continue
			}
			f := SynthFunc{Name: s.name, Lo: s.start, Hi: s.end}
			for pc := s.start; pc < s.end; {
				var code [16]byte
				n, _ := read(pc, code[:])
				in, err := x86.Decode(code[:max(n, 0)], pc)
				if err != nil {
					break
				}
				var r row
				ok := true
				if pc == s.start {
					r = entryRow()
				} else {
					r, ok = u.synthFromEntry(s.start, pc, s.end, read)
				}
				if ok {
					f.Rows = append(f.Rows, SynthRow{Lo: pc, Hi: in.Next(), r: r})
				}
				pc = in.Next()
			}
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lo < out[j].Lo })
	return out
}

// stubExtent lists the instructions of the code without CFI reachable from
// pc, sorted by address: every path is followed until it enters code with
// CFI, another function, or leaves by ret, a trap or an indirect branch.
func (u *Unwinder) stubExtent(pc uint64, read target.MemReader) []x86.Insn {
	w := newWalker(u, read, stubInsns)
	seen := map[uint64]bool{}
	var out []x86.Insn
	work := []uint64{pc}
	for len(work) > 0 && len(out) < stubInsns {
		a := work[len(work)-1]
		work = work[:len(work)-1]
		if seen[a] {
			continue
		}
		seen[a] = true
		if a != pc {
			if fde, _ := u.fde(a); fde != nil || u.funcStart(a) {
				continue
			}
		}
		in, ok := w.decode(a)
		if !ok {
			continue
		}
		out = append(out, in)
		switch in.Kind {
		case x86.FlowSeq, x86.FlowSyscall:
			work = append(work, in.Next())
		case x86.FlowJump:
			work = append(work, in.Target)
		case x86.FlowCondJump:
			work = append(work, in.Target, in.Next())
		case x86.FlowCall, x86.FlowIndirectCall:
			if next, ok := w.decode(in.Next()); ok && !isPadding(next) {
				work = append(work, in.Next())
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// FuncName names the function symbol containing pc and pc's offset in it,
// from the symbol tables of the objects the unwinder holds.
func (u *Unwinder) FuncName(pc uint64) (name string, off uint64, ok bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	s, ok := u.symbolAt(pc)
	if !ok {
		return "", 0, false
	}
	return s.name, pc - s.start, true
}
