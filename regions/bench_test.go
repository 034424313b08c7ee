package regions

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLoad100k loads an object with 100 000 descriptors (pointer
// array, __rseq_cs, exit points, RELATIVE relocations) from a file.
func BenchmarkLoad100k(b *testing.B) {
	g := genELF(genOpts{n: 100000, exitPoints: true})
	path := filepath.Join(b.TempDir(), "big.so")
	if err := os.WriteFile(path, g.img, 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		obj, err := LoadFile(path, 0x555555554000)
		if err != nil {
			b.Fatal(err)
		}
		if len(obj.Regions) != 100000 || len(obj.Warnings) != 0 {
			b.Fatalf("%d regions, warnings %q", len(obj.Regions), obj.Warnings)
		}
	}
}

// BenchmarkLookup looks up PCs in an index of 100 000 regions.
func BenchmarkLookup(b *testing.B) {
	g := genELF(genOpts{n: 100000})
	obj := loadImage(b, g.img, 0)
	x := NewIndex()
	if w := x.SetObject("big", obj.Regions); len(w) > 0 {
		b.Fatal(w)
	}
	pcs := make([]uint64, 4096)
	for i := range pcs {
		pcs[i] = g.text + uint64(i*7919)%uint64(len(g.starts)*genBlock)
	}
	b.ResetTimer()
	hits := 0
	for i := 0; b.Loop(); i++ {
		if x.Lookup(pcs[i%len(pcs)]) != nil {
			hits++
		}
	}
	if hits == 0 {
		b.Fatal("no hits")
	}
}

// TestLoad100kBudget keeps region discovery for 100 000 descriptors under
// the 100 ms the issue asks for (with slack for a loaded machine).
func TestLoad100kBudget(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing is meaningless in -short or -race runs")
	}
	g := genELF(genOpts{n: 100000, exitPoints: true})
	path := filepath.Join(t.TempDir(), "big.so")
	if err := os.WriteFile(path, g.img, 0o644); err != nil {
		t.Fatal(err)
	}
	best := time.Hour
	for range 3 {
		t0 := time.Now()
		if _, err := LoadFile(path, 0); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(t0))
	}
	t.Logf("best of 3: %v", best)
	if best > 250*time.Millisecond {
		t.Errorf("loading 100 000 descriptors took %v", best)
	}
}
