// Package aborttest proves abort handlers. It runs a program, and on entries
// into its critical sections injects the abort the kernel would make after
// k instructions of the section, for every k on the paths it sees, until
// every position is covered. A run that ends otherwise than the program's
// plain run is narrowed down to the section and position that broke it.
//
// Outside an injected entry the program runs natively, with breakpoints
// only on the sections' first instructions; inside it, the thread is
// stepped in inspect mode (the other threads held) and then aborted with
// stepper.ForceAbort, which does what the kernel's fixup does.
package aborttest

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/symbols"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"golang.org/x/sys/unix"
)

// Options configure a coverage run.
type Options struct {
	Path string
	Args []string
	// Seed orders the positions injected in each section; the report
	// names it so a failure can be replayed.
	Seed int64
	// MaxRuns bounds the program runs, coverage and narrowing together.
	MaxRuns int
	// Timeout bounds one run; a run past it is killed and counts as a
	// failure.
	Timeout time.Duration
	// Output receives the program's stdout and stderr (nil: discarded).
	Output io.Writer
	// OnInjection is told of every injected abort as it happens.
	OnInjection func(Injection)
}

// Injection is one abort injected into a section.
type Injection struct {
	Run     int    `json:"run"`
	Section string `json:"section"`
	Start   uint64 `json:"start"`
	K       int    `json:"k"`
	Thread  int    `json:"thread"`
	PC      uint64 `json:"pc"`
	// Refused says why no abort was made: the kernel would kill the
	// thread instead (a wrong signature before abort_ip).
	Refused string `json:"refused,omitempty"`
}

// Ending is how a run of the program ended.
type Ending struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
	// TimedOut: killed after Options.Timeout.
	TimedOut bool `json:"timed_out,omitempty"`
}

func (x Ending) String() string {
	switch {
	case x.TimedOut:
		return "timed out"
	case x.Signal != 0:
		return fmt.Sprintf("killed by %v", unix.Signal(x.Signal))
	}
	return fmt.Sprintf("exit %d", x.Code)
}

// Section is the coverage of one critical section.
type Section struct {
	Name  string `json:"name"`
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	File  string `json:"file,omitempty"`
	Line  int    `json:"line,omitempty"`
	// Entries counts the threads that entered it, over every run.
	Entries int `json:"entries"`
	// Total is the longest path seen, in instructions inside the section:
	// positions 0..Total-1. Covered counts those an abort was injected at.
	Total    int `json:"total"`
	Covered  int `json:"covered"`
	Injected int `json:"injected"`
	// Failing lists the positions found to break the program.
	Failing []int `json:"failing,omitempty"`

	covered map[int]bool
	// ends counts entries whose path ended within Total while probing
	// past it: a section is complete only when several did, so a rare
	// longer path (a branch taken on some iterations) is still found.
	ends  int
	order []int // the seed's order of positions to try
}

// probeEnds is how many entries must end within the longest path seen
// before a section counts as fully explored.
const probeEnds = 3

func (s *Section) complete() bool { return s.ends >= probeEnds && s.Covered >= s.Total }

// Failure names what broke the program.
type Failure struct {
	Section string `json:"section"`
	Start   uint64 `json:"start"`
	K       int    `json:"k"`
	// Run is the coverage run whose ending first differed.
	Run    int    `json:"run"`
	Seed   int64  `json:"seed"`
	Ending Ending `json:"ending"`
	// Alone: one injection at that position alone reproduced the
	// ending; otherwise the failing run's injections together did.
	Alone  bool   `json:"alone"`
	Reason string `json:"reason,omitempty"`
}

// Report is the outcome of a coverage run.
type Report struct {
	Seed     int64      `json:"seed"`
	Plain    Ending     `json:"plain"`
	Runs     int        `json:"runs"`
	Sections []*Section `json:"sections"`
	Failure  *Failure   `json:"failure,omitempty"`
	// Incomplete: MaxRuns ended the coverage before every position.
	Incomplete bool `json:"incomplete,omitempty"`
}

// OK reports whether every run ended as the plain run did and every
// position seen was covered.
func (r *Report) OK() bool { return r.Failure == nil && !r.Incomplete }

// target is one (section start, position) pair.
type pair struct {
	start uint64
	k     int
}

type tester struct {
	opts     Options
	sections map[uint64]*Section
	rng      *rand.Rand
	runs     int
	// injected are the pairs of the current run, in order.
	injected []pair
}

// Run runs the program plainly, then under injection until every position
// of every section it entered is covered, and narrows a failure down.
func Run(opts Options) (*Report, error) {
	if opts.MaxRuns <= 0 {
		opts.MaxRuns = 50
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	plain, err := plainRun(opts)
	if err != nil {
		return nil, err
	}
	t := &tester{opts: opts, sections: map[uint64]*Section{}, rng: rand.New(rand.NewSource(opts.Seed))}
	rep := &Report{Seed: opts.Seed, Plain: plain}
	for {
		if t.runs >= opts.MaxRuns {
			rep.Incomplete = true
			break
		}
		ending, err := t.run(coverage{t})
		if err != nil {
			return nil, err
		}
		if ending != plain {
			rep.Failure = t.narrow(plain, ending)
			break
		}
		if t.allComplete() {
			break
		}
	}
	rep.Runs = t.runs
	for _, s := range t.sections {
		rep.Sections = append(rep.Sections, s)
	}
	sort.Slice(rep.Sections, func(i, j int) bool { return rep.Sections[i].Start < rep.Sections[j].Start })
	return rep, nil
}

// plainRun runs the program without a debugger, as the reference ending.
func plainRun(opts Options) (Ending, error) {
	cmd := exec.Command(opts.Path, opts.Args...)
	cmd.Stdout, cmd.Stderr = opts.Output, opts.Output
	if err := cmd.Start(); err != nil {
		return Ending{}, fmt.Errorf("starting %s: %w", opts.Path, err)
	}
	timer := time.AfterFunc(opts.Timeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timedOut := !timer.Stop()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return Ending{}, fmt.Errorf("running %s: %w", opts.Path, err)
	}
	st := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if timedOut {
		return Ending{}, fmt.Errorf("the plain run of %s took longer than %v", opts.Path, opts.Timeout)
	}
	return endingOf(st), nil
}

func endingOf(ws syscall.WaitStatus) Ending {
	if ws.Signaled() {
		return Ending{Signal: int(ws.Signal())}
	}
	return Ending{Code: ws.ExitStatus()}
}

// allComplete: every section the program entered is covered. Sections it
// never entered are listed with no entries; runs would not change that.
func (t *tester) allComplete() bool {
	for _, s := range t.sections {
		if s.Entries > 0 && !s.complete() {
			return false
		}
	}
	return true
}

// plan says which entries get an abort, and where.
type plan interface {
	// next is the position to inject at in an entry into s (ok false:
	// let the entry run).
	next(s *Section) (k int, ok bool)
	// done says that no later entry into s will get one, so its
	// breakpoint can go and the section run natively.
	done(s *Section) bool
}

// coverage injects at the next position of the seed's order that is not
// covered yet; past the known length it probes one further, which either
// covers it or shows where the path ends.
type coverage struct{ t *tester }

func (c coverage) done(s *Section) bool { return s.complete() }

func (c coverage) next(s *Section) (int, bool) {
	t := c.t
	if s.complete() {
		return 0, false
	}
	for len(s.order) < s.Total+1 {
		// Positions up to the longest path seen, in the seed's order;
		// one new position at a time past it.
		n := len(s.order)
		grow := s.Total + 1 - n
		perm := t.rng.Perm(grow)
		for _, p := range perm {
			s.order = append(s.order, n+p)
		}
	}
	for _, k := range s.order {
		if !s.covered[k] && k < s.Total {
			return k, true
		}
	}
	// Every position seen is covered: probe one past the longest path.
	return s.Total, true
}

// narrow finds which injection of the failing run broke it: halves of its
// injections are replayed (each at the first entry of its section) until
// one is left, which is then run alone to confirm.
func (t *tester) narrow(plain, failing Ending) *Failure {
	run := t.runs
	cands := append([]pair(nil), t.injected...)
	f := &Failure{Run: run, Seed: t.opts.Seed, Ending: failing}
	for len(cands) > 1 && t.runs < t.opts.MaxRuns {
		half := cands[:len(cands)/2]
		ending, err := t.run(replayPlan(half))
		if err != nil {
			break
		}
		if ending != plain {
			cands, f.Ending = half, ending
		} else {
			cands = cands[len(cands)/2:]
		}
	}
	if len(cands) == 0 {
		f.Reason = "the failing run injected nothing: the program ends differently under the debugger"
		return f
	}
	last := cands[len(cands)-1]
	if len(cands) == 1 && t.runs < t.opts.MaxRuns {
		if ending, err := t.run(replayPlan(cands)); err == nil && ending != plain {
			f.Alone, f.Ending = true, ending
		}
	}
	s := t.sections[last.start]
	f.Section, f.Start, f.K = s.Name, s.Start, last.k
	s.Failing = append(s.Failing, last.k)
	if !f.Alone {
		f.Reason = fmt.Sprintf("no single injection reproduced the ending; the last of the failing run's %d is named", len(t.injected))
	}
	return f
}

// replay injects each pair once, at the first entries of its section.
type replay struct{ pending *[]pair }

func replayPlan(pairs []pair) plan {
	p := append([]pair(nil), pairs...)
	return replay{&p}
}

func (r replay) next(s *Section) (int, bool) {
	for i, p := range *r.pending {
		if p.start == s.Start {
			*r.pending = append((*r.pending)[:i], (*r.pending)[i+1:]...)
			return p.k, true
		}
	}
	return 0, false
}

func (r replay) done(s *Section) bool {
	for _, p := range *r.pending {
		if p.start == s.Start {
			return false
		}
	}
	return true
}

// run is one run of the program under injection.
func (t *tester) run(pl plan) (Ending, error) {
	t.runs++
	t.injected = nil
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return Ending{}, err
	}
	defer devnull.Close()
	// The program's output goes through a pipe to Output.
	pr, pw, err := os.Pipe()
	if err != nil {
		return Ending{}, err
	}
	copied := make(chan struct{})
	go func() { io.Copy(t.opts.Output, pr); pr.Close(); close(copied) }()
	p, err := ptrace.Launch(ptrace.LaunchOptions{Path: t.opts.Path, Args: t.opts.Args, Stdin: devnull, Stdout: pw, Stderr: pw})
	pw.Close()
	if err != nil {
		<-copied
		return Ending{}, err
	}
	defer func() { p.Close(); <-copied }()
	eng, err := stepper.New(p, stepper.Options{ReportLibraries: true})
	if err != nil {
		p.Do(func() { p.Kill() })
		return Ending{}, err
	}
	var timedOut bool
	timer := time.AfterFunc(t.opts.Timeout, func() { timedOut = true; unix.Kill(p.Pid(), unix.SIGKILL) })
	defer timer.Stop()
	var ending Ending
	p.Do(func() { ending, err = t.drive(eng, pl) })
	if err != nil {
		p.Do(func() { eng.Kill() })
		return Ending{}, fmt.Errorf("run %d: %w", t.runs, err)
	}
	if timer.Stop(); timedOut {
		ending = Ending{TimedOut: true}
	}
	return ending, nil
}

// drive runs the program to its end on the tracer thread.
func (t *tester) drive(e *stepper.Engine, pl plan) (Ending, error) {
	if err := e.SetInspect(true); err != nil {
		return Ending{}, err
	}
	syms := &symbols.Table{}
	// At the program's entry point the dynamic linker has registered the
	// main thread's rseq area: its signature finds descriptors kept
	// without a table.
	tid := e.Target().Pid()
	if entry := e.Auxv()[auxv.AtEntry]; entry != 0 {
		if bp, err := e.SetBreakpoint(entry); err == nil {
			for {
				st, err := e.Continue(tid, nil)
				if err != nil {
					return Ending{}, err
				}
				if st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled {
					return endingOfStop(st), nil
				}
				if st.Kind == stepper.StopBreakpoint && st.PC == entry {
					break
				}
			}
			e.ClearBreakpoint(bp.ID)
		}
	}
	starts := map[uint64]*regions.Region{}
	bps := map[uint64]int{}
	arm := func() {
		sig := uint32(0x53053053)
		if a := e.RseqArea(e.Target().Pid()); a.Known {
			sig = a.Signature
		}
		e.ScanSections(sig)
		for _, o := range e.Objects() {
			syms.Load(o.Path, o.Bias)
		}
		for _, r := range e.Index().All() {
			if r.Kind != regions.KindCriticalSection || starts[r.Start] != nil {
				continue
			}
			starts[r.Start] = r
			if s := t.section(r, syms); pl.done(s) {
				continue
			}
			if bp, err := e.SetBreakpoint(r.Start); err == nil {
				bps[r.Start] = bp.ID
			}
		}
	}
	arm()
	sigs := map[int]int{}
	for {
		st, err := e.Continue(tid, sigs)
		if err != nil {
			return Ending{}, err
		}
		sigs = map[int]int{}
		tid = st.Tid
		switch st.Kind {
		case stepper.StopExited, stepper.StopKilled:
			return endingOfStop(st), nil
		case stepper.StopLibrary:
			arm()
		case stepper.StopSignal:
			sigs[st.Tid] = st.Sig
		case stepper.StopBreakpoint:
			r := starts[st.PC]
			if r == nil {
				continue
			}
			end, err := t.entry(e, st.Tid, r, pl)
			if err != nil {
				return Ending{}, err
			}
			if end != nil {
				return endingOfStop(end), nil
			}
			if id, ok := bps[r.Start]; ok && pl.done(t.sections[r.Start]) {
				e.ClearBreakpoint(id)
				delete(bps, r.Start)
			}
		}
	}
}

func endingOfStop(st *stepper.Stop) Ending {
	if st.Kind == stepper.StopKilled {
		return Ending{Signal: st.Sig}
	}
	return Ending{Code: st.Code}
}

func (t *tester) section(r *regions.Region, syms *symbols.Table) *Section {
	s := t.sections[r.Start]
	if s == nil {
		s = &Section{Name: r.Name, Start: r.Start, End: r.End, covered: map[int]bool{}}
		if f, ok := syms.Func(r.Start); ok {
			s.Name = fmt.Sprintf("%s+%d", f.Name, r.Start-f.Lo)
		}
		if l, ok := syms.LineAt(r.Start); ok {
			s.File, s.Line = l.File, l.Line
		}
		t.sections[r.Start] = s
	}
	return s
}

// maxEntrySteps bounds the instructions stepped in one entry, callees
// included.
const maxEntrySteps = 100000

// entry handles a thread stopped at the first instruction of r. It returns
// a stop when the process ended meanwhile.
func (t *tester) entry(e *stepper.Engine, tid int, r *regions.Region, pl plan) (*stepper.Stop, error) {
	s := t.sections[r.Start]
	s.Entries++
	k, ok := pl.next(s)
	if !ok {
		return nil, nil
	}
	pos := 0
	for steps := 0; pos < k; steps++ {
		if steps > maxEntrySteps {
			return nil, fmt.Errorf("section %s: no way out after %d steps", s.Name, steps)
		}
		st, err := e.StepInstruction(tid, 0, stepper.OthersStay)
		if err != nil {
			return nil, err
		}
		if st.Kind == stepper.StopExited || st.Kind == stepper.StopKilled {
			return st, nil
		}
		if st.Kind != stepper.StopStep {
			// A signal the program stops on, or another thread's stop:
			// this entry injects nothing.
			return nil, nil
		}
		if r.Contains(st.PC) {
			pos++
			continue
		}
		if st.Inspect != nil && st.Inspect.InCallee {
			continue
		}
		// Left the section before position k: the path is pos+1 long.
		s.observe(pos+1, true)
		return nil, nil
	}
	s.observe(pos+1, false)
	inj := Injection{Run: t.runs, Section: s.Name, Start: s.Start, K: k, Thread: tid}
	if regs, err := e.Target().Regs(tid); err == nil {
		inj.PC = regs.Rip
	}
	_, err := e.ForceAbort(tid)
	switch {
	case errors.Is(err, stepper.ErrAbortRefused):
		inj.Refused = err.Error()
	case err != nil:
		return nil, err
	default:
		t.injected = append(t.injected, pair{s.Start, k})
		s.Injected++
	}
	if !s.covered[k] {
		s.covered[k] = true
		s.Covered++
	}
	if t.opts.OnInjection != nil {
		t.opts.OnInjection(inj)
	}
	return nil, nil
}

// observe records that a path reached n positions inside the section, and
// that it ended there when the thread left right after.
func (s *Section) observe(n int, ended bool) {
	if n > s.Total {
		s.Total, s.ends = n, 0
	}
	if ended && n <= s.Total {
		s.ends++
	}
}
