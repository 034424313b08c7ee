package gdbproto

import (
	"encoding/binary"
	"strings"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
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

// appendReg appends one register in g-packet encoding.
func appendReg(dst []byte, r *target.Regs, x []byte, ri wire.RegInfo) []byte {
	if p := gpr(r, ri.Regnum); p != nil {
		return wire.AppendUint64LE(dst, *p, ri.Size)
	}
	if ri.Regnum == 34 && len(x) >= 512 {
		return wire.AppendUint64LE(dst, uint64(wire.X87TagWord(x)), ri.Size)
	}
	off, size, ok := wire.FPSlice(x, ri.Regnum)
	if !ok {
		return wire.AppendUnavailable(dst, ri.Size)
	}
	var buf [16]byte
	copy(buf[:], x[off:off+size])
	if ri.Regnum == 39 {
		buf[1] &= 0x7
	}
	return wire.AppendHex(dst, buf[:ri.Size])
}

// setReg stores a register value (ri.Size bytes, target order). It
// reports whether the XSAVE area changed, and marks the state component as
// present so the kernel does not ignore the write.
func setReg(r *target.Regs, x []byte, ri wire.RegInfo, val []byte) (fpChanged, ok bool) {
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
		off, size, ok := wire.FPSlice(x, ri.Regnum)
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
	list := wire.Registers(pr.hasAVX())
	lacking := pr.caps.gaps
	value := func(dst []byte, ri wire.RegInfo) []byte {
		if lacking != nil && lacking.Lacks(ri.Name) {
			return wire.AppendUnavailable(dst, ri.Size)
		}
		return appendReg(dst, &regs, x, ri)
	}
	switch body[0] {
	case 'g':
		if len(body) != 1 {
			return replyErr
		}
		out := make([]byte, 0, 2*wire.RegisterFileSize(pr.hasAVX()))
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
			val, err := wire.DecodeHex(field)
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
		val, err := wire.DecodeHex(valStr)
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
func expedite(r *target.Regs) []wire.StopPair {
	var pairs []wire.StopPair
	for _, n := range []int{6, 7, 16} {
		pairs = append(pairs, wire.StopPair{
			Key:   string(wire.AppendHex(nil, []byte{byte(n)})),
			Value: string(wire.AppendUint64LE(nil, *gpr(r, n), 8)),
		})
	}
	return pairs
}
