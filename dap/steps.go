package dap

import (
	"fmt"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/stepper"
)

type stepKind uint8

const (
	stepOver  stepKind = iota + 1 // next
	stepInto                      // stepIn
	stepOutOf                     // stepOut
)

// moveOthersOff moves threads that reported a breakpoint past it before a
// step lets them run; otherwise they would trap on it again at once.
// Continue does this itself.
func (ss *session) moveOthersOff(tid int, others stepper.Others) error {
	// The stepped thread itself is moved off by the engine.
	delete(ss.atBreakpoint, tid)
	if others != stepper.OthersRun {
		return nil // they stay where they are, and keep their note
	}
	for th, pc := range ss.atBreakpoint {
		delete(ss.atBreakpoint, th)
		r, err := ss.proc.Regs(th)
		if err != nil || r.Rip != pc {
			continue
		}
		if _, err := ss.eng.StepInstruction(th, ss.pendingSig[th], stepper.OthersStay); err != nil {
			return fmt.Errorf("moving thread %d off its breakpoint: %w", th, err)
		}
		delete(ss.pendingSig, th)
	}
	return nil
}

// step runs next, stepIn or stepOut of tid at line or instruction
// granularity. Breakpoint stops the client must not see (false
// conditions, log points, hit counts not reached) do not end the step: it
// goes on from where the thread is.
func (ss *session) step(kind stepKind, tid int, instr bool, others stepper.Others) (*stepper.Stop, error) {
	if err := ss.moveOthersOff(tid, others); err != nil {
		return nil, err
	}
	regs, err := ss.proc.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	if kind == stepOutOf {
		ret, cfa, ok := ss.core.Unwind.ReturnAddress(regs, ss.proc.ReadMemory)
		if !ok {
			return nil, fmt.Errorf("cannot find where %s returns", ss.core.Syms.Describe(regs.Rip))
		}
		var crossed []stepper.Crossing
		for {
			st, err := ss.eng.StepOut(tid, ret, cfa, others)
			if err != nil {
				return nil, err
			}
			crossed = append(crossed, st.Crossed...)
			st.Crossed = crossed
			if !ss.ignorable(st) {
				return st, nil
			}
		}
	}
	if instr && kind == stepInto {
		// One instruction with the other threads held, so the disassembly
		// view moves by exactly one instruction (or one whole region run).
		sig := ss.pendingSig[tid]
		delete(ss.pendingSig, tid)
		return ss.eng.StepInstruction(tid, sig, stepper.OthersStay)
	}
	// The range the step covers, and the frame it runs in, so a step that
	// an ignored stop interrupted can go on as the same step.
	lo, hi := regs.Rip, regs.Rip+1
	if instr {
		if in, err := ss.decodeAt(regs.Rip); err == nil {
			hi = in.Next()
		}
	} else if l, h, ok := ss.core.Syms.LineRange(regs.Rip); ok {
		lo, hi = l, h
	}
	_, cfa0, frameOK := ss.core.Unwind.ReturnAddress(regs, ss.proc.ReadMemory)
	op := func() (*stepper.Stop, error) {
		if instr {
			return ss.core.NextInstruction(tid, stepper.OthersStay)
		}
		return ss.core.StepLine(tid, kind == stepOver, others)
	}
	var crossed []stepper.Crossing
	for {
		st, err := op()
		if err != nil {
			return nil, err
		}
		for {
			crossed = append(crossed, st.Crossed...)
			st.Crossed = crossed
			if ss.retryPass(st, tid, lo, hi, cfa0, frameOK) {
				break // the same line, retried: go on stepping it
			}
			if !ss.ignorable(st) {
				return st, nil
			}
			if err := ss.moveOthersOff(tid, others); err != nil {
				return nil, err
			}
			where, err := ss.stepPosition(tid, lo, hi, cfa0, frameOK)
			if err != nil {
				return nil, err
			}
			if where == inRange {
				break // go on stepping the line
			}
			if where == done {
				return ss.stepStop(tid, crossed), nil
			}
			// Deeper than the stepping frame (a callee stopped): return
			// to it.
			fs, err := ss.threadFrames(tid)
			ss.invalidate()
			if err != nil {
				return nil, err
			}
			k := frameWithCFA(fs, cfa0)
			if k <= 0 {
				return ss.stepStop(tid, crossed), nil
			}
			st, err = ss.eng.StepOut(tid, fs[k].PC, fs[k].uf.CFA, others)
			if err != nil {
				return nil, err
			}
			if st.Kind == stepper.StopStep {
				st.Crossed = append(crossed, st.Crossed...)
				if w, _ := ss.stepPosition(tid, lo, hi, cfa0, frameOK); w == inRange {
					crossed = st.Crossed
					break
				}
				return st, nil
			}
		}
	}
}

// retryPass reports a breakpoint stop of the stepped thread on the line it
// is stepping, reached again because the kernel aborted a critical section
// of that line and the abort handler went back to retry it. The line has
// not finished: stopping there would hand the user the abort path the step
// exists to hide, so the step goes on to the commit. Other threads' hits,
// and hits after a section committed, are reported as usual.
func (ss *session) retryPass(st *stepper.Stop, tid int, lo, hi, cfa0 uint64, frameOK bool) bool {
	if st.Kind != stepper.StopBreakpoint || st.Tid != tid || !frameOK {
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
	if !aborted {
		return false
	}
	where, err := ss.stepPosition(tid, lo, hi, cfa0, frameOK)
	if err != nil || where != inRange {
		return false
	}
	// Frames cached for the stop are stale once the step goes on.
	ss.invalidate()
	return true
}

// ignorable reports a breakpoint stop the client does not see.
func (ss *session) ignorable(st *stepper.Stop) bool {
	return st.Kind == stepper.StopBreakpoint && !ss.filterBreakpoint(st)
}

type position uint8

const (
	inRange position = iota + 1 // in the stepping frame, still in the range
	done                        // where the step would end anyway
	deeper                      // in a function the stepping frame called
)

func (ss *session) stepPosition(tid int, lo, hi, cfa0 uint64, frameOK bool) (position, error) {
	r, err := ss.proc.Regs(tid)
	if err != nil {
		return 0, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	if !frameOK {
		return done, nil
	}
	_, cfa, ok := ss.core.Unwind.ReturnAddress(r, ss.proc.ReadMemory)
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

// frameWithCFA finds the frame whose CFA is cfa (the frame a step started
// in); the CFA of frame i is the stack pointer of frame i+1.
func frameWithCFA(fs []*frame, cfa uint64) int {
	for i := range fs {
		if fs[i].CFAOK && fs[i].CFA == cfa {
			return i
		}
	}
	return -1
}

func (ss *session) stepStop(tid int, crossed []stepper.Crossing) *stepper.Stop {
	st := &stepper.Stop{Kind: stepper.StopStep, Tid: tid, Crossed: crossed}
	if r, err := ss.proc.Regs(tid); err == nil {
		st.PC = r.Rip
		if reg := ss.eng.RegionAt(r.Rip); reg != nil && reg.Kind == regions.KindCriticalSection {
			st.Inside = reg
		}
	}
	return st
}

func (ss *session) decodeAt(pc uint64) (regions.Insn, error) {
	var code [16]byte
	n, err := ss.proc.ReadMemory(pc, code[:])
	if n == 0 {
		return regions.Insn{}, fmt.Errorf("reading code at %#x: %w", pc, err)
	}
	return regions.Decode(code[:n], pc)
}
