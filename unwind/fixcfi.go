package unwind

import (
	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// fixCFI rewrites CFA programs in place, once per CIE and FDE, so that
// delve v1.27's interpreter (pkg/dwarf/frame/table.go) computes the rows the
// DWARF standard defines. Each rewrite is equivalent under the standard:
//
//   - DW_CFA_restore and DW_CFA_restore_extended: delve looks the register
//     up in FrameContext.initialRegs, which nothing ever fills, so a restore
//     always yields "undefined" (glibc's epilogues restore rbx, rbp and r12-r15
//     after remember_state, hundreds of times in libc.so.6). The restore is
//     replaced with the CIE's initial rule for the register, or same_value
//     when the CIE has none.
//   - DW_CFA_val_offset: delve stores the unfactored operand; the standard
//     multiplies it by the data alignment factor. It becomes the equivalent
//     DW_CFA_val_offset_sf, which delve factors.
//   - DW_CFA_GNU_args_size: delve has no entry for 0x2e and stops with "unexpected
//     DWARF CFA opcode", losing the whole FDE. It says nothing about
//     registers, so it is dropped.
//   - DW_CFA_GNU_negative_offset_extended (0x2f), also unknown to delve,
//     becomes DW_CFA_offset_extended_sf with the negated operand.
//
// An FDE whose program (or CIE's) holds an opcode this scanner does not
// know, or is truncated, is returned in bad and must not reach delve: its
// interpreter sets an error on an unknown opcode and then returns without
// consuming input, so ExecuteUntilPC spins forever.
func fixCFI(fdes frame.FrameDescriptionEntries) (good, bad frame.FrameDescriptionEntries) {
	type cieFix struct {
		rules map[uint64][]byte
		ok    bool
	}
	done := map[*frame.CommonInformationEntry]cieFix{}
	for _, fde := range fdes {
		cie := fde.CIE
		if cie == nil {
			bad = append(bad, fde)
			continue
		}
		fix, seen := done[cie]
		if !seen {
			var prog []byte
			prog, fix.ok = rewriteCFA(cie.InitialInstructions, nil)
			if fix.ok {
				cie.InitialInstructions = prog
				fix.rules = initialRules(prog)
			}
			done[cie] = fix
		}
		prog, ok := rewriteCFA(fde.Instructions, fix.rules)
		if !fix.ok || !ok {
			bad = append(bad, fde)
			continue
		}
		fde.Instructions = prog
		good = append(good, fde)
	}
	return good, bad
}

// DWARF call frame instruction opcodes (DWARF 5 §7.24) that delve's table
// does not name or that matter here.
const (
	cfaAdvanceLoc  = 0x40
	cfaOffset      = 0x80
	cfaRestore     = 0xc0
	cfaSetLoc      = 0x01
	cfaAdvanceLoc1 = 0x02
	cfaAdvanceLoc2 = 0x03
	cfaAdvanceLoc4 = 0x04
	cfaOffsetExt   = 0x05
	cfaRestoreExt  = 0x06
	cfaUndefined   = 0x07
	cfaSameValue   = 0x08
	cfaRegister    = 0x09
	cfaRemember    = 0x0a
	cfaRestoreSt   = 0x0b
	cfaDefCFA      = 0x0c
	cfaDefCFAReg   = 0x0d
	cfaDefCFAOff   = 0x0e
	cfaDefCFAExpr  = 0x0f
	cfaExpression  = 0x10
	cfaOffsetExtSf = 0x11
	cfaDefCFASf    = 0x12
	cfaDefCFAOffSf = 0x13
	cfaValOffset   = 0x14
	cfaValOffsetSf = 0x15
	cfaValExpr     = 0x16
	cfaGNUArgsSize = 0x2e
	cfaGNUNegOff   = 0x2f
)

// cfaInsn is one decoded call frame instruction.
type cfaInsn struct {
	op     byte // the opcode, with the operand bits of the 0x40/0x80/0xc0 forms cleared
	reg    uint64
	hasReg bool
	n      int   // encoded length
	u      int64 // second operand of offset-like instructions, as read
}

// decodeCFA decodes the instruction at the start of b. ok is false for an
// unknown opcode or a truncated instruction.
func decodeCFA(b []byte) (in cfaInsn, ok bool) {
	if len(b) == 0 {
		return in, false
	}
	c := b[0]
	pos := 1
	uleb := func() (uint64, bool) {
		v, n := readULEB(b[pos:])
		pos += n
		return v, n > 0
	}
	sleb := func() (int64, bool) {
		v, n := readSLEB(b[pos:])
		pos += n
		return v, n > 0
	}
	block := func() bool {
		l, ok := uleb()
		if !ok || l > uint64(len(b)-pos) {
			return false
		}
		pos += int(l)
		return true
	}
	ok = true
	switch c & 0xc0 {
	case cfaAdvanceLoc:
		in.op = cfaAdvanceLoc
	case cfaOffset:
		in.op, in.reg, in.hasReg = cfaOffset, uint64(c&0x3f), true
		var v uint64
		v, ok = uleb()
		in.u = int64(v)
	case cfaRestore:
		in.op, in.reg, in.hasReg = cfaRestore, uint64(c&0x3f), true
	default:
		in.op = c
		switch c {
		case 0x00, cfaRemember, cfaRestoreSt:
		case cfaSetLoc:
			pos += 8 // delve reads a fixed 8-byte address
		case cfaAdvanceLoc1:
			pos++
		case cfaAdvanceLoc2:
			pos += 2
		case cfaAdvanceLoc4:
			pos += 4
		case cfaOffsetExt, cfaValOffset, cfaGNUNegOff, cfaRegister:
			in.reg, ok = uleb()
			in.hasReg = true
			var v uint64
			if ok {
				v, ok = uleb()
			}
			in.u = int64(v)
		case cfaRestoreExt, cfaUndefined, cfaSameValue:
			in.reg, ok = uleb()
			in.hasReg = true
		case cfaDefCFA:
			if _, ok = uleb(); ok {
				_, ok = uleb()
			}
		case cfaDefCFAReg, cfaDefCFAOff, cfaGNUArgsSize:
			_, ok = uleb()
		case cfaDefCFAExpr:
			ok = block()
		case cfaExpression, cfaValExpr:
			in.reg, ok = uleb()
			in.hasReg = true
			if ok {
				ok = block()
			}
		case cfaOffsetExtSf, cfaValOffsetSf:
			in.reg, ok = uleb()
			in.hasReg = true
			if ok {
				in.u, ok = sleb()
			}
		case cfaDefCFASf:
			if _, ok = uleb(); ok {
				_, ok = sleb()
			}
		case cfaDefCFAOffSf:
			_, ok = sleb()
		default:
			return in, false
		}
	}
	if !ok || pos > len(b) {
		return in, false
	}
	in.n = pos
	return in, true
}

// setsRule reports whether the instruction replaces its register's rule.
func (in cfaInsn) setsRule() bool {
	switch in.op {
	case cfaOffset, cfaOffsetExt, cfaUndefined, cfaSameValue, cfaRegister, cfaExpression,
		cfaOffsetExtSf, cfaValOffset, cfaValOffsetSf, cfaValExpr, cfaGNUNegOff:
		return true
	}
	return false
}

// rewriteCFA returns prog with the fixes of fixCFI applied; cie holds the
// encoded initial rule of each register the CIE sets (nil while rewriting
// the CIE itself, where a restore means the default rule). ok is false when
// prog holds something delve cannot run safely.
func rewriteCFA(prog []byte, cie map[uint64][]byte) (_ []byte, ok bool) {
	out := make([]byte, 0, len(prog)+8)
	for i := 0; i < len(prog); {
		in, ok := decodeCFA(prog[i:])
		if !ok {
			return nil, false
		}
		raw := prog[i : i+in.n]
		i += in.n
		switch in.op {
		case cfaRestore, cfaRestoreExt:
			if enc, ok := cie[in.reg]; ok {
				out = append(out, enc...)
			} else {
				out = append(out, cfaSameValue)
				out = appendULEB(out, in.reg)
			}
		case cfaValOffset:
			out = append(out, cfaValOffsetSf)
			out = appendULEB(out, in.reg)
			out = appendSLEB(out, in.u)
		case cfaGNUNegOff:
			out = append(out, cfaOffsetExtSf)
			out = appendULEB(out, in.reg)
			out = appendSLEB(out, -in.u)
		case cfaGNUArgsSize:
		default:
			out = append(out, raw...)
		}
	}
	return out, true
}

// initialRules maps each register that a (rewritten) CIE program sets to
// the encoding of its last rule.
func initialRules(prog []byte) map[uint64][]byte {
	rules := map[uint64][]byte{}
	for i := 0; i < len(prog); {
		in, ok := decodeCFA(prog[i:])
		if !ok {
			break
		}
		if in.setsRule() {
			rules[in.reg] = prog[i : i+in.n]
		}
		i += in.n
	}
	return rules
}

func readULEB(b []byte) (uint64, int) {
	var v uint64
	for i, c := range b {
		if i < 10 {
			v |= uint64(c&0x7f) << (7 * uint(i))
		}
		if c&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

func readSLEB(b []byte) (int64, int) {
	var v int64
	var shift uint
	for i, c := range b {
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
