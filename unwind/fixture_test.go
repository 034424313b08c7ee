package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/rseqdbg/rseqdbg/target"
)

// A build of testdata/stack.c.
type variant struct {
	name  string
	flags []string
	noCFI bool // the C functions have no CFI of their own
}

var variants = []variant{
	{name: "O0", flags: []string{"-O0", "-static"}},
	{name: "O2", flags: []string{"-O2", "-static"}},
	{name: "O2-fp", flags: []string{"-O2", "-fno-omit-frame-pointer", "-static"}},
	{name: "O2-nocfi", flags: []string{"-O2", "-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-static"}, noCFI: true},
	{name: "O2-static-pie", flags: []string{"-O2", "-fPIE", "-static-pie"}},
}

var (
	buildMu  sync.Mutex
	buildDir string
	builds   = map[string]string{}
)

func needGCC(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
}

// buildFixture compiles testdata/stack.c once per variant per test binary.
func buildFixture(t *testing.T, v variant) string {
	t.Helper()
	needGCC(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[v.name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "unwind-fixtures-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, "stack-"+v.name)
	args := append(append([]string{}, v.flags...), "-o", out, "testdata/stack.c")
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		if strings.Contains(v.name, "pie") {
			t.Skipf("gcc cannot build %s: %v\n%s", v.name, err, b)
		}
		t.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	builds[v.name] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// snapshot is what the fixture wrote: struct snap, then the stack.
type snapshot struct {
	Rip, Rsp, Rbp, Rbx, R12, R13, R14, R15 uint64
	RA, FA, MainAddr, EntryRbx             uint64
	stack                                  []byte
}

func runFixture(t *testing.T, bin, mode string) snapshot {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snap")
	if b, err := exec.Command(bin, mode, out).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, mode, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	r := bytes.NewReader(data)
	var hdr [12]uint64
	var n uint64
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		t.Fatal(err)
	}
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		t.Fatal(err)
	}
	s.Rip, s.Rsp, s.Rbp, s.Rbx, s.R12, s.R13, s.R14, s.R15 = hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[7]
	s.RA, s.FA, s.MainAddr, s.EntryRbx = hdr[8], hdr[9], hdr[10], hdr[11]
	s.stack = data[len(data)-r.Len():]
	if uint64(len(s.stack)) != n {
		t.Fatalf("stack copy: %d bytes, header says %d", len(s.stack), n)
	}
	return s
}

func (s snapshot) regs() target.Regs {
	return target.Regs{Rip: s.Rip, Rsp: s.Rsp, Rbp: s.Rbp, Rbx: s.Rbx, R12: s.R12, R13: s.R13, R14: s.R14, R15: s.R15}
}

// image is an ELF file as the process saw it: its segments at vaddr+bias,
// and its symbols.
type image struct {
	f    *elf.File
	bias uint64
	segs []seg
	syms []elf.Symbol
	all  map[string]uint64
}

type seg struct {
	lo   uint64
	data []byte
}

func openImage(t testing.TB, path string) *image {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	im := &image{f: f, all: map[string]uint64{}}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		im.segs = append(im.segs, seg{lo: p.Vaddr, data: data})
	}
	syms, _ := f.Symbols()
	for _, s := range syms {
		im.all[s.Name] = s.Value
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			im.syms = append(im.syms, s)
		}
	}
	sort.Slice(im.syms, func(i, j int) bool { return im.syms[i].Value < im.syms[j].Value })
	return im
}

func (im *image) sym(t testing.TB, name string) uint64 {
	t.Helper()
	if v, ok := im.all[name]; ok {
		return v + im.bias
	}
	t.Fatalf("no symbol %s", name)
	return 0
}

// name is the function containing pc (the last symbol starting at or
// before it, as glibc's size-less asm symbols need).
func (im *image) name(pc uint64) string {
	pc -= im.bias
	i := sort.Search(len(im.syms), func(i int) bool { return im.syms[i].Value > pc }) - 1
	if i < 0 {
		return "?"
	}
	return im.syms[i].Name
}

// reader serves the stack copy and the file's segments.
func (im *image) reader(stackLo uint64, stack []byte) target.MemReader {
	return func(addr uint64, buf []byte) (int, error) {
		if addr >= stackLo && addr-stackLo < uint64(len(stack)) {
			return copy(buf, stack[addr-stackLo:]), nil
		}
		for _, s := range im.segs {
			lo := s.lo + im.bias
			if addr >= lo && addr-lo < uint64(len(s.data)) {
				return copy(buf, s.data[addr-lo:]), nil
			}
		}
		return 0, fmt.Errorf("address %#x not in the snapshot", addr)
	}
}

func frameNames(im *image, frames []Frame) []string {
	var out []string
	for _, f := range frames {
		out = append(out, im.name(f.LookupPC()))
	}
	return out
}

func hasPrefix(got, want []string) bool {
	if len(got) < len(want) {
		return false
	}
	for i := range want {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// setup builds and runs a variant in a mode and loads it into an unwinder.
func setup(t *testing.T, v variant, mode string) (*Unwinder, *image, snapshot, target.MemReader) {
	t.Helper()
	bin := buildFixture(t, v)
	s := runFixture(t, bin, mode)
	im := openImage(t, bin)
	im.bias = s.MainAddr - im.sym(t, "main")
	u := New()
	if err := u.AddObject(bin, im.bias); err != nil {
		t.Fatalf("AddObject: %v", err)
	}
	return u, im, s, im.reader(s.Rsp, s.stack)
}

func describe(im *image, frames []Frame) string {
	var b strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&b, "#%d pc=%#x cfa=%#x %s synth=%v signal=%v\n", i, f.PC, f.CFA, im.name(f.LookupPC()), f.Synthesized, f.Signal)
	}
	return b.String()
}
