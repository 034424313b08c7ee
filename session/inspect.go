package session

import (
	"errors"
	"fmt"

	"github.com/rseqdbg/rseqdbg/stepper"
)

// Inspect mode and forced aborts (docs/design.md, "Inspect mode and forced
// aborts") for every front end: the switch, the abort, and how a stop
// inside a section is described.

// SetInspect turns inspect mode on or off; off ends every inspection.
func (s *Session) SetInspect(on bool) error {
	if err := s.Eng.SetInspect(on); err != nil {
		if errors.Is(err, stepper.ErrInspectUnsupported) {
			return fmt.Errorf("inspect mode refused: %w", err)
		}
		return err
	}
	return nil
}

// Inspect reports whether inspect mode is on.
func (s *Session) Inspect() bool { return s.Eng.Inspect() }

// EndInspections gives every inspected thread its affinity and signal mask
// back: front ends call it when a client leaves the process stopped.
func (s *Session) EndInspections() {
	if !s.Eng.Exited() {
		s.Eng.EndInspections()
	}
}

// ForceAbort does what the kernel's fixup does to tid, stopped inside a
// critical section: PC to the abort handler, rseq_cs cleared. With a wrong
// signature before the handler nothing changes and the error (wrapping
// stepper.ErrAbortRefused) says the kernel would kill the thread with
// SIGSEGV. The stop's Note describes the abort.
func (s *Session) ForceAbort(tid int) (*Stop, error) {
	regs, err := s.T.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	r := s.InsideCS(regs.Rip)
	st, err := s.Eng.ForceAbort(tid)
	if err != nil {
		return nil, err
	}
	delete(s.atBreakpoint, tid)
	if r != nil {
		st.Note = AbortText(r.Name, regs.Rip-r.Start)
	}
	return &Stop{Stop: st}, nil
}

// AbortText describes a forced abort of section name at offset k.
func AbortText(name string, k uint64) string {
	return fmt.Sprintf("forced abort of %s at +%d: in the abort handler", name, k)
}

// InspectText describes where an inspected thread stopped: "inspecting
// critical section NAME at +K of L".
func InspectText(ins *stepper.Inspection) string {
	if ins == nil {
		return ""
	}
	if ins.InCallee {
		return fmt.Sprintf("inspecting critical section %s in a function it called (%d bytes)", ins.Region.Name, ins.Length)
	}
	return fmt.Sprintf("inspecting critical section %s at +%d of %d", ins.Region.Name, ins.Offset, ins.Length)
}
