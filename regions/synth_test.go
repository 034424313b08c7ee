package regions

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/target"
)

// csLayout is one critical section at known addresses.
type csLayout struct {
	e          *testELF
	text, fail uint64
	start, end uint64
	abort      uint64
	exit       uint64
}

// buildCS makes .text holding one section whose body (built knowing its
// start and the abort address) is followed by movl $1,%eax (the commit
// point), then xorl %eax,%eax; ret (the exit); and an abort stub in
// __rseq_failure at text+0x100.
func buildCS(body func(start, abort uint64) []byte) *csLayout {
	l := &csLayout{e: newTestELF()}
	l.text = l.e.next(16)
	l.start = l.text + 4
	l.fail = l.text + 0x100
	l.abort = l.fail + uint64(len(sigBytes))
	code := append([]byte{0x90, 0x90, 0x90, 0x90}, body(l.start, l.abort)...)
	l.end = l.text + uint64(len(code))
	code = append(code, insMovEax1...)
	l.exit = l.text + uint64(len(code))
	code = append(code, 0x31, 0xc0, 0xc3)
	if len(code) > 0x100 {
		panic("body too long")
	}
	l.e.add(".text", flagX, code, 16)
	l.e.fn("f", l.text, uint64(len(code)), ".text")
	stub := append(append([]byte{}, sigBytes...), insIncR14...)
	stub = jmp(stub, l.abort+3, l.text)
	if got := l.e.add("__rseq_failure", flagX, stub, 0x100); got != l.fail {
		panic("layout")
	}
	return l
}

func TestDecodedExits(t *testing.T) {
	var callAt, jmpIndAt, retAt, syscallAt uint64
	var branchTarget uint64
	l := buildCS(func(start, abort uint64) []byte {
		pc := start
		b := append([]byte{}, insCmp...)
		pc += 3
		b = jne(b, pc, abort)
		pc += 6
		b = append(b, 0x78, 0) // js exit (rel8 patched below)
		jsAt := len(b) - 1
		pc += 2
		callAt = pc
		b = append(b, 0xe8, 0, 0, 0, 0) // call next (a call is not an exit)
		pc += 5
		jmpIndAt = pc
		b = append(b, 0xff, 0xe1) // jmp *%rcx
		pc += 2
		retAt = pc
		b = append(b, 0xc3)
		pc++
		syscallAt = pc
		b = append(b, 0x0f, 0x05)
		pc += 2
		branchTarget = 0x100 // far below: a branch exit
		b = rel32(append(b, 0x0f, 0x84), pc+6, branchTarget)
		pc += 6
		b = append(b, 0xeb, 0xfe) // jmp to itself: inside, not an exit
		pc += 2
		b = append(b, insBody...)
		pc += uint64(len(insBody))
		b[jsAt] = byte(int8(int64(pc+5) - int64(jsAt) - 1 - int64(start))) // to exit, after mov $1,%eax
		return b
	})
	cs := l.e.add("__rseq_cs", flagW, descBytes(0, 0, l.start, l.end-l.start, l.abort), 32)
	l.e.add("__rseq_cs_ptr_array", flagW, le64(nil, cs), 8)
	obj := loadImage(t, l.e.bytes(), 0)
	if len(obj.Regions) != 1 {
		t.Fatalf("regions %v warnings %q", obj.Regions, obj.Warnings)
	}
	r := obj.Regions[0]
	want := []Exit{{branchTarget, ExitBranch}, {l.end, ExitCommit}, {l.exit, ExitBranch}, {l.abort, ExitAbort}}
	if !equalExits(r.Exits, want) {
		t.Errorf("exits %v, want %v", r.Exits, want)
	}
	if len(r.Calls) != 1 || r.Calls[0] != callAt {
		t.Errorf("calls %#x, want %#x", r.Calls, callAt)
	}
	if len(r.Indirect) != 2 || r.Indirect[0] != jmpIndAt || r.Indirect[1] != retAt {
		t.Errorf("indirect %#x, want %#x %#x", r.Indirect, jmpIndAt, retAt)
	}
	for _, w := range []string{"indirect exit at " + hex(jmpIndAt), "indirect exit at " + hex(retAt), "system call at " + hex(syscallAt)} {
		if !hasWarning(r.Warnings, w) {
			t.Errorf("no warning %q in %q", w, r.Warnings)
		}
	}
	for _, x := range r.Exits {
		if r.Contains(x.Addr) {
			t.Errorf("exit %#x inside the range", x.Addr)
		}
	}
	if k, ok := r.ExitKindAt(l.abort); !ok || k != ExitAbort {
		t.Errorf("ExitKindAt(abort) = %v %v", k, ok)
	}
	if _, ok := r.ExitKindAt(r.Start); ok {
		t.Error("start is an exit")
	}
}

// TestValidationWarnings builds one object with every kind of broken
// descriptor and checks that each yields its warning and the load goes on.
func TestValidationWarnings(t *testing.T) {
	e := newTestELF()
	text := e.next(16)
	// Six 32-byte slots of code: nops, each slot a potential section.
	code := bytes.Repeat([]byte{0x90}, 32*8)
	copy(code[32*3:], sigBytes) // a signature at slot 3 for the good one
	undecodable := text + 32*5
	code[32*5], code[32*5+1] = 0x06, 0x27 // push %es, daa: invalid in 64-bit mode
	e.add(".text", flagX, code, 16)
	e.fn("f", text, uint64(len(code)), ".text")
	data := e.add(".data", flagW, make([]byte, 64), 8)
	good := text + 32*3 + 7 // abort just after the signature
	slot := func(i int) uint64 { return text + 32*uint64(i) }
	var cs []byte
	add := func(d []byte) { cs = append(cs, d...) }
	add(make([]byte, 32))                        // padding, skipped
	add(descBytes(0, 0, slot(0), 8, good))       // 1: fine
	add(descBytes(1, 0, slot(1), 8, good))       // 2: version
	add(descBytes(0, 1, slot(2), 8, good))       // 3: flags
	add(descBytes(0, 0, slot(4), 8, slot(4)+4))  // 4: abort inside, no signature
	add(descBytes(0, 0, slot(4)+16, 0, good))    // 5: empty
	add(descBytes(0, 0, slot(6), 0x20000, good)) // 6: huge
	add(descBytes(0, 0, data, 8, good))          // 7: start outside code
	add(descBytes(0, 0, ^uint64(0)-4, 8, good))  // 8: wraps: skipped
	add(descBytes(0, 0, undecodable, 8, good))   // 9: undecodable bytes
	add(descBytes(0, 0, slot(0)+2, 8, good))     // 10: overlaps 1
	add(descBytes(0, 0, slot(7), 4, slot(7)+16)) // 11: bad signature (nops)
	csAddr := e.add("__rseq_cs", flagW, cs, 32)
	var ptrs []byte
	ptrs = le64(ptrs, csAddr+32) // the first descriptor, also found by scanning
	ptrs = le64(ptrs, 0x10)      // outside any mapping
	ptrs = le64(ptrs, data+40)   // runs past the end of .data
	ptrs = le64(ptrs, 0)         // padding
	e.add("__rseq_cs_ptr_array", flagW, ptrs, 8)
	var pts []byte
	pts = le64(le64(pts, slot(0)), slot(0)+4) // inside its own range
	pts = le64(le64(pts, 0x4444), 0x5555)     // no region
	pts = le64(le64(pts, slot(0)), slot(0)+8) // commit: deduplicated
	e.add("__rseq_exit_point_array", flagW, pts, 8)

	obj := loadImage(t, e.bytes(), 0)
	byStart := map[uint64]*Region{}
	for _, r := range obj.Regions {
		byStart[r.Start] = r
	}
	if len(obj.Regions) != 10 {
		t.Errorf("%d regions, want 10", len(obj.Regions))
	}
	check := func(start uint64, subs ...string) {
		t.Helper()
		r := byStart[start]
		if r == nil {
			t.Errorf("no region at %#x", start)
			return
		}
		for _, s := range subs {
			if !hasWarning(r.Warnings, s) {
				t.Errorf("region %v: no warning %q in %q", r, s, r.Warnings)
			}
		}
	}
	check(slot(0), "exit point "+hex(slot(0)+4)+" lies inside", "overlaps")
	if r := byStart[slot(0)]; r != nil {
		if r.Source != "__rseq_cs_ptr_array" {
			t.Errorf("source %q", r.Source)
		}
		if !equalExits(r.Exits, []Exit{{slot(0) + 8, ExitCommit}, {good, ExitAbort}}) {
			t.Errorf("exits %v", r.Exits)
		}
	}
	check(slot(1), "version 1")
	check(slot(2), "deprecated flags 0x1")
	check(slot(4), "inside [", "not the signature")
	check(slot(4)+16, "post_commit_offset 0")
	check(slot(6), "larger than 64 KiB", "commit "+hex(slot(6)+0x20000)+" outside any executable PT_LOAD")
	check(data, "start "+hex(data)+" outside any executable PT_LOAD", "in no executable section")
	check(undecodable, "undecodable bytes")
	check(slot(7), "are 90 90 90 90 (0x90909090)")
	if byStart[slot(2)] != nil && byStart[slot(2)].Source != "__rseq_cs" {
		t.Errorf("scanned descriptor source %q", byStart[slot(2)].Source)
	}
	for _, w := range []string{"pointer 0x10 outside any mapping: skipped", "overflows: skipped",
		"exit point 0x5555 of start_ip 0x4444 matches no region", "pointer " + hex(data+40) + " outside any mapping"} {
		if !hasWarning(obj.Warnings, w) {
			t.Errorf("no object warning %q in %q", w, obj.Warnings)
		}
	}
}

func TestDescriptorOutsideTable(t *testing.T) {
	e := newTestELF()
	text := e.next(16)
	code := append(append([]byte{}, sigBytes...), bytes.Repeat([]byte{0x90}, 16)...)
	e.add(".text", flagX, code, 16)
	ro := e.next(32)
	// A descriptor in .data.rel.ro, values only in relocations (lld).
	e.add(".data.rel.ro", flagW, make([]byte, 32), 32)
	e.relas = append(e.relas,
		testRela{off: ro + 8, typ: elf.R_X86_64_RELATIVE, addend: text + 8},
		testRela{off: ro + 24, typ: elf.R_X86_64_RELATIVE, addend: text + 7})
	// post_commit_offset is not relocated: write it.
	copy(e.sec(".data.rel.ro").data[16:], le64(nil, 4))
	ptr := e.next(8)
	e.add("__rseq_cs_ptr_array", flagW, make([]byte, 8), 8)
	e.relas = append(e.relas, testRela{off: ptr, typ: elf.R_X86_64_RELATIVE, addend: ro})
	obj := loadImage(t, e.bytes(), 0x1000)
	if len(obj.Regions) != 1 {
		t.Fatalf("regions %v warnings %q", obj.Regions, obj.Warnings)
	}
	r := obj.Regions[0]
	if r.Start != text+8+0x1000 || r.End != text+12+0x1000 || r.Abort != text+7+0x1000 || r.Descriptor != ro+0x1000 {
		t.Errorf("region %v abort %#x desc %#x", r, r.Abort, r.Descriptor)
	}
	if !hasWarning(obj.Warnings, "lies outside __rseq_cs") {
		t.Errorf("warnings %q", obj.Warnings)
	}
}

func TestRelocationKinds(t *testing.T) {
	e := newTestELF()
	text := e.next(16)
	code := append(append([]byte{}, sigBytes...), bytes.Repeat([]byte{0x90}, 16)...)
	e.add(".text", flagX, code, 16)
	cs := e.next(32)
	e.add("__rseq_cs", flagW, descBytes(0, 0, 0, 4, 0), 32)
	e.add("__rseq_cs", flagW, descBytes(0, 0, 0, 4, 0), 32)
	e.dynsyms = []testSym{
		{name: "code", value: text, typ: elf.STT_FUNC, bind: elf.STB_GLOBAL, sec: ".text"},
		{name: "ext", typ: elf.STT_FUNC, bind: elf.STB_GLOBAL},
	}
	e.relas = []testRela{
		{off: cs + 8, typ: elf.R_X86_64_64, sym: 1, addend: 8},         // code+8
		{off: cs + 24, typ: elf.R_X86_64_64, sym: 0, addend: text + 7}, // absolute
		{off: cs + 32 + 8, typ: elf.R_X86_64_64, sym: 2, addend: 0},    // undefined
		{off: cs + 32 + 24, typ: elf.R_X86_64_IRELATIVE, addend: 0},    // unsupported
		{off: cs + 60, typ: elf.R_X86_64_RELATIVE, addend: 0},          // straddles the end
	}
	obj := loadImage(t, e.bytes(), 0)
	var r *Region
	for _, x := range obj.Regions {
		if x.Descriptor == cs {
			r = x
		}
	}
	if r == nil || r.Start != text+8 || r.Abort != text+7 {
		t.Errorf("R_X86_64_64 not applied: %v", obj.Regions)
	}
	for _, w := range []string{"undefined or missing", "R_X86_64_IRELATIVE", "straddles"} {
		if !hasWarning(obj.Warnings, w) {
			t.Errorf("no warning %q in %q", w, obj.Warnings)
		}
	}
}

// TestBadSections: tables whose offsets lie past the end of the file, or
// that have no contents, are skipped with warnings.
func TestBadSections(t *testing.T) {
	g := genELF(genOpts{n: 2})
	f, err := elf.NewFile(bytes.NewReader(g.img))
	if err != nil {
		t.Fatal(err)
	}
	img := append([]byte(nil), g.img...)
	// Patch the section headers in place.
	shoff := binary.LittleEndian.Uint64(img[40:])
	for i, s := range f.Sections {
		h := img[shoff+uint64(i)*64:]
		switch s.Name {
		case "__rseq_cs":
			binary.LittleEndian.PutUint64(h[24:], 1<<40) // offset past EOF
		case "__rseq_cs_ptr_array":
			binary.LittleEndian.PutUint64(h[32:], 1<<50) // size past EOF
		case ".text":
			binary.LittleEndian.PutUint32(h[4:], uint32(elf.SHT_NOBITS))
		}
	}
	for _, r := range []io.ReaderAt{bytes.NewReader(img), onlyReaderAt{bytes.NewReader(img)}} {
		obj, err := LoadELF(r, "patched", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Regions) != 0 || !hasWarning(obj.Warnings, "reading __rseq_cs of patched") || !hasWarning(obj.Warnings, "reading __rseq_cs_ptr_array of patched") {
			t.Errorf("regions %v warnings %q", obj.Regions, obj.Warnings)
		}
	}
}

// onlyReaderAt hides Size, so the loader cannot bound reads by the file
// size and must read chunk by chunk.
type onlyReaderAt struct{ r io.ReaderAt }

func (o onlyReaderAt) ReadAt(b []byte, off int64) (int, error) { return o.r.ReadAt(b, off) }

func TestUnknownSizeReader(t *testing.T) {
	g := genELF(genOpts{n: 50, lld: true, exitPoints: true})
	obj, err := LoadELF(onlyReaderAt{bytes.NewReader(g.img)}, "x", 0)
	if err != nil || len(obj.Regions) != 50 || len(obj.Warnings) != 0 {
		t.Fatalf("%v %d %q", err, len(obj.Regions), obj.Warnings)
	}
}

func TestNotX86OrNotLinked(t *testing.T) {
	g := genELF(genOpts{n: 1})
	img := append([]byte(nil), g.img...)
	binary.LittleEndian.PutUint16(img[16:], uint16(elf.ET_REL))
	if _, err := LoadELF(bytes.NewReader(img), "rel.o", 0); err == nil || !strings.Contains(err.Error(), "ET_REL") {
		t.Errorf("ET_REL: %v", err)
	}
	img = append([]byte(nil), g.img...)
	binary.LittleEndian.PutUint16(img[18:], uint16(elf.EM_AARCH64))
	if _, err := LoadELF(bytes.NewReader(img), "arm", 0); err == nil || !strings.Contains(err.Error(), "x86-64") {
		t.Errorf("aarch64: %v", err)
	}
	for n := 0; n < len(g.img); n += 97 {
		if obj, err := LoadELF(bytes.NewReader(g.img[:n]), "cut", 0); err == nil && len(obj.Regions) > 1 {
			t.Errorf("truncated at %d: %d regions", n, len(obj.Regions))
		}
	}
}

// memAt serves code placed at base as a MemReader.
func memAt(base uint64, code []byte) target.MemReader {
	return func(addr uint64, buf []byte) (int, error) {
		if addr < base || addr-base >= uint64(len(code)) {
			return 0, io.EOF
		}
		return copy(buf, code[addr-base:]), nil
	}
}

func TestRegionFromDescriptor(t *testing.T) {
	const base = 0x7000
	code := append([]byte{}, insCmp...)
	code = jne(code, base+3, base+0x40)
	code = append(code, insBody...)
	code = append(code, insMovEax1...)
	code = append(code, make([]byte, 0x40-len(code)-7)...)
	code = append(code, sigBytes...)
	code = append(code, insIncR14...)
	code = jmp(code, base+0x43, base)
	d := Descriptor{StartIP: base, PostCommitOffset: 21, AbortIP: base + 0x40}
	r, err := RegionFromDescriptor(d, 0x9000, memAt(base, code), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != "runtime" || r.Name != "0x7000" || r.Descriptor != 0x9000 || r.AbortJump != base || len(r.Warnings) != 0 ||
		!equalExits(r.Exits, []Exit{{base + 21, ExitCommit}, {base + 0x40, ExitAbort}}) {
		t.Errorf("%v exits %v warnings %q jump %#x", r, r.Exits, r.Warnings, r.AbortJump)
	}
	if _, err := RegionFromDescriptor(Descriptor{StartIP: ^uint64(0), PostCommitOffset: 2}, 0, memAt(base, code), ""); err == nil {
		t.Error("no error for a wrapping descriptor")
	}
	if _, err := RegionFromDescriptor(Descriptor{StartIP: 0x100, PostCommitOffset: 2, AbortIP: 0x200}, 0, memAt(base, code), ""); err == nil {
		t.Error("no error for unreadable code")
	}
	// Code readable only in part: decoded up to there, with a warning.
	r, err = RegionFromDescriptor(Descriptor{StartIP: base + 0x40, PostCommitOffset: 0x100, AbortIP: base}, 0, memAt(base, code), "")
	if err != nil || !hasWarning(r.Warnings, "unavailable") {
		t.Errorf("partial: %v %v", r, err)
	}
	if _, err := ParseDescriptor(make([]byte, 31)); err == nil {
		t.Error("short descriptor parsed")
	}
}

func TestDeclared(t *testing.T) {
	const base = 0x5000
	code := []byte{0x90, 0x74, 0x10, 0x90, 0xc3, 0x90}
	r, err := Declared("jit", base, base+5, memAt(base, code))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != KindDeclared || r.Name != "jit" || r.Source != "declared" ||
		!equalExits(r.Exits, []Exit{{base + 5, ExitCommit}, {base + 0x13, ExitBranch}}) || len(r.Indirect) != 1 {
		t.Errorf("%v exits %v indirect %#x", r, r.Exits, r.Indirect)
	}
	for _, c := range []struct{ lo, hi uint64 }{{base, base}, {base + 5, base}, {0, 1 << 40}} {
		if _, err := Declared("bad", c.lo, c.hi, memAt(base, code)); err == nil {
			t.Errorf("[%#x, %#x) accepted", c.lo, c.hi)
		}
	}
	if _, err := Declared("unmapped", 0x100, 0x110, memAt(base, code)); err == nil {
		t.Error("unreadable declared region accepted")
	}
}

func TestParseAuxv(t *testing.T) {
	var b []byte
	for _, kv := range [][2]uint64{{auxv.AtPhdr, 0x40}, {auxv.AtEntry, 0x1000}, {auxv.AtSysinfoEhdr, 0x7fff0000}, {auxv.AtNull, 0}, {auxv.AtBase, 9}} {
		b = le64(le64(b, kv[0]), kv[1])
	}
	m := auxv.ParseAuxv(b[:len(b)-3])
	if len(m) != 3 || m[auxv.AtPhdr] != 0x40 || m[auxv.AtSysinfoEhdr] != 0x7fff0000 || m[auxv.AtBase] != 0 {
		t.Errorf("%v", m)
	}
}

func TestLinkMapCycle(t *testing.T) {
	// r_debug at 0x100 -> map 0x200 -> 0x300 -> 0x200 (cycle).
	mem := make([]byte, 0x400)
	put := func(at, v uint64) { binary.LittleEndian.PutUint64(mem[at:], v) }
	put(0x100, 1)
	put(0x108, 0x200)
	for _, lm := range []struct{ at, addr, name, next uint64 }{{0x200, 0x1000, 0x380, 0x300}, {0x300, 0x2000, 0x390, 0x200}} {
		put(lm.at, lm.addr)
		put(lm.at+8, lm.name)
		put(lm.at+16, lm.addr+0x10)
		put(lm.at+24, lm.next)
	}
	copy(mem[0x380:], "/lib/a.so\x00")
	copy(mem[0x390:], "/lib/b.so") // unterminated: runs to the end of memory
	objs, err := linkmap.LinkMap(memAt(0, mem), 0x100)
	if err != nil || len(objs) != 2 || objs[0].Name != "/lib/a.so" || objs[1].Bias != 0x2000 || !strings.HasPrefix(objs[1].Name, "/lib/b.so") {
		t.Errorf("%+v %v", objs, err)
	}
	if _, err := linkmap.LinkMap(memAt(0, mem), 0x10000); err == nil {
		t.Error("unreadable r_debug accepted")
	}
}
