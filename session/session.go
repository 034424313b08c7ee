// Package session is the run-control policy every front end shares above
// the stepping core: the breakpoint store (conditions, hit and ignore
// counts, temporary and pending breakpoints), continue, step, next,
// finish and until with their filtering of breakpoint hits, the abort-retry
// rule, moving other threads off breakpoints they already reported, and the
// forwarding of the program's output. headless, dap and gdbproto translate
// their protocol to it; none keeps a breakpoint store or a resume loop of
// its own.
package session

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/rseqdbg/rseqdbg/eval"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/source"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
)

// Events are how the session tells its front end about what happens
// during a run that is not the stop itself. Nil members are skipped.
type Events struct {
	// Log receives a log point's message (DAP logMessage).
	Log func(bp *Breakpoint, text string)
	// ConditionError says a condition could not be evaluated; the
	// breakpoint then stops, as in gdb.
	ConditionError func(bp *Breakpoint, err error)
	// Resolved says a pending breakpoint found code in a loaded object.
	Resolved func(bp *Breakpoint)
	// Forked says the program forked child (nil when it could not be
	// taken and was let go) and whether the debugger follows it. With
	// ForkPolicy.KeepBoth the front end keeps the process not followed
	// (child, or this session's) stopped; otherwise it was detached.
	Forked func(parent, child *Session, follow bool)
	// Exec says the process executed a new program (path); a continue
	// goes on in it.
	Exec func(path string)
	// Interrupted is asked when a continue ends on an interrupt: false
	// resumes silently (DAP runs queued requests that way). Without it
	// every interrupt is reported.
	Interrupted func() bool
}

// Session is one debugged process under the shared policy. Like the
// engine, its methods must run inside Eng.Do.
type Session struct {
	Eng    *stepper.Engine
	T      target.Target
	Src    *source.Core
	Info   *eval.DebugInfo
	Eval   *eval.Evaluator
	Events Events

	bps    []*Breakpoint // by ID
	nextID int
	// atBreakpoint are threads whose breakpoint stop was reported (or
	// filtered) at that PC: before a step lets them run they are moved
	// past it, or they would trap again at once.
	atBreakpoint map[int]uint64
	// pendingSig is the signal each thread stopped with, delivered when it
	// resumes (the signal policy decides which signals stop at all).
	pendingSig map[int]int
	// bare: the client keeps symbols, steps and signals itself (gdb); the
	// session only holds its breakpoints and runs its resumptions.
	bare bool
	// declarations are the regions users declared, by name, declared
	// again after an exec.
	declarations []Declaration
	// AgentEvaluations counts the bytecode conditions decided here.
	AgentEvaluations int
	// forks is the target's ForkFollower while fork children are kept;
	// forkPolicy is what Continue does at a fork.
	forks target.ForkFollower
	// followAfterNonStop: fork following was on when non-stop mode
	// turned it off, and comes back with all-stop.
	followAfterNonStop bool
	forkPolicy         ForkPolicy
	// vforks: vfork children are kept too while forks are; vforkDone:
	// the end of their sharing is a stop (FollowVforks).
	vforks, vforkDone bool
	// vforked: this is a vfork child's session (Vforked).
	vforked bool
}

// New builds a session over eng with its symbols loaded.
func New(eng *stepper.Engine) *Session {
	src := source.New(eng)
	info := &eval.DebugInfo{}
	s := &Session{
		Eng: eng, T: eng.Target(), Src: src, Info: info,
		Eval:         &eval.Evaluator{Process: eval.WithWrites(eng.Target(), eng.WriteMemory), Syms: src.Syms, Info: info},
		atBreakpoint: map[int]uint64{}, pendingSig: map[int]int{},
	}
	s.Sync()
	return s
}

// NewBare builds a session for a client that reads symbols, decides its
// steps and passes signals itself (gdb, lldb): no source tables are
// loaded, and Run is its resume loop.
func NewBare(eng *stepper.Engine) *Session {
	return &Session{Eng: eng, T: eng.Target(), atBreakpoint: map[int]uint64{}, pendingSig: map[int]int{}, bare: true}
}

// Stop is how a run ended, with the breakpoints that made it stop (after
// conditions and counts) when it is a breakpoint stop.
type Stop struct {
	*stepper.Stop
	Hits []*Breakpoint
	// Fork is the child of a StopFork when the policy follows it: the
	// front end goes on with it (the parent was detached unless
	// ForkPolicy.KeepBoth).
	Fork *Session
}

// Sync follows the objects the engine knows: symbols, CFI and debug
// information, and resolves pending breakpoints in what loaded. It reports
// whether anything changed.
func (s *Session) Sync() bool {
	if s.bare || !s.Src.Sync() {
		return false
	}
	s.Info.Sync(s.Eng.Objects())
	s.resolvePending()
	return true
}

// TopFrame is the innermost frame of tid, for conditions and print.
func (s *Session) TopFrame(tid int) (*eval.Frame, error) {
	if s.bare {
		return nil, errors.New("no symbols in this session: its client evaluates expressions itself")
	}
	regs, err := s.T.Regs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of thread %d: %w", tid, err)
	}
	f := &eval.Frame{Tid: tid, Regs: regs, PC: regs.Rip, Lookup: regs.Rip}
	if cfa, ok := s.Src.Unwind.CFA(regs, s.T.ReadMemory); ok {
		f.CFA, f.CFAOK = cfa, true
	}
	return f, nil
}

// Evaluate parses and evaluates text in the innermost frame of tid.
func (s *Session) Evaluate(text string, tid int) (*eval.Value, error) {
	e, err := eval.Parse(text)
	if err != nil {
		return nil, err
	}
	f, err := s.TopFrame(tid)
	if err != nil {
		return nil, err
	}
	return s.Eval.Eval(e, f)
}

// InsideCS returns the critical section holding pc, or nil.
func (s *Session) InsideCS(pc uint64) *regions.Region {
	if r := s.Eng.RegionAt(pc); r != nil && r.Kind == regions.KindCriticalSection {
		return r
	}
	return nil
}

// Forget drops what the session remembers of threads that are gone.
func (s *Session) Forget(tid int) {
	delete(s.atBreakpoint, tid)
	delete(s.pendingSig, tid)
}

// takeSignals returns the signals to deliver on resume and forgets them.
func (s *Session) takeSignals() map[int]int {
	if len(s.pendingSig) == 0 {
		return nil
	}
	m := s.pendingSig
	s.pendingSig = map[int]int{}
	return m
}

func (s *Session) logDebug(what string, err error) { slog.Debug("session: "+what, "err", err) }
