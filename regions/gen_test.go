package regions

import (
	"bytes"
	"strings"
	"testing"
)

func loadImage(t testing.TB, img []byte, bias uint64) *Object {
	t.Helper()
	obj, err := LoadELF(bytes.NewReader(img), "gen", bias)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func TestGeneratedFlavours(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    genOpts
		src  string
	}{
		{"gnu", genOpts{n: 5, exitPoints: true}, "__rseq_cs_ptr_array"},
		{"lld", genOpts{n: 5, lld: true, exitPoints: true}, "__rseq_cs_ptr_array"},
		{"nonpie", genOpts{n: 5, noRelocs: true, exitPoints: true}, "__rseq_cs_ptr_array"},
		{"legacy", genOpts{n: 5, legacy: true}, "__rseq_table"},
		{"padding", genOpts{n: 3, padding: 2, lld: true}, "__rseq_cs_ptr_array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := genELF(tc.o)
			const bias = 0x7f0000000000
			obj := loadImage(t, g.img, bias)
			if len(obj.Warnings) > 0 {
				t.Errorf("object warnings: %q", obj.Warnings)
			}
			if len(obj.Regions) != tc.o.n {
				t.Fatalf("%d regions, want %d", len(obj.Regions), tc.o.n)
			}
			for i, r := range obj.Regions {
				if r.Start != g.starts[i]+bias || r.End != g.ends[i]+bias || r.Abort != g.aborts[i]+bias || r.Descriptor != g.descs[i]+bias {
					t.Errorf("region %d: [%#x,%#x) abort %#x desc %#x, want [%#x,%#x) abort %#x desc %#x", i,
						r.Start, r.End, r.Abort, r.Descriptor, g.starts[i]+bias, g.ends[i]+bias, g.aborts[i]+bias, g.descs[i]+bias)
				}
				if r.Source != tc.src {
					t.Errorf("region %d source %q, want %q", i, r.Source, tc.src)
				}
				if len(r.Warnings) > 0 {
					t.Errorf("region %d warnings %q", i, r.Warnings)
				}
				if r.AbortJump != r.Start {
					t.Errorf("region %d abort jump %#x, want %#x", i, r.AbortJump, r.Start)
				}
				want := []Exit{{r.End, ExitCommit}}
				if tc.o.exitPoints {
					want = append(want, Exit{g.exits[i] + bias, ExitPoint})
				}
				want = append(want, Exit{r.Abort, ExitAbort})
				if !equalExits(r.Exits, want) {
					t.Errorf("region %d exits %v, want %v", i, r.Exits, want)
				}
				wantName := "bench"
				if off := g.starts[i] - g.text; off > 0 {
					wantName += "+" + itoa(off)
				}
				if r.Name != wantName {
					t.Errorf("region %d name %q, want %q", i, r.Name, wantName)
				}
			}
		})
	}
}

func itoa(v uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
		if v == 0 {
			return string(b)
		}
	}
}

func equalExits(a, b []Exit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hasWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}
