package eval

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rseqdbg/rseqdbg/symbols"
)

// fixture is a built C fixture; the seeds are read only if it exists.
func fixture(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "tests", "fixtures", "build", name)
}

// FuzzDWARF reads arbitrary objects the way a debugging session does: the line
// table (through symbols, which the session's stepping and breakpoints
// use), then the compile units, scopes, variables, their types and
// locations. A program may dlopen anything: no object may panic.
func FuzzDWARF(f *testing.F) {
	for _, name := range []string{"full_tables", "call_helper", "libpercpu.so"} {
		if b, err := os.ReadFile(fixture(name)); err == nil {
			f.Add(b, uint64(0x1200))
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"), uint64(0))
	f.Fuzz(func(t *testing.T, img []byte, lpc uint64) {
		var tab symbols.Table
		if tab.LoadImage("fuzz.so", img, 0) == nil {
			tab.LineAt(lpc)
			tab.LineRange(lpc)
			tab.IsStmtStart(lpc)
			if l, ok := tab.LineAt(lpc); ok {
				tab.LineAddrs(l.File, l.Line)
			}
		}
		ef, err := elf.NewFile(bytes.NewReader(img))
		if err != nil {
			return
		}
		o := &dobj{path: "fuzz.so", lo: 0, hi: ^uint64(0), loaded: true}
		if o.loadFrom(ef) != nil {
			return
		}
		o.globalsByName()
		for i, c := range o.cus {
			if i >= 8 {
				break
			}
			pc := lpc
			if len(c.ranges) > 0 {
				pc = c.ranges[0][0] + lpc%16
			}
			for _, sc := range append([]*scope{o.tree(c)}, o.chain(c, pc)...) {
				for _, e := range sc.vars {
					readVariable(o, c, e, pc)
				}
			}
		}
	})
}

func readVariable(o *dobj, c *cuInfo, e *dwarf.Entry, pc uint64) {
	o.name(e)
	typ, err := o.typeOf(e)
	if err == nil {
		typ.Size()
		_ = typ.String()
		if cv := e.Val(dwarf.AttrConstValue); cv != nil {
			constBytes(cv, typ)
		}
	}
	o.locExpr(e, c, pc)
}
