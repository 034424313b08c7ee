package tests

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// Backtraces from places without CFI, against the ground truth the
// unwind_chain fixture prints before it gets there (its CHAIN line: the
// return addresses into chain_mid, chain_top and main).

type chainTruth struct{ mid, top, main uint64 }

var chainRE = regexp.MustCompile(`CHAIN mid=0x([0-9a-f]+) top=0x([0-9a-f]+) main=0x([0-9a-f]+)`)

func parseChain(t *testing.T, out string) chainTruth {
	t.Helper()
	m := chainRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CHAIN line in the program's output:\n%s", out)
	}
	var c chainTruth
	c.mid, _ = strconv.ParseUint(m[1], 16, 64)
	c.top, _ = strconv.ParseUint(m[2], 16, 64)
	c.main, _ = strconv.ParseUint(m[3], 16, 64)
	return c
}

// frame is one line of a backtrace, whoever printed it.
type btFrame struct {
	pc uint64 // 0 when not printed (gdb's frame 0 at a line start)
	fn string
}

// holds reports whether frames, from index at, are the true chain:
// chain_mid, chain_top and main at the recorded return addresses.
func (c chainTruth) holds(frames []btFrame, at int) bool {
	want := []btFrame{{c.mid, "chain_mid"}, {c.top, "chain_top"}, {c.main, "main"}}
	if len(frames) < at+len(want) {
		return false
	}
	for i, w := range want {
		f := frames[at+i]
		if f.pc != w.pc || !strings.HasPrefix(f.fn, w.fn) {
			return false
		}
	}
	return true
}

func showFrames(frames []btFrame) string {
	var b strings.Builder
	for i, f := range frames {
		fmt.Fprintf(&b, "#%d %#x %s\n", i, f.pc, f.fn)
	}
	return b.String()
}

var gdbFrameRE = regexp.MustCompile(`(?m)^#(\d+)\s+(?:0x([0-9a-f]+) in )?(<signal handler called>|[^ (]+)`)

// gdbFrames parses the first backtrace in out.
func gdbFrames(out string) []btFrame {
	var frames []btFrame
	for _, m := range gdbFrameRE.FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(m[1]); n != len(frames) {
			break
		}
		pc, _ := strconv.ParseUint(m[2], 16, 64)
		frames = append(frames, btFrame{pc: pc, fn: m[3]})
	}
	return frames
}

// unwindCase is one place the fixture stops at and how far above it the
// chain starts.
type unwindCase struct {
	mode string
	// prog is the fixture ("" = unwind_chain).
	prog string
	// gdbBreak is gdb's location for the stop; stub names the abort handler
	// of the leaf's section instead (gdb cannot name it by itself).
	gdbBreak string
	stub     string
	// steps: stepi this many times after the stop, checking each position.
	steps int
	// chainAt is the index of chain_mid's frame; frame0 is what rseqdbg's
	// gdb names frame 0 ("" = not checked).
	chainAt int
	frame0  string
	// runBreak is `rseqdbg run`'s location when it differs from gdb's.
	runBreak string
	// broken: plain gdb is expected to get the chain wrong here (the code
	// has no CFI); elsewhere it has CFI and plain gdb is only logged.
	broken bool
}

func (c unwindCase) fixtureName() string {
	if c.prog == "" {
		return "unwind_chain"
	}
	return c.prog
}

var unwindCases = []unwindCase{
	{mode: "abort", stub: "abort_leaf", steps: 1, chainAt: 1, frame0: "abort_leaf.rseq_abort", broken: true},
	{mode: "stub", stub: "stub_leaf", steps: 7, chainAt: 1, frame0: "stub_leaf.rseq_abort", broken: true},
	{mode: "signal", gdbBreak: "on_alarm", chainAt: 3, frame0: "on_alarm", broken: true},
	{mode: "vdso", gdbBreak: "__vdso_clock_gettime", runBreak: "clock_gettime", steps: 3, chainAt: 3},
	{mode: "plt", gdbBreak: "*'getppid@plt'", steps: 4, chainAt: 2},
}

// abortLoc is gdb's location of the abort handler of the section in fn.
func abortLoc(t *testing.T, fn string) string {
	t.Helper()
	return abortLocIn(t, "unwind_chain", fn)
}

func abortLocIn(t *testing.T, prog, fn string) string {
	t.Helper()
	for _, r := range sections(t, prog) {
		if r.fn == fn {
			abort, err := strconv.ParseUint(strings.TrimPrefix(r.Abort, "0x"), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("*((char*)%s + %d)", fn, int64(abort)-int64(r.fnAddr))
		}
	}
	t.Fatalf("no section in %s", fn)
	return ""
}

// gdbPositions stops at c's place, prints a backtrace there and after each
// stepi, and returns the backtraces and the whole output.
func gdbPositions(t *testing.T, c unwindCase, srv *stub, extra ...string) ([][]btFrame, string) {
	t.Helper()
	loc := c.gdbBreak
	if c.stub != "" {
		loc = abortLocIn(t, c.fixtureName(), c.stub)
	}
	cmds := []string{"break " + loc, "continue", "delete", "echo @@bt\\n", "bt"}
	for range c.steps {
		cmds = append(cmds, "stepi", "echo @@bt\\n", "bt")
	}
	cmds = append(append(cmds, "echo @@end\\n"), extra...)
	cmds = append(cmds, "kill")
	out, _ := gdbRun(t, srv.port, fixture(c.fixtureName()), false, cmds, 2*time.Minute)
	srv.wait(t, 30*time.Second)
	body, _, _ := strings.Cut(out, "@@end\n")
	parts := strings.Split(body, "@@bt\n")
	if len(parts) != c.steps+2 {
		t.Fatalf("%d backtraces, want %d:\n%s", len(parts)-1, c.steps+1, out)
	}
	var bts [][]btFrame
	for _, p := range parts[1:] {
		bts = append(bts, gdbFrames(p))
	}
	return bts, out
}

// Acceptance: gdb through rseqdbg shows the true chain to main at every
// position (abort stub, hand-written stub that moves rsp, signal handler
// that interrupted a section, vDSO clock_gettime, every instruction of a
// PLT entry); plain gdb (gdbserver) does not where the code has no CFI.
func TestUnwindGDB(t *testing.T) {
	needTool(t, "gdb")
	// A static executable has no link map: the object is listed alone.
	static := unwindCases[0]
	static.prog = "unwind_chain_static"
	for _, c := range append(unwindCases[:len(unwindCases):len(unwindCases)], static) {
		t.Run(c.fixtureName()+"/"+c.mode, func(t *testing.T) {
			srv := startRseqdbg(t, nil, fixture(c.fixtureName()), c.mode)
			bts, out := gdbPositions(t, c, srv, "echo @@cfi\\n", "monitor rseq cfi")
			truth := parseChain(t, srv.stdout.String())
			for i, frames := range bts {
				if !truth.holds(frames, c.chainAt) {
					t.Errorf("position %d: not the true chain (mid %#x, top %#x, main %#x) from frame %d:\n%s\n%s",
						i, truth.mid, truth.top, truth.main, c.chainAt, showFrames(frames), tail(out))
				}
			}
			if c.frame0 != "" && (len(bts[0]) == 0 || bts[0][0].fn != c.frame0) {
				t.Errorf("frame 0 is %v, want %s", bts[0], c.frame0)
			}
			if c.mode == "signal" && (len(bts[0]) < 3 || bts[0][1].fn != "<signal handler called>" || bts[0][2].fn != "signal_leaf.rseq_abort") {
				t.Errorf("want the handler, the signal frame, then the abort handler:\n%s", showFrames(bts[0]))
			}
			if c.stub != "" && !regexp.MustCompile(`(?s)@@cfi\n.*synthesized CFI for \d+ .*`+regexp.QuoteMeta(c.frame0)).MatchString(out) {
				t.Errorf("monitor rseq cfi does not list %s:\n%s", c.frame0, tail(out))
			}

			if !c.broken {
				plain := startGDBServer(t, fixture(c.fixtureName()), c.mode)
				pbts, _ := gdbPositions(t, c, plain)
				t.Logf("plain gdb (the code has CFI):\n%s", showFrames(pbts[0]))
				return
			}
			plain := startGDBServer(t, fixture(c.fixtureName()), c.mode)
			pbts, pout := gdbPositions(t, c, plain)
			ptruth := parseChain(t, plain.stdout.String())
			broken := 0
			for _, frames := range pbts {
				if !ptruth.holds(frames, c.chainAt) {
					broken++
				}
			}
			if broken == 0 {
				t.Errorf("plain gdb found the chain at every position; the fixture no longer tests anything:\n%s", tail(pout))
			}
			t.Logf("plain gdb: wrong chain at %d of %d positions, e.g.\n%s", broken, len(pbts), showFrames(pbts[0]))
		})
	}
}

// Acceptance 3: up, down and finish from the abort stub; monitor rseq bt
// agrees.
func TestUnwindGDBFinishUpDown(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("unwind_chain"), "abort")
	out := gdb(t, srv.port, fixture("unwind_chain"), false, []string{
		"break " + abortLoc(t, "abort_leaf"), "continue", "delete",
		"echo @@mbt\\n", "monitor rseq bt",
		"echo @@up\\n", "up", "p/x $pc",
		"echo @@down\\n", "down", "p/x $pc",
		"echo @@finish\\n", "finish", "p/x $pc",
		"echo @@end\\n", "continue",
	}, 2*time.Minute)
	srv.wait(t, 30*time.Second)
	truth := parseChain(t, srv.stdout.String())
	section := func(name string) string { return sectionOf(t, out, name) }
	pc := func(sec string) uint64 {
		m := regexp.MustCompile(`\$\d+ = 0x([0-9a-f]+)`).FindStringSubmatch(section(sec))
		if m == nil {
			t.Fatalf("no $pc in %s:\n%s", sec, section(sec))
		}
		v, _ := strconv.ParseUint(m[1], 16, 64)
		return v
	}
	if !strings.Contains(section("up"), "#1 ") || !strings.Contains(section("up"), "chain_mid") || pc("up") != truth.mid {
		t.Errorf("up: want #1 chain_mid at %#x:\n%s", truth.mid, section("up"))
	}
	if !strings.Contains(section("down"), "#0 ") || !strings.Contains(section("down"), "abort_leaf.rseq_abort") {
		t.Errorf("down: want #0 abort_leaf.rseq_abort:\n%s", section("down"))
	}
	if !strings.Contains(section("finish"), "chain_mid") || pc("finish") != truth.mid {
		t.Errorf("finish: want a stop at %#x in chain_mid:\n%s", truth.mid, out)
	}
	var mbt []btFrame
	for _, m := range regexp.MustCompile(`(?m)^#(\d+)\s+0x([0-9a-f]+) in (\S+)`).FindAllStringSubmatch(section("mbt"), -1) {
		v, _ := strconv.ParseUint(m[2], 16, 64)
		mbt = append(mbt, btFrame{pc: v, fn: m[3]})
	}
	if !truth.holds(mbt, 1) || !strings.HasPrefix(mbt[0].fn, "abort_leaf.rseq_abort") || !strings.Contains(section("mbt"), "[synthesized CFI]") {
		t.Errorf("monitor rseq bt:\n%s", section("mbt"))
	}
	if !strings.Contains(out, "exited normally") {
		t.Errorf("program did not finish:\n%s", tail(out))
	}
	exactSums(t, srv.stdout.String())
}

// runFrames parses the backtrace events of `rseqdbg run --json`.
func runFrames(s *session) [][]btFrame {
	var out [][]btFrame
	for _, e := range s.of("backtrace") {
		list, _ := e["frames"].([]any)
		var frames []btFrame
		for _, f := range list {
			m, _ := f.(map[string]any)
			pc, _ := strconv.ParseUint(strings.TrimPrefix(event(m).str("pc"), "0x"), 16, 64)
			frames = append(frames, btFrame{pc: pc, fn: event(m).str("function")})
		}
		out = append(out, frames)
	}
	return out
}

// runtimeAddrs reads, from a first run, the run-time abort handler of each
// section (by function) and the bias of the executable (ASLR is off, so a
// second run has the same addresses).
func runtimeAddrs(t *testing.T) (aborts map[string]uint64, bias uint64) {
	t.Helper()
	s := run(t, []string{"info regions"}, nil, fixture("unwind_chain"), "abort")
	aborts = map[string]uint64{}
	link := map[string]uint64{}
	for _, r := range sections(t, "unwind_chain") {
		link[r.Name] = r.start
	}
	for _, e := range s.of("regions") {
		list, _ := e["regions"].([]any)
		for _, x := range list {
			m := event(x.(map[string]any))
			fn, _, _ := strings.Cut(m.str("name"), "+")
			a, _ := strconv.ParseUint(strings.TrimPrefix(m.str("abort"), "0x"), 16, 64)
			st, _ := strconv.ParseUint(strings.TrimPrefix(m.str("start"), "0x"), 16, 64)
			aborts[fn] = a
			if l, ok := link[m.str("name")]; ok {
				bias = st - l
			}
		}
	}
	if len(aborts) < 3 || bias == 0 {
		t.Fatalf("regions of unwind_chain: %v, bias %#x", aborts, bias)
	}
	return aborts, bias
}

// pltEntry is the link address of name's PLT entry (lazy .plt, no IBT).
func pltEntry(t *testing.T, name string) uint64 {
	t.Helper()
	f, err := elf.Open(fixture("unwind_chain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plt, rela := f.Section(".plt"), f.Section(".rela.plt")
	if plt == nil || rela == nil || f.Section(".plt.sec") != nil {
		t.Skip("no lazy .plt in this build")
	}
	syms, _ := f.DynamicSymbols()
	data, _ := rela.Data()
	for i := 0; i+24 <= len(data); i += 24 {
		info := uint64(data[i+8]) | uint64(data[i+9])<<8 | uint64(data[i+10])<<16 | uint64(data[i+11])<<24 |
			uint64(data[i+12])<<32 | uint64(data[i+13])<<40 | uint64(data[i+14])<<48 | uint64(data[i+15])<<56
		if s := int(info >> 32); s >= 1 && s <= len(syms) && syms[s-1].Name == name {
			return plt.Addr + 16*uint64(i/24+1)
		}
	}
	t.Fatalf("no PLT entry for %s", name)
	return 0
}

// Acceptance: `bt` in `rseqdbg run` shows the true chain at every
// position.
func TestUnwindRun(t *testing.T) {
	aborts, bias := runtimeAddrs(t)
	for _, c := range unwindCases {
		t.Run(c.mode, func(t *testing.T) {
			var loc string
			switch {
			case c.stub != "":
				loc = fmt.Sprintf("*%#x", aborts[c.stub])
			case c.mode == "plt":
				loc = fmt.Sprintf("*%#x", bias+pltEntry(t, "getppid"))
			case c.runBreak != "":
				loc = c.runBreak
			default:
				loc = c.gdbBreak
			}
			cmds := []string{"break " + loc, "continue", "delete", "bt"}
			for range c.steps {
				cmds = append(cmds, "stepi", "bt")
			}
			s := run(t, append(cmds, "continue"), nil, fixture("unwind_chain"), c.mode)
			truth := parseChain(t, s.output)
			bts := runFrames(s)
			if len(bts) != c.steps+1 {
				t.Fatalf("%d backtraces, want %d; stderr:\n%s", len(bts), c.steps+1, s.stderr)
			}
			for i, frames := range bts {
				if !truth.holds(frames, c.chainAt) {
					t.Errorf("position %d: not the true chain (mid %#x, top %#x, main %#x) from frame %d:\n%s",
						i, truth.mid, truth.top, truth.main, c.chainAt, showFrames(frames))
				}
			}
			// The stub is named as gdb names it in the synthesized object.
			if c.frame0 != "" && (len(bts[0]) == 0 || bts[0][0].fn != c.frame0) {
				t.Errorf("frame 0 at the stub entry is not named %s:\n%s", c.frame0, showFrames(bts[0]))
			}
			s.exact(t)
		})
	}
}

// Acceptance: the DAP stack trace from the abort stub shows the true chain
// to main, its top frame marked as found without CFI.
func TestUnwindDAP(t *testing.T) {
	c := startDAP(t)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("launch", map[string]any{"program": fixture("unwind_chain"), "args": []string{"abort"}, "stopOnEntry": true})
	c.event("initialized")
	c.call("configurationDone", nil)
	c.event("stopped")
	var regs struct {
		Body struct {
			Regions []struct{ Name, Abort string }
		}
	}
	json.Unmarshal(c.call("rseqRegions", nil), &regs)
	abort := ""
	for _, r := range regs.Body.Regions {
		if strings.HasPrefix(r.Name, "abort_leaf+") {
			abort = r.Abort
		}
	}
	if abort == "" {
		t.Fatalf("no section in abort_leaf: %+v", regs)
	}
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": abort}}})
	var st dap.StoppedEvent
	c.call("continue", map[string]any{"threadId": 0})
	json.Unmarshal(c.event("stopped"), &st)
	var trace dap.StackTraceResponse
	json.Unmarshal(c.call("stackTrace", map[string]any{"threadId": st.Body.ThreadId}), &trace)
	var frames []btFrame
	for _, f := range trace.Body.StackFrames {
		pc, _ := strconv.ParseUint(strings.TrimPrefix(f.InstructionPointerReference, "0x"), 16, 64)
		frames = append(frames, btFrame{pc: pc, fn: f.Name})
	}
	// The program's output reaches the client on its own schedule, maybe
	// after the stop.
	if !chainRE.MatchString(c.out.String()) {
		c.until("the CHAIN line", func(map[string]any) bool { return chainRE.MatchString(c.out.String()) })
	}
	truth := parseChain(t, c.out.String())
	if !truth.holds(frames, 1) {
		t.Errorf("not the true chain (mid %#x, top %#x, main %#x) from frame 1:\n%s", truth.mid, truth.top, truth.main, showFrames(frames))
	}
	if len(frames) == 0 || !strings.HasPrefix(frames[0].fn, "abort_leaf.rseq_abort") || !strings.Contains(frames[0].fn, "[no CFI]") || fmt.Sprintf("%#x", frames[0].pc) != abort {
		t.Errorf("frame 0 %+v, want the abort handler abort_leaf.rseq_abort at %s marked [no CFI]", frames, abort)
	}
	t.Logf("stack trace:\n%s", showFrames(frames))
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
}

// TestUnwindGDBAfterDlopen: a library loaded by dlopen brings its abort
// stubs into a regenerated synthesized object, which gdb loads by itself.
func TestUnwindGDBAfterDlopen(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("dlopen_main"), "1", "50")
	out := gdb(t, srv.port, fixture("dlopen_main"), false, []string{
		"break main", "continue",
		"echo @@before\\n", "monitor rseq cfi", "info sharedlibrary",
		"break lib_loop", "continue",
		"echo @@after\\n", "monitor rseq cfi", "info sharedlibrary",
		"echo @@end\\n", "delete", "continue",
	}, 2*time.Minute)
	srv.wait(t, 30*time.Second)
	objRE := regexp.MustCompile(`\S*synthesized-cfi-\d+-\d+\.debug`)
	libStubRE := regexp.MustCompile(`(?m)^\s+(inc_lib|lib_loop)\.rseq_abort\s`)
	before, after := sectionOf(t, out, "before"), sectionOf(t, out, "after")
	if libStubRE.MatchString(before) {
		t.Errorf("the library's stubs are described before it is loaded:\n%s", before)
	}
	if !libStubRE.MatchString(after) {
		t.Errorf("monitor rseq cfi does not list the library's abort stubs after dlopen:\n%s", after)
	}
	loaded := regexp.MustCompile(`(?m)^0x[0-9a-f]+\s+0x[0-9a-f]+\s+Yes\s+(\S*synthesized-cfi-\d+-\d+\.debug)$`).FindAllStringSubmatch(after, -1)
	if len(loaded) != 1 {
		t.Fatalf("gdb did not load exactly one synthesized object after dlopen:\n%s", after)
	}
	if prev := objRE.FindString(before); prev != "" && prev == loaded[0][1] {
		t.Errorf("the object was not regenerated after dlopen: still %s", prev)
	}
	exactSums(t, srv.stdout.String())
}
