package regions

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/target"
)

// procMem reads another (or this) process's memory through /proc/PID/mem,
// as a MemReader.
func procMem(t testing.TB, pid string) target.MemReader {
	f, err := os.Open("/proc/" + pid + "/mem")
	if err != nil {
		t.Skipf("cannot read process memory: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return func(addr uint64, buf []byte) (int, error) {
		if addr > 1<<63 {
			return 0, fmt.Errorf("address %#x out of range", addr)
		}
		return f.ReadAt(buf, int64(addr))
	}
}

func procAuxv(t testing.TB, pid string) map[uint64]uint64 {
	b, err := os.ReadFile("/proc/" + pid + "/auxv")
	if err != nil {
		t.Skipf("no auxv: %v", err)
	}
	return auxv.ParseAuxv(b)
}

// mapping returns the [start, end) of the first /proc/PID/maps line for
// which match is true.
func mapping(t testing.TB, pid string, match func(start uint64, fields []string) bool) (uint64, uint64, bool) {
	f, err := os.Open("/proc/" + pid + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		lo, hi, _ := strings.Cut(fields[0], "-")
		s, _ := strconv.ParseUint(lo, 16, 64)
		e, _ := strconv.ParseUint(hi, 16, 64)
		if match(s, fields) {
			return s, e, true
		}
	}
	return 0, 0, false
}

func loadVDSOOf(t *testing.T, pid string) *Object {
	av := procAuxv(t, pid)
	base := av[auxv.AtSysinfoEhdr]
	if base == 0 {
		t.Skip("no vDSO in this process")
	}
	start, end, ok := mapping(t, pid, func(s uint64, f []string) bool { return s == base })
	if !ok {
		t.Fatalf("AT_SYSINFO_EHDR %#x is not a mapping start", base)
	}
	img := make([]byte, end-start)
	n, err := procMem(t, pid)(base, img)
	if n != len(img) {
		t.Fatalf("reading the vDSO: %d bytes, %v", n, err)
	}
	obj, err := LoadVDSO(img, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range obj.Regions {
		if r.Start < start || r.End > end || r.Kind != KindVDSO || len(r.Exits) != 0 || r.Object != "[vdso]" {
			t.Errorf("vDSO region %v outside [%#x, %#x) or malformed", r, start, end)
		}
	}
	return obj
}

// TestVDSOSelf reads this test process's own vDSO.
func TestVDSOSelf(t *testing.T) {
	obj := loadVDSOOf(t, "self")
	names := map[string]bool{}
	for _, r := range obj.Regions {
		names[r.Name] = true
		if strings.HasPrefix(r.Name, "__vdso_") && names[strings.TrimPrefix(r.Name, "__vdso_")] {
			t.Errorf("alias %s kept besides its public name", r.Name)
		}
	}
	if !names["clock_gettime"] {
		t.Errorf("no clock_gettime among %v", names)
	}
	if names["__vdso_clock_gettime"] {
		t.Errorf("__vdso_clock_gettime not folded into clock_gettime")
	}
	if len(obj.Warnings) > 0 {
		t.Errorf("warnings %q", obj.Warnings)
	}
	x := NewIndex()
	if ws := x.SetObject("[vdso]", obj.Regions); len(ws) > 0 {
		t.Errorf("index warnings %q", ws)
	}
	for _, r := range obj.Regions {
		if x.Lookup(r.Start) != r || x.Lookup(r.End-1) != r {
			t.Errorf("lookup of %v fails", r)
		}
	}
	t.Logf("vDSO functions: %d (%v)", len(obj.Regions), names)
}

// TestLiveProcess runs a fixture and reads its regions, link map and
// dynamic linker breakpoint from its memory, the way the stepper does.
func TestLiveProcess(t *testing.T) {
	exe, err := filepath.Abs(fixture(t, "full_tables"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "1", "4000000000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := strconv.Itoa(cmd.Process.Pid)
	// Wait until the dynamic linker has mapped libc.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := mapping(t, pid, func(_ uint64, f []string) bool {
			return len(f) >= 6 && strings.Contains(f[5], "libc.so")
		}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixture never mapped libc")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let ld.so finish relocating
	read := procMem(t, pid)
	av := procAuxv(t, pid)
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bias := linkmap.ExecBias(av, f)
	first, _, ok := mapping(t, pid, func(_ uint64, fl []string) bool { return len(fl) >= 6 && fl[5] == exe && fl[2] == "00000000" })
	if !ok || first != bias {
		t.Errorf("ExecBias %#x, first mapping of %s at %#x", bias, exe, first)
	}

	rdebug, err := linkmap.FindRDebug(read, exe, bias)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := linkmap.ReadRDebug(read, rdebug)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := linkmap.LinkMap(read, rdebug)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 3 || objs[0].Name != "" || objs[0].Bias != bias {
		t.Errorf("link map %+v: want the program first with bias %#x", objs, bias)
	}
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			p.ReadAt(b, 0)
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	sawLibc, sawLd := false, false
	for _, o := range objs {
		sawLibc = sawLibc || strings.Contains(o.Name, "libc.so")
		sawLd = sawLd || o.Name == interp || filepath.Base(o.Name) == filepath.Base(interp)
	}
	if !sawLibc || !sawLd {
		t.Errorf("link map %+v lacks libc or %s", objs, interp)
	}
	brk, err := linkmap.DynamicLinkerBreakpoint(interp, av[auxv.AtBase])
	if err != nil {
		t.Fatal(err)
	}
	if brk != rd.Brk {
		t.Errorf("_dl_debug_state at %#x, r_debug.r_brk %#x", brk, rd.Brk)
	}

	// The file's regions at the process's bias match the descriptors in
	// memory and decode the same from memory.
	obj, err := LoadFile(exe, bias)
	if err != nil {
		t.Fatal(err)
	}
	if len(obj.Regions) != 2 {
		t.Fatalf("%d regions", len(obj.Regions))
	}
	for _, r := range obj.Regions {
		b := make([]byte, DescriptorSize)
		if n, err := read(r.Descriptor, b); n != len(b) {
			t.Fatalf("reading descriptor at %#x: %v", r.Descriptor, err)
		}
		d, err := ParseDescriptor(b)
		if err != nil {
			t.Fatal(err)
		}
		if d.StartIP != r.Start || d.Commit() != r.End || d.AbortIP != r.Abort {
			t.Errorf("memory descriptor %+v, file region %v", d, r)
		}
		m, err := RegionFromDescriptor(d, r.Descriptor, read, "runtime")
		if err != nil {
			t.Fatal(err)
		}
		// Memory has no exit point table: the listed exit is found as the
		// branch it is.
		fileExits := append([]Exit(nil), r.Exits...)
		for i := range fileExits {
			if fileExits[i].Kind == ExitPoint {
				fileExits[i].Kind = ExitBranch
			}
		}
		if !equalExits(m.Exits, fileExits) || m.AbortJump != r.AbortJump || len(m.Warnings) > 0 || m.Source != "runtime" {
			t.Errorf("from memory %v exits %v jump %#x warnings %q; from the file %v exits %v jump %#x", m, m.Exits, m.AbortJump, m.Warnings, r, r.Exits, r.AbortJump)
		}
	}
	if vd := loadVDSOOf(t, pid); len(vd.Regions) == 0 {
		t.Error("no vDSO functions in the fixture")
	}
}
