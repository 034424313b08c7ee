package gdbproto

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/regions"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/unix"
)

// vContActions is what vCont? advertises; 'r' makes gdb range-step.
const vContActions = "vCont;c;C;s;S;t;r"

// threadAction is one thread's share of a resumption.
type threadAction struct {
	kind   byte // 'c', 's', 'r', 't'
	sig    int  // Linux number
	lo, hi uint64
}

// resumeActions are the threads' shares of a resumption: named holds
// those of threads named one by one, def (when set) every other thread's.
// Resolved per thread when asked, so that stepping one of hundreds of
// parked threads builds nothing per thread.
type resumeActions struct {
	named map[int]threadAction
	def   *threadAction
}

func (r resumeActions) of(tid int) (threadAction, bool) {
	if a, ok := r.named[tid]; ok {
		return a, true
	}
	if r.def != nil {
		return *r.def, true
	}
	return threadAction{}, false
}

// vCont maps a vCont request onto one engine operation. Every resumption
// goes through the engine, so no thread is ever single-stepped into a
// critical section: a step that would enter one runs the section natively
// to an exit, and a thread stopped inside one is moved out by the region
// step-over before anything else runs.
func (s *session) vCont(pkt string) [][]byte {
	acts, err := wire.ParseVCont(pkt)
	if err != nil {
		return replyErr
	}
	// gdb resumes one process (schedule-multiple off): the one its first
	// action names becomes current; actions for others are not run.
	for _, a := range acts {
		if a.Thread.Pid > 0 {
			if other := s.srv.find(int(a.Thread.Pid)); other != nil && !other.exited {
				s.srv.focus(other)
			}
			break
		}
	}
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	if s.ns.on {
		return s.vContNonStop(pr, acts)
	}
	threads := pr.p.Threads()
	// Each thread takes the first action that matches it: after a
	// wildcard, later actions match nothing.
	ra := resumeActions{named: map[int]threadAction{}}
	for _, a := range acts {
		if a.Thread.Pid > 0 && a.Thread.Pid != int64(pr.p.Pid()) {
			continue
		}
		ta := threadAction{kind: a.Action, lo: a.RangeStart, hi: a.RangeEnd}
		switch a.Action {
		case 'C':
			ta.kind, ta.sig = 'c', s.hostSignal(int(a.Signal))
		case 'S':
			ta.kind, ta.sig = 's', s.hostSignal(int(a.Signal))
		}
		if a.Thread.Tid <= 0 {
			ra.def = &ta
			break
		}
		tid := int(a.Thread.Tid)
		if _, ok := ra.named[tid]; !ok && slices.Contains(threads, tid) {
			ra.named[tid] = ta
		}
	}
	return s.resume(ra, threads)
}

func (s *session) matches(id wire.ThreadID, pid, tid int) bool {
	if id.Pid > 0 && id.Pid != int64(pid) {
		return false
	}
	return id.Tid <= 0 || id.Tid == int64(tid)
}

// legacyResume handles c, C, s and S: the Hc thread steps or every thread
// continues. An address argument moves the thread there first.
func (s *session) legacyResume(pkt string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	tid := s.cThread
	if tid == 0 {
		tid = s.current()
	}
	arg := pkt[1:]
	sig := 0
	if pkt[0] == 'C' || pkt[0] == 'S' {
		sigStr, rest, _ := strings.Cut(arg, ";")
		v, err := parseHexInt(sigStr, 0xff)
		if err != nil {
			return replyErr
		}
		sig, arg = s.hostSignal(v), rest
	}
	if arg != "" {
		addr, err := wire.ParseHexUint64(arg)
		if err != nil {
			return replyErr
		}
		r, err := pr.p.Regs(tid)
		if err != nil {
			return replyErr
		}
		r.Rip = addr
		if err := pr.p.SetRegs(tid, r); err != nil {
			return replyErr
		}
	}
	ra := resumeActions{named: map[int]threadAction{}}
	if pkt[0] == 's' || pkt[0] == 'S' {
		ra.named[tid] = threadAction{kind: 's', sig: sig}
	} else {
		ra.named[tid] = threadAction{kind: 'c', sig: sig}
		ra.def = &threadAction{kind: 'c'}
	}
	return s.resume(ra, pr.p.Threads())
}

// resume runs one all-stop resumption and reports how it ended.
func (s *session) resume(per resumeActions, threads []int) [][]byte {
	pr := s.srv.proc
	stepper0, othersRun := 0, false
	sigs := map[int]int{}
	for _, tid := range threads {
		a, ok := per.of(tid)
		if !ok {
			continue
		}
		switch a.kind {
		case 's', 'r':
			if stepper0 == 0 {
				stepper0 = tid
			}
		case 'c':
			if a.sig != 0 {
				sigs[tid] = a.sig
			}
		}
	}
	for _, tid := range threads {
		if a, ok := per.of(tid); ok && tid != stepper0 && a.kind == 'c' {
			othersRun = true
			break
		}
	}
	forced := s.forced
	s.forced = nil
	var run func() (*sess.Stop, error)
	switch {
	case forced != nil && stepper0 == forced.Tid:
		// The client's view of the thread predates the forced abort:
		// this step reports the thread in the abort handler.
		return s.report(forced)
	case stepper0 != 0:
		a, _ := per.of(stepper0)
		others := stepper.OthersStay
		if othersRun {
			others = stepper.OthersRun
		}
		if a.kind == 'r' {
			return s.runStop(func() (*sess.Stop, error) {
				return pr.rc.RangeStep(stepper0, a.lo, a.hi, a.sig, others)
			})
		}
		run = func() (*sess.Stop, error) { return pr.rc.StepInstruction(stepper0, a.sig, others) }
	case othersRun:
		// The engine moves this thread first (off a breakpoint or out of
		// a section); gdb names it by the signal it passes or by Hc.
		tid := 0
		for _, t := range threads {
			if _, ok := sigs[t]; ok {
				tid = t
				break
			}
		}
		for _, want := range []int{s.cThread, pr.last.Tid} {
			if _, ok := per.of(want); tid == 0 && ok && want != 0 && slices.Contains(threads, want) {
				tid = want
			}
		}
		for _, t := range threads {
			if _, ok := per.of(t); tid == 0 && ok {
				tid = t
			}
		}
		run = func() (*sess.Stop, error) { return pr.rc.Resume(tid, sigs) }
	case len(per.named) > 0 || per.def != nil:
		// Only 't' actions: nothing runs in all-stop.
		return replyOK
	default:
		return replyErr // the actions name no thread of ours
	}
	return s.runStop(run)
}

// runStop runs a resumption while watching the client: ^C interrupts the
// target, and a client that disappears interrupts it too so its
// breakpoints can be removed. A thread exiting on its own is no stop for
// the client; the others run on.
func (s *session) runStop(run func() (*sess.Stop, error)) [][]byte {
	pr := s.srv.proc
	if r := pr.caps.console; r != nil && s.w != nil {
		// The client waits for a stop reply: console packets may come
		// before it, and gdb and lldb print them as the program's output.
		restore := r.TeeConsole(func(text string) {
			for _, o := range consoleOutput(text) {
				if err := s.w.WritePacket(o); err != nil {
					slog.Debug("console output to the client", "err", err)
					return
				}
			}
		})
		defer restore()
	}
	stopWatching := s.watchClient(pr)
	// The shared resume loop: a thread exiting on its own is no stop.
	rs, err := run()
	stopWatching()
	var st *stepper.Stop
	if rs != nil {
		st = rs.Stop
	}
	if err != nil {
		if errors.Is(err, target.ErrExited) {
			pr.exited = true
			return one("W00")
		}
		slog.Error("resuming", "err", err)
		// gdb shows the text and takes the error as a stop (its "Remote
		// failure reply"): the client learns why instead of hanging.
		return append(consoleOutput(fmt.Sprintf("rseqdbg: resuming failed: %v\n", err)), replyErr...)
	}
	if st == nil {
		return replyErr
	}
	out := s.report(st)
	// Read ahead once the stop reply is out: the client starts on it at
	// once, and the stub answers the read while the client works.
	s.prefetchAfterReply = st
	return out
}

// watchDelay is how long a resumption runs before the client is watched
// by a goroutine. Most end sooner (an instruction step, a short range),
// and a watcher started and stopped for each of them costs a hand-off
// between threads, a sizable part of a stepi's round trip. A ^C waits at
// most this long; it waits in the socket meanwhile, so none is lost.
const watchDelay = 2 * time.Millisecond

// watchClient forwards interrupts to the running target until the
// returned function is called. It keeps interrupting every so often once
// asked, because the engine may be between two resumptions of the target
// when the first request arrives. A client that hangs up interrupts the
// target too, so the session can end.
func (s *session) watchClient(pr *process) func() {
	t := pr.eng
	if s.w == nil {
		return func() {}
	}
	var (
		kickMu   sync.Mutex
		kicking  chan struct{} // closed to stop the repeats
		finished chan struct{}
	)
	kick := func() {
		t.Interrupt()
		kickMu.Lock()
		defer kickMu.Unlock()
		if kicking != nil {
			return
		}
		kicking, finished = make(chan struct{}), make(chan struct{})
		go func(stop, finished chan struct{}) {
			defer close(finished)
			ticker := time.NewTicker(100 * time.Millisecond)
			defer ticker.Stop()
			for {
				select {
				case <-stop:
					return
				case <-ticker.C:
					t.Interrupt()
				}
			}
		}(kicking, finished)
	}
	stopKicking := func() {
		kickMu.Lock()
		defer kickMu.Unlock()
		if kicking != nil {
			close(kicking)
			<-finished
		}
	}
	gone := func(err error) {
		if errors.Is(err, wire.ErrQueueFull) {
			// Not gone: it sent more than it may while the target runs,
			// and is no longer read until the stop.
			slog.Warn("the client sends packets while the target runs; not reading it until the target stops")
			return
		}
		slog.Debug("the client went away while the target ran", "err", err)
		s.lost.Store(true)
		kick()
	}
	if cw := pr.caps.watcher; cw != nil && s.w.Fd() >= 0 {
		if err := s.w.Drain(false, kick); err != nil { // what is buffered: a poll does not see it
			gone(err)
			return stopKicking
		}
		var restore func()
		restore = cw.WatchClient(s.w.Fd(), func() {
			if err := s.w.Drain(true, kick); err != nil {
				// A descriptor at its end stays readable: watching it
				// on would interrupt the target again and again.
				restore()
				gone(err)
			}
		})
		return func() {
			restore()
			stopKicking()
		}
	}
	var (
		mu      sync.Mutex
		stopped bool
		unwatch func()
	)
	timer := time.AfterFunc(watchDelay, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			unwatch = s.w.Watch(kick, gone)
		}
	})
	return func() {
		timer.Stop()
		mu.Lock()
		stopped = true
		u := unwatch
		mu.Unlock()
		if u != nil {
			u()
		}
		stopKicking()
	}
}

// report turns an engine stop into the packets for the client: a console
// note when the thread stopped inside a critical section, then the stop
// reply.
func (s *session) report(st *stepper.Stop) [][]byte {
	pr := s.srv.proc
	pr.last = st
	switch st.Kind {
	case stepper.StopExited:
		pr.exited = true
		return one(s.exitPacket('W', st.Code, pr.p.Pid()))
	case stepper.StopKilled:
		pr.exited = true
		return one(s.exitPacket('X', int(s.wireSignal(st.Sig)), pr.p.Pid()))
	case stepper.StopFork:
		s.takeChild(pr, st)
	}
	s.gThread, s.cThread = st.Tid, st.Tid
	var out [][]byte
	if st.Note != "" {
		out = append(out, consoleOutput("rseqdbg: "+st.Note+"\n")...)
	}
	if st.Inspect != nil {
		out = append(out, consoleOutput(fmt.Sprintf("rseqdbg: thread %d %s\n", st.Tid, sess.InspectText(st.Inspect)))...)
	} else if r := st.Inside; r != nil {
		note := fmt.Sprintf("rseqdbg: thread %d stopped inside critical section %s [%#x, %#x), abort %#x: "+
			"the kernel will abort it when the thread resumes; resuming runs it to its commit\n",
			st.Tid, r.Name, r.Start, r.End, r.Abort)
		out = append(out, consoleOutput(note)...)
	}
	return append(out, s.stopPacket(st))
}

// takeChild makes the child of a fork stop a process of the server,
// stopped, with the parent's breakpoints (the client's among them) still
// in its memory: the client removes them (z after Hg) and detaches it
// (D;PID), or keeps debugging it (detach-on-fork off), as with gdbserver.
// Runs on the tracer thread, which the child shares.
func (s *session) takeChild(pr *process, st *stepper.Stop) {
	child, err := pr.rc.Fork(st.Child)
	if err != nil && child == nil {
		slog.Warn("taking a fork child", "pid", st.Child, "err", err)
		return
	}
	if err != nil {
		slog.Warn("taking a fork child", "pid", st.Child, "err", err)
	}
	cp, ok := child.T.(Process)
	if !ok {
		if err := child.Release(); err != nil {
			slog.Warn("releasing a fork child", "pid", st.Child, "err", err)
		}
		return
	}
	s.srv.others = append(s.srv.others, &process{p: cp, eng: child.Eng, launched: pr.launched, rc: child,
		caps: capsOf(cp), last: &stepper.Stop{Kind: stepper.StopSignal, Tid: st.Child, Sig: int(unix.SIGSTOP)}})
	fmt.Fprintf(s.srv.cfg.Notices, "Process %d forked; child pid = %d\n", pr.p.Pid(), st.Child)
}

func (s *session) exitPacket(kind byte, code, pid int) string {
	p := fmt.Sprintf("%c%02x", kind, code&0xff)
	if s.multiprocess {
		p += fmt.Sprintf(";process:%x", pid)
	}
	return p
}

// consoleOutput splits text into O packets.
func consoleOutput(text string) [][]byte {
	var out [][]byte
	for len(text) > 0 {
		n := min(len(text), 2048)
		out = append(out, wire.AppendHex([]byte{'O'}, []byte(text[:n])))
		text = text[n:]
	}
	return out
}

// stopPacket is the T reply for a stop. Breakpoint stops carry swbreak
// when gdb asked for it; the PC is already back on the breakpoint either
// way (lldb negotiates nothing and expects that).
func (s *session) stopPacket(st *stepper.Stop) []byte {
	pr := s.srv.proc
	if pr == nil {
		return []byte("W00")
	}
	switch st.Kind {
	case stepper.StopExited:
		return []byte(s.exitPacket('W', st.Code, pr.p.Pid()))
	case stepper.StopKilled:
		return []byte(s.exitPacket('X', int(s.wireSignal(st.Sig)), pr.p.Pid()))
	}
	sig := int(unix.SIGTRAP)
	reason := "trace"
	var pairs []wire.StopPair
	switch st.Kind {
	case stepper.StopBreakpoint:
		reason = "breakpoint"
		if s.swbreak {
			pairs = append(pairs, wire.StopPair{Key: "swbreak"})
		}
	case stepper.StopWatch:
		reason = "watchpoint"
		w := pr.hw.hit(st.WatchAddr)
		switch {
		case w != nil && w.typ == '1', w == nil && s.upstreamHWBreak(st.WatchAddr):
			reason = "breakpoint"
			if s.hwbreak {
				pairs = append(pairs, wire.StopPair{Key: "hwbreak"})
			}
		case w != nil && w.typ == '4':
			pairs = append(pairs, wire.StopPair{Key: "awatch", Value: fmt.Sprintf("%x", st.WatchAddr)})
		default:
			pairs = append(pairs, wire.StopPair{Key: "watch", Value: fmt.Sprintf("%x", st.WatchAddr)})
		}
	case stepper.StopSignal:
		sig, reason = st.Sig, "signal"
	case stepper.StopFork:
		reason = "fork"
		if st.Vfork {
			reason = "vfork"
		}
		if (st.Vfork && s.vforkEvents) || (!st.Vfork && s.forkEvents) {
			pairs = append(pairs, wire.StopPair{Key: reason, Value: s.threadIDString(st.Child, st.Child)})
		}
	case stepper.StopVforkDone:
		// The vfork child exec'd or exited: the client puts back the
		// breakpoints it kept out of the parent meanwhile.
		reason = "vforkdone"
		if s.vforkEvents {
			pairs = append(pairs, wire.StopPair{Key: "vforkdone"})
		}
	case stepper.StopExec:
		// The old image and every breakpoint in it are gone: a client
		// that takes exec events reloads the program and inserts its
		// breakpoints again, as with gdbserver.
		reason = "exec"
		if s.execEvents {
			pairs = append(pairs, wire.StopPair{Key: "exec", Value: string(wire.AppendHex(nil, []byte(pr.p.ExecPath())))})
		}
	case stepper.StopInterrupt:
		// gdb expects the SIGINT its ^C stands for, lldb the SIGSTOP
		// lldb-server reports.
		sig, reason = int(unix.SIGINT), "signal"
		if s.lldb {
			sig = int(unix.SIGSTOP)
		}
	}
	tid := st.Tid
	if r, _, err := target.QuickRegs(pr.p, tid); err == nil {
		pairs = append(pairs, expedite(&r)...)
	}
	pairs = append(pairs, wire.StopPair{Key: "thread", Value: s.threadIDString(pr.p.Pid(), tid)})
	if s.lldb {
		pairs = append(pairs, wire.StopPair{Key: "reason", Value: reason})
	}
	if s.listThreads {
		var ids, pcs []string
		for _, t := range pr.p.Threads() {
			ids = append(ids, fmt.Sprintf("%x", t))
			pc := uint64(0)
			if r, _, err := target.QuickRegs(pr.p, t); err == nil {
				pc = r.Rip
			}
			pcs = append(pcs, fmt.Sprintf("%x", pc))
		}
		pairs = append(pairs, wire.StopPair{Key: "threads", Value: strings.Join(ids, ",")},
			wire.StopPair{Key: "thread-pcs", Value: strings.Join(pcs, ",")})
	}
	b, err := wire.AppendStopReply(nil, s.wireSignal(sig), pairs...)
	if err != nil {
		return []byte(fmt.Sprintf("T%02xthread:%s;", s.wireSignal(sig), s.threadIDString(pr.p.Pid(), tid)))
	}
	return b
}

// threadStopInfo answers lldb's qThreadStopInfo: the last stop for the
// thread that stopped, "no reason" for the others.
func (s *session) threadStopInfo(arg string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	tid, err := parseHexInt(arg, 1<<31)
	if err != nil {
		return replyErr
	}
	if tid == pr.last.Tid {
		return [][]byte{s.stopPacket(pr.last)}
	}
	alive := false
	for _, t := range pr.p.Threads() {
		alive = alive || t == tid
	}
	if !alive {
		return replyErr
	}
	b, _ := wire.AppendStopReply(nil, 0, wire.StopPair{Key: "thread", Value: s.threadIDString(pr.p.Pid(), tid)})
	return [][]byte{b}
}

// regionAt returns the critical section holding pc.
func regionAt(eng *stepper.Engine, pc uint64) *regions.Region {
	if r := eng.RegionAt(pc); r != nil && r.Kind == regions.KindCriticalSection {
		return r
	}
	return nil
}
