package eval

import (
	"encoding/binary"

	"github.com/rseqdbg/rseqdbg/target"
)

// RegNames are the registers the Registers scope shows, in gdb's order.
var RegNames = []string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
	"rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "orig_rax"}

// RegField returns a pointer to a register by name (with gdb's pc, sp and
// fp aliases).
func RegField(r *target.Regs, name string) *uint64 {
	switch name {
	case "rax":
		return &r.Rax
	case "rbx":
		return &r.Rbx
	case "rcx":
		return &r.Rcx
	case "rdx":
		return &r.Rdx
	case "rsi":
		return &r.Rsi
	case "rdi":
		return &r.Rdi
	case "rbp", "fp":
		return &r.Rbp
	case "rsp", "sp":
		return &r.Rsp
	case "r8":
		return &r.R8
	case "r9":
		return &r.R9
	case "r10":
		return &r.R10
	case "r11":
		return &r.R11
	case "r12":
		return &r.R12
	case "r13":
		return &r.R13
	case "r14":
		return &r.R14
	case "r15":
		return &r.R15
	case "rip", "pc":
		return &r.Rip
	case "eflags":
		return &r.Eflags
	case "cs":
		return &r.Cs
	case "ss":
		return &r.Ss
	case "ds":
		return &r.Ds
	case "es":
		return &r.Es
	case "fs":
		return &r.Fs
	case "gs":
		return &r.Gs
	case "fs_base":
		return &r.FsBase
	case "gs_base":
		return &r.GsBase
	case "orig_rax":
		return &r.OrigRax
	}
	return nil
}

// CalleeSaved are the registers an outer frame's CFI (or the ABI) restores;
// the unwinder leaves the others as the inner frame had them, which would
// be wrong values for an outer frame.
var CalleeSaved = map[string]bool{"rbx": true, "rbp": true, "rsp": true, "r12": true, "r13": true, "r14": true, "r15": true, "rip": true,
	"fs_base": true, "gs_base": true, "cs": true, "ss": true, "ds": true, "es": true, "fs": true, "gs": true}

// regBytes is the value of DWARF register n as size bytes.
func regBytes(regs target.Regs, n, size int) []byte {
	b := make([]byte, 8)
	if n >= 0 && n < len(DwarfRegs) {
		binary.LittleEndian.PutUint64(b, *RegField(&regs, DwarfRegs[n]))
	}
	return b[:min(max(size, 0), 8)]
}
