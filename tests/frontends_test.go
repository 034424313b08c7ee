package tests

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"
	"golang.org/x/arch/x86/x86asm"
)

// The same breakpoint and run-control scenarios through the three front
// ends (rseqdbg run, DAP, gdb on the GDB remote server) must show the same
// stops: they share one policy (package session), and where gdb decides
// for itself (its own conditions, ignore counts, tbreak, pending
// breakpoints, stepping) it must agree too.

// op is one user action of a scenario, in gdb's terms; each front end
// translates it to its own protocol.
type op struct {
	do   string // break, tbreak, ignore, delete, thread, continue, next
	loc  string // break: FUNCTION, FILE:LINE or *ADDR
	cond string
	bp   int // ignore, delete: the breakpoint, numbered from 1 in the order set; thread: the Nth lowest thread id
	n    int // ignore: the count
}

// stopRec is one stop as a front end showed it.
type stopRec struct {
	reason string // breakpoint or step
	fn     string
	line   int
	tid    int
	value  string // the scenario's probe expression there, "" if none
}

func (s stopRec) String() string {
	return fmt.Sprintf("%s in %s:%d (thread %d) probe=%q", s.reason, s.fn, s.line, s.tid, s.value)
}

type scenario struct {
	name  string
	prog  []string // fixture name and arguments
	probe string   // a C expression printed at every stop
	ops   []op
	// want are the stops of the run ops in order; a zero line or an empty
	// value is not checked (but still compared across front ends unless
	// racy is set).
	want []stopRec
	// racy: threads race, so the front ends cannot be compared stop by
	// stop; check instead holds for each.
	racy  bool
	check func(t *testing.T, fe string, stops []stopRec)
}

type frontEnd struct {
	name string
	run  func(t *testing.T, sc scenario) []stopRec
}

var frontEnds = []frontEnd{
	{"headless", headlessStops},
	{"dap", dapStops},
	{"gdb", func(t *testing.T, sc scenario) []stopRec { return gdbStops(t, sc, direct) }},
	// The same server in front of gdbserver: the session layer over a
	// remote target.
	{"gdb-proxy", func(t *testing.T, sc scenario) []stopRec { return gdbStops(t, sc, proxy) }},
}

// lineOf is the line of src holding text.
func lineOf(t testing.TB, src, text string) int {
	t.Helper()
	b, err := os.ReadFile(fixture("../" + src))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, text) {
			return i + 1
		}
	}
	t.Fatalf("no %q in %s", text, src)
	return 0
}

// pieBase is where a PIE is loaded with ASLR off (all three front ends
// launch that way).
const pieBase = 0x555555554000

// retryAddrs are, for the critical section on full_tables.c's RSEQ-LINE,
// its second instruction (stopped there, the section has started and
// aborts on resume) and the retry label its abort handler jumps back to.
func retryAddrs(t *testing.T) (inside, retry uint64) {
	t.Helper()
	out, err := exec.Command(binary, "regions", "--json", fixture("full_tables")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Objects []struct {
			Regions []struct {
				Start, Name string
				AbortJump   string `json:"abort_jump"`
			}
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var start uint64
	for _, r := range doc.Objects[0].Regions {
		// The one section of worker is the RSEQ-LINE's.
		if strings.HasPrefix(r.Name, "worker+") {
			start, _ = strconv.ParseUint(strings.TrimPrefix(r.Start, "0x"), 16, 64)
			retry, _ = strconv.ParseUint(strings.TrimPrefix(r.AbortJump, "0x"), 16, 64)
		}
	}
	if start == 0 || retry == 0 {
		t.Fatalf("no section with a retry jump in worker: %s", out)
	}
	f, err := elf.Open(fixture("full_tables"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := make([]byte, 16)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && start >= p.Vaddr && start < p.Vaddr+p.Filesz {
			p.ReadAt(code, int64(start-p.Vaddr))
		}
	}
	in, err := x86asm.Decode(code, 64)
	if err != nil {
		t.Fatalf("decoding the section's first instruction: %v", err)
	}
	return pieBase + start + uint64(in.Len), pieBase + retry
}

func scenarios(t *testing.T) []scenario {
	before := markerLine(t, "full_tables.c", "BEFORE-RSEQ-LINE")
	rseqLine := markerLine(t, "full_tables.c", "RSEQ-LINE")
	call := lineOf(t, "full_tables.c", "t->commits += inc_full(")
	entry := markerLine(t, "full_tables.c", "FUNC-ENTRY")
	inside, retry := retryAddrs(t)
	libEntry := markerLine(t, "libpercpu.c", "FUNC-ENTRY")
	timer := lineOf(t, "fixture_common.c", "if (setitimer(ITIMER_REAL, &it, NULL)")
	libWorker := lineOf(t, "dlopen_main.c", "t->commits += p_lib_loop(")
	at := func(line int) string { return fmt.Sprintf("full_tables.c:%d", line) }
	return []scenario{{
		// A condition that holds stops there; one that does not never
		// stops, whether continue or next runs into it (next used to stop
		// at it in rseqdbg run).
		name: "conditions", prog: []string{"full_tables", "1", "50"}, probe: "i",
		ops: []op{
			{do: "break", loc: at(call), cond: "i == 5"},
			{do: "continue"},
			{do: "break", loc: "inc_full", cond: "0"},
			{do: "next"},
			{do: "break", loc: at(before), cond: "i == 8"},
			{do: "continue"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: call, value: "5"},
			// Line -1: not compared. The address after the call has two
			// line rows (37, then 36 again); gdb shows the first, rseqdbg
			// the last.
			{reason: "step", fn: "worker", line: -1, value: "5"},
			{reason: "breakpoint", fn: "worker", line: before, value: "8"},
		},
	}, {
		// A condition and a probe on a variable kept on the stack (its
		// location is relative to the frame's CFA): all three read the
		// same value (DAP read such variables from the caller's CFA).
		name: "stack variable", prog: []string{"full_tables", "1", "10", "--signals"}, probe: "it.it_value.tv_usec",
		ops: []op{
			{do: "break", loc: fmt.Sprintf("fixture_common.c:%d", timer), cond: "it.it_interval.tv_usec == 100"},
			{do: "continue"},
		},
		want: []stopRec{{reason: "breakpoint", fn: "fixture_set_timer", line: timer, value: "100"}},
	}, {
		// gdb's ignore count (DAP: hit condition >= N+1) is spent by every
		// run command, not only continue.
		name: "ignore counts", prog: []string{"full_tables", "1", "50"}, probe: "i",
		ops: []op{
			{do: "break", loc: at(before)},
			{do: "ignore", bp: 1, n: 2},
			{do: "continue"},
			{do: "continue"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: before, value: "4"},
			{reason: "breakpoint", fn: "worker", line: before, value: "6"},
		},
	}, {
		// Counts and temporary breakpoints hold for next as for continue
		// (rseqdbg run used to apply them on continue only): a tbreak hit
		// during next goes away, and a next that lands on a breakpoint
		// with an ignore count spends it.
		name: "counts and tbreak during next", prog: []string{"full_tables", "1", "50"}, probe: "i",
		ops: []op{
			{do: "break", loc: at(call), cond: "i == 1"},
			{do: "continue"},
			{do: "tbreak", loc: at(entry + 3)},
			{do: "next"},
			{do: "break", loc: at(before), cond: "i == 2"},
			{do: "continue"},
			{do: "break", loc: at(rseqLine)},
			{do: "ignore", bp: 4, n: 1},
			{do: "next"},
			{do: "continue"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: call, value: "1"},
			{reason: "breakpoint", fn: "inc_full", line: entry + 3},
			{reason: "breakpoint", fn: "worker", line: before, value: "2"},
			{reason: "step", fn: "worker", line: rseqLine, value: "2"},
			{reason: "breakpoint", fn: "worker", line: rseqLine, value: "4"},
		},
	}, {
		// A temporary breakpoint stops once (DAP: hit condition 1).
		name: "tbreak", prog: []string{"full_tables", "1", "50"}, probe: "i",
		ops: []op{
			{do: "tbreak", loc: at(before)},
			{do: "break", loc: at(entry + 3)},
			{do: "continue"},
			{do: "continue"},
			{do: "continue"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: before, value: "0"},
			{reason: "breakpoint", fn: "inc_full", line: entry + 3},
			{reason: "breakpoint", fn: "inc_full", line: entry + 3},
		},
	}, {
		// A pending breakpoint resolves when dlopen loads its library and
		// stays what it was set as, whatever was set after it (a pending
		// break used to turn temporary after a tbreak). Lines rather than
		// functions: gdb skips prologues its own way.
		name: "pending", prog: []string{"dlopen_main", "1", "50"},
		ops: []op{
			{do: "break", loc: fmt.Sprintf("libpercpu.c:%d", libEntry+3)},
			{do: "tbreak", loc: fmt.Sprintf("dlopen_main.c:%d", libWorker)},
			{do: "continue"},
			{do: "continue"},
			{do: "continue"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: libWorker},
			{reason: "breakpoint", fn: "inc_lib", line: libEntry + 3},
			{reason: "breakpoint", fn: "inc_lib", line: libEntry + 3},
		},
	}, {
		// Stopped inside the section, next runs it natively: the kernel
		// aborts it, the handler jumps back to the retry label, where a
		// breakpoint sits on the line being stepped. The step goes on to
		// the commit and past the line. (The breakpoint inside goes first:
		// the retry is a new entry, where it would stop again.)
		name: "retry past a breakpoint", prog: []string{"full_tables", "1", "50", "--main"},
		ops: []op{
			{do: "break", loc: fmt.Sprintf("*%#x", inside)},
			{do: "continue"},
			{do: "delete", bp: 1},
			{do: "break", loc: fmt.Sprintf("*%#x", retry)},
			{do: "next"},
		},
		want: []stopRec{
			{reason: "breakpoint", fn: "worker", line: rseqLine},
			// The line's store of t->commits shares its code with line
			// 37's: gdb stops there, rseqdbg finishes the statement.
			{reason: "step", fn: "worker", line: -1},
		},
		check: func(t *testing.T, fe string, stops []stopRec) {
			if len(stops) == 2 && stops[1].line == rseqLine {
				t.Errorf("%s: next stopped on the line it steps (the retry path): %v", fe, stops[1])
			}
		},
	}, {
		// Two threads hit one breakpoint; the one that reported it must be
		// moved off before others run, or it is reported again without
		// having moved. Each thread's commits (before its aborts in struct
		// fixture_thread) plus aborts grow from one of its stops to the
		// next: a new call commits, and a hit on the retry path (inc_full's
		// abort handler jumps back to the breakpoint) follows an abort.
		name: "two threads on one breakpoint", prog: []string{"full_tables", "2", "300"}, probe: "aborts[-1] + *aborts",
		ops: []op{
			{do: "break", loc: "inc_full"},
			{do: "continue"}, {do: "continue"}, {do: "continue"}, {do: "continue"},
			{do: "next"}, {do: "continue"}, {do: "next"}, {do: "continue"},
		},
		racy: true,
		check: func(t *testing.T, fe string, stops []stopRec) {
			if len(stops) != 8 {
				t.Fatalf("%s: %d stops, want 8: %v", fe, len(stops), stops)
			}
			last := map[int]uint64{}
			threads := map[int]bool{}
			for i, s := range stops {
				threads[s.tid] = true
				if s.reason != "breakpoint" {
					// next from inc_full's one line returns into worker.
					if s.reason != "step" || i == 0 || s.tid != stops[i-1].tid {
						t.Errorf("%s: stop %d: %v, want a step of thread %d", fe, i, s, stops[i-1].tid)
					}
					continue
				}
				if s.fn != "inc_full" {
					t.Errorf("%s: stop %d: %v, want the breakpoint in inc_full", fe, i, s)
				}
				v, err := strconv.ParseUint(s.value, 0, 64)
				if err != nil {
					t.Errorf("%s: stop %d: probe %q: %v", fe, i, s.value, err)
					continue
				}
				if prev, ok := last[s.tid]; ok && v <= prev {
					t.Errorf("%s: stop %d: thread %d reported at the breakpoint again without moving (commits+aborts %d, then %d): %v", fe, i, s.tid, prev, v, stops)
				}
				last[s.tid] = v
			}
			if len(threads) < 2 {
				t.Logf("%s: only thread %v stopped", fe, threads)
			}
		},
	}, {
		// Deterministically: only thread id 1 (the second worker) stops
		// at the breakpoint (id sits three longs before aborts); then the
		// first worker steps with the others running. The reporter must
		// be moved off first, or it traps again at once and the step ends
		// on it a second time without its having moved.
		name: "step while another thread sits on its breakpoint", prog: []string{"full_tables", "2", "300"}, probe: "aborts[-1] + *aborts",
		ops: []op{
			{do: "break", loc: at(entry + 3), cond: "(aborts[-3] & 255) == 1"},
			{do: "continue"},
			{do: "thread", bp: 2},
			{do: "next"},
		},
		racy: true,
		check: func(t *testing.T, fe string, stops []stopRec) {
			if len(stops) != 2 || stops[0].reason != "breakpoint" || stops[0].fn != "inc_full" {
				t.Fatalf("%s: stops %v, want the breakpoint, then the step", fe, stops)
			}
			s := stops[1]
			switch {
			case s.reason == "step" && s.tid != stops[0].tid:
			case s.reason == "breakpoint" && s.tid == stops[0].tid && s.value != stops[0].value:
				// A genuine new hit of the reporter: it moved on meanwhile.
			default:
				t.Errorf("%s: the step of the other thread ended %v after %v", fe, s, stops[0])
			}
		},
	}}
}

// TestFrontEndsAgree runs every scenario through every front end.
func TestFrontEndsAgree(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			got := map[string][]stopRec{}
			for _, fe := range frontEnds {
				t.Run(fe.name, func(t *testing.T) {
					stops := fe.run(t, sc)
					got[fe.name] = stops
					if sc.check != nil {
						sc.check(t, fe.name, stops)
					}
					if sc.racy {
						return
					}
					if len(stops) != len(sc.want) {
						t.Fatalf("%d stops, want %d:\n got %v\nwant %v", len(stops), len(sc.want), stops, sc.want)
					}
					for i, w := range sc.want {
						s := stops[i]
						if s.reason != w.reason || s.fn != w.fn || w.line > 0 && s.line != w.line || w.value != "" && s.value != w.value {
							t.Errorf("stop %d: %v, want %v", i, s, w)
						}
					}
				})
			}
			if sc.racy {
				return
			}
			// Beyond what the table pins, every field agrees too.
			ref := got["headless"]
			for _, fe := range frontEnds[1:] {
				other := got[fe.name]
				for i := 0; i < len(ref) && i < len(other); i++ {
					a, b := ref[i], other[i]
					if i < len(sc.want) && sc.want[i].line < 0 {
						a.line, b.line = 0, 0
					}
					if a.reason != b.reason || a.fn != b.fn || a.line != b.line || a.value != b.value {
						t.Errorf("stop %d: headless %v, %s %v", i, a, fe.name, b)
					}
				}
			}
		})
	}
}

func isRun(o op) bool { return o.do == "continue" || o.do == "next" }

func baseFn(name string) string {
	name, _, _ = strings.Cut(name, "+")
	name, _, _ = strings.Cut(name, " [") // DAP's "worker [inside rseq critical section]"
	return strings.TrimSpace(name)
}

// headlessStops runs the scenario as one `rseqdbg run` script.
func headlessStops(t *testing.T, sc scenario) []stopRec {
	var cmds []string
	for _, o := range sc.ops {
		switch o.do {
		case "break", "tbreak":
			c := o.do + " " + o.loc
			if o.cond != "" {
				c += " if " + o.cond
			}
			cmds = append(cmds, c)
		case "ignore":
			cmds = append(cmds, fmt.Sprintf("ignore %d %d", o.bp, o.n))
		case "delete":
			cmds = append(cmds, fmt.Sprintf("delete %d", o.bp))
		case "thread":
			cmds = append(cmds, fmt.Sprintf("thread %d", o.bp))
		default:
			cmds = append(cmds, o.do)
			if sc.probe != "" {
				cmds = append(cmds, "print "+sc.probe)
			}
		}
	}
	s := run(t, cmds, nil, append([]string{fixture(sc.prog[0])}, sc.prog[1:]...)...)
	var stops []stopRec
	for _, e := range s.events {
		switch e.str("event") {
		case "stop":
			if e.str("reason") == "entry" {
				continue
			}
			stops = append(stops, stopRec{reason: e.str("reason"), fn: baseFn(e.str("function")), line: e.num("line"), tid: e.num("thread")})
		case "value":
			if len(stops) > 0 && e.str("name") == sc.probe {
				stops[len(stops)-1].value = e.str("value")
			}
		}
	}
	return stops
}

// dapStops runs the scenario through `rseqdbg dap`: breakpoints are
// source, function or instruction breakpoints, tbreak is hit condition 1,
// ignore N is hit condition >= N+1.
func dapStops(t *testing.T, sc scenario) []stopRec {
	c := startDAP(t)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("launch", map[string]any{"program": fixture(sc.prog[0]), "args": sc.prog[1:]})
	c.event("initialized")
	type dbp struct {
		kind, key    string // source path, or "func" / "instr"
		line         int
		name, instr  string
		cond, hit    string
		temp, active bool
	}
	var bps []*dbp
	send := func(kind, key string) {
		var list []map[string]any
		for _, b := range bps {
			if !b.active || b.kind != kind || b.key != key {
				continue
			}
			m := map[string]any{}
			switch kind {
			case "source":
				m["line"] = b.line
			case "func":
				m["name"] = b.name
			case "instr":
				m["instructionReference"] = b.instr
			}
			if b.cond != "" {
				m["condition"] = b.cond
			}
			if b.hit != "" {
				m["hitCondition"] = b.hit
			}
			list = append(list, m)
		}
		if list == nil {
			list = []map[string]any{}
		}
		switch kind {
		case "source":
			c.call("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture("../" + key)}, "breakpoints": list})
		case "func":
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": list})
		case "instr":
			c.call("setInstructionBreakpoints", map[string]any{"breakpoints": list})
		}
	}
	configured := false
	tid := 0
	var stops []stopRec
	for _, o := range sc.ops {
		switch o.do {
		case "break", "tbreak":
			b := &dbp{cond: o.cond, active: true}
			switch {
			case strings.HasPrefix(o.loc, "*"):
				b.kind, b.key, b.instr = "instr", "", o.loc[1:]
			case strings.Contains(o.loc, ":"):
				file, ln, _ := strings.Cut(o.loc, ":")
				b.kind, b.key = "source", file
				b.line, _ = strconv.Atoi(ln)
			default:
				b.kind, b.key, b.name = "func", "", o.loc
			}
			if o.do == "tbreak" {
				b.hit = "1"
			}
			bps = append(bps, b)
			send(b.kind, b.key)
		case "ignore":
			b := bps[o.bp-1]
			b.hit = fmt.Sprintf(">= %d", o.n+1)
			send(b.kind, b.key)
		case "delete":
			b := bps[o.bp-1]
			b.active = false
			send(b.kind, b.key)
		case "thread":
			// gdb numbers threads in the order they appeared: the Nth
			// lowest id.
			var th dap.ThreadsResponse
			json.Unmarshal(c.call("threads", nil), &th)
			var ids []int
			for _, x := range th.Body.Threads {
				ids = append(ids, x.Id)
			}
			sort.Ints(ids)
			if o.bp > len(ids) {
				t.Fatalf("no thread %d in %v", o.bp, ids)
			}
			tid = ids[o.bp-1]
		case "continue", "next":
			switch {
			case !configured:
				c.call("configurationDone", nil)
				configured = true
			case o.do == "continue":
				c.call("continue", map[string]any{"threadId": tid})
			default:
				c.call("next", map[string]any{"threadId": tid})
			}
			var st dap.StoppedEvent
			json.Unmarshal(c.event("stopped"), &st)
			tid = st.Body.ThreadId
			var trace dap.StackTraceResponse
			json.Unmarshal(c.call("stackTrace", map[string]any{"threadId": tid, "levels": 1}), &trace)
			rec := stopRec{reason: st.Body.Reason, tid: tid}
			if strings.Contains(rec.reason, "breakpoint") {
				rec.reason = "breakpoint"
			}
			if len(trace.Body.StackFrames) > 0 {
				f := trace.Body.StackFrames[0]
				rec.fn, rec.line = baseFn(f.Name), f.Line
				if sc.probe != "" {
					var ev dap.EvaluateResponse
					if raw, ok := c.try("evaluate", map[string]any{"expression": sc.probe, "frameId": f.Id, "context": "watch"}); ok {
						json.Unmarshal(raw, &ev)
						rec.value = ev.Body.Result
					}
				}
			}
			stops = append(stops, rec)
		}
	}
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
	return stops
}

var (
	gdbStopRE   = regexp.MustCompile(`(?m)^(Thread \d+ "[^"]*" hit )?(Temporary b|B)reakpoint \d+,`)
	gdbSymRE    = regexp.MustCompile(`(?m)^(\S+)(?: \+ \d+)? in section`)
	gdbLineRE   = regexp.MustCompile(`(?m)^Line (\d+) of "([^"]+)"`)
	gdbThreadRE = regexp.MustCompile(`Current thread is \d+ \((?:Thread (?:0x[0-9a-f]+ \(LWP (\d+)\)|\d+\.(\d+)|(\d+))|LWP (\d+))`)
	gdbValueRE  = regexp.MustCompile(`(?m)^\$\d+ = (.*)$`)
)

// gdbStops runs the scenario in gdb against the GDB remote server; gdb
// keeps the breakpoints, conditions, counts and step decisions itself.
func gdbStops(t *testing.T, sc scenario, start server) []stopRec {
	needTool(t, "gdb")
	port, done := start(t, append([]string{fixture(sc.prog[0])}, sc.prog[1:]...)...)
	var cmds []string
	for _, o := range sc.ops {
		switch o.do {
		case "break", "tbreak":
			c := o.do + " " + o.loc
			if o.cond != "" {
				c += " if " + o.cond
			}
			cmds = append(cmds, c)
		case "ignore":
			cmds = append(cmds, fmt.Sprintf("ignore %d %d", o.bp, o.n))
		case "delete":
			cmds = append(cmds, fmt.Sprintf("delete %d", o.bp))
		case "thread":
			// gdb numbers threads as it learns of them, which need not be
			// the order they started in: pick the Nth lowest LWP, as the
			// other front ends do.
			cmds = append(cmds, "python",
				"ths = sorted(gdb.selected_inferior().threads(), key=lambda th: th.ptid[1] or th.ptid[2])",
				fmt.Sprintf("ths[%d].switch()", o.bp-1), "end")
		default:
			cmds = append(cmds, `echo @@RUN\n`, o.do, `echo @@WHERE\n`, "info symbol $pc", "info line *$pc", "thread")
			if sc.probe != "" {
				// An error would end gdb's script: a probe out of scope
				// (no i in inc_full) is just no value.
				cmds = append(cmds, `echo @@PROBE\n`, "python", "try:",
					fmt.Sprintf("    gdb.execute(%q)", "print "+sc.probe), "except gdb.error:", "    pass", "end")
			}
			cmds = append(cmds, `echo @@END\n`)
		}
	}
	cmds = append(cmds, "kill")
	out := gdb(t, port, fixture(sc.prog[0]), false, cmds, 2*time.Minute)
	done()
	var stops []stopRec
	for _, chunk := range strings.Split(out, "@@RUN\n")[1:] {
		ran, where, _ := strings.Cut(chunk, "@@WHERE\n")
		where, _, _ = strings.Cut(where, "@@END\n")
		where, probe, _ := strings.Cut(where, "@@PROBE\n")
		rec := stopRec{reason: "step"}
		if gdbStopRE.MatchString(ran) {
			rec.reason = "breakpoint"
		}
		if m := gdbSymRE.FindStringSubmatch(where); m != nil {
			rec.fn = m[1]
		}
		if m := gdbLineRE.FindStringSubmatch(where); m != nil {
			rec.line, _ = strconv.Atoi(m[1])
		}
		if m := gdbThreadRE.FindStringSubmatch(where); m != nil {
			for _, g := range m[1:] {
				if g != "" {
					rec.tid, _ = strconv.Atoi(g)
				}
			}
		}
		if m := gdbValueRE.FindStringSubmatch(probe); m != nil {
			rec.value = strings.TrimSpace(m[1])
		}
		stops = append(stops, rec)
	}
	if len(stops) == 0 {
		t.Logf("gdb output:\n%s", out)
	}
	return stops
}
