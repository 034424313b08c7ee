package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// server starts a GDB remote server (rseqdbg, or rseqdbg in front of
// gdbserver) for a program and returns its port and a function that waits
// for it to end and returns the program's output.
type server func(t *testing.T, prog ...string) (port int, done func() string)

// direct is rseqdbg itself.
func direct(t *testing.T, prog ...string) (int, func() string) {
	srv := startRseqdbg(t, nil, prog...)
	return srv.port, func() string {
		srv.wait(t, 30*time.Second)
		return srv.stdout.String()
	}
}

// Acceptance 1: gdb's stepi through every flavour reaches the commits (each
// section runs atomically as one step) and the program ends with exact sums.
func TestGDBStepiReachesCommit(t *testing.T) { stepiReachesCommit(t, direct) }

func stepiReachesCommit(t *testing.T, start server) {
	needTool(t, "gdb")
	for _, f := range flavours {
		if f.prog == "dlopen_main" {
			continue // its sections are in the library: this test reads the executable's symbols
		}
		t.Run(f.prog, func(t *testing.T) {
			port, done := start(t, fixture(f.prog), "1", "200")
			out := gdb(t, port, fixture(f.prog), false, stepiScript(f.fn, true), 2*time.Minute)
			output := done()
			st := stats(t, out)
			if st["commits"] < 2 {
				t.Errorf("stepi x400 committed %d times, want several: %v", st["commits"], st)
			}
			if st["steps inside a section"] != 0 {
				t.Errorf("hardware steps inside a section: %v", st)
			}
			if f.prog != "no_tables" {
				// The tables say where the commits are: gdb's own PCs show it.
				if commits, inside := commitHits(t, f.prog, f.fn, out); commits == 0 || inside != 0 {
					t.Errorf("gdb stopped %d times at a commit and %d times inside a section", commits, inside)
				}
			}
			if !strings.Contains(out, "exited normally") {
				t.Errorf("program did not exit normally:\n%s", tail(out))
			}
			exactSums(t, output)
		})
	}
}

// Acceptance 4: the same stepping through Debian's gdbserver never commits:
// every stop inside the section aborts it.
func TestGDBServerStepiNeverCommits(t *testing.T) {
	needTool(t, "gdb")
	for _, prog := range []string{"full_tables", "call_helper"} {
		t.Run(prog, func(t *testing.T) {
			fn := map[string]string{"full_tables": "inc_full", "call_helper": "inc_call"}[prog]
			srv := startGDBServer(t, fixture(prog), "1", "200")
			out := gdb(t, srv.port, fixture(prog), false, stepiScript(fn, false), 2*time.Minute)
			srv.wait(t, 30*time.Second)
			commits, inside := commitHits(t, prog, fn, out)
			if commits != 0 || inside == 0 {
				t.Fatalf("expected gdbserver to fail: %d stops at a commit, %d inside a section", commits, inside)
			}
			t.Logf("gdbserver: 0 commits in 400 stepi, %d stops inside a section (each aborted it)", inside)
		})
	}
}

// tail and head are the last and first 40 lines of a transcript.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func head(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 40 {
		lines = lines[:40]
	}
	return strings.Join(lines, "\n")
}

// cutSection is the part of a gdb transcript after `echo @@name\n`, up
// to the next @@ mark; ok is false when the transcript has no such mark.
func cutSection(out, name string) (string, bool) {
	_, rest, ok := strings.Cut(out, "@@"+name+"\n")
	rest, _, _ = strings.Cut(rest, "@@")
	return rest, ok
}

// sectionOf is cutSection, failing the test when the mark is missing.
func sectionOf(t testing.TB, out, name string) string {
	t.Helper()
	rest, ok := cutSection(out, name)
	if !ok {
		t.Fatalf("no section %s:\n%s", name, out)
	}
	return rest
}

var infoLineRE = regexp.MustCompile(`Line (\d+) of "([^"]+)"`)

// Acceptance 1: next at the RSEQ-LINE lands on the following line by the
// commit path (no stop in the abort stub, no step inside the section).
func TestGDBNextTakesCommitPath(t *testing.T) { nextTakesCommitPath(t, direct) }

func nextTakesCommitPath(t *testing.T, start server) {
	needTool(t, "gdb")
	for _, f := range flavours {
		t.Run(f.prog, func(t *testing.T) {
			line := markerLine(t, f.src, "RSEQ-LINE")
			port, done := start(t, fixture(f.prog), "1", "100")
			out := gdb(t, port, fixture(f.prog), false, []string{
				fmt.Sprintf("break %s:%d", f.src, line), "continue", "delete",
				"monitor rseq stats", "echo NEXT\\n", "next", "info line *$pc", "monitor rseq stats", "continue",
			}, time.Minute)
			output := done()
			before, after, ok := strings.Cut(out, "NEXT\n")
			if !ok {
				t.Fatalf("no next:\n%s", out)
			}
			m := infoLineRE.FindStringSubmatch(after)
			if m == nil {
				t.Fatalf("next stopped without line information (abort stub?):\n%s", tail(out))
			}
			if n, _ := strconv.Atoi(m[1]); n == line || !strings.HasSuffix(m[2], f.src) {
				t.Errorf("next stopped at %s:%s, want the line after %d", m[2], m[1], line)
			}
			b, a := stats(t, before), stats(t, after)
			if a["commits"]+a["other exits"] <= b["commits"]+b["other exits"] {
				t.Errorf("next crossed no section: before %v after %v", b, a)
			}
			if a["steps inside a section"] != 0 {
				t.Errorf("hardware steps inside a section: %v", a)
			}
			exactSums(t, output)
		})
	}
}

// startBreak is the gdb location of the first instruction of fn's section.
func startBreak(t *testing.T, prog, fn string) string {
	t.Helper()
	for _, r := range sections(t, prog) {
		if r.fn == fn {
			return fmt.Sprintf("*((char*)%s + %d)", fn, r.start-r.fnAddr)
		}
	}
	t.Fatalf("no section in %s of %s", fn, prog)
	return ""
}

var hitsRE = regexp.MustCompile(`breakpoint already hit (\d+) time`)

// Acceptance 1: a breakpoint on start_ip, auto-continued by gdb, 4 threads:
// every hit shows one attempt and the program finishes with exact sums.
func TestGDBBreakpointAtStartAutoContinued(t *testing.T) { autoContinuedAtStart(t, direct) }

func autoContinuedAtStart(t *testing.T, start server) {
	needTool(t, "gdb")
	const threads, iters = 4, 200
	loc := startBreak(t, "full_tables", "inc_full")
	port, done := start(t, fixture("full_tables"), strconv.Itoa(threads), strconv.Itoa(iters))
	out := gdb(t, port, fixture("full_tables"), false, []string{
		"break " + loc, "ignore 1 100000", "continue", "info breakpoints",
	}, 3*time.Minute)
	output := done()
	if !strings.Contains(out, "exited normally") {
		t.Fatalf("program did not finish:\n%s", tail(out))
	}
	m := hitsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no hit count:\n%s", tail(out))
	}
	// inc_full runs on odd iterations; aborts by preemption are real
	// entries too, so a few more hits are fine.
	if hits, _ := strconv.Atoi(m[1]); hits < threads*iters/2 || hits > threads*iters {
		t.Errorf("breakpoint hit %d times, want about %d", hits, threads*iters/2)
	}
	exactSums(t, output)
}

// Acceptance 4: through gdbserver the same breakpoint traps the program in
// abort and retry: its ignore count runs out long before the program ends.
func TestGDBServerBreakpointAtStartLoops(t *testing.T) {
	needTool(t, "gdb")
	const iters = 20 // inc_full is called 10 times
	loc := startBreak(t, "full_tables", "inc_full")
	script := []string{"break " + loc, "ignore 1 300", "continue", "info breakpoints", "kill"}
	for _, server := range []string{"rseqdbg", "gdbserver"} {
		t.Run(server, func(t *testing.T) {
			var srv *stub
			if server == "rseqdbg" {
				srv = startRseqdbg(t, nil, fixture("full_tables"), "1", strconv.Itoa(iters))
			} else {
				srv = startGDBServer(t, fixture("full_tables"), "1", strconv.Itoa(iters))
			}
			// kill fails once the program has exited; that is the point.
			out, _ := gdbRun(t, srv.port, fixture("full_tables"), false, script, 2*time.Minute)
			srv.wait(t, 30*time.Second)
			m := hitsRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no hit count:\n%s", tail(out))
			}
			hits, _ := strconv.Atoi(m[1])
			finished := strings.Contains(out, "exited normally")
			switch server {
			case "rseqdbg":
				if !finished || hits != iters/2 {
					t.Errorf("rseqdbg: finished %v after %d hits, want %d hits", finished, hits, iters/2)
				}
				exactSums(t, srv.stdout.String())
			default:
				if finished || hits <= iters {
					t.Errorf("expected gdbserver to loop: finished %v after %d hits", finished, hits)
				}
				t.Logf("gdbserver: %d hits of a breakpoint on a section called %d times, program not finished", hits, iters/2)
			}
		})
	}
}

// gdb steps over a breakpoint inside a section in line (z0, vCont;s, Z0),
// never displaced, and that step is the engine's region pass.
func TestGDBStepOverBreakpointIsInline(t *testing.T) {
	needTool(t, "gdb")
	loc := startBreak(t, "full_tables", "inc_full")
	srv := startRseqdbg(t, []string{"-v"}, fixture("full_tables"), "1", "20")
	out := gdb(t, srv.port, fixture("full_tables"), false, []string{
		"break " + loc, "continue", "monitor rseq stats", "set debug infrun 1", "set debug remote 1",
		"continue", "set debug infrun 0", "set debug remote 0", "monitor rseq stats", "delete", "continue",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if !strings.Contains(out, "rseqdbg: thread") || !strings.Contains(out, "stopped inside critical section") {
		t.Errorf("no console note for the stop inside the section:\n%s", tail(out))
	}
	if strings.Contains(out, "displaced_step_prepare") || strings.Contains(out, "displaced-stepping") {
		t.Errorf("gdb displaced-stepped:\n%s", out)
	}
	// In-line step-over: the breakpoint is out (gdb removed it with z0 at
	// the stop), the thread steps alone, then the breakpoint goes back in.
	m := regexp.MustCompile(`hit Breakpoint 1, 0x0*([0-9a-f]+) in inc_full`).FindAllStringSubmatch(out, -1)
	if len(m) < 2 {
		t.Fatalf("breakpoint not hit twice:\n%s", tail(out))
	}
	addr := m[0][1]
	step := strings.Index(out, "Sending packet: $vCont;s:")
	Z0 := strings.Index(out, "Sending packet: $Z0,"+addr+",")
	if step < 0 || Z0 < step || !strings.Contains(out, "for step-over") {
		t.Errorf("no in-line step-over (vCont;s, then Z0 at %s):\n%s", addr, out)
	}
	before := stats(t, out[:strings.Index(out, "[infrun]")])
	after := stats(t, out[strings.LastIndex(out, "[infrun]"):])
	if after["region runs"] <= before["region runs"] || after["commits"] <= before["commits"] {
		t.Errorf("the step-over was no region pass: before %v after %v", before, after)
	}
	exactSums(t, srv.stdout.String())
}

// Acceptance 1: the everyday commands.
func TestGDBCommands(t *testing.T) {
	needTool(t, "gdb")
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	watch := []string{"delete", "watch -l t->commits", "continue"}
	if !debugRegistersWork(t) {
		// gdb single-steps for a software watchpoint: every step that
		// enters a section runs it atomically.
		t.Log("debug registers do not trigger here: software watchpoint")
		watch = append([]string{"set can-use-hw-watchpoints 0"}, watch...)
	}
	srv := startRseqdbg(t, nil, fixture("full_tables"), "1", "1000")
	out := gdb(t, srv.port, fixture("full_tables"), false, append([]string{
		"break inc_full", "continue",
		"echo @@threads\\n", "info threads",
		"echo @@thread1\\n", "thread 1",
		"echo @@thread2\\n", "thread 2",
		"echo @@bt\\n", "bt",
		"echo @@regs\\n", "info registers",
		"echo @@fsbasereg\\n", "info registers fs_base",
		"echo @@fsbase\\n", "p/x $fs_base",
		"echo @@x\\n", "x/8i $pc",
		"echo @@finish\\n", "finish",
		"echo @@advance\\n", fmt.Sprintf("advance %d", line),
		"echo @@until\\n", "until", "info line *$pc",
		"echo @@watch\\n"}, append(watch,
		"echo @@end\\n", "delete", "continue")...), 2*time.Minute)
	srv.wait(t, 30*time.Second)
	section := func(name string) string { return sectionOf(t, out, name) }
	checks := []struct{ sec, re string }{
		{"threads", `(?m)^\s+1\s+Thread \d+\.\d+ .*\n\*\s+2\s+Thread \d+\.\d+ .* inc_full`},
		{"thread1", `Switching to thread 1`},
		{"thread2", `(?s)Switching to thread 2.*inc_full`},
		{"bt", `(?s)#0 .*inc_full .*#1 .* worker`},
		{"regs", `(?m)^rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <inc_full(\+\d+)?>`},
		{"regs", `(?m)^eflags\s+0x[0-9a-f]+\s+\[ .*\]`},
		{"fsbasereg", `(?m)^fs_base\s+0x[1-9a-f][0-9a-f]*`},
		{"fsbase", `\$\d+ = 0x[1-9a-f][0-9a-f]+`},
		{"x", `(?s)=> 0x[0-9a-f]+ <inc_full(\+\d+)?>:(.*\n){7}`},
		{"finish", `(?s)worker .*Value returned is \$\d+ = 1`},
		{"advance", fmt.Sprintf(`worker .* at full_tables.c:%d`, line)},
		{"until", `Line \d+ of "full_tables.c"`},
		{"watch", `(?s)atchpoint \d+: -location t->commits.*Old value = \d+.*New value = \d+`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(section(c.sec)) {
			t.Errorf("%s: no match for %s in:\n%s", c.sec, c.re, section(c.sec))
		}
	}
	if m := infoLineRE.FindStringSubmatch(section("until")); m != nil && m[1] == strconv.Itoa(line) {
		t.Errorf("until did not leave the RSEQ-LINE")
	}
	if !strings.Contains(section("end"), "exited normally") {
		t.Errorf("program did not finish:\n%s", section("end"))
	}
	exactSums(t, srv.stdout.String())
}

// Acceptance 1: a SIGALRM storm while stepping: gdb passes the signal
// (nostop, noprint), none is lost and the sums are exact.
func TestGDBSignalStorm(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("full_tables"), "2", "300", "--signals")
	line := markerLine(t, "full_tables.c", "RSEQ-LINE")
	out := gdb(t, srv.port, fixture("full_tables"), false, []string{
		"break inc_full", "continue", "delete", "stepi 150",
		fmt.Sprintf("break full_tables.c:%d", line), "continue", "delete", "next", "next", "next",
		"monitor rseq stats", "continue",
	}, 3*time.Minute)
	srv.wait(t, 30*time.Second)
	st := stats(t, out)
	if st["commits"] < 2 || st["steps inside a section"] != 0 {
		t.Errorf("stats %v", st)
	}
	r := exactSums(t, srv.stdout.String())
	if r["signals"] == 0 {
		t.Errorf("no signal reached the program: %v", r)
	}
}

// Acceptance 2: extended-remote: run, kill, run again, attach.
func TestGDBExtendedRemote(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, []string{"--multi"})
	// A long-running program to attach to.
	victim := &stub{}
	victim.start(t, fixture("full_tables"), "1", "4000000000")
	time.Sleep(200 * time.Millisecond)
	out := gdb(t, srv.port, fixture("full_tables"), true, []string{
		"set remote exec-file " + fixture("full_tables"),
		"break inc_full",
		"echo @@run1\\n", "run 1 50", "monitor rseq stats",
		"echo @@kill1\\n", "kill",
		"echo @@run2\\n", "run 1 50", "delete", "continue",
		"echo @@attach\\n", fmt.Sprintf("attach %d", victim.cmd.Process.Pid), "info threads", "monitor rseq status",
		"echo @@detach\\n", "detach",
		"echo @@end\\n",
	}, 2*time.Minute)
	checks := []struct{ sec, re string }{
		{"run1", `Breakpoint 1, inc_full`},
		{"kill1", `(?s).*`},
		{"run2", `(?s)Breakpoint 1, inc_full.*exited normally`},
		{"attach", `(?s)New Thread \d+\.\d+.*Thread \d+\.\d+`},
		{"attach", `thread \d+: pc 0x[0-9a-f]+`},
		{"detach", `Inferior 1 \(process \d+\) detached`},
	}
	for _, c := range checks {
		rest, ok := cutSection(out, c.sec)
		if !ok || !regexp.MustCompile(c.re).MatchString(rest) {
			t.Errorf("%s: no match for %s in:\n%s", c.sec, c.re, rest)
		}
	}
	// The second run printed its result (the first was killed); the
	// attached program runs on after the detach.
	if n := strings.Count(srv.stdout.String(), "RESULT"); n != 1 {
		t.Errorf("%d programs finished, want the second run only (the first was killed):\n%s", n, srv.stdout.String())
	}
	select {
	case <-victim.done:
		t.Errorf("the detached program died: %v", victim.err)
	default:
	}
	// A multi server runs until it is told to stop.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.wait(t, 30*time.Second)
	if srv.err != nil {
		t.Errorf("server exit after SIGTERM: %v\n%s", srv.err, srv.stderr.String())
	}
}

// Hardware watchpoints that the machine cannot deliver are refused, not
// silently lost; where debug registers work, they fire.
func TestGDBHardwareWatchpoint(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("full_tables"), "1", "1000")
	out, _ := gdbRun(t, srv.port, fixture("full_tables"), false, []string{
		"break inc_full", "continue", "finish", "delete", "watch -l t->commits", "continue", "continue", "kill",
	}, time.Minute)
	srv.wait(t, 30*time.Second)
	if debugRegistersWork(t) {
		if !regexp.MustCompile(`(?s)Hardware watchpoint \d+: -location t->commits.*Old value = \d+.*New value = \d+`).MatchString(out) {
			t.Errorf("hardware watchpoint did not fire:\n%s", tail(out))
		}
		return
	}
	if !strings.Contains(out, "Could not insert hardware watchpoint") {
		t.Errorf("hardware watchpoint not refused on a machine without debug registers:\n%s", tail(out))
	}
}

// Acceptance 5: damaged, truncated, oversized and unknown packets get the
// protocol's answers from the real server, which keeps serving and never
// panics.
func TestRemoteBadPackets(t *testing.T) {
	srv := startRseqdbg(t, nil, fixture("loop_next"), "10")
	rc := dialRaw(t, srv.port)
	defer rc.c.Close()
	send, expect, frame := rc.send, rc.expect, rawFrame
	send("+" + frame("qSupported:multiprocess+;swbreak+"))
	expect('+', `^\$PacketSize=`)
	send("$g#00") // wrong checksum
	expect('-', "")
	// Truncated: a new packet starts before the old one ended. Cut in its
	// payload, it is abandoned; cut in its checksum, it is refused.
	send("$m4")
	send(frame("qFooBarBaz"))
	expect('+', `^\$#$`)
	send("$m0,4#6")
	send(frame("qFooBarBaz"))
	expect('-', "")
	expect('+', `^\$#$`)
	send("$" + strings.Repeat("x", 200000) + "#00") // oversized
	expect('+', `^\$E01#$`)
	send(frame("vCont;q:zz"))
	expect('+', `^\$E01#$`)
	send(frame("m0,10"))
	expect('+', `^\$E01#$`)
	send(frame("?"))
	expect('+', `^\$T05`)
	rc.c.Close()
	srv.wait(t, 30*time.Second)
	if srv.err != nil {
		t.Errorf("server exit: %v\n%s", srv.err, srv.stderr.String())
	}
}

// rawClient speaks the protocol byte by byte, in ack mode.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, port int) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func rawFrame(p string) string {
	var sum byte
	for i := 0; i < len(p); i++ {
		sum += p[i]
	}
	return fmt.Sprintf("$%s#%02x", p, sum)
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads an ack and then, unless reply is "", one packet matching
// reply, which it acknowledges.
func (r *rawClient) expect(ack byte, reply string) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := r.br.ReadByte(); err != nil || b != ack {
		r.t.Fatalf("want %q, got %q (%v)", ack, b, err)
	}
	if reply == "" {
		return
	}
	line, err := r.br.ReadString('#')
	if err != nil {
		r.t.Fatal(err)
	}
	r.br.Discard(2)
	r.send("+")
	if !regexp.MustCompile(reply).MatchString(line) {
		r.t.Fatalf("want %s, got %q", reply, line)
	}
}

// ^C (0x03) while the target runs stops it: gdb gets SIGINT.
func TestRemoteInterrupt(t *testing.T) { interruptStops(t, direct) }

func interruptStops(t *testing.T, start server) {
	port, done := start(t, fixture("loop_next"), "3000000000")
	rc := dialRaw(t, port)
	defer rc.c.Close()
	rc.send("+" + rawFrame("qSupported:multiprocess+;swbreak+"))
	rc.expect('+', `^\$PacketSize=`)
	rc.send(rawFrame("vCont;c"))
	rc.expect('+', "")
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	rc.send("\x03")
	rc.expect('$', "") // the reply starts without an ack
	rc.br.UnreadByte()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := rc.br.ReadString('#')
	if err != nil || !strings.HasPrefix(line, "$T02") {
		t.Fatalf("want a SIGINT stop, got %q %v", line, err)
	}
	rc.br.Discard(2)
	rc.send("+")
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("interrupt took %v", d)
	}
	pid := regexp.MustCompile(`thread:p([0-9a-f]+)\.`).FindStringSubmatch(line)
	if pid == nil {
		t.Fatalf("no thread in %q", line)
	}
	rc.send(rawFrame("vKill;" + pid[1]))
	rc.expect('+', `^\$OK#$`)
	rc.c.Close()
	if strings.Contains(done(), "RESULT") {
		t.Errorf("the loop ran to its end instead of stopping")
	}
}

// Acceptance 5: a client killed while the target runs a vCont;r range
// step leaves no breakpoint behind: the detached program (--keep) runs its
// loop to the end instead of dying of a stray int3.
func TestRemoteClientKilledMidRangeStep(t *testing.T) {
	needTool(t, "gdb")
	const n = "3000000000" // a few seconds natively
	line := markerLine(t, "loop_next.c", "LOOP-LINE")
	srv := startRseqdbg(t, []string{"--keep", "-v"}, fixture("loop_next"), n)
	script := filepath.Join(t.TempDir(), "cmds.gdb")
	os.WriteFile(script, []byte(fmt.Sprintf("set confirm off\ntarget remote :%d\nbreak loop_next.c:%d\ncontinue\nnext\n", srv.port, line)), 0o644)
	g := exec.Command("gdb", "-nx", "-batch", "-x", script, fixture("loop_next"))
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if !srv.stderr.waitFor("packet=vCont;r", 30*time.Second) {
		g.Process.Kill()
		t.Fatalf("gdb never range-stepped:\n%s", srv.stderr.String())
	}
	time.Sleep(300 * time.Millisecond)
	g.Process.Kill()
	g.Wait()
	srv.wait(t, 2*time.Minute)
	// The detached program prints its result when its loop ends.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(srv.stdout.String(), "RESULT") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	r := result(t, srv.stdout.String())
	if r["total"] != r["expected"] {
		t.Errorf("the program did not finish its loop: %v", r)
	}
	if !strings.Contains(srv.stderr.String(), "Detached from process") {
		t.Errorf("no detach:\n%s", srv.stderr.String())
	}
}
