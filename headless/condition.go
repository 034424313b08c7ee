package headless

import (
	"fmt"
	"strings"
)

// condition is a breakpoint condition: OPERAND [OP OPERAND], where an
// operand is a number, $reg or a function name and OP a C comparison.
type condition struct {
	lhs, op, rhs string
}

var ops = []string{"==", "!=", "<=", ">=", "<", ">"}

func parseCondition(text string) (*condition, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("empty condition")
	}
	for _, op := range ops {
		if l, r, ok := strings.Cut(text, op); ok {
			return &condition{lhs: strings.TrimSpace(l), op: op, rhs: strings.TrimSpace(r)}, nil
		}
	}
	return &condition{lhs: text}, nil
}

// eval evaluates the condition in thread tid.
func (c *condition) eval(s *Session, tid int) (bool, error) {
	saved := s.cur
	s.cur = tid
	defer func() { s.cur = saved }()
	l, err := s.value(c.lhs)
	if err != nil {
		return false, err
	}
	if c.op == "" {
		return l != 0, nil
	}
	r, err := s.value(c.rhs)
	if err != nil {
		return false, err
	}
	a, b := int64(l), int64(r)
	switch c.op {
	case "==":
		return a == b, nil
	case "!=":
		return a != b, nil
	case "<":
		return a < b, nil
	case "<=":
		return a <= b, nil
	case ">":
		return a > b, nil
	case ">=":
		return a >= b, nil
	}
	return false, fmt.Errorf("bad operator %q", c.op)
}
