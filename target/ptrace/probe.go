package ptrace

import (
	"log/slog"

	"github.com/rseqdbg/rseqdbg/target"
)

// ProbeDebugRegisters tells whether debug registers trigger on this
// machine. Some hypervisors accept DR writes and never raise #DB; a
// watchpoint there would silently never fire. The probe launches exe,
// stopped at its first instruction, puts an execute breakpoint on that
// instruction and single-steps: the breakpoint must fire before the
// instruction runs. No code of the copy runs; it is killed. If the probe
// cannot run, it reports true: do not refuse what may work.
func ProbeDebugRegisters(exe string) bool {
	works := true
	p, err := Launch(LaunchOptions{Path: exe, Args: []string{}})
	if err != nil {
		slog.Debug("debug register probe", "err", err)
		return works
	}
	p.Do(func() {
		defer p.Kill()
		pid := p.Pid()
		r, err := p.Regs(pid)
		if err != nil || p.SetDebugReg(0, r.Rip) != nil || p.SetDebugReg(7, 1) != nil {
			return
		}
		if err := p.Resume(map[int]target.Action{pid: {Kind: target.Step}}, target.Action{Kind: target.Stay}); err != nil {
			return
		}
		ev, err := p.Wait()
		works = err == nil && ev.Kind == target.EventStop && ev.Trap == target.TrapWatch
	})
	p.Close()
	return works
}
