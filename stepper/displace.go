package stepper

import (
	"encoding/binary"
	"errors"
	"log/slog"

	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
	"golang.org/x/arch/x86/x86asm"
)

// Continuing from a breakpoint by displaced execution (design.md,
// "Continuing from a breakpoint"). A thread continued from an int3 used to
// be single-stepped over the lifted int3 with every other thread stopped,
// then resumed: two ptrace stops per hit, which is most of what a
// conditional breakpoint in a hot loop costs. Instead, the instruction
// under the int3 is copied once into a slot of a scratch mapping, followed
// by an absolute jump back to the instruction after it, and the thread is
// resumed at the slot with the others: one stop per hit, and the int3
// never leaves memory, so no other thread can run past it.
//
// Only plain instructions outside every restartable region are displaced:
// no branch, call or system call (their effects depend on where they run),
// no instruction relative to the PC other than a RIP-relative memory
// operand whose displacement can be rewritten for the slot, nothing whose
// next instruction enters a region (that needs a region run). A thread
// still in a slot when a resumption ends is put back where the program's
// own code has it, so no client ever sees a slot address.

const (
	// slotSize holds the longest instruction (15 bytes) and the jump back
	// (jmp *0(%rip) and its 8-byte target).
	slotSize = 32
	// scratchSize is one mapping's worth of slots; maxScratch mappings are
	// made at most, after which breakpoints are stepped over as before.
	scratchSize = 64 << 10
	maxScratch  = 16
)

// displacer holds the scratch mappings and their slots.
type displacer struct {
	// mapper is the target's CodeMapper, or nil: checked once.
	mapper target.CodeMapper
	// base and used are the current mapping and how much of it slots
	// take; mapped lists the mappings made, off is set when one failed.
	base, used uint64
	mapped     []uint64
	off        bool
	// slots are the slots by breakpoint address (0: not displaceable),
	// forgotten with the decoded instructions when code may have changed.
	slots map[uint64]uint64
	// copies describes each slot ever made; slots are never reused, as a
	// signal frame may still return into one.
	copies map[uint64]slotCopy
	// inSlot are the threads resumed into a slot since the last settle;
	// settled counts those found still in one (tests show that the
	// putting back is exercised).
	inSlot  map[int]bool
	settled int
}

// slotCopy is what a slot holds: the instruction at addr, len bytes long.
type slotCopy struct {
	addr uint64
	len  int
}

func newDisplacer(t target.Target) displacer {
	m, _ := t.(target.CodeMapper)
	return displacer{mapper: m, slots: map[uint64]uint64{}, copies: map[uint64]slotCopy{}, inSlot: map[int]bool{}}
}

// forgetSlots drops the slots' addresses when code may have changed; the
// copies stay known, for threads still in one.
func (e *Engine) forgetSlots() { clear(e.disp.slots) }

// displaceOff starts tid, stopped on an int3 outside every region, at the
// copy of the instruction under it, for the coming resumption of every
// thread. It reports false where the thread must be moved off otherwise,
// as when a signal is to be delivered first: its handler must return to
// the program's code, never to a copy (see leaveSlot).
func (e *Engine) displaceOff(tid, sig int) bool {
	d := &e.disp
	if d.mapper == nil || d.off || sig != 0 || e.nonStop || e.exited || e.inspecting[tid] != nil {
		return false
	}
	regs, err := e.t.Regs(tid)
	if err != nil || !e.t.BreakpointAt(regs.Rip) {
		return false
	}
	slot, known := d.slots[regs.Rip]
	if !known {
		var final bool
		slot, final = e.makeSlot(tid, &regs)
		if final {
			d.slots[regs.Rip] = slot
		}
	}
	if slot == 0 {
		return false
	}
	moved := regs
	moved.Rip = slot
	if err := e.t.SetRegs(tid, moved); err != nil {
		return false
	}
	d.inSlot[tid] = true
	e.stats.Displaced++
	return true
}

// makeSlot copies the instruction at regs.Rip into a new slot and returns
// the slot, or 0 when that instruction is not to be displaced; final says
// the answer holds until code changes (there may be room later).
func (e *Engine) makeSlot(tid int, regs *target.Regs) (slot uint64, final bool) {
	pc := regs.Rip
	if e.idx.Lookup(pc) != nil {
		return 0, true
	}
	in, err := e.decode(pc)
	if err != nil || in.Kind != x86.FlowSeq {
		return 0, true
	}
	// A store of a descriptor no table listed publishes a section that
	// starts next: found here as a step would find it, and then run as one.
	e.discover(tid, in, regs)
	if e.idx.Lookup(in.Next()) != nil {
		return 0, true
	}
	for _, a := range in.Inst.Args {
		if _, rel := a.(x86asm.Rel); rel {
			return 0, true
		}
	}
	ripRel := false
	for _, a := range in.Inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			ripRel = true
		}
	}
	if in.Inst.PCRel != 0 && (!ripRel || in.Inst.PCRel != 4) {
		return 0, true
	}
	code := make([]byte, in.Len, slotSize)
	if n, _ := e.t.ReadMemory(pc, code); n != in.Len {
		return 0, true
	}
	at := e.slotSpace(tid, pc)
	if at == 0 {
		return 0, e.disp.off
	}
	if ripRel {
		off := in.Inst.PCRelOff
		if off < 0 || off+4 > in.Len {
			return 0, true
		}
		ref := int64(in.Next()) + int64(int32(binary.LittleEndian.Uint32(code[off:])))
		disp := ref - int64(at+uint64(in.Len))
		if disp != int64(int32(disp)) {
			// Too far from the data it addresses.
			return 0, true
		}
		binary.LittleEndian.PutUint32(code[off:], uint32(int32(disp)))
	}
	code = append(code, 0xff, 0x25, 0, 0, 0, 0) // jmp *0(%rip)
	code = binary.LittleEndian.AppendUint64(code, in.Next())
	if n, err := e.t.WriteMemory(at, code); err != nil || n != len(code) {
		slog.Debug("writing a displaced instruction", "at", at, "err", err)
		return 0, true
	}
	e.disp.copies[at] = slotCopy{addr: pc, len: in.Len}
	return at, true
}

// slotSpace returns room for a slot, mapping scratch memory as needed, near
// pc when it can so that RIP-relative operands reach their data.
func (e *Engine) slotSpace(tid int, pc uint64) uint64 {
	d := &e.disp
	if d.base == 0 || d.used+slotSize > scratchSize {
		if len(d.mapped) >= maxScratch {
			d.off = true
			return 0
		}
		// Below the code it serves: above an executable lies its heap,
		// which a mapping there would stop from growing.
		var hint uint64
		if pc > 1<<30 {
			hint = (pc &^ (scratchSize - 1)) - 1<<28
		}
		base, err := e.disp.mapper.MapCode(tid, hint, scratchSize)
		if err != nil {
			slog.Debug("no scratch memory for displaced execution", "err", err)
			d.off = !errors.Is(err, target.ErrNotNow)
			return 0
		}
		d.base, d.used = base, 0
		d.mapped = append(d.mapped, base)
	}
	at := d.base + d.used
	d.used += slotSize
	return at
}

// leaveSlot puts tid, if it is in a copy, where the program's own code has
// it: before the instruction, back on the breakpoint it was moved off
// (onBreakpoint), or after it; pc is where it now is (0: not moved). A
// signal is never delivered in a copy: the handler's frame would return
// there, after the thread is no longer known to be in one.
func (e *Engine) leaveSlot(tid int) (pc uint64, onBreakpoint bool) {
	d := &e.disp
	if !d.inSlot[tid] {
		return 0, false
	}
	delete(d.inSlot, tid)
	regs, err := e.t.Regs(tid)
	if err != nil {
		return 0, false
	}
	slot := regs.Rip &^ (slotSize - 1)
	c, ok := d.copies[slot]
	if !ok {
		return 0, false
	}
	switch regs.Rip - slot {
	case 0:
		regs.Rip = c.addr
	case uint64(c.len):
		regs.Rip = c.addr + uint64(c.len)
	default:
		return 0, false
	}
	if err := e.t.SetRegs(tid, regs); err != nil {
		return 0, false
	}
	d.settled++
	return regs.Rip, regs.Rip == c.addr
}

// settleDisplaced takes every thread still in a copy out of it (leaveSlot)
// before a resumption that displaced threads reports st. One left on its
// breakpoint counts as having reported it, so that resuming it steps over
// the int3 instead of hitting it a second time.
func (e *Engine) settleDisplaced(st *Stop) {
	if e.exited {
		clear(e.disp.inSlot)
		return
	}
	for tid := range e.disp.inSlot {
		pc, onBreakpoint := e.leaveSlot(tid)
		if onBreakpoint {
			e.reported[tid] = pc
		}
		if pc != 0 && st != nil && st.Tid == tid {
			st.PC = pc
		}
	}
}

// unmapScratch takes the scratch mappings out of a process about to be let
// go: no thread is in a copy then (settleDisplaced), and no signal frame
// returns into one (leaveSlot).
func (e *Engine) unmapScratch() {
	d := &e.disp
	if len(d.mapped) == 0 || e.exited {
		return
	}
	threads := e.t.Threads()
	if len(threads) == 0 {
		return
	}
	for _, base := range d.mapped {
		if err := d.mapper.UnmapCode(threads[0], base, scratchSize); err != nil {
			slog.Debug("leaving the displaced-instruction scratch mapped", "at", base, "err", err)
		}
	}
	d.mapped, d.base, d.off = nil, 0, true
	clear(d.slots)
}
