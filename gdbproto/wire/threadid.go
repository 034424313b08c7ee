package wire

import (
	"fmt"
	"math"
	"strings"
)

// ThreadID is a thread-id in the protocol's syntax. In each field -1 means
// "all" and 0 means "any"; otherwise it is a positive process or thread id.
// The plain (non-multiprocess) syntax carries no pid: it parses with Pid 0,
// except plain "-1", which means every thread and parses as [ThreadAll].
type ThreadID struct {
	Pid int64
	Tid int64
}

var (
	// ThreadAll is "-1": every thread of every process.
	ThreadAll = ThreadID{Pid: -1, Tid: -1}
	// ThreadAny is "0": whichever thread the server picks.
	ThreadAny = ThreadID{Pid: 0, Tid: 0}
)

// ParseThreadID parses "p<pid>.<tid>", "p<pid>" (all threads of pid), and the
// plain forms "<tid>", "-1" and "0". pid and tid are hex, or -1.
func ParseThreadID(s string) (ThreadID, error) {
	if rest, ok := strings.CutPrefix(s, "p"); ok {
		pidStr, tidStr, hasTid := strings.Cut(rest, ".")
		pid, err := parseIDField(pidStr)
		if err != nil {
			return ThreadID{}, fmt.Errorf("thread-id %q: pid: %w", Clip(s), err)
		}
		if !hasTid {
			return ThreadID{Pid: pid, Tid: -1}, nil
		}
		tid, err := parseIDField(tidStr)
		if err != nil {
			return ThreadID{}, fmt.Errorf("thread-id %q: tid: %w", Clip(s), err)
		}
		return ThreadID{Pid: pid, Tid: tid}, nil
	}
	tid, err := parseIDField(s)
	if err != nil {
		return ThreadID{}, fmt.Errorf("thread-id %q: %w", Clip(s), err)
	}
	if tid == -1 {
		return ThreadAll, nil
	}
	return ThreadID{Tid: tid}, nil
}

func parseIDField(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	v, err := ParseHexUint64(s)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%w: id %q out of range", ErrSyntax, Clip(s))
	}
	return int64(v), nil
}

// AppendTo appends t in multiprocess syntax ("p<pid>.<tid>") or, when
// multiprocess is false, as the bare tid. Use the multiprocess form only after
// the peer has agreed to "multiprocess+" in qSupported.
func (t ThreadID) AppendTo(dst []byte, multiprocess bool) []byte {
	if multiprocess {
		dst = append(dst, 'p')
		dst = appendIDField(dst, t.Pid)
		dst = append(dst, '.')
	}
	return appendIDField(dst, t.Tid)
}

// String returns t in multiprocess syntax.
func (t ThreadID) String() string { return string(t.AppendTo(nil, true)) }

func appendIDField(dst []byte, v int64) []byte {
	if v < 0 {
		return append(dst, '-', '1')
	}
	return AppendHexUint64(dst, uint64(v))
}
