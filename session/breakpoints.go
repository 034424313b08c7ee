package session

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/rseqdbg/rseqdbg/eval"
	"github.com/rseqdbg/rseqdbg/stepper"
)

// Kind is what a breakpoint location names.
type Kind uint8

const (
	// AtLine is FILE:LINE.
	AtLine Kind = iota + 1
	// AtFunc is a function, after its prologue.
	AtFunc
	// AtAddr is one address.
	AtAddr
)

// Spec is where a breakpoint goes.
type Spec struct {
	Kind Kind
	File string
	Line int
	Func string
	Addr uint64
}

func (sp Spec) String() string {
	switch sp.Kind {
	case AtLine:
		return fmt.Sprintf("%s:%d", sp.File, sp.Line)
	case AtFunc:
		return sp.Func
	}
	return fmt.Sprintf("*%#x", sp.Addr)
}

// Options are what a breakpoint does when hit.
type Options struct {
	Cond    string // a C expression: stop only when it is true
	HitCond string // DAP's hit condition: N, == N, >= N, > N, < N, <= N, % N
	Ignore  int    // gdb's ignore count: the next Ignore hits do not stop
	Temp    bool   // deleted when it stops (tbreak)
	LogMsg  string // log point: print this ({expr} interpolated) instead of stopping
	// Agent are gdb's conditions as agent-expression bytecode (Z0
	// ...;X): the breakpoint stops when any of them is non-zero. They
	// are decided here, on the tracer thread, with no round trip.
	Agent [][]byte
}

// Breakpoint is one user breakpoint; it may stand for several engine
// breakpoints (a line inlined into several functions) or none yet
// (pending until a library with its code loads).
type Breakpoint struct {
	ID   int
	Spec Spec
	Options
	Hits int // hits whose condition held
	// Addrs are where it is inserted; Line is the line it landed on.
	Addrs []uint64
	Line  int
	// Message says why it is pending or what is special about where it
	// went (an address inside a critical section).
	Message string

	cond   *eval.Expr
	hit    *hitCondition
	log    []logPart
	engIDs []int
}

// Pending reports a breakpoint that has found no code yet.
func (b *Breakpoint) Pending() bool { return len(b.Addrs) == 0 }

// Set adds a breakpoint; one whose location has no code yet stays
// pending until an object that has it loads. Only bad options fail.
func (s *Session) Set(spec Spec, o Options) (*Breakpoint, error) {
	b := &Breakpoint{Spec: spec}
	if err := b.setOptions(o); err != nil {
		return nil, err
	}
	s.nextID++
	b.ID = s.nextID
	s.bps = append(s.bps, b)
	s.resolve(b)
	return b, nil
}

// Change gives a breakpoint new options, keeping its hit count (a DAP
// client sends a source's breakpoints again whenever one of them changes).
func (s *Session) Change(b *Breakpoint, o Options) error { return b.setOptions(o) }

func (b *Breakpoint) setOptions(o Options) error {
	var cond *eval.Expr
	if strings.TrimSpace(o.Cond) != "" {
		e, err := eval.Parse(o.Cond)
		if err != nil {
			return fmt.Errorf("condition: %w", err)
		}
		cond = e
	}
	h, err := parseHitCondition(o.HitCond)
	if err != nil {
		return err
	}
	var log []logPart
	if o.LogMsg != "" {
		if log, err = parseLogMessage(o.LogMsg); err != nil {
			return fmt.Errorf("log message: %w", err)
		}
	}
	b.Options, b.cond, b.hit, b.log = o, cond, h, log
	return nil
}

// Delete removes breakpoint id.
func (s *Session) Delete(id int) error {
	for i, b := range s.bps {
		if b.ID == id {
			s.unset(b)
			s.bps = append(s.bps[:i], s.bps[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("no breakpoint %d", id)
}

// DeleteAll removes every breakpoint.
func (s *Session) DeleteAll() {
	for _, b := range s.bps {
		s.unset(b)
	}
	s.bps = nil
}

// DeleteAt removes the breakpoint set last at address addr (gdb's z0,
// which pairs with a Z0 at the same address). It reports whether there
// was one.
func (s *Session) DeleteAt(addr uint64) (bool, error) {
	for i := len(s.bps) - 1; i >= 0; i-- {
		if b := s.bps[i]; b.Spec.Kind == AtAddr && b.Spec.Addr == addr {
			return true, s.Delete(b.ID)
		}
	}
	return false, nil
}

// execed follows an exec: the new image has none of the old addresses.
// A bare session's client sets its breakpoints again itself; the others
// stay, pending until their code is found in the new image.
func (s *Session) execed() {
	if s.bare {
		s.bps = nil
		return
	}
	for _, b := range s.bps {
		b.engIDs, b.Addrs = nil, nil
	}
}

// Breakpoint returns breakpoint id.
func (s *Session) Breakpoint(id int) (*Breakpoint, bool) {
	for _, b := range s.bps {
		if b.ID == id {
			return b, true
		}
	}
	return nil, false
}

// Breakpoints lists the breakpoints by id.
func (s *Session) Breakpoints() []*Breakpoint { return append([]*Breakpoint(nil), s.bps...) }

// At returns the breakpoints inserted at pc.
func (s *Session) At(pc uint64) []*Breakpoint {
	var out []*Breakpoint
	for _, b := range s.bps {
		for _, a := range b.Addrs {
			if a == pc {
				out = append(out, b)
				break
			}
		}
	}
	return out
}

// resolve finds the breakpoint's addresses and inserts engine breakpoints.
func (s *Session) resolve(b *Breakpoint) {
	var addrs []uint64
	switch b.Spec.Kind {
	case AtLine, AtFunc:
		if s.bare {
			break // no symbols: the client resolves names itself
		}
		addrs = s.lookup(b)
	case AtAddr:
		addrs = []uint64{b.Spec.Addr}
	}
	if len(addrs) == 0 {
		b.Message = fmt.Sprintf("no code for %s yet: pending until a library that has it loads", b.Spec)
		return
	}
	var msgs []string
	for _, a := range addrs {
		ebp, err := s.Eng.SetBreakpoint(a)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("cannot insert at %#x: %v", a, err))
			continue
		}
		b.Addrs = append(b.Addrs, a)
		b.engIDs = append(b.engIDs, ebp.ID)
		if r := s.InsideCS(a); r != nil {
			msgs = append(msgs, fmt.Sprintf("inside critical section %s: each hit stops one attempt, which the kernel aborts on resume; continuing runs it to its commit", r.Name))
		}
	}
	b.Message = strings.Join(msgs, "; ")
}

// lookup finds the code of a line or function breakpoint.
func (s *Session) lookup(b *Breakpoint) []uint64 {
	syms := s.Src.Syms
	if b.Spec.Kind == AtLine {
		addrs, line := syms.LineAddrs(b.Spec.File, b.Spec.Line)
		if len(addrs) == 0 {
			// Clients send absolute paths; DWARF may hold relative ones.
			addrs, line = syms.LineAddrs(filepath.Base(b.Spec.File), b.Spec.Line)
		}
		b.Line = line
		return addrs
	}
	if f, ok := syms.LookupFunc(b.Spec.Func); ok {
		return []uint64{syms.AfterPrologue(f)}
	}
	if v, err := strconv.ParseUint(strings.TrimPrefix(b.Spec.Func, "*"), 0, 64); err == nil {
		return []uint64{v}
	}
	return nil
}

func (s *Session) unset(b *Breakpoint) {
	for _, id := range b.engIDs {
		if err := s.Eng.ClearBreakpoint(id); err != nil {
			slog.Debug("session: clearing breakpoint", "id", id, "err", err)
		}
	}
	b.engIDs, b.Addrs = nil, nil
}

func (s *Session) hasPending() bool {
	for _, b := range s.bps {
		if b.Pending() {
			return true
		}
	}
	return false
}

// resolvePending retries pending breakpoints after objects loaded.
func (s *Session) resolvePending() {
	for _, b := range s.bps {
		if !b.Pending() {
			continue
		}
		s.resolve(b)
		if !b.Pending() && s.Events.Resolved != nil {
			s.Events.Resolved(b)
		}
	}
}

// decide applies conditions, hit conditions, ignore counts and log points
// to a breakpoint stop: whether it stops, and which breakpoints stopped it.
func (s *Session) decide(st *stepper.Stop) (bool, []*Breakpoint) {
	list := s.At(st.PC)
	if len(list) == 0 {
		// An engine breakpoint no front end knows (gdb's own, or one just
		// deleted): stop, truthfully.
		return true, nil
	}
	var hits []*Breakpoint
	for _, b := range list {
		ok, err := s.holds(b, st.Tid)
		if err != nil {
			// As gdbserver: a condition that cannot be evaluated stops.
			if s.Events.ConditionError != nil {
				s.Events.ConditionError(b, err)
			}
			hits = append(hits, b)
			continue
		}
		if !ok {
			continue
		}
		b.Hits++
		if b.Ignore > 0 {
			b.Ignore--
			continue
		}
		if b.hit != nil && !b.hit.ok(b.Hits) {
			continue
		}
		if b.log != nil {
			if s.Events.Log != nil {
				s.Events.Log(b, s.logMessage(b, st.Tid))
			}
			continue
		}
		hits = append(hits, b)
	}
	return len(hits) > 0, hits
}

// holds decides b's conditions for tid: gdb's bytecode (any of them
// non-zero) and a C condition; a breakpoint without one holds.
func (s *Session) holds(b *Breakpoint, tid int) (bool, error) {
	if len(b.Agent) > 0 {
		if ok, err := s.agentCondition(b, tid); err != nil || !ok {
			return ok, err
		}
	}
	if b.cond != nil {
		return s.condition(b, tid)
	}
	return true, nil
}

func (s *Session) condition(b *Breakpoint, tid int) (bool, error) {
	f, err := s.TopFrame(tid)
	if err != nil {
		return false, err
	}
	v, err := s.Eval.Eval(b.cond, f)
	if err != nil {
		return false, err
	}
	return s.Eval.Truth(v)
}

// hitCondition is a hit count test: "N" or "== N" (that hit), ">= N",
// "> N", "< N", "<= N", "% N" (every Nth).
type hitCondition struct {
	op string
	n  int
}

var hitRe = regexp.MustCompile(`^\s*(==|>=|<=|>|<|%)?\s*(\d+)\s*$`)

// ParseHitCondition checks a hit condition; the empty one is nil.
func ParseHitCondition(s string) error { _, err := parseHitCondition(s); return err }

func parseHitCondition(s string) (*hitCondition, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := hitRe.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("bad hit condition %q: want N, == N, >= N, > N, < N, <= N or %% N", s)
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return nil, fmt.Errorf("bad hit condition %q: %w", s, err)
	}
	op := m[1]
	if op == "" {
		op = "=="
	}
	if op == "%" && n == 0 {
		return nil, fmt.Errorf("bad hit condition %q: %% 0", s)
	}
	return &hitCondition{op: op, n: n}, nil
}

func (h *hitCondition) ok(hits int) bool {
	switch h.op {
	case "==":
		return hits == h.n
	case ">=":
		return hits >= h.n
	case ">":
		return hits > h.n
	case "<":
		return hits < h.n
	case "<=":
		return hits <= h.n
	case "%":
		return hits%h.n == 0
	}
	return true
}

type logPart struct {
	text string
	expr *eval.Expr
	src  string
}

// ParseLogMessage checks a log point message.
func ParseLogMessage(msg string) error { _, err := parseLogMessage(msg); return err }

// parseLogMessage splits a log point message into text and {expressions}.
func parseLogMessage(msg string) ([]logPart, error) {
	parts := []logPart{}
	for len(msg) > 0 {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			parts = append(parts, logPart{text: msg})
			break
		}
		if i > 0 {
			parts = append(parts, logPart{text: msg[:i]})
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed { in %q", msg)
		}
		e, err := eval.Parse(msg[i+1 : i+j])
		if err != nil {
			return nil, err
		}
		parts = append(parts, logPart{expr: e, src: msg[i+1 : i+j]})
		msg = msg[i+j+1:]
	}
	return parts, nil
}

func (s *Session) logMessage(b *Breakpoint, tid int) string {
	f, ferr := s.TopFrame(tid)
	var sb strings.Builder
	for _, p := range b.log {
		if p.expr == nil {
			sb.WriteString(p.text)
			continue
		}
		if ferr != nil {
			fmt.Fprintf(&sb, "<%v>", ferr)
			continue
		}
		v, err := s.Eval.Eval(p.expr, f)
		if err != nil {
			fmt.Fprintf(&sb, "<%s: %v>", p.src, err)
			continue
		}
		sb.WriteString(s.Eval.Format(v, false))
	}
	return sb.String()
}
