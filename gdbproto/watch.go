package gdbproto

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/rseqdbg/rseqdbg/target"
)

// hwState is the use of the four x86 debug address registers by hardware
// breakpoints (Z1) and watchpoints (Z2, Z4).
type hwState struct {
	slots   [4]hwSlot
	watches []*hwWatch
}

type hwSlot struct {
	used bool
	addr uint64
	ctl  uint64 // this slot's enable, RW and LEN bits of DR7
}

// hwWatch is one Z packet: an unaligned or long range takes several slots.
type hwWatch struct {
	typ          byte // '1' execute, '2' write, '4' access
	addr, length uint64
	slots        []int
}

var errNoDebugRegs = errors.New("not enough free debug registers")

// chunks covers [addr, addr+length) with naturally aligned pieces of 1, 2,
// 4 or 8 bytes, the only watch lengths the hardware has.
func chunks(addr, length uint64) [][2]uint64 {
	var out [][2]uint64
	for length > 0 && len(out) <= 4 {
		size := uint64(8)
		for size > 1 && (addr%size != 0 || size > length) {
			size /= 2
		}
		out = append(out, [2]uint64{addr, size})
		addr += size
		length -= size
	}
	return out
}

func slotControl(i int, typ byte, size uint64) uint64 {
	rw := map[byte]uint64{'1': 0, '2': 1, '4': 3}[typ]
	ln := map[uint64]uint64{1: 0, 2: 1, 4: 3, 8: 2}[size]
	return 1<<(2*i) | rw<<(16+4*i) | ln<<(18+4*i)
}

func (h *hwState) dr7() uint64 {
	var v uint64
	for _, s := range h.slots {
		if s.used {
			v |= s.ctl
		}
	}
	return v
}

func (h *hwState) insert(t target.Target, typ byte, addr, length uint64) error {
	if length == 0 || length > 32 {
		return fmt.Errorf("watch length %d: %w", length, errNoDebugRegs)
	}
	pieces := chunks(addr, length)
	if typ == '1' {
		pieces = [][2]uint64{{addr, 1}}
	}
	var free []int
	for i, s := range h.slots {
		if !s.used {
			free = append(free, i)
		}
	}
	if len(pieces) > len(free) {
		return errNoDebugRegs
	}
	w := &hwWatch{typ: typ, addr: addr, length: length}
	for k, p := range pieces {
		i := free[k]
		// The address first: the kernel checks DR7 against it.
		if err := t.SetDebugReg(i, p[0]); err != nil {
			h.release(t, w)
			return err
		}
		h.slots[i] = hwSlot{used: true, addr: p[0], ctl: slotControl(i, typ, p[1])}
		w.slots = append(w.slots, i)
	}
	if err := t.SetDebugReg(7, h.dr7()); err != nil {
		h.release(t, w)
		return err
	}
	h.watches = append(h.watches, w)
	return nil
}

func (h *hwState) release(t target.Target, w *hwWatch) {
	for _, i := range w.slots {
		h.slots[i] = hwSlot{}
	}
	t.SetDebugReg(7, h.dr7())
	for _, i := range w.slots {
		t.SetDebugReg(i, 0)
	}
}

func (h *hwState) remove(t target.Target, typ byte, addr, length uint64) {
	for k, w := range h.watches {
		if w.typ == typ && w.addr == addr && (typ == '1' || w.length == length) {
			h.release(t, w)
			h.watches = append(h.watches[:k], h.watches[k+1:]...)
			return
		}
	}
}

func (h *hwState) clear(t target.Target) {
	for _, w := range h.watches {
		h.release(t, w)
	}
	h.watches = nil
}

// hit finds the watch a debug-register trap at addr (a slot's address)
// belongs to.
func (h *hwState) hit(addr uint64) *hwWatch {
	for _, w := range h.watches {
		for _, i := range w.slots {
			if h.slots[i].addr == addr {
				return w
			}
		}
	}
	return nil
}

// debugRegistersWork tells, probing once with cfg.DebugRegisters, whether
// debug registers trigger on this machine. Some hypervisors accept DR writes
// and never raise #DB; a watchpoint there would silently never fire, so the
// server refuses them and gdb says so (software watchpoints still work: set
// can-use-hw-watchpoints 0). Without a probe they are assumed to work.
func (srv *Server) debugRegistersWork(exe string) bool {
	if srv.hwWorks != nil {
		return *srv.hwWorks
	}
	works := srv.cfg.DebugRegisters == nil || srv.cfg.DebugRegisters(exe)
	srv.hwWorks = &works
	if !works {
		slog.Warn("hardware debug registers do not trigger on this machine (a hypervisor that does not " +
			"virtualize them?): hardware breakpoints and watchpoints are refused; in gdb use " +
			"set can-use-hw-watchpoints 0 for software watchpoints")
	}
	return works
}
