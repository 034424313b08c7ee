package eval

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-delve/delve/pkg/dwarf/godwarf"
	"github.com/go-delve/delve/pkg/dwarf/loclist"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/rseqdbg/rseqdbg/regions"
)

// debugInfo is the DWARF of the loaded objects for variables: scopes,
// types and locations. The line tables stay in symbols. It is used on the
// ptrace thread only.
type DebugInfo struct {
	objs []*dobj
}

// dobj is one object's debug information, parsed lazily.
type dobj struct {
	path   string
	bias   uint64
	lo, hi uint64

	loaded   bool
	err      error
	data     *dwarf.Data
	loclists *loclist.Dwarf5Reader
	// loclistsData is .debug_loclists itself, for DW_FORM_loclistx
	// offset tables (clang).
	loclistsData []byte
	loc          *loclist.Dwarf2Reader
	addr         *godwarf.DebugAddrSection
	cus          []*cuInfo
	entries      map[dwarf.Offset]*dwarf.Entry
	globals      map[string]globalVar
	dataSyms     map[string]elf.Symbol
}

type cuInfo struct {
	off      dwarf.Offset
	entry    *dwarf.Entry
	ranges   [][2]uint64 // link-time
	lowPC    uint64
	addrBase uint64
	root     *scope
}

// scope is a subprogram, lexical block or inlined subroutine with the
// variables declared directly in it.
type scope struct {
	entry  *dwarf.Entry
	ranges [][2]uint64
	vars   []*dwarf.Entry
	kids   []*scope
}

type globalVar struct {
	entry *dwarf.Entry
	cu    *cuInfo
}

// sync follows the engine's object list.
func (d *DebugInfo) Sync(objs []*regions.Object) {
	keep := d.objs[:0]
	have := map[string]*dobj{}
	for _, o := range d.objs {
		have[o.path] = o
	}
	for _, o := range objs {
		if o.Path == "[vdso]" {
			continue // no DWARF in the vDSO
		}
		if x := have[o.Path]; x != nil && x.bias == o.Bias {
			keep = append(keep, x)
			continue
		}
		x := &dobj{path: o.Path, bias: o.Bias, lo: ^uint64(0)}
		if f, err := elf.Open(o.Path); err == nil {
			for _, p := range f.Progs {
				if p.Type == elf.PT_LOAD {
					x.lo = min(x.lo, p.Vaddr+o.Bias)
					x.hi = max(x.hi, p.Vaddr+p.Memsz+o.Bias)
				}
			}
			f.Close()
		}
		keep = append(keep, x)
	}
	d.objs = keep
}

// objectOf returns the object mapped at pc without loading its DWARF.
func (d *DebugInfo) objectOf(pc uint64) *dobj {
	for _, o := range d.objs {
		if pc >= o.lo && pc < o.hi {
			return o
		}
	}
	return nil
}

// ObjectOf names the object mapped at pc and where it starts, without
// loading its DWARF.
func (d *DebugInfo) ObjectOf(pc uint64) (path string, lo uint64, ok bool) {
	if o := d.objectOf(pc); o != nil {
		return o.path, o.lo, true
	}
	return "", 0, false
}

func (d *DebugInfo) objectAt(pc uint64) *dobj {
	for _, o := range d.objs {
		if pc >= o.lo && pc < o.hi {
			if err := o.load(); err != nil {
				return nil
			}
			return o
		}
	}
	return nil
}

func (o *dobj) load() error {
	if o.loaded {
		return o.err
	}
	o.loaded = true
	f, err := elf.Open(o.path)
	if err != nil {
		o.err = fmt.Errorf("reading debug information of %s: %w", o.path, err)
		return o.err
	}
	defer f.Close()
	o.err = o.loadFrom(f)
	return o.err
}

// loadFrom reads the debug information of f, which may be anything: an
// object is the user's, or the program's own choice (dlopen).
func (o *dobj) loadFrom(f *elf.File) error {
	o.dataSyms = map[string]elf.Symbol{}
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_OBJECT && s.Value != 0 {
				if _, dup := o.dataSyms[s.Name]; !dup {
					o.dataSyms[s.Name] = s
				}
			}
		}
	}
	data, err := f.DWARF()
	if err != nil {
		return fmt.Errorf("%s has no usable DWARF: %w", o.path, err)
	}
	o.data = data
	o.entries = map[dwarf.Offset]*dwarf.Entry{}
	if s := f.Section(".debug_loclists"); s != nil {
		if b, err := s.Data(); err == nil && len(b) > 12 {
			o.loclists = loclist.NewDwarf5Reader(b)
			o.loclistsData = b
		}
	}
	if s := f.Section(".debug_loc"); s != nil {
		if b, err := s.Data(); err == nil && len(b) > 0 {
			o.loc = loclist.NewDwarf2Reader(b, 8)
		}
	}
	if s := f.Section(".debug_addr"); s != nil {
		if b, err := s.Data(); err == nil && len(b) > 8 {
			o.addr = godwarf.ParseAddr(b)
		}
	}
	r := data.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			c := &cuInfo{off: e.Offset, entry: e}
			c.ranges, _ = data.Ranges(e)
			c.lowPC, _ = e.Val(dwarf.AttrLowpc).(uint64)
			if ab, ok := e.Val(dwarf.AttrAddrBase).(int64); ok {
				c.addrBase = uint64(ab)
			}
			o.cus = append(o.cus, c)
		}
		r.SkipChildren()
	}
	return nil
}

func (o *dobj) cuAt(lpc uint64) *cuInfo {
	for _, c := range o.cus {
		for _, rg := range c.ranges {
			if lpc >= rg[0] && lpc < rg[1] {
				return c
			}
		}
	}
	return nil
}

// tree parses a compile unit's scopes once.
func (o *dobj) tree(c *cuInfo) *scope {
	if c.root != nil {
		return c.root
	}
	root := &scope{entry: c.entry}
	c.root = root
	r := o.data.Reader()
	r.Seek(c.off)
	cu, err := r.Next()
	if err != nil || cu == nil || !cu.Children {
		return root
	}
	stack := []*scope{root}
	for len(stack) > 0 {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		parent := stack[len(stack)-1]
		switch e.Tag {
		case dwarf.TagSubprogram, dwarf.TagLexDwarfBlock, dwarf.TagInlinedSubroutine:
			sc := &scope{entry: e}
			sc.ranges, _ = o.data.Ranges(e)
			parent.kids = append(parent.kids, sc)
			if e.Children {
				stack = append(stack, sc)
			}
		case dwarf.TagVariable, dwarf.TagFormalParameter:
			parent.vars = append(parent.vars, e)
			if e.Children {
				r.SkipChildren()
			}
		default:
			if e.Children {
				r.SkipChildren()
			}
		}
	}
	return root
}

func (sc *scope) contains(lpc uint64) bool {
	for _, rg := range sc.ranges {
		if lpc >= rg[0] && lpc < rg[1] {
			return true
		}
	}
	return false
}

// chain returns the scopes holding lpc, outermost (the subprogram) first.
func (o *dobj) chain(c *cuInfo, lpc uint64) []*scope {
	var out []*scope
	cur := o.tree(c)
	for {
		var next *scope
		for _, k := range cur.kids {
			if k.contains(lpc) {
				next = k
				break
			}
		}
		if next == nil {
			return out
		}
		out = append(out, next)
		cur = next
	}
}

func (o *dobj) entryAt(off dwarf.Offset) *dwarf.Entry {
	if e, ok := o.entries[off]; ok {
		return e
	}
	r := o.data.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil {
		e = nil
	}
	o.entries[off] = e
	return e
}

// attr reads an attribute, following abstract origins (inlined and
// out-of-line copies) and specifications (definitions of declarations).
func (o *dobj) attr(e *dwarf.Entry, a dwarf.Attr) any {
	for i := 0; i < 8 && e != nil; i++ {
		if v := e.Val(a); v != nil {
			return v
		}
		off, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			off, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset)
		}
		if !ok {
			return nil
		}
		e = o.entryAt(off)
	}
	return nil
}

func (o *dobj) name(e *dwarf.Entry) string {
	s, _ := o.attr(e, dwarf.AttrName).(string)
	return s
}

func (o *dobj) typeOf(e *dwarf.Entry) (dwarf.Type, error) {
	off, ok := o.attr(e, dwarf.AttrType).(dwarf.Offset)
	if !ok {
		return nil, errors.New("no type")
	}
	return o.data.Type(off)
}

// globalsByName indexes the variables declared at compile-unit level.
func (o *dobj) globalsByName() map[string]globalVar {
	if o.globals != nil {
		return o.globals
	}
	o.globals = map[string]globalVar{}
	for _, c := range o.cus {
		for _, e := range o.tree(c).vars {
			if e.Tag != dwarf.TagVariable || e.Val(dwarf.AttrLocation) == nil {
				continue
			}
			n := o.name(e)
			if _, dup := o.globals[n]; n != "" && !dup {
				o.globals[n] = globalVar{entry: e, cu: c}
			}
		}
	}
	return o.globals
}

// locExpr returns the location expression of e valid at lpc, or nil when
// the variable has no location there (optimized out).
func (o *dobj) locExpr(e *dwarf.Entry, c *cuInfo, lpc uint64) ([]byte, error) {
	f := e.AttrField(dwarf.AttrLocation)
	if f == nil {
		return nil, nil
	}
	switch f.Class {
	case dwarf.ClassExprLoc, dwarf.ClassBlock:
		b, _ := f.Val.([]byte)
		return b, nil
	case dwarf.ClassLocListPtr:
		off, _ := f.Val.(int64)
		return o.findLoc(int(off), c, lpc)
	case dwarf.ClassLocList:
		// DW_FORM_loclistx: an index into the unit's offset table.
		idx := asInt(f.Val)
		base := asInt(c.entry.Val(dwarf.AttrLoclistsBase))
		at := base + 4*idx
		if o.loclists == nil || base <= 0 || idx < 0 || at+4 > int64(len(o.loclistsData)) {
			return nil, fmt.Errorf("location list index %d out of range", idx)
		}
		return o.findLoc(int(base+int64(binary.LittleEndian.Uint32(o.loclistsData[at:]))), c, lpc)
	}
	return nil, fmt.Errorf("unsupported location class %v", f.Class)
}

// findLoc looks a location list up with link-time addresses throughout:
// delve's readers add the static base only to some entry kinds.
func (o *dobj) findLoc(off int, c *cuInfo, lpc uint64) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("malformed location list at %#x", off)
		}
	}()
	var da *godwarf.DebugAddr
	if o.addr != nil {
		da = o.addr.GetSubsection(c.addrBase)
	}
	if o.loclists != nil {
		e, err := o.loclists.Find(off, 0, c.lowPC, lpc, da)
		if err == nil && e != nil {
			return e.Instr, nil
		}
		if o.loc == nil {
			return nil, err
		}
	}
	if o.loc != nil {
		e, err := o.loc.Find(off, 0, c.lowPC, lpc, nil)
		if err != nil || e == nil {
			return nil, err
		}
		return e.Instr, nil
	}
	return nil, errors.New("no location lists")
}

// DwarfRegs maps DWARF register numbers to registers.
var DwarfRegs = []string{"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"}

// regsFor builds the registers a location expression may use in f: all of
// them in the top frame, only those the unwinder restores in outer frames.
func regsFor(f *Frame) op.DwarfRegisters {
	regs := f.Regs
	list := make([]*op.DwarfRegister, len(DwarfRegs))
	for i, n := range DwarfRegs {
		if f.Level > 0 && !CalleeSaved[n] {
			continue
		}
		list[i] = op.DwarfRegisterFromUint64(*RegField(&regs, n))
	}
	return *op.NewDwarfRegisters(0, list, binary.LittleEndian, 16, 7, 6, 0)
}

// execute runs a location expression; delve's interpreter panics on some
// malformed programs, which must not end the session.
func (ev *Evaluator) execute(regs op.DwarfRegisters, prog []byte) (addr int64, pieces []op.Piece, err error) {
	defer func() {
		if p := recover(); p != nil {
			addr, pieces, err = 0, nil, fmt.Errorf("malformed location expression: %v", p)
		}
	}()
	read := func(buf []byte, a uint64) (int, error) { return ev.ReadMemory(a, buf) }
	return op.ExecuteStackProgram(regs, prog, 8, read)
}

// frameBase evaluates DW_AT_frame_base of the subprogram holding f; gcc
// emits DW_OP_call_frame_cfa, whose value is the unwinder's CFA.
func (ev *Evaluator) frameBase(o *dobj, fn *scope, f *Frame) (int64, error) {
	fb := fn.entry.AttrField(dwarf.AttrFrameBase)
	if fb == nil {
		return 0, errors.New("no frame base")
	}
	prog, _ := fb.Val.([]byte)
	regs := regsFor(f)
	regs.StaticBase = o.bias
	if f.CFAOK {
		regs.CFA = int64(f.CFA)
	}
	addr, pieces, err := ev.execute(regs, prog)
	if err != nil {
		return 0, err
	}
	if len(pieces) == 1 && pieces[0].Kind == op.RegPiece {
		return int64(regs.Uint64Val(pieces[0].Val)), nil
	}
	return addr, nil
}

// scopeVars are the variables visible in frame f, innermost scope first.
type scopeVar struct {
	entry *dwarf.Entry
	arg   bool
}

type frameVars struct {
	o     *dobj
	c     *cuInfo
	fn    *scope // the subprogram (not inlined) that owns the frame
	vars  []scopeVar
	fbase int64
	fbErr error
}

// varsOf collects the variables of f's scopes; frames with no DWARF
// have none.
func (ev *Evaluator) varsOf(f *Frame) (*frameVars, error) {
	o := ev.Info.objectAt(f.Lookup)
	if o == nil {
		return nil, errors.New("no debug information here")
	}
	lpc := f.Lookup - o.bias
	c := o.cuAt(lpc)
	if c == nil {
		return nil, errors.New("no debug information here")
	}
	chain := o.chain(c, lpc)
	fv := &frameVars{o: o, c: c}
	for _, sc := range chain {
		if sc.entry.Tag == dwarf.TagSubprogram {
			fv.fn = sc
		}
	}
	if fv.fn == nil {
		return nil, errors.New("no function here")
	}
	for i := len(chain) - 1; i >= 0; i-- {
		for _, e := range chain[i].vars {
			fv.vars = append(fv.vars, scopeVar{entry: e, arg: e.Tag == dwarf.TagFormalParameter})
		}
	}
	fv.fbase, fv.fbErr = ev.frameBase(o, fv.fn, f)
	return fv, nil
}

// errOptimizedOut marks a variable without a location at this PC.
var errOptimizedOut = errors.New("<optimized out>")

// locate evaluates the location of variable e in frame f.
func (ev *Evaluator) locate(fv *frameVars, e *dwarf.Entry, f *Frame, typ dwarf.Type) *Value {
	v := &Value{typ: typ, frame: f}
	prog, err := fv.o.locExpr(e, fv.c, f.Lookup-fv.o.bias)
	if err != nil {
		v.err = err
		return v
	}
	if len(prog) == 0 {
		if cv := e.Val(dwarf.AttrConstValue); cv != nil {
			v.kind = locImm
			v.data = constBytes(cv, typ)
			return v
		}
		v.err = errOptimizedOut
		return v
	}
	regs := regsFor(f)
	regs.StaticBase = fv.o.bias
	if f.CFAOK {
		regs.CFA = int64(f.CFA)
	}
	if fv.fbErr == nil {
		regs.FrameBase = fv.fbase
	}
	addr, pieces, err := ev.execute(regs, prog)
	if err != nil {
		v.err = fmt.Errorf("<unavailable: %v>", err)
		return v
	}
	ev.place(v, regs, addr, pieces)
	return v
}

// place stores where a value is from a location expression's result.
func (ev *Evaluator) place(v *Value, regs op.DwarfRegisters, addr int64, pieces []op.Piece) {
	size := typeSize(v.typ)
	if len(pieces) == 0 {
		v.kind, v.addr = locMem, uint64(addr)
		return
	}
	if len(pieces) == 1 && pieces[0].Kind == op.RegPiece {
		r := regs.Reg(pieces[0].Val)
		if r == nil {
			v.err = errors.New("<not saved>")
			return
		}
		v.kind, v.reg = locReg, int(pieces[0].Val)
		v.data = make([]byte, max(size, 8))
		binary.LittleEndian.PutUint64(v.data, r.Uint64Val)
		v.data = v.data[:max(size, 0)]
		return
	}
	// Immediate values and composites are assembled into bytes.
	var data []byte
	for _, p := range pieces {
		psize := p.Size
		if psize == 0 {
			psize = size - len(data)
		}
		chunk := make([]byte, max(psize, 0))
		switch p.Kind {
		case op.AddrPiece:
			ev.ReadMemory(p.Val, chunk)
		case op.RegPiece:
			r := regs.Reg(p.Val)
			if r == nil {
				v.err = errors.New("<not saved>")
				return
			}
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], r.Uint64Val)
			copy(chunk, b[:])
		case op.ImmPiece:
			if p.Bytes != nil {
				copy(chunk, p.Bytes)
			} else {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], p.Val)
				copy(chunk, b[:])
			}
		}
		data = append(data, chunk...)
	}
	v.kind, v.data = locImm, data
}

func constBytes(cv any, typ dwarf.Type) []byte {
	size := max(typeSize(typ), 8)
	b := make([]byte, size)
	switch x := cv.(type) {
	case int64:
		binary.LittleEndian.PutUint64(b, uint64(x))
	case uint64:
		binary.LittleEndian.PutUint64(b, x)
	case []byte:
		copy(b, x)
	}
	return b[:max(typeSize(typ), 0)]
}

// lookupVar resolves a name in frame f: its scopes, then globals of its
// object, then globals of every object, then data symbols.
func (ev *Evaluator) lookupVar(name string, f *Frame) (*Value, error) {
	fv, ferr := ev.varsOf(f)
	if ferr == nil {
		for _, sv := range fv.vars {
			if fv.o.name(sv.entry) != name {
				continue
			}
			t, err := fv.o.typeOf(sv.entry)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			v := ev.locate(fv, sv.entry, f, t)
			v.name = name
			return v, nil
		}
	}
	objs := ev.Info.objs
	if fv != nil {
		objs = append([]*dobj{fv.o}, objs...)
	}
	for _, o := range objs {
		if o.load() != nil && o.data == nil {
			continue
		}
		g, ok := o.globalsByName()[name]
		if !ok {
			continue
		}
		t, err := o.typeOf(g.entry)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		gv := &frameVars{o: o, c: g.cu}
		v := ev.locate(gv, g.entry, f, t)
		v.name = name
		return v, nil
	}
	for _, o := range objs {
		if s, ok := o.dataSyms[name]; ok {
			return &Value{name: name, kind: locMem, addr: s.Value + o.bias, typ: bytesType(int64(s.Size))}, nil
		}
	}
	if fn, ok := ev.Syms.LookupFunc(name); ok {
		return addrValue(fn.Lo, &dwarf.PtrType{CommonType: dwarf.CommonType{ByteSize: 8}, Type: &dwarf.FuncType{}}), nil
	}
	return nil, fmt.Errorf("no symbol %q in the current context", name)
}

// localsOf lists a frame's arguments or locals, without shadowed
// duplicates (the innermost wins).
func (ev *Evaluator) Locals(f *Frame, args bool) ([]*Value, error) {
	fv, err := ev.varsOf(f)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []*Value
	for _, sv := range fv.vars {
		if sv.arg != args {
			continue
		}
		n := fv.o.name(sv.entry)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		t, err := fv.o.typeOf(sv.entry)
		if err != nil {
			out = append(out, &Value{name: n, err: err})
			continue
		}
		v := ev.locate(fv, sv.entry, f, t)
		v.name = n
		out = append(out, v)
	}
	return out, nil
}

// asInt reads an attribute value that debug/dwarf returns as int64 or
// uint64 depending on its form.
func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case uint64:
		return int64(x)
	}
	return -1
}
