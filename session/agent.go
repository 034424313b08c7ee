package session

import (
	"fmt"

	"github.com/rseqdbg/rseqdbg/agentexpr"
	"github.com/rseqdbg/rseqdbg/target"
)

// agentCondition decides gdb's bytecode conditions of b for tid: true
// when any of them is non-zero.
func (s *Session) agentCondition(b *Breakpoint, tid int) (bool, error) {
	regs, err := s.T.Regs(tid)
	if err != nil {
		return false, err
	}
	m := agentMachine{regs: &regs, t: s.T}
	for _, code := range b.Agent {
		s.AgentEvaluations++
		v, err := agentexpr.Eval(code, m)
		if err != nil {
			return false, err
		}
		if v != 0 {
			return true, nil
		}
	}
	return false, nil
}

// agentMachine gives an expression a thread's registers by gdb's amd64
// numbers and the process's memory.
type agentMachine struct {
	regs *target.Regs
	t    target.Target
}

func (m agentMachine) Register(n int) (uint64, error) {
	r := m.regs
	all := [...]uint64{r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rbp, r.Rsp,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
		r.Rip, r.Eflags, r.Cs, r.Ss, r.Ds, r.Es, r.Fs, r.Gs}
	if n < 0 || n >= len(all) {
		return 0, fmt.Errorf("agent expression: register %d is not a general register", n)
	}
	return all[n], nil
}

func (m agentMachine) ReadMemory(addr uint64, buf []byte) (int, error) {
	return m.t.ReadMemory(addr, buf)
}
