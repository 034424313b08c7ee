package unwind

import (
	"bytes"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/go-delve/delve/pkg/dwarf/op"
	"github.com/rseqdbg/rseqdbg/target"
)

// Signal return trampolines: rt_sigreturn is syscall 15. glibc and musl
// emit the first form; the second is the 32-bit-immediate spelling.
var sigreturnCode = [][]byte{
	{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}, // mov $15,%rax; syscall
	{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05},             // mov $15,%eax; syscall
}

func isSigreturn(pc uint64, read target.MemReader) bool {
	var code [9]byte
	n, _ := read(pc, code[:])
	for _, c := range sigreturnCode {
		if n >= len(c) && bytes.Equal(code[:len(c)], c) {
			return true
		}
	}
	return false
}

// Layout of the x86-64 rt_sigframe once the handler has returned into the
// trampoline (pretcode popped): struct ucontext at rsp, its uc_mcontext.gregs
// at offset 40, in the order of <sys/ucontext.h> REG_R8 ... REG_RIP.
const gregsOffset = 40

var gregsDwarf = [...]uint64{
	8, 9, 10, 11, 12, 13, 14, 15, // REG_R8..REG_R15
	5, 4, 6, 3, 1, 0, 2, // REG_RDI, RSI, RBP, RBX, RDX, RAX, RCX
	dwRSP, dwRIP, // REG_RSP, REG_RIP
}

// sigreturnRow is the rule set glibc writes by hand for __restore_rt
// (sysdeps/unix/sysv/linux/x86_64/libc_sigaction.c), for trampolines that
// come without it: every register is loaded from the saved mcontext, and the
// CFA is the interrupted stack pointer.
func sigreturnRow() row {
	slot := func(i int) []byte {
		return appendSLEB([]byte{byte(op.DW_OP_breg7)}, int64(gregsOffset+8*i))
	}
	r := row{
		cfa:    frame.DWRule{Rule: frame.RuleExpression, Expression: append(slot(15), byte(op.DW_OP_deref))},
		regs:   map[uint64]frame.DWRule{},
		ra:     dwRIP,
		signal: true,
		synth:  true,
	}
	for i, n := range gregsDwarf {
		r.regs[n] = frame.DWRule{Rule: frame.RuleExpression, Expression: slot(i)}
	}
	return r
}
