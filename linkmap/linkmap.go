package linkmap

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/target"
)

// ExecBias is the executable's run-time minus link-time address: from
// AT_PHDR against PT_PHDR's link-time address, or AT_ENTRY against e_entry
// for executables without PT_PHDR (static ones).
func ExecBias(av map[uint64]uint64, f *elf.File) uint64 {
	if phdr, ok := av[auxv.AtPhdr]; ok && phdr != 0 {
		for _, p := range f.Progs {
			if p.Type == elf.PT_PHDR {
				return phdr - p.Vaddr
			}
		}
	}
	if e, ok := av[auxv.AtEntry]; ok && e != 0 {
		return e - f.Entry
	}
	return 0
}

// BaseBias is the bias of an object whose first byte is mapped at base
// (AT_BASE, AT_SYSINFO_EHDR, a load address): the loadable segment that
// holds file offset 0 fixes it. ok is false when no segment does.
func BaseBias(f *elf.File, base uint64) (bias uint64, ok bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			return base - p.Vaddr, true
		}
	}
	return 0, false
}

// DynamicLinkerBreakpoint returns the run-time address of _dl_debug_state,
// the function the dynamic linker calls after each change to its object
// list (gdb's approach). interpBase is AT_BASE. When the symbol is missing,
// the error says so and the caller should use r_debug.r_brk (ReadRDebug).
func DynamicLinkerBreakpoint(interpPath string, interpBase uint64) (uint64, error) {
	f, err := elf.Open(interpPath)
	if err != nil {
		return 0, fmt.Errorf("reading the dynamic linker %s: %w", interpPath, err)
	}
	defer f.Close()
	return DynamicLinkerBreakpointELF(f, interpPath, interpBase)
}

// DynamicLinkerBreakpointELF is DynamicLinkerBreakpoint for a dynamic linker
// already open (read through a remote stub, for instance).
func DynamicLinkerBreakpointELF(f *elf.File, interpPath string, interpBase uint64) (uint64, error) {
	// AT_BASE is where the first byte of the file is mapped.
	bias, found := BaseBias(f, interpBase)
	if !found {
		return 0, fmt.Errorf("reading the dynamic linker %s: no loadable segment maps the ELF header", interpPath)
	}
	for _, get := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
		syms, _ := get()
		for _, s := range syms {
			if s.Name == "_dl_debug_state" && s.Value != 0 && s.Section != elf.SHN_UNDEF {
				return s.Value + bias, nil
			}
		}
	}
	return 0, fmt.Errorf("no _dl_debug_state symbol in %s: use r_debug.r_brk", interpPath)
}

// ErrNoRDebug means the dynamic linker has not filled DT_DEBUG yet.
var ErrNoRDebug = errors.New("DT_DEBUG is 0: the dynamic linker has not run yet")

// FindRDebug returns the address of the dynamic linker's struct r_debug,
// read from DT_DEBUG in the executable's dynamic section at run time.
func FindRDebug(read target.MemReader, execPath string, execBias uint64) (uint64, error) {
	f, err := elf.Open(execPath)
	if err != nil {
		return 0, fmt.Errorf("finding r_debug: %w", err)
	}
	defer f.Close()
	return FindRDebugELF(read, f, execPath, execBias)
}

// FindRDebugELF is FindRDebug for an executable already open.
func FindRDebugELF(read target.MemReader, f *elf.File, execPath string, execBias uint64) (uint64, error) {
	var dyn *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC {
			dyn = p
			break
		}
	}
	if dyn == nil {
		return 0, fmt.Errorf("finding r_debug: %s has no dynamic section (static executable)", execPath)
	}
	// Bounded: a dynamic section has a few dozen entries.
	buf := make([]byte, min(dyn.Memsz, 64<<10)&^15)
	got := target.ReadUpTo(read, dyn.Vaddr+execBias, buf)
	if len(got) < 16 {
		return 0, fmt.Errorf("finding r_debug: reading the dynamic section of %s at %#x failed", execPath, dyn.Vaddr+execBias)
	}
	for i := 0; i+16 <= len(got); i += 16 {
		switch elf.DynTag(binary.LittleEndian.Uint64(got[i:])) {
		case elf.DT_NULL:
			return 0, fmt.Errorf("finding r_debug: %s has no DT_DEBUG entry", execPath)
		case elf.DT_DEBUG:
			v := binary.LittleEndian.Uint64(got[i+8:])
			if v == 0 {
				return 0, fmt.Errorf("finding r_debug in %s: %w", execPath, ErrNoRDebug)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("finding r_debug: %s has no DT_DEBUG entry", execPath)
}

// r_debug states.
const (
	RTConsistent = 0
	RTAdd        = 1
	RTDelete     = 2
)

// RDebug is glibc's struct r_debug (and r_debug_extended's r_next).
type RDebug struct {
	Version int32
	Map     uint64 // first struct link_map
	Brk     uint64 // address the dynamic linker calls after each change
	State   int32  // RT_CONSISTENT, RT_ADD, RT_DELETE
	LdBase  uint64
	Next    uint64 // next namespace's r_debug (Version >= 2), 0 if none
}

// ReadRDebug reads struct r_debug at addr.
func ReadRDebug(read target.MemReader, addr uint64) (RDebug, error) {
	var b [48]byte
	got := target.ReadUpTo(read, addr, b[:])
	if len(got) < 40 {
		return RDebug{}, fmt.Errorf("reading r_debug at %#x: only %d of 40 bytes readable", addr, len(got))
	}
	le := binary.LittleEndian
	rd := RDebug{
		Version: int32(le.Uint32(got[0:])),
		Map:     le.Uint64(got[8:]),
		Brk:     le.Uint64(got[16:]),
		State:   int32(le.Uint32(got[24:])),
		LdBase:  le.Uint64(got[32:]),
	}
	if rd.Version >= 2 && len(got) == 48 {
		rd.Next = le.Uint64(got[40:])
	}
	return rd, nil
}

// LoadedObject is one entry of the dynamic linker's object list.
type LoadedObject struct {
	Name    string // l_name; "" for the main program
	Bias    uint64 // l_addr
	Dynamic uint64 // l_ld
}

// maxLinkMap bounds the walk: more objects than this is a corrupt list.
const maxLinkMap = 4096

// LinkMap walks r_debug.r_map (struct link_map: l_addr, l_name, l_ld,
// l_next, l_prev) and the lists of further namespaces (r_next), bounded and
// cycle-safe.
func LinkMap(read target.MemReader, rdebug uint64) ([]LoadedObject, error) {
	var out []LoadedObject
	seen := map[uint64]bool{}
	seenNS := map[uint64]bool{}
	for ns := rdebug; ns != 0 && !seenNS[ns] && len(seenNS) < 64; {
		seenNS[ns] = true
		rd, err := ReadRDebug(read, ns)
		if err != nil {
			if ns == rdebug {
				return nil, err
			}
			return out, err
		}
		for lm := rd.Map; lm != 0; {
			if seen[lm] {
				break // a cycle: the list is being changed or corrupt
			}
			if len(seen) >= maxLinkMap {
				return out, fmt.Errorf("link map at %#x has more than %d entries", rd.Map, maxLinkMap)
			}
			seen[lm] = true
			var b [32]byte
			if got := target.ReadUpTo(read, lm, b[:]); len(got) < 32 {
				return out, fmt.Errorf("reading link_map entry at %#x: only %d of 32 bytes readable", lm, len(got))
			}
			le := binary.LittleEndian
			out = append(out, LoadedObject{
				Name:    ReadCString(read, le.Uint64(b[8:]), 4096),
				Bias:    le.Uint64(b[0:]),
				Dynamic: le.Uint64(b[16:]),
			})
			lm = le.Uint64(b[24:])
		}
		ns = rd.Next
	}
	return out, nil
}

// ReadCString reads a NUL-terminated string of at most max bytes from
// target memory ("" at address 0).
func ReadCString(read target.MemReader, addr uint64, max int) string {
	if addr == 0 {
		return ""
	}
	var out []byte
	buf := make([]byte, 256)
	for len(out) < max {
		got := target.ReadUpTo(read, addr+uint64(len(out)), buf)
		if len(got) == 0 {
			break
		}
		for i, c := range got {
			if c == 0 {
				return string(append(out, got[:i]...))
			}
		}
		out = append(out, got...)
	}
	if len(out) > max {
		out = out[:max]
	}
	return string(out)
}
