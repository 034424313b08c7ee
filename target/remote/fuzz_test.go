package remote

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
)

// lldbServerXML is a description laid out by offsets, as lldb-server's.
const lldbServerXML = `<?xml version="1.0"?><target version="1.0"><architecture>i386:x86-64</architecture>` +
	`<feature name="org.gnu.gdb.i386.core"><reg name="rax" bitsize="64" regnum="0" offset="80" type="int"/>` +
	`<reg name="rsp" bitsize="64" regnum="7" offset="152" type="data_ptr"/>` +
	`<reg name="rip" bitsize="64" regnum="16" offset="128" type="code_ptr"/>` +
	`<reg name="rflags" bitsize="32" regnum="17" offset="144"/>` +
	`<reg name="eax" bitsize="32" regnum="18" value_regnums="0"/></feature></target>`

// FuzzGReply decodes an upstream's g reply with the layout of an upstream's
// target description, in register order (gdbserver, QEMU) or by offsets
// (lldb-server): no description or reply may panic or read outside the
// register file.
func FuzzGReply(f *testing.F) {
	docs := wire.TargetXML(true)
	f.Add(docs["target.xml"], strings.Repeat("01", wire.RegisterFileSize(true)))
	f.Add(docs["target.xml"], strings.Repeat("xx", 200)+"0102")
	f.Add([]byte(lldbServerXML), strings.Repeat("ab", 160))
	f.Add([]byte(lldbServerXML), "00")
	f.Fuzz(func(t *testing.T, xml []byte, g string) {
		regs, err := wire.ParseTargetDescription(func(annex string) ([]byte, error) {
			if annex == "target.xml" {
				return xml, nil
			}
			if d := docs[annex]; d != nil {
				return d, nil
			}
			return nil, errors.New("no such annex")
		})
		if err != nil {
			return
		}
		tg := &Target{}
		if err := tg.layout(regs); err != nil {
			return
		}
		rf := tg.decodeG(g)
		if len(rf.raw) != tg.size || len(rf.have) != len(tg.regs) {
			t.Fatalf("register file of %d bytes, %d flags for %d bytes, %d registers", len(rf.raw), len(rf.have), tg.size, len(tg.regs))
		}
		for i, r := range tg.regs {
			if rf.have[i] && tg.offs[i]+r.Size() > len(rf.raw) {
				t.Fatalf("register %s at %d+%d past the file's %d bytes", r.Name, tg.offs[i], r.Size(), len(rf.raw))
			}
		}
	})
}

// fuzzMemory is program memory made of fuzz bytes: every address below
// 2^47 reads them over and over (so any pointer leads somewhere, cycles
// included), and the rest is unmapped.
func fuzzMemory(data []byte) func(addr uint64, buf []byte) (int, error) {
	return func(addr uint64, buf []byte) (int, error) {
		if len(data) == 0 {
			return 0, errors.New("no memory")
		}
		for i := range buf {
			a := addr + uint64(i)
			if a < addr || a >= 1<<47 {
				return i, errors.New("unmapped")
			}
			buf[i] = data[a%uint64(len(data))]
		}
		return len(buf), nil
	}
}

// FuzzThreadLists walks glibc's lists of threads, as done for a stub that
// describes no fs_base, over arbitrary memory: it must end, without panics.
func FuzzThreadLists(f *testing.F) {
	// A well-formed image: descriptors at 0, lists at 0x100, one thread.
	img := make([]byte, 0x400)
	le := binary.LittleEndian
	for i, off := range []uint32{0x10, 0x20, 0x40, 0x50} { // stack_user, stack_used, list, tid
		le.PutUint32(img[12*i:], 128)
		le.PutUint32(img[12*i+4:], 1)
		le.PutUint32(img[12*i+8:], off)
	}
	le.PutUint64(img[0x110:], 0x240) // stack_user.next: pd 0x200's list
	le.PutUint64(img[0x240:], 0x110) // back to the head
	le.PutUint64(img[0x120:], 0x120) // stack_used: empty
	le.PutUint32(img[0x250:], 77)    // pd->tid
	f.Add(img, uint64(0x100), uint64(0), int32(77))
	f.Add(img, uint64(0x100), uint64(0), int32(78))
	f.Add([]byte{1, 2, 3}, uint64(1<<47-4), uint64(5), int32(0))
	f.Fuzz(func(t *testing.T, mem []byte, rtldGlobal, dbBase uint64, tid int32) {
		db := map[string]uint64{}
		for i, name := range threadDBFields {
			db[name] = dbBase + uint64(12*i)
		}
		walkThreadLists(fuzzMemory(mem), rtldGlobal, db, int(tid))
	})
}
