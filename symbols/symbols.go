// Package symbols maps run-time addresses to functions and source lines and
// back, for every loaded object, from ELF symbol tables and DWARF line
// tables. Front ends that show source (headless, DAP) use it.
package symbols

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
)

// Func is a function symbol at run-time addresses.
type Func struct {
	Name   string
	Lo, Hi uint64
	Object string
}

// Line is one row of a line table at a run-time address.
type Line struct {
	Addr   uint64
	File   string
	Line   int
	IsStmt bool
	End    bool // end of a sequence: no code from here
}

type object struct {
	path  string
	bias  uint64
	lo    uint64
	hi    uint64
	funcs []Func
	lines []Line
	dwarf *dwarf.Data
}

// Value is the link-time value of the symbol called name in the object at
// path (any kind: function, object, label).
func Value(path, name string) (uint64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading symbols of %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return 0, fmt.Errorf("reading symbols of %s: %w", path, err)
	}
	for _, s := range syms {
		if s.Name == name {
			return s.Value, nil
		}
	}
	return 0, fmt.Errorf("%s has no symbol %s", path, name)
}

// Table holds the symbols of the loaded objects.
type Table struct {
	objs []*object
}

// Load reads an object's symbols and line table; bias is added to every
// link-time address.
func (t *Table) Load(path string, bias uint64) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading symbols of %s: %w", path, err)
	}
	defer f.Close()
	return t.add(path, bias, f)
}

// LoadImage reads symbols from an in-memory image (the vDSO).
func (t *Table) LoadImage(name string, img []byte, bias uint64) error {
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("reading symbols of %s: %w", name, err)
	}
	return t.add(name, bias, f)
}

// Remove forgets an object.
func (t *Table) Remove(path string) {
	for i, o := range t.objs {
		if o.path == path {
			t.objs = append(t.objs[:i], t.objs[i+1:]...)
			return
		}
	}
}

func (t *Table) add(path string, bias uint64, f *elf.File) error {
	t.Remove(path)
	o := &object{path: path, bias: bias, lo: ^uint64(0)}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			o.lo = min(o.lo, p.Vaddr+bias)
			o.hi = max(o.hi, p.Vaddr+p.Memsz+bias)
		}
	}
	seen := map[uint64]bool{}
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || seen[s.Value] {
				continue
			}
			seen[s.Value] = true
			hi := s.Value + s.Size
			if s.Size == 0 && int(s.Section) < len(f.Sections) && s.Section != elf.SHN_UNDEF && s.Section < elf.SHN_LORESERVE {
				// A sizeless symbol (_init, hand-written asm) covers at most
				// the rest of its section, not the PLT or data after it.
				sec := f.Sections[s.Section]
				hi = sec.Addr + sec.Size
			}
			o.funcs = append(o.funcs, Func{Name: s.Name, Lo: s.Value + bias, Hi: hi + bias, Object: path})
		}
	}
	sort.Slice(o.funcs, func(i, j int) bool { return o.funcs[i].Lo < o.funcs[j].Lo })
	if d, err := f.DWARF(); err == nil {
		o.dwarf = d
		o.lines = readLines(d, bias)
	}
	t.objs = append(t.objs, o)
	return nil
}

func readLines(d *dwarf.Data, bias uint64) []Line {
	var out []Line
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil || cu == nil {
			break
		}
		if cu.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		lr, err := d.LineReader(cu)
		r.SkipChildren()
		if err != nil || lr == nil {
			continue
		}
		var le dwarf.LineEntry
		for {
			if err := lr.Next(&le); err != nil {
				if !errors.Is(err, io.EOF) {
					break
				}
				break
			}
			name := ""
			if le.File != nil {
				name = le.File.Name
			}
			out = append(out, Line{Addr: le.Address + bias, File: name, Line: le.Line, IsStmt: le.IsStmt, End: le.EndSequence})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

func (t *Table) objectAt(pc uint64) *object {
	for _, o := range t.objs {
		if pc >= o.lo && pc < o.hi {
			return o
		}
	}
	return nil
}

// DWARF returns the debug data of the object holding pc and its bias.
func (t *Table) DWARF(pc uint64) (*dwarf.Data, uint64, bool) {
	o := t.objectAt(pc)
	if o == nil || o.dwarf == nil {
		return nil, 0, false
	}
	return o.dwarf, o.bias, true
}

// Func returns the function holding pc.
func (t *Table) Func(pc uint64) (Func, bool) {
	o := t.objectAt(pc)
	if o == nil {
		return Func{}, false
	}
	i := sort.Search(len(o.funcs), func(i int) bool { return o.funcs[i].Lo > pc }) - 1
	if i < 0 {
		return Func{}, false
	}
	f := o.funcs[i]
	if pc >= f.Hi && f.Hi > f.Lo {
		return Func{}, false
	}
	return f, true
}

// Describe renders pc as "func+off"; in code without a symbol (libc's
// local functions in a stripped build) as "object+0xaddr", the address as
// the object links it, for objdump or addr2line.
func (t *Table) Describe(pc uint64) string {
	f, ok := t.Func(pc)
	if !ok {
		if o := t.objectAt(pc); o != nil {
			return fmt.Sprintf("%s+%#x", filepath.Base(o.path), pc-o.bias)
		}
		return fmt.Sprintf("%#x", pc)
	}
	if pc == f.Lo {
		return f.Name
	}
	return fmt.Sprintf("%s+%d", f.Name, pc-f.Lo)
}

// LookupFunc finds a function by name.
func (t *Table) LookupFunc(name string) (Func, bool) {
	for _, o := range t.objs {
		for _, f := range o.funcs {
			if f.Name == name {
				return f, true
			}
		}
	}
	return Func{}, false
}

// row returns the index of the line row covering pc in o.
func (o *object) row(pc uint64) int {
	i := sort.Search(len(o.lines), func(i int) bool { return o.lines[i].Addr > pc }) - 1
	if i < 0 || o.lines[i].End {
		return -1
	}
	return i
}

// LineAt returns the source position of pc.
func (t *Table) LineAt(pc uint64) (Line, bool) {
	o := t.objectAt(pc)
	if o == nil {
		return Line{}, false
	}
	i := o.row(pc)
	if i < 0 {
		return Line{}, false
	}
	return o.lines[i], true
}

// LineRange returns the contiguous address range around pc that belongs to
// pc's source line (the range a `next` steps through).
func (t *Table) LineRange(pc uint64) (lo, hi uint64, ok bool) {
	o := t.objectAt(pc)
	if o == nil {
		return 0, 0, false
	}
	i := o.row(pc)
	if i < 0 {
		return 0, 0, false
	}
	cur := o.lines[i]
	lo = cur.Addr
	for j := i - 1; j >= 0 && o.lines[j].Line == cur.Line && o.lines[j].File == cur.File && !o.lines[j].End; j-- {
		lo = o.lines[j].Addr
	}
	j := i + 1
	for j < len(o.lines) && !o.lines[j].End && o.lines[j].Line == cur.Line && o.lines[j].File == cur.File {
		j++
	}
	if j >= len(o.lines) {
		return 0, 0, false
	}
	return lo, o.lines[j].Addr, true
}

// IsStmtStart reports whether pc begins a statement row.
func (t *Table) IsStmtStart(pc uint64) bool {
	o := t.objectAt(pc)
	if o == nil {
		return false
	}
	i := o.row(pc)
	return i >= 0 && o.lines[i].Addr == pc && o.lines[i].IsStmt
}

// HasLines reports whether pc has line information.
func (t *Table) HasLines(pc uint64) bool {
	_, ok := t.LineAt(pc)
	return ok
}

// LineAddrs returns the statement addresses for file:line (file matched by
// suffix), moving to the next line with code if the line has none, as gdb
// does. It returns the line actually used.
func (t *Table) LineAddrs(file string, line int) ([]uint64, int) {
	best := 0
	var addrs []uint64
	for _, o := range t.objs {
		for _, l := range o.lines {
			if !l.IsStmt || l.End || !sameFile(l.File, file) || l.Line < line {
				continue
			}
			switch {
			case best == 0 || l.Line < best:
				best, addrs = l.Line, []uint64{l.Addr}
			case l.Line == best:
				addrs = append(addrs, l.Addr)
			}
		}
	}
	if best == 0 {
		return nil, 0
	}
	// One address per function: the lowest of each run.
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	var out []uint64
	for _, a := range addrs {
		if len(out) == 0 {
			out = append(out, a)
			continue
		}
		f1, _ := t.Func(out[len(out)-1])
		f2, _ := t.Func(a)
		if f1.Lo != f2.Lo {
			out = append(out, a)
		}
	}
	return out, best
}

func sameFile(have, want string) bool {
	if have == want {
		return true
	}
	if strings.Contains(want, "/") {
		return strings.HasSuffix(have, want) && (len(have) == len(want) || have[len(have)-len(want)-1] == '/')
	}
	return filepath.Base(have) == want
}

// AfterPrologue returns the address of the second line row of f, the place
// gdb puts a breakpoint on a function: its frame is set up there.
func (t *Table) AfterPrologue(f Func) uint64 {
	o := t.objectAt(f.Lo)
	if o == nil {
		return f.Lo
	}
	i := o.row(f.Lo)
	if i < 0 || o.lines[i].Addr != f.Lo {
		return f.Lo
	}
	first := o.lines[i].Line
	for j := i + 1; j < len(o.lines) && o.lines[j].Addr < f.Hi; j++ {
		if o.lines[j].End {
			break
		}
		if o.lines[j].Line != first && o.lines[j].IsStmt {
			return o.lines[j].Addr
		}
	}
	return f.Lo
}
