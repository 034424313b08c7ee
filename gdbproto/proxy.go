package gdbproto

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	"github.com/rseqdbg/rseqdbg/stepper"
)

// Proxy mode: the server's process is behind another stub (gdbserver,
// qemu-user, lldb-server) reached through target/remote. Every resumption
// still goes through the stepping core; registers, memory, breakpoints and
// threads go through the target interface; the packets below pass through
// to the upstream unchanged.

// Upstream is implemented by a process behind another stub.
type Upstream interface {
	// Forward sends a packet the proxy does not interpret and returns the
	// upstream's answer: console output packets, then the reply.
	Forward(pkt []byte) ([][]byte, error)
	// Launched reports whether the upstream created the process (it is
	// killed on disconnect) rather than attached to it (detached).
	Launched() bool
}

// prefetch starts reading what the client will ask for after a stop.
func (s *session) prefetch(st *stepper.Stop) {
	if pr := s.srv.proc; pr != nil && st != nil && !pr.exited {
		if pr.caps.prefetch != nil {
			pr.caps.prefetch.PrefetchStack(st.Tid)
		}
	}
}

func (s *session) upstream() Upstream {
	if pr := s.srv.proc; pr != nil {
		return pr.caps.upstream
	}
	return nil
}

// handle answers packets that work on the current process (or need none),
// passing to the upstream in proxy mode what the server does not answer
// itself. It runs on the process's tracer thread when there is a process.
func (s *session) handle(pkt string) [][]byte {
	u := s.upstream()
	if u == nil {
		return s.handleLocal(pkt)
	}
	if forward(pkt) {
		if out, ok := refuseSpecialFile(pkt); ok {
			return out
		}
		return s.forward(u, pkt)
	}
	out := s.handleLocal(pkt)
	if len(out) == 1 && len(out[0]) == 0 && forwardWhenUnknown(pkt) {
		return s.forward(u, pkt)
	}
	if strings.HasPrefix(pkt, "vFile:") && len(out) == 1 && bytes.HasPrefix(out[0], []byte("F-1,")) {
		// The upstream may see files the proxy does not.
		if fwd := s.forward(u, pkt); len(fwd) > 0 && len(fwd[len(fwd)-1]) > 0 {
			return fwd
		}
	}
	return out
}

// refuseSpecialFile answers a vFile:open of a path that is here and no
// regular file (a FIFO, a device, a directory): the upstream, on this
// machine as a rule, would block on it, and the proxy with it, as the
// server itself would without its own check (hostFS.Open). stat does not
// block on a FIFO.
func refuseSpecialFile(pkt string) ([][]byte, bool) {
	args, ok := strings.CutPrefix(pkt, "vFile:open:")
	if !ok {
		return nil, false
	}
	hexName, _, _ := strings.Cut(args, ",")
	name, err := wire.DecodeHex(hexName)
	if err != nil {
		return nil, false
	}
	fi, err := os.Stat(string(name))
	if err != nil || fi.Mode().IsRegular() {
		return nil, false
	}
	if fi.IsDir() {
		return fileError(syscall.EISDIR), true
	}
	return fileError(syscall.EINVAL), true
}

// forward reports the packets that always go to the upstream: hardware
// breakpoints and watchpoints (its debug registers), vFile (its files),
// and monitor commands that are not rseqdbg's.
func forward(pkt string) bool {
	switch {
	case len(pkt) >= 2 && (pkt[0] == 'Z' || pkt[0] == 'z') && pkt[1] >= '1' && pkt[1] <= '4':
		return true
	case strings.HasPrefix(pkt, "vFile:"):
		return true
	case strings.HasPrefix(pkt, "qRcmd,"):
		cmd, err := wire.DecodeHex(pkt[len("qRcmd,"):])
		if err != nil {
			return false
		}
		f := strings.Fields(string(cmd))
		return len(f) > 0 && f[0] != "rseq"
	}
	return false
}

// forwardWhenUnknown reports the packets the server answered as unknown
// that the upstream may implement: queries and settings (qOffsets,
// qGetTLSAddr, qCRC, qSearch:memory, qTStatus, QCatchSyscalls, ...), never
// anything that resumes, ends or reconfigures the connection.
func forwardWhenUnknown(pkt string) bool {
	if pkt == "" || (pkt[0] != 'q' && pkt[0] != 'Q') {
		return false
	}
	for _, p := range []string{"qSupported", "QStartNoAckMode", "QNonStop", "QThreadEvents", "QListThreadsInStopReply", "QThreadSuffixSupported"} {
		if strings.HasPrefix(pkt, p) {
			return false
		}
	}
	return true
}

func (s *session) forward(u Upstream, pkt string) [][]byte {
	out, err := u.Forward([]byte(pkt))
	if err != nil {
		slog.Error("forwarding to the upstream", "packet", wire.Clip(pkt), "err", err)
		return replyErr
	}
	s.noteHWBreak(pkt, out)
	return out
}

// noteHWBreak remembers the hardware breakpoints the upstream accepted, so
// that their stops are reported as breakpoints, not watchpoints, and every
// Z1-Z4 it holds, so that a client's disconnect can remove them.
func (s *session) noteHWBreak(pkt string, out [][]byte) {
	if len(pkt) < 3 || pkt[1] < '1' || pkt[1] > '4' || (pkt[0] != 'Z' && pkt[0] != 'z') || len(out) == 0 || string(out[len(out)-1]) != "OK" {
		return
	}
	if s.upstreamZ == nil {
		s.upstreamZ = map[string]int{}
	}
	if key, _, _ := strings.Cut(pkt[1:], ";"); pkt[0] == 'Z' {
		s.upstreamZ[key]++
	} else if s.upstreamZ[key]--; s.upstreamZ[key] <= 0 {
		delete(s.upstreamZ, key)
	}
	if pkt[1] != '1' {
		return
	}
	f := strings.SplitN(pkt[3:], ",", 2)
	addr, err := wire.ParseHexUint64(f[0])
	if err != nil {
		return
	}
	if s.hwBreaks == nil {
		s.hwBreaks = map[uint64]int{}
	}
	if pkt[0] == 'Z' {
		s.hwBreaks[addr]++
	} else if s.hwBreaks[addr]--; s.hwBreaks[addr] <= 0 {
		delete(s.hwBreaks, addr)
	}
}

func (s *session) upstreamHWBreak(addr uint64) bool { return s.hwBreaks[addr] > 0 }

// removeUpstreamZ removes the hardware breakpoints and watchpoints the
// client had the upstream insert; on the target thread.
func (s *session) removeUpstreamZ(u Upstream) {
	if u == nil {
		return
	}
	for key := range s.upstreamZ {
		if _, err := u.Forward([]byte("z" + key)); err != nil {
			slog.Warn("removing a client's watchpoint from the upstream", "packet", "z"+key, "err", err)
		}
	}
	s.upstreamZ, s.hwBreaks = nil, nil
}

// proxyLifecycle refuses what a proxy cannot do: its process is the
// upstream's, so it cannot run or attach to another.
func (s *session) proxyLifecycle(pkt string) ([][]byte, bool) {
	if s.upstream() == nil && s.srv.cfg.Proxy == nil {
		return nil, false
	}
	if strings.HasPrefix(pkt, "vRun;") || strings.HasPrefix(pkt, "vAttach;") {
		slog.Error("a proxy serves the upstream's process only", "packet", wire.Clip(pkt))
		return replyErr, true
	}
	return nil, false
}

// upstreamLibrariesDoc is the upstream's own library list when it has one,
// merged with the proxy's additions.
func (s *session) upstreamLibrariesDoc() ([]byte, bool) {
	pr := s.live()
	if pr == nil {
		return nil, false
	}
	u := pr.caps.libraries
	if u == nil {
		return nil, false
	}
	doc, err := u.Libraries()
	if err != nil {
		slog.Debug("upstream library list", "err", err)
		return nil, false
	}
	return insertLibraries(withLmid(doc), s.extraLibraries()), true
}

var libraryElement = regexp.MustCompile(`<library\s[^>]*?/?>`)

// withLmid gives every library of an upstream's list the namespace
// attribute gdb 13 requires and lldb-server leaves out (its objects are
// all in the initial namespace, 0).
func withLmid(doc []byte) []byte {
	return libraryElement.ReplaceAllFunc(doc, func(el []byte) []byte {
		if bytes.Contains(el, []byte(" lmid=")) {
			return el
		}
		end := len(el) - 1
		if bytes.HasSuffix(el, []byte("/>")) {
			end--
		}
		out := append([]byte(nil), el[:end]...)
		out = append(bytes.TrimRight(out, " \t\n"), ` lmid="0x0"`...)
		return append(out, el[end:]...)
	})
}

// extraLibraries are <library> elements the server adds to a library list
// it did not build itself: the synthesized CFI object. gdb reads it
// through vFile, which the proxy passes to the upstream, so it reaches gdb
// when the upstream runs on this machine (gdbserver, qemu-user here); with
// a remote upstream, `monitor rseq cfi` gives the path for add-symbol-file.
func (s *session) extraLibraries() []string {
	pr := s.live()
	if pr == nil {
		return nil
	}
	if e := strings.TrimSpace(s.synthLibraryEntry(pr)); e != "" {
		return []string{e}
	}
	return nil
}

// insertLibraries adds library elements to a library-list-svr4 document,
// before its closing tag (or expanding a self-closed root).
func insertLibraries(doc []byte, libs []string) []byte {
	if len(libs) == 0 {
		return doc
	}
	add := strings.Join(libs, "\n") + "\n"
	s := string(doc)
	if i := strings.LastIndex(s, "</library-list-svr4>"); i >= 0 {
		return []byte(s[:i] + add + s[i:])
	}
	if i := strings.Index(s, "<library-list-svr4"); i >= 0 {
		if j := strings.Index(s[i:], "/>"); j >= 0 {
			j += i
			return []byte(s[:j] + ">\n" + add + "</library-list-svr4>" + s[j+2:])
		}
	}
	return doc
}

// rseqNote is the target's explanation for a thread without an rseq area.
func (pr *process) rseqNote(tid int) string {
	if n := pr.caps.rseqNote; n != nil {
		if note := n.RseqNote(tid); note != "" {
			return fmt.Sprintf(" (%s)", note)
		}
	}
	return ""
}
