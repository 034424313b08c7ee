package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Kind says what a [Message] read from the wire is.
type Kind uint8

const (
	// KindPacket is a "$payload#xx" packet.
	KindPacket Kind = iota + 1
	// KindNotification is a "%payload#xx" notification (non-stop mode).
	// Notifications are never acknowledged.
	KindNotification
	// KindInterrupt is the 0x03 byte a client sends outside any packet to
	// stop a running target.
	KindInterrupt
	// KindAck is '+': the peer received our last packet intact.
	KindAck
	// KindNak is '-': the peer wants our last packet again.
	KindNak
)

func (k Kind) String() string {
	switch k {
	case KindPacket:
		return "packet"
	case KindNotification:
		return "notification"
	case KindInterrupt:
		return "interrupt"
	case KindAck:
		return "ack"
	case KindNak:
		return "nak"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Message is one unit read from the wire.
type Message struct {
	Kind Kind
	// Payload is the unescaped, run-length expanded content of a packet or
	// notification. It is freshly allocated for each message.
	Payload []byte
	// BadChecksum reports that a packet or notification failed its
	// integrity check: checksum mismatch, checksum digits that are not hex,
	// or an invalid run-length or escape sequence. Payload is then
	// unreliable; in ack mode a receiver answers with '-'.
	BadChecksum bool
}

// DefaultMaxPacketSize is the payload limit used when NewReader or NewConn is
// given a size <= 0. It comfortably exceeds a full amd64 g reply with AVX
// (1632 hex digits) and the PacketSize a server would normally advertise.
const DefaultMaxPacketSize = 64 << 10

// ErrTooLarge is wrapped by [Reader.Next] when a packet's decoded payload
// exceeds the reader's limit. The rest of the packet has been consumed, so the
// stream is still in step and reading can go on.
var ErrTooLarge = errors.New("gdbproto: packet exceeds maximum size")

// Reader splits a byte stream into protocol messages. It is not safe for
// concurrent use.
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte // scratch for the payload being decoded; cap(buf) <= max
}

// NewReader returns a Reader that rejects packets whose decoded payload is
// longer than maxSize bytes (DefaultMaxPacketSize if maxSize <= 0).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxPacketSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 4096), max: maxSize}
}

// wait blocks until a byte can be read, consuming nothing; an error (a
// read deadline passing, say) leaves the Reader usable.
func (r *Reader) wait() error {
	_, err := r.br.Peek(1)
	return err
}

// ready drops buffered line noise and reports whether a message begins in
// what is buffered, so that reading it will not wait for its first byte.
func (r *Reader) ready() bool {
	for r.br.Buffered() > 0 {
		b, _ := r.br.Peek(1)
		switch b[0] {
		case '+', '-', 0x03, '$', '%':
			return true
		}
		r.br.Discard(1)
	}
	return false
}

// Next returns the next message. Bytes outside a frame that are not '+',
// '-', 0x03, '$' or '%' are skipped as line noise. It returns io.EOF if the
// stream ends between messages and io.ErrUnexpectedEOF if it ends inside one.
// An oversized packet yields a Message carrying only its Kind together with an
// error wrapping ErrTooLarge; the Reader stays usable.
func (r *Reader) Next() (Message, error) {
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			return Message{}, err
		}
		switch b {
		case '+':
			return Message{Kind: KindAck}, nil
		case '-':
			return Message{Kind: KindNak}, nil
		case 0x03:
			return Message{Kind: KindInterrupt}, nil
		case '$':
			return r.readFrame(KindPacket)
		case '%':
			return r.readFrame(KindNotification)
		}
	}
}

// frame is the decoding state of one frame. Run-length expansion works on
// the raw byte stream and unescaping on its result, in that order, because
// that is how gdbserver encodes (escape, then compress) and how gdb decodes.
type frame struct {
	buf      []byte
	max      int
	sum      byte // checksum of the raw bytes between the delimiters
	prev     int  // last raw byte of the expanded stream, -1 if none yet
	escaped  bool // the previous raw byte was an unconsumed '}'
	corrupt  bool
	tooLarge bool
}

// put feeds one raw (post-run-length) byte through the unescaper.
func (f *frame) put(raw byte) {
	b := raw
	switch {
	case f.escaped:
		f.escaped = false
		b = raw ^ 0x20
	case raw == '}':
		f.escaped = true
		return
	}
	if len(f.buf) == cap(f.buf) {
		if len(f.buf) >= f.max {
			// Keep consuming so the stream stays in step, but store
			// nothing more.
			f.tooLarge = true
			return
		}
		// Grow by hand so the scratch buffer never exceeds max, whatever
		// append's growth policy would do.
		grown := make([]byte, len(f.buf), min(max(2*cap(f.buf), 256), f.max))
		copy(grown, f.buf)
		f.buf = grown
	}
	f.buf = append(f.buf, b)
}

func (r *Reader) readFrame(kind Kind) (Message, error) {
restart:
	f := frame{buf: r.buf[:0], max: r.max, prev: -1}
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			return Message{}, unexpected(err)
		}
		switch b {
		case '$':
			// A new packet started before this one ended: the sender gave up
			// on it (or bytes were lost). Follow the new one.
			r.buf = f.buf[:0]
			kind = KindPacket
			goto restart
		case '#':
			return r.finishFrame(kind, &f)
		case '*':
			f.sum += b
			c, err := r.br.ReadByte()
			if err != nil {
				return Message{}, unexpected(err)
			}
			if c == '#' || c == '$' {
				// Senders never use these as counts; treating them as
				// delimiters keeps a damaged stream in step.
				f.corrupt = true
				if err := r.br.UnreadByte(); err != nil {
					return Message{}, fmt.Errorf("gdbproto: unread: %w", err)
				}
				continue
			}
			f.sum += c
			n := int(c) - 29
			if f.prev < 0 || n <= 0 {
				f.corrupt = true
				continue
			}
			for range n {
				f.put(byte(f.prev))
				if f.tooLarge {
					break
				}
			}
		default:
			f.sum += b
			f.put(b)
			f.prev = int(b)
		}
	}
}

func (r *Reader) finishFrame(kind Kind, f *frame) (Message, error) {
	r.buf = f.buf[:0] // keep the grown scratch buffer; it never exceeds max
	var digits [2]int
	for i := range digits {
		c, err := r.br.ReadByte()
		if err != nil {
			return Message{}, unexpected(err)
		}
		if c == '$' || c == '%' {
			// The checksum was cut short by the next frame; let Next see it.
			if err := r.br.UnreadByte(); err != nil {
				return Message{}, fmt.Errorf("gdbproto: unread: %w", err)
			}
			digits[0] = -1
			break
		}
		digits[i] = unhex(c)
	}
	if f.tooLarge {
		return Message{Kind: kind}, fmt.Errorf("%w (%d bytes)", ErrTooLarge, f.max)
	}
	bad := f.corrupt || f.escaped || digits[0] < 0 || digits[1] < 0 ||
		byte(digits[0]<<4|digits[1]) != f.sum
	payload := make([]byte, len(f.buf))
	copy(payload, f.buf)
	return Message{Kind: kind, Payload: payload, BadChecksum: bad}, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPacket appends payload framed as "$payload#xx" to dst, escaping the
// bytes '#', '$', '}' and '*'. It never run-length encodes.
func AppendPacket(dst, payload []byte) []byte {
	dst = append(dst, '$')
	n := len(dst)
	dst = AppendEscapedBinary(dst, payload)
	var sum byte
	for _, b := range dst[n:] {
		sum += b
	}
	return append(dst, '#', hexDigits[sum>>4], hexDigits[sum&0xf])
}

// AppendNotification frames payload as a notification ("%payload#xx"), the
// asynchronous messages of non-stop mode, which are never acknowledged.
func AppendNotification(dst, payload []byte) []byte {
	n := len(dst)
	dst = AppendPacket(dst, payload)
	dst[n] = '%'
	return dst
}
