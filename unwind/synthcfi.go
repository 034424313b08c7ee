package unwind

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

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
)

// SynthCFI hands gdb the CFI rseqdbg synthesizes for code that has none
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
type SynthCFI struct {
	uw     *Unwinder
	loaded map[string]uint64
	vdso   bool
	dir    string
	path   string
	key    string
	gen    int
	funcs  []SynthFunc
	data   []byte
	err    error
}

// vdsoImageSize bounds the vDSO image read for its CFI and symbols.
const vdsoImageSize = 8192

// NewSynthCFI returns an empty object; Refresh builds it.
func NewSynthCFI() *SynthCFI {
	return &SynthCFI{uw: New(), loaded: map[string]uint64{}}
}

// CFIObjects is what the object describes: the objects loaded in the
// process, its auxiliary vector (for the vDSO) and its regions
// (stepper.Engine provides them).
type CFIObjects interface {
	Objects() []*regions.Object
	Auxv() map[uint64]uint64
	Index() *regions.Index
}

// sync loads the CFI and symbols of the objects the engine knows and
// forgets those it dropped. The vDSO is read from auxv whatever the
// engine does with it (`monitor rseq vdso off` drops its regions, not its
// frames).
func (c *SynthCFI) sync(eng CFIObjects, t target.Target) {
	seen := map[string]bool{"[vdso]": true}
	for _, o := range eng.Objects() {
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
		if base := eng.Auxv()[auxv.AtSysinfoEhdr]; base != 0 {
			img := make([]byte, vdsoImageSize)
			if n, _ := t.ReadMemory(base, img); n > 0 {
				c.loaded["[vdso]"] = base
				if err := c.uw.AddImage("[vdso]", img[:n], base); err != nil {
					slog.Debug("synthesized CFI", "object", "[vdso]", "err", err)
				}
			}
		}
	}
}

// Refresh rebuilds the object when the objects or regions changed.
func (c *SynthCFI) Refresh(eng CFIObjects, t target.Target) {
	c.sync(eng, t)
	ents := Entries(eng.Index())
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
	funcs := c.uw.Describe(ents, t.ReadMemory)
	data, err := DebugObject(funcs)
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
	path := filepath.Join(c.dir, fmt.Sprintf("synthesized-cfi-%d-%d.debug", t.Pid(), c.gen))
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

// Close removes the object's files.
func (c *SynthCFI) Close() {
	if c == nil || c.dir == "" {
		return
	}
	os.RemoveAll(c.dir)
	c.dir, c.path = "", ""
}

// Name names the code at lookup: a described range first (stubs have no
// symbol of their own), then the objects' symbols.
func (c *SynthCFI) Name(lookup, pc uint64) string {
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

// Path is the object's file, "" when there is nothing to describe.
func (c *SynthCFI) Path() string { return c.path }

// Funcs are the code ranges the object describes.
func (c *SynthCFI) Funcs() []SynthFunc { return c.funcs }

// Err is why the last Refresh could not build or write the object.
func (c *SynthCFI) Err() error { return c.err }

// Unwinder is the unwinder holding the objects' CFI and the synthesized.
func (c *SynthCFI) Unwinder() *Unwinder { return c.uw }
