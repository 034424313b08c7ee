package regions

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// Auxiliary vector keys used here.
const (
	AtPhdr        = 3
	AtPhent       = 4
	AtPhnum       = 5
	AtBase        = 7
	AtEntry       = 9
	AtSysinfoEhdr = 33
)

// ParseAuxv decodes /proc/pid/auxv (pairs of 64-bit words).
func ParseAuxv(b []byte) map[uint64]uint64 {
	m := map[uint64]uint64{}
	for i := 0; i+16 <= len(b); i += 16 {
		k := binary.LittleEndian.Uint64(b[i:])
		if k == 0 {
			break
		}
		m[k] = binary.LittleEndian.Uint64(b[i+8:])
	}
	return m
}

// ExecBias is the executable's load address minus its link-time address,
// from AT_PHDR (or AT_ENTRY when there is no PT_PHDR).
func ExecBias(auxv map[uint64]uint64, f *elf.File) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_PHDR && auxv[AtPhdr] != 0 {
			return auxv[AtPhdr] - p.Vaddr
		}
	}
	if e := auxv[AtEntry]; e != 0 {
		return e - f.Entry
	}
	return 0
}

// DynamicLinkerBreakpoint returns the run-time address of the function the
// dynamic linker calls after every change to the object list
// (_dl_debug_state), as gdb uses it.
func DynamicLinkerBreakpoint(interpPath string, interpBase uint64) (uint64, error) {
	f, err := elf.Open(interpPath)
	if err != nil {
		return 0, fmt.Errorf("reading the dynamic linker %s: %w", interpPath, err)
	}
	defer f.Close()
	var first uint64 = ^uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < first {
			first = p.Vaddr
		}
	}
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if s.Name == "_dl_debug_state" && s.Value != 0 {
				return s.Value - first + interpBase, nil
			}
		}
	}
	return 0, fmt.Errorf("no _dl_debug_state in %s", interpPath)
}

// FindRDebug finds struct r_debug through DT_DEBUG of the executable's
// dynamic section, which the dynamic linker fills in when it starts.
func FindRDebug(read MemReader, execPath string, execBias uint64) (uint64, error) {
	f, err := elf.Open(execPath)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", execPath, err)
	}
	defer f.Close()
	var dyn *elf.Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_DYNAMIC {
			dyn = p
		}
	}
	if dyn == nil {
		return 0, errors.New("static executable: no dynamic section")
	}
	buf := make([]byte, min(dyn.Memsz, 1<<16))
	n, err := read(dyn.Vaddr+execBias, buf)
	if n == 0 {
		return 0, fmt.Errorf("reading the dynamic section: %v", err)
	}
	for i := 0; i+16 <= n; i += 16 {
		tag := elf.DynTag(binary.LittleEndian.Uint64(buf[i:]))
		if tag == elf.DT_NULL {
			break
		}
		if tag == elf.DT_DEBUG {
			v := binary.LittleEndian.Uint64(buf[i+8:])
			if v == 0 {
				return 0, errors.New("DT_DEBUG is 0: the dynamic linker has not run yet")
			}
			return v, nil
		}
	}
	return 0, errors.New("no DT_DEBUG entry")
}

// LoadedObject is one entry of the dynamic linker's list.
type LoadedObject struct {
	Name    string
	Bias    uint64
	Dynamic uint64
}

// LinkMap walks r_debug.r_map (struct link_map: l_addr, l_name, l_ld,
// l_next, l_prev), bounded and cycle-safe.
func LinkMap(read MemReader, rdebug uint64) ([]LoadedObject, error) {
	var hdr [16]byte
	if n, err := read(rdebug, hdr[:]); n != 16 {
		return nil, fmt.Errorf("reading r_debug at %#x: %v", rdebug, err)
	}
	next := binary.LittleEndian.Uint64(hdr[8:])
	var out []LoadedObject
	seen := map[uint64]bool{}
	for i := 0; next != 0 && i < 4096 && !seen[next]; i++ {
		seen[next] = true
		var lm [40]byte
		if n, err := read(next, lm[:]); n != 40 {
			return out, fmt.Errorf("reading link_map at %#x: %v", next, err)
		}
		o := LoadedObject{Bias: binary.LittleEndian.Uint64(lm[0:]), Dynamic: binary.LittleEndian.Uint64(lm[16:])}
		o.Name = readString(read, binary.LittleEndian.Uint64(lm[8:]), 4096)
		out = append(out, o)
		next = binary.LittleEndian.Uint64(lm[24:])
	}
	return out, nil
}

func readString(read MemReader, addr uint64, max int) string {
	if addr == 0 {
		return ""
	}
	buf := make([]byte, 256)
	var out []byte
	for len(out) < max {
		n, _ := read(addr+uint64(len(out)), buf)
		if n == 0 {
			break
		}
		for i := 0; i < n; i++ {
			if buf[i] == 0 {
				return string(append(out, buf[:i]...))
			}
		}
		out = append(out, buf[:n]...)
	}
	return string(out)
}
