package gdbproto

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/unwind"
)

// synthCFI hands gdb the CFI rseqdbg synthesizes for code that has none
// (abort handlers in __rseq_failure, jump stubs, vDSO functions without
// CFI), so that its own backtraces, finish, up and down work from there.
//
// The object is a file in a private temporary directory, listed as one
// more library in the qXfer:libraries-svr4 reply, rather than a name only
// vFile knows. gdb's default sysroot ("target:") reads it through vFile
// like any library; a user who set a local sysroot (set sysroot /, common
// to avoid slow vFile transfers) still finds it at the same path, since
// the server runs on the target's machine; and `monitor rseq cfi` can give
// a path that `add-symbol-file` opens as it is. The price is a file to
// remove, which the server does when it lets the process go.
//
// Every address in the object is a run-time address and it is listed with
// l_addr 0: gdb relocates a library by l_addr (and, only when the file has
// a .dynamic section, by the difference of l_ld to it; the object has
// none), so nothing moves.
//
// The file name carries a generation number: gdb tells libraries apart by
// name, so an object rebuilt after a dlopen must have a new one for gdb to
// drop the old and read the new.
type synthCFI struct {
	uw     *unwind.Unwinder
	loaded map[string]uint64
	vdso   bool
	dir    string
	path   string
	key    string
	gen    int
	funcs  []unwind.SynthFunc
	data   []byte
	err    error
}

// vdsoImageSize bounds the vDSO image read for its CFI and symbols.
const vdsoImageSize = 8192

func (pr *process) cfi() *synthCFI {
	if pr.synth == nil {
		pr.synth = &synthCFI{uw: unwind.New(), loaded: map[string]uint64{}}
	}
	return pr.synth
}

// sync loads the CFI and symbols of the objects the engine knows and
// forgets those it dropped. The vDSO is read from auxv whatever the
// engine does with it (`monitor rseq vdso off` drops its regions, not its
// frames).
func (c *synthCFI) sync(pr *process) {
	seen := map[string]bool{"[vdso]": true}
	for _, o := range pr.eng.Objects() {
		if o.Path == "[vdso]" {
			continue
		}
		seen[o.Path] = true
		if bias, ok := c.loaded[o.Path]; ok && bias == o.Bias {
			continue
		}
		c.loaded[o.Path] = o.Bias
		if err := c.uw.AddObject(o.Path, o.Bias); err != nil {
			slog.Debug("synthesized CFI", "object", o.Path, "err", err)
		}
	}
	for path := range c.loaded {
		if !seen[path] {
			delete(c.loaded, path)
			c.uw.RemoveObject(path)
		}
	}
	if !c.vdso {
		c.vdso = true
		if base := pr.eng.Auxv()[regions.AtSysinfoEhdr]; base != 0 {
			img := make([]byte, vdsoImageSize)
			if n, _ := pr.p.ReadMemory(base, img); n > 0 {
				c.loaded["[vdso]"] = base
				if err := c.uw.AddImage("[vdso]", img[:n], base); err != nil {
					slog.Debug("synthesized CFI", "object", "[vdso]", "err", err)
				}
			}
		}
	}
}

// refresh rebuilds the object when the objects or regions changed.
func (c *synthCFI) refresh(pr *process) {
	c.sync(pr)
	ents := unwind.Entries(pr.eng.Index())
	var key strings.Builder
	for p, b := range c.loaded {
		fmt.Fprintf(&key, "%s@%x;", p, b)
	}
	for _, e := range ents {
		fmt.Fprintf(&key, "%s=%x;", e.Name, e.PC)
	}
	// Map order varies: compare as a set of lines.
	k := sortedKey(key.String())
	if k == c.key && c.err == nil {
		return
	}
	c.key = k
	funcs := c.uw.Describe(ents, pr.p.ReadMemory)
	data, err := unwind.DebugObject(funcs)
	if err != nil {
		c.err = err
		return
	}
	// A new object only when its contents change: a library loaded without
	// stubs must not make gdb drop and reread the object.
	if c.path != "" && bytes.Equal(data, c.data) {
		return
	}
	c.funcs, c.data, c.err = funcs, data, nil
	old := c.path
	c.path = ""
	defer func() {
		if old != "" && old != c.path {
			os.Remove(old)
		}
	}()
	if len(funcs) == 0 {
		return
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", cfiDirPrefix+strconv.Itoa(os.Getpid())+"-"); err != nil {
			c.err = fmt.Errorf("directory for the synthesized CFI: %w", err)
			return
		}
	}
	c.gen++
	path := filepath.Join(c.dir, fmt.Sprintf("synthesized-cfi-%d-%d.debug", pr.p.Pid(), c.gen))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		c.err = fmt.Errorf("writing the synthesized CFI: %w", err)
		return
	}
	c.path = path
}

func sortedKey(s string) string {
	parts := strings.Split(s, ";")
	sort.Strings(parts)
	return strings.Join(parts, ";")
}

// cfiDirPrefix names the folders of synthesized CFI; the pid of the
// rseqdbg that made one follows, so that a later rseqdbg can tell a folder
// whose maker was killed before it could remove it.
const cfiDirPrefix = "rseqdbg-cfi-"

// cfiDirs lists the folders of synthesized CFI in the temporary directory
// with the pid of their maker.
func cfiDirs() map[string]int {
	dirs := map[string]int{}
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), cfiDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), cfiDirPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue // not ours, or made before the pid was in the name
		}
		dirs[m] = pid
	}
	return dirs
}

// RemoveStaleCFIDirs removes the folders of synthesized CFI left by
// rseqdbg processes that are gone (killed with SIGKILL, which no cleanup
// survives), among those this user owns.
func RemoveStaleCFIDirs() {
	for dir, pid := range cfiDirs() {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		// EPERM means alive under another user: only ESRCH is gone.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			slog.Warn("removing a stale folder of synthesized CFI", "dir", dir, "err", err)
		} else {
			slog.Debug("removed a stale folder of synthesized CFI", "dir", dir, "pid", pid)
		}
	}
}

// RemoveOwnCFIDirs removes this process's folders of synthesized CFI from
// any thread, for an exit that cannot wait for the tracer thread.
func RemoveOwnCFIDirs() {
	for dir, pid := range cfiDirs() {
		if pid == os.Getpid() {
			os.RemoveAll(dir)
		}
	}
}

// close removes the object's files.
func (c *synthCFI) close() {
	if c == nil || c.dir == "" {
		return
	}
	os.RemoveAll(c.dir)
	c.dir, c.path = "", ""
}

// libraryEntry is the object's line in the library list, "" when there is
// nothing to describe.
func (s *session) synthLibraryEntry(pr *process) string {
	c := pr.cfi()
	c.refresh(pr)
	if c.err != nil {
		slog.Warn("synthesized CFI", "err", c.err)
	}
	if c.path == "" {
		return ""
	}
	// lm names no link_map: gdb only reads one for TLS, which the object
	// has none of.
	return fmt.Sprintf("  <library name=\"%s\" lm=\"0x0\" l_addr=\"0x0\" l_ld=\"0x0\" lmid=\"0x0\"/>\n", xmlEscape(c.path))
}

// monitorCFI says where the object is and what it describes.
func (s *session) monitorCFI() string {
	pr := s.live()
	if pr == nil {
		return "no process\n"
	}
	c := pr.cfi()
	c.refresh(pr)
	var b strings.Builder
	if c.err != nil {
		fmt.Fprintf(&b, "error: %v\n", c.err)
	}
	if c.path == "" {
		b.WriteString("no code without CFI to describe\n")
		return b.String()
	}
	fmt.Fprintf(&b, "synthesized CFI for %d code ranges without CFI: %s\n", len(c.funcs), c.path)
	for _, f := range c.funcs {
		fmt.Fprintf(&b, "  %-32s [%#x, %#x) %d rows\n", f.Name, f.Lo, f.Hi, len(f.Rows))
	}
	b.WriteString("gdb loads it as a shared library by itself; by hand: add-symbol-file " + c.path + "\n")
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
	c.refresh(pr)
	frames, err := c.uw.Frames(regs, pr.p.ReadMemory, 64)
	if err != nil {
		return fmt.Sprintf("unwinding thread %d: %v\n", tid, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "thread %d:\n", tid)
	for i, f := range frames {
		fmt.Fprintf(&b, "#%-2d %#016x in %s", i, f.PC, c.name(f.LookupPC(), f.PC))
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

// name names the code at lookup: a described range first (stubs have no
// symbol of their own), then the objects' symbols.
func (c *synthCFI) name(lookup, pc uint64) string {
	for _, f := range c.funcs {
		if lookup >= f.Lo && lookup < f.Hi {
			return fmt.Sprintf("%s+%d", f.Name, pc-f.Lo)
		}
	}
	if n, off, ok := c.uw.FuncName(lookup); ok {
		return fmt.Sprintf("%s+%d", n, off+(pc-lookup))
	}
	return "??"
}
