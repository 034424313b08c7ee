package remote

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target"
)

// Without ptrace there is no PTRACE_GET_RSEQ_CONFIGURATION: the thread's
// area is found the way glibc finds it, fs_base + __rseq_offset, and glibc
// (2.35+, in the dynamic linker) says in __rseq_size whether it registered
// one. glibc always registers with RSEQ_SIG.

const glibcSignature = 0x53053053

// rseqSymbols are the run-time addresses of glibc's rseq variables.
type rseqSymbols struct {
	found               bool
	offset, size, flags uint64
	note                map[int]string
}

// RseqArea locates a thread's struct rseq without ptrace.
func (t *Target) RseqArea(tid int) (target.RseqArea, error) {
	if t.rseq.note == nil {
		t.rseq.note = map[int]string{}
	}
	if !t.rseq.found {
		if err := t.findRseqSymbols(); err != nil {
			t.rseq.note[tid] = err.Error()
			return target.RseqArea{}, err
		}
	}
	var b [8]byte
	if n, err := t.ReadMemory(t.rseq.size, b[:4]); n != 4 {
		return target.RseqArea{}, fmt.Errorf("reading __rseq_size: %w", err)
	}
	size := binary.LittleEndian.Uint32(b[:4])
	if int32(size) <= 0 {
		t.rseq.note[tid] = "glibc did not register rseq (__rseq_size is 0): the upstream does not implement " +
			"the rseq system call (qemu-user does not), glibc.pthread.rseq=0 turned it off, or glibc has not started yet"
		return target.RseqArea{}, nil
	}
	if n, err := t.ReadMemory(t.rseq.offset, b[:]); n != 8 {
		return target.RseqArea{}, fmt.Errorf("reading __rseq_offset: %w", err)
	}
	offset := binary.LittleEndian.Uint64(b[:])
	if _, ok := t.byName["fs_base"]; !ok {
		t.rseq.note[tid] = "the upstream does not describe fs_base (lldb-server 14 does not), so the thread " +
			"pointer and the rseq area past it are unknown: sections are found through the tables only"
		return target.RseqArea{}, nil
	}
	regs, err := t.Regs(tid)
	if err != nil {
		return target.RseqArea{}, err
	}
	if regs.FsBase == 0 {
		t.rseq.note[tid] = "the thread has no TLS yet (fs_base is 0)"
		return target.RseqArea{}, nil
	}
	addr := regs.FsBase + offset
	if n, _ := t.ReadMemory(addr+4, b[:4]); n != 4 {
		t.rseq.note[tid] = fmt.Sprintf("the rseq area at %#x is unreadable", addr)
		return target.RseqArea{}, nil
	}
	// cpu_id: RSEQ_CPU_ID_UNINITIALIZED (-1) before registration,
	// RSEQ_CPU_ID_REGISTRATION_FAILED (-2) after a failed one.
	if cpu := int32(binary.LittleEndian.Uint32(b[:4])); cpu < 0 {
		t.rseq.note[tid] = fmt.Sprintf("the thread's rseq area at %#x is not registered (cpu_id %d)", addr, cpu)
		return target.RseqArea{}, nil
	}
	area := target.RseqArea{Addr: addr, Size: size, Signature: glibcSignature, Known: true}
	if n, _ := t.ReadMemory(t.rseq.flags, b[:4]); n == 4 && t.rseq.flags != 0 {
		area.Flags = binary.LittleEndian.Uint32(b[:4])
	}
	t.rseq.note[tid] = "found through fs_base + __rseq_offset; signature assumed to be glibc's"
	return area, nil
}

// RseqNote says how the thread's rseq area was found, or why none was.
func (t *Target) RseqNote(tid int) string { return t.rseq.note[tid] }

// findRseqSymbols looks for __rseq_offset and __rseq_size in the
// executable (static glibc), the dynamic linker and the loaded libraries.
func (t *Target) findRseqSymbols() error {
	raw, err := t.Auxv()
	if err != nil {
		return err
	}
	auxv := regions.ParseAuxv(raw)
	type object struct {
		path string
		bias uint64
		base bool // bias is a load address: subtract the first segment
	}
	var objs []object
	f, err := t.openELF(t.exe)
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.exe, err)
	}
	bias := regions.ExecBias(auxv, f.f)
	interp := ""
	for _, p := range f.f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil {
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				interp = string(b)
			}
		}
	}
	rd, rdErr := regions.FindRDebugELF(t.ReadMemory, f.f, t.exe, bias)
	f.close()
	objs = append(objs, object{path: t.exe, bias: bias})
	if base := auxv[regions.AtBase]; interp != "" && base != 0 {
		objs = append(objs, object{path: interp, bias: base, base: true})
	}
	if rdErr == nil {
		if list, err := regions.LinkMap(t.ReadMemory, rd); err == nil {
			for _, lo := range list {
				if lo.Name != "" && lo.Name[0] == '/' && lo.Name != interp {
					objs = append(objs, object{path: lo.Name, bias: lo.Bias})
				}
			}
		}
	}
	for _, o := range objs {
		ef, err := t.openELF(o.path)
		if err != nil {
			continue
		}
		b := o.bias
		if o.base {
			if bb, ok := regions.BaseBias(ef.f, o.bias); ok {
				b = bb
			}
		}
		syms := map[string]uint64{}
		for _, get := range []func() ([]elf.Symbol, error){ef.f.DynamicSymbols, ef.f.Symbols} {
			list, _ := get()
			for _, s := range list {
				switch s.Name {
				case "__rseq_offset", "__rseq_size", "__rseq_flags":
					if s.Section != elf.SHN_UNDEF && s.Value != 0 {
						syms[s.Name] = s.Value + b
					}
				}
			}
		}
		ef.close()
		if syms["__rseq_offset"] != 0 && syms["__rseq_size"] != 0 {
			t.rseq.found = true
			t.rseq.offset, t.rseq.size, t.rseq.flags = syms["__rseq_offset"], syms["__rseq_size"], syms["__rseq_flags"]
			return nil
		}
	}
	return errors.New("no __rseq_offset in the program or its libraries (glibc before 2.35, or the libraries are not loaded yet)")
}

type openedELF struct {
	f     *elf.File
	close func()
}

func (t *Target) openELF(path string) (openedELF, error) {
	file, err := t.OpenFile(path)
	if err != nil {
		return openedELF{}, err
	}
	f, err := elf.NewFile(file)
	if err != nil {
		file.Close()
		return openedELF{}, fmt.Errorf("%s: %w", path, err)
	}
	return openedELF{f: f, close: func() { file.Close() }}, nil
}
