package unwind

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// The vDSO with its CFI removed: every function is described by synthesis,
// written as a debug object, and read back through the same CFI reader that
// reads real objects. Each row must come back as it was synthesized, each
// function as a symbol and a DWARF subprogram at its run-time address.
func TestDebugObjectRoundTrip(t *testing.T) {
	img, base := readVDSO(t)
	read := memReader(map[uint64][]byte{base: img})
	u := New()
	if err := u.AddImage("[vdso]", img, base); err != nil {
		t.Fatal(err)
	}
	u.objs[0].fdes = nil
	funcs := u.Describe(nil, read)
	var rows int
	for _, f := range funcs {
		rows += len(f.Rows)
	}
	if len(funcs) == 0 || rows == 0 {
		t.Fatalf("nothing described: %d functions, %d rows", len(funcs), rows)
	}
	data, err := DebugObject(funcs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "synth.debug")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	back := New()
	if err := back.AddObject(path, 0); err != nil {
		t.Fatalf("reading the object back: %v", err)
	}
	for _, f := range funcs {
		for _, r := range f.Rows {
			for _, pc := range []uint64{r.Lo, r.Hi - 1} {
				fde, bias := back.fde(pc)
				if fde == nil {
					t.Fatalf("%s: no FDE at %#x", f.Name, pc)
				}
				got, err := cfiRow(fde, pc, bias)
				if err != nil {
					t.Fatalf("%s at %#x: %v", f.Name, pc, err)
				}
				if !sameRule(got.cfa, r.r.cfa) || got.ra != dwRIP {
					t.Errorf("%s at %#x: CFA %+v, want %+v", f.Name, pc, got.cfa, r.r.cfa)
				}
				for n := range uint64(nDw) {
					want, ok := r.r.regs[n]
					if !ok {
						if n == dwRSP {
							continue
						}
						want = frame.DWRule{Rule: frame.RuleSameVal}
					}
					if !sameRule(got.regs[n], want) {
						t.Errorf("%s at %#x: register %d rule %+v, want %+v", f.Name, pc, n, got.regs[n], want)
					}
				}
			}
		}
	}

	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	bySym := map[string]elf.Symbol{}
	for _, s := range syms {
		bySym[s.Name] = s
	}
	dw, err := ef.DWARF()
	if err != nil {
		t.Fatalf("DWARF: %v", err)
	}
	subs := map[string][2]uint64{}
	rd := dw.Reader()
	for {
		e, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			break
		}
		if e.Tag == dwarf.TagSubprogram {
			lo, _ := e.Val(dwarf.AttrLowpc).(uint64)
			n, _ := e.Val(dwarf.AttrHighpc).(int64)
			subs[e.Val(dwarf.AttrName).(string)] = [2]uint64{lo, lo + uint64(n)}
		}
	}
	for _, f := range funcs {
		s, ok := bySym[f.Name]
		if !ok || s.Value != f.Lo || s.Size != f.Hi-f.Lo || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			t.Errorf("symbol %s: %+v, want [%#x, %#x)", f.Name, s, f.Lo, f.Hi)
		}
		if sec := ef.Sections[s.Section]; sec.Addr > f.Lo || sec.Addr+sec.Size < f.Hi || sec.Flags&elf.SHF_ALLOC == 0 {
			t.Errorf("symbol %s in section %s [%#x, +%#x)", f.Name, sec.Name, sec.Addr, sec.Size)
		}
		if r := subs[f.Name]; r != [2]uint64{f.Lo, f.Hi} {
			t.Errorf("subprogram %s: %#x, want [%#x, %#x)", f.Name, r, f.Lo, f.Hi)
		}
	}
}

func TestDebugObjectRefusesBadInput(t *testing.T) {
	r := SynthRow{Lo: 0x1000, Hi: 0x1004, r: entryRow()}
	for name, fs := range map[string][]SynthFunc{
		"empty":   {{Name: "a", Lo: 0x1000, Hi: 0x1000}},
		"overlap": {{Name: "a", Lo: 0x1000, Hi: 0x1010}, {Name: "b", Lo: 0x1008, Hi: 0x1020}},
		"outside": {{Name: "a", Lo: 0x1002, Hi: 0x1010, Rows: []SynthRow{r}}},
	} {
		if _, err := DebugObject(fs); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if b, err := DebugObject(nil); err != nil {
		t.Errorf("no functions: %v", err)
	} else if _, err := elf.NewFile(bytes.NewReader(b)); err != nil {
		t.Errorf("empty object unreadable: %v", err)
	}
}
