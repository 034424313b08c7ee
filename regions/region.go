// Package regions knows every restartable region of a process — rseq
// critical sections from ELF tables and from the thread's live rseq_cs, vDSO
// functions, declared ranges — their exits, and an interval index over them.
// It does not know how to step.
package regions

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Kind is the kind of a region.
type Kind uint8

const (
	KindCriticalSection Kind = iota + 1
	KindVDSO
	KindDeclared
)

func (k Kind) String() string {
	switch k {
	case KindCriticalSection:
		return "rseq"
	case KindVDSO:
		return "vdso"
	case KindDeclared:
		return "declared"
	}
	return "unknown"
}

// ExitKind says why an address is an exit of a region.
type ExitKind uint8

const (
	ExitCommit ExitKind = iota + 1
	ExitAbort
	ExitPoint  // listed in __rseq_exit_point_array
	ExitBranch // a decoded direct branch out of the region
	ExitReturn
)

func (k ExitKind) String() string {
	return [...]string{"", "commit", "abort", "exit-point", "branch", "return"}[k]
}

// Exit is one place control leaves a region.
type Exit struct {
	Addr uint64
	Kind ExitKind
}

// Region is one restartable region at run-time addresses.
type Region struct {
	Kind       Kind
	Name       string
	Object     string
	Start, End uint64 // End is the commit address of a critical section
	Abort      uint64
	Descriptor uint64
	Exits      []Exit
	Indirect   []uint64
	Calls      []uint64
	Source     string
	Warnings   []string
}

// Contains reports whether pc is inside the region.
func (r *Region) Contains(pc uint64) bool { return pc >= r.Start && pc < r.End }

// ExitKindAt tells whether addr is an exit and of which kind.
func (r *Region) ExitKindAt(addr uint64) (ExitKind, bool) {
	for _, x := range r.Exits {
		if x.Addr == addr {
			return x.Kind, true
		}
	}
	return 0, false
}

func (r *Region) addExit(addr uint64, kind ExitKind) {
	if r.Contains(addr) {
		return
	}
	for _, x := range r.Exits {
		if x.Addr == addr {
			return
		}
	}
	r.Exits = append(r.Exits, Exit{addr, kind})
}

// markExitPoint records a listed exit point; it outranks a decoded branch
// to the same address.
func (r *Region) markExitPoint(addr uint64) {
	for i, x := range r.Exits {
		if x.Addr == addr {
			if x.Kind == ExitBranch {
				r.Exits[i].Kind = ExitPoint
			}
			return
		}
	}
	r.Exits = append(r.Exits, Exit{addr, ExitPoint})
	r.sortExits()
}

func (r *Region) sortExits() {
	sort.Slice(r.Exits, func(i, j int) bool { return r.Exits[i].Addr < r.Exits[j].Addr })
}

// Descriptor is a struct rseq_cs.
type Descriptor struct {
	Version, Flags                     uint32
	StartIP, PostCommitOffset, AbortIP uint64
}

// DescriptorSize is sizeof(struct rseq_cs).
const DescriptorSize = 32

// maxSection bounds post_commit_offset: real sections are a few dozen bytes.
const maxSection = 64 << 10

// ParseDescriptor decodes 32 bytes of struct rseq_cs.
func ParseDescriptor(b []byte) (Descriptor, error) {
	if len(b) < DescriptorSize {
		return Descriptor{}, fmt.Errorf("descriptor needs %d bytes, have %d", DescriptorSize, len(b))
	}
	le := binary.LittleEndian
	return Descriptor{
		Version: le.Uint32(b), Flags: le.Uint32(b[4:]),
		StartIP: le.Uint64(b[8:]), PostCommitOffset: le.Uint64(b[16:]), AbortIP: le.Uint64(b[24:]),
	}, nil
}

// Signature is what glibc and librseq register on x86-64.
const Signature = 0x53053053

// check validates a descriptor and returns warnings; ok is false when the
// descriptor cannot describe a region at all.
func (d Descriptor) check() (warnings []string, ok bool) {
	if d.StartIP == 0 || d.PostCommitOffset == 0 {
		return []string{fmt.Sprintf("empty section (start %#x, post_commit_offset %d): skipped", d.StartIP, d.PostCommitOffset)}, false
	}
	if d.PostCommitOffset > maxSection || d.StartIP+d.PostCommitOffset < d.StartIP {
		return []string{fmt.Sprintf("post_commit_offset %#x of section at %#x is implausible: skipped", d.PostCommitOffset, d.StartIP)}, false
	}
	if d.Version != 0 {
		warnings = append(warnings, fmt.Sprintf("version %d (the kernel accepts only 0: the thread would be killed)", d.Version))
	}
	if d.Flags != 0 {
		warnings = append(warnings, fmt.Sprintf("flags %#x: the deprecated RSEQ_CS_FLAG_NO_RESTART_* bits kill the task since Linux 6.0", d.Flags))
	}
	if d.AbortIP >= d.StartIP && d.AbortIP < d.StartIP+d.PostCommitOffset {
		warnings = append(warnings, fmt.Sprintf("abort_ip %#x lies inside the section", d.AbortIP))
	}
	return warnings, true
}

// RegionFromDescriptor builds a critical section from a descriptor at
// run-time addresses, decoding its exits from target memory.
func RegionFromDescriptor(d Descriptor, descAddr uint64, code MemReader, source string) (*Region, error) {
	warns, ok := d.check()
	if !ok {
		return nil, fmt.Errorf("descriptor at %#x: %s", descAddr, warns[0])
	}
	r := &Region{Kind: KindCriticalSection, Start: d.StartIP, End: d.StartIP + d.PostCommitOffset,
		Abort: d.AbortIP, Descriptor: descAddr, Source: source, Warnings: warns,
		Name: fmt.Sprintf("%#x", d.StartIP)}
	buf := make([]byte, r.End-r.Start+16)
	n, err := code(r.Start, buf)
	if uint64(n) < r.End-r.Start {
		return nil, fmt.Errorf("reading section code at %#x: %v", r.Start, err)
	}
	var sig [4]byte
	if n, _ := code(d.AbortIP-4, sig[:]); n == 4 {
		r.checkSignature(sig[:])
	}
	r.decode(buf[:n])
	return r, nil
}

func (r *Region) checkSignature(b []byte) {
	if v := binary.LittleEndian.Uint32(b); v != Signature {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the 4 bytes before abort_ip %#x are %#08x, not the usual signature %#08x (the thread's registered signature decides)", r.Abort, v, Signature))
	}
}

// decode fills Exits, Indirect and Calls from the section's code, which
// starts at r.Start.
func (r *Region) decode(code []byte) {
	r.Exits = r.Exits[:0]
	r.addExit(r.End, ExitCommit)
	if r.Abort != 0 {
		r.addExit(r.Abort, ExitAbort)
	}
	for pc := r.Start; pc < r.End; {
		off := pc - r.Start
		if off >= uint64(len(code)) {
			break
		}
		in, err := Decode(code[off:], pc)
		if err != nil || in.Len == 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("undecodable bytes at %#x inside the section", pc))
			break
		}
		switch in.Kind {
		case FlowJump, FlowCondJump:
			if in.Target != 0 && !r.Contains(in.Target) {
				r.addExit(in.Target, ExitBranch)
			}
		case FlowCall:
			r.Calls = append(r.Calls, pc)
		case FlowIndirectCall:
			r.Calls = append(r.Calls, pc)
		case FlowIndirectJump, FlowRet:
			r.Indirect = append(r.Indirect, pc)
			r.Warnings = append(r.Warnings, fmt.Sprintf("indirect exit at %#x", pc))
		}
		pc = in.Next()
	}
	r.sortExits()
}

// Declared makes a user-declared region; its exits are decoded like a
// critical section's, without commit or abort.
func Declared(name string, start, end uint64, code MemReader) (*Region, error) {
	if end <= start || end-start > maxSection {
		return nil, fmt.Errorf("declared region %s [%#x, %#x) is empty or too large", name, start, end)
	}
	r := &Region{Kind: KindDeclared, Name: name, Start: start, End: end, Source: "declared"}
	buf := make([]byte, end-start+16)
	n, err := code(start, buf)
	if uint64(n) < end-start {
		return nil, fmt.Errorf("reading declared region %s: %v", name, err)
	}
	r.decode(buf[:n])
	return r, nil
}
