package dap

import (
	"fmt"
	"github.com/rseqdbg/rseqdbg/eval"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/stepper"
)

type bpKind uint8

const (
	bpSource bpKind = iota + 1
	bpFunction
	bpInstruction
)

// userBP is one breakpoint as the client set it; it may stand for several
// engine breakpoints (a line inlined into several functions) or none yet
// (a library not loaded).
type userBP struct {
	id     int
	kind   bpKind
	path   string // source breakpoints: the client's path
	line   int    // requested line
	fn     string
	instr  uint64
	cond   *eval.Expr
	hit    *hitCondition
	logMsg string

	addrs    []uint64
	engIDs   []int
	hits     int
	verified bool
	actual   int // the line the breakpoint landed on
	message  string
}

type breakpoints struct {
	nextID   int
	bySource map[string][]*userBP
	funcs    []*userBP
	instrs   []*userBP
}

func newBreakpoints() *breakpoints { return &breakpoints{bySource: map[string][]*userBP{}} }

func (b *breakpoints) all() []*userBP {
	var out []*userBP
	keys := make([]string, 0, len(b.bySource))
	for k := range b.bySource {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, b.bySource[k]...)
	}
	out = append(out, b.funcs...)
	return append(out, b.instrs...)
}

// at returns the breakpoints with an address at pc.
func (b *breakpoints) at(pc uint64) []*userBP {
	var out []*userBP
	for _, u := range b.all() {
		for _, a := range u.addrs {
			if a == pc {
				out = append(out, u)
				break
			}
		}
	}
	return out
}

// kindOf names the stop reason for the breakpoints hit.
func (b *breakpoints) kindOf(ids []int) string {
	for _, u := range b.all() {
		for _, id := range ids {
			if u.id != id {
				continue
			}
			switch u.kind {
			case bpFunction:
				return "function breakpoint"
			case bpInstruction:
				return "instruction breakpoint"
			}
			return "breakpoint"
		}
	}
	return ""
}

// hitCondition is a hit count test: "N" or "== N" (that hit), ">= N",
// "> N", "< N", "<= N", "% N" (every Nth).
type hitCondition struct {
	op string
	n  int
}

var hitRe = regexp.MustCompile(`^\s*(==|>=|<=|>|<|%)?\s*(\d+)\s*$`)

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

// options parses the condition, hit condition and log message shared by
// every kind of breakpoint.
func (u *userBP) options(cond, hit, logMsg string) error {
	if strings.TrimSpace(cond) != "" {
		e, err := eval.Parse(cond)
		if err != nil {
			return fmt.Errorf("condition: %w", err)
		}
		u.cond = e
	}
	h, err := parseHitCondition(hit)
	if err != nil {
		return err
	}
	u.hit = h
	if logMsg != "" {
		if _, err := parseLogMessage(logMsg); err != nil {
			return fmt.Errorf("log message: %w", err)
		}
		u.logMsg = logMsg
	}
	return nil
}

// resolve finds the breakpoint's addresses and inserts engine breakpoints;
// one that finds no code stays pending.
func (ss *session) resolve(u *userBP) {
	var addrs []uint64
	switch u.kind {
	case bpSource:
		var line int
		addrs, line = ss.core.Syms.LineAddrs(u.path, u.line)
		if len(addrs) == 0 {
			// Clients send absolute paths; DWARF may hold relative ones.
			addrs, line = ss.core.Syms.LineAddrs(filepath.Base(u.path), u.line)
		}
		u.actual = line
	case bpFunction:
		if f, ok := ss.core.Syms.LookupFunc(u.fn); ok {
			addrs = []uint64{ss.core.Syms.AfterPrologue(f)}
		} else if v, err := strconv.ParseUint(strings.TrimPrefix(u.fn, "*"), 0, 64); err == nil {
			addrs = []uint64{v}
		}
	case bpInstruction:
		addrs = []uint64{u.instr}
	}
	if len(addrs) == 0 {
		u.verified = false
		u.message = "no code here yet: pending until a library with it loads"
		return
	}
	var msgs []string
	for _, a := range addrs {
		bp, err := ss.eng.SetBreakpoint(a)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("cannot insert at %#x: %v", a, err))
			continue
		}
		u.addrs = append(u.addrs, a)
		u.engIDs = append(u.engIDs, bp.ID)
		if r := ss.eng.RegionAt(a); r != nil && r.Kind == regions.KindCriticalSection {
			msgs = append(msgs, fmt.Sprintf("inside critical section %s: each hit stops one attempt, which the kernel aborts on resume; rseqdbg then runs it to its commit", r.Name))
		}
	}
	u.verified = len(u.addrs) > 0
	u.message = strings.Join(msgs, "; ")
}

func (ss *session) unset(u *userBP) {
	for _, id := range u.engIDs {
		if err := ss.eng.ClearBreakpoint(id); err != nil {
			ss.log.Debug("dap: clearing breakpoint", "id", id, "err", err)
		}
	}
	u.engIDs, u.addrs = nil, nil
}

func (ss *session) describe(u *userBP) dap.Breakpoint {
	b := dap.Breakpoint{Id: u.id, Verified: u.verified, Message: u.message}
	if u.kind == bpSource {
		b.Source = &dap.Source{Name: filepath.Base(u.path), Path: u.path}
		b.Line = u.line
		if u.actual != 0 {
			b.Line = u.actual
		}
	} else if len(u.addrs) > 0 {
		if l, ok := ss.core.Syms.LineAt(u.addrs[0]); ok {
			b.Source = sourceOf(l.File)
			b.Line = l.Line
		}
	}
	if len(u.addrs) > 0 {
		b.InstructionReference = hexAddr(u.addrs[0])
	}
	return b
}

// resolvePending retries unverified breakpoints after objects loaded and
// returns breakpoint events for those that found code.
func (ss *session) resolvePending() []dap.Message {
	var out []dap.Message
	for _, u := range ss.bps.all() {
		if u.verified {
			continue
		}
		ss.resolve(u)
		if u.verified {
			out = append(out, &dap.BreakpointEvent{Event: event("breakpoint"), Body: dap.BreakpointEventBody{Reason: "changed", Breakpoint: ss.describe(u)}})
		}
	}
	return out
}

func (ss *session) newBP(kind bpKind) *userBP {
	ss.bps.nextID++
	return &userBP{id: ss.bps.nextID, kind: kind}
}

func (ss *session) setSourceBreakpoints(path string, list []dap.SourceBreakpoint) []dap.Breakpoint {
	for _, u := range ss.bps.bySource[path] {
		ss.unset(u)
	}
	var kept []*userBP
	out := make([]dap.Breakpoint, 0, len(list))
	for _, sb := range list {
		u := ss.newBP(bpSource)
		u.path, u.line = path, sb.Line
		if err := u.options(sb.Condition, sb.HitCondition, sb.LogMessage); err != nil {
			out = append(out, dap.Breakpoint{Id: u.id, Verified: false, Message: err.Error(), Line: sb.Line, Source: &dap.Source{Path: path}})
			continue
		}
		ss.resolve(u)
		kept = append(kept, u)
		out = append(out, ss.describe(u))
	}
	if len(kept) == 0 {
		delete(ss.bps.bySource, path)
	} else {
		ss.bps.bySource[path] = kept
	}
	return out
}

func (ss *session) setFunctionBreakpoints(list []dap.FunctionBreakpoint) []dap.Breakpoint {
	for _, u := range ss.bps.funcs {
		ss.unset(u)
	}
	ss.bps.funcs = nil
	out := make([]dap.Breakpoint, 0, len(list))
	for _, fb := range list {
		u := ss.newBP(bpFunction)
		u.fn = strings.TrimSpace(fb.Name)
		if err := u.options(fb.Condition, fb.HitCondition, ""); err != nil {
			out = append(out, dap.Breakpoint{Id: u.id, Message: err.Error()})
			continue
		}
		ss.resolve(u)
		if !u.verified && u.message != "" {
			u.message = fmt.Sprintf("function %q not found yet: pending until a library defines it", u.fn)
		}
		ss.bps.funcs = append(ss.bps.funcs, u)
		out = append(out, ss.describe(u))
	}
	return out
}

func (ss *session) setInstructionBreakpoints(list []dap.InstructionBreakpoint) []dap.Breakpoint {
	for _, u := range ss.bps.instrs {
		ss.unset(u)
	}
	ss.bps.instrs = nil
	out := make([]dap.Breakpoint, 0, len(list))
	for _, ib := range list {
		u := ss.newBP(bpInstruction)
		addr, err := parseAddr(ib.InstructionReference)
		if err == nil {
			u.instr = addr + uint64(int64(ib.Offset))
			err = u.options(ib.Condition, ib.HitCondition, "")
		}
		if err != nil {
			out = append(out, dap.Breakpoint{Id: u.id, Message: err.Error()})
			continue
		}
		ss.resolve(u)
		ss.bps.instrs = append(ss.bps.instrs, u)
		out = append(out, ss.describe(u))
	}
	return out
}

// filterBreakpoint applies conditions, hit conditions and log points to a
// breakpoint stop and reports whether the client sees it; ss.lastHits gets
// the breakpoints that stopped.
func (ss *session) filterBreakpoint(st *stepper.Stop) bool {
	// Frames cached for an earlier hit describe a thread that has run on.
	ss.invalidate()
	ss.lastHits = nil
	list := ss.bps.at(st.PC)
	if len(list) == 0 {
		return true // an engine breakpoint the client no longer has: stop anyway, truthfully
	}
	stop := false
	for _, u := range list {
		if u.cond != nil {
			ok, err := ss.condition(u.cond, st.Tid)
			if err != nil {
				ss.srv.sendOutput("stderr", fmt.Sprintf("rseqdbg: breakpoint %d: condition: %v (stopping)\n", u.id, err))
				stop = true
				ss.lastHits = append(ss.lastHits, u.id)
				continue
			}
			if !ok {
				continue
			}
		}
		u.hits++
		if u.hit != nil && !u.hit.ok(u.hits) {
			continue
		}
		if u.logMsg != "" {
			ss.srv.sendOutput("console", ss.logMessage(u.logMsg, st.Tid)+"\n")
			continue
		}
		stop = true
		ss.lastHits = append(ss.lastHits, u.id)
	}
	if !stop {
		// The thread resumes from here: a step must move it off first.
		ss.atBreakpoint[st.Tid] = st.PC
	}
	return stop
}

// condition evaluates a breakpoint condition in the top frame of tid.
func (ss *session) condition(e *eval.Expr, tid int) (bool, error) {
	fr, err := ss.topFrame(tid)
	if err != nil {
		return false, err
	}
	v, err := ss.ev.Eval(e, &fr.Frame)
	if err != nil {
		return false, err
	}
	return ss.ev.Truth(v)
}

// parseLogMessage splits a log point message into text and {expressions}.
func parseLogMessage(msg string) ([]logPart, error) {
	var parts []logPart
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

type logPart struct {
	text string
	expr *eval.Expr
	src  string
}

func (ss *session) logMessage(msg string, tid int) string {
	parts, err := parseLogMessage(msg)
	if err != nil {
		return msg
	}
	fr, ferr := ss.topFrame(tid)
	var b strings.Builder
	for _, p := range parts {
		if p.expr == nil {
			b.WriteString(p.text)
			continue
		}
		if ferr != nil {
			fmt.Fprintf(&b, "<%v>", ferr)
			continue
		}
		v, err := ss.ev.Eval(p.expr, &fr.Frame)
		if err != nil {
			fmt.Fprintf(&b, "<%s: %v>", p.src, err)
			continue
		}
		b.WriteString(ss.ev.Format(v, false))
	}
	return b.String()
}

func hexAddr(a uint64) string { return fmt.Sprintf("%#x", a) }

func parseAddr(s string) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 0, 64)
	if err != nil {
		return 0, fmt.Errorf("bad memory reference %q", s)
	}
	return v, nil
}

func sourceOf(file string) *dap.Source {
	if file == "" {
		return nil
	}
	return &dap.Source{Name: filepath.Base(file), Path: file}
}
