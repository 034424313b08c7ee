package wire

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrSyntax is wrapped by every error this package returns for malformed
// protocol text, so a server can answer any of them with one error reply.
var ErrSyntax = errors.New("gdbproto: syntax error")

const hexDigits = "0123456789abcdef"

// unhex returns the value of a hex digit, or -1. Both cases are accepted
// because gdb and lldb emit lower case but the protocol allows either.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// AppendHex appends the lower-case hex encoding of src to dst.
func AppendHex(dst, src []byte) []byte {
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// DecodeHex decodes an even-length string of hex digits.
func DecodeHex(s string) ([]byte, error) {
	return AppendDecodeHex(make([]byte, 0, len(s)/2), s)
}

// AppendDecodeHex decodes an even-length string of hex digits and appends the
// bytes to dst. On error dst is returned unchanged.
func AppendDecodeHex(dst []byte, s string) ([]byte, error) {
	if len(s)%2 != 0 {
		return dst, fmt.Errorf("%w: hex data has odd length %d", ErrSyntax, len(s))
	}
	n := len(dst)
	for i := 0; i < len(s); i += 2 {
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi < 0 || lo < 0 {
			return dst[:n], fmt.Errorf("%w: invalid hex digit in %q at offset %d", ErrSyntax, Clip(s), i)
		}
		dst = append(dst, byte(hi<<4|lo))
	}
	return dst, nil
}

// ParseHexUint64 parses a non-empty, unsigned hex number without prefix, as
// used for addresses, lengths and register numbers.
func ParseHexUint64(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty hex number", ErrSyntax)
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := unhex(s[i])
		if d < 0 {
			return 0, fmt.Errorf("%w: invalid hex number %q", ErrSyntax, Clip(s))
		}
		if v>>60 != 0 {
			return 0, fmt.Errorf("%w: hex number %q overflows 64 bits", ErrSyntax, Clip(s))
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}

// AppendHexUint64 appends v in hex without leading zeros ("0" for zero), the
// form gdb uses for addresses, lengths and thread ids.
func AppendHexUint64(dst []byte, v uint64) []byte {
	if v == 0 {
		return append(dst, '0')
	}
	var buf [16]byte
	i := len(buf)
	for v != 0 {
		i--
		buf[i] = hexDigits[v&0xf]
		v >>= 4
	}
	return append(dst, buf[i:]...)
}

// AppendUint64LE appends the low size bytes of v as hex in target
// (little-endian) byte order, the encoding of a register value in g, p and
// T packets. Sizes above 8 are zero-extended, so a 10-byte st register can be
// written from its mantissa only when that is what the caller wants.
func AppendUint64LE(dst []byte, v uint64, size int) []byte {
	for i := 0; i < size; i++ {
		b := byte(0)
		if i < 8 {
			b = byte(v >> (8 * i))
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// ParseUint64LE parses a register value of 1 to 8 bytes sent as hex in
// little-endian byte order, as in a P packet.
func ParseUint64LE(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 16 || len(s)%2 != 0 {
		return 0, fmt.Errorf("%w: register value %q is not 1 to 8 hex-encoded bytes", ErrSyntax, Clip(s))
	}
	var v uint64
	for i := 0; i < len(s); i += 2 {
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi < 0 || lo < 0 {
			return 0, fmt.Errorf("%w: invalid hex digit in register value %q", ErrSyntax, Clip(s))
		}
		v |= uint64(hi<<4|lo) << (4 * i)
	}
	return v, nil
}

// AppendUnavailable appends the "xx" marker gdb understands as "value not
// available" for a register of size bytes in a g or p reply.
func AppendUnavailable(dst []byte, size int) []byte {
	for i := 0; i < 2*size; i++ {
		dst = append(dst, 'x')
	}
	return dst
}

// needsEscape reports whether b must be escaped in a frame: '#' and '$'
// delimit frames, '}' is the escape byte itself, and '*' would otherwise be
// read as a run-length marker by gdb.
func needsEscape(b byte) bool {
	return b == '#' || b == '$' || b == '}' || b == '*'
}

// AppendEscapedBinary appends src to dst in the protocol's binary encoding.
// The framing layer already applies it to whole payloads (see the package
// documentation); do not apply it twice.
func AppendEscapedBinary(dst, src []byte) []byte {
	for _, b := range src {
		if needsEscape(b) {
			dst = append(dst, '}', b^0x20)
		} else {
			dst = append(dst, b)
		}
	}
	return dst
}

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

// XferRead is a parsed "qXfer:<object>:read:<annex>:<offset>,<length>".
type XferRead struct {
	Object string // e.g. "features", "threads", "auxv"
	Annex  string // e.g. "target.xml"; often empty
	Offset uint64
	Length uint64
}

// ParseXferRead parses a qXfer read request. Any other qXfer operation (such
// as write) is a syntax error, so callers can tell "unsupported" apart by
// checking the prefix themselves first.
func ParseXferRead(payload string) (XferRead, error) {
	rest, ok := strings.CutPrefix(payload, "qXfer:")
	if !ok {
		return XferRead{}, fmt.Errorf("%w: %q is not a qXfer packet", ErrSyntax, Clip(payload))
	}
	object, rest, ok1 := strings.Cut(rest, ":")
	op, rest, ok2 := strings.Cut(rest, ":")
	// The annex may itself contain ':', so the offset is after the last one.
	i := strings.LastIndexByte(rest, ':')
	if !ok1 || !ok2 || op != "read" || object == "" || i < 0 {
		return XferRead{}, fmt.Errorf("%w: malformed qXfer read %q", ErrSyntax, Clip(payload))
	}
	offStr, lenStr, ok := strings.Cut(rest[i+1:], ",")
	if !ok {
		return XferRead{}, fmt.Errorf("%w: qXfer read %q lacks offset,length", ErrSyntax, Clip(payload))
	}
	off, err := ParseHexUint64(offStr)
	if err != nil {
		return XferRead{}, fmt.Errorf("qXfer read offset: %w", err)
	}
	length, err := ParseHexUint64(lenStr)
	if err != nil {
		return XferRead{}, fmt.Errorf("qXfer read length: %w", err)
	}
	return XferRead{Object: object, Annex: rest[:i], Offset: off, Length: length}, nil
}

// XferChunk returns the reply to a qXfer read of doc at offset for length
// bytes: 'l' plus the final piece, or 'm' plus a piece when more follows. The
// data is unescaped (the framing layer escapes it), but the piece is cut so
// that once escaped the reply payload is at most length+1 bytes, because the
// peer sized length to fit its packet buffer. At least one byte is returned
// whenever any remain and length > 0, so a reader always makes progress.
func XferChunk(doc []byte, offset, length uint64) []byte {
	if offset >= uint64(len(doc)) {
		return []byte{'l'}
	}
	rest := doc[offset:]
	var n, encoded uint64
	for n < uint64(len(rest)) {
		w := uint64(1)
		if needsEscape(rest[n]) {
			w = 2
		}
		if encoded+w > length && !(n == 0 && length > 0) {
			break
		}
		encoded += w
		n++
	}
	kind := byte('m')
	if n == uint64(len(rest)) {
		kind = 'l'
	}
	out := make([]byte, 0, 1+n)
	out = append(out, kind)
	return append(out, rest[:n]...)
}

// VContAction is one action of a vCont packet.
type VContAction struct {
	// Action is 'c' (continue), 'C' (continue with signal), 's' (step),
	// 'S' (step with signal), 't' (stop) or 'r' (range step).
	Action byte
	// Signal is the signal to deliver for 'C' and 'S'.
	Signal uint8
	// RangeStart and RangeEnd bound an 'r' action: step while
	// RangeStart <= pc < RangeEnd.
	RangeStart, RangeEnd uint64
	// Thread is the thread the action applies to; [ThreadAll] when the
	// packet names none.
	Thread ThreadID
}

// ParseVCont parses "vCont;action[:thread-id][;action[:thread-id]]...". The
// peer expects each thread to take the leftmost action that matches it, so
// the order of the result matters. "vCont?" is a query, not a request, and is
// rejected.
func ParseVCont(payload string) ([]VContAction, error) {
	rest, ok := strings.CutPrefix(payload, "vCont;")
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a vCont request", ErrSyntax, Clip(payload))
	}
	var acts []VContAction
	for {
		item, more, found := strings.Cut(rest, ";")
		a, err := parseVContAction(item)
		if err != nil {
			return nil, fmt.Errorf("vCont action %d: %w", len(acts)+1, err)
		}
		acts = append(acts, a)
		if !found {
			return acts, nil
		}
		rest = more
	}
}

func parseVContAction(s string) (VContAction, error) {
	if s == "" {
		return VContAction{}, fmt.Errorf("%w: empty action", ErrSyntax)
	}
	a := VContAction{Action: s[0], Thread: ThreadAll}
	body, tid, hasTid := strings.Cut(s[1:], ":")
	if hasTid {
		t, err := ParseThreadID(tid)
		if err != nil {
			return VContAction{}, err
		}
		a.Thread = t
	}
	switch a.Action {
	case 'c', 's', 't':
		if body != "" {
			return VContAction{}, fmt.Errorf("%w: action %q takes no argument", ErrSyntax, Clip(s))
		}
	case 'C', 'S':
		sig, err := ParseHexUint64(body)
		if err != nil || sig > 0xff {
			return VContAction{}, fmt.Errorf("%w: bad signal in action %q", ErrSyntax, Clip(s))
		}
		a.Signal = uint8(sig)
	case 'r':
		startStr, endStr, ok := strings.Cut(body, ",")
		if !ok {
			return VContAction{}, fmt.Errorf("%w: range action %q lacks start,end", ErrSyntax, Clip(s))
		}
		var err error
		if a.RangeStart, err = ParseHexUint64(startStr); err != nil {
			return VContAction{}, fmt.Errorf("range start: %w", err)
		}
		if a.RangeEnd, err = ParseHexUint64(endStr); err != nil {
			return VContAction{}, fmt.Errorf("range end: %w", err)
		}
	default:
		return VContAction{}, fmt.Errorf("%w: unknown action %q", ErrSyntax, Clip(s))
	}
	return a, nil
}

// AppendVCont appends a "vCont;..." request. The thread is omitted for
// actions on [ThreadAll], which is what gdb sends for a default action.
// Actions other than those [ParseVCont] accepts are written as given.
func AppendVCont(dst []byte, actions []VContAction, multiprocess bool) []byte {
	dst = append(dst, "vCont"...)
	for _, a := range actions {
		dst = append(dst, ';', a.Action)
		switch a.Action {
		case 'C', 'S':
			dst = append(dst, hexDigits[a.Signal>>4], hexDigits[a.Signal&0xf])
		case 'r':
			dst = AppendHexUint64(dst, a.RangeStart)
			dst = append(dst, ',')
			dst = AppendHexUint64(dst, a.RangeEnd)
		}
		if a.Thread != ThreadAll {
			dst = append(dst, ':')
			dst = a.Thread.AppendTo(dst, multiprocess)
		}
	}
	return dst
}

// Clip bounds the length of peer-controlled text quoted in error messages.
func Clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
