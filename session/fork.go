package session

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
)

// ForkPolicy is what a Continue does when the program forks, as gdb's
// follow-fork-mode and detach-on-fork say. The zero value is gdb's default
// and what happens without FollowForks: the parent goes on and the child
// is let go.
type ForkPolicy struct {
	// Child: the debugger goes on with the child (follow-fork-mode child).
	Child bool
	// KeepBoth: the process not followed stays under the debugger,
	// stopped (detach-on-fork off); otherwise it is detached.
	KeepBoth bool
}

// ErrNoForks says the target cannot keep fork children (a remote stub).
var ErrNoForks = errors.New("this target cannot follow forks")

// FollowForks makes the target keep fork children under the debugger, so
// that a resumption ends with a StopFork whose child Fork takes. It fails
// with ErrNoForks when the target cannot (checked once here). vfork
// children are kept too while on when FollowVforks says so.
func (s *Session) FollowForks(on bool) error {
	ff, ok := s.T.(target.ForkFollower)
	if !ok {
		return ErrNoForks
	}
	ff.KeepForks(on)
	ff.KeepVforks(on && s.vforks, s.vforkDone)
	s.forks = nil
	if on {
		s.forks = ff
	}
	return nil
}

// FollowVforks says whether vfork children are kept too while forks are
// followed (FollowForks), sharing the parent's memory until they exec or
// exit (target.ForkFollower). With reportDone, the end of that sharing is
// a stop (StopVforkDone) for a client that kept its breakpoints out of the
// parent meanwhile (gdb's vforkdone); otherwise it passes silently.
func (s *Session) FollowVforks(on, reportDone bool) {
	s.vforks, s.vforkDone = on, on && reportDone
	if s.forks != nil {
		s.forks.KeepVforks(on, s.vforkDone)
	}
}

// SetForkPolicy sets what Continue does at a fork or vfork; it turns the
// keeping of fork and vfork children on, since any policy but the default
// needs the child. The end of a vfork child's sharing passes silently: the
// policy has already let go of the process not followed.
func (s *Session) SetForkPolicy(p ForkPolicy) error {
	s.FollowVforks(p != ForkPolicy{}, false)
	if err := s.FollowForks(p != ForkPolicy{}); err != nil && p != (ForkPolicy{}) {
		return err
	}
	s.forkPolicy = p
	return nil
}

// ForkPolicy returns the policy Continue follows at a fork.
func (s *Session) ForkPolicy() ForkPolicy { return s.forkPolicy }

// Fork takes the child of a StopFork as a session of its own: an engine
// over the child, the same breakpoints and declared regions, the same
// signal policy and settings. The child's memory is a copy of the
// parent's, breakpoints included, so it is never without them; the ones
// the parent had inserted only for itself (a step's temporary ones) leave
// it. It runs inside Do, like the parent's methods, and the child shares
// the parent's Do.
func (s *Session) Fork(pid int) (*Session, error) {
	if s.forks == nil {
		return nil, ErrNoForks
	}
	ct, drop, err := s.forks.ForkChild(pid)
	if err != nil {
		return nil, err
	}
	eng, err := stepper.NewInDo(ct, s.Eng.Options())
	if err != nil {
		// Let it go clean: no int3 of ours may stay in its memory.
		if derr := drop(); derr != nil {
			s.logDebug("cleaning a fork child", derr)
		}
		ct.Detach()
		return nil, fmt.Errorf("loading regions of fork child %d: %w", pid, err)
	}
	eng.SetSignalPolicy(s.Eng.Policy())
	eng.SetVDSO(s.Eng.VDSO())
	var c *Session
	if s.bare {
		c = NewBare(eng)
	} else {
		c = New(eng)
	}
	c.Events = s.Events
	c.forkPolicy = s.forkPolicy
	c.vforks, c.vforkDone = s.vforks, s.vforkDone
	if s.forks != nil {
		if err := c.FollowForks(true); err != nil {
			s.logDebug("following the forks of a fork child", err)
		}
	}
	c.CopyBreakpoints(s)
	for _, d := range s.declarations {
		if _, err := c.Declare(d); err != nil {
			s.logDebug("declaring a region in a fork child", err)
		}
	}
	if err := drop(); err != nil {
		return c, err
	}
	return c, nil
}

// takeFork applies the fork policy to a StopFork: the child is taken,
// and whichever of the two processes is not followed is let go unless
// KeepBoth. It returns the child when the policy follows it.
func (s *Session) takeFork(st *stepper.Stop) *Session {
	p := s.forkPolicy
	child, err := s.Fork(st.Child)
	if err != nil {
		slog.Warn("taking a fork child", "pid", st.Child, "err", err)
	}
	if child == nil {
		if s.Events.Forked != nil {
			s.Events.Forked(s, nil, false)
		}
		return nil
	}
	child.vforked = st.Vfork
	if s.Events.Forked != nil {
		s.Events.Forked(s, child, p.Child)
	}
	if !p.KeepBoth {
		let := child
		if p.Child {
			let = s
		}
		if err := let.Release(); err != nil {
			slog.Warn("detaching after a fork", "pid", let.T.Pid(), "err", err)
		}
	}
	if p.Child {
		return child
	}
	return nil
}

// Vforked says the session's process was made by vfork: it shared its
// parent's memory until it exec'd or exited, and a parent let go at the
// vfork is let go by the target only then (target.ForkFollower).
func (s *Session) Vforked() bool { return s.vforked }

// CopyBreakpoints makes s's breakpoints copies of from's, with the same
// numbers (as gdb's in both processes of a fork): a fork child gets its
// parent's, and a parent that waited for its child the ones the user
// changed meanwhile.
func (s *Session) CopyBreakpoints(from *Session) {
	s.DeleteAll()
	for _, b := range from.bps {
		nb, err := s.Set(b.Spec, b.Options)
		if err != nil {
			s.logDebug("copying a breakpoint", err)
			continue
		}
		nb.ID, nb.Hits = b.ID, b.Hits
	}
	s.nextID = max(s.nextID, from.nextID)
}

// Release lets a process of a session go: every breakpoint removed, then
// detached. A fork child not followed goes this way.
func (s *Session) Release() error {
	if s.Eng.Exited() {
		return nil
	}
	s.EndInspections()
	s.DeleteAll()
	return s.Eng.Detach()
}
