package dap

import (
	"fmt"

	"github.com/google/go-dap"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
)

// With the launch option followForks, a fork child is a second process of
// the session: at a fork the session goes on in the child (its threads
// join the thread list, named with their process, the breakpoints apply
// to it, as the session copied them), and the parent waits, stopped,
// parked. When the child ends, its end is told (thread events and an
// rseqProcessExited event) and the parent goes on where it forked. The
// last process to end ends the session as before. One process runs at a
// time: the parent of a fork usually waits for its child anyway.

// parked is a process waiting for the fork child the session followed.
type parked struct {
	proc *ptrace.Process
	rc   *sess.Session
	cur  int
}

// ProcessExitedEvent tells that one process of the session (a fork child
// it followed) ended; the session goes on with its parent.
type ProcessExitedEvent struct {
	dap.Event
	Body ProcessExitedBody `json:"body"`
}

// ProcessExitedBody is the rseqProcessExited event's body.
type ProcessExitedBody struct {
	Pid      int `json:"pid"`
	ExitCode int `json:"exitCode"`
}

// followForks turns the following of fork children on (launch option).
// Runs on the ptrace thread.
func (ss *session) followForks() error {
	return ss.rc.SetForkPolicy(sess.ForkPolicy{Child: true, KeepBoth: true})
}

// forked is the session's Forked event: the client hears of the new
// process as it heard of the first.
func (ss *session) forked(parent, child *sess.Session, follow bool) {
	if child == nil {
		return
	}
	kind := "fork"
	if child.Vforked() {
		kind = "vfork"
	}
	ss.srv.sendOutput("console", fmt.Sprintf("rseqdbg: process %d %sed process %d; debugging the child, the parent waits for it\n",
		parent.T.Pid(), kind, child.T.Pid()))
	ss.srv.send(&dap.ProcessEvent{Event: event("process"), Body: dap.ProcessEventBody{
		Name: fmt.Sprintf("%s (%s child %d)", ss.program, kind, child.T.Pid()), SystemProcessId: child.T.Pid(),
		IsLocalProcess: true, StartMethod: "attach", PointerSize: 64}})
}

// adopt makes a followed fork child the session's current process; the
// current one is parked. Runs on the ptrace thread.
func (ss *session) adopt(child *sess.Session) bool {
	p, ok := child.T.(*ptrace.Process)
	if !ok {
		ss.log.Warn("dap: fork child is not a native process", "pid", child.T.Pid())
		return false
	}
	ss.mu.Lock()
	ss.parked = append(ss.parked, &parked{proc: ss.proc, rc: ss.rc, cur: ss.cur})
	ss.setProcess(p, child)
	ss.cur = p.Pid()
	ss.mu.Unlock()
	return true
}

// resumeParent ends a fork child's part: it is told, retired, and the
// last parked process becomes current again, with the client's current
// breakpoints (those of child). Runs on the ptrace thread.
func (ss *session) resumeParent(st *sess.Stop, child *sess.Session) {
	code := st.Code
	if st.Kind == stepper.StopKilled {
		code = 128 + st.Sig
	}
	pid := ss.proc.Pid()
	ss.srv.sendOutput("console", fmt.Sprintf("rseqdbg: process %d exited with code %d\n", pid, code))
	for _, t := range child.T.Threads() {
		delete(ss.known, t)
		ss.srv.send(&dap.ThreadEvent{Event: event("thread"), Body: dap.ThreadEventBody{Reason: "exited", ThreadId: t}})
	}
	delete(ss.known, pid)
	ss.srv.send(&dap.ThreadEvent{Event: event("thread"), Body: dap.ThreadEventBody{Reason: "exited", ThreadId: pid}})
	ss.srv.send(&ProcessExitedEvent{Event: event("rseqProcessExited"), Body: ProcessExitedBody{Pid: pid, ExitCode: code}})
	ss.mu.Lock()
	ss.retired = append(ss.retired, ss.proc)
	pk := ss.parked[len(ss.parked)-1]
	ss.parked = ss.parked[:len(ss.parked)-1]
	ss.setProcess(pk.proc, pk.rc)
	ss.cur = pk.cur
	ss.mu.Unlock()
	// Breakpoints the client changed meanwhile changed in the child only.
	ss.rc.CopyBreakpoints(child)
	ss.bps.rebind(ss.rc)
}

// setProcess points the session at one process; ss.mu is held.
func (ss *session) setProcess(p *ptrace.Process, rc *sess.Session) {
	ss.proc, ss.eng, ss.rc = p, rc.Eng, rc
	ss.core, ss.dbg, ss.ev = rc.Src, rc.Info, rc.Eval
	ss.invalidate()
}

// following runs op and follows what forks make of it: a continue goes on
// in a followed child, and in its parent once the child ended; a step a
// fork ended stops in the child. Without followForks it is op.
func (ss *session) following(kind runKind, op func() (*sess.Stop, error)) (*sess.Stop, error) {
	st, err := op()
	for err == nil && st != nil {
		switch {
		case st.Fork != nil:
			if !ss.adopt(st.Fork) {
				return st, nil
			}
			if kind != runContinue {
				// A line or instruction step went on in the child and
				// stopped there; a step out stops where the child
				// starts.
				if st.Kind != stepper.StopFork {
					st.Fork = nil
					return st, nil
				}
				return &sess.Stop{Stop: &stepper.Stop{Kind: stepper.StopFork, Tid: ss.cur}}, nil
			}
			st, err = ss.rc.Continue(ss.cur)
		case (st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled) && len(ss.parked) > 0:
			ss.resumeParent(st, ss.rc)
			st, err = ss.rc.Continue(ss.cur)
		default:
			return st, err
		}
	}
	return st, err
}

// parkedOwner returns the parked process that has thread tid, or nil.
// Runs on the ptrace thread.
func (ss *session) parkedOwner(tid int) *parked {
	for _, pk := range ss.parked {
		for _, t := range pk.proc.Threads() {
			if t == tid {
				return pk
			}
		}
	}
	return nil
}
