package x86

import (
	"encoding/binary"
	"fmt"
)

// QuickInsn is what range analysis needs of an instruction: its length and
// control flow. quickDecode computes it without x86asm for the handful of
// encodings rseq critical sections and abort handlers are made of (mov,
// add, cmp, lea, test, inc, jcc, jmp, call, ret): x86asm builds a full
// instruction with boxed operands, which made analysing 100 000 sections
// cost more than the whole load budget. Everything else, and anything with
// a prefix other than 66 and REX, goes to Decode. TestQuickDecodeAgrees
// checks every accepted encoding against x86asm.
type QuickInsn struct {
	Len    int
	Kind   FlowKind
	Target uint64
}

// quickDecode decodes the instruction at pc from code, or reports ok=false
// when it does not handle the encoding (the caller then uses Decode).
func quickDecode(code []byte, pc uint64) (q QuickInsn, ok bool) {
	i := 0
	opsize16 := false
	if i < len(code) && code[i] == 0x66 {
		opsize16 = true
		i++
	}
	rexW := false
	if i < len(code) && code[i]&0xf0 == 0x40 {
		rexW = code[i]&8 != 0
		i++
	}
	if i >= len(code) {
		return q, false
	}
	prefixed := i > 0
	op := code[i]
	i++
	// immz is the size of an operand-sized immediate (imm16/imm32).
	immz := 4
	if opsize16 && !rexW {
		immz = 2
	}
	modrm := func(imm int) (QuickInsn, bool) {
		n, ok := modrmLen(code[i:])
		if !ok {
			return q, false
		}
		return finish(code, i+n+imm, FlowSeq, 0)
	}
	switch {
	case op < 0x40 && op&7 <= 3:
		// ALU r/m forms of add, or, adc, sbb, and, sub, xor, cmp.
		return modrm(0)
	case op < 0x40 && op&7 == 4:
		return finish(code, i+1, FlowSeq, 0)
	case op < 0x40 && op&7 == 5:
		return finish(code, i+immz, FlowSeq, 0)
	case op >= 0x50 && op <= 0x5f && !opsize16:
		return finish(code, i, FlowSeq, 0)
	case op >= 0x70 && op <= 0x7f && !prefixed:
		q, ok := finish(code, i+1, FlowCondJump, 0)
		if ok {
			q.Target = pc + uint64(q.Len) + uint64(int64(int8(code[i])))
		}
		return q, ok
	case op == 0x80 || op == 0x83:
		return modrm(1)
	case op == 0x81:
		return modrm(immz)
	case op >= 0x84 && op <= 0x8b:
		return modrm(0)
	case op == 0x8d:
		if i < len(code) && code[i]>>6 == 3 {
			return q, false // lea with a register operand is invalid
		}
		return modrm(0)
	case op == 0x90 && !prefixed:
		return finish(code, i, FlowSeq, 0)
	case op >= 0xb0 && op <= 0xb7:
		return finish(code, i+1, FlowSeq, 0)
	case op >= 0xb8 && op <= 0xbf:
		if rexW {
			return finish(code, i+8, FlowSeq, 0)
		}
		return finish(code, i+immz, FlowSeq, 0)
	case op == 0xc3 && !prefixed:
		return finish(code, i, FlowRet, 0)
	case op == 0xc6 || op == 0xc7:
		if i >= len(code) || code[i]>>3&7 != 0 {
			return q, false // xabort/xbegin live here too
		}
		if op == 0xc6 {
			return modrm(1)
		}
		return modrm(immz)
	case (op == 0xe8 || op == 0xe9) && !prefixed:
		kind := FlowCall
		if op == 0xe9 {
			kind = FlowJump
		}
		q, ok := finish(code, i+4, kind, 0)
		if ok {
			q.Target = pc + uint64(q.Len) + uint64(int64(int32(binary.LittleEndian.Uint32(code[i:]))))
		}
		return q, ok
	case op == 0xeb && !prefixed:
		q, ok := finish(code, i+1, FlowJump, 0)
		if ok {
			q.Target = pc + uint64(q.Len) + uint64(int64(int8(code[i])))
		}
		return q, ok
	case op == 0xf6 || op == 0xf7:
		if i >= len(code) {
			return q, false
		}
		switch code[i] >> 3 & 7 {
		case 0:
			if op == 0xf6 {
				return modrm(1)
			}
			return modrm(immz)
		case 1:
			return q, false
		}
		return modrm(0)
	case op == 0xfe || op == 0xff:
		if i >= len(code) || code[i]>>3&7 > 1 {
			return q, false // indirect call/jmp, push: x86asm names them
		}
		return modrm(0)
	case op == 0x0f:
		if i >= len(code) {
			return q, false
		}
		op2 := code[i]
		i++
		switch {
		case op2 >= 0x80 && op2 <= 0x8f && !prefixed:
			q, ok := finish(code, i+4, FlowCondJump, 0)
			if ok {
				q.Target = pc + uint64(q.Len) + uint64(int64(int32(binary.LittleEndian.Uint32(code[i:]))))
			}
			return q, ok
		case op2 >= 0x40 && op2 <= 0x4f, op2 == 0xaf, op2 == 0xb6, op2 == 0xb7, op2 == 0xbe, op2 == 0xbf:
			return modrm(0)
		case op2 == 0x1f && !rexW:
			if i >= len(code) || code[i]>>3&7 != 0 {
				return q, false
			}
			return modrm(0)
		}
	}
	return q, false
}

// finish checks that n bytes are available and the length is legal.
func finish(code []byte, n int, kind FlowKind, target uint64) (QuickInsn, bool) {
	if n > len(code) || n > 15 {
		return QuickInsn{}, false
	}
	return QuickInsn{Len: n, Kind: kind, Target: target}, true
}

// modrmLen is the length of a ModRM byte with its SIB and displacement.
func modrmLen(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	m := b[0]
	mod, rm := m>>6, m&7
	n := 1
	if mod == 3 {
		return n, true
	}
	if rm == 4 {
		if len(b) < 2 {
			return 0, false
		}
		n++
		if mod == 0 && b[1]&7 == 5 {
			n += 4
		}
	}
	switch mod {
	case 0:
		if rm == 5 {
			n += 4 // rip-relative
		}
	case 1:
		n++
	case 2:
		n += 4
	}
	return n, true
}

// DecodeFlow is quickDecode with Decode as the fallback.
func DecodeFlow(code []byte, pc uint64) (QuickInsn, error) {
	if q, ok := quickDecode(code, pc); ok {
		return q, nil
	}
	in, err := Decode(code, pc)
	if err != nil {
		return QuickInsn{}, err
	}
	if in.Inst.Op == 0 {
		// x86asm's answer to a truncated instruction or a dangling
		// prefix: a one-byte pseudo instruction without an error.
		return QuickInsn{}, fmt.Errorf("decoding instruction at %#x: truncated or invalid", pc)
	}
	return QuickInsn{Len: in.Len, Kind: in.Kind, Target: in.Target}, nil
}
