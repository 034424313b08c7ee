package unwind

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// The synthetic debug object hands synthesized CFI to debuggers that only
// read files (gdb): an ELF file with no code and no program headers, only
//   - SHT_NOBITS sections (alloc, exec) over the described code, so that
//     symbols have a section to belong to and gdb maps them;
//   - one STT_FUNC symbol per described function, at its run-time address;
//   - .debug_frame with one FDE per row.
// Every address is the run-time address: loaded with l_addr 0 (or
// add-symbol-file without offsets), nothing moves.
//
// delve's pkg/elfwriter only writes core files, so this is written here
// with debug/elf's constants.

// clusterGap is the largest gap between two described functions that one
// section spans: the executable's stubs share a section, the vDSO and each
// library get their own, and no section covers unrelated mappings.
const clusterGap = 1 << 20

const (
	cfaNop            = 0x00
	debugFrameCIEID   = 0xffffffff
	debugFrameVersion = 1
)

// DebugObject writes funcs as an ELF debug object (see above). Functions
// must not overlap; rows outside their function are an error.
func DebugObject(funcs []SynthFunc) ([]byte, error) {
	fs := append([]SynthFunc(nil), funcs...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Lo < fs[j].Lo })
	for i, f := range fs {
		if f.Hi <= f.Lo {
			return nil, fmt.Errorf("debug object: %s has an empty extent [%#x, %#x)", f.Name, f.Lo, f.Hi)
		}
		if i > 0 && f.Lo < fs[i-1].Hi {
			return nil, fmt.Errorf("debug object: %s at %#x overlaps %s", f.Name, f.Lo, fs[i-1].Name)
		}
		for _, r := range f.Rows {
			if r.Lo < f.Lo || r.Hi > f.Hi || r.Hi <= r.Lo {
				return nil, fmt.Errorf("debug object: row [%#x, %#x) outside %s [%#x, %#x)", r.Lo, r.Hi, f.Name, f.Lo, f.Hi)
			}
		}
	}

	// Sections over the code, one per cluster.
	type textSec struct{ lo, hi uint64 }
	var texts []textSec
	secOf := make([]int, len(fs))
	for i, f := range fs {
		if n := len(texts); n > 0 && f.Lo-texts[n-1].hi <= clusterGap {
			texts[n-1].hi = f.Hi
		} else {
			texts = append(texts, textSec{f.Lo, f.Hi})
		}
		secOf[i] = len(texts) // section index: 0 is the null section
	}

	frameData, err := debugFrame(fs)
	if err != nil {
		return nil, err
	}
	infoData, abbrevData := debugInfo(fs)

	var strtab bytes.Buffer
	strtab.WriteByte(0)
	var symtab bytes.Buffer
	symtab.Write(make([]byte, 24)) // the null symbol
	for i, f := range fs {
		name := uint32(strtab.Len())
		strtab.WriteString(f.Name)
		strtab.WriteByte(0)
		s := elf.Sym64{
			Name:  name,
			Info:  elf.ST_INFO(elf.STB_GLOBAL, elf.STT_FUNC),
			Shndx: uint16(secOf[i]),
			Value: f.Lo,
			Size:  f.Hi - f.Lo,
		}
		binary.Write(&symtab, binary.LittleEndian, s)
	}

	var shstr bytes.Buffer
	shstr.WriteByte(0)
	addName := func(n string) uint32 {
		off := uint32(shstr.Len())
		shstr.WriteString(n)
		shstr.WriteByte(0)
		return off
	}
	var shdrs []elf.Section64
	shdrs = append(shdrs, elf.Section64{})
	for i, t := range texts {
		// gdb takes the offsets of .text for everything it reads; all are
		// zero here, but the name must exist.
		name := ".text"
		if i > 0 {
			name = fmt.Sprintf(".text.%d", i)
		}
		shdrs = append(shdrs, elf.Section64{
			Name: addName(name), Type: uint32(elf.SHT_NOBITS),
			Flags: uint64(elf.SHF_ALLOC | elf.SHF_EXECINSTR),
			Addr:  t.lo, Size: t.hi - t.lo, Addralign: 1,
		})
	}

	// File layout: header, .debug_frame, .debug_info, .debug_abbrev, .symtab, .strtab, .shstrtab,
	// section headers.
	const ehsize = 64
	off := uint64(ehsize)
	place := func(n int, align uint64) uint64 {
		off = (off + align - 1) &^ (align - 1)
		at := off
		off += uint64(n)
		return at
	}
	frameOff := place(len(frameData), 8)
	shdrs = append(shdrs, elf.Section64{
		Name: addName(".debug_frame"), Type: uint32(elf.SHT_PROGBITS),
		Off: frameOff, Size: uint64(len(frameData)), Addralign: 8,
	})
	infoOff := place(len(infoData), 1)
	shdrs = append(shdrs, elf.Section64{
		Name: addName(".debug_info"), Type: uint32(elf.SHT_PROGBITS),
		Off: infoOff, Size: uint64(len(infoData)), Addralign: 1,
	})
	abbrevOff := place(len(abbrevData), 1)
	shdrs = append(shdrs, elf.Section64{
		Name: addName(".debug_abbrev"), Type: uint32(elf.SHT_PROGBITS),
		Off: abbrevOff, Size: uint64(len(abbrevData)), Addralign: 1,
	})
	symIdx := len(shdrs)
	symOff := place(symtab.Len(), 8)
	shdrs = append(shdrs, elf.Section64{
		Name: addName(".symtab"), Type: uint32(elf.SHT_SYMTAB),
		Off: symOff, Size: uint64(symtab.Len()), Link: uint32(symIdx + 1),
		Info: 1, Addralign: 8, Entsize: 24,
	})
	strOff := place(strtab.Len(), 1)
	shdrs = append(shdrs, elf.Section64{
		Name: addName(".strtab"), Type: uint32(elf.SHT_STRTAB),
		Off: strOff, Size: uint64(strtab.Len()), Addralign: 1,
	})
	shstrIdx := len(shdrs)
	shstrName := addName(".shstrtab")
	shstrOff := place(shstr.Len(), 1)
	shdrs = append(shdrs, elf.Section64{
		Name: shstrName, Type: uint32(elf.SHT_STRTAB),
		Off: shstrOff, Size: uint64(shstr.Len()), Addralign: 1,
	})
	shOff := place(len(shdrs)*64, 8)
	if len(shdrs) >= int(elf.SHN_LORESERVE) {
		return nil, errors.New("debug object: too many sections")
	}

	hdr := elf.Header64{
		Type: uint16(elf.ET_DYN), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: ehsize, Shentsize: 64,
		Shnum: uint16(len(shdrs)), Shstrndx: uint16(shstrIdx),
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	hdr.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)

	out := make([]byte, off)
	var hb bytes.Buffer
	binary.Write(&hb, binary.LittleEndian, hdr)
	copy(out, hb.Bytes())
	copy(out[frameOff:], frameData)
	copy(out[infoOff:], infoData)
	copy(out[abbrevOff:], abbrevData)
	copy(out[symOff:], symtab.Bytes())
	copy(out[strOff:], strtab.Bytes())
	copy(out[shstrOff:], shstr.Bytes())
	var sb bytes.Buffer
	for _, s := range shdrs {
		binary.Write(&sb, binary.LittleEndian, s)
	}
	copy(out[shOff:], sb.Bytes())
	return out, nil
}

// debugFrame encodes one CIE and one FDE per row. The CIE's alignment
// factors are 1, so offsets are written as they are; it has no initial
// instructions, and each FDE states its whole row.
func debugFrame(fs []SynthFunc) ([]byte, error) {
	le := binary.LittleEndian
	var b []byte
	entry := func(body []byte) {
		// Pad with DW_CFA_nop so each entry ends on an address-size boundary.
		for (len(body)+4)%8 != 0 {
			body = append(body, cfaNop)
		}
		b = le.AppendUint32(b, uint32(len(body)))
		b = append(b, body...)
	}
	var cie []byte
	cie = le.AppendUint32(cie, debugFrameCIEID)
	cie = append(cie, debugFrameVersion, 0) // version, empty augmentation
	cie = appendULEB(cie, 1)                // code alignment
	cie = appendSLEB(cie, 1)                // data alignment
	cie = append(cie, dwRIP)                // return address column (a ubyte in version 1)
	entry(cie)
	for _, f := range fs {
		for _, r := range f.Rows {
			ins, err := rowInstructions(r.r)
			if err != nil {
				return nil, fmt.Errorf("debug object: %s at %#x: %w", f.Name, r.Lo, err)
			}
			var fde []byte
			fde = le.AppendUint32(fde, 0) // CIE pointer: the CIE at offset 0
			fde = le.AppendUint64(fde, r.Lo)
			fde = le.AppendUint64(fde, r.Hi-r.Lo)
			entry(append(fde, ins...))
		}
	}
	return b, nil
}

// rowInstructions states a row as CFA instructions. Registers a row does
// not mention keep their value, which is said explicitly: a consumer's
// default for an unmentioned register is its own choice.
func rowInstructions(r row) ([]byte, error) {
	if r.ra != dwRIP {
		return nil, fmt.Errorf("return address in register %d, not rip", r.ra)
	}
	var b []byte
	switch r.cfa.Rule {
	case frame.RuleCFA:
		if r.cfa.Offset >= 0 {
			b = append(b, cfaDefCFA)
			b = appendULEB(b, r.cfa.Reg)
			b = appendULEB(b, uint64(r.cfa.Offset))
		} else {
			b = append(b, cfaDefCFASf)
			b = appendULEB(b, r.cfa.Reg)
			b = appendSLEB(b, r.cfa.Offset)
		}
	case frame.RuleExpression:
		b = append(b, cfaDefCFAExpr)
		b = appendULEB(b, uint64(len(r.cfa.Expression)))
		b = append(b, r.cfa.Expression...)
	default:
		return nil, fmt.Errorf("CFA rule %d cannot be written", r.cfa.Rule)
	}
	for n := range uint64(nDw) {
		rule, ok := r.regs[n]
		if !ok {
			if n == dwRSP || n == dwRIP {
				continue // rsp is the CFA; rip always has a rule
			}
			rule = frame.DWRule{Rule: frame.RuleSameVal}
		}
		switch rule.Rule {
		case frame.RuleUndefined:
			b = appendULEB(append(b, cfaUndefined), n)
		case frame.RuleSameVal:
			b = appendULEB(append(b, cfaSameValue), n)
		case frame.RuleOffset:
			b = appendSLEB(appendULEB(append(b, cfaOffsetExtSf), n), rule.Offset)
		case frame.RuleValOffset:
			b = appendSLEB(appendULEB(append(b, cfaValOffsetSf), n), rule.Offset)
		case frame.RuleRegister:
			b = appendULEB(appendULEB(append(b, cfaRegister), n), rule.Reg)
		case frame.RuleExpression, frame.RuleValExpression:
			op := byte(cfaExpression)
			if rule.Rule == frame.RuleValExpression {
				op = cfaValExpr
			}
			b = appendULEB(append(b, op), n)
			b = appendULEB(b, uint64(len(rule.Expression)))
			b = append(b, rule.Expression...)
		default:
			return nil, fmt.Errorf("register %d: rule %d cannot be written", n, rule.Rule)
		}
	}
	return b, nil
}

// debugInfo describes each function as a compile unit holding one
// subprogram. gdb names a frame from its block before its minimal symbols,
// and only the block lookup ignores sections: a stub inside the
// executable's own __rseq_failure lies in one of the executable's
// sections, gdb's section map keeps the first objfile's section where two
// overlap, and a minimal symbol of another objfile is then never matched.
// One unit per function keeps the units' ranges contiguous without
// .debug_ranges.
func debugInfo(fs []SynthFunc) (info, abbrev []byte) {
	const (
		abbrevCU  = 1
		abbrevSub = 2
	)
	abbrev = []byte{
		abbrevCU, byte(dwarf.TagCompileUnit), 1, // has children
		byte(dwarf.AttrProducer), formString,
		byte(dwarf.AttrLanguage), formData2,
		byte(dwarf.AttrName), formString,
		byte(dwarf.AttrLowpc), formAddr,
		byte(dwarf.AttrHighpc), formData8,
		0, 0,
		abbrevSub, byte(dwarf.TagSubprogram), 0,
		byte(dwarf.AttrName), formString,
		byte(dwarf.AttrExternal), formFlagPresent,
		byte(dwarf.AttrLowpc), formAddr,
		byte(dwarf.AttrHighpc), formData8,
		0, 0,
		0,
	}
	le := binary.LittleEndian
	cstr := func(b []byte, s string) []byte { return append(append(b, s...), 0) }
	for _, f := range fs {
		var d []byte
		d = le.AppendUint16(d, 4) // DWARF 4
		d = le.AppendUint32(d, 0) // abbrev offset
		d = append(d, 8)          // address size
		d = append(d, abbrevCU)
		d = cstr(d, "rseqdbg synthesized CFI")
		d = le.AppendUint16(d, dwLangC99)
		d = cstr(d, f.Name)
		d = le.AppendUint64(d, f.Lo)
		d = le.AppendUint64(d, f.Hi-f.Lo)
		d = append(d, abbrevSub)
		d = cstr(d, f.Name)
		d = le.AppendUint64(d, f.Lo)
		d = le.AppendUint64(d, f.Hi-f.Lo)
		d = append(d, 0) // end of the unit's children
		info = le.AppendUint32(info, uint32(len(d)))
		info = append(info, d...)
	}
	return info, abbrev
}

// DWARF 4 attribute forms (§7.5.6); debug/dwarf does not export them.
const (
	formAddr        = 0x01
	formData2       = 0x05
	formData8       = 0x07
	formString      = 0x08
	formFlagPresent = 0x19
)

// dwLangC99 is DW_LANG_C99: the frames sit between C functions, and an
// assembler language would switch gdb's expression language at every stop
// in a stub.
const dwLangC99 = 0x000c
