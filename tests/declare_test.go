package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rseqdbg/rseqdbg/symbols"
)

// The seqlock fixture's reader (seq_read_begin..seq_read_end) retries
// whenever its forked writer wrote during the read; stepped one
// instruction at a time it always has, so stepi never gets through it.
// Declared a region, it is run whole by the step that enters it.

// seqReader is the reader's range as offsets into seq_read.
func seqReader(t *testing.T) (begin, end uint64) {
	t.Helper()
	prog := fixture("seqlock")
	fn, err1 := symbols.Value(prog, "seq_read")
	b, err2 := symbols.Value(prog, "seq_read_begin")
	e, err3 := symbols.Value(prog, "seq_read_end")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("seqlock symbols: %v %v %v", err1, err2, err3)
	}
	return b - fn, e - fn
}

var seqOffsetRE = regexp.MustCompile(`seq_read\+(\d+)`)

// seqOffset is the offset into seq_read of a stop's function+offset, -1
// outside seq_read.
func seqOffset(fn string) uint64 {
	m := seqOffsetRE.FindStringSubmatch(fn)
	if m == nil {
		return ^uint64(0)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func TestHeadlessDeclaredRegion(t *testing.T) {
	begin, end := seqReader(t)
	// Undeclared: 300 instruction steps later the thread is still in the
	// reader's retry loop.
	s := run(t, []string{"break seq_read", "continue", "delete", "stepi 300"}, []string{"--continue"}, fixture("seqlock"), "20")
	stops := s.of("stop")
	if off := seqOffset(stops[len(stops)-1].str("function")); off < begin || off >= end {
		t.Fatalf("undeclared: stepi 300 left the reader (seq_read+%d, reader [+%d, +%d)); the fixture proves nothing", off, begin, end)
	}
	s.exactSeqlock(t)

	// Declared on the command line, and with the declare command: the
	// step that enters the reader runs it whole.
	for _, how := range [][2][]string{
		{{"--declare", "seq_read_begin:seq_read_end:seqlock", "--continue"}, nil},
		{{"--continue"}, {"declare seq_read_begin seq_read_end seqlock"}},
	} {
		cmds := append(how[1], "break seq_read", "continue", "delete", "stepi 5")
		s := run(t, cmds, how[0], fixture("seqlock"), "20")
		stops := s.of("stop")
		if off := seqOffset(stops[len(stops)-1].str("function")); off < end {
			t.Errorf("declared (%v %v): 5 stepi ended at seq_read+%d, inside the reader [+%d, +%d)", how[0], how[1], off, begin, end)
		}
		crossed := false
		for _, r := range s.of("region") {
			crossed = crossed || r.str("kind") == "declared" && r.str("name") == "seqlock"
		}
		if !crossed {
			t.Errorf("declared: no crossing of the region reported: %v", s.of("region"))
		}
		s.exactSeqlock(t)
	}

	// undeclare restores the single steps.
	s = run(t, []string{"declare seq_read_begin seq_read_end seqlock", "undeclare seqlock", "break seq_read", "continue", "delete", "stepi 300"},
		[]string{"--continue"}, fixture("seqlock"), "20")
	stops = s.of("stop")
	if off := seqOffset(stops[len(stops)-1].str("function")); off < begin || off >= end {
		t.Errorf("undeclared again: stepi 300 ended at seq_read+%d", off)
	}
}

// exactSeqlock: the fixture read no torn pair and exited 0.
func (s *session) exactSeqlock(t *testing.T) {
	t.Helper()
	r := s.result(t)
	if r["torn"] != 0 || r["reads"] != 20 || s.code != 0 {
		t.Fatalf("seqlock ended %v, code %d", r, s.code)
	}
}

// The same through gdb: monitor rseq declare, and --declare.
func TestGDBDeclaredRegion(t *testing.T) {
	needTool(t, "gdb")
	inReader := "p $pc >= (char*)seq_read_begin && $pc < (char*)seq_read_end"
	for _, c := range []struct {
		name     string
		flags    []string
		cmds     []string
		inside   bool
		stepping string
	}{
		{"undeclared", nil, nil, true, "stepi 300"},
		{"monitor", nil, []string{"monitor rseq declare seq_read_begin seq_read_end seqlock"}, false, "stepi 5"},
		{"flag", []string{"--declare", "seq_read_begin:seq_read_end"}, nil, false, "stepi 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startRseqdbg(t, append([]string{"--once"}, c.flags...), fixture("seqlock"), "20")
			cmds := append(c.cmds, "break seq_read", "continue", "delete", c.stepping, "echo INREADER\\n", inReader, "continue")
			out := gdb(t, srv.port, fixture("seqlock"), false, cmds, time.Minute)
			srv.wait(t, 30*time.Second)
			want := fmt.Sprintf("INREADER\n$1 = %d", map[bool]int{false: 0, true: 1}[c.inside])
			if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(out) {
				t.Fatalf("after %s, want %q:\n%s", c.stepping, want, tail(out))
			}
			if r := result(t, srv.stdout.String()); r["torn"] != 0 || r["reads"] != 20 {
				t.Fatalf("seqlock ended %v", r)
			}
		})
	}
}
