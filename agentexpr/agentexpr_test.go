package agentexpr

import (
	"encoding/binary"
	"errors"
	"testing"
)

type machine struct {
	regs map[int]uint64
	mem  map[uint64]byte
}

func (m machine) Register(n int) (uint64, error) {
	v, ok := m.regs[n]
	if !ok {
		return 0, errors.New("no register")
	}
	return v, nil
}

func (m machine) ReadMemory(addr uint64, buf []byte) (int, error) {
	for i := range buf {
		b, ok := m.mem[addr+uint64(i)]
		if !ok {
			return i, errors.New("unmapped")
		}
		buf[i] = b
	}
	return len(buf), nil
}

// What gdb 13 sends for `break ... if i == 7999` with i an int at
// -0x14(%rbp): reg rbp, const8 0x14, sub, ref32, ext 32, const16 7999,
// equal, end.
var iEquals7999 = []byte{0x26, 0x00, 0x06, 0x22, 0x14, 0x03, 0x19, 0x16, 0x20, 0x23, 0x1f, 0x3f, 0x13, 0x27}

func TestCondition(t *testing.T) {
	m := machine{regs: map[int]uint64{6: 0x1000}, mem: map[uint64]byte{}}
	set := func(v int32) {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(v))
		for i, x := range b {
			m.mem[0x1000-0x14+uint64(i)] = x
		}
	}
	for _, c := range []struct {
		i    int32
		want uint64
	}{{7999, 1}, {7998, 0}, {-1, 0}} {
		set(c.i)
		if err := Validate(iEquals7999); err != nil {
			t.Fatal(err)
		}
		got, err := Eval(iEquals7999, m)
		if err != nil || got != c.want {
			t.Errorf("i == 7999 with i = %d: %d, %v", c.i, got, err)
		}
	}
	// Signed comparison after sign extension: i < 0.
	set(-5)
	lessZero := []byte{0x26, 0x00, 0x06, 0x22, 0x14, 0x03, 0x19, 0x16, 0x20, 0x22, 0x00, 0x14, 0x27}
	if got, err := Eval(lessZero, m); err != nil || got != 1 {
		t.Errorf("i < 0 with i = -5: %d %v", got, err)
	}
}

func TestStackOps(t *testing.T) {
	m := machine{}
	for _, c := range []struct {
		name string
		code []byte
		want uint64
	}{
		{"rot", []byte{0x22, 1, 0x22, 2, 0x22, 3, 0x33, 0x29, 0x29, 0x27}, 3}, // 1 2 3 => 3 1 2: bottom is 3
		{"swap", []byte{0x22, 1, 0x22, 2, 0x2b, 0x03, 0x27}, 1},               // 2 - 1
		{"pick", []byte{0x22, 7, 0x22, 9, 0x32, 1, 0x27}, 7},
		{"if_goto", []byte{0x22, 1, 0x20, 0x00, 0x07, 0x22, 5, 0x22, 6, 0x27}, 6},
		{"div", []byte{0x25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf6, 0x22, 3, 0x05, 0x27}, ^uint64(2)}, // -10/3 = -3
		{"zero_ext", []byte{0x23, 0xff, 0xff, 0x2a, 8, 0x27}, 0xff},
	} {
		got, err := Eval(c.code, m)
		if err != nil || got != c.want {
			t.Errorf("%s: %#x, %v; want %#x", c.name, got, err, c.want)
		}
	}
}

func TestRefused(t *testing.T) {
	m := machine{}
	for _, code := range [][]byte{
		{0x0c, 0x27},             // trace: not a condition
		{0x22},                   // operand missing
		{0x21, 0x00, 0x09, 0x27}, // jump outside
		{0x21, 0x00, 0x00},       // endless loop
		{0x29, 0x27},             // underflow
		{0x22, 1, 0x22, 0, 0x05, 0x27},
	} {
		if _, err := Eval(code, m); err == nil {
			t.Errorf("%x evaluated", code)
		}
	}
	if err := Validate([]byte{0x01, 0x27}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("float validated: %v", err)
	}
}

// FuzzEval: any bytes end in a value or an error, within the limits.
func FuzzEval(f *testing.F) {
	f.Add(iEquals7999)
	f.Add([]byte{0x21, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, code []byte) {
		Validate(code)
		Eval(code, machine{regs: map[int]uint64{6: 0x1000}, mem: map[uint64]byte{0xfec: 1}})
	})
}
