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

// expr is a parsed C expression: what the REPL, hovers, watches,
// breakpoint conditions and log points accept. Variables, $registers,
// numbers and character literals; member, index, dereference and address
// operators; C's arithmetic, comparison and logical operators.
type Expr struct {
	op   string // num, float, ident, reg, unary, binary, index, member, arrow
	name string // identifier, register, operator
	num  uint64
	fnum float64
	x, y *Expr
}

func (e *Expr) String() string {
	switch e.op {
	case "num":
		return strconv.FormatUint(e.num, 10)
	case "float":
		return strconv.FormatFloat(e.fnum, 'g', -1, 64)
	case "ident":
		return e.name
	case "reg":
		return "$" + e.name
	case "unary":
		return e.name + "(" + e.x.String() + ")"
	case "binary":
		return "(" + e.x.String() + " " + e.name + " " + e.y.String() + ")"
	case "index":
		return e.x.operand() + "[" + e.y.String() + "]"
	case "member":
		return e.x.operand() + "." + e.name
	case "arrow":
		return e.x.operand() + "->" + e.name
	}
	return "?"
}

// operand renders e where a postfix operator follows: "0.5" or "-p" would
// read differently without parentheses.
func (e *Expr) operand() string {
	switch e.op {
	case "num", "float", "unary":
		return "(" + e.String() + ")"
	}
	return e.String()
}

// Limits keep hostile input (the fuzz test, a pasted blob) cheap.
const (
	maxExprLen   = 4096
	maxExprDepth = 100
)

type token struct {
	kind string // num, float, ident, reg, op, eof
	text string
	num  uint64
	fnum float64
}

func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			hexLit := strings.HasPrefix(s[i:], "0x") || strings.HasPrefix(s[i:], "0X")
			for j < len(s) && (isIdent(s[j]) || s[j] == '.' ||
				!hexLit && (s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			lit := s[i:j]
			trimmed := strings.TrimRight(lit, "uUlL")
			if strings.HasPrefix(trimmed, "0x") || strings.HasPrefix(trimmed, "0X") || !strings.ContainsAny(trimmed, ".eE") {
				v, err := strconv.ParseUint(trimmed, 0, 64)
				if err != nil {
					return nil, fmt.Errorf("bad number %q", lit)
				}
				out = append(out, token{kind: "num", text: lit, num: v})
			} else {
				f, err := strconv.ParseFloat(strings.TrimRight(lit, "fFlL"), 64)
				if err != nil {
					return nil, fmt.Errorf("bad number %q", lit)
				}
				out = append(out, token{kind: "float", text: lit, fnum: f})
			}
			i = j
		case c == '\'':
			v, n, err := charLiteral(s[i:])
			if err != nil {
				return nil, err
			}
			out = append(out, token{kind: "num", text: s[i : i+n], num: v})
			i += n
		case c == '$':
			j := i + 1
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			if j == i+1 {
				return nil, errors.New("$ without a register name")
			}
			out = append(out, token{kind: "reg", text: s[i+1 : j]})
			i = j
		case isIdent(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			out = append(out, token{kind: "ident", text: s[i:j]})
			i = j
		default:
			op := ""
			for _, cand := range []string{"->", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||"} {
				if strings.HasPrefix(s[i:], cand) {
					op = cand
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune("+-*/%&|^!~<>()[].", rune(c)) {
					return nil, fmt.Errorf("unexpected %q", string(c))
				}
				op = string(c)
			}
			out = append(out, token{kind: "op", text: op})
			i += len(op)
		}
	}
	return append(out, token{kind: "eof"}), nil
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func charLiteral(s string) (uint64, int, error) {
	if len(s) >= 3 && s[1] != '\\' && s[2] == '\'' {
		return uint64(s[1]), 3, nil
	}
	if len(s) >= 4 && s[1] == '\\' && s[3] == '\'' {
		m := map[byte]uint64{'n': '\n', 't': '\t', 'r': '\r', '0': 0, '\\': '\\', '\'': '\'', '"': '"'}
		if v, ok := m[s[2]]; ok {
			return v, 4, nil
		}
	}
	return 0, 0, errors.New("bad character literal")
}

type parser struct {
	toks  []token
	pos   int
	depth int
}

var binPrec = map[string]int{
	"||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6,
	"<": 7, "<=": 7, ">": 7, ">=": 7, "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}

func Parse(s string) (*Expr, error) {
	if len(s) > maxExprLen {
		return nil, fmt.Errorf("expression longer than %d bytes", maxExprLen)
	}
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.binary(1)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != "eof" {
		return nil, fmt.Errorf("unexpected %q", t.text)
	}
	return e, nil
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token { t := p.toks[p.pos]; p.pos++; return t }

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxExprDepth {
		return errors.New("expression nested too deeply")
	}
	return nil
}

func (p *parser) binary(minPrec int) (*Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec, ok := binPrec[t.text]
		if t.kind != "op" || !ok || prec < minPrec {
			return x, nil
		}
		p.next()
		y, err := p.binary(prec + 1)
		if err != nil {
			return nil, err
		}
		x = &Expr{op: "binary", name: t.text, x: x, y: y}
	}
}

func (p *parser) unary() (*Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	t := p.peek()
	if t.kind == "op" && strings.Contains("- ! ~ * & +", t.text) && len(t.text) == 1 {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &Expr{op: "unary", name: t.text, x: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (*Expr, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != "op" {
			return x, nil
		}
		switch t.text {
		case "[":
			p.next()
			i, err := p.binary(1)
			if err != nil {
				return nil, err
			}
			if p.next().text != "]" {
				return nil, errors.New("missing ]")
			}
			x = &Expr{op: "index", x: x, y: i}
		case ".", "->":
			p.next()
			n := p.next()
			if n.kind != "ident" {
				return nil, fmt.Errorf("member name expected after %s", t.text)
			}
			op := "member"
			if t.text == "->" {
				op = "arrow"
			}
			x = &Expr{op: op, name: n.text, x: x}
		default:
			return x, nil
		}
	}
}

func (p *parser) primary() (*Expr, error) {
	t := p.next()
	switch t.kind {
	case "num":
		return &Expr{op: "num", num: t.num}, nil
	case "float":
		return &Expr{op: "float", fnum: t.fnum}, nil
	case "ident":
		return &Expr{op: "ident", name: t.text}, nil
	case "reg":
		return &Expr{op: "reg", name: t.text}, nil
	case "op":
		if t.text == "(" {
			x, err := p.binary(1)
			if err != nil {
				return nil, err
			}
			if p.next().text != ")" {
				return nil, errors.New("missing )")
			}
			return x, nil
		}
	case "eof":
		return nil, errors.New("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q", t.text)
}

// eval evaluates e in frame f.
func (ev *Evaluator) Eval(e *Expr, f *Frame) (*Value, error) {
	v, err := ev.evalNode(e, f)
	if err != nil {
		return nil, err
	}
	if v.err != nil {
		return nil, fmt.Errorf("%s: %s", e, strings.Trim(v.err.Error(), "<>"))
	}
	return v, nil
}

func (ev *Evaluator) evalNode(e *Expr, f *Frame) (*Value, error) {
	switch e.op {
	case "num":
		if e.num > math.MaxInt64 {
			return addrValue(e.num, ulongType), nil
		}
		return intValue(int64(e.num)), nil
	case "float":
		return floatValue(e.fnum), nil
	case "ident":
		v, err := ev.lookupVar(e.name, f)
		if err != nil {
			return nil, err
		}
		v.expr = e.name
		return v, nil
	case "reg":
		regs := f.Regs
		p := RegField(&regs, e.name)
		if p == nil {
			return nil, fmt.Errorf("no register $%s", e.name)
		}
		if f.Level > 0 && !CalleeSaved[e.name] {
			return nil, fmt.Errorf("$%s is not saved in frame %d", e.name, f.Level)
		}
		v := addrValue(*p, ulongType)
		v.name, v.expr = "$"+e.name, "$"+e.name
		return v, nil
	case "unary":
		return ev.evalUnary(e, f)
	case "binary":
		return ev.evalBinary(e, f)
	case "index":
		base, err := ev.Eval(e.x, f)
		if err != nil {
			return nil, err
		}
		iv, err := ev.Eval(e.y, f)
		if err != nil {
			return nil, err
		}
		i, _, err := ev.Scalar(iv)
		if err != nil {
			return nil, err
		}
		return ev.subscript(base, int64(i), e)
	case "member", "arrow":
		base, err := ev.Eval(e.x, f)
		if err != nil {
			return nil, err
		}
		// gdb is strict about . and ->; accepting either is friendlier in
		// a watch or hover.
		if _, ok := strip(base.typ).(*dwarf.PtrType); ok {
			if base, err = ev.deref(base); err != nil {
				return nil, err
			}
		}
		st, ok := strip(base.typ).(*dwarf.StructType)
		if !ok {
			return nil, fmt.Errorf("%s is not a struct or union", typeName(base.typ))
		}
		for i, fl := range st.Field {
			if fl.Name == e.name {
				c := ev.field(base, fl, i)
				c.name, c.expr = e.name, e.String()
				return c, nil
			}
		}
		return nil, fmt.Errorf("%s has no member %q", typeName(base.typ), e.name)
	}
	return nil, fmt.Errorf("cannot evaluate %s", e)
}

func (ev *Evaluator) subscript(base *Value, i int64, e *Expr) (*Value, error) {
	switch t := strip(base.typ).(type) {
	case *dwarf.ArrayType:
		if t.Count >= 0 && (i < 0 || i >= t.Count) {
			return nil, fmt.Errorf("index %d out of range [0, %d)", i, t.Count)
		}
		c := ev.index(base, i)
		c.expr = e.String()
		return c, nil
	case *dwarf.PtrType:
		u, _, err := ev.Scalar(base)
		if err != nil {
			return nil, err
		}
		el := t.Type
		size := typeSize(el)
		if el == nil || size == 0 {
			return nil, errors.New("cannot index a void pointer")
		}
		return &Value{name: fmt.Sprintf("[%d]", i), expr: e.String(), typ: el, kind: locMem, addr: u + uint64(i*int64(size)), frame: base.frame}, nil
	}
	return nil, fmt.Errorf("%s cannot be indexed", typeName(base.typ))
}

func (ev *Evaluator) evalUnary(e *Expr, f *Frame) (*Value, error) {
	x, err := ev.Eval(e.x, f)
	if err != nil {
		return nil, err
	}
	switch e.name {
	case "+":
		return x, nil
	case "*":
		if a, ok := strip(x.typ).(*dwarf.ArrayType); ok {
			if a.Count == 0 {
				return nil, errors.New("empty array")
			}
			return ev.index(x, 0), nil
		}
		d, err := ev.deref(x)
		if err != nil {
			return nil, err
		}
		d.expr = e.String()
		return d, nil
	case "&":
		if x.kind != locMem {
			return nil, fmt.Errorf("%s has no address", e.x)
		}
		v := addrValue(x.addr, &dwarf.PtrType{CommonType: dwarf.CommonType{ByteSize: 8}, Type: x.typ})
		v.expr = e.String()
		return v, nil
	case "!":
		t, err := ev.Truth(x)
		if err != nil {
			return nil, err
		}
		if t {
			return intValue(0), nil
		}
		return intValue(1), nil
	case "-":
		if isFloat(x.typ) {
			fl, err := ev.float(x)
			return floatValue(-fl), err
		}
		u, _, err := ev.Scalar(x)
		return intValue(-int64(u)), err
	case "~":
		u, _, err := ev.Scalar(x)
		return intValue(int64(^u)), err
	}
	return nil, fmt.Errorf("unknown operator %s", e.name)
}

func (ev *Evaluator) evalBinary(e *Expr, f *Frame) (*Value, error) {
	x, err := ev.Eval(e.x, f)
	if err != nil {
		return nil, err
	}
	if e.name == "&&" || e.name == "||" {
		l, err := ev.Truth(x)
		if err != nil {
			return nil, err
		}
		if l == (e.name == "||") {
			return boolValue(l), nil
		}
		y, err := ev.Eval(e.y, f)
		if err != nil {
			return nil, err
		}
		r, err := ev.Truth(y)
		return boolValue(r), err
	}
	y, err := ev.Eval(e.y, f)
	if err != nil {
		return nil, err
	}
	if isFloat(x.typ) || isFloat(y.typ) {
		return ev.floatOp(e.name, x, y)
	}
	a, sa, err := ev.Scalar(x)
	if err != nil {
		return nil, err
	}
	b, sb, err := ev.Scalar(y)
	if err != nil {
		return nil, err
	}
	// Pointer arithmetic scales by the element size, as in C.
	if p, ok := strip(x.typ).(*dwarf.PtrType); ok && (e.name == "+" || e.name == "-") {
		if _, isPtr := strip(y.typ).(*dwarf.PtrType); !isPtr {
			size := uint64(max(typeSize(p.Type), 1))
			r := a + b*size
			if e.name == "-" {
				r = a - b*size
			}
			return addrValue(r, x.typ), nil
		}
	}
	signed := sa && sb
	cmp := func(lt, eq bool) *Value {
		switch e.name {
		case "<":
			return boolValue(lt)
		case "<=":
			return boolValue(lt || eq)
		case ">":
			return boolValue(!lt && !eq)
		case ">=":
			return boolValue(!lt)
		case "==":
			return boolValue(eq)
		}
		return boolValue(!eq)
	}
	switch e.name {
	case "<", "<=", ">", ">=", "==", "!=":
		if signed {
			return cmp(int64(a) < int64(b), a == b), nil
		}
		return cmp(a < b, a == b), nil
	case "+":
		return intValue(int64(a + b)), nil
	case "-":
		return intValue(int64(a - b)), nil
	case "*":
		return intValue(int64(a * b)), nil
	case "/", "%":
		if b == 0 {
			return nil, errors.New("division by zero")
		}
		if signed {
			if int64(b) == -1 {
				// MinInt64 / -1 overflows; C leaves it undefined, Go panics.
				if e.name == "/" {
					return intValue(-int64(a)), nil
				}
				return intValue(0), nil
			}
			if e.name == "/" {
				return intValue(int64(a) / int64(b)), nil
			}
			return intValue(int64(a) % int64(b)), nil
		}
		if e.name == "/" {
			return intValue(int64(a / b)), nil
		}
		return intValue(int64(a % b)), nil
	case "&":
		return intValue(int64(a & b)), nil
	case "|":
		return intValue(int64(a | b)), nil
	case "^":
		return intValue(int64(a ^ b)), nil
	case "<<":
		return intValue(int64(a << (b & 63))), nil
	case ">>":
		if signed {
			return intValue(int64(a) >> (b & 63)), nil
		}
		return intValue(int64(a >> (b & 63))), nil
	}
	return nil, fmt.Errorf("unknown operator %s", e.name)
}

func (ev *Evaluator) floatOp(op string, x, y *Value) (*Value, error) {
	get := func(v *Value) (float64, error) {
		if isFloat(v.typ) {
			return ev.float(v)
		}
		u, signed, err := ev.Scalar(v)
		if signed {
			return float64(int64(u)), err
		}
		return float64(u), err
	}
	a, err := get(x)
	if err != nil {
		return nil, err
	}
	b, err := get(y)
	if err != nil {
		return nil, err
	}
	switch op {
	case "+":
		return floatValue(a + b), nil
	case "-":
		return floatValue(a - b), nil
	case "*":
		return floatValue(a * b), nil
	case "/":
		return floatValue(a / b), nil
	case "<":
		return boolValue(a < b), nil
	case "<=":
		return boolValue(a <= b), nil
	case ">":
		return boolValue(a > b), nil
	case ">=":
		return boolValue(a >= b), nil
	case "==":
		return boolValue(a == b), nil
	case "!=":
		return boolValue(a != b), nil
	}
	return nil, fmt.Errorf("operator %s does not apply to floating-point values", op)
}

func boolValue(b bool) *Value {
	if b {
		return intValue(1)
	}
	return intValue(0)
}

// assign writes src into dst (setVariable): memory, or a register of the
// top frame.
func (ev *Evaluator) Assign(dst, src *Value) error {
	if dst.err != nil {
		return dst.err
	}
	t := strip(dst.typ)
	size := typeSize(t)
	if size == 0 || size > 8 && !isFloat(t) {
		return fmt.Errorf("cannot assign to %s: only scalars can be set", typeName(dst.typ))
	}
	buf := make([]byte, 16)
	if isFloat(t) {
		var fv float64
		var err error
		if isFloat(src.typ) {
			fv, err = ev.float(src)
		} else {
			var u uint64
			var signed bool
			u, signed, err = ev.Scalar(src)
			fv = float64(u)
			if signed {
				fv = float64(int64(u))
			}
		}
		if err != nil {
			return err
		}
		switch size {
		case 4:
			binary.LittleEndian.PutUint32(buf, math.Float32bits(float32(fv)))
		case 8:
			binary.LittleEndian.PutUint64(buf, math.Float64bits(fv))
		default:
			return fmt.Errorf("cannot assign to %s", typeName(dst.typ))
		}
	} else {
		var u uint64
		if isFloat(src.typ) {
			fv, err := ev.float(src)
			if err != nil {
				return err
			}
			u = uint64(int64(fv))
		} else {
			var err error
			if u, _, err = ev.Scalar(src); err != nil {
				return err
			}
		}
		if dst.bitSize > 0 {
			old, err := ev.bytes(dst, 0, size)
			if err != nil {
				return err
			}
			var x [8]byte
			copy(x[:], old)
			w := binary.LittleEndian.Uint64(x[:])
			mask := (uint64(1)<<uint(dst.bitSize) - 1) << uint(dst.bitOff)
			u = w&^mask | (u<<uint(dst.bitOff))&mask
		}
		binary.LittleEndian.PutUint64(buf, u)
	}
	data := buf[:size]
	switch dst.kind {
	case locMem:
		n, err := ev.WriteMemory(dst.addr, data)
		if n < size {
			return fmt.Errorf("writing %d bytes at %#x: %v", size, dst.addr, err)
		}
		dst.data = nil // read again: what is stored now (truncation, bit fields)
		return nil
	case locReg:
		f := dst.frame
		if f == nil || f.Level != 0 || dst.reg < 0 || dst.reg >= len(DwarfRegs) {
			return errors.New("only registers of the innermost frame can be set")
		}
		regs, err := ev.Regs(f.Tid)
		if err != nil {
			return err
		}
		p := RegField(&regs, DwarfRegs[dst.reg])
		var x [8]byte
		binary.LittleEndian.PutUint64(x[:], *p)
		copy(x[:], data)
		*p = binary.LittleEndian.Uint64(x[:])
		if err := ev.SetRegs(f.Tid, regs); err != nil {
			return fmt.Errorf("setting %s: %w", DwarfRegs[dst.reg], err)
		}
		dst.data = regBytes(regs, dst.reg, typeSize(dst.typ))
		return nil
	}
	return errors.New("this value is computed, not stored: it cannot be set")
}
