package eval

import (
	"debug/dwarf"
	"encoding/binary"
	"github.com/rseqdbg/rseqdbg/symbols"
	"math"
	"testing"
)

func imm(t dwarf.Type, data []byte) *Value { return &Value{typ: t, kind: locImm, data: data} }

func common(name string, size int64) dwarf.CommonType {
	return dwarf.CommonType{Name: name, ByteSize: size}
}

// TestFormatTypes renders the C types the Variables view shows without a
// target: enums, unions, bit fields, char arrays, floats, booleans.
func TestFormatTypes(t *testing.T) {
	ev := &Evaluator{Info: &DebugInfo{}, Syms: &symbols.Table{}}
	intT := &dwarf.IntType{BasicType: dwarf.BasicType{CommonType: common("int", 4)}}
	charT := &dwarf.CharType{BasicType: dwarf.BasicType{CommonType: common("char", 1)}}
	floatT := &dwarf.FloatType{BasicType: dwarf.BasicType{CommonType: common("float", 4)}}
	enumT := &dwarf.EnumType{CommonType: common("", 4), EnumName: "color", Val: []*dwarf.EnumValue{{Name: "RED", Val: 0}, {Name: "BLUE", Val: 2}}}
	unionT := &dwarf.StructType{CommonType: common("", 4), Kind: "union", StructName: "u",
		Field: []*dwarf.StructField{{Name: "i", Type: intT}, {Name: "f", Type: floatT}}}
	bitsT := &dwarf.StructType{CommonType: common("", 4), Kind: "struct", StructName: "bits",
		Field: []*dwarf.StructField{{Name: "lo", Type: intT, BitSize: 3, DataBitOffset: 0}, {Name: "hi", Type: intT, BitSize: 5, DataBitOffset: 3}}}
	arrT := &dwarf.ArrayType{CommonType: common("", 6), Type: charT, Count: 6}
	ldT := &dwarf.FloatType{BasicType: dwarf.BasicType{CommonType: common("long double", 16)}}

	le := func(n int, v uint64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, v)
		return b[:n]
	}
	half := make([]byte, 16)
	binary.LittleEndian.PutUint64(half, 1<<63)
	binary.LittleEndian.PutUint16(half[8:], 16382) // 0.5 in x87 format

	for _, tc := range []struct {
		v    *Value
		want string
		hex  bool
	}{
		{imm(intT, le(4, uint64(math.MaxUint32))), "-1", false},
		{imm(intT, le(4, 255)), "0xff", true},
		{imm(enumT, le(4, 2)), "BLUE", false},
		{imm(enumT, le(4, 7)), "7", false},
		{imm(unionT, le(4, uint64(math.Float32bits(1.5)))), "{i = 1069547520, f = 1.5}", false},
		{imm(bitsT, le(4, 0b10101_110)), "{lo = -2, hi = -11}", false},
		{imm(arrT, []byte("hi\n\x00zz")), `"hi\n"`, false},
		{imm(ldT, half), "0.5", false},
		{imm(&dwarf.BoolType{BasicType: dwarf.BasicType{CommonType: common("_Bool", 1)}}, []byte{1}), "true", false},
		{imm(charT, []byte{'A'}), "65 'A'", false},
	} {
		if got := ev.Format(tc.v, tc.hex); got != tc.want {
			t.Errorf("%s: got %s, want %s", typeName(tc.v.typ), got, tc.want)
		}
	}
	if n := typeName(&dwarf.PtrType{Type: arrT}); n != "char[6] *" {
		t.Errorf("type name %q", n)
	}
}

// TestEvalArithmetic evaluates expressions over literals.
func TestEvalArithmetic(t *testing.T) {
	ev := &Evaluator{Info: &DebugInfo{}, Syms: &symbols.Table{}}
	for expr, want := range map[string]string{
		"1 + 2 * 3":                "7",
		"(1 + 2) * 3":              "9",
		"-7 / 2":                   "-3",
		"-7 % 2":                   "-1",
		"1 << 4 | 1":               "17",
		"!0 && 3 > 2":              "1",
		"0x10 == 16":               "1",
		"'a' + 1":                  "98",
		"1.5 * 2":                  "3",
		"~0":                       "-1",
		"5 > 3 || 1 / 0":           "1",
		"18446744073709551615 > 0": "1",
	} {
		e, err := Parse(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		v, err := ev.Eval(e, &Frame{})
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		if got := ev.Format(v, false); got != want {
			t.Errorf("%s = %s, want %s", expr, got, want)
		}
	}
	for _, bad := range []string{"1 / 0", "1 +", "a.", "$", "'ab'", "1 @ 2"} {
		e, err := Parse(bad)
		if err == nil {
			_, err = ev.Eval(e, &Frame{})
		}
		if err == nil {
			t.Errorf("%s evaluated", bad)
		}
	}
}
