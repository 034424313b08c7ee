package regions

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/x86"
)

// Kind says where a region comes from and therefore how it is left. The zero
// value is no kind, so that a zero Region is recognisably unset.
type Kind uint8

const (
	// KindCriticalSection is an rseq critical section [start_ip, commit).
	KindCriticalSection Kind = iota + 1
	// KindVDSO is a vDSO function: left by its return.
	KindVDSO
	// KindDeclared is a range a user named.
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
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ExitKind says why an address is an exit. The order is the precedence when
// one address is an exit for several reasons.
type ExitKind uint8

const (
	// ExitCommit is the commit address (the fall-through end of the range).
	ExitCommit ExitKind = iota + 1
	// ExitAbort is the abort handler.
	ExitAbort
	// ExitPoint comes from __rseq_exit_point_array.
	ExitPoint
	// ExitBranch is a decoded direct branch target outside the range.
	ExitBranch
	// ExitReturn is a return address (vDSO functions, resolved at entry).
	ExitReturn
)

func (k ExitKind) String() string {
	switch k {
	case ExitCommit:
		return "commit"
	case ExitAbort:
		return "abort"
	case ExitPoint:
		return "exit-point"
	case ExitBranch:
		return "branch"
	case ExitReturn:
		return "return"
	}
	return "exit(" + strconv.Itoa(int(k)) + ")"
}

// Exit is one place control can leave a region for.
type Exit struct {
	Addr uint64
	Kind ExitKind
}

// Region is one restartable range of run-time addresses.
type Region struct {
	Kind Kind
	// Name is the symbol-relative name of Start ("inc_full+12"), or Start
	// in hex ("0x4011d0") when no symbol covers it (always, for regions
	// found in memory: the caller may rename them).
	Name string
	// Object is the path of the object holding the code ("[vdso]").
	Object string
	// Start and End delimit the range [Start, End). For a critical section
	// End is the commit address, start_ip+post_commit_offset.
	Start, End uint64
	// Abort is abort_ip (critical sections only).
	Abort uint64
	// AbortJump is where the abort handler's first unconditional direct jump
	// goes (usually the retry label before Start), 0 if it ends otherwise.
	AbortJump uint64
	// Descriptor is the run-time address of the struct rseq_cs, 0 if unknown.
	Descriptor uint64
	// Exits are sorted by address and unique; none lies inside [Start, End).
	Exits []Exit
	// Indirect are the addresses of indirect jumps/calls and returns inside
	// the range: their targets are known only at run time.
	Indirect []uint64
	// Calls are the addresses of direct calls inside the range. A call is not
	// an exit: the callee returns into the range.
	Calls []uint64
	// Source is where the region was found: "__rseq_cs_ptr_array",
	// "__rseq_cs", "__rseq_table", "runtime", "vdso" or "declared".
	Source   string
	Warnings []string
}

// Contains reports whether pc lies in [Start, End).
func (r *Region) Contains(pc uint64) bool { return pc >= r.Start && pc < r.End }

// ExitKindAt reports whether addr is one of r's exits, and which kind.
func (r *Region) ExitKindAt(addr uint64) (ExitKind, bool) {
	i := sort.Search(len(r.Exits), func(i int) bool { return r.Exits[i].Addr >= addr })
	if i < len(r.Exits) && r.Exits[i].Addr == addr {
		return r.Exits[i].Kind, true
	}
	return 0, false
}

// String names the region for messages.
func (r *Region) String() string {
	if r.Name == "" || r.Name == hex(r.Start) {
		return fmt.Sprintf("%s [%#x, %#x)", r.Kind, r.Start, r.End)
	}
	return fmt.Sprintf("%s %s [%#x, %#x)", r.Kind, r.Name, r.Start, r.End)
}

// maxRegionWarnings bounds the warnings of one region: garbage decoded as
// code can otherwise produce one per byte.
const maxRegionWarnings = 32

func (r *Region) warnf(format string, args ...any) {
	switch n := len(r.Warnings); {
	case n < maxRegionWarnings:
		r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
	case n == maxRegionWarnings:
		r.Warnings = append(r.Warnings, "further warnings suppressed")
	}
}

// DescriptorSize is sizeof(struct rseq_cs).
const DescriptorSize = 32

// Signature is the abort signature glibc and librseq register on x86-64.
// Programs may register another; only the thread's own value is
// authoritative, so a mismatch here is a hint, not an error.
const Signature = 0x53053053

// MaxCriticalSection is the length beyond which a critical section is
// implausible: it is warned about and decoded only this far.
const MaxCriticalSection = 64 << 10

// abortHandlerWindow bounds how far the abort handler is decoded.
const abortHandlerWindow = 256

// maxInsnLen is the longest x86 instruction; the body of a range is read this
// much past its end so that the last instruction decodes even when the end is
// not on an instruction boundary.
const maxInsnLen = 15

// Descriptor is struct rseq_cs.
type Descriptor struct {
	Version, Flags   uint32
	StartIP          uint64
	PostCommitOffset uint64
	AbortIP          uint64
}

// Commit is start_ip + post_commit_offset. It wraps for descriptors the
// kernel rejects; RegionFromDescriptor refuses those.
func (d Descriptor) Commit() uint64 { return d.StartIP + d.PostCommitOffset }

// wraps reports whether the range overflows the address space, which the
// kernel refuses (it kills the thread).
func (d Descriptor) wraps() bool { return d.StartIP+d.PostCommitOffset < d.StartIP }

// ParseDescriptor decodes a little-endian struct rseq_cs.
func ParseDescriptor(b []byte) (Descriptor, error) {
	if len(b) < DescriptorSize {
		return Descriptor{}, fmt.Errorf("rseq_cs descriptor: %d bytes, want %d", len(b), DescriptorSize)
	}
	return Descriptor{
		Version:          binary.LittleEndian.Uint32(b[0:]),
		Flags:            binary.LittleEndian.Uint32(b[4:]),
		StartIP:          binary.LittleEndian.Uint64(b[8:]),
		PostCommitOffset: binary.LittleEndian.Uint64(b[16:]),
		AbortIP:          binary.LittleEndian.Uint64(b[24:]),
	}, nil
}

// newCriticalSection makes the region for d (run-time addresses) and the
// warnings that need no code: version, flags, sizes, abort placement.
func newCriticalSection(r *Region, d Descriptor, descAddr uint64, source string) {
	*r = Region{
		Kind:       KindCriticalSection,
		Start:      d.StartIP,
		End:        d.Commit(),
		Abort:      d.AbortIP,
		Descriptor: descAddr,
		Source:     source,
	}
	if d.Version != 0 {
		r.warnf("descriptor version %d, want 0", d.Version)
	}
	if d.Flags != 0 {
		r.warnf("deprecated flags %#x set (kernels since 6.0 kill the thread on abort)", d.Flags)
	}
	switch {
	case d.PostCommitOffset == 0:
		r.warnf("post_commit_offset 0: empty critical section")
	case d.PostCommitOffset > MaxCriticalSection:
		r.warnf("post_commit_offset %#x is larger than 64 KiB: decoded only the first 64 KiB", d.PostCommitOffset)
	}
	if r.Contains(d.AbortIP) {
		r.warnf("abort %#x inside [%#x, %#x): the kernel rejects this descriptor", d.AbortIP, r.Start, r.End)
	}
}

// regionCode is what analysis reads: bytes in the run-time address space.
type regionCode struct {
	body    []byte // from Start; may run up to maxInsnLen past End, may be short
	noBody  string // why body is missing, when it is
	sig     []byte // the 4 bytes before Abort, nil if unreadable
	abort   []byte // from Abort, up to abortHandlerWindow
	noAbort string
}

// scratch is per-goroutine working memory for analysis.
type scratch struct {
	exits []Exit
	slab  []Exit
}

// exitSlice copies exits into a shared slab so that a load of many regions
// makes few allocations. The result has no spare capacity, so appending to
// it never writes into another region's exits.
func (s *scratch) exitSlice(exits []Exit) []Exit {
	if len(exits) == 0 {
		return nil
	}
	if cap(s.slab)-len(s.slab) < len(exits) {
		n := 4096
		if len(exits) > n {
			n = len(exits)
		}
		s.slab = make([]Exit, 0, n)
	}
	i := len(s.slab)
	s.slab = append(s.slab, exits...)
	return s.slab[i:len(s.slab):len(s.slab)]
}

// analyze decodes r's body and abort handler and fills Exits, Indirect,
// Calls, AbortJump and the code-related warnings. exitPoints are run-time
// exit_ip values from the exit point table.
func analyze(r *Region, c regionCode, exitPoints []uint64, sc *scratch) {
	ex := sc.exits[:0]
	if r.Kind == KindCriticalSection || r.Kind == KindDeclared {
		ex = append(ex, Exit{r.End, ExitCommit})
	}
	if r.Kind == KindCriticalSection {
		if !r.Contains(r.Abort) {
			ex = append(ex, Exit{r.Abort, ExitAbort})
		}
		if c.sig == nil && len(c.abort) == 0 {
			why := c.noAbort
			if why == "" {
				why = "unreadable"
			}
			r.warnf("abort handler at %#x not checked: %s", r.Abort, why)
		} else {
			checkSignature(r, c)
			decodeAbortHandler(r, c)
		}
	}
	for _, e := range exitPoints {
		if r.Contains(e) {
			r.warnf("exit point %#x lies inside the range: ignored", e)
			continue
		}
		ex = append(ex, Exit{e, ExitPoint})
	}
	ex = decodeBody(r, c, ex)
	ex = sortExits(ex)
	r.Exits = sc.exitSlice(ex)
	sc.exits = ex[:0]
}

func checkSignature(r *Region, c regionCode) {
	if c.sig == nil {
		r.warnf("cannot read the 4 bytes before abort %#x to check the signature", r.Abort)
		return
	}
	if v := binary.LittleEndian.Uint32(c.sig); v != Signature {
		r.warnf("the 4 bytes before abort %#x are % x (%#x), not the signature %#x that glibc and librseq register (a static hint: the thread's registered signature decides)",
			r.Abort, c.sig, v, uint32(Signature))
	}
}

// decodeAbortHandler follows the abort handler to its first unconditional
// transfer. Where it goes is legitimately anywhere (usually a retry before
// Start), so only undecodable bytes are worth a warning.
func decodeAbortHandler(r *Region, c regionCode) {
	code := c.abort
	if len(code) == 0 {
		if c.noAbort != "" {
			r.warnf("abort handler at %#x not decoded: %s", r.Abort, c.noAbort)
		}
		return
	}
	pc := r.Abort
	for off := 0; off < len(code); {
		in, err := x86.DecodeFlow(code[off:], pc)
		if err != nil {
			r.warnf("undecodable abort handler bytes at %#x", pc)
			return
		}
		switch in.Kind {
		case x86.FlowJump:
			r.AbortJump = in.Target
			return
		case x86.FlowIndirectJump, x86.FlowRet, x86.FlowTrap:
			return
		}
		off += in.Len
		pc += uint64(in.Len)
	}
}

// decodeBody sweeps [Start, End) linearly. Critical sections are short
// straight-line asm with no embedded data, so a linear sweep sees every
// instruction.
func decodeBody(r *Region, c regionCode, ex []Exit) []Exit {
	if r.End <= r.Start {
		return ex
	}
	end := r.End
	if end-r.Start > MaxCriticalSection {
		end = r.Start + MaxCriticalSection
	}
	if c.body == nil {
		if c.noBody != "" {
			r.warnf("code not decoded: %s", c.noBody)
		}
		return ex
	}
	var bad, badFirst uint64
	pc := r.Start
	for pc < end {
		off := pc - r.Start
		if off >= uint64(len(c.body)) {
			r.warnf("code bytes from %#x unavailable: decoded only up to there", pc)
			break
		}
		in, err := x86.DecodeFlow(c.body[off:], pc)
		if err != nil {
			if bad == 0 {
				badFirst = pc
			}
			bad++
			pc++
			continue
		}
		switch in.Kind {
		case x86.FlowJump, x86.FlowCondJump:
			if in.Target != 0 && !r.Contains(in.Target) {
				ex = append(ex, Exit{in.Target, ExitBranch})
			}
		case x86.FlowCall:
			r.Calls = append(r.Calls, pc)
		case x86.FlowIndirectJump, x86.FlowIndirectCall, x86.FlowRet:
			r.Indirect = append(r.Indirect, pc)
			r.warnf("indirect exit at %#x (%s): its target is known only at run time", pc, in.Kind)
		case x86.FlowSyscall:
			if r.Kind == KindCriticalSection {
				r.warnf("system call at %#x inside the critical section", pc)
			}
		}
		pc += uint64(in.Len)
	}
	if bad > 0 {
		r.warnf("undecodable bytes inside the range: %d byte(s) from %#x skipped", bad, badFirst)
	}
	if pc > end && end == r.End {
		r.warnf("the instruction before %#x runs past the end of the range: the end is not an instruction boundary", r.End)
	}
	return ex
}

// sortExits sorts by address and keeps, for each address, the exit of the
// highest precedence (lowest ExitKind).
func sortExits(ex []Exit) []Exit {
	if len(ex) > 32 {
		slices.SortFunc(ex, func(a, b Exit) int {
			if exitLess(a, b) {
				return -1
			}
			if exitLess(b, a) {
				return 1
			}
			return 0
		})
	}
	// Insertion sort for the usual handful: sort.Slice allocates per call.
	for i := 1; i < len(ex); i++ {
		for j := i; j > 0 && exitLess(ex[j], ex[j-1]); j-- {
			ex[j], ex[j-1] = ex[j-1], ex[j]
		}
	}
	out := ex[:0]
	for i, e := range ex {
		if i > 0 && e.Addr == out[len(out)-1].Addr {
			continue
		}
		out = append(out, e)
	}
	return out
}

func exitLess(a, b Exit) bool {
	if a.Addr != b.Addr {
		return a.Addr < b.Addr
	}
	return a.Kind < b.Kind
}

// codeFromMemory reads what analysis needs from target memory.
func codeFromMemory(r *Region, read target.MemReader) regionCode {
	var c regionCode
	if read == nil {
		c.noBody, c.noAbort = "no memory reader", "no memory reader"
		return c
	}
	if r.End > r.Start {
		n := r.End - r.Start
		if n > MaxCriticalSection {
			n = MaxCriticalSection
		}
		// A short read is decoded as far as it goes; decodeBody warns.
		if b := target.ReadUpTo(read, r.Start, make([]byte, n+maxInsnLen)); len(b) > 0 {
			c.body = b
		} else {
			c.noBody = fmt.Sprintf("memory at %#x unreadable", r.Start)
		}
	}
	if r.Kind == KindCriticalSection {
		if r.Abort >= 4 {
			if s := target.ReadUpTo(read, r.Abort-4, make([]byte, 4)); len(s) == 4 {
				c.sig = s
			}
		}
		c.abort = target.ReadUpTo(read, r.Abort, make([]byte, abortHandlerWindow))
		if len(c.abort) == 0 {
			c.noAbort = fmt.Sprintf("memory at %#x unreadable", r.Abort)
		}
	}
	return c
}

// RegionFromDescriptor builds the region of a descriptor found at run time
// (the thread's rseq_cs), decoding its code from target memory. descAddr is
// where the descriptor lives (0 if unknown).
func RegionFromDescriptor(d Descriptor, descAddr uint64, code target.MemReader, source string) (*Region, error) {
	if d.wraps() {
		return nil, fmt.Errorf("rseq_cs at %#x: start_ip %#x + post_commit_offset %#x overflows", descAddr, d.StartIP, d.PostCommitOffset)
	}
	if source == "" {
		source = "runtime"
	}
	r := new(Region)
	newCriticalSection(r, d, descAddr, source)
	r.Name = hex(r.Start)
	c := codeFromMemory(r, code)
	if c.body == nil && r.End > r.Start {
		return nil, fmt.Errorf("reading code of critical section %#x..%#x (rseq_cs at %#x): %s", r.Start, r.End, descAddr, c.noBody)
	}
	var sc scratch
	analyze(r, c, nil, &sc)
	return r, nil
}

// maxDeclared bounds a declared range: larger ones are surely typos, and
// decoding them would read that much target memory.
const maxDeclared = 16 << 20

// Declared builds a user-declared region [start, end), decoding its exits
// from target memory. Its fall-through end is reported as ExitCommit.
func Declared(name string, start, end uint64, code target.MemReader) (*Region, error) {
	if end <= start {
		return nil, fmt.Errorf("declared region %q: end %#x is not after start %#x", name, end, start)
	}
	if end-start > maxDeclared {
		return nil, fmt.Errorf("declared region %q: %d bytes is larger than the %d-byte limit", name, end-start, maxDeclared)
	}
	r := &Region{Kind: KindDeclared, Name: name, Start: start, End: end, Source: "declared"}
	var c regionCode
	if code == nil {
		c.noBody = "no memory reader"
	} else {
		b := target.ReadUpTo(code, start, make([]byte, end-start+maxInsnLen))
		if len(b) == 0 {
			return nil, fmt.Errorf("declared region %q: memory at %#x unreadable", name, start)
		}
		c.body = b
	}
	var sc scratch
	analyze(r, c, nil, &sc)
	return r, nil
}
