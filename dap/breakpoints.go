package dap

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-dap"
	sess "github.com/rseqdbg/rseqdbg/session"
)

type bpKind uint8

const (
	bpSource bpKind = iota + 1
	bpFunction
	bpInstruction
)

// clientBP is one breakpoint as the client set it: the session's
// breakpoint, and what the client asked for so it can be described back.
// The store and the hit policy are the session's.
type clientBP struct {
	kind bpKind
	path string // source breakpoints: the client's path
	line int    // requested line
	b    *sess.Breakpoint
}

// breakpoints is the client's view of the session's breakpoints: which
// request set each one (each request replaces its own kind's set).
type breakpoints struct {
	bySource map[string][]*clientBP
	funcs    []*clientBP
	instrs   []*clientBP
}

func newBreakpoints() *breakpoints { return &breakpoints{bySource: map[string][]*clientBP{}} }

func (b *breakpoints) all() []*clientBP {
	var out []*clientBP
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

func (b *breakpoints) byID(id int) *clientBP {
	for _, u := range b.all() {
		if u.b.ID == id {
			return u
		}
	}
	return nil
}

// kindOf names the stop reason for the breakpoints hit.
func (b *breakpoints) kindOf(ids []int) string {
	for _, id := range ids {
		if u := b.byID(id); u != nil {
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

func (ss *session) describe(u *clientBP) dap.Breakpoint {
	b := dap.Breakpoint{Id: u.b.ID, Verified: !u.b.Pending(), Message: u.b.Message}
	if u.kind == bpSource {
		b.Source = &dap.Source{Name: filepath.Base(u.path), Path: u.path}
		b.Line = u.line
		if u.b.Line != 0 {
			b.Line = u.b.Line
		}
	} else if len(u.b.Addrs) > 0 {
		if l, ok := ss.core.Syms.LineAt(u.b.Addrs[0]); ok {
			b.Source = sourceOf(l.File)
			b.Line = l.Line
		}
	}
	if u.kind == bpFunction && u.b.Pending() {
		b.Message = fmt.Sprintf("function %q not found yet: pending until a library defines it", u.b.Spec.Func)
	}
	if len(u.b.Addrs) > 0 {
		b.InstructionReference = hexAddr(u.b.Addrs[0])
	}
	return b
}

// resolved tells the client a pending breakpoint found its code.
func (ss *session) resolved(b *sess.Breakpoint) {
	if u := ss.bps.byID(b.ID); u != nil {
		ss.srv.send(&dap.BreakpointEvent{Event: event("breakpoint"), Body: dap.BreakpointEventBody{Reason: "changed", Breakpoint: ss.describe(u)}})
	}
}

// set adds one breakpoint to the session; bad options are answered as an
// unverified breakpoint carrying the error.
func (ss *session) set(kind bpKind, spec sess.Spec, o sess.Options) (*clientBP, *dap.Breakpoint) {
	b, err := ss.rc.Set(spec, o)
	if err != nil {
		return nil, &dap.Breakpoint{Verified: false, Message: err.Error()}
	}
	return &clientBP{kind: kind, b: b}, nil
}

func (ss *session) unset(list []*clientBP) {
	for _, u := range list {
		if err := ss.rc.Delete(u.b.ID); err != nil {
			ss.log.Debug("dap: clearing breakpoint", "id", u.b.ID, "err", err)
		}
	}
}

func (ss *session) setSourceBreakpoints(path string, list []dap.SourceBreakpoint) []dap.Breakpoint {
	ss.unset(ss.bps.bySource[path])
	var kept []*clientBP
	out := make([]dap.Breakpoint, 0, len(list))
	for _, sb := range list {
		u, bad := ss.set(bpSource, sess.Spec{Kind: sess.AtLine, File: path, Line: sb.Line},
			sess.Options{Cond: sb.Condition, HitCond: sb.HitCondition, LogMsg: sb.LogMessage})
		if bad != nil {
			bad.Line, bad.Source = sb.Line, &dap.Source{Path: path}
			out = append(out, *bad)
			continue
		}
		u.path, u.line = path, sb.Line
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
	ss.unset(ss.bps.funcs)
	ss.bps.funcs = nil
	out := make([]dap.Breakpoint, 0, len(list))
	for _, fb := range list {
		u, bad := ss.set(bpFunction, sess.Spec{Kind: sess.AtFunc, Func: strings.TrimSpace(fb.Name)},
			sess.Options{Cond: fb.Condition, HitCond: fb.HitCondition})
		if bad != nil {
			out = append(out, *bad)
			continue
		}
		ss.bps.funcs = append(ss.bps.funcs, u)
		out = append(out, ss.describe(u))
	}
	return out
}

func (ss *session) setInstructionBreakpoints(list []dap.InstructionBreakpoint) []dap.Breakpoint {
	ss.unset(ss.bps.instrs)
	ss.bps.instrs = nil
	out := make([]dap.Breakpoint, 0, len(list))
	for _, ib := range list {
		addr, err := parseAddr(ib.InstructionReference)
		if err != nil {
			out = append(out, dap.Breakpoint{Message: err.Error()})
			continue
		}
		u, bad := ss.set(bpInstruction, sess.Spec{Kind: sess.AtAddr, Addr: addr + uint64(int64(ib.Offset))},
			sess.Options{Cond: ib.Condition, HitCond: ib.HitCondition})
		if bad != nil {
			out = append(out, *bad)
			continue
		}
		ss.bps.instrs = append(ss.bps.instrs, u)
		out = append(out, ss.describe(u))
	}
	return out
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
