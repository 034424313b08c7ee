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
	key  string // what names it in the client's requests
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

// rebind points the client's breakpoints at rc's breakpoints of the same
// numbers: the store of the process the session goes back to after a
// fork child ended (session.CopyBreakpoints kept the numbers).
func (b *breakpoints) rebind(rc *sess.Session) {
	for _, u := range b.all() {
		if nb, ok := rc.Breakpoint(u.b.ID); ok {
			u.b = nb
		}
	}
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

// request is one breakpoint of a set*Breakpoints request.
type request struct {
	key  string // what names it again in a later request: line, function, address
	spec sess.Spec
	opts sess.Options
	line int // source breakpoints: the requested line
	path string
	err  error // the request itself is bad (an unreadable address)
}

// replace applies a set*Breakpoints request to the client's set of one
// kind: a breakpoint the request names again keeps its session breakpoint
// and hit count, with the new options (clients send a source's whole list
// whenever one of its breakpoints changes); the others go, new ones are
// set. Bad options are answered as an unverified breakpoint carrying the
// error.
func (ss *session) replace(kind bpKind, old []*clientBP, reqs []request) ([]*clientBP, []dap.Breakpoint) {
	byKey := map[string]*clientBP{}
	for _, u := range old {
		if byKey[u.key] == nil {
			byKey[u.key] = u
		}
	}
	reused := map[*clientBP]bool{}
	var kept []*clientBP
	out := make([]dap.Breakpoint, 0, len(reqs))
	for _, r := range reqs {
		if r.err != nil {
			out = append(out, dap.Breakpoint{Message: r.err.Error()})
			continue
		}
		if u := byKey[r.key]; u != nil {
			delete(byKey, r.key)
			reused[u] = true
			if err := ss.rc.Change(u.b, r.opts); err != nil {
				ss.unset([]*clientBP{u})
				out = append(out, dap.Breakpoint{Message: err.Error(), Line: r.line})
				continue
			}
			kept = append(kept, u)
			out = append(out, ss.describe(u))
			continue
		}
		b, err := ss.rc.Set(r.spec, r.opts)
		if err != nil {
			bad := dap.Breakpoint{Message: err.Error(), Line: r.line}
			if r.path != "" {
				bad.Source = &dap.Source{Path: r.path}
			}
			out = append(out, bad)
			continue
		}
		u := &clientBP{kind: kind, key: r.key, path: r.path, line: r.line, b: b}
		kept = append(kept, u)
		out = append(out, ss.describe(u))
	}
	for _, u := range old {
		if !reused[u] {
			ss.unset([]*clientBP{u})
		}
	}
	return kept, out
}

func (ss *session) unset(list []*clientBP) {
	for _, u := range list {
		if err := ss.rc.Delete(u.b.ID); err != nil {
			ss.log.Debug("dap: clearing breakpoint", "id", u.b.ID, "err", err)
		}
	}
}

func (ss *session) setSourceBreakpoints(path string, list []dap.SourceBreakpoint) []dap.Breakpoint {
	reqs := make([]request, 0, len(list))
	for _, sb := range list {
		reqs = append(reqs, request{key: strconv.Itoa(sb.Line), path: path, line: sb.Line,
			spec: sess.Spec{Kind: sess.AtLine, File: path, Line: sb.Line},
			opts: sess.Options{Cond: sb.Condition, HitCond: sb.HitCondition, LogMsg: sb.LogMessage}})
	}
	kept, out := ss.replace(bpSource, ss.bps.bySource[path], reqs)
	if len(kept) == 0 {
		delete(ss.bps.bySource, path)
	} else {
		ss.bps.bySource[path] = kept
	}
	return out
}

func (ss *session) setFunctionBreakpoints(list []dap.FunctionBreakpoint) []dap.Breakpoint {
	reqs := make([]request, 0, len(list))
	for _, fb := range list {
		name := strings.TrimSpace(fb.Name)
		reqs = append(reqs, request{key: name, spec: sess.Spec{Kind: sess.AtFunc, Func: name},
			opts: sess.Options{Cond: fb.Condition, HitCond: fb.HitCondition}})
	}
	var out []dap.Breakpoint
	ss.bps.funcs, out = ss.replace(bpFunction, ss.bps.funcs, reqs)
	return out
}

func (ss *session) setInstructionBreakpoints(list []dap.InstructionBreakpoint) []dap.Breakpoint {
	reqs := make([]request, 0, len(list))
	for _, ib := range list {
		addr, err := parseAddr(ib.InstructionReference)
		if err != nil {
			reqs = append(reqs, request{err: err})
			continue
		}
		addr += uint64(int64(ib.Offset))
		reqs = append(reqs, request{key: hexAddr(addr), spec: sess.Spec{Kind: sess.AtAddr, Addr: addr},
			opts: sess.Options{Cond: ib.Condition, HitCond: ib.HitCondition}})
	}
	var out []dap.Breakpoint
	ss.bps.instrs, out = ss.replace(bpInstruction, ss.bps.instrs, reqs)
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
