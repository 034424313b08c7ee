package tests

import (
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

// Proxy mode: rseqdbg --gdb-remote in front of another stub (Debian's
// gdbserver, qemu-user's gdbstub), every resumption through the stepping
// core. The same scenarios against gdbserver alone fail: see
// TestGDBServerStepiNeverCommits, TestGDBServerBreakpointAtStartLoops and
// TestGDBServerVDSOStepiNeverReturns.

// startProxy starts `rseqdbg --gdb-remote :0 --upstream 127.0.0.1:PORT`.
func startProxy(t testing.TB, upstream *stub, flags ...string) *stub {
	t.Helper()
	args := append([]string{"--gdb-remote", ":0", "--once", "--port-file", filepath.Join(t.TempDir(), "port"),
		"--upstream", fmt.Sprintf("127.0.0.1:%d", upstream.port)}, flags...)
	s := &stub{}
	s.start(t, binary, args...)
	s.waitPort(t)
	return s
}

// proxied is a proxy and its upstream; the program's output is the
// upstream's.
type proxied struct {
	proxy, upstream *stub
}

func (p proxied) port() int      { return p.proxy.port }
func (p proxied) output() string { return p.upstream.stdout.String() }

func (p proxied) wait(t testing.TB) {
	t.Helper()
	p.proxy.wait(t, time.Minute)
	p.upstream.wait(t, time.Minute)
	if strings.Contains(p.proxy.stderr.String(), "panic") {
		t.Errorf("the proxy panicked:\n%s", p.proxy.stderr.String())
	}
}

// viaGDBServer starts gdbserver with the program and rseqdbg in front.
func viaGDBServer(t testing.TB, prog ...string) proxied {
	t.Helper()
	gs := startGDBServer(t, prog...)
	return proxied{proxy: startProxy(t, gs), upstream: gs}
}

// freePort finds a port for a stub that cannot pick one itself (qemu).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// viaQEMU runs the program under qemu-user's gdbstub with rseqdbg in
// front. qemu-user does not implement rseq, so the fixtures run with
// --allow-unregistered.
func viaQEMU(t testing.TB, prog ...string) proxied {
	t.Helper()
	needTool(t, "qemu-x86_64")
	q := &stub{port: freePort(t)}
	q.start(t, "qemu-x86_64", append([]string{"-g", strconv.Itoa(q.port)}, prog...)...)
	// qemu listens once it has loaded the program, and serves the first
	// connection only: watch for the listening socket instead of probing.
	q.waitListening(t)
	return proxied{proxy: startProxy(t, q), upstream: q}
}

// waitListening waits for a stub started on a port it was given to
// listen there.
func (s *stub) waitListening(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !isListening(s.port); time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.done:
			t.Fatalf("%s exited: %v\n%s", s.cmd.Path, s.err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %d", s.cmd.Path, s.port)
		}
	}
}

// isListening tells from /proc/net/tcp whether something listens on port,
// without connecting (qemu serves the first connection only).
func isListening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X ", port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// proxy is rseqdbg in front of gdbserver.
func proxy(t *testing.T, prog ...string) (int, func() string) {
	p := viaGDBServer(t, prog...)
	return p.port(), func() string {
		p.wait(t)
		return p.output()
	}
}

// behindLLDBServer is rseqdbg in front of lldb-server, which sends the
// program's output as console packets: the proxy passes them to gdb and
// copies them to its stderr.
func behindLLDBServer(t *testing.T, prog ...string) (int, func() string) {
	p := viaLLDBServer(t, prog...)
	return p.port(), func() string {
		p.wait(t)
		return p.proxy.stderr.String()
	}
}

// Acceptance 1: stepi x400 through the proxy in front of gdbserver reaches
// the commits in every flavour and the program ends with exact sums.
func TestProxyStepiReachesCommit(t *testing.T) { stepiReachesCommit(t, proxy) }

// Acceptance 1: next at the RSEQ-LINE takes the commit path through the
// proxy.
func TestProxyNextTakesCommitPath(t *testing.T) { nextTakesCommitPath(t, proxy) }

// Acceptance 1: a breakpoint on start_ip, auto-continued, 4 threads,
// through the proxy: one hit per entry and exact sums.
func TestProxyBreakpointAtStartAutoContinued(t *testing.T) { autoContinuedAtStart(t, proxy) }

// The same scenarios in front of lldb-server.
func TestLLDBServerProxyNextTakesCommitPath(t *testing.T) { nextTakesCommitPath(t, behindLLDBServer) }
func TestLLDBServerProxyBreakpointAtStartAutoContinued(t *testing.T) {
	autoContinuedAtStart(t, behindLLDBServer)
}

// ^C while the target runs behind the proxy stops it: the proxy watches
// its client once waiting for the upstream sleeps.
func TestProxyInterrupt(t *testing.T) { interruptStops(t, proxy) }

var vdsoStepRE = regexp.MustCompile(`(?m)^=> 0x[0-9a-f]+(?: <([^+>]+)(?:\+\d+)?>)?:`)

// vdsoStepi steps from the clock_gettime call of vdso_clock and returns the
// function of each stop ("" where gdb knows none: vDSO code).
func vdsoStepi(t *testing.T, port, steps int, after ...string) ([]string, string) {
	t.Helper()
	line := markerLine(t, "vdso_clock.c", "VDSO-CALL")
	// The second call: the first goes through lazy PLT binding in ld.so.
	out, _ := gdbRun(t, port, fixture("vdso_clock"), false, append([]string{
		fmt.Sprintf("break vdso_clock.c:%d", line), "continue", "continue", "delete",
		"set $i = 0", fmt.Sprintf("while $i < %d", steps), "  stepi", "  x/i $pc", "  set $i = $i + 1", "end",
	}, append(after, "kill")...), 3*time.Minute)
	var fns []string
	for _, m := range vdsoStepRE.FindAllStringSubmatch(out, -1) {
		fns = append(fns, m[1])
	}
	return fns, out
}

// backInCaller reports whether the steps reached glibc's clock_gettime
// (which calls the vDSO's) and then came back to read_clock.
func backInCaller(fns []string) (entered, back bool) {
	for _, f := range fns {
		switch {
		case strings.HasSuffix(f, "clock_gettime") || f == "":
			entered = true
		case entered && f == "read_clock":
			return true, true
		}
	}
	return entered, false
}

// Acceptance 1: stepi into the vDSO's clock_gettime comes back out through
// the proxy, in front of gdbserver and of lldb-server.
func TestProxyVDSOStepi(t *testing.T) {
	needTool(t, "gdb")
	for name, via := range map[string]func(testing.TB, ...string) proxied{
		"gdbserver": viaGDBServer, "lldb-server": viaLLDBServer,
	} {
		t.Run(name, func(t *testing.T) {
			p := via(t, fixture("vdso_clock"), "1", "10")
			fns, out := vdsoStepi(t, p.port(), 60, "monitor rseq stats")
			p.wait(t)
			if entered, back := backInCaller(fns); !entered || !back {
				t.Errorf("stepi through clock_gettime: entered %v, back in read_clock %v:\n%s", entered, back, tail(out))
			}
			for _, f := range fns {
				if f == "clock_gettime" || f == "" {
					t.Errorf("a stepi stopped inside the vDSO:\n%s", out)
					break
				}
			}
			if st := stats(t, out); st["region runs"] < 1 {
				t.Errorf("no vDSO region run: %v", st)
			}
		})
	}
}

// Acceptance 1 (the failing side): through gdbserver alone, stepi into the
// vDSO's clock_gettime loops in its seqlock retry and never returns.
func TestGDBServerVDSOStepiNeverReturns(t *testing.T) {
	needTool(t, "gdb")
	gs := startGDBServer(t, fixture("vdso_clock"), "1", "10")
	fns, out := vdsoStepi(t, gs.port, 200)
	gs.wait(t, time.Minute)
	entered, back := backInCaller(fns)
	if !entered || back {
		t.Fatalf("expected gdbserver to loop in the vDSO: entered %v, back %v:\n%s", entered, back, tail(out))
	}
	t.Logf("gdbserver: %d stepi, still inside clock_gettime", len(fns))
}

// Acceptance 2: lldb 14 through the proxy.
func TestProxyLLDB(t *testing.T) {
	needTool(t, "lldb")
	// lldb-server describes no fs_base: the proxy reports it unavailable.
	for name, via := range map[string]func(testing.TB, ...string) proxied{
		"gdbserver": viaGDBServer, "lldb-server": viaLLDBServer,
	} {
		t.Run(name, func(t *testing.T) {
			checkLLDB(t, name == "gdbserver", func(prog ...string) (int, func()) {
				p := via(t, prog...)
				return p.port(), func() { p.wait(t) }
			})
		})
	}
}

// stepiThrough runs gdb's 400 stepi from fn through the proxy p, then
// monitor rseq status and the extra commands, and returns the transcript once the program has
// exited normally with every section run atomically.
func stepiThrough(t *testing.T, p proxied, prog, fn string, extra ...string) string {
	t.Helper()
	script := stepiScript(fn, true)
	script = append(append(script[:len(script)-1], "monitor rseq status"), append(extra, "continue")...)
	out := gdb(t, p.port(), fixture(prog), false, script, 2*time.Minute)
	p.wait(t)
	if st := stats(t, out); st["region runs"] < 2 || st["commits"] < 2 || st["steps inside a section"] != 0 {
		t.Errorf("stepi x400: %v", st)
	}
	if prog != "no_tables" {
		// The tables say where the commits are: gdb's own PCs show it.
		if commits, inside := commitHits(t, prog, fn, out); commits == 0 || inside != 0 {
			t.Errorf("gdb stopped %d times at a commit and %d times inside a section", commits, inside)
		}
	}
	if !strings.Contains(out, "exited normally") {
		t.Errorf("program did not exit normally:\n%s", tail(out))
	}
	return out
}

// Acceptance 3: qemu-user as the upstream. It does not implement rseq, so
// glibc registers nothing and nothing would abort; the point is that the
// sections are still stepped atomically, found through the tables, and that
// the tool says rseq is not registered.
func TestProxyQEMU(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "qemu-x86_64")
	for _, f := range flavours {
		if f.prog == "dlopen_main" || f.prog == "no_tables" {
			// no_tables has no table: its sections are found when the
			// kernel-registered rseq_cs is stored, which qemu never has.
			continue
		}
		t.Run(f.prog, func(t *testing.T) {
			p := viaQEMU(t, fixture(f.prog), "1", "50", "--allow-unregistered")
			out := stepiThrough(t, p, f.prog, f.fn)
			if !regexp.MustCompile(`no rseq area registered \(glibc did not register rseq .*qemu-user`).MatchString(out) {
				t.Errorf("monitor rseq status does not say rseq is unregistered:\n%s", tail(out))
			}
			exactSums(t, p.output())
		})
	}
}

// A client killed while the target behind the proxy runs a vCont;r range
// step: with --keep the proxy removes its breakpoints from the upstream
// and detaches, and the program runs its loop to the end instead of dying
// of a stray int3.
func TestProxyClientKilledMidRangeStep(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	line := markerLine(t, "loop_next.c", "LOOP-LINE")
	gs := startGDBServer(t, fixture("loop_next"), "3000000000") // a few seconds natively
	p := proxied{proxy: startProxy(t, gs, "--keep", "-v"), upstream: gs}
	script := filepath.Join(t.TempDir(), "cmds.gdb")
	os.WriteFile(script, []byte(fmt.Sprintf("set confirm off\ntarget remote :%d\nbreak loop_next.c:%d\ncontinue\nnext\n", p.port(), line)), 0o644)
	g := exec.Command("gdb", "-nx", "-batch", "-x", script, fixture("loop_next"))
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(p.proxy.stderr.String(), "packet=vCont;r"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			g.Process.Kill()
			t.Fatalf("gdb never range-stepped:\n%s", p.proxy.stderr.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	g.Process.Kill()
	g.Wait()
	p.proxy.wait(t, 2*time.Minute)
	if !strings.Contains(p.proxy.stderr.String(), "Detached from process") {
		t.Errorf("no detach:\n%s", tail(p.proxy.stderr.String()))
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.output(), "RESULT") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if r := result(t, p.output()); r["total"] != r["expected"] {
		t.Errorf("the program did not finish its loop: %v", r)
	}
}

// gdbserver attached to a running program (--attach), rseqdbg in front:
// stepi still runs the sections atomically, and on detach the program
// goes on to exact sums.
func TestProxyAttach(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	prog := &stub{}
	prog.start(t, fixture("full_tables"), "1", "1000000000") // seconds natively
	gs := &stub{}
	gs.start(t, "gdbserver", "--once", "--attach", ":0", strconv.Itoa(prog.cmd.Process.Pid))
	gs.waitPort(t)
	p := proxied{proxy: startProxy(t, gs), upstream: gs}
	out := gdb(t, p.port(), fixture("full_tables"), false, []string{
		"break inc_full", "continue", "delete",
		fmt.Sprintf(`printf "FUNC %%lx\n", (long)&inc_full`),
		"set $i = 0", "while $i < 100", "  stepi", `  printf "PC %lx\n", $pc`, "  set $i = $i + 1", "end",
		"monitor rseq stats", "detach",
	}, 2*time.Minute)
	p.wait(t)
	if st := stats(t, out); st["commits"] < 1 || st["steps inside a section"] != 0 {
		t.Errorf("stepi x100 after attaching: %v", st)
	}
	if _, inside := commitHits(t, "full_tables", "inc_full", out); inside != 0 {
		t.Errorf("gdb stopped %d times inside a section", inside)
	}
	if !strings.Contains(p.proxy.stderr.String(), "Detached from process") {
		t.Errorf("the proxy did not detach:\n%s", tail(p.proxy.stderr.String()))
	}
	prog.wait(t, 2*time.Minute)
	exactSums(t, prog.stdout.String())
}

// viaLLDBServer runs the program under lldb-server's gdbserver mode with
// rseqdbg in front. lldb-server forwards the program's output to the
// client as console packets, so it shows in gdb's transcript.
func viaLLDBServer(t testing.TB, prog ...string) proxied {
	t.Helper()
	needTool(t, "lldb-server")
	l := &stub{port: freePort(t)}
	l.start(t, "lldb-server", append([]string{"gdbserver", fmt.Sprintf("127.0.0.1:%d", l.port), "--"}, prog...)...)
	l.waitListening(t)
	return proxied{proxy: startProxy(t, l), upstream: l}
}

// lldb-server as the upstream: it describes no fs_base and its registers
// its own way (lldb names, g packet by offsets, full ymm registers),
// refuses a memory read that runs into an unmapped page, and lists
// libraries without namespaces. Every flavour is stepped atomically, the
// rseq area found through glibc's thread list.
func TestProxyLLDBServer(t *testing.T) {
	needTool(t, "gdb")
	for _, f := range flavours {
		if f.prog == "dlopen_main" {
			continue // its sections are in the library: stepiThrough reads the executable's symbols
		}
		t.Run(f.prog, func(t *testing.T) {
			p := viaLLDBServer(t, fixture(f.prog), "2", "50")
			out := stepiThrough(t, p, f.prog, f.fn, "info registers fs_base", "info registers eflags")
			if !regexp.MustCompile(`fs_base\s+<unavailable>`).MatchString(out) {
				t.Errorf("fs_base, which lldb-server does not describe, is not reported unavailable:\n%s", tail(out))
			}
			// lldb-server calls it rflags; IF is always set in user mode.
			if !regexp.MustCompile(`eflags\s+0x[0-9a-f]+\s+\[[^\]]*\bIF\b`).MatchString(out) {
				t.Errorf("eflags through lldb-server:\n%s", tail(out))
			}
			// gdb shows the arguments from the registers at the breakpoint:
			// lldb-server's g packet follows its offsets, not its numbers.
			if !regexp.MustCompile(`ctr=(ctr@entry=)?0x[0-9a-f]+ <fixture_counters>`).MatchString(out) {
				t.Errorf("wrong registers at the breakpoint:\n%s", head(out))
			}
			// The rseq area, found through glibc's thread list.
			if !regexp.MustCompile(`thread \d+: pc 0x[0-9a-f]+ [^\n]*rseq area 0x[0-9a-f]+ size \d+ signature 0x53053053`).MatchString(out) {
				t.Errorf("monitor rseq status shows no rseq area:\n%s", tail(out))
			}
			if strings.Contains(out, "while parsing target library list") {
				t.Errorf("gdb rejected the library list:\n%s", tail(out))
			}
			exactSums(t, out)
		})
	}
}

// --upstream-cmd: the upstream spoken to over a pipe (gdbserver -). The
// program's output reaches the proxy's stderr through gdbserver's.
func TestProxyUpstreamCmd(t *testing.T) {
	needTool(t, "gdb")
	needTool(t, "gdbserver")
	s := &stub{}
	s.start(t, binary, "--gdb-remote", ":0", "--once", "--upstream-cmd",
		fmt.Sprintf("exec gdbserver - %s 1 50", fixture("call_helper")))
	s.waitPort(t)
	out := gdb(t, s.port, fixture("call_helper"), false, stepiScript("inc_call", true), 2*time.Minute)
	s.wait(t, time.Minute)
	if commits, inside := commitHits(t, "call_helper", "inc_call", out); commits == 0 || inside != 0 {
		t.Errorf("gdb stopped %d times at a commit and %d times inside a section", commits, inside)
	}
	exactSums(t, s.stderr.String())
}

// Acceptance 4: the upstream dies while a range step runs: gdb gets an
// error stop with the reason on its console; the proxy does not panic and
// ends when gdb leaves.
func TestProxyUpstreamDiesMidStep(t *testing.T) {
	needTool(t, "gdb")
	for _, how := range []string{"tcp", "pipe"} {
		t.Run(how, func(t *testing.T) {
			line := markerLine(t, "loop_next.c", "LOOP-LINE")
			const n = "3000000000" // seconds of native looping
			var proxy, upstream *stub
			if how == "tcp" {
				p := viaGDBServer(t, fixture("loop_next"), n)
				proxy, upstream = p.proxy, p.upstream
			} else {
				proxy = &stub{}
				proxy.start(t, binary, "--gdb-remote", ":0", "--once", "-v", "--upstream-cmd",
					fmt.Sprintf("exec gdbserver - %s %s", fixture("loop_next"), n))
				proxy.waitPort(t)
			}
			g := &stub{}
			script := filepath.Join(t.TempDir(), "cmds.gdb")
			os.WriteFile(script, []byte(fmt.Sprintf("set confirm off\ntarget remote :%d\nbreak loop_next.c:%d\ncontinue\n"+
				"echo NEXT\\n\nnext\necho AFTER\\n\ninfo registers rip\n", proxy.port, line)), 0o644)
			g.start(t, "gdb", "-nx", "-batch", "-x", script, fixture("loop_next"))
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(g.stdout.String(), "NEXT") {
				if time.Now().After(deadline) {
					t.Fatalf("gdb never got to next:\n%s%s", g.stdout.String(), g.stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The range step runs natively for seconds; kill the stub in it.
			time.Sleep(500 * time.Millisecond)
			if upstream != nil {
				syscall.Kill(-upstream.cmd.Process.Pid, syscall.SIGKILL)
			} else {
				killChildren(t, proxy.cmd.Process.Pid)
			}
			g.wait(t, time.Minute)
			proxy.wait(t, time.Minute)
			out := g.stdout.String() + g.stderr.String()
			if !strings.Contains(out, "rseqdbg: resuming failed") || !strings.Contains(out, "connection to the upstream stub lost") ||
				!strings.Contains(out, "Remote failure reply") {
				t.Errorf("gdb did not get an error stop:\n%s", out)
			}
			if strings.Contains(proxy.stderr.String(), "panic") {
				t.Errorf("the proxy panicked:\n%s", proxy.stderr.String())
			}
		})
	}
}

// killChildren kills the processes whose parent is pid (the stub an
// --upstream-cmd proxy started).
func killChildren(t *testing.T, pid int) {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	killed := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(strings.Fields(s)[0])
			syscall.Kill(c, syscall.SIGKILL)
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no child of %d to kill", pid)
	}
}

// TestProxyUnwind: in front of gdbserver, gdb gets the synthesized CFI in
// the upstream's library list and shows the true chain from an abort stub.
func TestProxyUnwind(t *testing.T) {
	needTool(t, "gdb")
	c := unwindCases[0]
	for name, via := range map[string]func(testing.TB, ...string) proxied{
		"gdbserver": viaGDBServer, "lldb-server": viaLLDBServer,
	} {
		t.Run(name, func(t *testing.T) {
			p := via(t, fixture("unwind_chain"), c.mode)
			out, err := gdbRun(t, p.port(), fixture("unwind_chain"), false, []string{
				"break " + abortLocIn(t, "unwind_chain", c.stub), "continue", "delete",
				"echo @@bt\\n", "bt", "echo @@end\\n", "kill",
			}, 2*time.Minute)
			if err != nil {
				t.Fatalf("gdb: %v\n%s", err, out)
			}
			p.wait(t)
			// gdbserver leaves the program's output on its own stdout;
			// lldb-server sends it through the proxy, which copies it to
			// its stderr.
			truth := parseChain(t, p.output()+p.proxy.stderr.String())
			frames := gdbFrames(sectionOf(t, out, "bt"))
			if !truth.holds(frames, c.chainAt) || len(frames) == 0 || frames[0].fn != c.frame0 {
				t.Errorf("not the true chain from %s (mid %#x, top %#x, main %#x):\n%s", c.frame0, truth.mid, truth.top, truth.main, out)
			}
		})
	}
}
