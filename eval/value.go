package eval

import (
	"debug/dwarf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

type locKind uint8

const (
	locNone locKind = iota // unavailable: err says why
	locMem                 // in target memory at addr
	locReg                 // in DWARF register reg of frame (data holds it)
	locImm                 // computed: data holds the bytes, nothing to write back
)

// value is a typed C value and where it lives.
type Value struct {
	name  string // display name (and the evaluate name of top-level ones)
	expr  string // expression that evaluates to it, for evaluateName
	typ   dwarf.Type
	kind  locKind
	addr  uint64
	reg   int
	data  []byte
	err   error
	frame *Frame
	// bitSize and bitOff describe a bit field inside data or at addr.
	bitSize, bitOff int64
}

// maxValueBytes bounds what one value reads from the target (arrays are
// read per element, so this only limits scalars and summaries).
const maxValueBytes = 1 << 20

func strip(t dwarf.Type) dwarf.Type {
	for i := 0; i < 64 && t != nil; i++ {
		switch x := t.(type) {
		case *dwarf.TypedefType:
			t = x.Type
		case *dwarf.QualType:
			t = x.Type
		default:
			return t
		}
	}
	return t
}

func typeSize(t dwarf.Type) int {
	if t == nil {
		return 0
	}
	st := strip(t)
	if a, ok := st.(*dwarf.ArrayType); ok && a.Count > 0 {
		return int(a.Count) * typeSize(a.Type)
	}
	if st == nil {
		return 0
	}
	n := st.Size()
	if n < 0 || n > maxValueBytes {
		return 0
	}
	return int(n)
}

// typeName renders a type the C way ("struct rseq *", "long[4]").
func typeName(t dwarf.Type) string {
	switch x := t.(type) {
	case nil:
		return "void"
	case *dwarf.PtrType:
		if x.Type == nil {
			return "void *"
		}
		if _, ok := x.Type.(*dwarf.FuncType); ok {
			return "void (*)()"
		}
		return typeName(x.Type) + " *"
	case *dwarf.QualType:
		return x.Qual + " " + typeName(x.Type)
	case *dwarf.ArrayType:
		dims := ""
		var el dwarf.Type = x
		for {
			a, ok := el.(*dwarf.ArrayType)
			if !ok {
				break
			}
			if a.Count < 0 {
				dims += "[]"
			} else {
				dims += fmt.Sprintf("[%d]", a.Count)
			}
			el = a.Type
		}
		return typeName(el) + dims
	case *dwarf.StructType:
		n := x.StructName
		if n == "" {
			n = "<anonymous>"
		}
		return x.Kind + " " + n
	case *dwarf.EnumType:
		if x.EnumName == "" {
			return "enum <anonymous>"
		}
		return "enum " + x.EnumName
	case *dwarf.TypedefType:
		return x.Name
	case *dwarf.VoidType:
		return "void"
	case *dwarf.FuncType:
		return "function"
	}
	return t.String()
}

// bytes returns n bytes of the value from off.
func (ev *Evaluator) bytes(v *Value, off, n int) ([]byte, error) {
	if v.err != nil {
		return nil, v.err
	}
	if n < 0 || n > maxValueBytes {
		return nil, fmt.Errorf("value of %d bytes is too large", n)
	}
	switch v.kind {
	case locMem:
		buf := make([]byte, n)
		got, err := ev.ReadMemory(v.addr+uint64(off), buf)
		if got < n {
			if err == nil {
				err = errors.New("unreadable")
			}
			return nil, fmt.Errorf("<cannot read memory at %#x: %v>", v.addr+uint64(off)+uint64(got), err)
		}
		return buf, nil
	case locReg, locImm:
		if off+n > len(v.data) {
			return nil, errors.New("<value is shorter than its type>")
		}
		return v.data[off : off+n], nil
	}
	return nil, errors.New("<unavailable>")
}

// child is the part of v at byte offset off with type t.
func (v *Value) child(name, expr string, t dwarf.Type, off int) *Value {
	c := &Value{name: name, expr: expr, typ: t, kind: v.kind, frame: v.frame, err: v.err}
	switch v.kind {
	case locMem:
		c.addr = v.addr + uint64(off)
	case locReg, locImm:
		size := typeSize(t)
		if off+size <= len(v.data) {
			c.data = v.data[off : off+size]
		} else {
			c.err = errors.New("<out of range>")
		}
		// A part of a register is not written back on its own.
		c.kind = locImm
	}
	return c
}

func addrValue(a uint64, t dwarf.Type) *Value {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, a)
	return &Value{typ: t, kind: locImm, data: b}
}

var (
	longType  = &dwarf.IntType{BasicType: dwarf.BasicType{CommonType: dwarf.CommonType{ByteSize: 8, Name: "long"}}}
	ulongType = &dwarf.UintType{BasicType: dwarf.BasicType{CommonType: dwarf.CommonType{ByteSize: 8, Name: "unsigned long"}}}
	dblType   = &dwarf.FloatType{BasicType: dwarf.BasicType{CommonType: dwarf.CommonType{ByteSize: 8, Name: "double"}}}
	ucharType = &dwarf.UcharType{BasicType: dwarf.BasicType{CommonType: dwarf.CommonType{ByteSize: 1, Name: "unsigned char"}}}
)

func bytesType(n int64) dwarf.Type {
	if n <= 0 {
		n = 8
	}
	return &dwarf.ArrayType{CommonType: dwarf.CommonType{ByteSize: n}, Type: ucharType, Count: n}
}

func intValue(n int64) *Value {
	return addrValue(uint64(n), longType)
}

func floatValue(f float64) *Value {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, math.Float64bits(f))
	return &Value{typ: dblType, kind: locImm, data: b}
}

// scalar reads an integer-like value (integers, chars, bools, enums,
// pointers) as raw bits, sign-extended for signed types.
func (ev *Evaluator) Scalar(v *Value) (uint64, bool, error) {
	t := strip(v.typ)
	size := typeSize(t)
	if size == 0 || size > 8 {
		return 0, false, fmt.Errorf("%s is not a scalar", typeName(v.typ))
	}
	b, err := ev.bytes(v, 0, size)
	if err != nil {
		return 0, false, err
	}
	var x [8]byte
	copy(x[:], b)
	u := binary.LittleEndian.Uint64(x[:])
	if v.bitSize > 0 {
		u = (u >> uint(v.bitOff)) & (1<<uint(v.bitSize) - 1)
	}
	signed := false
	switch t.(type) {
	case *dwarf.IntType, *dwarf.CharType:
		signed = true
	case *dwarf.EnumType:
		signed = true
	}
	bits := uint(size * 8)
	if v.bitSize > 0 {
		bits = uint(v.bitSize)
	}
	if signed && bits < 64 && u&(1<<(bits-1)) != 0 {
		u |= ^uint64(0) << bits
	}
	return u, signed, nil
}

func (ev *Evaluator) float(v *Value) (float64, error) {
	t := strip(v.typ)
	size := typeSize(t)
	b, err := ev.bytes(v, 0, size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 4:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), nil
	case 8:
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	case 10, 12, 16:
		// x87 extended precision: 64-bit mantissa with explicit integer
		// bit, 15-bit exponent; shown at double precision.
		mant := binary.LittleEndian.Uint64(b)
		se := binary.LittleEndian.Uint16(b[8:])
		exp := int(se & 0x7fff)
		sign := 1.0
		if se&0x8000 != 0 {
			sign = -1
		}
		if exp == 0x7fff {
			if mant<<1 == 0 {
				return math.Inf(int(sign)), nil
			}
			return math.NaN(), nil
		}
		return sign * math.Ldexp(float64(mant), exp-16383-63), nil
	}
	return 0, fmt.Errorf("float of %d bytes", size)
}

func isFloat(t dwarf.Type) bool {
	_, ok := strip(t).(*dwarf.FloatType)
	return ok
}

// truth is C's notion of a condition being true.
func (ev *Evaluator) Truth(v *Value) (bool, error) {
	if isFloat(v.typ) {
		f, err := ev.float(v)
		return f != 0, err
	}
	u, _, err := ev.Scalar(v)
	return u != 0, err
}

// format renders a value for the Variables view, the hover and the REPL.
func (ev *Evaluator) Format(v *Value, hex bool) string {
	return ev.formatDepth(v, hex, 0)
}

func (ev *Evaluator) formatDepth(v *Value, hex bool, depth int) string {
	if v.err != nil {
		return v.err.Error()
	}
	t := strip(v.typ)
	switch x := t.(type) {
	case nil, *dwarf.VoidType:
		return "void"
	case *dwarf.StructType:
		if depth > 1 {
			return "{...}"
		}
		var parts []string
		for i, f := range x.Field {
			if i == 4 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, fmt.Sprintf("%s = %s", fieldName(f, i), ev.formatDepth(ev.field(v, f, i), hex, depth+1)))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case *dwarf.ArrayType:
		el := strip(x.Type)
		if isCharType(el) && x.Count > 0 {
			b, err := ev.bytes(v, 0, int(min(x.Count, 256)))
			if err != nil {
				return err.Error()
			}
			return quoteC(b, true)
		}
		if depth > 1 || x.Count <= 0 {
			return fmt.Sprintf("[%d]", x.Count)
		}
		var parts []string
		for i := int64(0); i < x.Count; i++ {
			if i == 4 {
				parts = append(parts, "...")
				break
			}
			parts = append(parts, ev.formatDepth(ev.index(v, i), hex, depth+1))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *dwarf.FloatType:
		f, err := ev.float(v)
		if err != nil {
			return err.Error()
		}
		return strconv.FormatFloat(f, 'g', -1, 64)
	case *dwarf.PtrType:
		u, _, err := ev.Scalar(v)
		if err != nil {
			return err.Error()
		}
		s := fmt.Sprintf("%#x", u)
		if u == 0 {
			return "0x0"
		}
		switch x.Type.(type) {
		case nil, *dwarf.FuncType, *dwarf.VoidType:
			if _, ok := ev.Syms.Func(u); ok {
				s += " <" + ev.Syms.Describe(u) + ">"
			}
			return s
		}
		if isCharType(strip(x.Type)) {
			buf := make([]byte, 200)
			n, _ := ev.ReadMemory(u, buf)
			if n > 0 {
				s += " " + quoteC(buf[:n], true)
			}
		}
		return s
	case *dwarf.EnumType:
		u, _, err := ev.Scalar(v)
		if err != nil {
			return err.Error()
		}
		for _, e := range x.Val {
			if e.Val == int64(u) {
				return e.Name
			}
		}
		return fmt.Sprintf("%d", int64(u))
	case *dwarf.BoolType:
		u, _, err := ev.Scalar(v)
		if err != nil {
			return err.Error()
		}
		if u == 0 {
			return "false"
		}
		return "true"
	case *dwarf.FuncType:
		return fmt.Sprintf("%#x <%s>", v.addr, ev.Syms.Describe(v.addr))
	}
	u, signed, err := ev.Scalar(v)
	if err != nil {
		return err.Error()
	}
	if hex {
		if v.bitSize == 0 {
			size := typeSize(t)
			if size < 8 {
				u &= 1<<(8*uint(size)) - 1
			}
		}
		return fmt.Sprintf("%#x", u)
	}
	s := strconv.FormatUint(u, 10)
	if signed {
		s = strconv.FormatInt(int64(u), 10)
	}
	if isCharType(t) {
		s += " " + quoteC([]byte{byte(u)}, false)
	}
	return s
}

func isCharType(t dwarf.Type) bool {
	switch t.(type) {
	case *dwarf.CharType, *dwarf.UcharType:
		return true
	}
	return false
}

// quoteC renders bytes as a C literal; a string stops at its NUL.
func quoteC(b []byte, str bool) string {
	var sb strings.Builder
	q := byte('\'')
	if str {
		q = '"'
	}
	sb.WriteByte(q)
	for _, c := range b {
		if str && c == 0 {
			break
		}
		switch {
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\\' || c == q:
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, `\%03o`, c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte(q)
	return sb.String()
}

func fieldName(f *dwarf.StructField, i int) string {
	if f.Name == "" {
		return fmt.Sprintf("<anonymous %d>", i)
	}
	return f.Name
}

// field returns struct member f of v.
func (ev *Evaluator) field(v *Value, f *dwarf.StructField, i int) *Value {
	expr := ""
	if v.expr != "" {
		expr = "(" + v.expr + ")." + f.Name
	}
	c := v.child(fieldName(f, i), expr, f.Type, int(f.ByteOffset))
	if f.BitSize > 0 {
		// DWARF 4+ counts data_bit_offset from the start of the struct;
		// DWARF 2 counted bit_offset from the storage unit's top bit.
		bitpos := f.DataBitOffset
		if bitpos == 0 && f.BitOffset != 0 {
			bitpos = f.ByteOffset*8 + f.ByteSize*8 - f.BitOffset - f.BitSize
		}
		size := int64(typeSize(f.Type))
		if size == 0 {
			size = 4
		}
		unit := bitpos / 8 / size * size
		c = v.child(fieldName(f, i), expr, f.Type, int(unit))
		c.bitOff, c.bitSize = bitpos-unit*8, f.BitSize
	}
	return c
}

// index returns element i of array v.
func (ev *Evaluator) index(v *Value, i int64) *Value {
	a := strip(v.typ).(*dwarf.ArrayType)
	size := typeSize(a.Type)
	expr := ""
	if v.expr != "" {
		expr = fmt.Sprintf("(%s)[%d]", v.expr, i)
	}
	return v.child(fmt.Sprintf("[%d]", i), expr, a.Type, int(i)*size)
}

// deref returns what pointer v points to.
func (ev *Evaluator) deref(v *Value) (*Value, error) {
	p, ok := strip(v.typ).(*dwarf.PtrType)
	if !ok {
		return nil, fmt.Errorf("%s is not a pointer", typeName(v.typ))
	}
	u, _, err := ev.Scalar(v)
	if err != nil {
		return nil, err
	}
	if u == 0 {
		return nil, errors.New("null pointer")
	}
	expr := ""
	if v.expr != "" {
		expr = "*(" + v.expr + ")"
	}
	el := p.Type
	if el == nil {
		el = &dwarf.VoidType{}
	}
	return &Value{name: "*" + v.name, expr: expr, typ: el, kind: locMem, addr: u, frame: v.frame}, nil
}

// children counts what a value expands to (named, indexed).
func (ev *Evaluator) Children(v *Value) (named, indexed int) {
	if v.err != nil {
		return 0, 0
	}
	switch x := strip(v.typ).(type) {
	case *dwarf.StructType:
		return len(x.Field), 0
	case *dwarf.ArrayType:
		if x.Count > 0 {
			return 0, int(x.Count)
		}
	case *dwarf.PtrType:
		if x.Type == nil {
			return 0, 0
		}
		switch strip(x.Type).(type) {
		case *dwarf.VoidType, *dwarf.FuncType:
			return 0, 0
		}
		if u, _, err := ev.Scalar(v); err == nil && u != 0 {
			return 1, 0
		}
	}
	return 0, 0
}

// Name is the value's display name.
func (v *Value) Name() string { return v.name }

// SetName renames the value for display.
func (v *Value) SetName(n string) { v.name = n }

// EvalName is an expression that evaluates to v, "" when there is none.
func (v *Value) EvalName() string {
	if v.expr == "" && v.name != "" && !strings.HasPrefix(v.name, "[") && !strings.HasPrefix(v.name, "*") {
		return v.name
	}
	return v.expr
}

// TypeName is v's C type.
func (v *Value) TypeName() string { return typeName(v.typ) }

// Frame is the frame v was read in, nil for values not tied to one.
func (v *Value) Frame() *Frame { return v.frame }

// IsArray reports a C array, whose children are indexed.
func (v *Value) IsArray() bool { _, ok := strip(v.typ).(*dwarf.ArrayType); return ok }

// Err says why v could not be read (optimized out, not saved), or nil.
func (v *Value) Err() error { return v.err }

// Address is where v lives in memory, when it does.
func (v *Value) Address() (uint64, bool) { return v.addr, v.kind == locMem && v.err == nil }

// Pointee is the address a pointer value holds.
func (ev *Evaluator) Pointee(v *Value) (uint64, bool) {
	if _, ok := strip(v.typ).(*dwarf.PtrType); !ok {
		return 0, false
	}
	u, _, err := ev.Scalar(v)
	return u, err == nil
}

// expand lists the children of v; start and count page arrays.
func (ev *Evaluator) Expand(v *Value, start, count int) ([]*Value, error) {
	switch x := strip(v.typ).(type) {
	case *dwarf.StructType:
		out := make([]*Value, 0, len(x.Field))
		for i, f := range x.Field {
			out = append(out, ev.field(v, f, i))
		}
		return out, nil
	case *dwarf.ArrayType:
		n := int(x.Count)
		if start < 0 || start > n {
			start = n
		}
		end := n
		if count > 0 && start+count < n {
			end = start + count
		}
		out := make([]*Value, 0, end-start)
		for i := start; i < end; i++ {
			out = append(out, ev.index(v, int64(i)))
		}
		return out, nil
	case *dwarf.PtrType:
		d, err := ev.deref(v)
		if err != nil {
			return nil, err
		}
		return []*Value{d}, nil
	}
	return nil, nil
}
