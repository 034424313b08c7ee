package gdbproto

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/rseqdbg/rseqdbg/agentexpr"
	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	sess "github.com/rseqdbg/rseqdbg/session"
)

// maxMemoryRead bounds one m or x reply: twice this in hex still fits the
// packet size we advertise.
const maxMemoryRead = packetSize/2 - 16

// parseAddrLen parses "addr,length".
func parseAddrLen(s string) (addr, length uint64, err error) {
	a, l, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, wire.ErrSyntax
	}
	if addr, err = wire.ParseHexUint64(a); err != nil {
		return 0, 0, err
	}
	if length, err = wire.ParseHexUint64(l); err != nil {
		return 0, 0, err
	}
	return addr, length, nil
}

// memory answers m, M, x and X. Reads hide our breakpoints and writes keep
// them (the target does both); writes go through the engine so it forgets
// instructions it decoded there.
func (s *session) memory(pkt string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	switch pkt[0] {
	case 'm', 'x':
		addr, length, err := parseAddrLen(pkt[1:])
		if err != nil {
			return replyErr
		}
		if length == 0 {
			// lldb probes for x support with "x0,0".
			return replyOK
		}
		buf := make([]byte, min(length, maxMemoryRead))
		n, _ := pr.p.ReadMemory(addr, buf)
		if n <= 0 {
			return replyErr
		}
		if pkt[0] == 'x' {
			// Binary as is: the framing layer escapes it.
			return [][]byte{buf[:n]}
		}
		return [][]byte{wire.AppendHex(nil, buf[:n])}
	case 'M', 'X':
		head, data, found := strings.Cut(pkt[1:], ":")
		if !found {
			return replyErr
		}
		addr, length, err := parseAddrLen(head)
		if err != nil {
			return replyErr
		}
		var b []byte
		if pkt[0] == 'M' {
			if b, err = wire.DecodeHex(data); err != nil {
				return replyErr
			}
		} else {
			// Already unescaped by the framing layer (see doc.go).
			b = []byte(data)
		}
		if uint64(len(b)) != length {
			return replyErr
		}
		if length == 0 {
			return replyOK
		}
		if n, err := pr.eng.WriteMemory(addr, b); err != nil || n != len(b) {
			return replyErr
		}
		return replyOK
	}
	return replyEmpty
}

// breakpoint answers Z and z: software breakpoints become engine
// breakpoints, the rest debug registers.
func (s *session) breakpoint(pkt string) [][]byte {
	pr := s.live()
	if pr == nil {
		return replyErr
	}
	insert := pkt[0] == 'Z'
	fields := strings.SplitN(pkt[1:], ",", 3)
	if len(fields) != 3 || len(fields[0]) != 1 {
		return replyErr
	}
	addr, err := wire.ParseHexUint64(fields[1])
	if err != nil {
		return replyErr
	}
	kindStr, extra, _ := strings.Cut(fields[2], ";")
	kind, err := wire.ParseHexUint64(kindStr)
	if err != nil {
		return replyErr
	}
	conds, err := agentConditions(extra)
	if err != nil {
		return replyErr
	}
	if r := regionAt(pr.eng, addr); insert && s.ns.on && r != nil && (fields[0][0] == '0' || fields[0][0] == '1') {
		// In non-stop mode gdb steps a thread over its breakpoint by
		// displaced stepping: the instruction, copied next to the entry
		// point, would run out of place, outside the section, and the
		// kernel would then drop the section's protection (contract
		// point 6). Refused rather than silently unprotected.
		slog.Warn("breakpoint inside a critical section refused in non-stop mode", "addr", fmt.Sprintf("%#x", addr), "section", r.Name)
		return replyErr
	}
	switch fields[0][0] {
	case '0':
		// gdb keeps its counts; its conditions come as bytecode
		// (ConditionalBreakpoints) and are decided here, with no round
		// trip per hit. A Z0 for an address gdb already has is its new
		// condition list.
		if insert {
			pr.rc.DeleteAt(addr)
			bp, err := pr.rc.Set(sess.Spec{Kind: sess.AtAddr, Addr: addr}, sess.Options{Agent: conds})
			if err != nil {
				return replyErr
			}
			if bp.Pending() {
				// Not inserted (unmapped address): gdb must hear of it.
				pr.rc.Delete(bp.ID)
				return replyErr
			}
			return replyOK
		}
		if _, err := pr.rc.DeleteAt(addr); err != nil {
			return replyErr
		}
		return replyOK
	case '1', '2', '4':
		typ := fields[0][0]
		if typ == '1' {
			kind = 1
		}
		if insert {
			if !s.srv.debugRegistersWork(pr.p.ExecPath()) {
				return replyErr
			}
			if err := pr.hw.insert(pr.p, typ, addr, kind); err != nil {
				return replyErr
			}
			return replyOK
		}
		pr.hw.remove(pr.p, typ, addr, kind)
		return replyOK
	}
	// Z3 (read watchpoints): x86 cannot watch reads alone.
	return replyEmpty
}

// agentConditions reads the ";X len,bytes" conditions gdb appends to a Z0
// packet (commands, ";cmds:...", are not announced and not expected).
func agentConditions(extra string) ([][]byte, error) {
	var out [][]byte
	for _, f := range strings.Split(extra, ";") {
		if f == "" {
			continue
		}
		if f[0] != 'X' {
			return nil, fmt.Errorf("breakpoint option %q", f)
		}
		n, hexCode, ok := strings.Cut(f[1:], ",")
		size, err := wire.ParseHexUint64(n)
		if !ok || err != nil || size == 0 || size > 4096 || uint64(len(hexCode)) != 2*size {
			return nil, fmt.Errorf("breakpoint condition %q", f)
		}
		code, err := wire.DecodeHex(hexCode)
		if err != nil {
			return nil, err
		}
		if err := agentexpr.Validate(code); err != nil {
			return nil, err
		}
		out = append(out, code)
	}
	return out, nil
}
