package dap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/rseqdbg/rseqdbg/eval"
	"path/filepath"
	"strings"

	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/unwind"
)

// frame is one frame of a stopped thread, valid until the next resume.
type frame struct {
	id int
	uf unwind.Frame
	eval.Frame
}

// maxFrames bounds a stack walk; deeper stacks are cut, not errors.
const maxFrames = 256

// threadFrames unwinds tid once per stop.
func (ss *session) threadFrames(tid int) ([]*frame, error) {
	if fs, ok := ss.frames[tid]; ok {
		return fs, nil
	}
	if pk := ss.parkedOwner(tid); pk != nil {
		// Its memory is another process's: unwinding it through the
		// current one would show the child's stack.
		return nil, fmt.Errorf("thread %d belongs to process %d, which waits for its fork child %d", tid, pk.proc.Pid(), ss.proc.Pid())
	}
	regs, err := ss.proc.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	ufs, err := ss.core.Unwind.Frames(regs, ss.proc.ReadMemory, maxFrames)
	if err != nil && len(ufs) == 0 {
		return nil, fmt.Errorf("unwinding thread %d: %w", tid, err)
	}
	out := make([]*frame, len(ufs))
	for i, uf := range ufs {
		f := &frame{id: len(ss.frameIDs) + 1, uf: uf, Frame: eval.Frame{Tid: tid, Level: i, Regs: uf.Regs, PC: uf.PC, Lookup: uf.LookupPC()}}
		// The unwinder gives each frame its own CFA (what DW_OP_call_frame_cfa
		// means for its variables); 0 when its rules are not known.
		f.CFA, f.CFAOK = uf.CFA, uf.CFA != 0
		ss.frameIDs = append(ss.frameIDs, f)
		out[i] = f
	}
	ss.frames[tid] = out
	return out, nil
}

func (ss *session) topFrame(tid int) (*frame, error) {
	fs, err := ss.threadFrames(tid)
	if err != nil {
		return nil, err
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("thread %d has no frames", tid)
	}
	return fs[0], nil
}

// frameByID resolves a client frame id; 0 means the current thread's top
// frame (the REPL without a selected frame).
func (ss *session) frameByID(id int) (*frame, error) {
	if id == 0 {
		return ss.topFrame(ss.cur)
	}
	if id < 1 || id > len(ss.frameIDs) || ss.frameIDs[id-1] == nil {
		return nil, fmt.Errorf("unknown frame %d (frames are valid until the program resumes)", id)
	}
	return ss.frameIDs[id-1], nil
}

func (ss *session) stackFrame(f *frame) dap.StackFrame {
	sf := dap.StackFrame{Id: f.id, InstructionPointerReference: hexAddr(f.PC)}
	name := fmt.Sprintf("%#x", f.PC)
	if fn, ok := ss.core.Syms.Func(f.Lookup); ok {
		name = fn.Name
	} else if stub, _, ok := ss.core.StubName(f.PC); ok {
		name = stub
	} else if path, lo, ok := ss.dbg.ObjectOf(f.PC); ok {
		// Stripped code (libc's local functions): at least say where.
		name = fmt.Sprintf("%s+%#x", filepath.Base(path), f.PC-lo)
	}
	if l, ok := ss.core.Syms.LineAt(f.Lookup); ok {
		sf.Source = sourceOf(l.File)
		sf.Line = l.Line
		sf.Column = 1
	}
	if r := ss.eng.RegionAt(f.PC); r != nil && r.Kind == regions.KindCriticalSection && f.Level == 0 {
		name += " [inside rseq critical section " + r.Name + "]"
	}
	if f.uf.Synthesized {
		// Found without CFI (abort stubs, vDSO code): plausible, not proven.
		name += " [no CFI]"
		sf.PresentationHint = "subtle"
	}
	if f.uf.Signal {
		name += " [interrupted by a signal]"
	}
	sf.Name = name
	return sf
}

func (ss *session) threadName(tid int) string {
	ss.mu.Lock()
	pid, forked := ss.proc.Pid(), len(ss.parked) > 0
	var pids []int
	for _, pk := range ss.parked {
		pids = append(pids, pk.proc.Pid())
	}
	ss.mu.Unlock()
	if forked {
		// Several processes: each thread says whose it is.
		for _, p := range append(pids, pid) {
			if tid == p {
				return fmt.Sprintf("Thread %d (main, process %d)", tid, p)
			}
		}
		if owner := threadOwner(tid, pids); owner != 0 {
			return fmt.Sprintf("Thread %d (process %d, waiting)", tid, owner)
		}
		return fmt.Sprintf("Thread %d (process %d)", tid, pid)
	}
	if tid == pid {
		return fmt.Sprintf("Thread %d (main)", tid)
	}
	return fmt.Sprintf("Thread %d", tid)
}

// threadOwner finds which of pids has thread tid (the kernel's list, no
// ptrace: the names are asked while the program runs too); 0 if none.
func threadOwner(tid int, pids []int) int {
	for _, p := range pids {
		if ts, err := liveThreads(p); err == nil {
			for _, t := range ts {
				if t == tid {
					return p
				}
			}
		}
	}
	return 0
}

// varRef is what a variablesReference stands for.
type varRef struct {
	kind  refKind
	frame *frame
	val   *eval.Value // refValue
}

type refKind uint8

const (
	refLocals refKind = iota + 1
	refArgs
	refRegisters
	refEflags
	refRseq
	refValue
)

func (ss *session) ref(r *varRef) int {
	ss.refs = append(ss.refs, r)
	return len(ss.refs)
}

func (ss *session) refByID(id int) (*varRef, error) {
	if id < 1 || id > len(ss.refs) {
		return nil, fmt.Errorf("unknown variables reference %d (they are valid until the program resumes)", id)
	}
	return ss.refs[id-1], nil
}

func (ss *session) scopes(f *frame) []dap.Scope {
	out := []dap.Scope{
		{Name: "Arguments", PresentationHint: "arguments", VariablesReference: ss.ref(&varRef{kind: refArgs, frame: f})},
		{Name: "Locals", PresentationHint: "locals", VariablesReference: ss.ref(&varRef{kind: refLocals, frame: f})},
		{Name: "Registers", PresentationHint: "registers", VariablesReference: ss.ref(&varRef{kind: refRegisters, frame: f})},
	}
	if f.Level == 0 && ss.eng.RseqArea(f.Tid).Known {
		out = append(out, dap.Scope{Name: "rseq", VariablesReference: ss.ref(&varRef{kind: refRseq, frame: f})})
	}
	return out
}

var eflagsBits = []struct {
	bit  uint
	name string
}{{0, "CF"}, {2, "PF"}, {4, "AF"}, {6, "ZF"}, {7, "SF"}, {8, "TF"}, {9, "IF"}, {10, "DF"}, {11, "OF"}, {16, "RF"}, {21, "ID"}}

func eflagsText(v uint64) string {
	var set []string
	for _, b := range eflagsBits {
		if v&(1<<b.bit) != 0 {
			set = append(set, b.name)
		}
	}
	return fmt.Sprintf("%#x [ %s ]", v, strings.Join(set, " "))
}

func (ss *session) registerVars(f *frame, hex bool) []dap.Variable {
	regs := f.uf.Regs
	out := make([]dap.Variable, 0, len(eval.RegNames))
	for _, n := range eval.RegNames {
		v := *eval.RegField(&regs, n)
		dv := dap.Variable{Name: n, EvaluateName: "$" + n, Type: "uint64"}
		switch {
		case f.Level > 0 && !eval.CalleeSaved[n]:
			dv.Value = "<not saved>"
		case n == "eflags":
			dv.Value = eflagsText(v)
			dv.VariablesReference = ss.ref(&varRef{kind: refEflags, frame: f})
		case n == "rip":
			dv.Value = fmt.Sprintf("%#x <%s>", v, ss.core.Syms.Describe(v))
			dv.MemoryReference = hexAddr(v)
		case n == "rsp" || n == "rbp" || n == "fs_base" || n == "gs_base":
			dv.Value = fmt.Sprintf("%#x", v)
			dv.MemoryReference = hexAddr(v)
		case hex:
			dv.Value = fmt.Sprintf("%#x", v)
		default:
			dv.Value = fmt.Sprintf("%#x (%d)", v, int64(v))
		}
		out = append(out, dv)
	}
	return out
}

func eflagsVars(v uint64) []dap.Variable {
	out := make([]dap.Variable, 0, len(eflagsBits))
	for _, b := range eflagsBits {
		out = append(out, dap.Variable{Name: b.name, Value: fmt.Sprint((v >> b.bit) & 1), Type: "bit"})
	}
	return out
}

// rseqVars shows the thread's struct rseq and what its rseq_cs points to.
func (ss *session) rseqVars(f *frame) []dap.Variable {
	area := ss.eng.RseqArea(f.Tid)
	if !area.Known {
		return nil
	}
	var b [32]byte
	n, _ := ss.proc.ReadMemory(area.Addr, b[:])
	out := []dap.Variable{
		{Name: "area", Value: hexAddr(area.Addr), Type: "struct rseq *", MemoryReference: hexAddr(area.Addr)},
		{Name: "signature", Value: fmt.Sprintf("%#x", area.Signature), Type: "u32"},
	}
	if n < 32 {
		return append(out, dap.Variable{Name: "error", Value: fmt.Sprintf("cannot read the area at %#x", area.Addr)})
	}
	le := binary.LittleEndian
	cs := le.Uint64(b[8:])
	csText := hexAddr(cs)
	if cs != 0 {
		var d [32]byte
		if m, _ := ss.proc.ReadMemory(cs, d[:]); m == 32 {
			if desc, err := regions.ParseDescriptor(d[:]); err == nil {
				csText = fmt.Sprintf("%#x → start %#x, commit %#x, abort %#x", cs, desc.StartIP, desc.StartIP+desc.PostCommitOffset, desc.AbortIP)
				if f.PC >= desc.StartIP && f.PC < desc.StartIP+desc.PostCommitOffset {
					csText += " (the thread is inside: the kernel aborts it on resume)"
				} else {
					csText += " (stale: the thread is outside)"
				}
			}
		}
	}
	out = append(out,
		dap.Variable{Name: "cpu_id_start", Value: fmt.Sprint(le.Uint32(b[0:])), Type: "u32"},
		dap.Variable{Name: "cpu_id", Value: fmt.Sprint(int32(le.Uint32(b[4:]))), Type: "u32"},
		dap.Variable{Name: "rseq_cs", Value: csText, Type: "u64", MemoryReference: hexAddr(cs)},
		dap.Variable{Name: "flags", Value: fmt.Sprintf("%#x", le.Uint32(b[16:])), Type: "u32"},
	)
	if area.Size >= 28 {
		out = append(out,
			dap.Variable{Name: "node_id", Value: fmt.Sprint(le.Uint32(b[20:])), Type: "u32"},
			dap.Variable{Name: "mm_cid", Value: fmt.Sprint(le.Uint32(b[24:])), Type: "u32"})
	}
	return out
}

// setRegister is setVariable in the Registers scope: the innermost frame
// only, since outer frames' registers are reconstructions.
func (ss *session) setRegister(f *frame, name string, src *eval.Expr, body *dap.SetVariableResponseBody) error {
	if f.Level != 0 {
		return errors.New("registers can be set in the innermost frame only")
	}
	v, err := ss.ev.Eval(src, &f.Frame)
	if err != nil {
		return err
	}
	u, _, err := ss.ev.Scalar(v)
	if err != nil {
		return err
	}
	regs, err := ss.proc.Regs(f.Tid)
	if err != nil {
		return err
	}
	p := eval.RegField(&regs, name)
	if p == nil {
		return fmt.Errorf("no register %q", name)
	}
	*p = u
	if err := ss.proc.SetRegs(f.Tid, regs); err != nil {
		return fmt.Errorf("setting %s: %w", name, err)
	}
	ss.refreshRegs(f.Tid)
	regs, _ = ss.proc.Regs(f.Tid)
	body.Value = fmt.Sprintf("%#x", *eval.RegField(&regs, name))
	if name == "eflags" {
		body.Value = eflagsText(regs.Eflags)
	}
	body.Type = "uint64"
	return nil
}

// refreshRegs makes the innermost frame of f's thread show registers just
// written; outer frames are re-unwound at the next stop.
func (ss *session) refreshRegs(tid int) {
	regs, err := ss.proc.Regs(tid)
	if err != nil {
		return
	}
	if fs, ok := ss.frames[tid]; ok && len(fs) > 0 {
		fs[0].uf.Regs = regs
		fs[0].Regs = regs
		fs[0].PC = regs.Rip
		fs[0].Lookup = regs.Rip
	}
}
