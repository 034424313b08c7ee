package regions

import (
	"debug/elf"
	"encoding/binary"
)

// testELF builds small x86-64 ELF images for tests: every allocated section
// gets its own PT_LOAD with vaddr == file offset (like a PIE at bias 0).
type testELF struct {
	typ     elf.Type
	secs    []testSec
	syms    []testSym
	dynsyms []testSym
	relas   []testRela
	off     uint64
}

type testSec struct {
	name  string
	typ   elf.SectionType
	flags elf.SectionFlag
	addr  uint64
	data  []byte
	align uint64
	size  uint64 // for SHT_NOBITS
}

type testSym struct {
	name        string
	value, size uint64
	typ         elf.SymType
	bind        elf.SymBind
	sec         string // section name; "" = undefined
}

type testRela struct {
	off    uint64
	typ    elf.R_X86_64
	sym    uint32 // index into dynsyms + 1
	addend uint64
}

func newTestELF() *testELF { return &testELF{typ: elf.ET_DYN, off: 0x1000} }

// add places an allocated section and returns its address.
func (e *testELF) add(name string, flags elf.SectionFlag, data []byte, align uint64) uint64 {
	if align == 0 {
		align = 1
	}
	e.off = (e.off + align - 1) &^ (align - 1)
	addr := e.off
	e.secs = append(e.secs, testSec{name: name, typ: elf.SHT_PROGBITS, flags: flags | elf.SHF_ALLOC, addr: addr, data: data, align: align})
	e.off += uint64(len(data))
	return addr
}

// reserve returns the address the next section of this alignment gets.
func (e *testELF) next(align uint64) uint64 { return (e.off + align - 1) &^ (align - 1) }

func (e *testELF) sec(name string) *testSec {
	for i := range e.secs {
		if e.secs[i].name == name {
			return &e.secs[i]
		}
	}
	return nil
}

func (e *testELF) fn(name string, value, size uint64, sec string) {
	e.syms = append(e.syms, testSym{name: name, value: value, size: size, typ: elf.STT_FUNC, bind: elf.STB_GLOBAL, sec: sec})
}

const (
	flagX = elf.SHF_EXECINSTR
	flagW = elf.SHF_WRITE
)

func le64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func descBytes(version, flags uint32, start, post, abort uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, version)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = le64(b, start)
	b = le64(b, post)
	return le64(b, abort)
}

func (e *testELF) bytes() []byte {
	type shdr struct {
		name            uint32
		typ             elf.SectionType
		flags           elf.SectionFlag
		addr, off, size uint64
		link, info      uint32
		align, entsize  uint64
	}
	var shstr []byte
	strIndex := func(tab *[]byte, s string) uint32 {
		i := uint32(len(*tab))
		*tab = append(append(*tab, s...), 0)
		return i
	}
	shstr = append(shstr, 0)
	out := make([]byte, e.off)
	var shdrs []shdr
	shdrs = append(shdrs, shdr{})
	secIndex := map[string]int{}
	for _, s := range e.secs {
		copy(out[s.addr:], s.data)
		secIndex[s.name] = len(shdrs)
		size := uint64(len(s.data))
		if s.typ == elf.SHT_NOBITS {
			size = s.size
		}
		shdrs = append(shdrs, shdr{name: strIndex(&shstr, s.name), typ: s.typ, flags: s.flags, addr: s.addr, off: s.addr, size: size, align: s.align})
	}
	appendSec := func(name string, typ elf.SectionType, data []byte, link, info uint32, align, entsize uint64) int {
		for uint64(len(out))%align != 0 {
			out = append(out, 0)
		}
		off := uint64(len(out))
		out = append(out, data...)
		shdrs = append(shdrs, shdr{name: strIndex(&shstr, name), typ: typ, addr: 0, off: off, size: uint64(len(data)), link: link, info: info, align: align, entsize: entsize})
		return len(shdrs) - 1
	}
	symBytes := func(syms []testSym, str *[]byte) []byte {
		b := make([]byte, 24) // null symbol
		for _, s := range syms {
			var ent [24]byte
			binary.LittleEndian.PutUint32(ent[0:], strIndex(str, s.name))
			ent[4] = byte(s.bind)<<4 | byte(s.typ)
			if i, ok := secIndex[s.sec]; ok {
				binary.LittleEndian.PutUint16(ent[6:], uint16(i))
			}
			binary.LittleEndian.PutUint64(ent[8:], s.value)
			binary.LittleEndian.PutUint64(ent[16:], s.size)
			b = append(b, ent[:]...)
		}
		return b
	}
	dynsymIdx := 0
	if len(e.dynsyms) > 0 {
		dynstr := []byte{0}
		ds := symBytes(e.dynsyms, &dynstr)
		strIdx := appendSec(".dynstr", elf.SHT_STRTAB, dynstr, 0, 0, 1, 0)
		dynsymIdx = appendSec(".dynsym", elf.SHT_DYNSYM, ds, uint32(strIdx), 1, 8, 24)
	}
	if len(e.relas) > 0 {
		var rb []byte
		for _, r := range e.relas {
			rb = le64(rb, r.off)
			rb = le64(rb, uint64(r.sym)<<32|uint64(r.typ))
			rb = le64(rb, r.addend)
		}
		appendSec(".rela.dyn", elf.SHT_RELA, rb, uint32(dynsymIdx), 0, 8, 24)
	}
	if len(e.syms) > 0 {
		str := []byte{0}
		sb := symBytes(e.syms, &str)
		strIdx := appendSec(".strtab", elf.SHT_STRTAB, str, 0, 0, 1, 0)
		appendSec(".symtab", elf.SHT_SYMTAB, sb, uint32(strIdx), 1, 8, 24)
	}
	shstrIdx := len(shdrs)
	shdrs = append(shdrs, shdr{})
	shstrName := strIndex(&shstr, ".shstrtab")
	shstrOff := uint64(len(out))
	out = append(out, shstr...)
	shdrs[shstrIdx] = shdr{name: shstrName, typ: elf.SHT_STRTAB, off: shstrOff, size: uint64(len(shstr)), align: 1}
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	shoff := uint64(len(out))
	for _, s := range shdrs {
		var b [64]byte
		le := binary.LittleEndian
		le.PutUint32(b[0:], s.name)
		le.PutUint32(b[4:], uint32(s.typ))
		le.PutUint64(b[8:], uint64(s.flags))
		le.PutUint64(b[16:], s.addr)
		le.PutUint64(b[24:], s.off)
		le.PutUint64(b[32:], s.size)
		le.PutUint32(b[40:], s.link)
		le.PutUint32(b[44:], s.info)
		le.PutUint64(b[48:], s.align)
		le.PutUint64(b[56:], s.entsize)
		out = append(out, b[:]...)
	}
	// Program headers right after the ELF header.
	var phdrs [][56]byte
	for _, s := range e.secs {
		var p [56]byte
		le := binary.LittleEndian
		flags := elf.PF_R
		if s.flags&flagX != 0 {
			flags |= elf.PF_X
		}
		if s.flags&flagW != 0 {
			flags |= elf.PF_W
		}
		filesz := uint64(len(s.data))
		memsz := filesz
		if s.typ == elf.SHT_NOBITS {
			filesz, memsz = 0, s.size
		}
		le.PutUint32(p[0:], uint32(elf.PT_LOAD))
		le.PutUint32(p[4:], uint32(flags))
		le.PutUint64(p[8:], s.addr)
		le.PutUint64(p[16:], s.addr)
		le.PutUint64(p[24:], s.addr)
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], memsz)
		le.PutUint64(p[48:], 1)
		phdrs = append(phdrs, p)
	}
	if 64+56*len(phdrs) > 0x1000 {
		panic("too many sections for the test ELF header page")
	}
	h := out[:64]
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(h[16:], uint16(e.typ))
	le.PutUint16(h[18:], uint16(elf.EM_X86_64))
	le.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(h[32:], 64)
	le.PutUint64(h[40:], shoff)
	le.PutUint16(h[52:], 64)
	le.PutUint16(h[54:], 56)
	le.PutUint16(h[56:], uint16(len(phdrs)))
	le.PutUint16(h[58:], 64)
	le.PutUint16(h[60:], uint16(len(shdrs)))
	le.PutUint16(h[62:], uint16(shstrIdx))
	for i, p := range phdrs {
		copy(out[64+56*i:], p[:])
	}
	return out
}

// Code snippets (x86-64) used to build critical sections.
var (
	sigBytes = []byte{0x0f, 0xb9, 0x3d, 0x53, 0x30, 0x05, 0x53} // ud1 0x53053053(%rip),%edi
	// cmp 0x4(%rbp),%ebx
	insCmp = []byte{0x3b, 0x5d, 0x04}
	// mov (%r12),%rax ; add $1,%rax ; mov %rax,(%r12)
	insBody    = []byte{0x49, 0x8b, 0x04, 0x24, 0x48, 0x83, 0xc0, 0x01, 0x49, 0x89, 0x04, 0x24}
	insMovEax1 = []byte{0xb8, 0x01, 0x00, 0x00, 0x00}
	insIncR14  = []byte{0x49, 0xff, 0x06}
)

func rel32(b []byte, at, target uint64) []byte {
	return binary.LittleEndian.AppendUint32(b, uint32(int32(int64(target)-int64(at))))
}

// jcc appends jne target for an instruction placed at addr.
func jne(b []byte, addr, target uint64) []byte {
	return rel32(append(b, 0x0f, 0x85), addr+6, target)
}

func jmp(b []byte, addr, target uint64) []byte {
	return rel32(append(b, 0xe9), addr+5, target)
}

// genOpts describes a generated object with n critical sections.
type genOpts struct {
	n          int
	lld        bool // table bytes zero, values only in R_X86_64_RELATIVE
	noRelocs   bool // values only in the bytes (a non-PIE link)
	exitPoints bool
	legacy     bool // descriptors in __rseq_table, no pointer array
	padding    int  // zero slots at the start of __rseq_cs
}

type genResult struct {
	img                          []byte
	starts, ends, aborts, descs  []uint64
	exits                        []uint64
	text, fail, cs, ptrs, points uint64
}

const (
	genBlock = 28 // cmp, jne abort, body (commit here) mov $1,%eax, xor %eax,%eax
	genBody  = 21
	genFail  = 15 // signature, incq (%r14), jmp start
)

func genELF(o genOpts) genResult {
	e := newTestELF()
	var g genResult
	g.text = e.next(16)
	g.fail = (g.text + uint64(o.n)*genBlock + 15) &^ 15
	text := make([]byte, 0, o.n*genBlock)
	fail := make([]byte, 0, o.n*genFail)
	for i := 0; i < o.n; i++ {
		start := g.text + uint64(i)*genBlock
		abort := g.fail + uint64(i)*genFail + uint64(len(sigBytes))
		text = append(text, insCmp...)
		text = jne(text, start+3, abort)
		text = append(text, insBody...)
		text = append(text, insMovEax1...)
		text = append(text, 0x31, 0xc0)
		fail = append(fail, sigBytes...)
		fail = append(fail, insIncR14...)
		fail = jmp(fail, abort+3, start)
		g.starts = append(g.starts, start)
		g.ends = append(g.ends, start+genBody)
		g.aborts = append(g.aborts, abort)
		g.exits = append(g.exits, start+genBody+5)
	}
	e.add(".text", flagX, text, 16)
	if got := e.add("__rseq_failure", flagX, fail, 16); got != g.fail {
		panic("layout")
	}
	e.fn("bench", g.text, uint64(len(text)), ".text")
	var relas []testRela
	rel := func(b []byte, at, v uint64) []byte {
		if !o.noRelocs {
			relas = append(relas, testRela{off: at, typ: elf.R_X86_64_RELATIVE, addend: v})
		}
		if o.lld {
			v = 0
		}
		return le64(b, v)
	}
	csName := "__rseq_cs"
	if o.legacy {
		csName = "__rseq_table"
	}
	g.cs = e.next(32)
	cs := make([]byte, 32*o.padding, 32*(o.n+o.padding))
	for i := 0; i < o.n; i++ {
		at := g.cs + uint64(len(cs))
		g.descs = append(g.descs, at)
		cs = binary.LittleEndian.AppendUint64(cs, 0)
		cs = rel(cs, at+8, g.starts[i])
		cs = le64(cs, genBody)
		cs = rel(cs, at+24, g.aborts[i])
	}
	e.add(csName, flagW, cs, 32)
	if !o.legacy {
		g.ptrs = e.next(8)
		ptrs := make([]byte, 0, 8*o.n)
		for i := 0; i < o.n; i++ {
			ptrs = rel(ptrs, g.ptrs+uint64(8*i), g.descs[i])
		}
		e.add("__rseq_cs_ptr_array", flagW, ptrs, 8)
	}
	if o.exitPoints {
		g.points = e.next(8)
		pts := make([]byte, 0, 16*o.n)
		for i := 0; i < o.n; i++ {
			pts = rel(pts, g.points+uint64(16*i), g.starts[i])
			pts = rel(pts, g.points+uint64(16*i+8), g.exits[i])
		}
		e.add("__rseq_exit_point_array", flagW, pts, 8)
	}
	e.relas = relas
	g.img = e.bytes()
	return g
}
