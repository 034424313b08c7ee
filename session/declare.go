package session

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/symbols"
)

// Declaration is a range a user declares restartable (a seqlock reader of
// their own, JIT code): stepping into it runs it whole, as a vDSO
// function. Start and End are addresses or symbols with an offset
// (func+off, a label); they are resolved again after an exec.
type Declaration struct {
	Start, End string
	Name       string
}

func (d Declaration) String() string {
	if d.Name != "" {
		return fmt.Sprintf("%s [%s, %s)", d.Name, d.Start, d.End)
	}
	return fmt.Sprintf("[%s, %s)", d.Start, d.End)
}

// ParseDeclaration reads START:END[:NAME], the command line's form.
func ParseDeclaration(text string) (Declaration, error) {
	parts := strings.Split(text, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Declaration{}, fmt.Errorf("region %q: want START:END[:NAME]", text)
	}
	d := Declaration{Start: parts[0], End: parts[1]}
	if len(parts) == 3 {
		d.Name = parts[2]
	}
	return d, nil
}

// Declare resolves d and adds it to the regions. It is kept, and declared
// again in the new image after an exec.
func (s *Session) Declare(d Declaration) (*regions.Region, error) {
	r, err := s.declare(d)
	if err != nil {
		return nil, err
	}
	s.declarations = append(s.declarations, d)
	return r, nil
}

func (s *Session) declare(d Declaration) (*regions.Region, error) {
	start, err := s.Address(d.Start)
	if err != nil {
		return nil, fmt.Errorf("declaring %v: %w", d, err)
	}
	end, err := s.Address(d.End)
	if err != nil {
		return nil, fmt.Errorf("declaring %v: %w", d, err)
	}
	name := d.Name
	if name == "" {
		name = d.Start
	}
	return s.Eng.Declare(name, start, end)
}

// Undeclare removes the declarations whose name or start is what, or all of
// them when what is empty, and says how many went.
func (s *Session) Undeclare(what string) (int, error) {
	var at uint64
	byAddr := false
	if what != "" {
		if a, err := s.Address(what); err == nil {
			at, byAddr = a, true
		}
	}
	drop := func(name string, start uint64) bool {
		return what == "" || name == what || byAddr && start == at
	}
	n := s.Eng.Undeclare(func(r *regions.Region) bool { return !drop(r.Name, r.Start) })
	kept := s.declarations[:0]
	for _, d := range s.declarations {
		name := d.Name
		if name == "" {
			name = d.Start
		}
		start, err := s.Address(d.Start)
		if err != nil {
			start = 0
		}
		if !drop(name, start) {
			kept = append(kept, d)
		}
	}
	s.declarations = kept
	if n == 0 && what != "" {
		return 0, fmt.Errorf("no declared region %s", what)
	}
	return n, nil
}

// redeclare declares again, in a new image, what the user declared.
func (s *Session) redeclare() {
	for _, d := range s.declarations {
		s.declare(d)
	}
}

// Address resolves an address or symbol[+offset] (any symbol: function,
// object, label) in the loaded objects.
func (s *Session) Address(text string) (uint64, error) {
	text = strings.TrimSpace(text)
	if v, err := strconv.ParseUint(text, 0, 64); err == nil {
		return v, nil
	}
	name, off := text, uint64(0)
	if i := strings.LastIndexByte(text, '+'); i > 0 {
		v, err := strconv.ParseUint(strings.TrimSpace(text[i+1:]), 0, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: bad offset", text)
		}
		name, off = strings.TrimSpace(text[:i]), v
	}
	for _, o := range s.Eng.Objects() {
		if o.Path == "[vdso]" {
			continue
		}
		if v, err := symbols.Value(o.Path, name); err == nil {
			return v + o.Bias + off, nil
		}
	}
	return 0, fmt.Errorf("no symbol %q in the loaded objects", name)
}
