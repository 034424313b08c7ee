package wire

import (
	"encoding/binary"

	"github.com/rseqdbg/rseqdbg/target"
)

// FPSlice locates a floating-point or vector register in the XSAVE area x.
// Registers gdb numbers differently from the hardware (the tag word, fop)
// are handled by the callers.
func FPSlice(x []byte, regnum int) (off, size int, ok bool) {
	off, size, ok = fpSlot(regnum)
	return off, size, ok && off+size <= len(x)
}

func fpSlot(regnum int) (off, size int, ok bool) {
	switch {
	case regnum >= 24 && regnum < 32:
		off, size = target.FxST+16*(regnum-24), 10
	case regnum == 32:
		off, size = target.FxFCW, 2
	case regnum == 33:
		off, size = target.FxFSW, 2
	case regnum == 35:
		off, size = target.FxFCS, 2
	case regnum == 36:
		off, size = target.FxFIP, 4
	case regnum == 37:
		off, size = target.FxFDS, 2
	case regnum == 38:
		off, size = target.FxFDP, 4
	case regnum == 39:
		off, size = target.FxFOP, 2
	case regnum >= 40 && regnum < 56:
		off, size = target.FxXMM+16*(regnum-40), 16
	case regnum == 56:
		off, size = target.FxMXCSR, 4
	case regnum >= 60 && regnum < 76:
		off, size = target.XsaveYMMH+16*(regnum-60), 16
	default:
		return 0, 0, false
	}
	return off, size, true
}

// XsaveSlot locates the register gdb calls name (st0, fctrl, xmm3, ymm3h,
// mxcsr, ...) in the XSAVE area, for targets that get registers by name.
// The tag word (ftag) has no slot: FXSAVE keeps an abridged form.
func XsaveSlot(name string) (off, size int, ok bool) {
	for _, r := range Registers(true) {
		if r.Name == name {
			return fpSlot(r.Regnum)
		}
	}
	return 0, 0, false
}

// fullTag expands FXSAVE's abridged tag byte into the x87 tag word gdb
// shows: per physical register, valid, zero, special or empty, judged from
// the register's contents as the FSAVE instruction would.
func fullTag(x []byte) uint16 {
	abridged := x[target.FxFTW]
	top := int(binary.LittleEndian.Uint16(x[target.FxFSW:])>>11) & 7
	var tag uint16
	for phys := 0; phys < 8; phys++ {
		t := uint16(3) // empty
		if abridged&(1<<phys) != 0 {
			st := (phys - top) & 7
			raw := x[target.FxST+16*st : target.FxST+16*st+10]
			exp := binary.LittleEndian.Uint16(raw[8:]) & 0x7fff
			mant := binary.LittleEndian.Uint64(raw[:8])
			integer := mant>>63 != 0
			fraction := mant &^ (1 << 63)
			switch {
			case exp == 0x7fff:
				t = 2
			case exp == 0 && fraction == 0 && !integer:
				t = 1
			case exp == 0:
				t = 2
			case integer:
				t = 0
			default:
				t = 2
			}
		}
		tag |= t << (2 * phys)
	}
	return tag
}
