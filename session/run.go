package session

import (
	"fmt"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/x86"
)

// StepKind is a source-level step.
type StepKind uint8

const (
	// StepOver is next (nexti at instruction granularity).
	StepOver StepKind = iota + 1
	// StepInto is step (stepi at instruction granularity).
	StepInto
	// StepOut is finish.
	StepOut
)

// Continue resumes every thread until a stop the user must see: library
// loads (which resolve pending breakpoints), breakpoints whose condition is
// false or whose counts say not yet, log points and interrupts the front
// end declines run on silently.
func (s *Session) Continue(tid int) (*Stop, error) {
	if s.Eng.NonStop() {
		// tid alone; nil: it runs, and Poll reports its stop.
		return s.ContinueThread(tid, 0)
	}
	// The engine's continue moves reported threads off their breakpoints.
	clear(s.atBreakpoint)
	var crossed []stepper.Crossing
	for {
		s.Eng.SetReportLibraries(s.hasPending())
		st, err := s.Eng.Continue(tid, s.takeSignals())
		s.Eng.SetReportLibraries(false)
		if err != nil {
			return nil, err
		}
		if st.Tid != 0 {
			tid = st.Tid
		}
		crossed = append(crossed, st.Crossed...)
		switch st.Kind {
		case stepper.StopLibrary:
			s.Sync()
			continue
		case stepper.StopExec:
			// As gdb with exec events: say so and go on in the new image,
			// where the breakpoints and declared regions are resolved
			// again.
			s.stopped(st, nil)
			s.Sync()
			if s.Events.Exec != nil {
				s.Events.Exec(s.T.ExecPath())
			}
			continue
		case stepper.StopFork:
			out := s.stopped(st, nil)
			if out.Fork == nil {
				// The parent goes on (the child was let go, or is kept
				// stopped for the front end).
				continue
			}
			out.Crossed = crossed
			return out, nil
		case stepper.StopInterrupt:
			if s.Events.Interrupted != nil && !s.Events.Interrupted() {
				continue
			}
		case stepper.StopBreakpoint:
			stop, hits := s.decide(st)
			if !stop {
				continue
			}
			st.Crossed = crossed
			return s.stopped(st, hits), nil
		}
		st.Crossed = crossed
		return s.stopped(st, nil), nil
	}
}

// Run is the resume loop of a front end that decides its own steps (gdb):
// op is one engine resumption; a thread exiting on its own is no stop, the
// others run on (in non-stop mode it is: op drove that thread alone); a
// breakpoint stop goes through the store like any other.
func (s *Session) Run(op func() (*stepper.Stop, error)) (*Stop, error) {
	st, err := op()
	for err == nil && st != nil && !s.Eng.Exited() {
		switch st.Kind {
		case stepper.StopThreadExited:
			if s.Eng.NonStop() {
				// The driven thread's exit ends its resumption: its
				// client waits for it alone, the others run anyway.
				s.Forget(st.Tid)
				return &Stop{Stop: st}, nil
			}
			threads := s.T.Threads()
			if len(threads) == 0 {
				return s.stopped(st, nil), nil
			}
			st, err = s.Eng.Continue(threads[0], nil)
			continue
		case stepper.StopBreakpoint:
			if stop, hits := s.decide(st); stop {
				return s.stopped(st, hits), nil
			}
			st, err = s.Eng.Continue(st.Tid, nil)
			continue
		}
		break
	}
	if err != nil || st == nil {
		return nil, err
	}
	return s.stopped(st, nil), nil
}

// StepInstruction is a client's instruction step (gdb's vCont;s), with
// the thread's signal; the others do as others says.
func (s *Session) StepInstruction(tid, sig int, others stepper.Others) (*Stop, error) {
	return s.Run(func() (*stepper.Stop, error) { return s.Eng.StepInstruction(tid, sig, others) })
}

// Resume is a client's continue (gdb's vCont;c), with the signal each
// thread is to receive: tid is moved first (off a breakpoint, out of a
// section).
func (s *Session) Resume(tid int, sigs map[int]int) (*Stop, error) {
	return s.Run(func() (*stepper.Stop, error) { return s.Eng.Continue(tid, sigs) })
}

// RunToExit deletes every breakpoint and lets the program run to its end
// (rseqdbg run --continue); stops on the way are passed over, their
// signals delivered. It returns the exit.
func (s *Session) RunToExit(tid int) (*Stop, error) {
	s.DeleteAll()
	for {
		st, err := s.Continue(tid)
		if err != nil {
			return nil, err
		}
		if st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled || s.Eng.Exited() {
			return st, nil
		}
		tid = st.Tid
	}
}

// stopped is the bookkeeping of every stop the user sees: tables follow
// loaded objects, a thread on a breakpoint is noted so the next step moves
// it off, its signal is kept for its resumption, and a temporary
// breakpoint that stopped goes away.
func (s *Session) stopped(st *stepper.Stop, hits []*Breakpoint) *Stop {
	switch st.Kind {
	case stepper.StopExited, stepper.StopKilled:
		return &Stop{Stop: st}
	case stepper.StopExec:
		// The engine dropped every breakpoint and declared region with
		// the old image.
		s.execed()
		s.redeclare()
	case stepper.StopFork:
		if !s.bare {
			// A client that decides about forks itself (gdb) takes the
			// child with Fork.
			return &Stop{Stop: st, Fork: s.takeFork(st)}
		}
	}
	if s.bare {
		return &Stop{Stop: st, Hits: hits}
	}
	if st.Kind == stepper.StopStep && len(s.At(st.PC)) > 0 {
		// A step that ends where a breakpoint is has hit it, as in gdb,
		// though the int3 never ran: its condition and counts apply, and
		// it is reported as the breakpoint when it stops.
		probe := &stepper.Stop{Kind: stepper.StopBreakpoint, Tid: st.Tid, PC: st.PC}
		if stop, bhits := s.decide(probe); stop {
			st.Kind, hits = stepper.StopBreakpoint, bhits
		}
	}
	s.Sync()
	switch st.Kind {
	case stepper.StopBreakpoint:
		s.atBreakpoint[st.Tid] = st.PC
	case stepper.StopSignal:
		if !s.Eng.Policy().NoPass[st.Sig] {
			s.pendingSig[st.Tid] = st.Sig
		}
	}
	for _, b := range hits {
		if b.Temp {
			if err := s.Delete(b.ID); err != nil {
				s.logDebug("deleting temporary breakpoint", err)
			}
		}
	}
	return &Stop{Stop: st, Hits: hits}
}

// moveOthersOff moves threads that reported a breakpoint past it before a
// step lets them run; otherwise they would trap on it again at once. A
// thread whose breakpoint is on a system call that forks, with forks
// followed, stops there: the fork policy applies as at any fork stop, and
// the fork ends the step (returned) only when it is followed into the
// child or the client decides (bare); otherwise the step goes on.
func (s *Session) moveOthersOff(tid int, others stepper.Others) (*Stop, error) {
	// The stepped thread itself is moved off by the engine.
	delete(s.atBreakpoint, tid)
	if others != stepper.OthersRun {
		return nil, nil // they stay where they are, and keep their note
	}
	for th, pc := range s.atBreakpoint {
		delete(s.atBreakpoint, th)
		r, err := s.T.Regs(th)
		if err != nil || r.Rip != pc {
			continue
		}
		st, err := s.Eng.StepInstruction(th, s.pendingSig[th], stepper.OthersStay)
		if err != nil {
			return nil, fmt.Errorf("moving thread %d off its breakpoint: %w", th, err)
		}
		delete(s.pendingSig, th)
		if st.Kind == stepper.StopFork {
			if out := s.stopped(st, nil); out.Fork != nil || s.bare || s.Eng.Exited() {
				return out, nil
			}
		}
	}
	return nil, nil
}

// Step runs next, step or finish of tid at line or instruction
// granularity. Breakpoint stops the user must not see (false conditions,
// log points, counts not reached) do not end the step: it goes on from
// where the thread is. Neither does a hit on the stepped line that an abort
// retry reached (see retryPass).
func (s *Session) Step(tid int, kind StepKind, instr bool, others stepper.Others) (*Stop, error) {
	if st, err := s.moveOthersOff(tid, others); err != nil || st != nil {
		return st, err
	}
	regs, err := s.T.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	if kind == StepOut {
		ret, cfa, ok := s.Src.Unwind.ReturnAddress(regs, s.T.ReadMemory)
		if !ok {
			return nil, fmt.Errorf("cannot find where %s returns", s.Src.Describe(regs.Rip))
		}
		var crossed []stepper.Crossing
		for {
			st, err := s.Eng.StepOut(tid, ret, cfa, others)
			if err != nil {
				return nil, err
			}
			crossed = append(crossed, st.Crossed...)
			st.Crossed = crossed
			if st.Kind != stepper.StopBreakpoint {
				return s.stopped(st, nil), nil
			}
			if stop, hits := s.decide(st); stop {
				return s.stopped(st, hits), nil
			}
			s.atBreakpoint[st.Tid] = st.PC
			if st, err := s.moveOthersOff(tid, others); err != nil || st != nil {
				return st, err
			}
		}
	}
	if instr && kind == StepInto {
		sig := s.pendingSig[tid]
		delete(s.pendingSig, tid)
		st, err := s.Eng.StepInstruction(tid, sig, others)
		if err != nil {
			return nil, err
		}
		if st.Kind == stepper.StopFork && st.Tid == tid && !s.bare {
			// The instruction stepped forked: it is done (the fork stop
			// comes as its system call returns). The step ends as one in
			// the process followed, as a nexti's does; in the parent the
			// system call returns first, with the step's own trap.
			out := s.stopped(st, nil)
			if out.Fork != nil {
				res := out.Fork.stopped(out.Fork.stepStop(out.Fork.T.Pid(), st.Crossed), nil)
				res.Fork = out.Fork
				return res, nil
			}
			if s.Eng.Exited() {
				return out, nil
			}
			if st, err = s.Eng.StepInstruction(tid, 0, stepper.OthersStay); err != nil {
				return nil, err
			}
		}
		if st.Kind == stepper.StopBreakpoint {
			if stop, hits := s.decide(st); stop {
				return s.stopped(st, hits), nil
			}
			// One instruction (or one region run) is all a stepi does:
			// a hit the user does not see ends it as a step.
			return s.stopped(s.stepStop(st.Tid, st.Crossed), nil), nil
		}
		return s.stopped(st, nil), nil
	}
	// The range the step covers, and the frame it runs in, so a step that
	// an ignored stop interrupted can go on as the same step.
	lo, hi := regs.Rip, regs.Rip+1
	if instr {
		if in, err := s.decodeAt(regs.Rip); err == nil {
			hi = in.Next()
		}
	} else if l, h, ok := s.Src.Syms.LineRange(regs.Rip); ok {
		lo, hi = l, h
	}
	_, cfa0, frameOK := s.Src.Unwind.ReturnAddress(regs, s.T.ReadMemory)
	return s.stepLines(tid, kind == StepOver, instr, others, lo, hi, cfa0, frameOK, false)
}

// stepLines is the loop of a line (or instruction-range) step of tid over
// [lo, hi) in the frame cfa0. fromFork: the step is taken over in a fork
// child it followed (same stack, same frame), stopped where fork()
// returns, and goes on from there.
func (s *Session) stepLines(tid int, over, instr bool, others stepper.Others, lo, hi, cfa0 uint64, frameOK, fromFork bool) (*Stop, error) {
	op := func() (*stepper.Stop, error) {
		if instr {
			return s.Src.NextInstruction(tid, others)
		}
		return s.Src.StepLine(tid, over, others)
	}
	var crossed []stepper.Crossing
	// position goes on after a stop the user does not see: stepping the
	// line again (again), returning to the stepping frame (next, the stop
	// that ended that), or the stop that ends the step (out).
	position := func() (next *stepper.Stop, again bool, out *Stop, err error) {
		where, err := s.stepPosition(tid, lo, hi, cfa0, frameOK)
		if err != nil {
			return nil, false, nil, err
		}
		if where == inRange {
			return nil, true, nil, nil // go on stepping the line
		}
		if where == done {
			return nil, false, s.stopped(s.stepStop(tid, crossed), nil), nil
		}
		// Deeper than the stepping frame (a callee stopped): return to it.
		ret, cfa, ok := s.frameReturn(tid, cfa0)
		if !ok {
			return nil, false, s.stopped(s.stepStop(tid, crossed), nil), nil
		}
		st, err := s.Eng.StepOut(tid, ret, cfa, others)
		if err != nil {
			return nil, false, nil, err
		}
		if st.Kind == stepper.StopStep {
			st.Crossed = append(crossed, st.Crossed...)
			if w, _ := s.stepPosition(tid, lo, hi, cfa0, frameOK); w == inRange || !instr && s.midStatement(st.PC) {
				// Still on the line, or back in it mid-statement after
				// the call: the step goes on, as it would have.
				crossed = st.Crossed
				return nil, true, nil, nil
			}
			return nil, false, s.stopped(st, nil), nil
		}
		// Another breakpoint on the way back: judge it the same way.
		crossed = nil
		return st, false, nil, nil
	}
	for {
		var st *stepper.Stop
		if !fromFork {
			var err error
			if st, err = op(); err != nil {
				return nil, err
			}
		}
		fromFork = false
		for {
			if st != nil {
				crossed = append(crossed, st.Crossed...)
				st.Crossed = crossed
				if s.retryPass(st, tid, lo, hi, cfa0, frameOK) {
					break // the same line, retried: go on stepping it
				}
				switch st.Kind {
				case stepper.StopFork:
					out := s.stopped(st, nil)
					if out.Fork != nil && !s.bare {
						// Followed into the child: the step goes on there,
						// in the same frame of the same stack.
						res, err := out.Fork.stepLines(out.Fork.T.Pid(), over, instr, others, lo, hi, cfa0, frameOK, true)
						if res != nil && res.Fork == nil {
							res.Fork = out.Fork
						}
						return res, err
					}
					if s.bare || s.Eng.Exited() {
						return out, nil
					}
					// The parent goes on with the step.
				case stepper.StopBreakpoint:
					stop, hits := s.decide(st)
					if stop {
						return s.stopped(st, hits), nil
					}
					// The thread resumes from the breakpoint: a step moves it off.
					s.atBreakpoint[st.Tid] = st.PC
					if out, err := s.moveOthersOff(tid, others); err != nil || out != nil {
						return out, err
					}
				default:
					return s.stopped(st, nil), nil
				}
			}
			next, again, out, err := position()
			if err != nil || out != nil {
				return out, err
			}
			if again {
				break
			}
			st = next
		}
	}
}

// Until runs tid to addr (gdb's until LOCATION and advance, DAP's run to
// main on entry); breakpoints on the way stop it as they would a continue.
func (s *Session) Until(tid int, addr uint64, others stepper.Others) (*Stop, error) {
	if st, err := s.moveOthersOff(tid, others); err != nil || st != nil {
		return st, err
	}
	var crossed []stepper.Crossing
	for {
		st, err := s.Eng.RunTo(tid, addr, others)
		if err != nil {
			return nil, err
		}
		crossed = append(crossed, st.Crossed...)
		st.Crossed = crossed
		if st.Kind != stepper.StopBreakpoint || st.PC == addr && st.Tid == tid {
			if st.Kind == stepper.StopBreakpoint {
				// Arrived where asked: a breakpoint there is the
				// destination, not a hit to judge.
				_, hits := s.decide(st)
				return s.stopped(st, hits), nil
			}
			return s.stopped(st, nil), nil
		}
		if stop, hits := s.decide(st); stop {
			return s.stopped(st, hits), nil
		}
		s.atBreakpoint[st.Tid] = st.PC
		if st, err := s.moveOthersOff(tid, others); err != nil || st != nil {
			return st, err
		}
	}
}

// retryPass reports a breakpoint stop of the stepped thread on the line it
// is stepping, reached again because the kernel aborted a critical section
// of that line and the abort handler went back to retry it. The line has
// not finished: stopping there would hand the user the abort path the step
// exists to hide, so the step goes on to the commit. Other threads' hits,
// and hits after a section committed, are reported as usual.
func (s *Session) retryPass(st *stepper.Stop, tid int, lo, hi, cfa0 uint64, frameOK bool) bool {
	if !frameOK || !abortRetried(st, tid) {
		return false
	}
	where, err := s.stepPosition(tid, lo, hi, cfa0, frameOK)
	return err == nil && where == inRange
}

// abortRetried reports a breakpoint stop of tid right after the kernel
// aborted a critical section it was running: the abort handler's retry
// reached the breakpoint.
func abortRetried(st *stepper.Stop, tid int) bool {
	if st.Kind != stepper.StopBreakpoint || st.Tid != tid {
		return false
	}
	aborted := false
	for _, c := range st.Crossed {
		if c.Region.Kind != regions.KindCriticalSection {
			continue
		}
		// Only the latest run of a section counts: an earlier abort that
		// later committed does not explain this stop.
		aborted = c.Outcome == stepper.Aborted || c.Outcome == stepper.Interrupted && c.Aborts > 0
	}
	return aborted
}

// RangeStep is a client's range step (gdb's vCont;r): tid runs until its
// PC leaves [lo, hi). The abort-retry rule holds here too: a hit on the
// retry path back inside the range does not end the step.
func (s *Session) RangeStep(tid int, lo, hi uint64, sig int, others stepper.Others) (*Stop, error) {
	var crossed []stepper.Crossing
	return s.Run(func() (*stepper.Stop, error) {
		for {
			st, err := s.Eng.RangeStep(tid, lo, hi, sig, others, false)
			sig = 0
			if err != nil {
				return nil, err
			}
			crossed = append(crossed, st.Crossed...)
			st.Crossed = crossed
			if !abortRetried(st, tid) || st.PC < lo || st.PC >= hi {
				return st, nil
			}
			// The thread resumes from the breakpoint it is on: the
			// engine's step moves it off.
		}
	})
}

type position uint8

const (
	inRange position = iota + 1 // in the stepping frame, still in the range
	done                        // where the step would end anyway
	deeper                      // in a function the stepping frame called
)

func (s *Session) stepPosition(tid int, lo, hi, cfa0 uint64, frameOK bool) (position, error) {
	r, err := s.T.Regs(tid)
	if err != nil {
		return 0, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	if !frameOK {
		return done, nil
	}
	_, cfa, ok := s.Src.Unwind.ReturnAddress(r, s.T.ReadMemory)
	if ok && cfa == cfa0 {
		if r.Rip >= lo && r.Rip < hi {
			return inRange, nil
		}
		return done, nil
	}
	if ok && cfa < cfa0 {
		return deeper, nil
	}
	return done, nil
}

// frameReturn finds the frame the step started in (its CFA is cfa0)
// among tid's frames, and where and with which stack pointer the function
// it called returns to it.
func (s *Session) frameReturn(tid int, cfa0 uint64) (ret, sp uint64, ok bool) {
	regs, err := s.T.Regs(tid)
	if err != nil {
		return 0, 0, false
	}
	fs, _ := s.Src.Unwind.Frames(regs, s.T.ReadMemory, 256)
	// Each frame carries its own CFA: the stack pointer right after it
	// returns.
	for k := 1; k < len(fs); k++ {
		if fs[k].CFA == cfa0 {
			return fs[k].PC, fs[k-1].CFA, true
		}
	}
	return 0, 0, false
}

func (s *Session) stepStop(tid int, crossed []stepper.Crossing) *stepper.Stop {
	st := &stepper.Stop{Kind: stepper.StopStep, Tid: tid, Crossed: crossed}
	if r, err := s.T.Regs(tid); err == nil {
		st.PC = r.Rip
		st.Inside = s.InsideCS(r.Rip)
		st.Inspect = s.Eng.InspectionAt(tid, r.Rip)
	}
	return st
}

func (s *Session) decodeAt(pc uint64) (x86.Insn, error) {
	var code [16]byte
	n, err := s.T.ReadMemory(pc, code[:])
	if n == 0 {
		return x86.Insn{}, fmt.Errorf("reading code at %#x: %w", pc, err)
	}
	return x86.Decode(code[:n], pc)
}

// midStatement reports a PC inside a line's code but not at the start of a
// statement, where a source step never ends.
func (s *Session) midStatement(pc uint64) bool {
	return s.Src.Syms.HasLines(pc) && !s.Src.Syms.IsStmtStart(pc)
}
