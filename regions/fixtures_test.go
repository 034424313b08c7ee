package regions

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/rseqdbg/rseqdbg/x86"
)

const fixtureDir = "../tests/fixtures/build"

// fixture returns the path of a built C fixture, or skips: they are built by
// `make -C tests/fixtures`, which needs gcc, clang and lld.
func fixture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(fixtureDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s is not built (run `make -C tests/fixtures`): %v", p, err)
	}
	return p
}

// fixtureImage is a fixture's ELF with helpers to check regions against it.
type fixtureImage struct {
	t    *testing.T
	f    *elf.File
	syms []elf.Symbol
}

func openFixture(t *testing.T, path string) *fixtureImage {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	return &fixtureImage{t: t, f: f, syms: syms}
}

func (fx *fixtureImage) sym(name string) elf.Symbol {
	for _, s := range fx.syms {
		if s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			return s
		}
	}
	fx.t.Fatalf("no function symbol %s", name)
	return elf.Symbol{}
}

// funcAt returns the function symbol holding addr.
func (fx *fixtureImage) funcAt(addr uint64) elf.Symbol {
	for _, s := range fx.syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && addr >= s.Value && addr < s.Value+s.Size {
			return s
		}
	}
	fx.t.Fatalf("no function holds %#x", addr)
	return elf.Symbol{}
}

func (fx *fixtureImage) bytesAt(addr, n uint64) []byte {
	for _, s := range fx.f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type == elf.SHT_PROGBITS && addr >= s.Addr && addr+n <= s.Addr+s.Size {
			b := make([]byte, n)
			if _, err := s.ReadAt(b, int64(addr-s.Addr)); err != nil {
				fx.t.Fatal(err)
			}
			return b
		}
	}
	fx.t.Fatalf("no section holds [%#x, %#x)", addr, addr+n)
	return nil
}

func (fx *fixtureImage) sectionOf(addr uint64) string {
	for _, s := range fx.f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && addr >= s.Addr && addr < s.Addr+s.Size {
			return s.Name
		}
	}
	return ""
}

// insns decodes the function holding addr from its entry, so that label
// addresses can be checked to be instruction boundaries.
func (fx *fixtureImage) insns(addr uint64) []x86.Insn {
	fn := fx.funcAt(addr)
	code := fx.bytesAt(fn.Value, fn.Size)
	var out []x86.Insn
	for off := 0; off < len(code); {
		in, err := x86.Decode(code[off:], fn.Value+uint64(off))
		if err != nil {
			fx.t.Fatalf("decoding %s: %v", fn.Name, err)
		}
		out = append(out, in)
		off += in.Len
	}
	return out
}

func indexAt(insns []x86.Insn, addr uint64) int {
	for i, in := range insns {
		if in.Addr == addr {
			return i
		}
	}
	return -1
}

// checkShape checks a critical section of the fixtures' shape (see
// tests/fixtures/rseq_fixture.h) against the code around it:
//
//	.Lretry: movl 4(%rseq),%ebx ... leaq .Lcs(%rip),%rax; movq %rax,8(%rseq)
//	.Lstart: cmpl 4(%rseq),%ebx ... movq %rax,(%r12)
//	.Lpost:  movl $1,%eax
//	abort:   ud1 0x53053053(%rip),%edi in __rseq_failure, then the handler
//	         jumping back to .Lretry.
func (fx *fixtureImage) checkShape(r *Region, descSection string) {
	t := fx.t
	t.Helper()
	insns := fx.insns(r.Start)
	s := indexAt(insns, r.Start)
	e := indexAt(insns, r.End)
	if s < 2 || e < 0 {
		t.Fatalf("%s: start %#x or commit %#x is not an instruction boundary of %s", r.Name, r.Start, r.End, fx.funcAt(r.Start).Name)
	}
	store, lea := insns[s-1], insns[s-2]
	if m, ok := store.Inst.Args[0].(x86asm.Mem); store.Inst.Op != x86asm.MOV || !ok || m.Disp != 8 || store.Inst.Args[1] != x86asm.RAX {
		t.Errorf("%s: instruction before start is %v, want the store of rax into rseq_cs", r.Name, store.Inst)
	}
	if m, ok := lea.Inst.Args[1].(x86asm.Mem); lea.Inst.Op != x86asm.LEA || !ok || m.Base != x86asm.RIP || lea.Next()+uint64(m.Disp) != r.Descriptor {
		t.Errorf("%s: %v does not load the descriptor %#x", r.Name, lea.Inst, r.Descriptor)
	}
	commit := insns[e-1]
	if m, ok := commit.Inst.Args[0].(x86asm.Mem); commit.Inst.Op != x86asm.MOV || !ok || m.Base != x86asm.R12 {
		t.Errorf("%s: instruction before commit is %v, want movq %%rax,(%%r12)", r.Name, commit.Inst)
	}
	if post := insns[e]; post.Inst.Op != x86asm.MOV || post.Inst.Args[1] != x86asm.Imm(1) {
		t.Errorf("%s: instruction at commit is %v, want movl $1,%%eax", r.Name, post.Inst)
	}
	if got := fx.bytesAt(r.Abort-7, 7); !bytes.Equal(got, sigBytes) {
		t.Errorf("%s: bytes before abort %#x are % x, want the ud1 signature", r.Name, r.Abort, got)
	}
	if sec := fx.sectionOf(r.Abort); sec != "__rseq_failure" {
		t.Errorf("%s: abort %#x in %q, want __rseq_failure", r.Name, r.Abort, sec)
	}
	// The abort handler retries from the instruction that reads cpu_id.
	if r.AbortJump == 0 || r.AbortJump >= r.Start {
		t.Errorf("%s: abort handler jumps to %#x, want the retry label before %#x", r.Name, r.AbortJump, r.Start)
	} else if i := indexAt(insns, r.AbortJump); i < 0 || insns[i].Inst.Op != x86asm.MOV || insns[i].Inst.Args[0] != x86asm.EBX {
		t.Errorf("%s: abort handler jumps to %#x, which is not movl 4(%%rseq),%%ebx", r.Name, r.AbortJump)
	}
	if sec := fx.sectionOf(r.Descriptor); sec != descSection {
		t.Errorf("%s: descriptor %#x in %q, want %s", r.Name, r.Descriptor, sec, descSection)
	}
	if r.Object == "" || r.Kind != KindCriticalSection {
		t.Errorf("%s: object %q kind %v", r.Name, r.Object, r.Kind)
	}
	if len(r.Warnings) > 0 {
		t.Errorf("%s: warnings %q", r.Name, r.Warnings)
	}
	if want := fx.funcAt(r.Start).Name + "+"; !strings.HasPrefix(r.Name, want) {
		t.Errorf("region name %q, want %s...", r.Name, want)
	}
}

func exitKinds(r *Region) string {
	var parts []string
	for _, x := range r.Exits {
		rel := int64(x.Addr - r.End)
		var where string
		switch {
		case x.Addr == r.Abort:
			where = "abort"
		case rel >= 0:
			where = "commit+" + itoa(uint64(rel))
		default:
			where = "start-" + itoa(r.Start-x.Addr)
		}
		parts = append(parts, x.Kind.String()+"@"+where)
	}
	return strings.Join(parts, " ")
}

func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		file, fn, source, desc string
		exits                  string // exit kinds, relative to commit and abort
		calls                  int
	}{
		{"full_tables", "inc_full", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 exit-point@commit+7 abort@abort", 0},
		{"lld_tables", "inc_full", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 exit-point@commit+7 abort@abort", 0},
		{"legacy_table", "inc_legacy", "__rseq_table", "__rseq_table", "commit@commit+0 abort@abort", 0},
		{"branch_exit", "inc_branch", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 branch@commit+7 abort@abort", 0},
		{"call_helper", "inc_call", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 abort@abort", 1},
		{"libpercpu.so", "inc_lib", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 exit-point@commit+7 abort@abort", 0},
		{"broken_table", "inc_broken", "__rseq_cs_ptr_array", "__rseq_cs", "commit@commit+0 exit-point@commit+7 abort@abort", 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := fixture(t, tc.file)
			fx := openFixture(t, path)
			const bias = 0x555555554000
			obj, err := LoadFile(path, bias)
			if err != nil {
				t.Fatal(err)
			}
			obj0, err := LoadFile(path, 0)
			if err != nil {
				t.Fatal(err)
			}
			var good []*Region
			for i, r := range obj0.Regions {
				rb := obj.Regions[i]
				if rb.Start != r.Start+bias || rb.End != r.End+bias || rb.Abort != r.Abort+bias || rb.Descriptor != r.Descriptor+bias || len(rb.Exits) != len(r.Exits) {
					t.Errorf("bias %#x: %v, want %v shifted", uint64(bias), rb, r)
				}
				if !strings.HasPrefix(r.Name, "broken_") {
					good = append(good, r)
				}
			}
			// Every fixture has the section twice: in its function and
			// inline in the worker (lib_loop for the library).
			if len(good) != 2 {
				t.Fatalf("%d regions, want 2: %v", len(good), obj0.Regions)
			}
			inFn := 0
			for _, r := range good {
				fx.checkShape(r, tc.desc)
				if r.Source != tc.source {
					t.Errorf("%s: source %q, want %q", r.Name, r.Source, tc.source)
				}
				if got := exitKinds(r); got != tc.exits {
					t.Errorf("%s: exits %s, want %s", r.Name, got, tc.exits)
				}
				if len(r.Calls) != tc.calls || len(r.Indirect) != 0 {
					t.Errorf("%s: calls %#x indirect %#x", r.Name, r.Calls, r.Indirect)
				}
				for _, c := range r.Calls {
					in := fx.insns(c)[indexAt(fx.insns(c), c)]
					if in.Kind != x86.FlowCall || in.Target != fx.sym("rseq_helper").Value {
						t.Errorf("%s: call at %#x is %v", r.Name, c, in.Inst)
					}
				}
				if fx.funcAt(r.Start).Name == tc.fn {
					inFn++
				}
			}
			if inFn != 1 {
				t.Errorf("%d regions in %s, want 1", inFn, tc.fn)
			}
			if tc.file != "broken_table" && len(obj0.Warnings) > 0 {
				t.Errorf("object warnings %q", obj0.Warnings)
			}
		})
	}
}

// TestFixtureLLDMatchesGNU: lld leaves the table bytes zero and relocates
// them at run time; the regions must match gcc+ld's relative to their own
// symbols.
func TestFixtureLLDMatchesGNU(t *testing.T) {
	gnu, lld := fixture(t, "full_tables"), fixture(t, "lld_tables")
	fl := openFixture(t, lld)
	cs := fl.f.Section("__rseq_cs")
	raw, err := cs.Data()
	if err != nil {
		t.Fatal(err)
	}
	zero := true
	for off := 0; off+32 <= len(raw); off += 32 {
		if binary.LittleEndian.Uint64(raw[off+8:]) != 0 {
			zero = false
		}
	}
	if !zero {
		t.Log("lld wrote start_ip into __rseq_cs: the relocation path is not exercised by this fixture")
	}
	og, err := LoadFile(gnu, 0)
	if err != nil {
		t.Fatal(err)
	}
	ol, err := LoadFile(lld, 0)
	if err != nil {
		t.Fatal(err)
	}
	fg := openFixture(t, gnu)
	find := func(fx *fixtureImage, o *Object) *Region {
		fn := fx.sym("inc_full")
		for _, r := range o.Regions {
			if r.Start >= fn.Value && r.Start < fn.Value+fn.Size {
				return r
			}
		}
		t.Fatalf("no region in inc_full of %s", o.Path)
		return nil
	}
	rg, rl := find(fg, og), find(fl, ol)
	bg, bl := fg.sym("inc_full").Value, fl.sym("inc_full").Value
	if rg.Start-bg != rl.Start-bl || rg.End-rg.Start != rl.End-rl.Start || rg.Name != rl.Name {
		t.Errorf("gnu %s [+%d, len %d), lld %s [+%d, len %d)", rg.Name, rg.Start-bg, rg.End-rg.Start, rl.Name, rl.Start-bl, rl.End-rl.Start)
	}
	if exitKinds(rg) != exitKinds(rl) {
		t.Errorf("exits differ: gnu %s, lld %s", exitKinds(rg), exitKinds(rl))
	}
	if len(og.Regions) != len(ol.Regions) {
		t.Errorf("gnu %d regions, lld %d", len(og.Regions), len(ol.Regions))
	}
}

func TestFixtureNoTables(t *testing.T) {
	for _, name := range []string{"no_tables", "vdso_clock", "dlopen_main"} {
		obj, err := LoadFile(fixture(t, name), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.Regions) != 0 || len(obj.Warnings) != 0 {
			t.Errorf("%s: regions %v warnings %q", name, obj.Regions, obj.Warnings)
		}
	}
}

func TestFixtureBrokenTable(t *testing.T) {
	path := fixture(t, "broken_table")
	fx := openFixture(t, path)
	obj, err := LoadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	// inc_broken's two sections and the dummies a, b, d (two), e; the
	// pointer 0x10 is skipped.
	if len(obj.Regions) != 7 {
		t.Fatalf("%d regions, want 7: %v", len(obj.Regions), obj.Regions)
	}
	byName := map[string][]*Region{}
	for _, r := range obj.Regions {
		fn := fx.funcAt(r.Start).Name
		byName[fn] = append(byName[fn], r)
	}
	one := func(fn string) *Region {
		if len(byName[fn]) != 1 {
			t.Fatalf("%s: %d regions", fn, len(byName[fn]))
		}
		return byName[fn][0]
	}
	want := func(r *Region, sub string) {
		t.Helper()
		if !hasWarning(r.Warnings, sub) {
			t.Errorf("%s: no warning containing %q in %q", r.Name, sub, r.Warnings)
		}
		if len(r.Warnings) != 1 {
			t.Errorf("%s: want exactly one warning, have %q", r.Name, r.Warnings)
		}
	}
	a := one("broken_a_nosig")
	want(a, "not the signature 0x53053053")
	b := one("broken_b_abort_inside")
	want(b, "inside [")
	if _, ok := b.ExitKindAt(b.Abort); ok {
		t.Errorf("abort inside the range is listed as an exit")
	}
	if len(byName["broken_d_overlap"]) != 2 {
		t.Fatalf("broken_d_overlap: %d regions", len(byName["broken_d_overlap"]))
	}
	for _, r := range byName["broken_d_overlap"] {
		want(r, "overlaps")
	}
	e := one("broken_e_version")
	want(e, "version 1")
	if !hasWarning(obj.Warnings, "pointer 0x10 outside any mapping: skipped") {
		t.Errorf("object warnings %q lack the bogus pointer", obj.Warnings)
	}
	for _, r := range byName["inc_broken"] {
		if len(r.Warnings) > 0 {
			t.Errorf("%s: %q", r.Name, r.Warnings)
		}
	}
	if len(byName["worker"]) != 1 || len(byName["worker"][0].Warnings) > 0 {
		t.Errorf("worker regions %v", byName["worker"])
	}
	// The index keeps the first of the overlapping pair.
	x := NewIndex()
	ws := x.SetObject(path, obj.Regions)
	if x.Len() != 6 || len(ws) != 1 || !strings.Contains(ws[0], "overlaps") {
		t.Errorf("index: %d regions, warnings %q", x.Len(), ws)
	}
	d := byName["broken_d_overlap"]
	if x.Lookup(d[1].Start) != d[0] {
		t.Errorf("lookup in the overlap does not find the earlier region")
	}
}

func TestFixtureBadFiles(t *testing.T) {
	for _, name := range []string{"garbage.elf", "truncated.elf"} {
		path := fixture(t, name)
		obj, err := LoadFile(path, 0)
		if err == nil {
			t.Errorf("%s: no error, %d regions, warnings %q", name, len(obj.Regions), obj.Warnings)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Error("no error for a missing file")
	}
}
