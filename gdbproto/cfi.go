package gdbproto

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/rseqdbg/rseqdbg/unwind"
)

// cfi is the process's synthesized-CFI object (package unwind builds it),
// made on first use.
func (pr *process) cfi() *unwind.SynthCFI {
	if pr.synth == nil {
		pr.synth = unwind.NewSynthCFI()
	}
	return pr.synth
}

// libraryEntry is the object's line in the library list, "" when there is
// nothing to describe.
func (s *session) synthLibraryEntry(pr *process) string {
	c := pr.cfi()
	c.Refresh(pr.eng, pr.p)
	if c.Err() != nil {
		slog.Warn("synthesized CFI", "err", c.Err())
	}
	if c.Path() == "" {
		return ""
	}
	// lm names no link_map: gdb only reads one for TLS, which the object
	// has none of.
	return fmt.Sprintf("  <library name=\"%s\" lm=\"0x0\" l_addr=\"0x0\" l_ld=\"0x0\" lmid=\"0x0\"/>\n", xmlEscape(c.Path()))
}

// monitorCFI says where the object is and what it describes.
func (s *session) monitorCFI() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	c := pr.cfi()
	c.Refresh(pr.eng, pr.p)
	var b strings.Builder
	if c.Err() != nil {
		fmt.Fprintf(&b, "error: %v\n", c.Err())
	}
	if c.Path() == "" {
		b.WriteString("no code without CFI to describe\n")
		return b.String()
	}
	fmt.Fprintf(&b, "synthesized CFI for %d code ranges without CFI: %s\n", len(c.Funcs()), c.Path())
	for _, f := range c.Funcs() {
		fmt.Fprintf(&b, "  %-32s [%#x, %#x) %d rows\n", f.Name, f.Lo, f.Hi, len(f.Rows))
	}
	b.WriteString("gdb loads it as a shared library by itself; by hand: add-symbol-file " + c.Path() + "\n")
	return b.String()
}

// monitorBT prints the unwinder's backtrace of the current thread.
func (s *session) monitorBT() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	tid := s.current()
	regs, err := pr.p.Regs(tid)
	if err != nil {
		return fmt.Sprintf("thread %d: %v\n", tid, err)
	}
	c := pr.cfi()
	c.Refresh(pr.eng, pr.p)
	frames, err := c.Unwinder().Frames(regs, pr.p.ReadMemory, 64)
	if err != nil {
		return fmt.Sprintf("unwinding thread %d: %v\n", tid, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "thread %d:\n", tid)
	for i, f := range frames {
		fmt.Fprintf(&b, "#%-2d %#016x in %s", i, f.PC, c.Name(f.LookupPC(), f.PC))
		if f.Synthesized {
			b.WriteString(" [synthesized CFI]")
		}
		if f.Signal {
			b.WriteString(" <signal handler called>")
		}
		b.WriteString("\n")
	}
	return b.String()
}
