package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// StopPair is one "key:value;" element of a T stop reply. Key is a register
// number in hex (see [RegisterPair]) or a name such as "thread", "core",
// "swbreak", "watch" or "library"; Value may be empty ("swbreak:;").
type StopPair struct {
	Key   string
	Value string
}

// RegisterPair returns the pair that expedites a register in a T reply: the
// gdb register number in hex and the raw register bytes in hex.
func RegisterPair(regnum int, value []byte) StopPair {
	return StopPair{
		Key:   string(AppendHexUint64(nil, uint64(max(regnum, 0)))),
		Value: string(AppendHex(nil, value)),
	}
}

// ThreadPair returns the "thread:<id>" pair of a T reply.
func ThreadPair(t ThreadID, multiprocess bool) StopPair {
	return StopPair{Key: "thread", Value: string(t.AppendTo(nil, multiprocess))}
}

// AppendStopReply appends a "T<sig>key:value;..." stop reply. It refuses keys
// containing ':' or ';' and values containing ';', because the peer would split
// them differently from how they were meant.
func AppendStopReply(dst []byte, signal uint8, pairs ...StopPair) ([]byte, error) {
	n := len(dst)
	dst = append(dst, 'T', hexDigits[signal>>4], hexDigits[signal&0xf])
	for _, p := range pairs {
		if p.Key == "" || strings.ContainsAny(p.Key, ":;") || strings.Contains(p.Value, ";") {
			return dst[:n], fmt.Errorf("%w: stop-reply pair %q:%q", ErrSyntax, Clip(p.Key), Clip(p.Value))
		}
		dst = append(dst, p.Key...)
		dst = append(dst, ':')
		dst = append(dst, p.Value...)
		dst = append(dst, ';')
	}
	return dst, nil
}

// StopReply is a parsed stop reply: T/S (a stop), W/X (the process
// ended), w (a thread ended) or N (no resumed thread left).
type StopReply struct {
	Kind   byte  // 'T' (S is reported as T), 'W', 'X', 'w', 'N'
	Signal uint8 // gdb's number, for T and X
	Code   int   // exit status, for W and w
	// Thread is the thread: for T, or the thread that ended for w; for W
	// and X, Pid carries "process:" when given.
	Thread    ThreadID
	HasThread bool
	// Regs are the expedited registers by number (raw target bytes).
	Regs map[int][]byte
	// Reason is the stop reason key: swbreak, hwbreak, watch, rwatch,
	// awatch, create, library, exec, fork, vfork, ... or "".
	Reason string
	// Addr is the data address of a watchpoint stop.
	Addr uint64
}

// ParseStopReply parses a stop reply packet.
func ParseStopReply(p []byte) (StopReply, error) {
	if len(p) == 0 {
		return StopReply{}, fmt.Errorf("%w: empty stop reply", ErrSyntax)
	}
	s := string(p)
	st := StopReply{Kind: p[0]}
	num := func(h string) (uint64, error) { return ParseHexUint64(h) }
	switch p[0] {
	case 'N':
		return st, nil
	case 'W', 'X', 'w':
		body, rest, _ := strings.Cut(s[1:], ";")
		v, err := num(body)
		if err != nil || v > 0xff {
			return StopReply{}, fmt.Errorf("%w: stop reply %q", ErrSyntax, Clip(s))
		}
		if p[0] == 'X' {
			st.Signal = uint8(v)
		} else {
			st.Code = int(v)
		}
		if p[0] == 'w' {
			id, err := ParseThreadID(rest)
			if err != nil {
				return StopReply{}, err
			}
			st.Thread, st.HasThread = id, true
		} else if pid, ok := strings.CutPrefix(rest, "process:"); ok {
			if v, err := num(pid); err == nil {
				st.Thread.Pid = int64(v)
			}
		}
		return st, nil
	case 'S', 'T':
		st.Kind = 'T'
		if len(s) < 3 {
			return StopReply{}, fmt.Errorf("%w: stop reply %q", ErrSyntax, Clip(s))
		}
		v, err := num(s[1:3])
		if err != nil {
			return StopReply{}, fmt.Errorf("%w: stop reply %q", ErrSyntax, Clip(s))
		}
		st.Signal = uint8(v)
		for _, item := range strings.Split(s[3:], ";") {
			if item == "" {
				continue
			}
			k, v, _ := strings.Cut(item, ":")
			switch k {
			case "thread":
				id, err := ParseThreadID(v)
				if err != nil {
					return StopReply{}, err
				}
				st.Thread, st.HasThread = id, true
			case "watch", "rwatch", "awatch":
				st.Reason = k
				st.Addr, _ = num(v)
			case "swbreak", "hwbreak", "create", "library", "exec", "fork", "vfork", "vforkdone",
				"syscall_entry", "syscall_return", "replaylog", "no_resumed":
				st.Reason = k
			default:
				// A register number in hex, or a key this client ignores.
				if n, err := strconv.ParseUint(k, 16, 16); err == nil && len(k) <= 4 {
					if b, err := DecodeHex(v); err == nil {
						if st.Regs == nil {
							st.Regs = map[int][]byte{}
						}
						st.Regs[int(n)] = b
					}
				}
			}
		}
		return st, nil
	}
	return StopReply{}, fmt.Errorf("%w: not a stop reply: %q", ErrSyntax, Clip(s))
}
