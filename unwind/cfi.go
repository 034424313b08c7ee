package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// object is one loaded ELF object: its FDEs sorted by address and its
// function symbols, both already moved by the load bias.
type object struct {
	name   string
	bias   uint64
	lo, hi uint64 // extent of its PT_LOAD segments
	fdes   frame.FrameDescriptionEntries
	syms   []symbol
}

type symbol struct {
	start, end uint64
	name       string
	stub       bool // in __rseq_failure: jumped to, not called
}

// AddObject reads the CFI (.eh_frame and .debug_frame) and function symbols
// of the ELF file at path, loaded with the given bias (load address minus
// link address; 0 for a non-PIE executable). Adding a path again replaces
// it. The object is registered even when an error is returned: the error
// reports CFI that could not be used (a section that fails to parse, FDEs
// with opcodes that cannot be evaluated), and the rest is kept.
func (u *Unwinder) AddObject(path string, bias uint64) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("unwind: reading %s: %w", path, err)
	}
	defer f.Close()
	o, err := loadELF(path, f, bias)
	u.put(o)
	if err != nil {
		return fmt.Errorf("unwind: reading %s: %w", path, err)
	}
	return nil
}

// AddImage reads an ELF image from memory, such as the vDSO read from the
// target at AT_SYSINFO_EHDR, mapped at base. The bias is base minus the
// first PT_LOAD address. An image whose section headers were not read (a
// short read) still yields its CFI through PT_GNU_EH_FRAME.
func (u *Unwinder) AddImage(name string, img []byte, base uint64) error {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err == nil {
		defer f.Close()
		first, ok := firstLoad(f)
		if !ok {
			return fmt.Errorf("unwind: reading image %s: no PT_LOAD segment", name)
		}
		// Keep the symbols even without CFI: they are what synthesis
		// interprets vDSO functions from.
		o, lerr := loadELF(name, f, base-first)
		if len(o.fdes) == 0 {
			if h, herr := loadFromHeaders(name, img, base); herr == nil {
				o.fdes = h.fdes
			}
		}
		u.put(o)
		if lerr != nil {
			return fmt.Errorf("unwind: reading image %s: %w", name, lerr)
		}
		return nil
	}
	o, herr := loadFromHeaders(name, img, base)
	u.put(o)
	if herr != nil {
		return fmt.Errorf("unwind: reading image %s: %w", name, errors.Join(err, herr))
	}
	return nil
}

// RemoveObject forgets an object added under path (or image name).
func (u *Unwinder) RemoveObject(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, o := range u.objs {
		if o.name == path {
			u.objs = append(u.objs[:i], u.objs[i+1:]...)
			return
		}
	}
}

func (u *Unwinder) put(o *object) {
	if o == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, old := range u.objs {
		if old.name == o.name {
			u.objs[i] = o
			return
		}
	}
	u.objs = append(u.objs, o)
}

func firstLoad(f *elf.File) (uint64, bool) {
	first, ok := ^uint64(0), false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < first {
			first, ok = p.Vaddr, true
		}
	}
	return first, ok
}

func loadELF(name string, f *elf.File, bias uint64) (o *object, err error) {
	o = &object{name: name, bias: bias, lo: ^uint64(0)}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			o.lo = min(o.lo, p.Vaddr+bias)
			o.hi = max(o.hi, p.Vaddr+p.Memsz+bias)
		}
	}
	if o.lo > o.hi {
		o.lo = 0
	}
	var errs []error
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		fdes, err := parseSection(s, bias, true)
		if err != nil {
			errs = append(errs, err)
		}
		o.fdes = o.fdes.Append(fdes)
	}
	if s := f.Section(".debug_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		fdes, err := parseSection(s, bias, false)
		if err != nil {
			errs = append(errs, err)
		}
		o.fdes = o.fdes.Append(fdes)
	}
	o.syms = funcSymbols(f, bias)
	return o, errors.Join(errs...)
}

func parseSection(s *elf.Section, bias uint64, eh bool) (frame.FrameDescriptionEntries, error) {
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("section %s: %w", s.Name, err)
	}
	var ehAddr uint64
	if eh {
		// Parse treats ehFrameAddr 0 as "this is .debug_frame".
		if s.Addr == 0 {
			return nil, fmt.Errorf("section %s has no address (relocatable object?)", s.Name)
		}
		ehAddr = s.Addr
	}
	fdes, err := parseCFI(data, bias, ehAddr)
	if err != nil {
		return fdes, fmt.Errorf("section %s: %w", s.Name, err)
	}
	return fdes, nil
}

// parseCFI parses .eh_frame (ehAddr = its link address) or .debug_frame
// (ehAddr = 0). delve adds bias (its staticBase) to every FDE start itself,
// so ehAddr must be the unbiased link address or the bias counts twice.
func parseCFI(data []byte, bias, ehAddr uint64) (fdes frame.FrameDescriptionEntries, err error) {
	defer func() {
		if p := recover(); p != nil {
			fdes, err = nil, fmt.Errorf("malformed CFI: %v", p)
		}
	}()
	fdes, err = frame.Parse(data, binary.LittleEndian, bias, 8, ehAddr)
	if err != nil {
		return nil, err
	}
	good, bad := fixCFI(fdes)
	if len(bad) > 0 {
		err = fmt.Errorf("%d FDEs (the first at %#x) use CFA opcodes that cannot be evaluated; their code is unwound by synthesis", len(bad), bad[0].Begin())
	}
	// frame.Parse returns FDEs in section order, but FDEForPC and our own
	// lookup binary-search them by start address: Append sorts (and drops
	// duplicates), which makes the slice searchable.
	var sorted frame.FrameDescriptionEntries
	return sorted.Append(good), err
}

func funcSymbols(f *elf.File, bias uint64) []symbol {
	var out []symbol
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || s.Section == elf.SHN_UNDEF {
				continue
			}
			size := max(s.Size, 1)
			stub := int(s.Section) < len(f.Sections) && f.Sections[s.Section].Name == "__rseq_failure"
			out = append(out, symbol{start: s.Value + bias, end: s.Value + bias + size, name: s.Name, stub: stub})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].start != out[j].start {
			return out[i].start < out[j].start
		}
		return out[i].end > out[j].end
	})
	// Aliases (clock_gettime and __vdso_clock_gettime) share a start.
	dedup := out[:0]
	for _, s := range out {
		if n := len(dedup); n > 0 && dedup[n-1].start == s.start {
			continue
		}
		dedup = append(dedup, s)
	}
	return dedup
}

// loadFromHeaders reads the CFI of an image through its program headers:
// PT_GNU_EH_FRAME leads to .eh_frame, which runs to its zero terminator.
func loadFromHeaders(name string, img []byte, base uint64) (*object, error) {
	le := binary.LittleEndian
	if len(img) < 64 || string(img[:4]) != "\x7fELF" || img[4] != byte(elf.ELFCLASS64) {
		return nil, errors.New("not a 64-bit ELF image")
	}
	phoff, phentsize, phnum := le.Uint64(img[0x20:]), uint64(le.Uint16(img[0x36:])), uint64(le.Uint16(img[0x38:]))
	if phentsize < 56 || phoff > uint64(len(img)) || phnum*phentsize > uint64(len(img))-phoff {
		return nil, errors.New("program headers out of the image")
	}
	first, have := ^uint64(0), false
	var lo, hi, hdrOff, hdrVaddr uint64
	var haveHdr bool
	for i := range phnum {
		ph := img[phoff+i*phentsize:]
		typ, off, vaddr, memsz := elf.ProgType(le.Uint32(ph)), le.Uint64(ph[8:]), le.Uint64(ph[16:]), le.Uint64(ph[40:])
		switch typ {
		case elf.PT_LOAD:
			if vaddr < first {
				first, have = vaddr, true
			}
			hi = max(hi, vaddr+memsz)
		case elf.PT_GNU_EH_FRAME:
			hdrOff, hdrVaddr, haveHdr = off, vaddr, true
		}
	}
	if !have {
		return nil, errors.New("no PT_LOAD segment")
	}
	bias := base - first
	lo, hi = first+bias, hi+bias
	o := &object{name: name, bias: bias, lo: lo, hi: hi}
	if !haveHdr {
		return o, errors.New("no PT_GNU_EH_FRAME segment")
	}
	// .eh_frame_hdr: version, eh_frame_ptr encoding, fde_count encoding,
	// table encoding, then eh_frame_ptr.
	if hdrOff+8 > uint64(len(img)) || img[hdrOff] != 1 {
		return o, errors.New("bad .eh_frame_hdr")
	}
	enc := img[hdrOff+1]
	var ehVaddr uint64
	switch enc {
	case 0x1b: // pcrel sdata4
		ehVaddr = hdrVaddr + 4 + uint64(int64(int32(le.Uint32(img[hdrOff+4:]))))
	case 0x03: // udata4
		ehVaddr = uint64(le.Uint32(img[hdrOff+4:]))
	default:
		return o, fmt.Errorf("unsupported eh_frame_ptr encoding %#x", enc)
	}
	ehOff := ehVaddr - first // the vDSO maps file offset 0 at its first PT_LOAD
	if ehVaddr < first || ehOff >= uint64(len(img)) {
		return o, errors.New(".eh_frame outside the image")
	}
	data := img[ehOff:]
	end := 0
	for end+4 <= len(data) {
		l := le.Uint32(data[end:])
		if l == 0 {
			break
		}
		if l == 0xffffffff || uint64(end)+4+uint64(l) > uint64(len(data)) {
			return o, errors.New(".eh_frame truncated")
		}
		end += 4 + int(l)
	}
	fdes, err := parseCFI(data[:end], bias, ehVaddr)
	o.fdes = fdes
	return o, err
}

// fde finds the FDE covering pc and its object's bias.
func (u *Unwinder) fde(pc uint64) (*frame.FrameDescriptionEntry, uint64) {
	for _, o := range u.objs {
		if o.hi != 0 && (pc < o.lo || pc >= o.hi) {
			continue
		}
		i := sort.Search(len(o.fdes), func(i int) bool { return o.fdes[i].Begin() > pc }) - 1
		if i >= 0 && o.fdes[i].Cover(pc) {
			return o.fdes[i], o.bias
		}
	}
	return nil, 0
}

// symbolAt finds the function symbol containing pc.
func (u *Unwinder) symbolAt(pc uint64) (symbol, bool) {
	for _, o := range u.objs {
		if o.hi != 0 && (pc < o.lo || pc >= o.hi) {
			continue
		}
		i := sort.Search(len(o.syms), func(i int) bool { return o.syms[i].start > pc }) - 1
		if i >= 0 && pc < o.syms[i].end {
			return o.syms[i], true
		}
	}
	return symbol{}, false
}

// funcStart reports whether addr begins a function: an FDE or a symbol
// starts there.
func (u *Unwinder) funcStart(addr uint64) bool {
	if fde, _ := u.fde(addr); fde != nil && fde.Begin() == addr {
		return true
	}
	s, ok := u.symbolAt(addr)
	return ok && s.start == addr
}

// cfiRow evaluates an FDE at pc.
func cfiRow(fde *frame.FrameDescriptionEntry, pc, bias uint64) (r row, err error) {
	defer func() {
		// delve's CFA interpreter panics on truncated instructions and on
		// DW_CFA_restore_state without a matching remember_state.
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed CFI at %#x: %v", pc, p)
		}
	}()
	ctx, err := fde.EstablishFrame(pc)
	if err != nil {
		return row{}, fmt.Errorf("CFI at %#x: %w", pc, err)
	}
	return row{
		cfa:    ctx.CFA,
		regs:   ctx.Regs,
		ra:     ctx.RetAddrReg,
		bias:   bias,
		signal: fde.CIE != nil && strings.ContainsRune(fde.CIE.Augmentation, 'S'),
	}, nil
}
