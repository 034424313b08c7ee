package gdbproto

import (
	"encoding/binary"
	"strings"

	"github.com/rseqdbg/rseqdbg/target"
)

// avx reports whether the process's XSAVE area holds the AVX state, which
// decides the target description and the g packet layout. Asked once.
func (pr *process) hasAVX() bool {
	if pr.avx != nil {
		return *pr.avx
	}
	v := false
	if x, err := pr.p.FPRegs(pr.p.Pid()); err == nil && len(x) >= target.XsaveAVXOK {
		v = binary.LittleEndian.Uint64(x[target.XsaveXCR0:])&target.XfeatureAVX != 0
	}
	pr.avx = &v
	return v
}

// gpr returns the general register behind a gdb register number.
func gpr(r *target.Regs, regnum int) *uint64 {
	switch {
	case regnum >= 0 && regnum < 16:
		return [...]*uint64{&r.Rax, &r.Rbx, &r.Rcx, &r.Rdx, &r.Rsi, &r.Rdi, &r.Rbp, &r.Rsp,
			&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}[regnum]
	case regnum >= 16 && regnum < 24:
		return [...]*uint64{&r.Rip, &r.Eflags, &r.Cs, &r.Ss, &r.Ds, &r.Es, &r.Fs, &r.Gs}[regnum-16]
	case regnum == 57:
		return &r.OrigRax
	case regnum == 58:
		return &r.FsBase
	case regnum == 59:
		return &r.GsBase
	}
	return nil
}

// fpSlice locates a floating-point or vector register in the XSAVE area x.
// Registers gdb numbers differently from the hardware (the tag word, fop)
// are handled by the callers.
func fpSlice(x []byte, regnum int) (off, size int, ok bool) {
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

// registerGaps is implemented by a target that cannot read some registers
// (lldb-server describes no fs_base): they are sent as unavailable rather
// than as zero.
type registerGaps interface {
	Lacks(name string) bool
}

// appendReg appends one register in g-packet encoding.
func appendReg(dst []byte, r *target.Regs, x []byte, ri RegInfo) []byte {
	if p := gpr(r, ri.Regnum); p != nil {
		return AppendUint64LE(dst, *p, ri.Size)
	}
	if ri.Regnum == 34 && len(x) >= 512 {
		return AppendUint64LE(dst, uint64(fullTag(x)), ri.Size)
	}
	off, size, ok := fpSlice(x, ri.Regnum)
	if !ok {
		return AppendUnavailable(dst, ri.Size)
	}
	var buf [16]byte
	copy(buf[:], x[off:off+size])
	if ri.Regnum == 39 {
		buf[1] &= 0x7
	}
	return AppendHex(dst, buf[:ri.Size])
}

// setReg stores a register value (ri.Size bytes, target order). It
// reports whether the XSAVE area changed, and marks the state component as
// present so the kernel does not ignore the write.
func setReg(r *target.Regs, x []byte, ri RegInfo, val []byte) (fpChanged, ok bool) {
	if len(val) < ri.Size {
		return false, false
	}
	if p := gpr(r, ri.Regnum); p != nil {
		var b [8]byte
		copy(b[:], val[:min(ri.Size, 8)])
		*p = binary.LittleEndian.Uint64(b[:])
		return false, true
	}
	if len(x) < 512 {
		return false, false
	}
	feature := uint64(target.XfeatureX87)
	switch {
	case ri.Regnum == 34:
		tag := binary.LittleEndian.Uint16(val)
		var abridged byte
		for phys := 0; phys < 8; phys++ {
			if (tag>>(2*phys))&3 != 3 {
				abridged |= 1 << phys
			}
		}
		x[target.FxFTW] = abridged
	default:
		off, size, ok := fpSlice(x, ri.Regnum)
		if !ok {
			return false, false
		}
		copy(x[off:off+size], val[:size])
		if ri.Regnum == 39 {
			x[off+1] &= 0x7
		}
		switch {
		case ri.Regnum >= 40 && ri.Regnum <= 56:
			feature = target.XfeatureSSE
		case ri.Regnum >= 60:
			feature = target.XfeatureAVX
		}
	}
	if len(x) >= target.XsaveBV+8 {
		bv := binary.LittleEndian.Uint64(x[target.XsaveBV:])
		binary.LittleEndian.PutUint64(x[target.XsaveBV:], bv|feature)
	}
	return true, true
}

// registers answers g, G, p and P.
func (s *session) registers(pkt string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	body, tid, ok := s.splitThreadSuffix(pkt)
	if !ok || tid == 0 {
		return replyErr
	}
	t := pr.p
	regs, err := t.Regs(tid)
	if err != nil {
		return replyErr
	}
	x, _ := t.FPRegs(tid)
	list := registers(pr.hasAVX())
	lacking, _ := t.(registerGaps)
	value := func(dst []byte, ri RegInfo) []byte {
		if lacking != nil && lacking.Lacks(ri.Name) {
			return AppendUnavailable(dst, ri.Size)
		}
		return appendReg(dst, &regs, x, ri)
	}
	switch body[0] {
	case 'g':
		if len(body) != 1 {
			return replyErr
		}
		out := make([]byte, 0, 2*RegisterFileSize(pr.hasAVX()))
		for _, ri := range list {
			out = value(out, ri)
		}
		return [][]byte{out}
	case 'p':
		n, err := parseHexInt(body[1:], 1<<16)
		if err != nil || n >= len(list) {
			return replyErr
		}
		return [][]byte{value(nil, list[n])}
	case 'G':
		data := body[1:]
		fpChanged := false
		for _, ri := range list {
			if ri.Offset*2+ri.Size*2 > len(data) {
				break
			}
			field := data[ri.Offset*2 : ri.Offset*2+ri.Size*2]
			if strings.ContainsRune(field, 'x') {
				continue // unavailable: leave it
			}
			val, err := DecodeHex(field)
			if err != nil {
				return replyErr
			}
			changed, _ := setReg(&regs, x, ri, val)
			fpChanged = fpChanged || changed
		}
		return s.writeRegs(tid, regs, x, fpChanged)
	case 'P':
		numStr, valStr, found := strings.Cut(body[1:], "=")
		if !found {
			return replyErr
		}
		n, err := parseHexInt(numStr, 1<<16)
		if err != nil || n >= len(list) {
			return replyErr
		}
		val, err := DecodeHex(valStr)
		if err != nil {
			return replyErr
		}
		changed, ok := setReg(&regs, x, list[n], val)
		if !ok {
			return replyErr
		}
		return s.writeRegs(tid, regs, x, changed)
	}
	return replyEmpty
}

func (s *session) writeRegs(tid int, regs target.Regs, x []byte, fpChanged bool) [][]byte {
	t := s.srv.proc.p
	if err := t.SetRegs(tid, regs); err != nil {
		return replyErr
	}
	if fpChanged {
		if err := t.SetFPRegs(tid, x); err != nil {
			return replyErr
		}
	}
	return replyOK
}

// expedite returns the registers a stop reply carries so the client needs
// no g packet to find the frame: rbp, rsp and rip.
func expedite(r *target.Regs) []StopPair {
	var pairs []StopPair
	for _, n := range []int{6, 7, 16} {
		pairs = append(pairs, StopPair{
			Key:   string(AppendHex(nil, []byte{byte(n)})),
			Value: string(AppendUint64LE(nil, *gpr(r, n), 8)),
		})
	}
	return pairs
}
