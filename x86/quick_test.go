package x86

import (
	"math/rand"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// checkQuick fails when quickDecode accepts code but disagrees with
// x86asm (through Decode) on validity, length, flow kind or target.
func checkQuick(t *testing.T, code []byte, pc uint64) bool {
	q, ok := quickDecode(code, pc)
	if !ok {
		return true
	}
	in, err := Decode(code, pc)
	if err != nil {
		t.Errorf("% x: quick decodes len %d, x86asm fails: %v", code, q.Len, err)
		return false
	}
	if in.Len != q.Len || in.Kind != q.Kind || in.Target != q.Target {
		t.Errorf("% x (%v): quick len %d %v %#x, x86asm len %d %v %#x", code, in.Inst, q.Len, q.Kind, q.Target, in.Len, in.Kind, in.Target)
		return false
	}
	return true
}

// TestQuickDecodeAgrees enumerates every opcode (one- and two-byte) with
// every ModRM byte, a few SIB bytes and the prefixes quickDecode accepts,
// and compares with x86asm.
func TestQuickDecodeAgrees(t *testing.T) {
	prefixes := [][]byte{{}, {0x66}, {0x40}, {0x41}, {0x48}, {0x49}, {0x4c}, {0x4f}, {0x66, 0x48}, {0x66, 0x41}}
	tails := [][]byte{
		{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc},
		{0x24, 0x80, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07},
		{0x25, 0xf0, 0xff, 0xff, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80},
		{0xe5, 0x01, 0x00, 0x00, 0x80, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90},
	}
	fails := 0
	buf := make([]byte, 0, 20)
	for _, pre := range prefixes {
		for op := 0; op < 256; op++ {
			for _, two := range []bool{false, true} {
				if two && op != 0x0f {
					continue
				}
				seconds := []int{-1}
				if two {
					seconds = seconds[:0]
					for op2 := 0; op2 < 256; op2++ {
						seconds = append(seconds, op2)
					}
				}
				for _, op2 := range seconds {
					for modrm := 0; modrm < 256; modrm++ {
						for _, tail := range tails {
							buf = append(buf[:0], pre...)
							buf = append(buf, byte(op))
							if op2 >= 0 {
								buf = append(buf, byte(op2))
							}
							buf = append(buf, byte(modrm))
							buf = append(buf, tail...)
							for _, n := range []int{len(buf), len(pre) + 3, len(pre) + 5} {
								if n > len(buf) {
									continue
								}
								if !checkQuick(t, buf[:n], 0x401000) {
									fails++
								}
							}
							if fails > 20 {
								t.Fatal("too many disagreements")
							}
						}
					}
				}
			}
		}
	}
}

// TestQuickDecodeRandom compares on random byte strings, and checks that
// quickDecode covers the instructions critical sections are made of.
func TestQuickDecodeRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	b := make([]byte, 16)
	for i := 0; i < 300000; i++ {
		rng.Read(b)
		if !checkQuick(t, b, uint64(rng.Int63())) {
			if t.Failed() && i > 100 {
				t.FailNow()
			}
		}
	}
	common := [][]byte{
		{0x3b, 0x5d, 0x04},                         // cmp 0x4(%rbp),%ebx
		{0x0f, 0x85, 1, 2, 3, 4},                   // jne rel32
		{0x49, 0x8b, 0x04, 0x24},                   // mov (%r12),%rax
		{0x48, 0x83, 0xc0, 0x01},                   // add $1,%rax
		{0x49, 0x89, 0x04, 0x24},                   // mov %rax,(%r12)
		{0x48, 0x8d, 0x05, 1, 2, 3, 4},             // lea rel(%rip),%rax
		{0x48, 0x89, 0x45, 0x08},                   // mov %rax,0x8(%rbp)
		{0x49, 0xff, 0x06},                         // incq (%r14)
		{0xe9, 1, 2, 3, 4},                         // jmp rel32
		{0xe8, 1, 2, 3, 4},                         // call rel32
		{0x78, 0x10},                               // js rel8
		{0xc3},                                     // ret
		{0xb8, 1, 0, 0, 0},                         // mov $1,%eax
		{0x41, 0x81, 0xe4, 0xff, 0, 0, 0},          // and $0xff,%r12d
		{0x85, 0xc0},                               // test %eax,%eax
		{0x48, 0xc7, 0x46, 0x08, 0x00, 0, 0, 0, 0}, // movq $0,0x8(%rsi)
	}
	for _, c := range common {
		if _, ok := quickDecode(c, 0x1000); !ok {
			in, _ := x86asm.Decode(c, 64)
			t.Errorf("% x (%v) not handled by quickDecode", c, in)
		}
		checkQuick(t, c, 0x1000)
	}
}

// FuzzQuickDecode: quickDecode agrees with x86asm wherever it answers, at
// every offset of random code (the seeds are FuzzDecodeRegion's in regions).
func FuzzQuickDecode(f *testing.F) {
	f.Add([]byte{0x39, 0x07, 0x0f, 0x85, 0x20, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0x0f, 0xb9, 0x3d, 0x53, 0x30, 0x05, 0x53})
	f.Add([]byte{0xeb, 0xfe, 0xc3, 0xff, 0xe0, 0xe8, 0, 0, 0, 0})
	f.Add([]byte{0x06, 0x27, 0x0f})
	f.Fuzz(func(t *testing.T, code []byte) {
		const base = 0x10000
		for off := 0; off < len(code) && off < 64; off++ {
			checkQuick(t, code[off:], base+uint64(off))
		}
	})
}
