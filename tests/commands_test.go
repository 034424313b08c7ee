package tests

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The gdb-like command set scripts rely on, against a real fixture.
func TestHeadlessCommands(t *testing.T) {
	entry := markerLine(t, "full_tables.c", "FUNC-ENTRY")
	s := run(t, []string{
		"break inc_full if $rdi != 0", "continue", "info threads", "thread 1", "thread 2",
		"info registers rip", "print $fs_base", "x/4gx $rsp", "x/3i $pc", "bt", "info breakpoints", "delete",
		"finish", "step", "kill", "info threads",
	}, nil, fixture("full_tables"), "1", "100")
	stops := s.of("stop")
	if len(stops) < 2 || stops[1].str("reason") != "breakpoint" || stops[1].num("line") < entry {
		t.Fatalf("conditional breakpoint not hit in inc_full: %v", stops)
	}
	if th := s.of("threads"); len(th) == 0 || len(th[0]["threads"].([]any)) != 2 {
		t.Errorf("info threads: %v", th)
	}
	if r := s.of("registers"); len(r) != 1 || r[0]["registers"].(map[string]any)["rip"] != stops[1].str("pc") {
		t.Errorf("info registers rip: %v, stop pc %s", r, stops[1].str("pc"))
	}
	if v := s.of("value"); len(v) == 0 || v[0].str("value") == "" || v[0].str("value") == "0" {
		t.Errorf("print $fs_base: %v", v)
	} else if _, err := strconv.ParseUint(v[0].str("value"), 0, 64); err != nil {
		t.Errorf("print $fs_base: %v: %v", v, err)
	}
	if m := s.of("memory"); len(m) != 1 || len(m[0]["values"].([]any)) != 4 {
		t.Errorf("x/4gx: %v", m)
	}
	if d := s.of("disassembly"); len(d) != 1 || len(d[0]["instructions"].([]any)) != 3 {
		t.Errorf("x/3i: %v", d)
	}
	bt := s.of("backtrace")
	if len(bt) != 1 {
		t.Fatalf("no backtrace")
	}
	var names []string
	for _, f := range bt[0]["frames"].([]any) {
		names = append(names, event(f.(map[string]any)).str("function"))
	}
	if len(names) < 3 || !strings.HasPrefix(names[0], "inc_full") || names[1] != "worker" || names[2] != "fixture_thread_start" {
		t.Errorf("backtrace %v, want inc_full, worker, fixture_thread_start", names)
	}
	// finish back into worker, then a source step there.
	fin := stops[len(stops)-2]
	if !strings.HasPrefix(fin.str("function"), "worker") || fin.str("reason") != "step" {
		t.Errorf("finish did not return to worker: %v", fin)
	}
	if last := stops[len(stops)-1]; last.num("line") == 0 {
		t.Errorf("step stopped without a line: %v", last)
	}
	if bps := s.of("breakpoints"); len(bps) != 1 || len(bps[0]["breakpoints"].([]any)) != 1 {
		t.Errorf("info breakpoints: %v", bps)
	}
	if len(s.of("killed")) != 1 {
		t.Errorf("kill not reported")
	}
	if s.code != 0 {
		t.Errorf("exit code %d", s.code)
	}
}

// Attaching to a running fixture, stepping through a section, detaching:
// the program goes on and finishes with exact sums.
func TestHeadlessAttach(t *testing.T) {
	prog := exec.Command(fixture("full_tables"), "2", "300000000")
	var out strings.Builder
	prog.Stdout = &out
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	defer prog.Process.Kill()
	time.Sleep(100 * time.Millisecond) // well before it finishes (about 2 s)
	cmd := exec.Command(binary, "run", "--json", "-ex", "break inc_full", "-ex", "continue", "-ex", "delete", "-ex", "stepi 100",
		"--attach", strconv.Itoa(prog.Process.Pid))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !strings.Contains(string(b), `"outcome":"commit"`) {
		t.Errorf("no commit while attached:\n%s", b)
	}
	if err := prog.Wait(); err != nil {
		t.Fatalf("program after detach: %v, output %s", err, out.String())
	}
	if !strings.Contains(out.String(), "RESULT") {
		t.Fatalf("no result: %s", out.String())
	}
	var total, expected int
	fmt.Sscanf(out.String()[strings.Index(out.String(), "RESULT"):], "RESULT total=%d expected=%d", &total, &expected)
	if total != expected {
		t.Errorf("sums after detach: %d != %d", total, expected)
	}
}

// print and display evaluate C over the program's DWARF variables and
// registers, as DAP's evaluate does; display prints again at every stop
// until undisplay.
func TestHeadlessPrintDisplay(t *testing.T) {
	before := markerLine(t, "full_tables.c", "BEFORE-RSEQ-LINE")
	s := run(t, []string{
		fmt.Sprintf("break full_tables.c:%d if i == 2", before), "continue",
		"print i", "print t->commits + 1", "print i * 3 == 6", "print $rip", "print nosuchvar",
		"display i", "display t->iterations", "next", "undisplay 1", "next",
	}, nil, fixture("full_tables"), "1", "50")
	stops := s.of("stop")
	if len(stops) != 4 {
		t.Fatalf("stops %v, want entry, breakpoint and two steps", stops)
	}
	values := map[string]string{}
	for _, v := range s.of("value") {
		values[v.str("name")] = v.str("value")
	}
	for expr, want := range map[string]string{"i": "2", "t->commits + 1": "3", "i * 3 == 6": "1"} {
		if values[expr] != want {
			t.Errorf("print %s = %q, want %q", expr, values[expr], want)
		}
	}
	if rip, err := strconv.ParseUint(values["$rip"], 0, 64); err != nil || fmt.Sprintf("%#x", rip) != stops[1].str("pc") {
		t.Errorf("print $rip = %q, stop at %s", values["$rip"], stops[1].str("pc"))
	}
	failed := false
	for _, e := range s.of("error") {
		failed = failed || strings.Contains(e.str("message"), `no symbol "nosuchvar"`)
	}
	if !failed {
		t.Errorf("print nosuchvar did not fail: %v", s.of("error"))
	}
	// display: both at once, both at the first next, only the second
	// after undisplay 1.
	var shown []string
	for _, e := range s.events {
		switch e.str("event") {
		case "display":
			shown = append(shown, fmt.Sprintf("%d:%s=%s", e.num("id"), e.str("name"), e.str("value")))
		case "stop":
			shown = append(shown, "stop")
		}
	}
	want := "stop stop 1:i=2 2:t->iterations=50 stop 1:i=2 2:t->iterations=50 stop 2:t->iterations=50"
	if got := strings.Join(shown, " "); got != want {
		t.Errorf("displays and stops:\n got %s\nwant %s", got, want)
	}
}

// -ex and -x run in the order given on the command line, as in gdb.
func TestHeadlessScriptOrder(t *testing.T) {
	file := t.TempDir() + "/cmds"
	if err := os.WriteFile(file, []byte("# a comment\necho from-file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := run(t, []string{"echo first"}, []string{"-x", file, "-ex", "echo last"}, fixture("full_tables"), "1", "10")
	var got []string
	for _, e := range s.of("echo") {
		got = append(got, e.str("text"))
	}
	if strings.Join(got, ",") != "first,from-file,last" {
		t.Errorf("echo order %v, want first, from-file, last", got)
	}
}

// until and advance run the current thread to a location; a breakpoint on
// the way stops them as it would a continue, a false condition does not.
func TestHeadlessAdvance(t *testing.T) {
	before := markerLine(t, "full_tables.c", "BEFORE-RSEQ-LINE")
	loc := fmt.Sprintf("full_tables.c:%d", before)
	s := run(t, []string{
		"advance " + loc, "print i",
		"break inc_full", "break full_tables.c:" + fmt.Sprint(lineOf(t, "full_tables.c", "t->commits += inc_full(")) + " if i == 1000",
		"advance " + loc, "print i", "delete 1", "until " + loc, "print i",
	}, nil, fixture("full_tables"), "1", "50", "--main") // the thread that advances runs worker
	stops := s.of("stop")
	if len(stops) != 4 {
		t.Fatalf("stops %v, want entry and three", stops)
	}
	var got []string
	for _, st := range stops[1:] {
		got = append(got, fmt.Sprintf("%s %s:%d", st.str("reason"), strings.SplitN(st.str("function"), "+", 2)[0], st.num("line")))
	}
	var values []string
	for _, v := range s.of("value") {
		values = append(values, v.str("value"))
	}
	want := []string{fmt.Sprintf("step worker:%d", before), fmt.Sprintf("breakpoint inc_full:%d", stops[2].num("line")), fmt.Sprintf("step worker:%d", before)}
	if strings.Join(got, ", ") != strings.Join(want, ", ") || stops[2].str("function") == "" || !strings.HasPrefix(stops[2].str("function"), "inc_full") {
		t.Errorf("stops %v, want %v", got, want)
	}
	if strings.Join(values, ",") != "0,2" {
		t.Errorf("i at the stops: %v, want 0 and 2 (inc_full has no i)", values)
	}
}
