package regions

import (
	"encoding/binary"

	"github.com/rseqdbg/rseqdbg/target"
)

// Span is an address range [Lo, Hi).
type Span struct{ Lo, Hi uint64 }

func (s Span) contains(a uint64) bool { return a >= s.Lo && a < s.Hi }

// maxScanSection bounds post_commit_offset for a descriptor found without a
// table: real sections are a few dozen bytes, and a loose bound would let
// data that happens to look like a descriptor through.
const maxScanSection = 4096

// ScanDescriptors finds struct rseq_cs descriptors in data, a copy of
// memory at base, that no table needs to list: programs that keep their
// descriptors in ordinary data (no __rseq_cs section) are found this way
// before any of their sections runs. A candidate is 32-byte aligned, has
// version and flags 0, a start and an abort_ip in code (one of the code
// spans) with abort_ip outside the section, and the thread's registered
// signature in the 4 bytes before abort_ip (read through code). It returns
// the descriptors' addresses.
func ScanDescriptors(data []byte, base uint64, code []Span, read target.MemReader, signature uint32) []uint64 {
	inCode := func(a uint64) bool {
		for _, s := range code {
			if s.contains(a) {
				return true
			}
		}
		return false
	}
	var found []uint64
	first := (DescriptorSize - int(base%DescriptorSize)) % DescriptorSize
	for off := first; off+DescriptorSize <= len(data); off += DescriptorSize {
		b := data[off : off+DescriptorSize]
		if binary.LittleEndian.Uint64(b[0:]) != 0 { // version and flags
			continue
		}
		d, _ := ParseDescriptor(b)
		if d.PostCommitOffset == 0 || d.PostCommitOffset > maxScanSection || !inCode(d.StartIP) || !inCode(d.AbortIP) {
			continue
		}
		if d.AbortIP >= d.StartIP && d.AbortIP < d.StartIP+d.PostCommitOffset {
			continue
		}
		var sig [4]byte
		if n, _ := read(d.AbortIP-4, sig[:]); n != 4 || binary.LittleEndian.Uint32(sig[:]) != signature {
			continue
		}
		found = append(found, base+uint64(off))
	}
	return found
}
