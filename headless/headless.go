// Package headless runs gdb-like command scripts against the core, for CI
// and scripts: text output for people, one JSON object per event for tools.
package headless

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rseqdbg/rseqdbg/eval"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/source"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"github.com/rseqdbg/rseqdbg/unwind"
	"github.com/rseqdbg/rseqdbg/x86"
)

// Options configure a session.
type Options struct {
	JSON bool
	Out  io.Writer
}

// Session is one debugged process driven by commands. The breakpoints
// and the run control are the shared session layer's; this package turns
// commands into its calls and its stops into text or JSON.
type Session struct {
	proc     *ptrace.Process
	eng      *stepper.Engine
	sess     *session.Session
	core     *source.Core
	syms     *symbols.Table
	uw       *unwind.Unwinder
	cur      int
	json     bool
	mu       sync.Mutex // serializes output with the program's forwarded output
	out      io.Writer
	launched bool
	output   session.Output
	displays []display
	nextDisp int
	// retired are the processes let go after a fork the session followed
	// into the child, or that ended while others remained; closed with
	// the session (outside Do).
	retired []*ptrace.Process
	// parked are the processes kept stopped with detach-on-fork off: a
	// parent waiting for the child followed, or a child the parent left.
	// The last becomes current when the current one ends.
	parked []parkedProc
	// forkPolicy is what set follow-fork-mode and detach-on-fork chose.
	forkPolicy session.ForkPolicy
	// quitting makes every command after Quit a no-op; running is the
	// engine Quit interrupts (the current process changes at a fork).
	quitting  atomic.Bool
	running   atomic.Pointer[stepper.Engine]
	closed    atomic.Bool
	closeOnce sync.Once
	exitCode  int
}

// parkedProc is a process kept, stopped, while another is debugged.
type parkedProc struct {
	proc *ptrace.Process
	sess *session.Session
	cur  int
	// child: a fork child the session did not follow (its parent may wait
	// for it), rather than a parent waiting for its child.
	child bool
}

// display is an expression printed at every stop (gdb's display).
type display struct {
	id   int
	expr string
}

// Launch starts the program stopped at its first instruction.
func Launch(lo ptrace.LaunchOptions, o Options) (*Session, error) {
	s := newSession(o)
	if o.JSON {
		// Program output becomes output events, so stdout stays parseable.
		s.output = session.Output{Lines: true, Sink: func(stream, text string) {
			s.emit(map[string]any{"event": "output", "stream": stream, "text": text})
		}}
		w1, w2, err := s.output.Pipes()
		if err != nil {
			return nil, fmt.Errorf("output pipes: %w", err)
		}
		lo.Stdout, lo.Stderr = w1, w2
		defer w1.Close()
		defer w2.Close()
	}
	p, err := ptrace.Launch(lo)
	if err != nil {
		return nil, err
	}
	s.launched = true
	return s, s.start(p)
}

// Attach stops a running process.
func Attach(pid int, o Options) (*Session, error) {
	s := newSession(o)
	p, err := ptrace.Attach(pid)
	if err != nil {
		return nil, err
	}
	return s, s.start(p)
}

func newSession(o Options) *Session {
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	return &Session{json: o.JSON, out: out}
}

func (s *Session) start(p *ptrace.Process) error {
	s.proc = p
	eng, err := stepper.New(p, stepper.Options{})
	if err != nil {
		p.Do(func() { p.Kill() })
		p.Close()
		return err
	}
	s.eng = eng
	s.running.Store(eng)
	s.cur = p.Pid()
	eng.Do(func() {
		s.sess = session.New(eng)
		s.sess.Events = session.Events{
			Log: func(_ *session.Breakpoint, text string) {
				s.emit(map[string]any{"event": "log", "text": text}, text)
			},
			ConditionError: func(b *session.Breakpoint, err error) {
				s.errorf("breakpoint %d condition: %v (stopping)", b.ID, err)
			},
			Resolved: s.announce,
			Exec: func(path string) {
				s.emit(map[string]any{"event": "exec", "path": path},
					fmt.Sprintf("process %d is executing new program: %s", s.eng.Target().Pid(), path))
			},
			Forked: s.forked,
		}
		s.core = s.sess.Src
		s.syms, s.uw = s.core.Syms, s.core.Unwind
		for _, w := range eng.Warnings() {
			s.notice(w)
		}
		s.report(&session.Stop{Stop: &stepper.Stop{Kind: stepper.StopSignal, Tid: s.cur, Sig: 5}}, "entry")
	})
	return nil
}

// Close ends the session: kill a launched program, detach an attached one,
// or let it run to its end when keepRunning is set.
func (s *Session) Close(keepRunning bool) (exitCode int) {
	// The end of the script and a signal's Quit may both close.
	s.closeOnce.Do(func() {
		s.exitCode = s.close(keepRunning)
		s.closed.Store(true)
	})
	return s.exitCode
}

func (s *Session) close(keepRunning bool) (exitCode int) {
	s.proc.Do(func() {
		if keepRunning {
			exitCode = s.runAllToExit()
			return
		}
		for _, pk := range s.parked {
			s.letGo(pk.sess)
		}
		s.letGo(s.sess)
	})
	s.proc.Close()
	for _, pk := range s.parked {
		pk.proc.Close()
	}
	for _, p := range s.retired {
		p.Close()
	}
	// The program's last lines come after its exit; a loaded machine can
	// take a while to deliver them, but a grandchild holding the pipes
	// open must not keep rseqdbg forever.
	s.output.Wait(30 * time.Second)
	return exitCode
}

// Quit ends the script from another goroutine (a signal): the command
// running is interrupted, later ones do nothing. Close then lets the
// program go.
func (s *Session) Quit() {
	s.quitting.Store(true)
	// Again until the session is closed: an interrupt that comes as a
	// command starts is not that command's.
	go func() {
		for !s.closed.Load() {
			if eng := s.running.Load(); eng != nil {
				eng.Interrupt()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// ErrQuit ends a script early.
var ErrQuit = errors.New("quit")

// Exec runs one command. Command errors are reported, not returned: a
// script goes on after a failed command, as gdb's -ex do. Only ErrQuit is
// returned, to end the script.
func (s *Session) Exec(line string) error {
	var err error
	s.eng.Do(func() {
		if s.quitting.Load() {
			err = ErrQuit
			return
		}
		err = s.exec(line)
	})
	if errors.Is(err, ErrQuit) {
		return err
	}
	if err != nil {
		s.errorf("%s: %v", line, err)
	}
	return nil
}

func (s *Session) exec(line string) error {
	cmd, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	rest = strings.TrimSpace(rest)
	if strings.HasPrefix(cmd, "x/") || cmd == "x" {
		return s.examine(cmd, rest)
	}
	switch cmd {
	case "break", "b":
		return s.breakCmd(rest, false)
	case "tbreak":
		return s.breakCmd(rest, true)
	case "ignore":
		return s.ignoreCmd(rest)
	case "until", "u", "advance":
		return s.untilCmd(rest)
	case "display":
		return s.displayCmd(rest)
	case "undisplay":
		return s.undisplayCmd(rest)
	case "delete", "d":
		return s.deleteCmd(rest)
	case "continue", "c":
		return s.continueCmd(rest)
	case "stepi", "si":
		return s.stepiCmd(rest, false)
	case "nexti", "ni":
		return s.stepiCmd(rest, true)
	case "step", "s":
		return s.stepCmd(rest, false)
	case "next", "n":
		return s.stepCmd(rest, true)
	case "finish":
		return s.finishCmd()
	case "bt", "backtrace", "where":
		return s.backtrace()
	case "info", "i":
		return s.info(rest)
	case "thread":
		return s.threadCmd(rest)
	case "print", "p":
		return s.printCmd(rest)
	case "kill", "k":
		if err := s.eng.Kill(); err != nil {
			return err
		}
		s.emit(map[string]any{"event": "killed"}, "[process killed]")
		return nil
	case "declare":
		return s.declareCmd(rest)
	case "undeclare":
		n, err := s.sess.Undeclare(rest)
		if err != nil {
			return err
		}
		s.emit(map[string]any{"event": "undeclared", "count": n}, fmt.Sprintf("%d declared region(s) removed", n))
		return nil
	case "quit", "q":
		return ErrQuit
	case "echo":
		s.emit(map[string]any{"event": "echo", "text": rest}, rest)
		return nil
	case "set":
		return s.setCmd(rest)
	case "abort":
		return s.abortCmd()
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// declareCmd is `declare START END [NAME]`: START and END are addresses or
// symbols with an offset.
func (s *Session) declareCmd(arg string) error {
	f := strings.Fields(arg)
	if len(f) < 2 || len(f) > 3 {
		return errors.New("usage: declare START END [NAME]")
	}
	d := session.Declaration{Start: f[0], End: f[1]}
	if len(f) == 3 {
		d.Name = f[2]
	}
	r, err := s.sess.Declare(d)
	if err != nil {
		return err
	}
	s.emit(map[string]any{"event": "declared", "region": regionJSON(r)},
		fmt.Sprintf("Declared region %s [%#x, %#x): stepping into it runs it whole", r.Name, r.Start, r.End))
	return nil
}

func (s *Session) live() error {
	if s.eng.Exited() {
		return errors.New("the program is not being run")
	}
	return nil
}

// emit prints one event: JSON, or the text form.
func (s *Session) emit(obj map[string]any, text ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.json {
		b, _ := json.Marshal(obj)
		fmt.Fprintf(s.out, "%s\n", b)
		return
	}
	if len(text) > 0 {
		fmt.Fprintln(s.out, text[0])
	} else if t, ok := obj["text"].(string); ok {
		fmt.Fprint(s.out, t)
	}
}

func (s *Session) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.emit(map[string]any{"event": "error", "message": msg}, "error: "+msg)
}

func (s *Session) notice(msg string) {
	s.emit(map[string]any{"event": "notice", "message": msg}, "note: "+msg)
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }

// where describes a PC: function+offset and source position.
func (s *Session) where(pc uint64) (fn, file string, line int) {
	fn = s.core.Describe(pc)
	if l, ok := s.syms.LineAt(pc); ok {
		file, line = l.File, l.Line
	}
	return
}

func regionJSON(r *regions.Region) map[string]any {
	m := map[string]any{"kind": r.Kind.String(), "name": r.Name, "object": r.Object,
		"start": hex(r.Start), "end": hex(r.End), "source": r.Source}
	if r.Kind == regions.KindCriticalSection {
		m["commit"] = hex(r.End)
		m["abort"] = hex(r.Abort)
	}
	return m
}

// report prints a stop and its region crossings.
func (s *Session) report(st *session.Stop, reason string) {
	for _, c := range st.Crossed {
		m := regionJSON(c.Region)
		m["event"] = "region"
		m["outcome"] = c.Outcome.String()
		m["at"] = hex(c.At)
		m["aborts"] = c.Aborts
		if c.Forced {
			m["forced"] = true
		}
		text := fmt.Sprintf("  %s %s [%#x, %#x): %s at %#x", c.Region.Kind, c.Region.Name, c.Region.Start, c.Region.End, c.Outcome, c.At)
		s.emit(m, text)
	}
	if reason == "" {
		reason = st.Kind.String()
	}
	if st.Fork != nil {
		// A step followed into the child: a line or instruction step
		// went on there, and stops in the child; a finish or until that
		// the fork ended stops where the child starts.
		s.adopt(st.Fork)
		if st.Kind == stepper.StopFork {
			st = &session.Stop{Stop: &stepper.Stop{Kind: stepper.StopFork, Tid: s.cur}}
		}
	}
	switch st.Kind {
	case stepper.StopExited:
		s.emit(map[string]any{"event": "exited", "code": st.Code, "pid": s.proc.Pid()}, fmt.Sprintf("[process exited with code %d]", st.Code))
		// detach-on-fork off: the process kept goes on being debugged.
		s.unpark()
		return
	case stepper.StopKilled:
		s.emit(map[string]any{"event": "exited", "signal": st.Sig, "pid": s.proc.Pid()}, fmt.Sprintf("[process killed by signal %d]", st.Sig))
		s.unpark()
		return
	}
	if st.Tid != 0 {
		s.cur = st.Tid
	}
	pc := st.PC
	if r, err := s.proc.Regs(s.cur); err == nil {
		pc = r.Rip
	}
	fn, file, line := s.where(pc)
	m := map[string]any{"event": "stop", "reason": reason, "thread": s.cur, "pc": hex(pc), "function": fn}
	text := fmt.Sprintf("Thread %d stopped (%s) at %#x in %s", s.cur, reason, pc, fn)
	if file != "" {
		m["file"], m["line"] = file, line
		text += fmt.Sprintf(" at %s:%d", file, line)
	}
	if st.Sig != 0 && st.Kind == stepper.StopSignal {
		m["signal"] = st.Sig
		text += fmt.Sprintf(" signal %d", st.Sig)
	}
	if len(st.Hits) > 0 {
		m["breakpoint"] = st.Hits[0].ID
		text += fmt.Sprintf(" breakpoint %d", st.Hits[0].ID)
	}
	if st.Inside == nil {
		st.Inside = s.eng.RegionAt(pc)
		if st.Inside != nil && st.Inside.Kind != regions.KindCriticalSection {
			st.Inside = nil
		}
	}
	if st.Inspect == nil && s.eng.Inspect() {
		st.Inspect = s.eng.InspectionAt(s.cur, pc)
	}
	switch {
	case st.Inspect != nil:
		in := regionJSON(st.Inspect.Region)
		in["inspect"] = true
		in["offset"], in["length"] = st.Inspect.Offset, st.Inspect.Length
		if st.Inspect.InCallee {
			in["in_callee"] = true
		}
		m["inside"] = in
		text += "\n  " + session.InspectText(st.Inspect)
	case st.Inside != nil:
		m["inside"] = regionJSON(st.Inside)
		text += fmt.Sprintf("\n  stopped inside critical section %s: the kernel will abort it when the thread resumes", st.Inside.Name)
	}
	if st.Note != "" {
		m["note"] = st.Note
		text += "\n  " + st.Note
	}
	s.emit(m, text)
	s.showDisplays()
}

// spec parses a location: FUNCTION, FILE:LINE or *EXPR (an address
// expression evaluated now: *0x401000, *$rip, *main+4).
func (s *Session) spec(loc string) (session.Spec, error) {
	if strings.HasPrefix(loc, "*") {
		v, err := s.value(strings.TrimSpace(loc[1:]))
		return session.Spec{Kind: session.AtAddr, Addr: v}, err
	}
	if file, ln, ok := strings.Cut(loc, ":"); ok {
		n, err := strconv.Atoi(ln)
		if err != nil {
			return session.Spec{}, fmt.Errorf("bad line number in %q", loc)
		}
		return session.Spec{Kind: session.AtLine, File: file, Line: n}, nil
	}
	return session.Spec{Kind: session.AtFunc, Func: loc}, nil
}

func (s *Session) breakCmd(arg string, temporary bool) error {
	if err := s.live(); err != nil {
		return err
	}
	loc, condText, _ := strings.Cut(arg, " if ")
	loc = strings.TrimSpace(loc)
	if loc == "" {
		r, err := s.proc.Regs(s.cur)
		if err != nil {
			return err
		}
		loc = fmt.Sprintf("*%#x", r.Rip)
	}
	sp, err := s.spec(loc)
	if err != nil {
		return err
	}
	bp, err := s.sess.Set(sp, session.Options{Cond: condText, Temp: temporary})
	if err != nil {
		return err
	}
	if bp.Pending() {
		s.emit(map[string]any{"event": "breakpoint", "id": bp.ID, "pending": loc},
			fmt.Sprintf("Breakpoint %d pending on %s: it is set when a library that has it loads", bp.ID, loc))
		return nil
	}
	s.announce(bp)
	return nil
}

// announce says where a breakpoint went, when it is set or a pending one
// finds its code.
func (s *Session) announce(bp *session.Breakpoint) {
	what := "Breakpoint"
	if bp.Temp {
		what = "Temporary breakpoint"
	}
	for _, a := range bp.Addrs {
		fn, file, line := s.where(a)
		text := fmt.Sprintf("%s %d at %#x: %s", what, bp.ID, a, fn)
		if file != "" {
			text += fmt.Sprintf(" (%s:%d)", file, line)
		}
		m := map[string]any{"event": "breakpoint", "id": bp.ID, "pc": hex(a), "function": fn, "file": file, "line": line}
		if bp.Temp {
			m["temporary"] = true
		}
		if r := s.sess.InsideCS(a); r != nil {
			m["inside"] = regionJSON(r)
			text += fmt.Sprintf("\n  inside critical section %s: each hit stops one attempt; continuing runs it to its commit", r.Name)
		}
		s.emit(m, text)
	}
}

func (s *Session) deleteCmd(arg string) error {
	if arg == "" {
		s.sess.DeleteAll()
		return nil
	}
	for _, f := range strings.Fields(arg) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("bad breakpoint number %q", f)
		}
		if err := s.sess.Delete(id); err != nil {
			return err
		}
	}
	return nil
}

// ignoreCmd is gdb's ignore N COUNT: the next COUNT hits of breakpoint N
// whose condition holds do not stop, whatever runs the program.
func (s *Session) ignoreCmd(arg string) error {
	f := strings.Fields(arg)
	if len(f) != 2 {
		return errors.New("usage: ignore N COUNT")
	}
	id, err1 := strconv.Atoi(f[0])
	n, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || n < 0 {
		return fmt.Errorf("bad arguments %q: want ignore N COUNT", arg)
	}
	bp, ok := s.sess.Breakpoint(id)
	if !ok {
		return fmt.Errorf("no breakpoint %d", id)
	}
	bp.Ignore = n
	s.emit(map[string]any{"event": "notice", "message": fmt.Sprintf("will ignore next %d crossings of breakpoint %d", n, id)},
		fmt.Sprintf("Will ignore next %d crossings of breakpoint %d.", n, id))
	return nil
}

// continueCmd resumes; `continue N` ignores the current breakpoint N-1
// more times, as in gdb.
func (s *Session) continueCmd(arg string) error {
	if err := s.live(); err != nil {
		return err
	}
	if arg != "" {
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			return fmt.Errorf("bad count %q", arg)
		}
		if r, err := s.proc.Regs(s.cur); err == nil {
			for _, bp := range s.sess.At(r.Rip) {
				bp.Ignore = n - 1
				s.emit(map[string]any{"event": "notice", "message": fmt.Sprintf("will ignore next %d crossings of breakpoint %d", n-1, bp.ID)},
					fmt.Sprintf("Will ignore next %d crossings of breakpoint %d.", n-1, bp.ID))
			}
		}
	}
	st, err := s.sess.Continue(s.cur)
	for err == nil && st.Fork != nil {
		// follow-fork-mode child: the continue goes on in the child.
		s.adopt(st.Fork)
		st, err = s.sess.Continue(s.cur)
	}
	if err != nil {
		return err
	}
	s.report(st, "")
	return nil
}

// setForkPolicy records what the user set and applies it. detach-on-fork
// off applies only when following the child: one process runs at a time,
// and a parent that waits for a kept child (as most do) would wait for
// good, where the followed child's parent simply waits its turn.
func (s *Session) setForkPolicy(pol session.ForkPolicy) error {
	eff := pol
	if !eff.Child {
		eff.KeepBoth = false
	}
	if err := s.sess.SetForkPolicy(eff); err != nil {
		return err
	}
	s.forkPolicy = pol
	return nil
}

// letGo kills a launched process, detaches an attached one.
func (s *Session) letGo(ss *session.Session) {
	if ss.Eng.Exited() {
		return
	}
	if s.launched {
		ss.Eng.Kill()
		return
	}
	if err := ss.Eng.Detach(); err != nil {
		s.errorf("detaching: %v", err)
	}
}

// runAllToExit lets every process run to its end (rseqdbg run
// --continue) and returns the exit code of the one started first: kept
// fork children are let go (their parent may wait for them), then the
// current process runs, then each parent that waited for it. Forks on the
// way are not followed.
func (s *Session) runAllToExit() (exitCode int) {
	kept := s.parked[:0]
	for _, pk := range s.parked {
		if pk.child {
			if err := pk.sess.Release(); err != nil {
				s.errorf("letting a fork child go: %v", err)
			}
			s.retired = append(s.retired, pk.proc)
			continue
		}
		kept = append(kept, pk)
	}
	s.parked = kept
	for {
		if !s.eng.Exited() {
			s.sess.SetForkPolicy(session.ForkPolicy{})
			st, err := s.sess.RunToExit(s.cur)
			if err != nil {
				s.errorf("%v", err)
				return exitCode
			}
			if st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled {
				exitCode = st.Code
				s.report(st, "") // switches to the parked parent, if any
				continue
			}
		}
		if !s.unpark() {
			return exitCode
		}
	}
}

// unpark makes the last parked process current, the current one retired;
// false when none is parked.
func (s *Session) unpark() bool {
	if len(s.parked) == 0 {
		return false
	}
	pk := s.parked[len(s.parked)-1]
	s.parked = s.parked[:len(s.parked)-1]
	s.retired = append(s.retired, s.proc)
	s.setProcess(pk.proc, pk.sess, pk.cur)
	// Its tables follow what it loaded before it stopped at the fork.
	s.sess.Sync()
	s.emit(map[string]any{"event": "switched", "pid": pk.proc.Pid()}, fmt.Sprintf("[Switching to process %d]", pk.proc.Pid()))
	return true
}

// setProcess points the session at one process.
func (s *Session) setProcess(p *ptrace.Process, ss *session.Session, cur int) {
	s.proc, s.eng, s.sess = p, ss.Eng, ss
	s.running.Store(ss.Eng)
	s.core = ss.Src
	s.syms, s.uw = s.core.Syms, s.core.Unwind
	s.cur = cur
}

// forked tells of a fork the session took, as gdb does.
func (s *Session) forked(parent, child *session.Session, follow bool) {
	pp := parent.T.Pid()
	if child == nil {
		return
	}
	cp := child.T.Pid()
	m := map[string]any{"event": "fork", "parent": pp, "child": cp, "follow": "parent"}
	kind := "fork"
	if child.Vforked() {
		kind = "vfork"
		m["vfork"] = true
	}
	if !follow {
		if !parent.ForkPolicy().KeepBoth {
			s.emit(m, fmt.Sprintf("[Detaching after %s from child process %d]", kind, cp))
			return
		}
		// detach-on-fork off: the child waits, stopped, for its turn.
		if p, ok := child.T.(*ptrace.Process); ok {
			s.parked = append(s.parked, parkedProc{proc: p, sess: child, cur: cp, child: true})
		}
		s.emit(m, fmt.Sprintf("[New process %d, kept stopped]", cp))
		return
	}
	m["follow"] = "child"
	s.emit(m, fmt.Sprintf("[Attaching after process %d %s to child process %d]", pp, kind, cp))
	if !parent.ForkPolicy().KeepBoth {
		// A vfork parent is let go when its child execs or exits (gdb
		// says so then); it is no longer ours either way.
		s.emit(map[string]any{"event": "detached", "pid": pp}, fmt.Sprintf("[Detaching after %s from parent process %d]", kind, pp))
	}
}

// adopt makes a followed fork child the debugged process; the parent is
// parked (detach-on-fork off) or, detached, closed with the session.
func (s *Session) adopt(child *session.Session) {
	p, ok := child.T.(*ptrace.Process)
	if !ok {
		s.errorf("fork child %d is not a native process", child.T.Pid())
		return
	}
	if s.forkPolicy.KeepBoth {
		s.parked = append(s.parked, parkedProc{proc: s.proc, sess: s.sess, cur: s.cur})
	} else {
		s.retired = append(s.retired, s.proc)
	}
	s.setProcess(p, child, p.Pid())
}

func count(arg string) (int, error) {
	if arg == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad count %q", arg)
	}
	return n, nil
}

// stepiCmd steps N instructions; nexti steps over calls.
func (s *Session) stepiCmd(arg string, over bool) error {
	kind := session.StepInto
	if over {
		kind = session.StepOver
	}
	return s.steps(arg, kind, true)
}

// stepCmd is source-line stepping: next steps over calls, step enters
// functions that have line information.
func (s *Session) stepCmd(arg string, over bool) error {
	kind := session.StepInto
	if over {
		kind = session.StepOver
	}
	return s.steps(arg, kind, false)
}

// steps runs a step N times, ending early on any stop that is not the
// step's own (a breakpoint, a signal, the thread exiting).
func (s *Session) steps(arg string, kind session.StepKind, instr bool) error {
	if err := s.live(); err != nil {
		return err
	}
	n, err := count(arg)
	if err != nil {
		return err
	}
	var crossed []stepper.Crossing
	var st *session.Stop
	tid := s.cur
	for i := 0; i < n; i++ {
		st, err = s.sess.Step(tid, kind, instr, stepper.OthersRun)
		if err != nil {
			return err
		}
		crossed = append(crossed, st.Crossed...)
		if st.Kind != stepper.StopStep || st.Tid != tid {
			break
		}
	}
	st.Crossed = crossed
	s.report(st, "")
	return nil
}

func (s *Session) finishCmd() error {
	if err := s.live(); err != nil {
		return err
	}
	st, err := s.sess.Step(s.cur, session.StepOut, false, stepper.OthersRun)
	if err != nil {
		return err
	}
	s.report(st, "")
	if st.Kind == stepper.StopStep {
		if r, err := s.proc.Regs(s.cur); err == nil {
			s.emit(map[string]any{"event": "value", "name": "$rax", "value": r.Rax}, fmt.Sprintf("Value returned in $rax: %d (%#x)", int64(r.Rax), r.Rax))
		}
	}
	return nil
}

// untilCmd runs the current thread to a location (gdb's until LOCATION
// and advance); breakpoints on the way stop it.
func (s *Session) untilCmd(arg string) error {
	if err := s.live(); err != nil {
		return err
	}
	if arg == "" {
		return s.steps("", session.StepOver, false)
	}
	sp, err := s.spec(arg)
	if err != nil {
		return err
	}
	var addr uint64
	switch sp.Kind {
	case session.AtAddr:
		addr = sp.Addr
	case session.AtLine:
		addrs, _ := s.syms.LineAddrs(sp.File, sp.Line)
		if len(addrs) == 0 {
			return fmt.Errorf("no code at %s", arg)
		}
		addr = addrs[0]
	default:
		f, ok := s.syms.LookupFunc(sp.Func)
		if !ok {
			return fmt.Errorf("function %q not defined", sp.Func)
		}
		addr = s.syms.AfterPrologue(f)
	}
	st, err := s.sess.Until(s.cur, addr, stepper.OthersRun)
	if err != nil {
		return err
	}
	s.report(st, "")
	return nil
}

func (s *Session) backtrace() error {
	if err := s.live(); err != nil {
		return err
	}
	r, err := s.proc.Regs(s.cur)
	if err != nil {
		return err
	}
	frames, err := s.uw.Frames(r, s.proc.ReadMemory, 64)
	if err != nil && len(frames) == 0 {
		return err
	}
	var list []map[string]any
	var b strings.Builder
	for i, f := range frames {
		pc := f.PC
		lookup := f.LookupPC()
		fn, _, _ := s.where(pc)
		if i > 0 {
			fn, _, _ = s.where(lookup)
			if ff, ok := s.syms.Func(lookup); ok {
				fn = ff.Name
			}
		}
		_, file, line := s.where(lookup)
		m := map[string]any{"level": i, "pc": hex(pc), "function": fn, "cfa": hex(f.CFA)}
		fmt.Fprintf(&b, "#%-2d %#x in %s", i, pc, fn)
		if file != "" {
			m["file"], m["line"] = file, line
			fmt.Fprintf(&b, " at %s:%d", file, line)
		}
		if f.Synthesized {
			m["synthesized"] = true
			b.WriteString(" [synthesized CFI]")
		}
		if f.Signal {
			m["signal"] = true
			b.WriteString(" <signal handler called>")
		}
		b.WriteString("\n")
		list = append(list, m)
	}
	s.emit(map[string]any{"event": "backtrace", "thread": s.cur, "frames": list}, strings.TrimRight(b.String(), "\n"))
	return nil
}

func (s *Session) info(arg string) error {
	what, rest, _ := strings.Cut(arg, " ")
	switch what {
	case "regions":
		return s.infoRegions()
	case "threads":
		return s.infoThreads()
	case "registers", "reg", "r":
		return s.infoRegisters(strings.TrimSpace(rest))
	case "breakpoints", "break", "b":
		return s.infoBreakpoints()
	case "display":
		return s.showDisplays()
	case "stats":
		st := s.eng.Stats()
		s.emit(map[string]any{"event": "stats", "single_steps": st.SingleSteps, "region_runs": st.RegionRuns, "commits": st.Commits,
			"aborts": st.Aborts, "exits": st.ExitPoints, "interrupted": st.Interrupted, "signals_in_runs": st.SignalsInRuns, "discovered": st.Discovered, "steps_inside": st.StepsInside,
			"caught_inside": st.CaughtInside, "inspected_steps": st.InspectedSteps, "forced_aborts": st.ForcedAborts, "paced_signals": st.PacedSignals, "displaced": st.Displaced},
			fmt.Sprintf("single-steps %d, region runs %d, commits %d, aborts %d, other exits %d, interrupted %d, signals during runs %d, discovered at run time %d, inspected steps %d, forced aborts %d, paced signals %d, displaced %d",
				st.SingleSteps, st.RegionRuns, st.Commits, st.Aborts, st.ExitPoints, st.Interrupted, st.SignalsInRuns, st.Discovered, st.InspectedSteps, st.ForcedAborts, st.PacedSignals, st.Displaced))
		return nil
	}
	return fmt.Errorf("unknown info command %q", what)
}

// infoRegions streams the list, one region at a time, in both output
// forms: a program can have 100 000 regions, and a map per region held at
// once cost rseqdbg hundreds of megabytes.
func (s *Session) infoRegions() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := bufio.NewWriter(s.out)
	defer w.Flush()
	if s.json {
		w.WriteString(`{"event":"regions","regions":[`)
	}
	for i, r := range s.eng.Index().All() {
		var exits []string
		for _, x := range r.Exits {
			exits = append(exits, fmt.Sprintf("%#x:%s", x.Addr, x.Kind))
		}
		switch {
		case s.json:
			m := regionJSON(r)
			m["exits"] = exits
			b, _ := json.Marshal(m)
			if i > 0 {
				w.WriteByte(',')
			}
			w.Write(b)
		case r.Kind == regions.KindCriticalSection:
			fmt.Fprintf(w, "%-8s %-24s start %#x commit %#x abort %#x exits %s (%s, %s)\n", "rseq", r.Name, r.Start, r.End, r.Abort, strings.Join(exits, ","), r.Source, r.Object)
		default:
			fmt.Fprintf(w, "%-8s %-24s [%#x, %#x) (%s)\n", r.Kind, r.Name, r.Start, r.End, r.Object)
		}
	}
	if s.json {
		warnings, _ := json.Marshal(s.eng.Warnings())
		fmt.Fprintf(w, `],"warnings":%s}`+"\n", warnings)
		return nil
	}
	for _, warning := range s.eng.Warnings() {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	return nil
}

func (s *Session) infoThreads() error {
	var list []map[string]any
	var b strings.Builder
	for i, tid := range s.proc.Threads() {
		r, err := s.proc.Regs(tid)
		if err != nil {
			continue
		}
		fn, file, line := s.where(r.Rip)
		m := map[string]any{"id": i + 1, "tid": tid, "pc": hex(r.Rip), "function": fn, "current": tid == s.cur}
		mark := " "
		if tid == s.cur {
			mark = "*"
		}
		fmt.Fprintf(&b, "%s %d  Thread %d  %#x in %s", mark, i+1, tid, r.Rip, fn)
		if file != "" {
			fmt.Fprintf(&b, " at %s:%d", file, line)
		}
		if reg := s.eng.RegionAt(r.Rip); reg != nil && reg.Kind == regions.KindCriticalSection {
			m["inside"] = regionJSON(reg)
			fmt.Fprintf(&b, " [inside %s]", reg.Name)
		}
		b.WriteString("\n")
		list = append(list, m)
	}
	s.emit(map[string]any{"event": "threads", "threads": list}, strings.TrimRight(b.String(), "\n"))
	return nil
}

func (s *Session) threadCmd(arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("bad thread number %q", arg)
	}
	threads := s.proc.Threads()
	tid := n
	if n >= 1 && n <= len(threads) {
		tid = threads[n-1]
	}
	found := false
	for _, t := range threads {
		found = found || t == tid
	}
	if !found {
		return fmt.Errorf("no thread %d", n)
	}
	s.cur = tid
	r, _ := s.proc.Regs(tid)
	fn, _, _ := s.where(r.Rip)
	s.emit(map[string]any{"event": "thread", "tid": tid, "pc": hex(r.Rip), "function": fn}, fmt.Sprintf("[Switching to thread %d] %#x in %s", tid, r.Rip, fn))
	return nil
}

func (s *Session) infoRegisters(which string) error {
	if err := s.live(); err != nil {
		return err
	}
	r, err := s.proc.Regs(s.cur)
	if err != nil {
		return err
	}
	names := eval.RegNames
	if which != "" {
		names = strings.Fields(strings.ReplaceAll(which, "$", ""))
	}
	vals := map[string]string{}
	var b strings.Builder
	for _, n := range names {
		p := eval.RegField(&r, n)
		if p == nil {
			return fmt.Errorf("invalid register %q", n)
		}
		v := *p
		vals[n] = hex(v)
		fmt.Fprintf(&b, "%-9s %#-18x %d\n", n, v, int64(v))
	}
	s.emit(map[string]any{"event": "registers", "thread": s.cur, "registers": vals}, strings.TrimRight(b.String(), "\n"))
	return nil
}

// value evaluates an address or count expression to a number.
func (s *Session) value(expr string) (uint64, error) {
	v, err := s.sess.Evaluate(expr, s.cur)
	if err != nil {
		return 0, err
	}
	u, _, err := s.sess.Eval.Scalar(v)
	return u, err
}

// printCmd evaluates a C expression in the current thread's innermost
// frame, as DAP's evaluate does: variables from DWARF, $registers.
func (s *Session) printCmd(expr string) error {
	if err := s.live(); err != nil {
		return err
	}
	if strings.TrimSpace(expr) == "" {
		return errors.New("print what?")
	}
	v, err := s.sess.Evaluate(expr, s.cur)
	if err != nil {
		return err
	}
	text := s.sess.Eval.Format(v, false)
	s.emit(map[string]any{"event": "value", "name": expr, "value": text, "type": v.TypeName()}, fmt.Sprintf("%s = %s", expr, text))
	return nil
}

// displayCmd adds an expression printed at every stop, and prints it now;
// with no argument it prints them all.
func (s *Session) displayCmd(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return s.showDisplays()
	}
	if _, err := eval.Parse(expr); err != nil {
		return err
	}
	s.nextDisp++
	s.displays = append(s.displays, display{id: s.nextDisp, expr: expr})
	if !s.eng.Exited() {
		s.showDisplay(s.displays[len(s.displays)-1])
	}
	return nil
}

func (s *Session) undisplayCmd(arg string) error {
	if arg == "" {
		s.displays = nil
		return nil
	}
	for _, f := range strings.Fields(arg) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("bad display number %q", f)
		}
		kept := s.displays[:0]
		found := false
		for _, d := range s.displays {
			if d.id == id {
				found = true
				continue
			}
			kept = append(kept, d)
		}
		s.displays = kept
		if !found {
			return fmt.Errorf("no display %d", id)
		}
	}
	return nil
}

func (s *Session) showDisplays() error {
	for _, d := range s.displays {
		s.showDisplay(d)
	}
	return nil
}

// showDisplay prints one display; an expression that cannot be evaluated
// here (another function's local) says why, as gdb's does.
func (s *Session) showDisplay(d display) {
	v, err := s.sess.Evaluate(d.expr, s.cur)
	if err != nil {
		s.emit(map[string]any{"event": "display", "id": d.id, "name": d.expr, "error": err.Error()},
			fmt.Sprintf("%d: %s = <error: %v>", d.id, d.expr, err))
		return
	}
	text := s.sess.Eval.Format(v, false)
	s.emit(map[string]any{"event": "display", "id": d.id, "name": d.expr, "value": text, "type": v.TypeName()},
		fmt.Sprintf("%d: %s = %s", d.id, d.expr, text))
}

func (s *Session) infoBreakpoints() error {
	var list []map[string]any
	var b strings.Builder
	for _, bp := range s.sess.Breakpoints() {
		m := map[string]any{"id": bp.ID, "location": bp.Spec.String(), "hits": bp.Hits}
		fmt.Fprintf(&b, "%d  ", bp.ID)
		if bp.Pending() {
			m["pending"] = true
			fmt.Fprintf(&b, "<pending> %s", bp.Spec)
		}
		for i, a := range bp.Addrs {
			fn, _, _ := s.where(a)
			if i == 0 {
				m["pc"], m["function"] = hex(a), fn
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%#x in %s", a, fn)
		}
		fmt.Fprintf(&b, ", hit %d times", bp.Hits)
		if bp.Temp {
			m["temporary"] = true
			b.WriteString(", temporary")
		}
		if bp.Cond != "" {
			m["condition"] = bp.Cond
			fmt.Fprintf(&b, ", if %s", bp.Cond)
		}
		if bp.Ignore > 0 {
			m["ignore"] = bp.Ignore
			fmt.Fprintf(&b, ", ignore next %d", bp.Ignore)
		}
		b.WriteString("\n")
		list = append(list, m)
	}
	s.emit(map[string]any{"event": "breakpoints", "breakpoints": list}, strings.TrimRight(b.String(), "\n"))
	return nil
}

// examine implements x/NFU ADDR for x (hex) with b/h/w/g sizes and i.
func (s *Session) examine(cmd, arg string) error {
	if err := s.live(); err != nil {
		return err
	}
	spec := strings.TrimPrefix(strings.TrimPrefix(cmd, "x"), "/")
	n, size, format := 1, 4, byte('x')
	digits := strings.IndexFunc(spec, func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(spec)
	}
	if digits > 0 {
		n, _ = strconv.Atoi(spec[:digits])
	}
	for _, c := range spec[digits:] {
		switch c {
		case 'b':
			size = 1
		case 'h':
			size = 2
		case 'w':
			size = 4
		case 'g':
			size = 8
		case 'x', 'd', 'u', 'i':
			format = byte(c)
		default:
			return fmt.Errorf("unsupported format %q", c)
		}
	}
	if n < 1 || n > 4096 {
		return fmt.Errorf("bad count %d", n)
	}
	addr, err := s.value(arg)
	if err != nil {
		return err
	}
	if format == 'i' {
		return s.disassemble(addr, n)
	}
	buf := make([]byte, n*size)
	got, err := s.proc.ReadMemory(addr, buf)
	if got < len(buf) {
		return fmt.Errorf("cannot access memory at %#x: %v", addr+uint64(got), err)
	}
	var vals []string
	var b strings.Builder
	for i := 0; i < n; i++ {
		var v uint64
		for k := size - 1; k >= 0; k-- {
			v = v<<8 | uint64(buf[i*size+k])
		}
		var str string
		switch format {
		case 'd':
			str = strconv.FormatInt(signExtend(v, size), 10)
		case 'u':
			str = strconv.FormatUint(v, 10)
		default:
			str = fmt.Sprintf("0x%0*x", size*2, v)
		}
		vals = append(vals, str)
		if i%(16/size) == 0 {
			if i > 0 {
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "%#x:", addr+uint64(i*size))
		}
		b.WriteString("\t" + str)
	}
	s.emit(map[string]any{"event": "memory", "address": hex(addr), "values": vals}, b.String())
	return nil
}

func signExtend(v uint64, size int) int64 {
	shift := 64 - 8*size
	return int64(v<<shift) >> shift
}

func (s *Session) disassemble(addr uint64, n int) error {
	buf := make([]byte, n*15+16)
	got, _ := s.proc.ReadMemory(addr, buf)
	var list []map[string]any
	var b strings.Builder
	pc := addr
	for i := 0; i < n && pc-addr < uint64(got); i++ {
		in, err := x86.Decode(buf[pc-addr:got], pc)
		if err != nil {
			break
		}
		text := source.GNUSyntax(in, s.syms)
		mark := ""
		if r := s.eng.RegionAt(pc); r != nil && r.Kind == regions.KindCriticalSection {
			mark = " <" + r.Name + ">"
			if pc == r.Start {
				mark = " <critical section start>"
			}
		}
		list = append(list, map[string]any{"pc": hex(pc), "text": text, "function": s.syms.Describe(pc)})
		fmt.Fprintf(&b, "%#x <%s>:\t%s%s\n", pc, s.syms.Describe(pc), text, mark)
		pc = in.Next()
	}
	s.emit(map[string]any{"event": "disassembly", "instructions": list}, strings.TrimRight(b.String(), "\n"))
	return nil
}

// setCmd is `set inspect on|off`.
func (s *Session) setCmd(arg string) error {
	f := strings.Fields(arg)
	if len(f) == 2 && f[0] == "follow-fork-mode" && (f[1] == "parent" || f[1] == "child") {
		if err := s.live(); err != nil {
			return err
		}
		// As gdb's: after a fork the debugger goes on with the parent (the
		// child is let go clean) or with the child (the parent is
		// detached and runs on).
		pol := s.forkPolicy
		pol.Child = f[1] == "child"
		if err := s.setForkPolicy(pol); err != nil {
			return err
		}
		s.emit(map[string]any{"event": "follow-fork-mode", "mode": f[1]}, "follow-fork-mode: "+f[1])
		return nil
	}
	if len(f) == 2 && f[0] == "detach-on-fork" && (f[1] == "on" || f[1] == "off") {
		if err := s.live(); err != nil {
			return err
		}
		// off: the process not followed stays, stopped, and is debugged
		// once the one followed ends ([Switching to process P]).
		pol := s.forkPolicy
		pol.KeepBoth = f[1] == "off"
		if err := s.setForkPolicy(pol); err != nil {
			return err
		}
		text := "detach-on-fork: " + f[1]
		if pol.KeepBoth && !pol.Child {
			text += " (takes effect with follow-fork-mode child)"
		}
		s.emit(map[string]any{"event": "detach-on-fork", "on": f[1] == "on"}, text)
		return nil
	}
	if len(f) != 2 || (f[0] != "inspect" && f[0] != "pin") || (f[1] != "on" && f[1] != "off") {
		return fmt.Errorf("usage: set inspect on|off, set pin on|off, set follow-fork-mode parent|child, set detach-on-fork on|off")
	}
	if err := s.live(); err != nil {
		return err
	}
	on := f[1] == "on"
	if f[0] == "pin" {
		// As monitor rseq pin: a stepped thread stays on the CPU its rseq
		// area names until it is continued.
		if err := s.eng.SetPinSteps(on); err != nil {
			return err
		}
		s.emit(map[string]any{"event": "pin", "pin": on}, "stepped threads pinned to their CPU: "+f[1])
		return nil
	}
	if err := s.sess.SetInspect(on); err != nil {
		return err
	}
	s.emit(map[string]any{"event": "inspect", "inspect": on}, "inspect mode: "+f[1])
	return nil
}

// abortCmd aborts the current thread's critical section as the kernel
// would; a wrong signature refuses it and changes nothing.
func (s *Session) abortCmd() error {
	if err := s.live(); err != nil {
		return err
	}
	st, err := s.sess.ForceAbort(s.cur)
	if err != nil {
		return err
	}
	s.report(st, "forced-abort")
	return nil
}
