package wire

import (
	"fmt"
	"strings"
)

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
