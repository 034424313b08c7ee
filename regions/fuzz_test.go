package regions

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// checkRegion checks what every region promises, whatever its input.
func checkRegion(t *testing.T, r *Region) {
	t.Helper()
	for i, x := range r.Exits {
		if r.Contains(x.Addr) {
			t.Fatalf("%v: exit %#x (%v) inside the range", r, x.Addr, x.Kind)
		}
		if i > 0 && r.Exits[i-1].Addr >= x.Addr {
			t.Fatalf("%v: exits not sorted and unique: %v", r, r.Exits)
		}
		if k, ok := r.ExitKindAt(x.Addr); !ok || k != x.Kind {
			t.Fatalf("%v: ExitKindAt(%#x) = %v %v", r, x.Addr, k, ok)
		}
	}
	for _, a := range append(append([]uint64(nil), r.Calls...), r.Indirect...) {
		if !r.Contains(a) {
			t.Fatalf("%v: call or indirect %#x outside the range", r, a)
		}
	}
	if len(r.Warnings) > maxRegionWarnings+1 {
		t.Fatalf("%v: %d warnings", r, len(r.Warnings))
	}
}

func fuzzSeeds(f *testing.F) {
	f.Add(genELF(genOpts{n: 3, lld: true, exitPoints: true}).img)
	f.Add(genELF(genOpts{n: 2, legacy: true, padding: 1}).img)
	f.Add(genELF(genOpts{n: 2, noRelocs: true}).img)
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	for _, name := range []string{"full_tables", "broken_table"} {
		if b, err := os.ReadFile(fixtureDir + "/" + name); err == nil {
			f.Add(b)
		}
	}
}

// FuzzLoadELF: any bytes load to an error or a consistent object, never a
// panic (recovered ones count as failures) and never an unbounded
// allocation.
func FuzzLoadELF(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var r interface {
			ReadAt([]byte, int64) (int, error)
		} = bytes.NewReader(data)
		if len(data)%2 == 1 {
			r = onlyReaderAt{bytes.NewReader(data)}
		}
		obj, err := LoadELF(r, "fuzz", 0x10000)
		if errors.Is(err, errPanic) {
			t.Fatal(err)
		}
		if err == nil {
			for _, reg := range obj.Regions {
				checkRegion(t, reg)
			}
			x := NewIndex()
			x.SetObject("fuzz", obj.Regions)
			for _, reg := range x.All() {
				if x.Lookup(reg.Start) != reg {
					t.Fatalf("lookup of %v", reg)
				}
			}
			var buf bytes.Buffer
			if err := WriteText(&buf, []*Object{obj}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&buf, []*Object{obj}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := LoadVDSO(data, 0x7fff00000000); errors.Is(err, errPanic) {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeRegion: random code as target memory for RegionFromDescriptor
// and Declared: no panic, no exit inside the range (x86's FuzzQuickDecode
// checks the decoder on the same inputs).
func FuzzDecodeRegion(f *testing.F) {
	body := append(append(append([]byte{}, insCmp...), 0x0f, 0x85, 0x20, 0, 0, 0), insBody...)
	f.Add(append(append(body, insMovEax1...), sigBytes...), uint16(21), uint16(33), uint8(0))
	f.Add([]byte{0xeb, 0xfe, 0xc3, 0xff, 0xe0, 0xe8, 0, 0, 0, 0}, uint16(10), uint16(0), uint8(0))
	f.Add([]byte{0x06, 0x27, 0x0f}, uint16(3), uint16(1), uint8(1))
	f.Fuzz(func(t *testing.T, code []byte, post, abortOff uint16, startOff uint8) {
		const base = 0x10000
		read := memAt(base, code)
		d := Descriptor{StartIP: base + uint64(startOff), PostCommitOffset: uint64(post), AbortIP: base + uint64(abortOff)}
		if r, err := RegionFromDescriptor(d, 0x1000, read, "runtime"); err == nil {
			checkRegion(t, r)
		}
		if post > 0 {
			if r, err := Declared("fuzz", d.StartIP, d.Commit(), read); err == nil {
				checkRegion(t, r)
			}
		}
	})
}
