package regions

import (
	"debug/elf"
	"encoding/binary"
	"sort"
)

// relocTarget is a buffer holding the file bytes of [addr, addr+len(buf)),
// to be patched with the dynamic relocations that land in it.
type relocTarget struct {
	addr uint64
	buf  []byte
	what string
}

const relaSize = 24 // Elf64_Rela: r_offset, r_info, r_addend

// relaSections reads the dynamic RELA sections once. Static relocation
// sections kept by --emit-relocs (sh_info naming the section they patch)
// are already applied in the file and are left alone.
func (l *loader) relaSections() [][]byte {
	if l.relaRead {
		return l.relaRaw
	}
	l.relaRead = true
	for _, s := range l.f.Sections {
		if s.Type != elf.SHT_RELA || (s.Info != 0 && s.Name != ".rela.dyn") || s.Size == 0 {
			continue
		}
		data, err := l.readAt(s.Offset, s.Size)
		if err != nil {
			l.obj.warnf("reading relocations %s of %s: %v: table values may be wrong", s.Name, l.path, err)
			continue
		}
		if len(data)%relaSize != 0 {
			l.obj.warnf("%s: size %d is not a multiple of %d", s.Name, len(data), relaSize)
		}
		l.relaRaw = append(l.relaRaw, data)
	}
	return l.relaRaw
}

// relocate writes link-time values of dynamic relocations into the
// targets. GNU ld already wrote the same values into the section bytes; lld
// left zeros there and only the relocation knows the value. RELR entries
// need nothing: their addend is the section content itself.
func (l *loader) relocate(targets []relocTarget) {
	if len(targets) == 0 {
		return
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].addr < targets[j].addr })
	for _, data := range l.relaSections() {
		for i := 0; i+relaSize <= len(data); i += relaSize {
			off := binary.LittleEndian.Uint64(data[i:])
			// Find the target holding [off, off+8).
			k := sort.Search(len(targets), func(k int) bool { return targets[k].addr > off }) - 1
			if k < 0 {
				continue
			}
			t := &targets[k]
			if off-t.addr >= uint64(len(t.buf)) {
				continue
			}
			info := binary.LittleEndian.Uint64(data[i+8:])
			addend := binary.LittleEndian.Uint64(data[i+16:])
			typ := elf.R_X86_64(info & 0xffffffff)
			if off-t.addr+8 > uint64(len(t.buf)) {
				l.obj.warnf("relocation %v at %#x straddles the end of %s: not applied", typ, off+l.bias, t.what)
				continue
			}
			var v uint64
			switch typ {
			case elf.R_X86_64_NONE:
				continue
			case elf.R_X86_64_RELATIVE:
				v = addend
			case elf.R_X86_64_64:
				sym := info >> 32
				if sym == 0 {
					v = addend
					break
				}
				s, ok := l.dynsym(sym)
				if !ok {
					l.obj.warnf("relocation %v at %#x in %s names symbol %d, which is undefined or missing: not applied", typ, off+l.bias, t.what, sym)
					continue
				}
				// A defined symbol resolves to itself unless another object
				// interposes it: good enough for descriptors and code labels.
				v = s.Value + addend
			default:
				l.obj.warnf("relocation %v at %#x in %s: not applied", typ, off+l.bias, t.what)
				continue
			}
			binary.LittleEndian.PutUint64(t.buf[off-t.addr:], v)
		}
	}
}

// dynsym returns dynamic symbol number i if it is defined.
func (l *loader) dynsym(i uint64) (elf.Symbol, bool) {
	if !l.dynRead {
		l.dynRead = true
		if symtabFits(l.f, elf.SHT_DYNSYM, l.size) {
			l.dynsyms, _ = l.f.DynamicSymbols()
		}
	}
	// debug/elf drops the null symbol 0.
	if i == 0 || i > uint64(len(l.dynsyms)) {
		return elf.Symbol{}, false
	}
	s := l.dynsyms[i-1]
	if s.Section == elf.SHN_UNDEF {
		return elf.Symbol{}, false
	}
	return s, true
}
