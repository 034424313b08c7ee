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

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/source"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"github.com/rseqdbg/rseqdbg/unwind"
)

// Options configure a session.
type Options struct {
	JSON bool
	Out  io.Writer
}

// Session is one debugged process driven by commands.
type Session struct {
	proc     *ptrace.Process
	eng      *stepper.Engine
	core     *source.Core
	syms     *symbols.Table
	uw       *unwind.Unwinder
	cur      int
	json     bool
	mu       sync.Mutex // serializes output with the program's forwarded output
	out      io.Writer
	conds    map[int]*condition
	temp     map[int]bool // tbreak: deleted at their first stop
	nextTemp bool
	pending  []pendingBreak
	ignore   map[int]int
	launched bool
	pipes    sync.WaitGroup
	done     bool
}

// pendingBreak is a location in code not loaded yet (gdb's pending
// breakpoint): it is resolved when the dynamic linker loads objects.
type pendingBreak struct {
	loc  string
	cond *condition
}

// Launch starts the program stopped at its first instruction.
func Launch(lo ptrace.LaunchOptions, o Options) (*Session, error) {
	s := newSession(o)
	if o.JSON {
		// Program output becomes output events, so stdout stays parseable.
		for i, dst := range []**os.File{&lo.Stdout, &lo.Stderr} {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			*dst = w
			stream := [...]string{"stdout", "stderr"}[i]
			s.pipes.Add(1)
			go s.forward(r, stream)
			defer w.Close()
		}
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
	return &Session{json: o.JSON, out: out, conds: map[int]*condition{}, ignore: map[int]int{}, temp: map[int]bool{}}
}

func (s *Session) forward(r *os.File, stream string) {
	defer s.pipes.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		s.emit(map[string]any{"event": "output", "stream": stream, "text": sc.Text() + "\n"})
	}
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
	s.core = source.New(eng)
	s.syms, s.uw = s.core.Syms, s.core.Unwind
	s.cur = p.Pid()
	eng.Do(func() {
		s.core.Sync()
		for _, w := range eng.Warnings() {
			s.notice(w)
		}
		s.report(&stepper.Stop{Kind: stepper.StopSignal, Tid: s.cur, Sig: 5}, "entry")
	})
	return nil
}

// Close ends the session: kill a launched program, detach an attached one,
// or let it run to its end when keepRunning is set.
func (s *Session) Close(keepRunning bool) (exitCode int) {
	s.proc.Do(func() {
		if s.eng.Exited() {
			return
		}
		if keepRunning {
			s.eng.ClearAll()
			for !s.eng.Exited() {
				st, err := s.eng.Continue(s.cur, nil)
				if err != nil {
					s.errorf("%v", err)
					break
				}
				if st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled {
					s.report(st, "")
					exitCode = st.Code
					break
				}
				s.cur = st.Tid
			}
			return
		}
		if s.launched {
			s.eng.Kill()
			return
		}
		if err := s.eng.Detach(); err != nil {
			s.errorf("detaching: %v", err)
		}
	})
	s.proc.Close()
	s.pipes.Wait()
	return exitCode
}

// RunScript runs commands from r, one per line; '#' starts a comment.
func (s *Session) RunScript(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := s.Exec(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ErrQuit ends a script early.
var ErrQuit = errors.New("quit")

// Exec runs one command. Command errors are reported, not returned; only
// ErrQuit and a lost target end a script.
func (s *Session) Exec(line string) error {
	var err error
	s.eng.Do(func() { err = s.exec(line) })
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
	case "quit", "q":
		return ErrQuit
	case "echo":
		s.emit(map[string]any{"event": "echo", "text": rest}, rest)
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
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
func (s *Session) report(st *stepper.Stop, reason string) {
	s.core.Sync()
	for _, c := range st.Crossed {
		m := regionJSON(c.Region)
		m["event"] = "region"
		m["outcome"] = c.Outcome.String()
		m["at"] = hex(c.At)
		m["aborts"] = c.Aborts
		text := fmt.Sprintf("  %s %s [%#x, %#x): %s at %#x", c.Region.Kind, c.Region.Name, c.Region.Start, c.Region.End, c.Outcome, c.At)
		s.emit(m, text)
	}
	if reason == "" {
		reason = st.Kind.String()
	}
	switch st.Kind {
	case stepper.StopExited:
		s.emit(map[string]any{"event": "exited", "code": st.Code}, fmt.Sprintf("[process exited with code %d]", st.Code))
		return
	case stepper.StopKilled:
		s.emit(map[string]any{"event": "exited", "signal": st.Sig}, fmt.Sprintf("[process killed by signal %d]", st.Sig))
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
	if st.Breakpoint != nil {
		m["breakpoint"] = st.Breakpoint.ID
		text += fmt.Sprintf(" breakpoint %d", st.Breakpoint.ID)
	}
	if st.Inside == nil {
		st.Inside = s.eng.RegionAt(pc)
		if st.Inside != nil && st.Inside.Kind != regions.KindCriticalSection {
			st.Inside = nil
		}
	}
	if st.Inside != nil {
		m["inside"] = regionJSON(st.Inside)
		text += fmt.Sprintf("\n  stopped inside critical section %s: the kernel will abort it when the thread resumes", st.Inside.Name)
	}
	s.emit(m, text)
}

// resolve turns a location (function, file:line, *addr) into addresses.
func (s *Session) resolve(loc string) ([]uint64, error) {
	if strings.HasPrefix(loc, "*") {
		v, err := s.value(strings.TrimSpace(loc[1:]))
		return []uint64{v}, err
	}
	if file, ln, ok := strings.Cut(loc, ":"); ok {
		n, err := strconv.Atoi(ln)
		if err != nil {
			return nil, fmt.Errorf("bad line number in %q", loc)
		}
		addrs, _ := s.syms.LineAddrs(file, n)
		if len(addrs) == 0 {
			return nil, fmt.Errorf("no code at %s", loc)
		}
		return addrs, nil
	}
	f, ok := s.syms.LookupFunc(loc)
	if !ok {
		return nil, fmt.Errorf("function %q not defined (libraries load later: break after they do)", loc)
	}
	return []uint64{s.syms.AfterPrologue(f)}, nil
}

func (s *Session) breakCmd(arg string, temporary bool) error {
	s.nextTemp = temporary
	if err := s.live(); err != nil {
		return err
	}
	loc, condText, hasCond := strings.Cut(arg, " if ")
	loc = strings.TrimSpace(loc)
	if loc == "" {
		r, err := s.proc.Regs(s.cur)
		if err != nil {
			return err
		}
		loc = fmt.Sprintf("*%#x", r.Rip)
	}
	var cond *condition
	if hasCond {
		c, err := parseCondition(condText)
		if err != nil {
			return err
		}
		cond = c
	}
	addrs, err := s.resolve(loc)
	if err != nil {
		if strings.HasPrefix(loc, "*") {
			return err
		}
		s.pending = append(s.pending, pendingBreak{loc: loc, cond: cond})
		s.eng.SetReportLibraries(true)
		s.emit(map[string]any{"event": "breakpoint", "pending": loc},
			fmt.Sprintf("Breakpoint pending on %s (%v): it is set when a library that has it loads", loc, err))
		return nil
	}
	return s.setBreakpoints(addrs, cond)
}

// resolvePending sets the pending breakpoints that newly loaded code has.
func (s *Session) resolvePending() {
	kept := s.pending[:0]
	for _, p := range s.pending {
		addrs, err := s.resolve(p.loc)
		if err != nil {
			kept = append(kept, p)
			continue
		}
		if err := s.setBreakpoints(addrs, p.cond); err != nil {
			s.errorf("%s: %v", p.loc, err)
		}
	}
	s.pending = kept
	s.eng.SetReportLibraries(len(s.pending) > 0)
}

func (s *Session) setBreakpoints(addrs []uint64, cond *condition) error {
	for _, a := range addrs {
		bp, err := s.eng.SetBreakpoint(a)
		if err != nil {
			return err
		}
		if cond != nil {
			s.conds[bp.ID] = cond
		}
		if s.nextTemp {
			s.temp[bp.ID] = true
		}
		fn, file, line := s.where(a)
		text := fmt.Sprintf("Breakpoint %d at %#x: %s", bp.ID, a, fn)
		if file != "" {
			text += fmt.Sprintf(" (%s:%d)", file, line)
		}
		m := map[string]any{"event": "breakpoint", "id": bp.ID, "pc": hex(a), "function": fn, "file": file, "line": line}
		if r := s.eng.RegionAt(a); r != nil && r.Kind == regions.KindCriticalSection {
			m["inside"] = regionJSON(r)
			text += fmt.Sprintf("\n  inside critical section %s: each hit stops one attempt; continuing runs it to its commit", r.Name)
		}
		s.emit(m, text)
	}
	return nil
}

func (s *Session) deleteCmd(arg string) error {
	if arg == "" {
		s.eng.ClearAll()
		return nil
	}
	for _, f := range strings.Fields(arg) {
		id, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("bad breakpoint number %q", f)
		}
		if err := s.eng.ClearBreakpoint(id); err != nil {
			return err
		}
		delete(s.conds, id)
	}
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
			for _, bp := range s.eng.Breakpoints() {
				if bp.Addr == r.Rip {
					s.ignore[bp.ID] = n - 1
					s.emit(map[string]any{"event": "notice", "message": fmt.Sprintf("will ignore next %d crossings of breakpoint %d", n-1, bp.ID)},
						fmt.Sprintf("Will ignore next %d crossings of breakpoint %d.", n-1, bp.ID))
				}
			}
		}
	}
	var crossed []stepper.Crossing
	for {
		st, err := s.eng.Continue(s.cur, nil)
		if err != nil {
			return err
		}
		crossed = append(crossed, st.Crossed...)
		if st.Kind == stepper.StopLibrary {
			s.core.Sync()
			s.resolvePending()
			s.cur = st.Tid
			continue
		}
		if st.Kind == stepper.StopBreakpoint && st.Breakpoint != nil && !s.shouldStop(st) {
			s.cur = st.Tid
			continue
		}
		st.Crossed = crossed
		s.report(st, "")
		if st.Breakpoint != nil && s.temp[st.Breakpoint.ID] {
			delete(s.temp, st.Breakpoint.ID)
			s.eng.ClearBreakpoint(st.Breakpoint.ID)
		}
		return nil
	}
}

// shouldStop applies conditions and ignore counts.
func (s *Session) shouldStop(st *stepper.Stop) bool {
	id := st.Breakpoint.ID
	if c := s.conds[id]; c != nil {
		ok, err := c.eval(s, st.Tid)
		if err != nil {
			s.errorf("breakpoint %d condition: %v", id, err)
			return true
		}
		if !ok {
			return false
		}
	}
	if s.ignore[id] > 0 {
		s.ignore[id]--
		return false
	}
	return true
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
	if err := s.live(); err != nil {
		return err
	}
	n, err := count(arg)
	if err != nil {
		return err
	}
	var crossed []stepper.Crossing
	var st *stepper.Stop
	for i := 0; i < n; i++ {
		if over {
			st, err = s.nextInstruction()
		} else {
			st, err = s.eng.StepInstruction(s.cur, 0, stepper.OthersRun)
		}
		if err != nil {
			return err
		}
		crossed = append(crossed, st.Crossed...)
		if st.Kind != stepper.StopStep || st.Tid != s.cur {
			break
		}
	}
	st.Crossed = crossed
	s.report(st, "")
	return nil
}

// nextInstruction steps one instruction, running a call to its return.
func (s *Session) nextInstruction() (*stepper.Stop, error) {
	return s.core.NextInstruction(s.cur, stepper.OthersRun)
}

// stepCmd is source-line stepping: next steps over calls, step enters
// functions that have line information.
func (s *Session) stepCmd(arg string, over bool) error {
	if err := s.live(); err != nil {
		return err
	}
	n, err := count(arg)
	if err != nil {
		return err
	}
	var st *stepper.Stop
	var crossed []stepper.Crossing
	for i := 0; i < n; i++ {
		st, err = s.stepLine(over)
		if err != nil {
			return err
		}
		crossed = append(crossed, st.Crossed...)
		if st.Kind != stepper.StopStep {
			break
		}
	}
	st.Crossed = crossed
	s.report(st, "")
	return nil
}

func (s *Session) stepLine(over bool) (*stepper.Stop, error) {
	return s.core.StepLine(s.cur, over, stepper.OthersRun)
}

// finishFrame runs the current function to its return.
func (s *Session) finishFrame() (*stepper.Stop, error) {
	return s.core.Finish(s.cur, stepper.OthersRun)
}

func (s *Session) finishCmd() error {
	if err := s.live(); err != nil {
		return err
	}
	st, err := s.finishFrame()
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
		var list []map[string]any
		var b strings.Builder
		for _, bp := range s.eng.Breakpoints() {
			fn, _, _ := s.where(bp.Addr)
			list = append(list, map[string]any{"id": bp.ID, "pc": hex(bp.Addr), "function": fn, "hits": bp.Hits})
			fmt.Fprintf(&b, "%d  %#x in %s, hit %d times\n", bp.ID, bp.Addr, fn, bp.Hits)
		}
		s.emit(map[string]any{"event": "breakpoints", "breakpoints": list}, strings.TrimRight(b.String(), "\n"))
		return nil
	case "stats":
		st := s.eng.Stats()
		s.emit(map[string]any{"event": "stats", "single_steps": st.SingleSteps, "region_runs": st.RegionRuns, "commits": st.Commits,
			"aborts": st.Aborts, "exits": st.ExitPoints, "interrupted": st.Interrupted, "signals_in_runs": st.SignalsInRuns, "discovered": st.Discovered, "steps_inside": st.StepsInside},
			fmt.Sprintf("single-steps %d, region runs %d, commits %d, aborts %d, other exits %d, interrupted %d, signals during runs %d, discovered at run time %d",
				st.SingleSteps, st.RegionRuns, st.Commits, st.Aborts, st.ExitPoints, st.Interrupted, st.SignalsInRuns, st.Discovered))
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

var regNames = []string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
	"rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "orig_rax"}

func regByName(r *target.Regs, name string) (uint64, bool) {
	m := map[string]*uint64{"rax": &r.Rax, "rbx": &r.Rbx, "rcx": &r.Rcx, "rdx": &r.Rdx, "rsi": &r.Rsi, "rdi": &r.Rdi,
		"rbp": &r.Rbp, "rsp": &r.Rsp, "r8": &r.R8, "r9": &r.R9, "r10": &r.R10, "r11": &r.R11, "r12": &r.R12, "r13": &r.R13,
		"r14": &r.R14, "r15": &r.R15, "rip": &r.Rip, "pc": &r.Rip, "sp": &r.Rsp, "fp": &r.Rbp, "eflags": &r.Eflags, "cs": &r.Cs, "ss": &r.Ss,
		"ds": &r.Ds, "es": &r.Es, "fs": &r.Fs, "gs": &r.Gs, "fs_base": &r.FsBase, "gs_base": &r.GsBase, "orig_rax": &r.OrigRax}
	p, ok := m[name]
	if !ok {
		return 0, false
	}
	return *p, true
}

func (s *Session) infoRegisters(which string) error {
	if err := s.live(); err != nil {
		return err
	}
	r, err := s.proc.Regs(s.cur)
	if err != nil {
		return err
	}
	names := regNames
	if which != "" {
		names = strings.Fields(strings.ReplaceAll(which, "$", ""))
	}
	vals := map[string]string{}
	var b strings.Builder
	for _, n := range names {
		v, ok := regByName(&r, n)
		if !ok {
			return fmt.Errorf("invalid register %q", n)
		}
		vals[n] = hex(v)
		fmt.Fprintf(&b, "%-9s %#-18x %d\n", n, v, int64(v))
	}
	s.emit(map[string]any{"event": "registers", "thread": s.cur, "registers": vals}, strings.TrimRight(b.String(), "\n"))
	return nil
}

// value evaluates a simple operand: a number, $reg, or a symbol address.
func (s *Session) value(expr string) (uint64, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "$") {
		r, err := s.proc.Regs(s.cur)
		if err != nil {
			return 0, err
		}
		v, ok := regByName(&r, expr[1:])
		if !ok {
			return 0, fmt.Errorf("invalid register %q", expr)
		}
		return v, nil
	}
	if v, err := strconv.ParseUint(expr, 0, 64); err == nil {
		return v, nil
	}
	if v, err := strconv.ParseInt(expr, 0, 64); err == nil {
		return uint64(v), nil
	}
	if f, ok := s.syms.LookupFunc(expr); ok {
		return f.Lo, nil
	}
	return 0, fmt.Errorf("cannot evaluate %q", expr)
}

func (s *Session) printCmd(expr string) error {
	if err := s.live(); err != nil {
		return err
	}
	v, err := s.value(expr)
	if err != nil {
		return err
	}
	s.emit(map[string]any{"event": "value", "name": expr, "value": v}, fmt.Sprintf("%s = %d (%#x)", expr, int64(v), v))
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
			str = fmt.Sprintf("%#0*x", size*2+2, v)
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
		in, err := regions.Decode(buf[pc-addr:got], pc)
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
