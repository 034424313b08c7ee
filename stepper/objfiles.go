package stepper

// This file opens the object files of the process: through the target when
// it reads files where the process runs (a remote stub), else locally.

import (
	"debug/elf"
	"fmt"

	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/regions"
)

// openELF opens an object file of the process: through the target when it
// reads files where the process runs (a remote stub), else the local path.
func (e *Engine) openELF(path string) (*elf.File, func(), error) {
	fr := e.files
	if fr == nil {
		f, err := elf.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	file, err := fr.OpenFile(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := elf.NewFile(file)
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, func() { file.Close() }, nil
}

// loadObject reads the regions an object file publishes.
func (e *Engine) loadObject(path string, bias uint64) (*regions.Object, error) {
	fr := e.files
	if fr == nil {
		return regions.LoadFile(path, bias)
	}
	file, err := fr.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading regions of %s: %w", path, err)
	}
	defer file.Close()
	return regions.LoadELF(file, path, bias)
}

// findRDebug locates r_debug through the executable's DT_DEBUG.
func (e *Engine) findRDebug(exe string, bias uint64) (uint64, error) {
	f, done, err := e.openELF(exe)
	if err != nil {
		return 0, fmt.Errorf("finding r_debug: %w", err)
	}
	defer done()
	return linkmap.FindRDebugELF(e.read, f, exe, bias)
}

// dynamicLinkerBreakpoint is where the dynamic linker reports changes.
func (e *Engine) dynamicLinkerBreakpoint(interp string, base uint64) (uint64, error) {
	f, done, err := e.openELF(interp)
	if err != nil {
		return 0, fmt.Errorf("reading the dynamic linker %s: %w", interp, err)
	}
	defer done()
	return linkmap.DynamicLinkerBreakpointELF(f, interp, base)
}
