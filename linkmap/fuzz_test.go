package linkmap

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/rseqdbg/rseqdbg/target"
)

// fuzzMemory is program memory made of fuzz bytes: every address below
// 2^47 reads them over and over (so any pointer leads somewhere, cycles
// included), and the rest is unmapped.
func fuzzMemory(data []byte) target.MemReader {
	return func(addr uint64, buf []byte) (int, error) {
		if len(data) == 0 {
			return 0, errors.New("no memory")
		}
		for i := range buf {
			a := addr + uint64(i)
			if a < addr || a >= 1<<47 {
				return i, errors.New("unmapped")
			}
			buf[i] = data[a%uint64(len(data))]
		}
		return len(buf), nil
	}
}

// FuzzLinkMap walks the dynamic linker's r_debug and link_map lists over
// arbitrary memory: it must end, bounded, without panics.
func FuzzLinkMap(f *testing.F) {
	img := make([]byte, 0x200)
	le := binary.LittleEndian
	le.PutUint32(img[0:], 2)    // r_version
	le.PutUint64(img[8:], 0x40) // r_map
	le.PutUint64(img[0x40:], 0) // l_addr
	le.PutUint64(img[0x48:], 0x100)
	le.PutUint64(img[0x58:], 0x80) // l_next
	le.PutUint64(img[0x80:], 0x7f0000)
	le.PutUint64(img[0x88:], 0x110)
	copy(img[0x110:], "libc.so.6\x00")
	f.Add(img, uint64(0))
	f.Add(img, uint64(0x40))
	f.Add([]byte{0xff}, uint64(1<<47-8))
	f.Fuzz(func(t *testing.T, mem []byte, rdebug uint64) {
		read := fuzzMemory(mem)
		objs, _ := LinkMap(read, rdebug)
		if len(objs) > 64*maxLinkMap {
			t.Fatalf("%d objects", len(objs))
		}
		for _, o := range objs {
			if len(o.Name) > 4096 {
				t.Fatalf("name of %d bytes", len(o.Name))
			}
		}
		ReadRDebug(read, rdebug)
		ReadCString(read, rdebug, 4096)
	})
}
