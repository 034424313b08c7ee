// Package unwind computes call stacks: CFI read from .eh_frame and
// .debug_frame, rules for code without CFI, and a frame unwinder.
package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
)

// Frame is one frame of a call stack.
type Frame struct {
	PC, CFA     uint64
	Regs        target.Regs
	Synthesized bool // rules did not come from CFI
	Signal      bool // the frame was interrupted by a signal, not a call
}

type object struct {
	name   string
	lo, hi uint64
	fdes   frame.FrameDescriptionEntries
}

// Unwinder holds the CFI of the loaded objects.
type Unwinder struct {
	objs []*object
}

// New returns an empty unwinder.
func New() *Unwinder { return &Unwinder{} }

// AddObject reads an object's CFI; bias is added to its addresses.
func (u *Unwinder) AddObject(path string, bias uint64) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading CFI of %s: %w", path, err)
	}
	defer f.Close()
	return u.add(path, f, bias)
}

// AddImage reads CFI from an in-memory ELF image loaded at base (the vDSO).
func (u *Unwinder) AddImage(name string, img []byte, base uint64) error {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("reading CFI of %s: %w", name, err)
	}
	first := ^uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < first {
			first = p.Vaddr
		}
	}
	return u.add(name, f, base-first)
}

// RemoveObject forgets an object.
func (u *Unwinder) RemoveObject(name string) {
	for i, o := range u.objs {
		if o.name == name {
			u.objs = append(u.objs[:i], u.objs[i+1:]...)
			return
		}
	}
}

func (u *Unwinder) add(name string, f *elf.File, bias uint64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reading CFI of %s: malformed (%v)", name, p)
		}
	}()
	u.RemoveObject(name)
	o := &object{name: name, lo: ^uint64(0)}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			o.lo = min(o.lo, p.Vaddr+bias)
			o.hi = max(o.hi, p.Vaddr+p.Memsz+bias)
		}
	}
	if s := f.Section(".eh_frame"); s != nil {
		if data, err := s.Data(); err == nil {
			// Parse adds staticBase to pc-relative addresses computed from the
			// link-time section address.
			fdes, err := frame.Parse(data, binary.LittleEndian, bias, 8, s.Addr)
			if err == nil {
				o.fdes = fdes
			}
		}
	}
	if s := f.Section(".debug_frame"); s != nil {
		if data, err := s.Data(); err == nil {
			if fdes, err := frame.Parse(data, binary.LittleEndian, bias, 8, 0); err == nil {
				o.fdes = append(o.fdes, fdes...)
			}
		}
	}
	// delve's Parse returns FDEs in file order while FDEForPC binary-searches
	// them: sort first.
	sort.Slice(o.fdes, func(i, j int) bool { return o.fdes[i].Begin() < o.fdes[j].Begin() })
	u.objs = append(u.objs, o)
	return nil
}

func (u *Unwinder) fde(pc uint64) *frame.FrameDescriptionEntry {
	for _, o := range u.objs {
		if pc < o.lo || pc >= o.hi {
			continue
		}
		i := sort.Search(len(o.fdes), func(i int) bool { return o.fdes[i].Begin() > pc }) - 1
		if i >= 0 && o.fdes[i].Cover(pc) {
			return o.fdes[i]
		}
	}
	return nil
}

// DWARF register numbers on x86-64.
func regPtr(r *target.Regs, n uint64) *uint64 {
	switch n {
	case 0:
		return &r.Rax
	case 1:
		return &r.Rdx
	case 2:
		return &r.Rcx
	case 3:
		return &r.Rbx
	case 4:
		return &r.Rsi
	case 5:
		return &r.Rdi
	case 6:
		return &r.Rbp
	case 7:
		return &r.Rsp
	case 8:
		return &r.R8
	case 9:
		return &r.R9
	case 10:
		return &r.R10
	case 11:
		return &r.R11
	case 12:
		return &r.R12
	case 13:
		return &r.R13
	case 14:
		return &r.R14
	case 15:
		return &r.R15
	case 16:
		return &r.Rip
	}
	return nil
}

func readU64(read regions.MemReader, addr uint64) (uint64, bool) {
	var b [8]byte
	if n, err := read(addr, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

// restoreRt is __restore_rt: mov $15,%rax; syscall.
var restoreRt = []byte{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}

// Step computes the caller's frame of f. ok is false at the outermost
// frame or when no rule can be justified.
func (u *Unwinder) Step(f Frame, first bool, read regions.MemReader) (Frame, bool) {
	var code [9]byte
	if n, _ := read(f.PC, code[:]); n == 9 && bytes.Equal(code[:], restoreRt) {
		return signalFrame(f, read)
	}
	lookup := f.PC
	if !first && !f.Signal {
		lookup-- // a return address can be one past the caller's function
	}
	if fde := u.fde(lookup); fde != nil {
		if next, ok := applyCFI(fde, lookup, f, read); ok {
			return next, true
		}
	}
	// No CFI. At a function's first instruction the return address is on
	// top of the stack; otherwise fall back to the frame-pointer chain.
	if first {
		if ret, ok := readU64(read, f.Regs.Rsp); ok && u.fde(ret-1) != nil {
			next := Frame{PC: ret, CFA: f.Regs.Rsp + 8, Regs: f.Regs, Synthesized: true}
			next.Regs.Rsp, next.Regs.Rip = next.CFA, ret
			return next, true
		}
	}
	rbp := f.Regs.Rbp
	if rbp > f.Regs.Rsp && rbp-f.Regs.Rsp < 1<<24 {
		saved, ok1 := readU64(read, rbp)
		ret, ok2 := readU64(read, rbp+8)
		if ok1 && ok2 && ret != 0 {
			next := Frame{PC: ret, CFA: rbp + 16, Regs: f.Regs, Synthesized: true}
			next.Regs.Rbp, next.Regs.Rsp, next.Regs.Rip = saved, rbp+16, ret
			return next, true
		}
	}
	return Frame{}, false
}

func applyCFI(fde *frame.FrameDescriptionEntry, pc uint64, f Frame, read regions.MemReader) (next Frame, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
		}
	}()
	ctx, err := fde.EstablishFrame(pc)
	if err != nil || ctx == nil {
		return Frame{}, false
	}
	if ctx.CFA.Rule != frame.RuleCFA {
		return Frame{}, false
	}
	base := regPtr(&f.Regs, ctx.CFA.Reg)
	if base == nil {
		return Frame{}, false
	}
	cfa := uint64(int64(*base) + ctx.CFA.Offset)
	next = Frame{CFA: cfa, Regs: f.Regs}
	for reg, rule := range ctx.Regs {
		p := regPtr(&next.Regs, reg)
		if p == nil {
			continue
		}
		switch rule.Rule {
		case frame.RuleOffset:
			if v, ok := readU64(read, uint64(int64(cfa)+rule.Offset)); ok {
				*p = v
			}
		case frame.RuleValOffset:
			*p = uint64(int64(cfa) + rule.Offset)
		case frame.RuleRegister:
			if q := regPtr(&f.Regs, rule.Reg); q != nil {
				*p = *q
			}
		}
	}
	ra, ok := ctx.Regs[ctx.RetAddrReg]
	if !ok || ra.Rule != frame.RuleOffset {
		return Frame{}, false
	}
	ret, ok := readU64(read, uint64(int64(cfa)+ra.Offset))
	if !ok {
		return Frame{}, false
	}
	next.PC, next.Regs.Rip, next.Regs.Rsp = ret, ret, cfa
	return next, true
}

// signalFrame recovers the interrupted registers from the rt_sigframe:
// the ucontext follows the return address, and its gregs start at +40.
func signalFrame(f Frame, read regions.MemReader) (Frame, bool) {
	var g [23 * 8]byte
	if n, _ := read(f.Regs.Rsp+40, g[:]); n != len(g) {
		return Frame{}, false
	}
	v := func(i int) uint64 { return binary.LittleEndian.Uint64(g[i*8:]) }
	r := f.Regs
	r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15 = v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7)
	r.Rdi, r.Rsi, r.Rbp, r.Rbx, r.Rdx, r.Rax, r.Rcx, r.Rsp, r.Rip = v(8), v(9), v(10), v(11), v(12), v(13), v(14), v(15), v(16)
	return Frame{PC: r.Rip, CFA: r.Rsp, Regs: r, Signal: true}, true
}

// Frames walks the stack from regs, at most max frames.
func (u *Unwinder) Frames(regs target.Regs, read regions.MemReader, max int) ([]Frame, error) {
	frames := []Frame{{PC: regs.Rip, CFA: regs.Rsp, Regs: regs}}
	for len(frames) < max {
		cur := frames[len(frames)-1]
		next, ok := u.Step(cur, len(frames) == 1, read)
		if !ok || next.PC == 0 {
			break
		}
		if len(frames) > 1 && next.CFA <= cur.CFA && !next.Signal {
			break // the stack must grow towards the caller
		}
		frames = append(frames, next)
	}
	return frames, nil
}

// ReturnAddress returns where the function at regs returns to and its CFA
// (the stack pointer after the return), for `finish`.
func (u *Unwinder) ReturnAddress(regs target.Regs, read regions.MemReader) (ret, cfa uint64, ok bool) {
	next, ok := u.Step(Frame{PC: regs.Rip, CFA: regs.Rsp, Regs: regs}, true, read)
	if !ok || next.Signal {
		return 0, 0, false
	}
	return next.PC, next.CFA, true
}
