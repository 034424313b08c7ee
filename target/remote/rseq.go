package remote

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/rseqdbg/rseqdbg/auxv"
	"github.com/rseqdbg/rseqdbg/linkmap"
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

	// For a stub that describes no fs_base (lldb-server): glibc's lists
	// of threads, walked as libthread_db does. rtldGlobal is the address
	// of the dynamic linker's _rtld_global; db holds the run-time
	// addresses of libc's _thread_db_ descriptors of the fields involved.
	rtldGlobal uint64
	db         map[string]uint64
	tp         map[int]uint64 // thread pointers found, by thread
	scanned    string         // the objects whose symbols were read last
}

// threadDBFields are the libthread_db descriptors the thread lists need:
// each is {size in bits, count, offset} of a field (glibc's db_info.c).
var threadDBFields = []string{
	"_thread_db_rtld_global__dl_stack_user", // the initial thread's list
	"_thread_db_rtld_global__dl_stack_used", // pthread_create's threads
	"_thread_db_pthread_list",
	"_thread_db_pthread_tid",
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
	tp, how, err := t.threadPointer(tid)
	if err != nil {
		return target.RseqArea{}, err
	}
	if tp == 0 {
		t.rseq.note[tid] = how
		return target.RseqArea{}, nil
	}
	addr := tp + offset
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
	t.rseq.note[tid] = fmt.Sprintf("found through %s + __rseq_offset; signature assumed to be glibc's", how)
	return area, nil
}

// threadPointer is the thread's TLS pointer (what fs_base holds) and how
// it was found; 0 and why when it was not.
func (t *Target) threadPointer(tid int) (uint64, string, error) {
	if _, ok := t.byName["fs_base"]; ok {
		regs, err := t.Regs(tid)
		if err != nil {
			return 0, "", err
		}
		if regs.FsBase == 0 {
			return 0, "the thread has no TLS yet (fs_base is 0)", nil
		}
		return regs.FsBase, "fs_base", nil
	}
	const how = "glibc's thread list (the upstream describes no fs_base)"
	if tp, ok := t.rseq.tp[tid]; ok {
		return tp, how, nil
	}
	if t.rseq.rtldGlobal == 0 || len(t.rseq.db) < len(threadDBFields) {
		return 0, "the upstream does not describe fs_base (lldb-server 14 does not) and glibc's thread list " +
			"is not known yet (libc's _thread_db_ descriptors and _rtld_global not found): sections are found " +
			"through the tables only", nil
	}
	tp, err := walkThreadLists(t.ReadMemory, t.rseq.rtldGlobal, t.rseq.db, tid)
	if err != nil {
		return 0, fmt.Sprintf("the upstream does not describe fs_base, and glibc's thread list: %v", err), nil
	}
	if t.rseq.tp == nil {
		t.rseq.tp = map[int]uint64{}
	}
	t.rseq.tp[tid] = tp
	return tp, how, nil
}

// walkThreadLists finds the thread's struct pthread, which on x86-64 is
// where its thread pointer points, in the dynamic linker's two lists of
// threads, the way libthread_db's td_ta_map_lwp2thr does.
// Everything it reads is the program's memory, which may be corrupt.
func walkThreadLists(read target.MemReader, rtldGlobal uint64, db map[string]uint64, tid int) (uint64, error) {
	field := func(name string) (uint64, error) {
		var d [12]byte
		if n, err := read(db[name], d[:]); n != len(d) {
			return 0, fmt.Errorf("reading %s: %w", name, err)
		}
		return uint64(binary.LittleEndian.Uint32(d[8:])), nil
	}
	var off [4]uint64
	for i, name := range threadDBFields {
		v, err := field(name)
		if err != nil {
			return 0, err
		}
		off[i] = v
	}
	listOff, tidOff := off[2], off[3]
	read8 := func(addr uint64) (uint64, error) {
		var b [8]byte
		if n, err := read(addr, b[:]); n != len(b) {
			return 0, fmt.Errorf("reading the thread list at %#x: %w", addr, err)
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	for _, headOff := range off[:2] {
		head := rtldGlobal + headOff
		// list_t is {next, prev}; a corrupt list must not loop forever.
		next, err := read8(head)
		for i := 0; err == nil && next != head && next != 0 && i < 1<<16; i++ {
			pd := next - listOff
			var b [4]byte
			if n, rerr := read(pd+tidOff, b[:]); n != len(b) {
				return 0, fmt.Errorf("reading the tid of the thread at %#x: %w", pd, rerr)
			}
			if int(int32(binary.LittleEndian.Uint32(b[:]))) == tid {
				return pd, nil
			}
			next, err = read8(next)
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("thread %d is in neither list", tid)
}

// RseqNote says how the thread's rseq area was found, or why none was.
func (t *Target) RseqNote(tid int) string { return t.rseq.note[tid] }

// findRseqSymbols looks for __rseq_offset and __rseq_size in the
// executable (static glibc), the dynamic linker and the loaded libraries,
// and for what walking glibc's thread lists needs.
func (t *Target) findRseqSymbols() error {
	raw, err := t.Auxv()
	if err != nil {
		return err
	}
	av := auxv.ParseAuxv(raw)
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
	bias := linkmap.ExecBias(av, f.f)
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
	rd, rdErr := linkmap.FindRDebugELF(t.ReadMemory, f.f, t.exe, bias)
	f.close()
	objs = append(objs, object{path: t.exe, bias: bias})
	if base := av[auxv.AtBase]; interp != "" && base != 0 {
		objs = append(objs, object{path: interp, bias: base, base: true})
	}
	if rdErr == nil {
		if list, err := linkmap.LinkMap(t.ReadMemory, rd); err == nil {
			for _, lo := range list {
				if lo.Name != "" && lo.Name[0] == '/' && lo.Name != interp {
					objs = append(objs, object{path: lo.Name, bias: lo.Bias})
				}
			}
		}
	}
	// Looking again (for the thread lists, libc not loaded yet) is only
	// worth it when the objects changed.
	var key strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&key, "%s@%#x;", o.path, o.bias)
	}
	if t.rseq.offset != 0 && key.String() == t.rseq.scanned {
		return nil
	}
	t.rseq.scanned = key.String()
	wanted := map[string]bool{"__rseq_offset": true, "__rseq_size": true, "__rseq_flags": true, "_rtld_global": true}
	for _, name := range threadDBFields {
		wanted[name] = true
	}
	syms := map[string]uint64{}
	for _, o := range objs {
		ef, err := t.openELF(o.path)
		if err != nil {
			continue
		}
		b := o.bias
		if o.base {
			if bb, ok := linkmap.BaseBias(ef.f, o.bias); ok {
				b = bb
			}
		}
		for _, get := range []func() ([]elf.Symbol, error){ef.f.DynamicSymbols, ef.f.Symbols} {
			list, _ := get()
			for _, s := range list {
				if wanted[s.Name] && syms[s.Name] == 0 && s.Section != elf.SHN_UNDEF && s.Value != 0 {
					syms[s.Name] = s.Value + b
				}
			}
		}
		ef.close()
	}
	if syms["__rseq_offset"] == 0 || syms["__rseq_size"] == 0 {
		return errors.New("no __rseq_offset in the program or its libraries (glibc before 2.35, or the libraries are not loaded yet)")
	}
	t.rseq.offset, t.rseq.size, t.rseq.flags = syms["__rseq_offset"], syms["__rseq_size"], syms["__rseq_flags"]
	t.rseq.rtldGlobal = syms["_rtld_global"]
	t.rseq.db = map[string]uint64{}
	for _, name := range threadDBFields {
		if v := syms[name]; v != 0 {
			t.rseq.db[name] = v
		}
	}
	// Without fs_base the thread lists are needed too, and libc may not be
	// loaded yet: look again next time until they are found.
	_, hasFsBase := t.byName["fs_base"]
	t.rseq.found = hasFsBase || (t.rseq.rtldGlobal != 0 && len(t.rseq.db) == len(threadDBFields))
	return nil
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
