package wire

import (
	"errors"
	"fmt"
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

// Clip bounds the length of peer-controlled text quoted in error messages.
func Clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
