// Package eval evaluates C expressions in a stopped thread's frame: it
// reads variables from DWARF (scopes, types, location expressions),
// registers ($rax), and formats values as C. Breakpoint conditions, log
// points, `print`, `display` and the DAP views all go through it.
package eval

import (
	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
)

// Frame is the frame an expression is evaluated in.
type Frame struct {
	Tid   int
	Level int // 0 for the innermost frame
	// Regs are the frame's registers as the unwinder recovered them; only
	// the callee-saved ones are meaningful above level 0.
	Regs target.Regs
	// PC is where the frame executes; Lookup is the address used for
	// scopes and location lists (a return address can already belong to
	// the next line or function, so callers use PC-1).
	PC, Lookup uint64
	// CFA is the frame's canonical frame address (DW_OP_call_frame_cfa).
	CFA   uint64
	CFAOK bool
}

// Process is what evaluation needs of the debugged process. Writes go
// through the engine so decoded instructions there are forgotten.
type Process interface {
	ReadMemory(addr uint64, buf []byte) (int, error)
	WriteMemory(addr uint64, data []byte) (int, error)
	Regs(tid int) (target.Regs, error)
	SetRegs(tid int, r target.Regs) error
}

// Evaluator evaluates expressions over one process. Like the engine, it is
// used on the tracer thread only.
type Evaluator struct {
	Process
	Syms *symbols.Table
	Info *DebugInfo
}

// WithWrites is t with memory writes going to write instead (the engine's
// WriteMemory, which forgets decoded instructions where it writes).
func WithWrites(t target.Target, write func(addr uint64, data []byte) (int, error)) Process {
	return writeThrough{t, write}
}

type writeThrough struct {
	target.Target
	write func(addr uint64, data []byte) (int, error)
}

func (w writeThrough) WriteMemory(addr uint64, data []byte) (int, error) { return w.write(addr, data) }
