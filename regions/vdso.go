package regions

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"
	"strings"

	"github.com/rseqdbg/rseqdbg/linkmap"
)

// VDSOPath is the Object path and Region.Object of vDSO regions.
const VDSOPath = "[vdso]"

// LoadVDSO makes every sized function of the vDSO a region. image is the
// vDSO read from target memory at base (AT_SYSINFO_EHDR). The functions'
// seqlock loops retry whenever a step takes longer than a clock tick, so
// they are run as a whole; the exit is the caller's return address, known
// only at entry, so Exits stay empty.
func LoadVDSO(image []byte, base uint64) (obj *Object, err error) {
	defer func() {
		if p := recover(); p != nil {
			obj, err = nil, fmt.Errorf("reading the vDSO at %#x: malformed ELF image: %w (%v)", base, errPanic, p)
		}
	}()
	if err := precheck(bytes.NewReader(image), int64(len(image))); err != nil {
		return nil, fmt.Errorf("reading the vDSO at %#x: %w", base, err)
	}
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("reading the vDSO at %#x: %w", base, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("reading the vDSO at %#x: %v %v image, want a 64-bit x86-64 one", base, f.Class, f.Machine)
	}
	// The image is mapped from its first byte at base, so the segment
	// holding file offset 0 fixes the bias.
	bias, found := linkmap.BaseBias(f, base)
	if !found {
		return nil, fmt.Errorf("reading the vDSO at %#x: no loadable segment maps the ELF header", base)
	}
	obj = &Object{Path: VDSOPath, Bias: bias}
	var syms []elf.Symbol
	var errDyn error
	size := int64(len(image))
	if symtabFits(f, elf.SHT_DYNSYM, size) {
		syms, errDyn = f.DynamicSymbols()
	}
	if symtabFits(f, elf.SHT_SYMTAB, size) {
		more, _ := f.Symbols()
		syms = append(syms, more...)
	}
	if len(syms) == 0 {
		if errDyn != nil {
			return nil, fmt.Errorf("reading the vDSO's symbols: %w", errDyn)
		}
		return obj, nil
	}
	byAddr := map[uint64]*Region{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || s.Section == elf.SHN_UNDEF || s.Value+s.Size < s.Value {
			continue
		}
		if r := byAddr[s.Value]; r != nil {
			// Aliases (__vdso_clock_gettime and clock_gettime): prefer the
			// name programs call, and the larger size if they disagree.
			if strings.HasPrefix(r.Name, "__vdso_") && !strings.HasPrefix(s.Name, "__vdso_") {
				r.Name = s.Name
			}
			if end := s.Value + s.Size + bias; end > r.End {
				r.End = end
			}
			continue
		}
		r := &Region{Kind: KindVDSO, Name: s.Name, Object: VDSOPath, Start: s.Value + bias,
			End: s.Value + s.Size + bias, Source: "vdso"}
		byAddr[s.Value] = r
		obj.Regions = append(obj.Regions, r)
	}
	sort.Slice(obj.Regions, func(i, j int) bool { return obj.Regions[i].Start < obj.Regions[j].Start })
	warnOverlaps(obj.Regions)
	return obj, nil
}
