package dap

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/source"
	"github.com/rseqdbg/rseqdbg/x86"
)

// maxMemoryRequest bounds readMemory and disassemble so a client's typo
// cannot make the adapter allocate gigabytes.
const (
	maxMemoryRequest = 16 << 20
	maxInstructions  = 10000
)

func (ss *session) readMemory(addr uint64, count int) dap.ReadMemoryResponseBody {
	buf := make([]byte, count)
	n, _ := ss.proc.ReadMemory(addr, buf)
	body := dap.ReadMemoryResponseBody{Address: hexAddr(addr), UnreadableBytes: count - n}
	if n > 0 {
		body.Data = base64.StdEncoding.EncodeToString(buf[:n])
	}
	return body
}

// insn is one line of disassembly.
type insn struct {
	addr  uint64
	size  int
	bytes []byte
	text  string
	bad   bool
}

// decodeFrom decodes forward from addr until limit instructions or stop
// (exclusive) is reached. An instruction that would run over stop is cut
// there, so a listing that started off an instruction boundary falls back
// into step at addr.
func (ss *session) decodeFrom(addr, stop uint64, limit int) []insn {
	var out []insn
	const chunk = 4096
	buf := make([]byte, chunk+16)
	base := addr
	n, _ := ss.proc.ReadMemory(base, buf)
	for pc := addr; len(out) < limit && (stop == 0 || pc < stop); {
		if pc-base+16 > uint64(n) && n == len(buf) {
			base = pc
			n, _ = ss.proc.ReadMemory(base, buf)
		}
		off := pc - base
		if off >= uint64(n) {
			out = append(out, insn{addr: pc, size: 1, text: "(unreadable)", bad: true})
			pc++
			continue
		}
		in, err := x86.Decode(buf[off:n], pc)
		size := in.Len
		bad := err != nil || size == 0
		if bad {
			size = 1
		}
		if stop != 0 && pc+uint64(size) > stop {
			size, bad = int(stop-pc), true
		}
		// A function starting inside this instruction means we are off
		// the instruction stream: cut here and resynchronize there.
		if f, ok := ss.core.Syms.Func(pc + uint64(size) - 1); ok && f.Lo > pc && f.Lo < pc+uint64(size) {
			size, bad = int(f.Lo-pc), true
		}
		it := insn{addr: pc, size: size, bytes: append([]byte(nil), buf[off:off+uint64(size)]...), bad: bad}
		if bad {
			it.text = "(bad)"
		} else {
			it.text = source.GNUSyntax(in, ss.core.Syms)
		}
		out = append(out, it)
		pc += uint64(size)
	}
	return out
}

// disassemble serves the disassemble request: count instructions starting
// instrOffset instructions from addr (negative offsets go backwards, which
// x86 cannot decode directly, so decoding restarts at a function start
// before the address).
func (ss *session) disassemble(addr uint64, instrOffset, count int) []dap.DisassembledInstruction {
	var before []insn
	if instrOffset < 0 {
		back := uint64(-instrOffset)*15 + 64
		start := addr - min(back, addr)
		if f, ok := ss.core.Syms.Func(start); ok && addr-f.Lo < 1<<16 {
			start = f.Lo
		}
		// Every instruction is at least a byte: this reaches addr.
		before = ss.decodeFrom(start, addr, int(addr-start)+1)
	}
	after := ss.decodeFrom(addr, 0, max(0, instrOffset+count))
	all := append(before, after...)
	first := len(before) + instrOffset
	out := make([]dap.DisassembledInstruction, 0, count)
	for i := first; i < first+count; i++ {
		if i < 0 || i >= len(all) {
			// Padding keeps the client's indexing right where nothing
			// could be decoded.
			a := addr + uint64(i-len(before))
			if i < 0 && len(all) > 0 {
				a = all[0].addr - uint64(-i)
			}
			out = append(out, dap.DisassembledInstruction{Address: hexAddr(a), Instruction: "??"})
			continue
		}
		out = append(out, ss.instruction(all[i]))
	}
	return out
}

func (ss *session) instruction(it insn) dap.DisassembledInstruction {
	d := dap.DisassembledInstruction{Address: hexAddr(it.addr), InstructionBytes: spaced(it.bytes), Instruction: it.text}
	if f, ok := ss.core.Syms.Func(it.addr); ok {
		d.Symbol = f.Name
	}
	if l, ok := ss.core.Syms.LineAt(it.addr); ok {
		d.Location = sourceOf(l.File)
		d.Line = l.Line
	}
	if m := ss.regionMarks(it.addr); m != "" {
		d.Instruction += "\t# " + m
	}
	return d
}

func spaced(b []byte) string {
	h := hex.EncodeToString(b)
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// regionMarks says what an address is to the restartable regions: the
// start, body, commit, abort handler or an exit of a critical section, or
// a vDSO function run atomically.
func (ss *session) regionMarks(a uint64) string {
	var marks []string
	for _, r := range ss.eng.Index().All() {
		switch {
		case r.Kind == regions.KindCriticalSection && a == r.Start:
			marks = append(marks, fmt.Sprintf("rseq critical section %s start (commit %#x, abort %#x)", r.Name, r.End, r.Abort))
		case r.Kind == regions.KindCriticalSection && r.Contains(a):
			if ss.eng.Inspect() {
				marks = append(marks, fmt.Sprintf("inside rseq %s at +%d: stepped inside (inspect mode)", r.Name, a-r.Start))
			} else {
				marks = append(marks, "inside rseq "+r.Name+": stepped over atomically")
			}
		case r.Kind == regions.KindVDSO && a == r.Start:
			marks = append(marks, "vDSO function "+r.Name+": stepped over atomically")
		case r.Kind == regions.KindDeclared && a == r.Start:
			marks = append(marks, "declared region "+r.Name+" start")
		}
		if r.Kind != regions.KindCriticalSection {
			continue
		}
		switch {
		case a == r.End:
			marks = append(marks, "rseq "+r.Name+" commit")
		case a == r.Abort:
			marks = append(marks, "rseq "+r.Name+" abort handler")
		default:
			if k, ok := r.ExitKindAt(a); ok && k != regions.ExitCommit && k != regions.ExitAbort {
				marks = append(marks, fmt.Sprintf("rseq %s exit (%s)", r.Name, k))
			}
		}
	}
	return strings.Join(marks, "; ")
}

// RseqRegion is one restartable region as rseqRegions reports it.
type RseqRegion struct {
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Object     string   `json:"object"`
	Start      string   `json:"start"`
	Commit     string   `json:"commit,omitempty"`
	End        string   `json:"end"`
	Abort      string   `json:"abort,omitempty"`
	Descriptor string   `json:"descriptor,omitempty"`
	Table      string   `json:"table,omitempty"`
	Exits      []string `json:"exits,omitempty"`
	// Source is file:line of the start when line information has it.
	Source   string   `json:"source,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

func (ss *session) regionList() []RseqRegion {
	out := []RseqRegion{}
	for _, r := range ss.eng.Index().All() {
		rr := RseqRegion{Kind: r.Kind.String(), Name: r.Name, Object: r.Object, Start: hexAddr(r.Start), End: hexAddr(r.End), Table: r.Source, Warnings: r.Warnings}
		if r.Kind == regions.KindCriticalSection {
			rr.Commit = hexAddr(r.End)
			rr.Abort = hexAddr(r.Abort)
			if r.Descriptor != 0 {
				rr.Descriptor = hexAddr(r.Descriptor)
			}
		}
		for _, x := range r.Exits {
			rr.Exits = append(rr.Exits, fmt.Sprintf("%#x:%s", x.Addr, x.Kind))
		}
		if l, ok := ss.core.Syms.LineAt(r.Start); ok {
			rr.Source = fmt.Sprintf("%s:%d", l.File, l.Line)
		}
		out = append(out, rr)
	}
	return out
}
