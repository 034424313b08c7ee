package stepper

import (
	"debug/elf"
	"fmt"

	"github.com/rseqdbg/rseqdbg/regions"
)

// maxScanSegment bounds how much of one data segment ScanSections reads.
const maxScanSegment = 64 << 20

// ScanSections indexes the critical sections whose descriptors sit in the
// loaded objects' data without a table (see regions.ScanDescriptors), so
// they are known before they first run rather than when a step sees their
// descriptor stored. signature is the one the program's threads registered.
// It returns how many sections it added.
func (e *Engine) ScanSections(signature uint32) int {
	added := 0
	for _, o := range e.Objects() {
		if o.Path == "[vdso]" {
			continue
		}
		f, done, err := e.openELF(o.Path)
		if err != nil {
			continue
		}
		var code []regions.Span
		var data []*elf.Prog
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD {
				continue
			}
			if p.Flags&elf.PF_X != 0 {
				code = append(code, regions.Span{Lo: p.Vaddr + o.Bias, Hi: p.Vaddr + o.Bias + p.Memsz})
			} else if p.Memsz <= maxScanSegment {
				data = append(data, p)
			}
		}
		done()
		for _, p := range data {
			buf := make([]byte, p.Memsz)
			n, _ := e.t.ReadMemory(p.Vaddr+o.Bias, buf)
			for _, addr := range regions.ScanDescriptors(buf[:n], p.Vaddr+o.Bias, code, e.read, signature) {
				var b [regions.DescriptorSize]byte
				if n, _ := e.t.ReadMemory(addr, b[:]); n != len(b) {
					continue
				}
				d, _ := regions.ParseDescriptor(b[:])
				if e.idx.Lookup(d.StartIP) != nil {
					continue
				}
				r, err := regions.RegionFromDescriptor(d, addr, e.read, "data scan")
				if err != nil {
					e.warn(fmt.Sprintf("descriptor found at %#x in %s: %v", addr, o.Path, err))
					continue
				}
				if ws := e.idx.Add("scan:"+o.Path, r); len(ws) > 0 {
					for _, w := range ws {
						e.warn(w)
					}
					continue
				}
				added++
			}
		}
	}
	if added > 0 {
		clear(e.insns)
		clear(e.flows)
	}
	return added
}
