package wire

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is the client half of the protocol: it talks to another stub
// (gdbserver, qemu-user's gdbstub, lldb-server) the way gdb does, for
// target/remote. Requests are not safe for concurrent use, except
// [Client.Interrupt], which may be called from any goroutine.
//
// Unlike [Conn], the client reads the stub in the caller's goroutine: a
// proxy sits in the middle of every round trip, and handing each reply
// from a reading goroutine to the caller costs a wake-up per packet.
type Client struct {
	rw         io.ReadWriteCloser
	rd         *Reader
	features   map[string]string
	packetSize int
	noAck      bool

	wmu  sync.Mutex // serializes writes (Interrupt comes from elsewhere)
	wbuf []byte

	errMu     sync.Mutex
	err       error // the connection is broken: every call fails with it
	closeOnce sync.Once

	// Console receives the text of O packets (the stub's console output,
	// qRcmd output arriving outside a forwarded request); nil drops it.
	Console func(text string)
	// Timeout bounds a request that is not a resumption; a stub that does
	// not answer a register read within it is taken for dead.
	Timeout time.Duration
}

// ErrUnsupported is returned when the stub answers a request with the empty
// packet: it does not implement it.
var ErrUnsupported = errors.New("gdbproto: request not supported by the stub")

// StubError is an "Exx" reply.
type StubError struct {
	Request string
	Reply   string
}

func (e *StubError) Error() string {
	return fmt.Sprintf("gdbproto: stub refused %s: %s", Clip(e.Request), Clip(e.Reply))
}

// clientFeatures is what the client offers in qSupported: what gdb 13
// offers, less fork/exec events and non-stop extras a proxy would have to
// reproduce towards its own client.
const clientFeatures = "qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;QThreadEvents+;no-resumed+;xmlRegisters=i386"

// NewClient starts a session over rw: qSupported, then no-ack mode when the
// stub offers it.
func NewClient(rw io.ReadWriteCloser) (*Client, error) {
	c := &Client{rw: rw, rd: NewReader(rw, 0), features: map[string]string{}, packetSize: 0x3fff,
		Timeout: 2 * time.Minute}
	reply, err := c.Request(clientFeatures)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("qSupported: %w", err)
	}
	for _, f := range strings.Split(string(reply), ";") {
		switch {
		case f == "":
		case strings.HasSuffix(f, "+") || strings.HasSuffix(f, "-") || strings.HasSuffix(f, "?"):
			c.features[f[:len(f)-1]] = f[len(f)-1:]
		default:
			k, v, _ := strings.Cut(f, "=")
			c.features[k] = v
		}
	}
	if v, ok := c.features["PacketSize"]; ok {
		if n, err := ParseHexUint64(v); err == nil && n >= 64 && n <= 1<<20 {
			c.packetSize = int(n)
		}
	}
	if c.Supports("QStartNoAckMode") {
		if reply, err := c.Request("QStartNoAckMode"); err == nil && string(reply) == "OK" {
			c.noAck = true
		}
	}
	return c, nil
}

// broken records why the connection can no longer be used.
func (c *Client) broken(err error) error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
		c.closeOnce.Do(func() {
			c.rw.Close()
		})
	}
	return c.err
}

// Err is why the connection broke, nil while it works.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Supports reports whether the stub announced feature+ in qSupported.
func (c *Client) Supports(feature string) bool { return c.features[feature] == "+" }

// PacketSize is the largest packet the stub accepts.
func (c *Client) PacketSize() int { return c.packetSize }

// NoAck reports whether the session runs without acknowledgements, where
// requests may be sent ahead of their replies.
func (c *Client) NoAck() bool { return c.noAck }

// Close ends the connection.
func (c *Client) Close() error {
	c.broken(ErrClosed)
	return nil
}

// isConsole tells an O packet (console output in hex) from a reply.
func isConsole(p []byte) bool {
	if len(p) < 3 || p[0] != 'O' || len(p)%2 != 1 {
		return false
	}
	for _, b := range p[1:] {
		if unhex(b) < 0 {
			return false
		}
	}
	return true
}

// write sends raw bytes.
func (c *Client) write(b []byte) error {
	if err := c.Err(); err != nil {
		return err
	}
	if _, err := c.rw.Write(b); err != nil {
		return c.broken(err)
	}
	return nil
}

// Send writes one packet without waiting for a reply (a resumption). In
// ack mode it waits for the stub's '+', sending again on '-'.
func (c *Client) Send(pkt string) error {
	slog.Debug("upstream <-", "packet", Clip(pkt))
	c.wmu.Lock()
	c.wbuf = AppendPacket(c.wbuf[:0], []byte(pkt))
	err := c.write(c.wbuf)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("sending %s: %w", Clip(pkt), err)
	}
	for tries := 0; !c.noAck; tries++ {
		m, err := c.next(c.Timeout)
		if err != nil {
			return fmt.Errorf("sending %s: %w", Clip(pkt), err)
		}
		switch {
		case m.Kind == KindAck:
			return nil
		case m.Kind == KindNak && tries < maxTransmits:
			c.wmu.Lock()
			err = c.write(c.wbuf)
			c.wmu.Unlock()
			if err != nil {
				return fmt.Errorf("sending %s: %w", Clip(pkt), err)
			}
		case m.Kind == KindNak:
			return fmt.Errorf("sending %s: rejected %d times", Clip(pkt), maxTransmits)
		}
	}
	return nil
}

// next reads one message, within timeout when it is not zero.
func (c *Client) next(timeout time.Duration) (Message, error) {
	if err := c.Err(); err != nil {
		return Message{}, err
	}
	type deadliner interface{ SetReadDeadline(time.Time) error }
	d, canTime := c.rw.(deadliner)
	if canTime {
		var t time.Time
		if timeout > 0 {
			t = time.Now().Add(timeout)
		}
		d.SetReadDeadline(t)
	}
	m, err := c.rd.Next()
	if err != nil && !errors.Is(err, ErrTooLarge) {
		// A timeout may have cut a frame: the stream is out of step.
		return Message{}, c.broken(fmt.Errorf("reading from the stub: %w", err))
	}
	return m, err
}

// Receive reads the next packet that is not console output, handing
// console output to Console. A zero timeout waits as long as it takes.
func (c *Client) Receive(timeout time.Duration) ([]byte, error) {
	for {
		m, err := c.next(timeout)
		if err != nil {
			return nil, err
		}
		if m.Kind != KindPacket {
			continue // stale acks, notifications
		}
		if !c.noAck {
			ack := "+"
			if m.BadChecksum {
				ack = "-"
			}
			c.wmu.Lock()
			err := c.write([]byte(ack))
			c.wmu.Unlock()
			if err != nil {
				return nil, err
			}
			if m.BadChecksum {
				continue
			}
		} else if m.BadChecksum {
			return nil, c.broken(ErrBadChecksum)
		}
		if isConsole(m.Payload) {
			if c.Console != nil {
				if text, err := DecodeHex(string(m.Payload[1:])); err == nil {
					c.Console(string(text))
				}
			}
			continue
		}
		return m.Payload, nil
	}
}

// Request sends pkt and returns the reply. An empty reply is
// ErrUnsupported, an Exx reply a *StubError.
func (c *Client) Request(pkt string) ([]byte, error) {
	if err := c.Send(pkt); err != nil {
		return nil, err
	}
	reply, err := c.Receive(c.Timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Clip(pkt), err)
	}
	return checkReply(pkt, reply)
}

func checkReply(pkt string, reply []byte) ([]byte, error) {
	if len(reply) == 0 {
		return nil, fmt.Errorf("%s: %w", Clip(pkt), ErrUnsupported)
	}
	if len(reply) == 3 && reply[0] == 'E' && unhex(reply[1]) >= 0 && unhex(reply[2]) >= 0 {
		return nil, &StubError{Request: pkt, Reply: string(reply)}
	}
	return reply, nil
}

// Pipeline sends several requests back to back and then reads their
// replies, saving a round trip per request. Only in no-ack mode: with acks
// each packet waits for its own.
func (c *Client) Pipeline(pkts ...string) ([][]byte, error) {
	if !c.noAck {
		var out [][]byte
		for _, p := range pkts {
			r, err := c.Request(p)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	for _, p := range pkts {
		if err := c.Send(p); err != nil {
			return nil, err
		}
	}
	out := make([][]byte, 0, len(pkts))
	var first error
	for _, p := range pkts {
		reply, err := c.Receive(c.Timeout)
		if err != nil {
			return out, fmt.Errorf("%s: %w", Clip(p), err)
		}
		reply, err = checkReply(p, reply)
		if err != nil && first == nil {
			first = err
		}
		out = append(out, reply)
	}
	return out, first
}

// Forward sends a packet the proxy does not interpret and returns what the
// stub answered: console output packets, then the reply, unchanged.
func (c *Client) Forward(pkt []byte) ([][]byte, error) {
	if err := c.Send(string(pkt)); err != nil {
		return nil, fmt.Errorf("forwarding: %w", err)
	}
	console := c.Console
	var out [][]byte
	c.Console = func(text string) { out = append(out, AppendHex([]byte{'O'}, []byte(text))) }
	defer func() { c.Console = console }()
	reply, err := c.Receive(c.Timeout)
	if err != nil {
		return nil, fmt.Errorf("forwarding %s: %w", Clip(string(pkt)), err)
	}
	return append(out, reply), nil
}

// Interrupt sends ^C (0x03) to stop a running target.
func (c *Client) Interrupt() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write([]byte{0x03})
}

// ReadXfer reads a whole qXfer object.
func (c *Client) ReadXfer(object, annex string) ([]byte, error) {
	var doc []byte
	chunk := c.packetSize - 16
	for len(doc) < 64<<20 {
		reply, err := c.Request(fmt.Sprintf("qXfer:%s:read:%s:%x,%x", object, annex, len(doc), chunk))
		if err != nil {
			return nil, err
		}
		doc = append(doc, reply[1:]...)
		switch reply[0] {
		case 'l':
			return doc, nil
		case 'm':
			if len(reply) == 1 {
				return nil, fmt.Errorf("qXfer:%s: the stub sent an empty piece", object)
			}
		default:
			return nil, fmt.Errorf("qXfer:%s: unexpected reply %q", object, Clip(string(reply)))
		}
	}
	return nil, fmt.Errorf("qXfer:%s: object larger than 64 MiB", object)
}

// GDBSignal converts a Linux signal number to gdb's wire number.
func GDBSignal(linux int) uint8 { return gdbSignal(linux) }

// LinuxSignal converts gdb's wire number to Linux's; 0 for none or unknown.
func LinuxSignal(gdb int) int { return linuxSignal(gdb) }

// RemoteRegister is one register of a stub's target description.
type RemoteRegister struct {
	Name    string
	Regnum  int
	Bitsize int
	Type    string
	Feature string
	// Offset is where lldb-server puts the register in its g packet (its
	// offset attribute: the packet follows the kernel's register area, not
	// the register numbers); -1 when the description gives none.
	Offset int
	// Pseudo marks a view of other registers (lldb's value_regnums, eax
	// in rax): never in the g packet.
	Pseudo bool
}

// Size is the register's size in bytes.
func (r RemoteRegister) Size() int { return (r.Bitsize + 7) / 8 }

// ParseTargetDescription reads target.xml through fetch, following
// xi:include, and returns the registers in number order. Registers without
// a regnum attribute follow the previous one, as gdb numbers them.
func ParseTargetDescription(fetch func(annex string) ([]byte, error)) ([]RemoteRegister, error) {
	var regs []RemoteRegister
	next := 0
	seen := map[string]bool{}
	var walk func(annex string, depth int) error
	walk = func(annex string, depth int) error {
		if depth > 8 || seen[annex] {
			return fmt.Errorf("target description: include loop at %q", annex)
		}
		seen[annex] = true
		doc, err := fetch(annex)
		if err != nil {
			return fmt.Errorf("target description %s: %w", annex, err)
		}
		d := xml.NewDecoder(strings.NewReader(string(doc)))
		d.Strict = false
		d.Entity = xml.HTMLEntity
		feature := ""
		for {
			tok, err := d.Token()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("target description %s: %w", annex, err)
			}
			el, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch el.Name.Local {
			case "feature":
				feature = attr("name")
			case "include":
				if href := attr("href"); href != "" {
					if err := walk(href, depth+1); err != nil {
						return err
					}
				}
			case "reg":
				r := RemoteRegister{Name: attr("name"), Type: attr("type"), Feature: feature, Regnum: next,
					Offset: -1, Pseudo: attr("value_regnums") != ""}
				if o := attr("offset"); o != "" {
					v, err := strconv.Atoi(o)
					if err != nil || v < 0 || v > 1<<20 {
						return fmt.Errorf("target description %s: bad offset %q", annex, o)
					}
					r.Offset = v
				}
				bits, err := strconv.Atoi(attr("bitsize"))
				if err != nil || bits <= 0 || bits > 4096 || r.Name == "" {
					return fmt.Errorf("target description %s: bad register %q", annex, r.Name)
				}
				r.Bitsize = bits
				if n := attr("regnum"); n != "" {
					v, err := strconv.Atoi(n)
					if err != nil || v < 0 || v > 1<<16 {
						return fmt.Errorf("target description %s: bad regnum %q", annex, n)
					}
					r.Regnum = v
				}
				next = r.Regnum + 1
				regs = append(regs, r)
			}
		}
	}
	if err := walk("target.xml", 0); err != nil {
		return nil, err
	}
	sort.SliceStable(regs, func(i, j int) bool { return regs[i].Regnum < regs[j].Regnum })
	return regs, nil
}

// FileError is a vFile request's failure: gdb's File-I/O errno.
type FileError struct {
	Op    string
	Errno int
}

func (e *FileError) Error() string {
	name := map[int]string{1: "EPERM", 2: "ENOENT", 4: "EINTR", 9: "EBADF", 13: "EACCES", 14: "EFAULT",
		16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE",
		24: "EMFILE", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 91: "ENAMETOOLONG"}[e.Errno]
	if name == "" {
		name = fmt.Sprintf("errno %d", e.Errno)
	}
	return fmt.Sprintf("vFile:%s: %s", e.Op, name)
}

// fileReply splits "F<result>[,errno][;attachment]".
func fileReply(op string, reply []byte) (int64, []byte, error) {
	if len(reply) < 2 || reply[0] != 'F' {
		return 0, nil, fmt.Errorf("vFile:%s: unexpected reply %q", op, Clip(string(reply)))
	}
	head, _, _ := strings.Cut(string(reply[1:]), ";")
	res, errno, _ := strings.Cut(head, ",")
	if strings.HasPrefix(res, "-") {
		e, _ := ParseHexUint64(errno)
		return -1, nil, &FileError{Op: op, Errno: int(e)}
	}
	v, err := ParseHexUint64(res)
	if err != nil {
		return 0, nil, fmt.Errorf("vFile:%s: bad result %q", op, Clip(head))
	}
	// The attachment is binary; slicing the reply keeps its bytes.
	if i := strings.IndexByte(string(reply), ';'); i >= 0 {
		return int64(v), reply[i+1:], nil
	}
	return int64(v), nil, nil
}

// FileOpen opens a file on the stub's side (read-only unless flags say
// otherwise, gdb's File-I/O flag values).
func (c *Client) FileOpen(path string, flags, mode int) (int, error) {
	reply, err := c.Request(fmt.Sprintf("vFile:open:%s,%x,%x", AppendHex(nil, []byte(path)), flags, mode))
	if err != nil {
		return -1, err
	}
	fd, _, err := fileReply("open", reply)
	return int(fd), err
}

// FilePread reads up to n bytes at off.
func (c *Client) FilePread(fd, n int, off int64) ([]byte, error) {
	n = min(n, c.packetSize/2-32)
	reply, err := c.Request(fmt.Sprintf("vFile:pread:%x,%x,%x", fd, n, off))
	if err != nil {
		return nil, err
	}
	count, data, err := fileReply("pread", reply)
	if err != nil {
		return nil, err
	}
	if int(count) > len(data) {
		return nil, fmt.Errorf("vFile:pread: %d bytes announced, %d sent", count, len(data))
	}
	return data[:count], nil
}

// FileSize returns a file's size from vFile:fstat.
func (c *Client) FileSize(fd int) (int64, error) {
	reply, err := c.Request(fmt.Sprintf("vFile:fstat:%x", fd))
	if err != nil {
		return 0, err
	}
	_, data, err := fileReply("fstat", reply)
	if err != nil {
		return 0, err
	}
	// struct fio_stat: 7 big-endian 32-bit fields, then the 64-bit size.
	if len(data) < 36 {
		return 0, fmt.Errorf("vFile:fstat: short reply (%d bytes)", len(data))
	}
	var size int64
	for _, b := range data[28:36] {
		size = size<<8 | int64(b)
	}
	return size, nil
}

// FileClose closes a file opened with FileOpen.
func (c *Client) FileClose(fd int) error {
	reply, err := c.Request(fmt.Sprintf("vFile:close:%x", fd))
	if err != nil {
		return err
	}
	_, _, err = fileReply("close", reply)
	return err
}

// X87TagWord is the full x87 tag word gdb shows for an XSAVE area, whose
// FXSAVE part holds only the abridged tag byte.
func X87TagWord(xsave []byte) uint16 {
	if len(xsave) < 512 {
		return 0xffff
	}
	return fullTag(xsave)
}
