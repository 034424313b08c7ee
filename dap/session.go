package dap

import (
	"errors"
	"fmt"
	"github.com/rseqdbg/rseqdbg/eval"
	sess "github.com/rseqdbg/rseqdbg/session"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/source"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"golang.org/x/sys/unix"
)

// runKind says what a run goroutine is doing, which decides whether a
// queued request may interrupt it.
type runKind uint8

const (
	runContinue runKind = iota + 1
	runStep
)

// session is one debugged process.
type session struct {
	srv      *Server
	log      *slog.Logger
	proc     *ptrace.Process
	eng      *stepper.Engine
	rc       *sess.Session // run control and the breakpoint store
	core     *source.Core
	dbg      *eval.DebugInfo
	ev       *eval.Evaluator
	launched bool
	program  string
	runs     sync.WaitGroup // run goroutines, which must end before the target is closed
	// entry: report a stop at the entry point (main for a launch) when the
	// configuration is done, instead of running.
	entry bool
	// nonStop: threads stop and run one by one (nonstop.go); set before
	// the first run.
	nonStop bool

	// mu guards the fields below; they are shared by the worker, the read
	// loop (pause) and the run goroutine.
	mu      sync.Mutex
	running bool
	kind    runKind
	pause   bool
	jobs    []func()
	threads []int // thread list as of the last stop, for `threads` while running
	// driving is the thread a non-stop step runs (0: none): a pause of
	// it interrupts the step, which holds the ptrace thread.
	driving int
	ended   bool // exited and terminated were sent
	closed  bool

	// Everything below is touched only on the ptrace thread (inside do).
	cur      int          // thread of the last reported stop
	bps      *breakpoints // the client's view of rc's breakpoints
	frames   map[int][]*frame
	frameIDs []*frame
	refs     []*varRef
	known    map[int]bool
	output   *sess.Output
	// parked are processes waiting for the fork child the session
	// followed (followForks), the innermost last; retired the followed
	// children that ended, closed with the session. Changed on the ptrace
	// thread with mu held.
	parked  []*parked
	retired []*ptrace.Process
}

func newSession(srv *Server, proc *ptrace.Process, eng *stepper.Engine, launched bool, program string) *session {
	ss := &session{
		srv: srv, log: srv.log, proc: proc, eng: eng, launched: launched, program: program,
		bps: newBreakpoints(), frames: map[int][]*frame{}, known: map[int]bool{},
	}
	ss.output = &sess.Output{}
	// Built on the ptrace thread: the session's tables are read there.
	eng.Do(func() { ss.rc = sess.New(eng) })
	ss.core, ss.dbg, ss.ev = ss.rc.Src, ss.rc.Info, ss.rc.Eval
	ss.rc.Events = sess.Events{
		Log: func(_ *sess.Breakpoint, text string) { ss.srv.sendOutput("console", text+"\n") },
		Exec: func(path string) {
			ss.srv.sendOutput("console", fmt.Sprintf("process %d is executing new program: %s\n", proc.Pid(), path))
		},
		ConditionError: func(b *sess.Breakpoint, err error) {
			ss.srv.sendOutput("stderr", fmt.Sprintf("rseqdbg: breakpoint %d: condition: %v (stopping)\n", b.ID, err))
		},
		Resolved: ss.resolved,
		Forked:   ss.forked,
		// Interrupted for queued requests, for a pause, or by a stray
		// extra interrupt of kick: only a pause is the client's stop.
		Interrupted: func() bool {
			ss.runJobs()
			return ss.eng.Exited() || ss.takePause()
		},
	}
	return ss
}

// do runs f on the ptrace thread. A panic there would kill the tracer
// goroutine and with it the whole debugger, so it is recovered on that
// thread and returned as an error.
func (ss *session) do(f func()) (err error) {
	ss.eng.Do(func() {
		defer func() {
			if p := recover(); p != nil {
				ss.log.Error("dap: panic on the ptrace thread", "panic", p, "stack", stack())
				err = fmt.Errorf("internal error: %v", p)
			}
		}()
		f()
	})
	return err
}

var errRunning = errors.New("the program is running: pause it first")

// stopped runs f on the ptrace thread if the target is stopped, and fails
// with errRunning otherwise. For requests that only make sense on a stopped
// target (stack, variables, memory).
func (ss *session) stopped(f func() error) error {
	ss.mu.Lock()
	if ss.running {
		ss.mu.Unlock()
		return errRunning
	}
	ss.mu.Unlock()
	var ferr error
	if err := ss.do(func() { ferr = f() }); err != nil {
		return err
	}
	return ferr
}

// soon answers req with f's result, run on the ptrace thread now if the
// target is stopped, or queued for the next stop otherwise. A continue is
// interrupted for it (and resumed after); a step is let finish unless force
// (disconnect, terminate) is set. A panic in f becomes an error response.
func (ss *session) soon(force bool, req dap.RequestMessage, f func() (dap.ResponseMessage, error)) {
	job := func() {
		resp, err := ss.srv.safely(f)
		if !errors.Is(err, errLater) {
			ss.srv.reply(req, resp, err)
		}
	}
	ss.mu.Lock()
	if ss.running {
		ss.jobs = append(ss.jobs, job)
		kick := force || ss.kind == runContinue
		ss.mu.Unlock()
		if kick {
			go ss.kick()
		}
		return
	}
	ss.mu.Unlock()
	if err := ss.do(job); err != nil {
		ss.srv.reply(req, nil, err)
	}
}

// kick interrupts the running target until the run goroutine has taken
// what it was interrupted for. Target.Interrupt is a no-op in the short
// windows where the engine has no thread running, so one call can be lost;
// a stray extra interrupt is harmless (the run loop resumes silently).
func (ss *session) kick() {
	wait := 10 * time.Millisecond
	for {
		ss.mu.Lock()
		pending := ss.running && (len(ss.jobs) > 0 || ss.pause)
		ss.mu.Unlock()
		if !pending {
			return
		}
		ss.mu.Lock()
		eng := ss.eng
		ss.mu.Unlock()
		eng.Interrupt()
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// requestPause is the pause request: it never waits for the ptrace thread.
func (ss *session) requestPause() {
	ss.mu.Lock()
	run := ss.running
	if run {
		ss.pause = true
	}
	ss.mu.Unlock()
	if run {
		go ss.kick()
	}
}

func (ss *session) takePause() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p := ss.pause
	ss.pause = false
	return p
}

// runJobs runs the queued requests on the ptrace thread (the caller is
// inside do) and reports whether any ran.
func (ss *session) runJobs() bool {
	ran := false
	for {
		ss.mu.Lock()
		jobs := ss.jobs
		ss.jobs = nil
		ss.mu.Unlock()
		if len(jobs) == 0 {
			return ran
		}
		for _, j := range jobs {
			ran = true
			ss.safeJob(j)
		}
	}
}

func (ss *session) safeJob(j func()) {
	defer func() {
		if p := recover(); p != nil {
			ss.log.Error("dap: panic in a queued request", "panic", p, "stack", stack())
		}
	}()
	j()
}

// finishRun drains the queue and marks the target stopped, atomically
// with respect to soon, so no job is left behind and none overtakes an
// older one.
func (ss *session) finishRun() {
	for {
		ss.runJobs()
		ss.mu.Lock()
		if len(ss.jobs) == 0 {
			ss.running = false
			ss.pause = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
	}
}

// resume starts a run on its own goroutine: body runs on the ptrace thread
// and returns the stop to report (nil when a queued job already reported
// the end, e.g. terminate). The caller has already answered the request.
func (ss *session) resume(kind runKind, tid int, reason string, body func() (*sess.Stop, error)) {
	if ss.nonStop {
		ss.resumeThread(tid, reason, body)
		return
	}
	ss.mu.Lock()
	ss.running, ss.kind = true, kind
	ss.mu.Unlock()
	ss.runs.Add(1)
	go func() {
		defer ss.runs.Done()
		var events []dap.Message
		var exited bool
		err := ss.do(func() {
			ss.invalidate()
			st, err := ss.following(kind, body)
			// Requests queued during the run see the stop; one of them may
			// have ended the process (disconnect, terminate) and said so.
			ss.runJobs()
			if err != nil && !ss.eng.Exited() {
				if processGone(ss.proc.Pid()) {
					// Killed from outside mid-operation: the engine saw the
					// threads vanish as errors rather than as an exit.
					events = ss.endEvents(128 + 9)
					return
				}
				events = append(events, ss.errorStop(err))
				return
			}
			if st == nil || ss.eng.Exited() && st.Kind != stepper.StopExited && st.Kind != stepper.StopKilled {
				if ss.eng.Exited() {
					events = ss.endEvents(128 + 9)
				}
				return
			}
			if st.Kind != stepper.StopStep {
				reason = "" // a breakpoint before main is a breakpoint, not the entry
			}
			events, exited = ss.stopEvents(st, reason)
		})
		if err != nil {
			events = []dap.Message{ss.errorStop(err)}
		}
		ss.do(ss.finishRun)
		if exited {
			ss.waitOutput()
		}
		for _, m := range events {
			ss.srv.send(m)
		}
	}()
}

// errorStop reports a failed resumption as a stop, so the client is not
// left waiting for one.
func (ss *session) errorStop(err error) dap.Message {
	ss.srv.sendOutput("stderr", fmt.Sprintf("rseqdbg: %v\n", err))
	return &dap.StoppedEvent{Event: event("stopped"), Body: dap.StoppedEventBody{
		Reason: "exception", Description: "error: " + err.Error(), ThreadId: ss.cur, AllThreadsStopped: !ss.nonStop}}
}

// invalidate forgets frames and variable handles: they describe the stop
// that is over.
func (ss *session) invalidate() {
	clear(ss.frames)
	ss.frameIDs = nil
	ss.refs = nil
}

// waitOutput lets the program's last writes arrive before exited.
func (ss *session) waitOutput() { ss.output.Wait(2 * time.Second) }

// stopEvents turns a stop into DAP events: exited and terminated, or thread
// changes, rseq notices and stopped.
func (ss *session) stopEvents(st *sess.Stop, reason string) ([]dap.Message, bool) {
	switch st.Kind {
	case stepper.StopExited, stepper.StopKilled:
		code := st.Code
		if st.Kind == stepper.StopKilled {
			code = 128 + st.Sig
			ss.srv.sendOutput("console", fmt.Sprintf("rseqdbg: the program was killed by %v\n", unix.Signal(st.Sig)))
		}
		return ss.endEvents(code), true
	}
	ss.rc.Sync()
	out := ss.threadEvents()
	if st.Kind == stepper.StopThreadExited && ss.nonStop {
		// The thread is gone and the others run: its thread exited
		// event (from the list, above) is all there is to say, and ends
		// the step or continue the client made on it.
		return out, false
	}
	if st.Tid != 0 && ss.alive(st.Tid) {
		ss.cur = st.Tid
	}
	for _, c := range st.Crossed {
		ss.srv.sendOutput("console", "rseq: "+crossingText(c)+"\n")
	}
	ev := &dap.StoppedEvent{Event: event("stopped"), Body: dap.StoppedEventBody{ThreadId: ss.cur, AllThreadsStopped: !ss.nonStop}}
	b := &ev.Body
	switch st.Kind {
	case stepper.StopBreakpoint:
		b.Reason = "breakpoint"
		for _, h := range st.Hits {
			b.HitBreakpointIds = append(b.HitBreakpointIds, h.ID)
		}
		if k := ss.bps.kindOf(b.HitBreakpointIds); k != "" {
			b.Reason = k
		}
	case stepper.StopStep:
		b.Reason = "step"
	case stepper.StopInterrupt:
		b.Reason = "pause"
	case stepper.StopSignal:
		b.Reason = "exception"
		b.Description = fmt.Sprintf("signal %s", signalName(st.Sig))
		b.Text = fmt.Sprintf("Thread %d received %s; it is delivered when the thread resumes", st.Tid, signalName(st.Sig))
	case stepper.StopWatch:
		b.Reason = "data breakpoint"
	case stepper.StopExec:
		b.Reason = "entry"
		b.Description = "the program executed a new image"
	case stepper.StopThreadExited:
		b.Reason = "step"
		b.Description = "the stepped thread exited"
	default:
		b.Reason = st.Kind.String()
	}
	if reason != "" {
		b.Reason = reason
	}
	if d, text := ss.rseqDescription(st.Stop); d != "" {
		b.Description = d
		b.Text = text
	}
	if st.Inspect == nil && st.Tid != 0 && ss.eng.Inspect() {
		if r, err := ss.proc.Regs(st.Tid); err == nil {
			st.Inspect = ss.eng.InspectionAt(st.Tid, r.Rip)
		}
	}
	switch {
	case st.Inspect != nil:
		b.Description = sess.InspectText(st.Inspect)
		b.Text = fmt.Sprintf("Thread %d is %s; resuming does not abort it (inspect mode).", st.Tid, b.Description)
	case st.Note != "" && len(st.Crossed) > 0 && st.Crossed[len(st.Crossed)-1].Forced:
		b.Description = st.Note
		b.Text = fmt.Sprintf("Thread %d: %s.", st.Tid, st.Note)
	}
	if st.Note != "" {
		ss.srv.sendOutput("console", "rseqdbg: "+st.Note+"\n")
	}
	out = append(out, ev)
	return out, false
}

// crossingText describes one region run for the console.
func crossingText(c stepper.Crossing) string {
	r := c.Region
	what := map[stepper.Outcome]string{
		stepper.Committed: "committed", stepper.Aborted: "aborted by the kernel", stepper.ExitedAtPoint: "left by an exit point",
		stepper.ExitedBranch: "left by a branch", stepper.Returned: "returned", stepper.Interrupted: "interrupted (the kernel aborts it on resume)",
	}[c.Outcome]
	s := fmt.Sprintf("%s %s [%#x, %#x) ran natively: %s", regionKind(r), r.Name, r.Start, r.End, what)
	if c.At != 0 {
		s += fmt.Sprintf(" at %#x", c.At)
	}
	if c.Aborts > 0 {
		s += fmt.Sprintf(" after %d abort(s)", c.Aborts)
	}
	return s
}

func regionKind(r *regions.Region) string {
	switch r.Kind {
	case regions.KindCriticalSection:
		return "critical section"
	case regions.KindVDSO:
		return "vDSO function"
	}
	return "declared region"
}

// rseqDescription says what a stop means for restartable regions: how the
// last region run ended, or that the thread sits inside a section the
// kernel will abort.
func (ss *session) rseqDescription(st *stepper.Stop) (string, string) {
	inside := st.Inside
	if inside == nil && st.Tid != 0 {
		if r, err := ss.proc.Regs(st.Tid); err == nil {
			if reg := ss.eng.RegionAt(r.Rip); reg != nil && reg.Kind == regions.KindCriticalSection {
				inside = reg
			}
		}
	}
	if inside != nil {
		return "stopped inside a critical section: it will abort on resume",
			fmt.Sprintf("Thread %d is inside critical section %s [%#x, %#x); the kernel aborts it when the thread resumes (abort handler %#x).",
				st.Tid, inside.Name, inside.Start, inside.End, inside.Abort)
	}
	if len(st.Crossed) == 0 {
		return "", ""
	}
	c := st.Crossed[len(st.Crossed)-1]
	var texts []string
	for _, x := range st.Crossed {
		texts = append(texts, crossingText(x))
	}
	text := strings.Join(texts, "; ")
	if c.Region.Kind != regions.KindCriticalSection {
		return fmt.Sprintf("%s %s returned", regionKind(c.Region), c.Region.Name), text
	}
	switch c.Outcome {
	case stepper.Committed:
		return "critical section committed", text
	case stepper.Aborted:
		return "critical section aborted by the kernel", text
	case stepper.ExitedAtPoint, stepper.ExitedBranch:
		return "critical section left without committing", text
	case stepper.Interrupted:
		// The run ended on another stop (a breakpoint on the retry path,
		// a pause); the thread is not inside, or that was said above.
		if c.Aborts > 0 {
			return "critical section aborted by the kernel", text
		}
		return "critical section run interrupted", text
	}
	return "", text
}

// endEvents reports the end of the process once.
func (ss *session) endEvents(code int) []dap.Message {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return nil
	}
	ss.ended = true
	return []dap.Message{
		&dap.ExitedEvent{Event: event("exited"), Body: dap.ExitedEventBody{ExitCode: code}},
		&dap.TerminatedEvent{Event: event("terminated")},
	}
}

func (ss *session) alive(tid int) bool {
	for _, t := range ss.proc.Threads() {
		if t == tid {
			return true
		}
	}
	return false
}

// allThreads lists the threads of every process of the session: the
// current one's, then those of the processes parked behind it.
func (ss *session) allThreads() []int {
	out := ss.proc.Threads()
	for _, pk := range ss.parked {
		out = append(out, pk.proc.Threads()...)
	}
	return out
}

// threadEvents compares the thread list with the last stop's: the engine
// runs thread creation and exit silently, so this is when the client hears
// of them.
func (ss *session) threadEvents() []dap.Message {
	var out []dap.Message
	now := ss.allThreads()
	seen := map[int]bool{}
	for _, t := range now {
		seen[t] = true
		if !ss.known[t] {
			ss.known[t] = true
			out = append(out, &dap.ThreadEvent{Event: event("thread"), Body: dap.ThreadEventBody{Reason: "started", ThreadId: t}})
		}
	}
	for t := range ss.known {
		if !seen[t] {
			delete(ss.known, t)
			ss.rc.Forget(t)
			out = append(out, &dap.ThreadEvent{Event: event("thread"), Body: dap.ThreadEventBody{Reason: "exited", ThreadId: t}})
		}
	}
	ss.mu.Lock()
	ss.threads = now
	ss.mu.Unlock()
	return out
}

func signalName(sig int) string {
	if n := unix.SignalName(unix.Signal(sig)); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", sig)
}

// close ends the session when the client is gone: a target the client did
// not dispose of is killed (launched) or detached (attached), then the
// tracer thread stops.
func (ss *session) close() {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	ss.mu.Unlock()
	done := make(chan struct{})
	job := func() {
		defer close(done)
		// Parked processes first: each waits for the one after it.
		engs := []*stepper.Engine{ss.eng}
		for _, pk := range ss.parked {
			engs = append(engs, pk.rc.Eng)
		}
		for _, eng := range engs {
			if eng.Exited() {
				continue
			}
			var err error
			if ss.launched {
				err = eng.Kill()
			} else {
				err = eng.Detach()
			}
			if err != nil {
				ss.log.Warn("dap: letting go of the program", "err", err)
			}
		}
	}
	ss.mu.Lock()
	if ss.running {
		ss.jobs = append(ss.jobs, job)
		ss.mu.Unlock()
		go ss.kick()
	} else {
		ss.mu.Unlock()
		ss.do(job)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		ss.log.Warn("dap: the program did not stop; leaving it")
	}
	waited := make(chan struct{})
	go func() { ss.runs.Wait(); close(waited) }()
	select {
	case <-waited:
		ss.proc.Close()
		for _, pk := range ss.parked {
			pk.proc.Close()
		}
		for _, p := range ss.retired {
			p.Close()
		}
	case <-time.After(10 * time.Second):
		// Closing the tracer under a live run would crash it; leak instead.
		ss.log.Warn("dap: a run did not end; leaving the tracer open")
	}
	ss.waitOutput()
}

// processGone reports a process that no longer runs: reaped, or a zombie
// nobody has waited for yet.
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}
