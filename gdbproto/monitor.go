package gdbproto

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/regions"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
)

const monitorHelp = `rseqdbg monitor commands:
  monitor rseq regions      every restartable region: object, start, commit, abort, exits, source
  monitor rseq status       per thread: inside a region?, its rseq_cs, its registered signature
  monitor rseq stats        stepping counters (single-steps, region runs, commits, aborts, ...)
  monitor rseq bt           the current thread's backtrace as rseqdbg unwinds it (synthesized CFI marked)
  monitor rseq cfi          where the debug object with the synthesized CFI is (for add-symbol-file)
  monitor rseq vdso on|off  step vDSO functions as regions (on by default)
  monitor rseq inspect on|off  step inside critical sections without the kernel aborting them
  monitor rseq abort        abort the current thread's critical section as the kernel would
  monitor rseq pin on|off   pin a stepped thread to its CPU until it is continued (off by default):
                            no migration between its CPU read and its section
  monitor rseq declare START END [NAME]
                            step [START, END) as one region, as a vDSO function (a seqlock
                            reader of your own, JIT code): addresses or SYMBOL+OFFSET
  monitor rseq undeclare [NAME|START]
                            remove declared regions (all without an argument)
  monitor rseq help         this text
`

// monitor answers qRcmd: the command's output as O packets, then OK.
func (s *session) monitor(hexCmd string) [][]byte {
	raw, err := wire.DecodeHex(hexCmd)
	if err != nil {
		return replyErr
	}
	fields := strings.Fields(string(raw))
	if len(fields) > 0 && fields[0] == "rseq" {
		fields = fields[1:]
	} else if len(fields) > 0 && fields[0] != "help" {
		return append(consoleOutput(fmt.Sprintf("unknown monitor command %q\n%s", raw, monitorHelp)), replyOK...)
	}
	var text string
	switch {
	case len(fields) == 0 || fields[0] == "help":
		text = monitorHelp
	case fields[0] == "regions":
		text = s.monitorRegions()
	case fields[0] == "status":
		text = s.monitorStatus()
	case fields[0] == "stats":
		text = s.monitorStats()
	case fields[0] == "bt":
		text = s.monitorBT()
	case fields[0] == "cfi":
		text = s.monitorCFI()
	case fields[0] == "vdso" && len(fields) == 2 && (fields[1] == "on" || fields[1] == "off"):
		pr := s.live()
		if pr == nil {
			text = "no process\n"
			break
		}
		pr.eng.SetVDSO(fields[1] == "on")
		text = fmt.Sprintf("vDSO functions stepped as regions: %s\n", fields[1])
	case fields[0] == "inspect" && len(fields) == 1:
		if pr := s.live(); pr != nil {
			text = fmt.Sprintf("inspect mode: %s\n", onOff(pr.rc.Inspect()))
		} else {
			text = "no process\n"
		}
	case fields[0] == "inspect" && len(fields) == 2 && (fields[1] == "on" || fields[1] == "off"):
		text = s.monitorInspect(fields[1] == "on")
	case fields[0] == "abort" && len(fields) == 1:
		text = s.monitorAbort()
	case fields[0] == "pin" && len(fields) == 2 && (fields[1] == "on" || fields[1] == "off"):
		pr := s.live()
		if pr == nil {
			text = "no process\n"
			break
		}
		if err := pr.eng.SetPinSteps(fields[1] == "on"); err != nil {
			text = fmt.Sprintf("rseqdbg: %v\n", err)
			break
		}
		text = fmt.Sprintf("stepped threads pinned to their CPU: %s\n", fields[1])
	case fields[0] == "declare" && (len(fields) == 3 || len(fields) == 4):
		text = s.monitorDeclare(fields[1:])
	case fields[0] == "undeclare" && len(fields) <= 2:
		text = s.monitorUndeclare(strings.Join(fields[1:], ""))
	default:
		text = fmt.Sprintf("unknown rseq command %q\n%s", strings.Join(fields, " "), monitorHelp)
	}
	return append(consoleOutput(text), replyOK...)
}

func (s *session) monitorDeclare(args []string) string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	d := sess.Declaration{Start: args[0], End: args[1]}
	if len(args) == 3 {
		d.Name = args[2]
	}
	r, err := pr.rc.Declare(d)
	if err != nil {
		return fmt.Sprintf("rseqdbg: %v\n", err)
	}
	return fmt.Sprintf("declared region %s [%#x, %#x): stepping into it runs it whole\n", r.Name, r.Start, r.End)
}

func (s *session) monitorUndeclare(what string) string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	n, err := pr.rc.Undeclare(what)
	if err != nil {
		return fmt.Sprintf("rseqdbg: %v\n", err)
	}
	return fmt.Sprintf("%d declared region(s) removed\n", n)
}

func (s *session) monitorRegions() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	var b strings.Builder
	if len(s.srv.others) > 0 {
		// Fork children kept: say which process these are.
		fmt.Fprintf(&b, "regions of process %d\n", pr.p.Pid())
	}
	fmt.Fprintf(&b, "%-8s %-24s %-14s %-18s %-18s %-18s %-20s %s\n",
		"kind", "name", "object", "start", "commit", "abort", "source", "exits")
	for _, r := range pr.eng.Index().All() {
		var exits []string
		for _, x := range r.Exits {
			exits = append(exits, fmt.Sprintf("%#x:%s", x.Addr, x.Kind))
		}
		commit, abort := fmt.Sprintf("%#x", r.End), fmt.Sprintf("%#x", r.Abort)
		if r.Kind != regions.KindCriticalSection {
			commit, abort = fmt.Sprintf("end %#x", r.End), "-"
		}
		line := fmt.Sprintf("%-8s %-24s %-14s %#-18x %-18s %-18s %-20s %s",
			r.Kind, r.Name, filepath.Base(r.Object), r.Start, commit, abort, r.Source, strings.Join(exits, ","))
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	for _, w := range pr.eng.Warnings() {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func (s *session) monitorStatus() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	var b strings.Builder
	for _, t := range pr.p.Threads() {
		r, err := pr.p.Regs(t)
		if err != nil {
			fmt.Fprintf(&b, "thread %d: %v\n", t, err)
			continue
		}
		fmt.Fprintf(&b, "thread %d: pc %#x", t, r.Rip)
		if reg := regionAt(pr.eng, r.Rip); reg != nil && pr.eng.InspectionAt(t, r.Rip) != nil {
			fmt.Fprintf(&b, " inside critical section %s [%#x, %#x) abort %#x: inspected, resuming does not abort it",
				reg.Name, reg.Start, reg.End, reg.Abort)
		} else if reg != nil {
			fmt.Fprintf(&b, " inside critical section %s [%#x, %#x) abort %#x: the kernel aborts it on resume",
				reg.Name, reg.Start, reg.End, reg.Abort)
		} else if reg := pr.eng.RegionAt(r.Rip); reg != nil {
			fmt.Fprintf(&b, " inside %s region %s", reg.Kind, reg.Name)
		} else {
			b.WriteString(" outside any region")
		}
		area := pr.eng.RseqArea(t)
		if !area.Known {
			b.WriteString("; no rseq area registered" + pr.rseqNote(t) + "\n")
			continue
		}
		fmt.Fprintf(&b, "; rseq area %#x size %d signature %#x", area.Addr, area.Size, area.Signature)
		if cs, err := pr.eng.RseqCS(t); err == nil {
			fmt.Fprintf(&b, " rseq_cs %#x", cs)
			var d [32]byte
			if n, _ := pr.p.ReadMemory(cs, d[:]); cs != 0 && n == len(d) {
				if desc, err := regions.ParseDescriptor(d[:]); err == nil &&
					(r.Rip < desc.StartIP || r.Rip-desc.StartIP >= desc.PostCommitOffset) {
					b.WriteString(" (stale: the pc is outside it; the kernel clears it lazily)")
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (s *session) monitorStats() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	st := pr.eng.Stats()
	return fmt.Sprintf("single-steps %d\nregion runs %d\ncommits %d\naborts %d\nother exits %d\n"+
		"interrupted %d\nsignals during runs %d\ndiscovered at run time %d\nsteps inside a section %d\n"+
		"inspected steps %d\nforced aborts %d\n",
		st.SingleSteps, st.RegionRuns, st.Commits, st.Aborts, st.ExitPoints, st.Interrupted,
		st.SignalsInRuns, st.Discovered, st.StepsInside, st.InspectedSteps, st.ForcedAborts) +
		fmt.Sprintf("breakpoint conditions decided here %d\n", pr.rc.AgentEvaluations) +
		fmt.Sprintf("threads caught inside a section %d\n", st.CaughtInside) +
		fmt.Sprintf("signals paced %d\n", st.PacedSignals) +
		fmt.Sprintf("continues from a breakpoint by a displaced copy %d\n", st.Displaced) +
		fmt.Sprintf("breakpoints of another thread passed %d\npauses of running threads %d\n", st.PassedNotOwned, st.Pauses)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// monitorInspect switches inspect mode (refused behind a stub: proxy mode).
func (s *session) monitorInspect(on bool) string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	if err := pr.rc.SetInspect(on); err != nil {
		return fmt.Sprintf("rseqdbg: %v\n", err)
	}
	return fmt.Sprintf("inspect mode: %s\n", onOff(on))
}

// monitorAbort aborts the current thread's critical section. The client
// cached the thread's registers at the stop: the reply tells it to read
// them again (see flushRegs).
func (s *session) monitorAbort() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	tid := s.current()
	st, err := pr.rc.ForceAbort(tid)
	if err != nil {
		if errors.Is(err, stepper.ErrAbortRefused) {
			return fmt.Sprintf("rseqdbg: abort refused: %v\n", err)
		}
		return fmt.Sprintf("rseqdbg: cannot abort: %v\n", err)
	}
	s.forced = st.Stop
	return fmt.Sprintf("rseqdbg: thread %d: %s, pc %#x\n"+
		"rseqdbg: the client still shows the registers of before: the next stepi of thread %d shows the abort handler without executing (gdb: flushregs shows them now)\n",
		tid, st.Note, st.PC, tid)
}
