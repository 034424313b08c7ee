package dap

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rseqdbg/rseqdbg/eval"
	sess "github.com/rseqdbg/rseqdbg/session"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
)

// RseqRegionsRequest asks for every restartable region the debugger knows
// (custom request "rseqRegions", no arguments).
type RseqRegionsRequest struct {
	dap.Request
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// RseqRegionsResponse lists the regions and what loading them warned about.
type RseqRegionsResponse struct {
	dap.Response
	Body RseqRegionsBody `json:"body"`
}

// RseqRegionsBody is the body of RseqRegionsResponse.
type RseqRegionsBody struct {
	Regions  []RseqRegion `json:"regions"`
	Warnings []string     `json:"warnings,omitempty"`
}

// RseqStatsRequest asks for the stepping counters (custom request
// "rseqStats", no arguments).
type RseqStatsRequest struct {
	dap.Request
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// RseqInspectRequest turns inspect mode on or off (custom request
// "rseqInspect", arguments {"on": bool}); the response says the mode now.
type RseqInspectRequest struct {
	dap.Request
	Arguments RseqInspectArguments `json:"arguments"`
}

// RseqInspectArguments are rseqInspect's arguments.
type RseqInspectArguments struct {
	On bool `json:"on"`
}

// RseqInspectResponse says whether inspect mode is on.
type RseqInspectResponse struct {
	dap.Response
	Body RseqInspectBody `json:"body"`
}

// RseqInspectBody is the body of RseqInspectResponse.
type RseqInspectBody struct {
	Inspect bool `json:"inspect"`
}

// RseqAbortRequest aborts the critical section a stopped thread is in, as
// the kernel would (custom request "rseqAbort", arguments {"threadId": N}).
// A stopped event follows, in the abort handler; a wrong signature before
// the handler is an error response and changes nothing.
type RseqAbortRequest struct {
	dap.Request
	Arguments RseqAbortArguments `json:"arguments"`
}

// RseqAbortArguments are rseqAbort's arguments.
type RseqAbortArguments struct {
	ThreadID int `json:"threadId"`
}

// RseqAbortResponse acknowledges a forced abort.
type RseqAbortResponse struct {
	dap.Response
}

// RseqStatsResponse carries the stepping counters.
type RseqStatsResponse struct {
	dap.Response
	Body RseqStats `json:"body"`
}

// RseqStats are the engine's counters; stepsInside must stay 0 (no
// hardware step ever starts inside a critical section).
type RseqStats struct {
	SingleSteps   int `json:"singleSteps"`
	RegionRuns    int `json:"regionRuns"`
	Commits       int `json:"commits"`
	Aborts        int `json:"aborts"`
	OtherExits    int `json:"otherExits"`
	Interrupted   int `json:"interrupted"`
	SignalsInRuns int `json:"signalsInRuns"`
	Discovered    int `json:"discovered"`
	StepsInside   int `json:"stepsInside"`
	// InspectedSteps and ForcedAborts count inspect mode's steps inside
	// sections and the aborts rseqAbort made.
	InspectedSteps int `json:"inspectedSteps"`
	ForcedAborts   int `json:"forcedAborts"`
	// CaughtInside counts threads a stop of the world caught inside a
	// critical section (each aborts when resumed).
	CaughtInside int `json:"caughtInside"`
	// PacedSignals counts signals whose delivery was slowed because they
	// came faster than the thread could make progress (stepper/pace.go).
	PacedSignals int `json:"pacedSignals"`
	// PassedNotOwned and Pauses are non-stop mode's: stops at another
	// thread's temporary breakpoint passed unreported, and the holds of
	// every running thread while an int3 was lifted.
	PassedNotOwned int `json:"passedNotOwned"`
	Pauses         int `json:"pauses"`
	// Displaced counts continues from a breakpoint that ran a copy of its
	// instruction instead of a step over it (stepper/displace.go).
	Displaced int `json:"displaced"`
}

// LaunchArguments are the launch request's arguments (the launch
// configuration in VS Code).
type LaunchArguments struct {
	Program string   `json:"program"`
	Args    []string `json:"args"`
	Cwd     string   `json:"cwd"`
	// Env adds to (or, with null values, removes from) the adapter's
	// environment.
	Env         map[string]*string `json:"env"`
	StopOnEntry bool               `json:"stopOnEntry"`
	// VDSO steps vDSO functions atomically (default true).
	VDSO *bool `json:"vdso"`
	// ASLR leaves address-space randomization on (off by default, as gdb).
	ASLR bool `json:"aslr"`
	// Inspect starts in inspect mode: stepping inside critical sections.
	Inspect bool `json:"inspect"`
	// Regions are ranges to step as one region (a seqlock reader of the
	// user's own, JIT code), as `--declare`.
	Regions []RegionArgument `json:"regions"`
	// FollowForks debugs a forked child as a further process of the
	// session (dap/fork.go); otherwise children are let go, clean.
	FollowForks bool `json:"followForks"`
	// NonStop stops only the thread that stops (allThreadsStopped false);
	// continue, the steps and pause act on the thread they name.
	NonStop bool `json:"nonStop"`
}

// RegionArgument declares a region: start and end are addresses or
// SYMBOL+OFFSET.
type RegionArgument struct {
	Start string `json:"start"`
	End   string `json:"end"`
	Name  string `json:"name"`
}

// AttachArguments are the attach request's arguments; processId may be a
// number or a string (VS Code's ${command:pickProcess} yields a string).
type AttachArguments struct {
	ProcessID   json.RawMessage  `json:"processId"`
	StopOnEntry bool             `json:"stopOnEntry"`
	VDSO        *bool            `json:"vdso"`
	Regions     []RegionArgument `json:"regions"`
	Inspect     bool             `json:"inspect"`
	NonStop     bool             `json:"nonStop"`
}

var errNoProgram = errors.New("no program: launch or attach first")

func (s *Server) session() (*session, error) {
	ss := s.sess.Load()
	if ss == nil {
		return nil, errNoProgram
	}
	return ss, nil
}

func (s *Server) dispatch(req dap.RequestMessage, raw []byte) (dap.ResponseMessage, error) {
	switch r := req.(type) {
	case *dap.InitializeRequest:
		s.initialized = true
		return &dap.InitializeResponse{Body: capabilities()}, nil
	case *dap.LaunchRequest:
		return s.onLaunch(r)
	case *dap.AttachRequest:
		return s.onAttach(r)
	case *dap.DisconnectRequest:
		return s.onDisconnect(r, raw)
	case *dap.TerminateRequest:
		return s.onTerminate(r)
	case *dap.PauseRequest:
		ss, err := s.session()
		if err != nil {
			return nil, err
		}
		if ss.nonStop {
			// The thread named stops alone; its stop comes as an event.
			if err := ss.pauseThread(r.Arguments.ThreadId); err != nil {
				return nil, err
			}
			return &dap.PauseResponse{}, nil
		}
		ss.requestPause()
		return &dap.PauseResponse{}, nil
	case *dap.SetBreakpointsRequest:
		return s.onSetBreakpoints(r)
	case *dap.SetFunctionBreakpointsRequest:
		return s.onSetFunctionBreakpoints(r)
	case *dap.SetInstructionBreakpointsRequest:
		return s.onSetInstructionBreakpoints(r)
	case *dap.SetExceptionBreakpointsRequest:
		// VS Code sends it whatever the capabilities say; there are no
		// exception filters to set.
		return &dap.SetExceptionBreakpointsResponse{}, nil
	case *dap.ConfigurationDoneRequest:
		return s.onConfigurationDone(r)
	case *dap.ThreadsRequest:
		return s.onThreads(r)
	case *dap.StackTraceRequest:
		return s.onStackTrace(r)
	case *dap.ScopesRequest:
		return s.onScopes(r)
	case *dap.VariablesRequest:
		return s.onVariables(r)
	case *dap.SetVariableRequest:
		return s.onSetVariable(r)
	case *dap.EvaluateRequest:
		return s.onEvaluate(r)
	case *dap.ContinueRequest:
		return s.onContinue(r)
	case *dap.NextRequest:
		return s.onStep(r, sess.StepOver, r.Arguments.ThreadId, r.Arguments.SingleThread, r.Arguments.Granularity)
	case *dap.StepInRequest:
		return s.onStep(r, sess.StepInto, r.Arguments.ThreadId, r.Arguments.SingleThread, r.Arguments.Granularity)
	case *dap.StepOutRequest:
		return s.onStep(r, sess.StepOut, r.Arguments.ThreadId, r.Arguments.SingleThread, r.Arguments.Granularity)
	case *dap.DisassembleRequest:
		return s.onDisassemble(r)
	case *dap.ReadMemoryRequest:
		return s.onReadMemory(r)
	case *dap.WriteMemoryRequest:
		return s.onWriteMemory(r)
	case *RseqRegionsRequest:
		return s.onRseqRegions(r)
	case *RseqStatsRequest:
		return s.onRseqStats(r)
	case *RseqInspectRequest:
		return s.onRseqInspect(r)
	case *RseqAbortRequest:
		return s.onRseqAbort(r)
	}
	return nil, fmt.Errorf("unsupported request %q", req.GetRequest().Command)
}

func (s *Server) onLaunch(r *dap.LaunchRequest) (dap.ResponseMessage, error) {
	if s.opts.NoTargets {
		return nil, errors.New("this server does not start programs")
	}
	if s.sess.Load() != nil {
		return nil, errors.New("already debugging a program")
	}
	var a LaunchArguments
	if err := json.Unmarshal(r.Arguments, &a); err != nil {
		return nil, fmt.Errorf("launch arguments: %w", err)
	}
	if a.Program == "" {
		return nil, errors.New("launch: program is required")
	}
	prog := a.Program
	if !filepath.IsAbs(prog) && a.Cwd != "" {
		if _, err := os.Stat(filepath.Join(a.Cwd, prog)); err == nil {
			prog = filepath.Join(a.Cwd, prog)
		}
	}
	if st, err := os.Stat(prog); err != nil || st.IsDir() {
		return nil, fmt.Errorf("launch: program %q not found", a.Program)
	}
	// The debuggee must not read the protocol: with stdio transport our
	// stdin is the client's message stream.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	defer devnull.Close()
	// The output goes to the client once the session exists; until then
	// it waits in the pipes.
	var out *sess.Output
	started := make(chan struct{})
	out = &sess.Output{Sink: func(stream, text string) {
		<-started
		s.sendOutput(stream, text)
	}}
	outW, errW, err := out.Pipes()
	if err != nil {
		return nil, fmt.Errorf("launch: output pipe: %w", err)
	}
	lo := ptrace.LaunchOptions{Path: prog, Args: a.Args, Env: launchEnv(a.Env), Dir: a.Cwd,
		Stdin: devnull, Stdout: outW, Stderr: errW, KeepASLR: a.ASLR}
	p, err := ptrace.Launch(lo)
	outW.Close()
	errW.Close()
	close(started)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	ss, err := s.start(p, true, prog, a.VDSO)
	if err != nil {
		return nil, err
	}
	s.declare(ss, a.Regions)
	if err := ss.startInspect(a.Inspect); err != nil {
		return nil, err
	}
	if a.FollowForks && a.NonStop {
		return nil, errors.New("launch: followForks and nonStop cannot be combined")
	}
	if a.FollowForks {
		var ferr error
		if err := ss.do(func() { ferr = ss.followForks() }); err != nil || ferr != nil {
			return nil, fmt.Errorf("launch: followForks: %w", errors.Join(err, ferr))
		}
	}
	if err := ss.startNonStop(a.NonStop); err != nil {
		return nil, err
	}
	ss.entry = a.StopOnEntry
	ss.output = out
	s.started(r, ss, "launch")
	return nil, errLater
}

// launchEnv applies the configuration's env to the adapter's environment.
func launchEnv(env map[string]*string) []string {
	if len(env) == 0 {
		return nil
	}
	m := map[string]string{}
	var order []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for k, v := range env {
		if v == nil {
			delete(m, k)
			continue
		}
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = *v
	}
	out := make([]string, 0, len(m))
	for _, k := range order {
		if v, ok := m[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func (s *Server) onAttach(r *dap.AttachRequest) (dap.ResponseMessage, error) {
	if s.opts.NoTargets {
		return nil, errors.New("this server does not attach to programs")
	}
	if s.sess.Load() != nil {
		return nil, errors.New("already debugging a program")
	}
	var a AttachArguments
	if err := json.Unmarshal(r.Arguments, &a); err != nil {
		return nil, fmt.Errorf("attach arguments: %w", err)
	}
	pidText := strings.Trim(string(bytes.TrimSpace(a.ProcessID)), `"`)
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("attach: bad processId %q", pidText)
	}
	p, err := ptrace.Attach(pid)
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	exe := ""
	p.Do(func() { exe = p.ExecPath() })
	ss, err := s.start(p, false, exe, a.VDSO)
	if err != nil {
		return nil, err
	}
	s.declare(ss, a.Regions)
	if err := ss.startInspect(a.Inspect); err != nil {
		return nil, err
	}
	if err := ss.startNonStop(a.NonStop); err != nil {
		return nil, err
	}
	ss.entry = a.StopOnEntry
	s.started(r, ss, "attach")
	return nil, errLater
}

// declare declares the configuration's regions; one that cannot be is
// said on the console and the session goes on.
func (s *Server) declare(ss *session, list []RegionArgument) {
	for _, a := range list {
		d := sess.Declaration{Start: a.Start, End: a.End, Name: a.Name}
		var err error
		ss.do(func() { _, err = ss.rc.Declare(d) })
		if err != nil {
			s.sendOutput("console", fmt.Sprintf("rseqdbg: %v\n", err))
		}
	}
}

// start builds the engine and the session over a stopped process.
func (s *Server) start(p *ptrace.Process, launched bool, program string, vdso *bool) (*session, error) {
	opts := stepper.Options{}
	if vdso != nil && !*vdso {
		opts.NoVDSO = true
	}
	eng, err := stepper.New(p, opts)
	if err != nil {
		p.Do(func() {
			if launched {
				p.Kill()
			} else {
				p.Detach()
			}
		})
		p.Close()
		return nil, fmt.Errorf("starting the debugger core: %w", err)
	}
	ss := newSession(s, p, eng, launched, program)
	err = ss.do(func() {
		ss.core.Sync()
		ss.dbg.Sync(eng.Objects())
		ss.cur = p.Pid()
		ss.threadEvents()
	})
	if err != nil {
		return nil, err
	}
	s.sess.Store(ss)
	return ss, nil
}

// started answers launch or attach, then tells the client it may configure.
func (s *Server) started(r dap.RequestMessage, ss *session, method string) {
	var resp dap.ResponseMessage = &dap.LaunchResponse{}
	if method == "attach" {
		resp = &dap.AttachResponse{}
	}
	s.reply(r, resp, nil)
	s.send(&dap.ProcessEvent{Event: event("process"), Body: dap.ProcessEventBody{
		Name: ss.program, SystemProcessId: ss.proc.Pid(), IsLocalProcess: true, StartMethod: method, PointerSize: 64}})
	var warns []string
	ss.do(func() { warns = ss.eng.Warnings() })
	for _, w := range warns {
		s.sendOutput("console", "rseq: warning: "+w+"\n")
	}
	s.send(&dap.InitializedEvent{Event: event("initialized")})
}

func (s *Server) onConfigurationDone(r *dap.ConfigurationDoneRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	s.reply(r, &dap.ConfigurationDoneResponse{}, nil)
	ss.mu.Lock()
	busy := ss.running || ss.ended
	ss.mu.Unlock()
	if busy {
		return nil, errLater
	}
	if !ss.entry {
		// Read before the run: a fork it follows changes the process.
		pid := ss.proc.Pid()
		ss.resume(runContinue, ss.cur, "", func() (*sess.Stop, error) { return ss.rc.Continue(ss.cur) })
		// No continue request started this run, so say it.
		s.send(&dap.ContinuedEvent{Event: event("continued"), Body: dap.ContinuedEventBody{ThreadId: pid, AllThreadsContinued: !ss.nonStop}})
		return nil, errLater
	}
	var mainAt uint64
	ss.do(func() {
		if f, ok := ss.core.Syms.LookupFunc("main"); ok && ss.launched {
			mainAt = ss.core.Syms.AfterPrologue(f)
		}
	})
	if mainAt == 0 {
		// Attached (or no main): the entry stop is where the process is.
		var events []dap.Message
		ss.do(func() {
			events, _ = ss.stopEvents(&sess.Stop{Stop: &stepper.Stop{Kind: stepper.StopStep, Tid: ss.cur}}, "entry")
		})
		for _, m := range events {
			s.send(m)
		}
		return nil, errLater
	}
	ss.resume(runStep, ss.cur, "entry", func() (*sess.Stop, error) { return ss.rc.Until(ss.cur, mainAt, stepper.OthersRun) })
	return nil, errLater
}

func (s *Server) onDisconnect(r *dap.DisconnectRequest, raw []byte) (dap.ResponseMessage, error) {
	ss := s.sess.Load()
	if ss == nil {
		s.reply(r, &dap.DisconnectResponse{}, nil)
		s.stop()
		return nil, errLater
	}
	kill := ss.launched
	if r.Arguments != nil && r.Arguments.TerminateDebuggee {
		kill = true
	} else if explicitFalse(raw) {
		kill = false
	}
	ss.soon(true, r, func() (dap.ResponseMessage, error) {
		// Whatever happens, the session is over once this is answered.
		defer s.stop()
		if ss.eng.Exited() {
			return &dap.DisconnectResponse{}, nil
		}
		var err error
		if kill {
			err = ss.eng.Kill()
		} else {
			err = ss.eng.Detach()
		}
		if err != nil {
			return nil, fmt.Errorf("disconnect: %w", err)
		}
		return &dap.DisconnectResponse{}, nil
	})
	return nil, errLater
}

// explicitFalse tells "terminateDebuggee": false apart from an absent
// field, which go-dap's struct (omitempty) cannot.
func explicitFalse(raw []byte) bool {
	var m struct {
		Arguments struct {
			TerminateDebuggee *bool `json:"terminateDebuggee"`
		} `json:"arguments"`
	}
	return json.Unmarshal(raw, &m) == nil && m.Arguments.TerminateDebuggee != nil && !*m.Arguments.TerminateDebuggee
}

func (s *Server) onTerminate(r *dap.TerminateRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	ss.soon(true, r, func() (dap.ResponseMessage, error) {
		if ss.eng.Exited() {
			return &dap.TerminateResponse{}, nil
		}
		if err := ss.eng.Kill(); err != nil {
			return nil, fmt.Errorf("terminate: %w", err)
		}
		// The response first: the client then waits for exited/terminated.
		s.reply(r, &dap.TerminateResponse{}, nil)
		for _, m := range ss.endEvents(128 + 9) {
			s.send(m)
		}
		return nil, errLater
	})
	return nil, errLater
}

func (s *Server) onSetBreakpoints(r *dap.SetBreakpointsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	path := r.Arguments.Source.Path
	if path == "" {
		path = r.Arguments.Source.Name
	}
	if path == "" {
		return nil, errors.New("setBreakpoints: the source has no path")
	}
	list := r.Arguments.Breakpoints
	if list == nil {
		for _, l := range r.Arguments.Lines {
			list = append(list, dap.SourceBreakpoint{Line: l})
		}
	}
	ss.soon(false, r, func() (dap.ResponseMessage, error) {
		bps := ss.setSourceBreakpoints(path, list)
		return &dap.SetBreakpointsResponse{Body: dap.SetBreakpointsResponseBody{Breakpoints: bps}}, nil
	})
	return nil, errLater
}

func (s *Server) onSetFunctionBreakpoints(r *dap.SetFunctionBreakpointsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	ss.soon(false, r, func() (dap.ResponseMessage, error) {
		bps := ss.setFunctionBreakpoints(r.Arguments.Breakpoints)
		return &dap.SetFunctionBreakpointsResponse{Body: dap.SetFunctionBreakpointsResponseBody{Breakpoints: bps}}, nil
	})
	return nil, errLater
}

func (s *Server) onSetInstructionBreakpoints(r *dap.SetInstructionBreakpointsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	ss.soon(false, r, func() (dap.ResponseMessage, error) {
		bps := ss.setInstructionBreakpoints(r.Arguments.Breakpoints)
		return &dap.SetInstructionBreakpointsResponse{Body: dap.SetInstructionBreakpointsResponseBody{Breakpoints: bps}}, nil
	})
	return nil, errLater
}

func (s *Server) onThreads(r *dap.ThreadsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		// Before launch VS Code may still ask; no threads is the answer.
		return &dap.ThreadsResponse{Body: dap.ThreadsResponseBody{Threads: []dap.Thread{}}}, nil
	}
	ss.mu.Lock()
	tids := append([]int(nil), ss.threads...)
	running, ended := ss.running, ss.ended
	ss.mu.Unlock()
	if !running && !ended {
		ss.do(func() {
			if !ss.eng.Exited() {
				tids = ss.allThreads()
			}
		})
	}
	if running {
		// The tracer thread is busy with the run, and the list of the last
		// stop misses threads started since (all the workers, when the run
		// began at launch): the kernel's list is current and needs no
		// ptrace.
		ss.mu.Lock()
		pids := []int{ss.proc.Pid()}
		for _, pk := range ss.parked {
			pids = append(pids, pk.proc.Pid())
		}
		ss.mu.Unlock()
		var all []int
		for _, pid := range pids {
			if live, err := liveThreads(pid); err == nil {
				all = append(all, live...)
			} else {
				ss.log.Debug("dap: listing threads of the running program", "err", err)
			}
		}
		if len(all) > 0 {
			tids = all
		}
	}
	if ended {
		tids = nil
	}
	out := make([]dap.Thread, 0, len(tids))
	for _, t := range tids {
		out = append(out, dap.Thread{Id: t, Name: ss.threadName(t)})
	}
	return &dap.ThreadsResponse{Body: dap.ThreadsResponseBody{Threads: out}}, nil
}

// liveThreads lists the threads of process pid from /proc, the main thread
// first.
func liveThreads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("listing threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if t, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, t)
		}
	}
	slices.SortFunc(tids, func(a, b int) int {
		switch {
		case a == b:
			return 0
		case a == pid:
			return -1
		case b == pid:
			return 1
		}
		return cmp.Compare(a, b)
	})
	return tids, nil
}

func (s *Server) onStackTrace(r *dap.StackTraceRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	var body dap.StackTraceResponseBody
	err = ss.stopped(func() error {
		fs, err := ss.threadFrames(r.Arguments.ThreadId)
		if err != nil {
			return err
		}
		start := max(r.Arguments.StartFrame, 0)
		end := len(fs)
		if r.Arguments.Levels > 0 && start+r.Arguments.Levels < end {
			end = start + r.Arguments.Levels
		}
		body.StackFrames = []dap.StackFrame{}
		for i := start; i < end; i++ {
			body.StackFrames = append(body.StackFrames, ss.stackFrame(fs[i]))
		}
		body.TotalFrames = len(fs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.StackTraceResponse{Body: body}, nil
}

func (s *Server) onScopes(r *dap.ScopesRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	var scopes []dap.Scope
	err = ss.stopped(func() error {
		f, err := ss.frameByID(r.Arguments.FrameId)
		if err != nil {
			return err
		}
		scopes = ss.scopes(f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.ScopesResponse{Body: dap.ScopesResponseBody{Scopes: scopes}}, nil
}

func (s *Server) onVariables(r *dap.VariablesRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	hex := r.Arguments.Format != nil && r.Arguments.Format.Hex
	vars := []dap.Variable{}
	err = ss.stopped(func() error {
		ref, err := ss.refByID(r.Arguments.VariablesReference)
		if err != nil {
			return err
		}
		switch ref.kind {
		case refRegisters:
			vars = ss.registerVars(ref.frame, hex)
		case refEflags:
			vars = eflagsVars(ref.frame.uf.Regs.Eflags)
		case refRseq:
			vars = ss.rseqVars(ref.frame)
		case refLocals, refArgs:
			list, err := ss.ev.Locals(&ref.frame.Frame, ref.kind == refArgs)
			if err != nil {
				// No DWARF here (libc, stubs): an empty scope, not an error.
				return nil
			}
			for _, v := range list {
				vars = append(vars, ss.variable(v, hex))
			}
		case refValue:
			// Clients page arrays: "indexed" asks for elements only,
			// "named" for the rest, which arrays do not have.
			isArray := ref.val.IsArray()
			if r.Arguments.Filter == "named" && isArray || r.Arguments.Filter == "indexed" && !isArray {
				return nil
			}
			list, err := ss.ev.Expand(ref.val, r.Arguments.Start, r.Arguments.Count)
			if err != nil {
				return err
			}
			for _, v := range list {
				vars = append(vars, ss.variable(v, hex))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.VariablesResponse{Body: dap.VariablesResponseBody{Variables: vars}}, nil
}

func (s *Server) onSetVariable(r *dap.SetVariableRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	hex := r.Arguments.Format != nil && r.Arguments.Format.Hex
	var body dap.SetVariableResponseBody
	err = ss.stopped(func() error {
		ref, err := ss.refByID(r.Arguments.VariablesReference)
		if err != nil {
			return err
		}
		src, err := eval.Parse(r.Arguments.Value)
		if err != nil {
			return err
		}
		if ref.kind == refRegisters {
			return ss.setRegister(ref.frame, r.Arguments.Name, src, &body)
		}
		var list []*eval.Value
		switch ref.kind {
		case refLocals, refArgs:
			list, err = ss.ev.Locals(&ref.frame.Frame, ref.kind == refArgs)
		case refValue:
			list, err = ss.ev.Expand(ref.val, 0, 0)
		default:
			return errors.New("these values cannot be set")
		}
		if err != nil {
			return err
		}
		for _, dst := range list {
			if dst.Name() != r.Arguments.Name {
				continue
			}
			f := dst.Frame()
			if f == nil && ref.frame != nil {
				f = &ref.frame.Frame
			}
			if f == nil {
				top, err := ss.topFrame(ss.cur)
				if err != nil {
					return err
				}
				f = &top.Frame
			}
			v, err := ss.ev.Eval(src, f)
			if err != nil {
				return err
			}
			if err := ss.ev.Assign(dst, v); err != nil {
				return err
			}
			ss.refreshRegs(f.Tid)
			dv := ss.variable(dst, hex)
			body = dap.SetVariableResponseBody{Value: dv.Value, Type: dv.Type, VariablesReference: dv.VariablesReference,
				NamedVariables: dv.NamedVariables, IndexedVariables: dv.IndexedVariables}
			return nil
		}
		return fmt.Errorf("no variable %q here", r.Arguments.Name)
	})
	if err != nil {
		return nil, err
	}
	return &dap.SetVariableResponse{Body: body}, nil
}

func (s *Server) onEvaluate(r *dap.EvaluateRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	hex := r.Arguments.Format != nil && r.Arguments.Format.Hex
	e, err := eval.Parse(r.Arguments.Expression)
	if err != nil {
		return nil, err
	}
	var body dap.EvaluateResponseBody
	err = ss.stopped(func() error {
		f, err := ss.frameByID(r.Arguments.FrameId)
		if err != nil {
			return err
		}
		v, err := ss.ev.Eval(e, &f.Frame)
		if err != nil {
			return err
		}
		if v.Name() == "" {
			v.SetName(r.Arguments.Expression)
		}
		dv := ss.variable(v, hex)
		body = dap.EvaluateResponseBody{Result: dv.Value, Type: dv.Type, VariablesReference: dv.VariablesReference,
			NamedVariables: dv.NamedVariables, IndexedVariables: dv.IndexedVariables, MemoryReference: dv.MemoryReference}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.EvaluateResponse{Body: body}, nil
}

// resumable checks that a resumption may start and picks its thread.
func (s *Server) resumable(tid int) (*session, int, error) {
	ss, err := s.session()
	if err != nil {
		return nil, 0, err
	}
	ss.mu.Lock()
	running, ended := ss.running, ss.ended
	ss.mu.Unlock()
	if running {
		return nil, 0, errors.New("the program is already running")
	}
	if ended {
		return nil, 0, errors.New("the program has exited")
	}
	ok, busy := false, false
	ss.do(func() {
		ok = !ss.eng.Exited() && ss.alive(tid)
		if !ok && !ss.eng.Exited() && ss.alive(ss.cur) && !ss.nonStop {
			tid, ok = ss.cur, true
		}
		busy = ok && ss.eng.Running(tid)
	})
	if !ok {
		return nil, 0, errors.New("the program is not running")
	}
	if busy {
		// Non-stop mode: this thread runs while others are stopped.
		return nil, 0, fmt.Errorf("thread %d is running: pause it first", tid)
	}
	return ss, tid, nil
}

func (s *Server) onContinue(r *dap.ContinueRequest) (dap.ResponseMessage, error) {
	ss, tid, err := s.resumable(r.Arguments.ThreadId)
	if err != nil {
		return nil, err
	}
	// Every thread resumes even for singleThread: the core's continue is
	// all-stop, and the response says so. In non-stop mode the thread
	// named alone resumes.
	s.reply(r, &dap.ContinueResponse{Body: dap.ContinueResponseBody{AllThreadsContinued: !ss.nonStop}}, nil)
	ss.resume(runContinue, tid, "", func() (*sess.Stop, error) { return ss.rc.Continue(tid) })
	return nil, errLater
}

func (s *Server) onStep(r dap.RequestMessage, kind sess.StepKind, tid int, single bool, gran dap.SteppingGranularity) (dap.ResponseMessage, error) {
	ss, tid, err := s.resumable(tid)
	if err != nil {
		return nil, err
	}
	others := stepper.OthersRun
	if single {
		others = stepper.OthersStay
	}
	instr := gran == "instruction"
	if instr {
		// One instruction with the other threads held, so the disassembly
		// view moves by exactly one instruction (or one whole region run).
		others = stepper.OthersStay
	}
	var resp dap.ResponseMessage
	switch kind {
	case sess.StepOver:
		resp = &dap.NextResponse{}
	case sess.StepInto:
		resp = &dap.StepInResponse{}
	default:
		resp = &dap.StepOutResponse{}
	}
	s.reply(r, resp, nil)
	ss.resume(runStep, tid, "", func() (*sess.Stop, error) { return ss.rc.Step(tid, kind, instr, others) })
	return nil, errLater
}

func (s *Server) onDisassemble(r *dap.DisassembleRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr(r.Arguments.MemoryReference)
	if err != nil {
		return nil, err
	}
	addr += uint64(int64(r.Arguments.Offset))
	n := r.Arguments.InstructionCount
	if n < 0 || n > maxInstructions || r.Arguments.InstructionOffset < -maxInstructions || r.Arguments.InstructionOffset > maxInstructions {
		return nil, fmt.Errorf("disassemble: at most %d instructions around the address", maxInstructions)
	}
	var list []dap.DisassembledInstruction
	err = ss.stopped(func() error {
		list = ss.disassemble(addr, r.Arguments.InstructionOffset, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.DisassembleResponse{Body: dap.DisassembleResponseBody{Instructions: list}}, nil
}

func (s *Server) onReadMemory(r *dap.ReadMemoryRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr(r.Arguments.MemoryReference)
	if err != nil {
		return nil, err
	}
	addr += uint64(int64(r.Arguments.Offset))
	if r.Arguments.Count < 0 || r.Arguments.Count > maxMemoryRequest {
		return nil, fmt.Errorf("readMemory: count must be between 0 and %d", maxMemoryRequest)
	}
	var body dap.ReadMemoryResponseBody
	err = ss.stopped(func() error {
		body = ss.readMemory(addr, r.Arguments.Count)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.ReadMemoryResponse{Body: body}, nil
}

func (s *Server) onWriteMemory(r *dap.WriteMemoryRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr(r.Arguments.MemoryReference)
	if err != nil {
		return nil, err
	}
	addr += uint64(int64(r.Arguments.Offset))
	data, err := base64.StdEncoding.DecodeString(r.Arguments.Data)
	if err != nil {
		return nil, fmt.Errorf("writeMemory: data is not base64: %w", err)
	}
	var n int
	err = ss.stopped(func() error {
		var werr error
		n, werr = ss.eng.WriteMemory(addr, data)
		if n < len(data) && !r.Arguments.AllowPartial {
			return fmt.Errorf("writeMemory: wrote %d of %d bytes at %#x: %v", n, len(data), addr, werr)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &dap.WriteMemoryResponse{Body: dap.WriteMemoryResponseBody{BytesWritten: n}}, nil
}

func (s *Server) onRseqRegions(r *RseqRegionsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	var body RseqRegionsBody
	err = ss.stopped(func() error {
		body.Regions = ss.regionList()
		body.Warnings = ss.eng.Warnings()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &RseqRegionsResponse{Body: body}, nil
}

func (s *Server) onRseqStats(r *RseqStatsRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	var st stepper.Stats
	// Counters are plain ints the ptrace thread writes: read them there.
	if err := ss.stopped(func() error { st = ss.eng.Stats(); return nil }); err != nil {
		return nil, err
	}
	return &RseqStatsResponse{Body: RseqStats{SingleSteps: st.SingleSteps, RegionRuns: st.RegionRuns, Commits: st.Commits,
		Aborts: st.Aborts, OtherExits: st.ExitPoints, Interrupted: st.Interrupted, SignalsInRuns: st.SignalsInRuns,
		Discovered: st.Discovered, StepsInside: st.StepsInside,
		CaughtInside: st.CaughtInside, InspectedSteps: st.InspectedSteps, ForcedAborts: st.ForcedAborts,
		PacedSignals: st.PacedSignals, PassedNotOwned: st.PassedNotOwned, Pauses: st.Pauses, Displaced: st.Displaced}}, nil
}

// startInspect applies the launch configuration's "inspect"; a target that
// cannot be inspected ends the launch with the reason.
func (ss *session) startInspect(on bool) error {
	if !on {
		return nil
	}
	var err error
	if derr := ss.do(func() { err = ss.rc.SetInspect(true) }); derr != nil {
		return derr
	}
	if err != nil {
		ss.close()
		return err
	}
	return nil
}

func (s *Server) onRseqInspect(r *RseqInspectRequest) (dap.ResponseMessage, error) {
	ss, err := s.session()
	if err != nil {
		return nil, err
	}
	// A continue is interrupted for it and resumed after.
	ss.soon(false, r, func() (dap.ResponseMessage, error) {
		if ss.eng.Exited() {
			return nil, errors.New("the program has exited")
		}
		if err := ss.rc.SetInspect(r.Arguments.On); err != nil {
			return nil, err
		}
		return &RseqInspectResponse{Body: RseqInspectBody{Inspect: ss.rc.Inspect()}}, nil
	})
	return nil, errLater
}

func (s *Server) onRseqAbort(r *RseqAbortRequest) (dap.ResponseMessage, error) {
	ss, tid, err := s.resumable(r.Arguments.ThreadID)
	if err != nil {
		return nil, err
	}
	var st *sess.Stop
	if err := ss.stopped(func() error {
		var err error
		st, err = ss.rc.ForceAbort(tid)
		return err
	}); err != nil {
		return nil, err
	}
	s.reply(r, &RseqAbortResponse{}, nil)
	// Reported as a stop, so the views read the new registers.
	ss.resume(runStep, tid, "step", func() (*sess.Stop, error) { return st, nil })
	return nil, errLater
}

func stack() string { return string(debug.Stack()) }
