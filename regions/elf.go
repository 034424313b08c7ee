package regions

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
)

// Object is one ELF object's regions at run-time addresses.
type Object struct {
	Path     string
	Bias     uint64
	Regions  []*Region // sorted by Start
	Warnings []string

	suppressed int
}

// maxObjectWarnings bounds an object's warnings: a garbage table can
// otherwise produce one per slot.
const maxObjectWarnings = 1000

func (o *Object) warnf(format string, args ...any) {
	if len(o.Warnings) >= maxObjectWarnings {
		o.suppressed++
		return
	}
	o.Warnings = append(o.Warnings, fmt.Sprintf(format, args...))
}

// rseq table section names (Linux selftests and librseq conventions).
const (
	secPtrArray  = "__rseq_cs_ptr_array"
	secCS        = "__rseq_cs"
	secLegacy    = "__rseq_table"
	secExitArray = "__rseq_exit_point_array"
)

// errPanic marks an error recovered from a panic, so that tests can tell
// one from an ordinary refusal.
var errPanic = errors.New("internal error")

// maxRead bounds any single read from a file, whatever its size fields say.
const maxRead = 1 << 30

// LoadFile reads the regions an ELF file publishes in its rseq tables. bias
// is the run-time address minus the link-time address (0 for a non-PIE
// executable at its link address, or to list link-time addresses).
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
	size := int64(-1)
	if st.Mode().IsRegular() {
		size = st.Size()
	}
	return loadELF(f, size, path, bias)
}

// LoadELF reads the regions of an ELF image. When r does not tell its size
// (Size() or Stat()), reads grow chunk by chunk so that a lying size field
// fails at the end of the data instead of allocating what it claims.
func LoadELF(r io.ReaderAt, path string, bias uint64) (*Object, error) {
	return loadELF(r, readerSize(r), path, bias)
}

func readerSize(r io.ReaderAt) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size()
	case interface{ Stat() (os.FileInfo, error) }:
		if st, err := v.Stat(); err == nil && st.Mode().IsRegular() {
			return st.Size()
		}
	}
	return -1
}

// loader reads one ELF file. Addresses inside it are link-time; bias is
// added when a region is made.
type loader struct {
	r    io.ReaderAt
	size int64 // -1 when unknown
	path string
	bias uint64
	f    *elf.File
	obj  *Object

	loads     []elf.ProgHeader // PT_LOAD
	execLoads []elf.ProgHeader // executable PT_LOAD
	code      []codeRange      // executable sections, sorted by address

	relaRaw  [][]byte // dynamic RELA sections, read on first use
	relaRead bool
	dynsyms  []elf.Symbol
	dynRead  bool
}

// codeRange is an executable section (or segment, for files without
// section headers), read on first use.
type codeRange struct {
	name      string
	addr, end uint64
	off       uint64
	data      []byte
	loaded    bool
	failed    bool
}

// table is one rseq table section with its relocated contents.
type table struct {
	name string
	addr uint64
	data []byte
	// slotSeen marks descriptor slots already reached through the pointer
	// array (descriptor tables only), so that scanning skips them.
	slotBase uint64
	slotSeen []bool
}

// candidate is a descriptor found in the tables, at link-time addresses.
type candidate struct {
	link uint64
	d    Descriptor
	src  string
}

func loadELF(r io.ReaderAt, size int64, path string, bias uint64) (obj *Object, err error) {
	defer func() {
		// debug/elf is hardened but not promised panic-free on hostile input,
		// and a debugger must survive any file it is pointed at.
		if p := recover(); p != nil {
			obj, err = nil, fmt.Errorf("reading regions of %s: malformed ELF file: %w (%v)", path, errPanic, p)
		}
	}()
	if err := precheck(r, size); err != nil {
		return nil, fmt.Errorf("reading regions of %s: %w", path, err)
	}
	f, err := elf.NewFile(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("reading regions of %s: truncated ELF file: %w", path, err)
		}
		return nil, fmt.Errorf("reading regions of %s: not a valid ELF file: %w", path, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("reading regions of %s: %v %v object, want a 64-bit x86-64 one", path, f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("reading regions of %s: %v: only linked executables and shared libraries have run-time addresses", path, f.Type)
	}
	l := &loader{r: r, size: size, path: path, bias: bias, f: f, obj: &Object{Path: path, Bias: bias}}
	l.load()
	if l.obj.suppressed > 0 {
		l.obj.Warnings = append(l.obj.Warnings, fmt.Sprintf("%d further warnings suppressed", l.obj.suppressed))
	}
	return l.obj, nil
}

// readAt reads n bytes at file offset off, refusing ranges past the end of
// the file before allocating for them.
func (l *loader) readAt(off, n uint64) ([]byte, error) {
	if n > maxRead {
		return nil, fmt.Errorf("%d bytes at offset %#x exceed the %d-byte read limit", n, off, maxRead)
	}
	if off > math.MaxInt64-n {
		return nil, fmt.Errorf("offset %#x is not a file offset", off)
	}
	if l.size >= 0 {
		if off > uint64(l.size) || n > uint64(l.size)-off {
			return nil, fmt.Errorf("bytes [%#x, %#x) lie past the end of the file (%d bytes)", off, off+n, l.size)
		}
		buf := make([]byte, n)
		if k, err := l.r.ReadAt(buf, int64(off)); k < len(buf) {
			return nil, fmt.Errorf("reading %d bytes at offset %#x: %w", n, off, shortRead(err))
		}
		return buf, nil
	}
	const chunk = 1 << 20
	var buf []byte
	for uint64(len(buf)) < n {
		k := min(uint64(chunk), n-uint64(len(buf)))
		at := len(buf)
		buf = append(buf, make([]byte, k)...)
		if m, err := l.r.ReadAt(buf[at:], int64(off)+int64(at)); uint64(m) < k {
			return nil, fmt.Errorf("reading %d bytes at offset %#x: %w", n, off, shortRead(err))
		}
	}
	return buf, nil
}

// shortRead names the cause of a short read, which io.ReaderAt must give
// but a careless implementation may not.
func shortRead(err error) error {
	if err == nil || err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (l *loader) load() {
	for _, p := range l.f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		l.loads = append(l.loads, p.ProgHeader)
		if p.Flags&elf.PF_X != 0 {
			l.execLoads = append(l.execLoads, p.ProgHeader)
		}
	}
	var ptrs, descs []*table
	var exitTables []*table
	for _, s := range l.f.Sections {
		switch s.Name {
		case secPtrArray, secCS, secLegacy, secExitArray:
		default:
			continue
		}
		t := l.readTable(s)
		if t == nil {
			continue
		}
		switch s.Name {
		case secPtrArray:
			ptrs = append(ptrs, t)
		case secCS, secLegacy:
			descs = append(descs, t)
		case secExitArray:
			exitTables = append(exitTables, t)
		}
	}
	all := append(append(append([]*table(nil), ptrs...), descs...), exitTables...)
	if len(all) == 0 {
		return
	}
	targets := make([]relocTarget, len(all))
	for i, t := range all {
		targets[i] = relocTarget{addr: t.addr, buf: t.data, what: t.name}
	}
	l.relocate(targets)

	cands := l.descriptors(ptrs, descs)
	pairs := l.exitPairs(exitTables)
	l.buildRegions(cands, pairs)
}

// readTable reads a table section; problems are warnings, the table is then
// skipped.
func (l *loader) readTable(s *elf.Section) *table {
	if s.Type == elf.SHT_NOBITS {
		l.obj.warnf("%s has no contents in the file: skipped", s.Name)
		return nil
	}
	if s.Size == 0 {
		return nil
	}
	data, err := l.readAt(s.Offset, s.Size)
	if err != nil {
		l.obj.warnf("reading %s of %s: %v: skipped", s.Name, l.path, err)
		return nil
	}
	return &table{name: s.Name, addr: s.Addr, data: data}
}

// inLoad reports whether [addr, addr+n) lies in one PT_LOAD's memory image.
func (l *loader) inLoad(addr, n uint64) bool {
	for _, p := range l.loads {
		if addr >= p.Vaddr && addr-p.Vaddr <= p.Memsz && n <= p.Memsz-(addr-p.Vaddr) {
			return true
		}
	}
	return false
}

// inData reports whether [addr, addr+n) lies in one section that can hold
// a descriptor: allocated, not executable, with file contents. Files
// without section headers fall back to non-executable segments.
func (l *loader) inData(addr, n uint64) bool {
	if len(l.f.Sections) == 0 {
		for _, p := range l.loads {
			if p.Flags&elf.PF_X == 0 && addr >= p.Vaddr && addr-p.Vaddr <= p.Memsz && n <= p.Memsz-(addr-p.Vaddr) {
				return true
			}
		}
		return false
	}
	for _, s := range l.f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR == 0 &&
			addr >= s.Addr && addr-s.Addr <= s.Size && n <= s.Size-(addr-s.Addr) {
			return true
		}
	}
	return false
}

func (l *loader) inExec(addr uint64) bool {
	for _, p := range l.execLoads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Memsz {
			return true
		}
	}
	return false
}

// readLink reads n bytes at a link-time address from the file image of the
// PT_LOAD holding them (zeros past its file contents, as the loader maps
// them), without relocations.
func (l *loader) readLink(addr, n uint64) ([]byte, error) {
	for _, p := range l.loads {
		if addr < p.Vaddr || addr-p.Vaddr > p.Memsz || n > p.Memsz-(addr-p.Vaddr) {
			continue
		}
		buf := make([]byte, n)
		off := addr - p.Vaddr
		if off < p.Filesz {
			k := min(n, p.Filesz-off)
			b, err := l.readAt(p.Off+off, k)
			if err != nil {
				return nil, err
			}
			copy(buf, b)
		}
		return buf, nil
	}
	return nil, fmt.Errorf("[%#x, %#x) is in no loadable segment", addr, addr+n)
}

// descriptorTable returns the descriptor table holding a whole descriptor
// at addr, and the offset in it.
func descriptorTable(descs []*table, addr uint64) (*table, uint64) {
	for _, t := range descs {
		if addr >= t.addr && addr-t.addr <= uint64(len(t.data)) && uint64(len(t.data))-(addr-t.addr) >= DescriptorSize {
			return t, addr - t.addr
		}
	}
	return nil, 0
}

// slot returns the index of the 32-byte aligned slot at addr in t, or -1.
func (t *table) slot(addr uint64) int {
	if addr < t.slotBase || (addr-t.slotBase)%DescriptorSize != 0 {
		return -1
	}
	i := (addr - t.slotBase) / DescriptorSize
	if i >= uint64(len(t.slotSeen)) {
		return -1
	}
	return int(i)
}

// descriptors gathers every descriptor: those the pointer arrays name
// first (one descriptor is one region, attributed to the pointer array),
// then the remaining non-zero slots of __rseq_cs and __rseq_table.
func (l *loader) descriptors(ptrs, descs []*table) []candidate {
	n := 0
	for _, t := range descs {
		t.slotBase = (t.addr + DescriptorSize - 1) &^ (DescriptorSize - 1)
		if end := t.addr + uint64(len(t.data)); end > t.slotBase {
			t.slotSeen = make([]bool, (end-t.slotBase)/DescriptorSize)
		}
		n += len(t.slotSeen)
	}
	for _, t := range ptrs {
		n += len(t.data) / 8
	}
	cands := make([]candidate, 0, n)
	odd := map[uint64]bool{} // descriptors not on a table slot
	type outside struct {
		addr uint64
		src  string
	}
	var elsewhere []outside
	for _, t := range ptrs {
		for i := 0; i+8 <= len(t.data); i += 8 {
			p := binary.LittleEndian.Uint64(t.data[i:])
			if p == 0 {
				continue // padding
			}
			if dt, off := descriptorTable(descs, p); dt != nil {
				if s := dt.slot(p); s >= 0 {
					if dt.slotSeen[s] {
						continue
					}
					dt.slotSeen[s] = true
				} else {
					if odd[p] {
						continue
					}
					odd[p] = true
				}
				b := dt.data[off:][:DescriptorSize]
				if allZero(b) {
					l.obj.warnf("%s[%d]: descriptor %#x is all zeros: skipped", t.name, i/8, p+l.bias)
					continue
				}
				d, _ := ParseDescriptor(b)
				cands = append(cands, candidate{p, d, secPtrArray})
				continue
			}
			if !l.inLoad(p, DescriptorSize) {
				l.obj.warnf("%s[%d]: pointer %#x outside any mapping: skipped", t.name, i/8, p)
				continue
			}
			if !l.inData(p, DescriptorSize) {
				// In a PIE the first segment maps the ELF header at 0, so a
				// small bogus pointer is "mapped" but reads header bytes.
				l.obj.warnf("%s[%d]: pointer %#x outside any mapping: skipped (it is in no data section)", t.name, i/8, p)
				continue
			}
			if odd[p] {
				continue
			}
			odd[p] = true
			l.obj.warnf("%s[%d]: descriptor %#x lies outside __rseq_cs", t.name, i/8, p+l.bias)
			elsewhere = append(elsewhere, outside{p, secPtrArray})
		}
	}
	if len(elsewhere) > 0 {
		targets := make([]relocTarget, 0, len(elsewhere))
		for _, e := range elsewhere {
			b, err := l.readLink(e.addr, DescriptorSize)
			if err != nil {
				l.obj.warnf("reading descriptor %#x: %v: skipped", e.addr, err)
				continue
			}
			targets = append(targets, relocTarget{addr: e.addr, buf: b, what: "descriptor"})
		}
		l.relocate(targets)
		for _, t := range targets {
			if allZero(t.buf) {
				l.obj.warnf("descriptor %#x is all zeros: skipped", t.addr+l.bias)
				continue
			}
			d, _ := ParseDescriptor(t.buf)
			cands = append(cands, candidate{t.addr, d, secPtrArray})
		}
	}
	for _, t := range descs {
		for s := range t.slotSeen {
			if t.slotSeen[s] {
				continue
			}
			addr := t.slotBase + uint64(s)*DescriptorSize
			b := t.data[addr-t.addr:][:DescriptorSize]
			if allZero(b) || odd[addr] {
				continue // alignment padding
			}
			d, _ := ParseDescriptor(b)
			cands = append(cands, candidate{addr, d, t.name})
		}
	}
	return cands
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// exitPair is one __rseq_exit_point_array entry, link-time.
type exitPair struct{ start, exit uint64 }

func (l *loader) exitPairs(tables []*table) []exitPair {
	n := 0
	for _, t := range tables {
		n += len(t.data) / 16
		if len(t.data)%16 != 0 {
			l.obj.warnf("%s: size %d is not a multiple of 16: trailing bytes ignored", t.name, len(t.data))
		}
	}
	pairs := make([]exitPair, 0, n)
	for _, t := range tables {
		for i := 0; i+16 <= len(t.data); i += 16 {
			p := exitPair{binary.LittleEndian.Uint64(t.data[i:]), binary.LittleEndian.Uint64(t.data[i+8:])}
			if p == (exitPair{}) {
				continue
			}
			pairs = append(pairs, p)
		}
	}
	if !sort.SliceIsSorted(pairs, func(i, j int) bool { return pairs[i].start < pairs[j].start }) {
		sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].start < pairs[j].start })
	}
	return pairs
}

// buildRegions turns descriptors into validated, named, decoded regions.
func (l *loader) buildRegions(cands []candidate, pairs []exitPair) {
	bias := l.bias
	slab := make([]Region, len(cands))
	regs := make([]*Region, 0, len(cands))
	for i := range cands {
		c := &cands[i]
		d := c.d
		d.StartIP += bias
		d.AbortIP += bias
		if d.wraps() {
			l.obj.warnf("descriptor %#x: start_ip %#x + post_commit_offset %#x overflows: skipped", c.link+bias, d.StartIP, d.PostCommitOffset)
			continue
		}
		r := &slab[i]
		newCriticalSection(r, d, c.link+bias, c.src)
		r.Object = l.path
		l.checkExec(r, "start", c.d.StartIP)
		l.checkExec(r, "commit", c.d.StartIP+c.d.PostCommitOffset)
		l.checkExec(r, "abort", c.d.AbortIP)
		regs = append(regs, r)
	}
	less := func(i, j int) bool {
		if regs[i].Start != regs[j].Start {
			return regs[i].Start < regs[j].Start
		}
		return regs[i].Descriptor < regs[j].Descriptor
	}
	if !sort.SliceIsSorted(regs, less) {
		sort.Slice(regs, less)
	}
	l.name(regs)
	for _, r := range regs {
		if r.Name == "" {
			r.Name = hex(r.Start)
		}
	}
	warnOverlaps(regs)

	// Exit points, matched on start_ip; exitRT[i] is pairs[i].exit at run time.
	exitRT := make([]uint64, len(pairs))
	matched := make([]bool, len(pairs))
	for i, p := range pairs {
		exitRT[i] = p.exit + bias
	}
	spans := make([][2]int32, len(regs))
	for k, r := range regs {
		s := r.Start - bias
		i := sort.Search(len(pairs), func(i int) bool { return pairs[i].start >= s })
		j := i
		for j < len(pairs) && pairs[j].start == s {
			matched[j] = true
			j++
		}
		spans[k] = [2]int32{int32(i), int32(j)}
		// Read the code now: analysis runs in parallel on read-only data.
		l.codeAt(r.Start - bias)
		l.codeAt(r.Abort - bias)
		l.codeAt(r.Abort - bias - 4)
	}
	for i, p := range pairs {
		if !matched[i] {
			l.obj.warnf("exit point %#x of start_ip %#x matches no region", p.exit+bias, p.start+bias)
		}
	}

	workers := runtime.GOMAXPROCS(0)
	if len(regs) < 4096 {
		workers = 1
	}
	per := (len(regs) + workers - 1) / max(workers, 1)
	var wg sync.WaitGroup
	for lo := 0; lo < len(regs); lo += per {
		hi := min(lo+per, len(regs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc scratch
			for k := lo; k < hi; k++ {
				r := regs[k]
				analyze(r, l.regionCode(r), exitRT[spans[k][0]:spans[k][1]], &sc)
			}
		}()
	}
	wg.Wait()
	l.obj.Regions = regs
}

func (l *loader) checkExec(r *Region, what string, link uint64) {
	if len(l.execLoads) > 0 && !l.inExec(link) {
		r.warnf("%s %#x outside any executable PT_LOAD", what, link+l.bias)
	}
}

// warnOverlaps warns on both regions of every overlapping pair; regs is
// sorted by Start. The index decides which one is used.
func warnOverlaps(regs []*Region) {
	var last *Region // the region reaching furthest so far
	for _, r := range regs {
		if last != nil && r.Start < last.End && r.End > r.Start && last.End > last.Start {
			r.warnf("overlaps %s [%#x, %#x)", last.Name, last.Start, last.End)
			last.warnf("overlaps %s [%#x, %#x)", r.Name, r.Start, r.End)
		}
		if last == nil || r.End > last.End {
			last = r
		}
	}
}

// name gives every region the symbol+offset name of its start.
func (l *loader) name(regs []*Region) {
	syms := l.funcSymbols()
	if len(syms) == 0 {
		return
	}
	// One backing string for all the "sym+off" names.
	var buf []byte
	type span struct{ lo, hi int }
	spans := make([]span, len(regs))
	for k, r := range regs {
		link := r.Start - l.bias
		i := sort.Search(len(syms), func(i int) bool { return syms[i].Value > link }) - 1
		if i < 0 {
			spans[k] = span{-1, -1}
			continue
		}
		s := syms[i]
		if s.Size > 0 && link-s.Value >= s.Size {
			spans[k] = span{-1, -1}
			continue
		}
		if link == s.Value {
			r.Name = s.Name
			spans[k] = span{-1, -1}
			continue
		}
		lo := len(buf)
		buf = append(buf, s.Name...)
		buf = append(buf, '+')
		buf = strconv.AppendUint(buf, link-s.Value, 10)
		spans[k] = span{lo, len(buf)}
	}
	all := string(buf)
	for k, r := range regs {
		if sp := spans[k]; sp.lo >= 0 {
			r.Name = all[sp.lo:sp.hi]
		}
	}
}

// funcSymbols returns the defined function symbols sorted by address,
// preferring .symtab and falling back to .dynsym for stripped files.
func (l *loader) funcSymbols() []elf.Symbol {
	var syms []elf.Symbol
	if symtabFits(l.f, elf.SHT_SYMTAB, l.size) {
		syms, _ = l.f.Symbols()
	}
	if len(syms) == 0 && symtabFits(l.f, elf.SHT_DYNSYM, l.size) {
		syms, _ = l.f.DynamicSymbols()
	}
	out := syms[:0]
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF && s.Value != 0 {
			out = append(out, s)
		}
	}
	// Among symbols at one address keep the sized one first, so that an
	// unsized alias does not hide the size check.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Value != out[j].Value {
			return out[i].Value < out[j].Value
		}
		return out[i].Size < out[j].Size
	})
	return out
}

// codeAt returns the executable range holding a link-time address, reading
// it on first use.
func (l *loader) codeAt(addr uint64) *codeRange {
	if l.code == nil {
		l.initCode()
	}
	i := sort.Search(len(l.code), func(i int) bool { return l.code[i].end > addr })
	if i >= len(l.code) || addr < l.code[i].addr {
		return nil
	}
	c := &l.code[i]
	if !c.loaded {
		c.loaded = true
		data, err := l.readAt(c.off, c.end-c.addr)
		if err != nil {
			c.failed = true
			l.obj.warnf("reading code of %s in %s: %v", c.name, l.path, err)
		}
		c.data = data
	}
	if c.failed {
		return nil
	}
	return c
}

// peekCode is codeAt without reading: for the parallel phase.
func (l *loader) peekCode(addr uint64) *codeRange {
	i := sort.Search(len(l.code), func(i int) bool { return l.code[i].end > addr })
	if i >= len(l.code) || addr < l.code[i].addr || !l.code[i].loaded || l.code[i].failed {
		return nil
	}
	return &l.code[i]
}

func (l *loader) initCode() {
	l.code = []codeRange{}
	for _, s := range l.f.Sections {
		if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Flags&elf.SHF_ALLOC != 0 && s.Size > 0 && s.Addr+s.Size > s.Addr {
			l.code = append(l.code, codeRange{name: s.Name, addr: s.Addr, end: s.Addr + s.Size, off: s.Offset})
		}
	}
	if len(l.code) == 0 {
		for _, p := range l.execLoads {
			if p.Filesz > 0 && p.Vaddr+p.Filesz > p.Vaddr {
				l.code = append(l.code, codeRange{name: "executable segment", addr: p.Vaddr, end: p.Vaddr + p.Filesz, off: p.Off})
			}
		}
	}
	sort.Slice(l.code, func(i, j int) bool { return l.code[i].addr < l.code[j].addr })
	// Overlapping sections would make the binary search ambiguous; a
	// well-formed file has none, a hostile one loses the later ones.
	out := l.code[:0]
	for _, c := range l.code {
		if len(out) > 0 && c.addr < out[len(out)-1].end {
			continue
		}
		out = append(out, c)
	}
	l.code = out
}

// regionCode slices r's bytes out of the file's executable sections.
func (l *loader) regionCode(r *Region) regionCode {
	var c regionCode
	start := r.Start - l.bias
	if cr := l.peekCode(start); cr != nil {
		n := min(r.End-r.Start, MaxCriticalSection) + maxInsnLen
		end := cr.end
		if start+n > start && start+n < end {
			end = start + n
		}
		c.body = cr.data[start-cr.addr : end-cr.addr]
	} else {
		c.noBody = fmt.Sprintf("start %#x is in no executable section of the file", r.Start)
	}
	abort := r.Abort - l.bias
	if cr := l.peekCode(abort - 4); cr != nil && abort-4 < abort && abort <= cr.end {
		c.sig = cr.data[abort-4-cr.addr : abort-cr.addr]
	}
	if cr := l.peekCode(abort); cr != nil {
		end := min(cr.end, abort+abortHandlerWindow)
		if end < abort {
			end = cr.end
		}
		c.abort = cr.data[abort-cr.addr : end-cr.addr]
	} else {
		c.noAbort = fmt.Sprintf("%#x is in no executable section of the file", r.Abort)
	}
	return c
}

// symtabFits reports whether the first symbol table of type typ and its
// string table lie inside the file, checked before debug/elf reads them:
// it would otherwise allocate for a hostile size field before failing.
func symtabFits(f *elf.File, typ elf.SectionType, size int64) bool {
	s := f.SectionByType(typ)
	if s == nil {
		return false
	}
	if size < 0 {
		return true
	}
	fits := func(s *elf.Section) bool {
		return s.Type == elf.SHT_NOBITS || (s.Offset <= uint64(size) && s.Size <= uint64(size)-s.Offset)
	}
	if !fits(s) || int(s.Link) >= len(f.Sections) || s.Link == 0 {
		return false
	}
	return fits(f.Sections[s.Link])
}

// precheck refuses, before debug/elf reads them, header tables and a
// section name table that lie past the end of a file of known size:
// debug/elf would allocate up to 10 MB for each before noticing.
func precheck(r io.ReaderAt, size int64) error {
	if size < 0 {
		return nil
	}
	var h [64]byte
	if n, _ := r.ReadAt(h[:], 0); n < len(h) || string(h[:4]) != elf.ELFMAG ||
		elf.Class(h[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(h[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return nil // not ours to judge: debug/elf explains it
	}
	le := binary.LittleEndian
	phoff, shoff := le.Uint64(h[32:]), le.Uint64(h[40:])
	phentsize, phnum := uint64(le.Uint16(h[54:])), uint64(le.Uint16(h[56:]))
	shentsize, shnum, shstrndx := uint64(le.Uint16(h[58:])), uint64(le.Uint16(h[60:])), uint64(le.Uint16(h[62:]))
	within := func(off, n uint64) bool { return off <= uint64(size) && n <= uint64(size)-off }
	if phnum > 0 && !within(phoff, phnum*phentsize) {
		return fmt.Errorf("program headers [%#x, +%d) lie past the end of the file (%d bytes)", phoff, phnum*phentsize, size)
	}
	if shnum == 0 || shentsize < 64 || shstrndx >= shnum {
		return nil // extended numbering or nonsense: debug/elf checks
	}
	if !within(shoff, shnum*shentsize) {
		return fmt.Errorf("section headers [%#x, +%d) lie past the end of the file (%d bytes)", shoff, shnum*shentsize, size)
	}
	var sh [64]byte
	if n, _ := r.ReadAt(sh[:], int64(shoff+shstrndx*shentsize)); n < len(sh) {
		return nil
	}
	if elf.SectionType(le.Uint32(sh[4:])) != elf.SHT_NOBITS && !within(le.Uint64(sh[24:]), le.Uint64(sh[32:])) {
		return fmt.Errorf("section name table lies past the end of the file (%d bytes)", size)
	}
	return nil
}
