package regions

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Object is one ELF object's regions at run-time addresses.
type Object struct {
	Path     string
	Bias     uint64
	Regions  []*Region
	Warnings []string
}

// rseq table section names (Linux selftests and librseq conventions).
const (
	secPtrArray  = "__rseq_cs_ptr_array"
	secCS        = "__rseq_cs"
	secLegacy    = "__rseq_table"
	secExitArray = "__rseq_exit_point_array"
)

// LoadFile reads the regions a file publishes; bias is its load address
// minus its link-time address.
func LoadFile(path string, bias uint64) (*Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading regions of %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading regions of %s: %w", path, err)
	}
	return loadELF(f, st.Size(), path, bias)
}

// LoadELF reads the regions of an ELF image.
func LoadELF(r io.ReaderAt, path string, bias uint64) (*Object, error) {
	size := int64(1 << 40)
	if s, ok := r.(interface{ Size() int64 }); ok {
		size = s.Size()
	}
	return loadELF(r, size, path, bias)
}

// image reads an ELF file by link-time virtual address, with the
// R_X86_64_RELATIVE relocations applied (lld leaves the table bytes zero
// and puts the values only in relocations).
type image struct {
	f      *elf.File
	r      io.ReaderAt
	size   int64
	relocs map[uint64]uint64
	exec   [][2]uint64 // executable PT_LOAD ranges, link-time
	syms   []elf.Symbol
}

func (im *image) read(vaddr uint64, buf []byte) (int, error) {
	for _, p := range im.f.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr >= p.Vaddr+p.Memsz {
			continue
		}
		n := len(buf)
		if avail := p.Vaddr + p.Memsz - vaddr; uint64(n) > avail {
			n = int(avail)
		}
		clear(buf[:n])
		if off := vaddr - p.Vaddr; off < p.Filesz {
			fileN := uint64(n)
			if off+fileN > p.Filesz {
				fileN = p.Filesz - off
			}
			if int64(p.Off+off+fileN) > im.size {
				return 0, fmt.Errorf("segment data at %#x is past the end of the file", vaddr)
			}
			if _, err := im.r.ReadAt(buf[:fileN], int64(p.Off+off)); err != nil && err != io.EOF {
				return 0, err
			}
		}
		for i := 0; i+8 <= n; i++ {
			if v, ok := im.relocs[vaddr+uint64(i)]; ok {
				binary.LittleEndian.PutUint64(buf[i:], v)
			}
		}
		return n, nil
	}
	return 0, fmt.Errorf("address %#x is in no loadable segment", vaddr)
}

func (im *image) u64(vaddr uint64) (uint64, bool) {
	var b [8]byte
	if n, err := im.read(vaddr, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

func (im *image) executable(vaddr uint64) bool {
	for _, r := range im.exec {
		if vaddr >= r[0] && vaddr < r[1] {
			return true
		}
	}
	return false
}

// name renders a link-time address as symbol+offset.
func (im *image) name(vaddr uint64) string {
	i := sort.Search(len(im.syms), func(i int) bool { return im.syms[i].Value > vaddr }) - 1
	if i < 0 {
		return fmt.Sprintf("%#x", vaddr)
	}
	s := im.syms[i]
	if s.Size > 0 && vaddr >= s.Value+s.Size {
		return fmt.Sprintf("%#x", vaddr)
	}
	if vaddr == s.Value {
		return s.Name
	}
	return fmt.Sprintf("%s+%d", s.Name, vaddr-s.Value)
}

func loadELF(r io.ReaderAt, size int64, path string, bias uint64) (obj *Object, err error) {
	defer func() {
		// debug/elf is hardened but not promised panic-free on hostile input.
		if p := recover(); p != nil {
			obj, err = nil, fmt.Errorf("reading regions of %s: malformed ELF (%v)", path, p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("reading regions of %s: truncated ELF file", path)
		}
		return nil, fmt.Errorf("reading regions of %s: not a valid ELF file: %w", path, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("reading regions of %s: not an x86-64 ELF object", path)
	}
	im := &image{f: f, r: r, size: size, relocs: map[uint64]uint64{}}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			im.exec = append(im.exec, [2]uint64{p.Vaddr, p.Vaddr + p.Memsz})
		}
	}
	obj = &Object{Path: path, Bias: bias}
	tables := map[string]*elf.Section{}
	for _, s := range f.Sections {
		switch s.Name {
		case secPtrArray, secCS, secLegacy, secExitArray:
			if s.Type == elf.SHT_NOBITS || int64(s.Offset+s.Size) > size || s.Offset+s.Size < s.Offset {
				obj.Warnings = append(obj.Warnings, fmt.Sprintf("section %s lies outside the file: skipped", s.Name))
				continue
			}
			tables[s.Name] = s
		}
	}
	if len(tables) == 0 {
		return obj, nil
	}
	im.loadRelocs(tables, obj)
	syms, _ := f.Symbols()
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			im.syms = append(im.syms, s)
		}
	}
	sort.Slice(im.syms, func(i, j int) bool { return im.syms[i].Value < im.syms[j].Value })

	seen := map[uint64]bool{}
	byStart := map[uint64]*Region{}
	add := func(descAddr uint64, source string) {
		if seen[descAddr] {
			return
		}
		seen[descAddr] = true
		var b [DescriptorSize]byte
		if !im.dataSection(descAddr) {
			obj.Warnings = append(obj.Warnings, fmt.Sprintf("descriptor pointer %#x from %s is outside any data section: skipped", descAddr, source))
			return
		}
		if n, err := im.read(descAddr, b[:]); err != nil || n != DescriptorSize {
			obj.Warnings = append(obj.Warnings, fmt.Sprintf("descriptor pointer %#x from %s is outside any mapping: skipped", descAddr, source))
			return
		}
		d, _ := ParseDescriptor(b[:])
		if r := im.region(d, descAddr, source, obj); r != nil {
			if o := byStart[r.Start]; o != nil {
				obj.Warnings = append(obj.Warnings, fmt.Sprintf("descriptors %#x and %#x describe the same section %s", o.Descriptor-bias, descAddr, r.Name))
				return
			}
			byStart[r.Start] = r
			r.Start += bias
			r.End += bias
			r.Abort += bias
			r.Descriptor = descAddr + bias
			for i := range r.Exits {
				r.Exits[i].Addr += bias
			}
			for i := range r.Indirect {
				r.Indirect[i] += bias
			}
			for i := range r.Calls {
				r.Calls[i] += bias
			}
			r.Object = path
			obj.Regions = append(obj.Regions, r)
		}
	}
	if s := tables[secPtrArray]; s != nil {
		for off := uint64(0); off+8 <= s.Size; off += 8 {
			p, ok := im.u64(s.Addr + off)
			if !ok || p == 0 {
				continue
			}
			add(p, secPtrArray)
		}
	}
	for _, name := range []string{secCS, secLegacy} {
		s := tables[name]
		if s == nil {
			continue
		}
		// 32-byte aligned descriptors; zero slots are alignment padding.
		start := (s.Addr + DescriptorSize - 1) &^ (DescriptorSize - 1)
		for a := start; a+DescriptorSize <= s.Addr+s.Size; a += DescriptorSize {
			var b [DescriptorSize]byte
			if n, err := im.read(a, b[:]); err != nil || n != DescriptorSize || allZero(b[:]) {
				continue
			}
			add(a, name)
		}
	}
	if s := tables[secExitArray]; s != nil {
		for off := uint64(0); off+16 <= s.Size; off += 16 {
			st, ok1 := im.u64(s.Addr + off)
			ex, ok2 := im.u64(s.Addr + off + 8)
			if !ok1 || !ok2 || st == 0 {
				continue
			}
			r := byStart[st]
			if r == nil {
				obj.Warnings = append(obj.Warnings, fmt.Sprintf("exit point %#x names start_ip %#x, which no descriptor has", ex, st))
				continue
			}
			if r.Contains(ex + bias) {
				r.Warnings = append(r.Warnings, fmt.Sprintf("exit point %#x lies inside the section", ex+bias))
				continue
			}
			r.markExitPoint(ex + bias)
		}
	}
	sort.Slice(obj.Regions, func(i, j int) bool { return obj.Regions[i].Start < obj.Regions[j].Start })
	for i := 1; i < len(obj.Regions); i++ {
		a, b := obj.Regions[i-1], obj.Regions[i]
		if b.Start < a.End {
			b.Warnings = append(b.Warnings, fmt.Sprintf("overlaps %s [%#x, %#x)", a.Name, a.Start, a.End))
		}
	}
	return obj, nil
}

// dataSection reports whether a descriptor can live at vaddr: inside an
// allocated, non-executable section with contents.
func (im *image) dataSection(vaddr uint64) bool {
	for _, s := range im.f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR == 0 && s.Type == elf.SHT_PROGBITS &&
			vaddr >= s.Addr && vaddr+DescriptorSize <= s.Addr+s.Size {
			return true
		}
	}
	return false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// loadRelocs keeps the RELATIVE relocations that patch the rseq tables.
func (im *image) loadRelocs(tables map[string]*elf.Section, obj *Object) {
	inTables := func(a uint64) bool {
		for _, s := range tables {
			if a >= s.Addr && a < s.Addr+s.Size {
				return true
			}
		}
		return false
	}
	for _, s := range im.f.Sections {
		if s.Type != elf.SHT_RELA || int64(s.Offset+s.Size) > im.size {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		for off := 0; off+24 <= len(data); off += 24 {
			rOff := binary.LittleEndian.Uint64(data[off:])
			info := binary.LittleEndian.Uint64(data[off+8:])
			addend := binary.LittleEndian.Uint64(data[off+16:])
			if !inTables(rOff) {
				continue
			}
			switch elf.R_X86_64(info & 0xffffffff) {
			case elf.R_X86_64_RELATIVE:
				im.relocs[rOff] = addend
			case elf.R_X86_64_NONE:
			default:
				obj.Warnings = append(obj.Warnings, fmt.Sprintf("relocation %v at %#x in an rseq table is not applied", elf.R_X86_64(info&0xffffffff), rOff))
			}
		}
	}
	for _, s := range im.f.Sections {
		if s.Name == ".relr.dyn" && len(im.relocs) == 0 {
			obj.Warnings = append(obj.Warnings, "RELR relocations are not applied: table values may read as zero")
		}
	}
}

// region validates a descriptor at link-time addresses and decodes it.
func (im *image) region(d Descriptor, descAddr uint64, source string, obj *Object) *Region {
	warns, ok := d.check()
	if !ok {
		obj.Warnings = append(obj.Warnings, fmt.Sprintf("descriptor %#x: %s", descAddr, warns[0]))
		return nil
	}
	end := d.StartIP + d.PostCommitOffset
	if !im.executable(d.StartIP) || !im.executable(end-1) {
		obj.Warnings = append(obj.Warnings, fmt.Sprintf("descriptor %#x: section [%#x, %#x) is outside any executable segment: skipped", descAddr, d.StartIP, end))
		return nil
	}
	r := &Region{Kind: KindCriticalSection, Start: d.StartIP, End: end, Abort: d.AbortIP,
		Descriptor: descAddr, Source: source, Warnings: warns, Name: im.name(d.StartIP)}
	if !im.executable(d.AbortIP) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("abort_ip %#x is outside any executable segment", d.AbortIP))
	} else {
		var sig [4]byte
		if n, err := im.read(d.AbortIP-4, sig[:]); err == nil && n == 4 {
			r.checkSignature(sig[:])
		}
	}
	code := make([]byte, d.PostCommitOffset+16)
	n, err := im.read(d.StartIP, code)
	if err != nil || uint64(n) < d.PostCommitOffset {
		r.Warnings = append(r.Warnings, "section code unreadable")
		n = 0
	}
	r.decode(code[:n])
	return r
}

// LoadVDSO makes every function of the vDSO image (read from the target at
// base = AT_SYSINFO_EHDR) a region: its seqlock retry loops restart when a
// step takes longer than a clock tick.
func LoadVDSO(img []byte, base uint64) (obj *Object, err error) {
	defer func() {
		if p := recover(); p != nil {
			obj, err = nil, fmt.Errorf("reading the vDSO: malformed ELF (%v)", p)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("reading the vDSO: %w", err)
	}
	var first uint64 = ^uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < first {
			first = p.Vaddr
		}
	}
	if first == ^uint64(0) {
		return nil, fmt.Errorf("reading the vDSO: no loadable segment")
	}
	bias := base - first
	obj = &Object{Path: "[vdso]", Bias: bias}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, fmt.Errorf("reading vDSO symbols: %w", err)
	}
	byAddr := map[uint64]*Region{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || s.Value == 0 {
			continue
		}
		name := s.Name
		if r := byAddr[s.Value]; r != nil {
			// Aliases: prefer the public name over __vdso_*.
			if strings.HasPrefix(r.Name, "__vdso_") && !strings.HasPrefix(name, "__vdso_") {
				r.Name = name
			}
			continue
		}
		r := &Region{Kind: KindVDSO, Name: name, Object: "[vdso]", Start: s.Value + bias, End: s.Value + s.Size + bias, Source: "vdso"}
		byAddr[s.Value] = r
		obj.Regions = append(obj.Regions, r)
	}
	sort.Slice(obj.Regions, func(i, j int) bool { return obj.Regions[i].Start < obj.Regions[j].Start })
	return obj, nil
}
