package regions

import (
	"math/rand"
	"sort"
	"strings"
	"testing"
)

func reg(name string, start, end uint64) *Region {
	return &Region{Kind: KindDeclared, Name: name, Start: start, End: end}
}

func TestIndex(t *testing.T) {
	x := NewIndex()
	a, b, c := reg("a", 0x100, 0x110), reg("b", 0x200, 0x220), reg("c", 0x300, 0x301)
	if ws := x.SetObject("o1", []*Region{c, a, b}); len(ws) > 0 {
		t.Fatal(ws)
	}
	for _, tc := range []struct {
		pc   uint64
		want *Region
	}{{0, nil}, {0xff, nil}, {0x100, a}, {0x10f, a}, {0x110, nil}, {0x21f, b}, {0x300, c}, {0x301, nil}, {^uint64(0), nil}} {
		if got := x.Lookup(tc.pc); got != tc.want {
			t.Errorf("Lookup(%#x) = %v, want %v", tc.pc, got, tc.want)
		}
	}
	// Overlaps with what is indexed lose; within one batch the earlier wins.
	d, e, f := reg("d", 0x108, 0x118), reg("e", 0x400, 0x410), reg("f", 0x40f, 0x420)
	ws := x.SetObject("o2", []*Region{f, d, e, nil, reg("empty", 0x500, 0x500)})
	if len(ws) != 3 || !strings.Contains(ws[0], "overlaps") || !strings.Contains(ws[2], "empty") {
		t.Errorf("warnings %q", ws)
	}
	if x.Len() != 4 || x.Lookup(0x40f) != e || x.Lookup(0x10a) != a {
		t.Errorf("len %d, lookup %v %v", x.Len(), x.Lookup(0x40f), x.Lookup(0x10a))
	}
	if got := x.Intersecting(0x10f, 0x301); len(got) != 3 || got[0] != a || got[2] != c {
		t.Errorf("Intersecting = %v", got)
	}
	if got := x.Intersecting(0x110, 0x200); len(got) != 0 {
		t.Errorf("Intersecting gap = %v", got)
	}
	if w := x.Add("rt", reg("g", 0x20f, 0x230)); len(w) != 1 {
		t.Errorf("overlapping Add accepted")
	}
	if w := x.Add("rt", reg("h", 0x220, 0x230)); len(w) != 0 {
		t.Errorf("adjacent Add refused: %q", w)
	}
	x.RemoveObject("o1")
	x.RemoveObject("nothing")
	all := x.All()
	if len(all) != 2 || all[0].Name != "h" || all[1] != e || x.Lookup(0x100) != nil {
		t.Errorf("after remove: %v", all)
	}
	// Replacing an object drops its old regions first.
	if ws := x.SetObject("o2", []*Region{a}); len(ws) != 0 || x.Len() != 2 || x.Lookup(0x400) != nil {
		t.Errorf("replace: %q %v", ws, x.All())
	}
}

// TestIndexRandom checks Lookup and Intersecting against a linear scan.
func TestIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	x := NewIndex()
	var kept []*Region
	for obj := 0; obj < 20; obj++ {
		var rs []*Region
		for i := 0; i < 50; i++ {
			s := uint64(rng.Intn(100000))
			rs = append(rs, reg("r", s, s+1+uint64(rng.Intn(50))))
		}
		key := string(rune('a' + obj))
		x.SetObject(key, rs)
		if obj%3 == 0 {
			x.RemoveObject(key)
		}
		if rng.Intn(2) == 0 {
			s := uint64(rng.Intn(100000))
			x.Add("rt", reg("rt", s, s+3))
		}
	}
	kept = x.All()
	if !sort.SliceIsSorted(kept, func(i, j int) bool { return kept[i].Start < kept[j].Start }) {
		t.Fatal("All not sorted")
	}
	for i := 1; i < len(kept); i++ {
		if kept[i].Start < kept[i-1].End {
			t.Fatalf("overlap indexed: %v %v", kept[i-1], kept[i])
		}
	}
	for pc := uint64(0); pc < 100100; pc++ {
		var want *Region
		for _, r := range kept {
			if r.Contains(pc) {
				want = r
			}
		}
		if got := x.Lookup(pc); got != want {
			t.Fatalf("Lookup(%d) = %v, want %v", pc, got, want)
		}
	}
	for i := 0; i < 1000; i++ {
		lo := uint64(rng.Intn(100000))
		hi := lo + uint64(rng.Intn(300))
		var want []*Region
		for _, r := range kept {
			if r.Start < hi && r.End > lo {
				want = append(want, r)
			}
		}
		got := x.Intersecting(lo, hi)
		if len(got) != len(want) {
			t.Fatalf("Intersecting(%d, %d) = %v, want %v", lo, hi, got, want)
		}
	}
}

// Sections follows the critical sections through every way the index
// changes; other kinds do not count.
func TestIndexSections(t *testing.T) {
	x := NewIndex()
	cs := func(start uint64) *Region {
		return &Region{Kind: KindCriticalSection, Name: "cs", Start: start, End: start + 8}
	}
	x.SetObject("exe", []*Region{cs(0x100), cs(0x200), reg("d", 0x300, 0x308)})
	x.Add("scan:exe", cs(0x400))
	x.Add("declared", reg("e", 0x500, 0x508))
	if got := x.Sections(); got != 3 {
		t.Fatalf("Sections = %d, want 3", got)
	}
	x.SetObject("exe", []*Region{cs(0x100)})
	if got := x.Sections(); got != 2 {
		t.Fatalf("after replacing exe: Sections = %d, want 2", got)
	}
	x.RemoveObject("scan:exe")
	x.RemoveObject("exe")
	if got := x.Sections(); got != 0 {
		t.Fatalf("after removing both: Sections = %d, want 0", got)
	}
}
