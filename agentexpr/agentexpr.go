// Package agentexpr evaluates gdb's agent expressions: the bytecode gdb
// sends with a breakpoint (Z0 ...;X len,bytes) so the stub decides the
// breakpoint's condition itself, without a round trip per hit. It knows
// the opcodes a condition compiles to (registers, constants, memory
// references, arithmetic, comparisons, jumps); tracing opcodes and
// floating point are refused, and gdb then keeps the condition.
package agentexpr

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Machine is what an expression reads: registers by gdb's number and
// memory.
type Machine interface {
	Register(n int) (uint64, error)
	ReadMemory(addr uint64, buf []byte) (int, error)
}

// ErrUnsupported is returned for an opcode this evaluator does not run.
var ErrUnsupported = errors.New("agent expression opcode not supported")

// Limits that keep a hostile or broken expression bounded.
const (
	maxSteps = 100000
	maxStack = 1024
)

// Opcodes, as gdb's agent-expression documentation numbers them.
const (
	opAdd         = 0x02
	opSub         = 0x03
	opMul         = 0x04
	opDivSigned   = 0x05
	opDivUnsigned = 0x06
	opRemSigned   = 0x07
	opRemUnsigned = 0x08
	opLsh         = 0x09
	opRshSigned   = 0x0a
	opRshUnsigned = 0x0b
	opLogNot      = 0x0e
	opBitAnd      = 0x0f
	opBitOr       = 0x10
	opBitXor      = 0x11
	opBitNot      = 0x12
	opEqual       = 0x13
	opLessSigned  = 0x14
	opLessUnsign  = 0x15
	opExt         = 0x16
	opRef8        = 0x17
	opRef16       = 0x18
	opRef32       = 0x19
	opRef64       = 0x1a
	opIfGoto      = 0x20
	opGoto        = 0x21
	opConst8      = 0x22
	opConst16     = 0x23
	opConst32     = 0x24
	opConst64     = 0x25
	opReg         = 0x26
	opEnd         = 0x27
	opDup         = 0x28
	opPop         = 0x29
	opZeroExt     = 0x2a
	opSwap        = 0x2b
	opPick        = 0x32
	opRot         = 0x33
)

// Validate checks that code only uses opcodes Eval runs, with complete
// operands and jumps inside the code, so a breakpoint can refuse a
// condition it could not evaluate when gdb inserts it, not at a hit.
func Validate(code []byte) error {
	for pc := 0; pc < len(code); {
		n, err := operandLen(code, pc)
		if err != nil {
			return err
		}
		switch code[pc] {
		case opIfGoto, opGoto:
			if t := int(binary.BigEndian.Uint16(code[pc+1:])); t >= len(code) {
				return fmt.Errorf("agent expression: jump to %d outside %d bytes", t, len(code))
			}
		}
		pc += 1 + n
	}
	return nil
}

// operandLen is the size of the operands of the opcode at pc.
func operandLen(code []byte, pc int) (int, error) {
	var n int
	switch op := code[pc]; {
	case op >= opAdd && op <= opEqual+2 && op != 0x0c && op != 0x0d, op >= opRef8 && op <= opRef64,
		op == opEnd, op == opDup, op == opPop, op == opSwap, op == opRot:
		n = 0
	case op == opExt, op == opZeroExt, op == opConst8, op == opPick:
		n = 1
	case op == opIfGoto, op == opGoto, op == opConst16, op == opReg:
		n = 2
	case op == opConst32:
		n = 4
	case op == opConst64:
		n = 8
	default:
		return 0, fmt.Errorf("%w: %#02x at %d", ErrUnsupported, op, pc)
	}
	if pc+1+n > len(code) {
		return 0, fmt.Errorf("agent expression: opcode %#02x at %d lacks its operands", code[pc], pc)
	}
	return n, nil
}

// Eval runs code and returns the value on top of the stack at its end.
func Eval(code []byte, m Machine) (uint64, error) {
	var stack []uint64
	pop := func() (uint64, error) {
		if len(stack) == 0 {
			return 0, errors.New("agent expression: stack underflow")
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	push := func(v uint64) error {
		if len(stack) >= maxStack {
			return errors.New("agent expression: stack overflow")
		}
		stack = append(stack, v)
		return nil
	}
	for pc, steps := 0, 0; ; steps++ {
		if steps > maxSteps {
			return 0, errors.New("agent expression: too many steps")
		}
		if pc >= len(code) {
			return 0, errors.New("agent expression: ran off its end")
		}
		op := code[pc]
		n, err := operandLen(code, pc)
		if err != nil {
			return 0, err
		}
		arg := code[pc+1 : pc+1+n]
		next := pc + 1 + n
		switch op {
		case opEnd:
			return pop()
		case opConst8:
			err = push(uint64(arg[0]))
		case opConst16:
			err = push(uint64(binary.BigEndian.Uint16(arg)))
		case opConst32:
			err = push(uint64(binary.BigEndian.Uint32(arg)))
		case opConst64:
			err = push(binary.BigEndian.Uint64(arg))
		case opReg:
			var v uint64
			if v, err = m.Register(int(binary.BigEndian.Uint16(arg))); err == nil {
				err = push(v)
			}
		case opRef8, opRef16, opRef32, opRef64:
			var a uint64
			if a, err = pop(); err != nil {
				break
			}
			size := 1 << (op - opRef8)
			var buf [8]byte
			if got, rerr := m.ReadMemory(a, buf[:size]); got != size {
				err = fmt.Errorf("agent expression: reading %d bytes at %#x: %v", size, a, rerr)
				break
			}
			err = push(binary.LittleEndian.Uint64(buf[:]))
		case opExt, opZeroExt:
			var v uint64
			if v, err = pop(); err != nil {
				break
			}
			bits := uint(arg[0])
			if bits == 0 || bits > 64 {
				err = fmt.Errorf("agent expression: extension to %d bits", bits)
				break
			}
			if bits < 64 {
				v &= 1<<bits - 1
				if op == opExt && v&(1<<(bits-1)) != 0 {
					v |= ^uint64(0) << bits
				}
			}
			err = push(v)
		case opLogNot, opBitNot:
			var v uint64
			if v, err = pop(); err != nil {
				break
			}
			if op == opBitNot {
				v = ^v
			} else if v == 0 {
				v = 1
			} else {
				v = 0
			}
			err = push(v)
		case opDup:
			var v uint64
			if v, err = pop(); err == nil {
				push(v)
				err = push(v)
			}
		case opPop:
			_, err = pop()
		case opSwap, opRot, opPick:
			err = shuffle(&stack, op, arg)
		case opIfGoto:
			var v uint64
			if v, err = pop(); err == nil && v != 0 {
				next = int(binary.BigEndian.Uint16(arg))
			}
		case opGoto:
			next = int(binary.BigEndian.Uint16(arg))
		default:
			var a, b uint64
			if b, err = pop(); err != nil {
				break
			}
			if a, err = pop(); err != nil {
				break
			}
			var v uint64
			if v, err = binary2(op, a, b); err == nil {
				err = push(v)
			}
		}
		if err != nil {
			return 0, err
		}
		pc = next
	}
}

// binary2 applies a two-operand opcode to a (pushed first) and b.
func binary2(op byte, a, b uint64) (uint64, error) {
	bool2 := func(c bool) uint64 {
		if c {
			return 1
		}
		return 0
	}
	switch op {
	case opAdd:
		return a + b, nil
	case opSub:
		return a - b, nil
	case opMul:
		return a * b, nil
	case opDivSigned, opRemSigned, opDivUnsigned, opRemUnsigned:
		if b == 0 {
			return 0, errors.New("agent expression: division by zero")
		}
		switch op {
		case opDivSigned:
			return uint64(int64(a) / int64(b)), nil
		case opRemSigned:
			return uint64(int64(a) % int64(b)), nil
		case opDivUnsigned:
			return a / b, nil
		}
		return a % b, nil
	case opLsh:
		return a << (b & 63), nil
	case opRshSigned:
		return uint64(int64(a) >> (b & 63)), nil
	case opRshUnsigned:
		return a >> (b & 63), nil
	case opBitAnd:
		return a & b, nil
	case opBitOr:
		return a | b, nil
	case opBitXor:
		return a ^ b, nil
	case opEqual:
		return bool2(a == b), nil
	case opLessSigned:
		return bool2(int64(a) < int64(b)), nil
	case opLessUnsign:
		return bool2(a < b), nil
	}
	return 0, fmt.Errorf("%w: %#02x", ErrUnsupported, op)
}

// shuffle runs swap, rot and pick.
func shuffle(stack *[]uint64, op byte, arg []byte) error {
	s := *stack
	switch op {
	case opSwap:
		if len(s) < 2 {
			return errors.New("agent expression: stack underflow")
		}
		s[len(s)-1], s[len(s)-2] = s[len(s)-2], s[len(s)-1]
	case opRot:
		// a b c => c a b (c on top moves below a and b).
		if len(s) < 3 {
			return errors.New("agent expression: stack underflow")
		}
		n := len(s)
		s[n-3], s[n-2], s[n-1] = s[n-1], s[n-3], s[n-2]
	case opPick:
		i := int(arg[0])
		if i >= len(s) || len(s) >= maxStack {
			return errors.New("agent expression: pick outside the stack")
		}
		*stack = append(s, s[len(s)-1-i])
	}
	return nil
}
