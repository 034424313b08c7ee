package gdbproto

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/linkmap"
	"github.com/rseqdbg/rseqdbg/target"
	"golang.org/x/sys/cpu"
)

// xfer answers qXfer reads. A document is built when a read starts at
// offset 0 and kept for the reads that continue it, so a client never sees
// pieces of two different versions.
func (s *session) xfer(pkt string) [][]byte {
	req, err := wire.ParseXferRead(pkt)
	if err != nil {
		if strings.Contains(pkt, ":read:") {
			return one("E00") // a read we support, malformed
		}
		return replyEmpty // writes and unknown operations: unsupported
	}
	// One document per object, the one a read at offset 0 last built:
	// keyed by the annex too, the cache grew with every annex a client
	// made up (their text is the client's to choose).
	cached, ok := s.docs[req.Object]
	doc := cached.doc
	if !ok || req.Offset == 0 || cached.annex != req.Annex {
		var build func(string) ([]byte, bool)
		switch req.Object {
		case "features":
			if s.srv.withoutTargetXML {
				return one("E00")
			}
			build = s.featuresDoc
		case "auxv":
			build = s.auxvDoc
		case "libraries-svr4":
			build = s.librariesDoc
		case "exec-file":
			build = s.execFileDoc
		case "threads":
			build = s.threadsDoc
		default:
			return replyEmpty
		}
		doc, ok = build(req.Annex)
		if !ok {
			return one("E00")
		}
		s.docs[req.Object] = xferDoc{annex: req.Annex, doc: doc}
	}
	return [][]byte{wire.XferChunk(doc, req.Offset, min(req.Length, packetSize-16))}
}

// xferDoc is a document being read, and the annex it was built for.
type xferDoc struct {
	annex string
	doc   []byte
}

func (s *session) featuresDoc(annex string) ([]byte, bool) {
	// Without a process yet (extended-remote before run), describe what
	// the host's processes will have.
	avx := cpu.X86.HasAVX
	if pr := s.live(); pr != nil {
		avx = pr.hasAVX()
	}
	doc, ok := wire.TargetXML(avx)[annex]
	return doc, ok
}

func (s *session) auxvDoc(string) ([]byte, bool) {
	pr := s.live()
	if pr == nil {
		return nil, false
	}
	b, err := pr.p.Auxv()
	return b, err == nil
}

func (s *session) execFileDoc(annex string) ([]byte, bool) {
	pr := s.srv.proc
	if pr == nil {
		return nil, false
	}
	if annex != "" {
		if pid, err := wire.ParseHexUint64(annex); err != nil || pid != uint64(pr.p.Pid()) {
			return nil, false
		}
	}
	return []byte(pr.p.ExecPath()), true
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// namesTTL bounds how long a renamed thread keeps its old name in gdb.
const namesTTL = 100 * time.Millisecond

// threadName is a thread's name as last read, with the thread's
// SyscallGeneration then and when.
type threadName struct {
	name string
	gen  uint64
	at   time.Time
	// open is the thread's element up to its end, as a client taking
	// multiprocess ids (multi) or not sees it: formatted once, not at
	// every stop for every thread.
	open  string
	multi bool
}

// threadsDoc lists the threads; a thread stopped inside a critical section
// says so in the text gdb shows in `info threads`.
func (s *session) threadsDoc(string) ([]byte, bool) {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\"?>\n<threads>\n")
	for _, pr := range s.srv.processes() {
		if pr.exited || pr.eng.Exited() {
			continue
		}
		pid := pr.p.Pid()
		// A thread's name is read again only when a system call of that
		// thread may have renamed it, and not more than every namesTTL:
		// gdb reads this after every stop, and a name read per thread
		// per next is what made next grow with parked threads. A rename
		// shows within namesTTL.
		if pr.names == nil {
			pr.names = map[int]threadName{}
		}
		now := time.Now()
		threads := pr.p.Threads()
		if len(pr.names) > 2*len(threads)+64 {
			// Threads come and go: keep the names of the live ones only.
			live := make(map[int]threadName, len(threads))
			for _, t := range threads {
				if n, ok := pr.names[t]; ok {
					live[t] = n
				}
			}
			pr.names = live
		}
		b.Grow(64 * len(threads))
		for _, t := range threads {
			gen := pr.eng.SyscallGeneration(t)
			n, ok := pr.names[t]
			if !ok || n.gen != gen && now.Sub(n.at) > namesTTL {
				n = threadName{gen: gen, at: now}
				if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, t)); err == nil {
					n.name = xmlEscape(strings.TrimSpace(string(comm)))
				}
			}
			if n.open == "" || n.multi != s.multiprocess {
				n.open, n.multi = fmt.Sprintf("<thread id=\"%s\"", s.threadIDString(pid, t)), s.multiprocess
				if n.name != "" {
					n.open += fmt.Sprintf(" name=\"%s\"", n.name)
				}
			}
			pr.names[t] = n
			b.WriteString(n.open)
			extra := ""
			if r, _, err := target.QuickRegs(pr.p, t); err == nil {
				if reg := regionAt(pr.eng, r.Rip); reg != nil {
					extra = "inside critical section " + reg.Name
				}
			}
			if extra != "" {
				fmt.Fprintf(&b, ">%s</thread>\n", xmlEscape(extra))
			} else {
				b.WriteString("/>\n")
			}
		}
	}
	b.WriteString("</threads>\n")
	return []byte(b.String()), true
}

// librariesDoc lists the dynamic linker's objects as gdbserver does: the
// executable's entry is main-lm, the others libraries with their link_map
// address, bias and dynamic section. Before the dynamic linker ran there
// are none, and gdb finds ld.so by itself through auxv.
func (s *session) librariesDoc(string) ([]byte, bool) {
	const empty = "<library-list-svr4 version=\"1.0\"/>\n"
	if doc, ok := s.upstreamLibrariesDoc(); ok {
		return doc, true
	}
	pr := s.live()
	if pr == nil {
		return []byte(empty), true
	}
	// Without a link map (a static executable, or before the dynamic
	// linker ran) the list holds only the synthesized CFI object, so gdb
	// still gets it with no user action.
	synth := s.synthLibraryEntry(pr)
	alone := []byte(empty)
	if synth != "" {
		alone = []byte("<library-list-svr4 version=\"1.0\">\n" + synth + "</library-list-svr4>\n")
	}
	objs := pr.eng.Objects()
	exe := pr.p.ExecPath()
	if len(objs) == 0 || objs[0].Path != exe {
		return alone, true
	}
	read := pr.p.ReadMemory
	rd, err := linkmap.FindRDebug(read, exe, objs[0].Bias)
	if err != nil {
		return alone, true
	}
	var hdr [16]byte
	if n, _ := read(rd, hdr[:]); n != len(hdr) {
		return alone, true
	}
	var libs strings.Builder
	mainLM := uint64(0)
	seen := map[uint64]bool{}
	for lm := binary.LittleEndian.Uint64(hdr[8:]); lm != 0 && !seen[lm] && len(seen) < 4096; {
		seen[lm] = true
		var e [40]byte // l_addr, l_name, l_ld, l_next, l_prev
		if n, _ := read(lm, e[:]); n != len(e) {
			break
		}
		if mainLM == 0 {
			mainLM = lm
		} else if name := linkmap.ReadCString(read, binary.LittleEndian.Uint64(e[8:]), 4096); name != "" {
			fmt.Fprintf(&libs, "  <library name=\"%s\" lm=\"%#x\" l_addr=\"%#x\" l_ld=\"%#x\" lmid=\"0x0\"/>\n",
				xmlEscape(name), lm, binary.LittleEndian.Uint64(e[0:]), binary.LittleEndian.Uint64(e[16:]))
		}
		lm = binary.LittleEndian.Uint64(e[24:])
	}
	if mainLM == 0 {
		return alone, true
	}
	libs.WriteString(synth)
	return []byte(fmt.Sprintf("<library-list-svr4 version=\"1.0\" main-lm=\"%#x\">\n%s</library-list-svr4>\n", mainLM, libs.String())), true
}
