package wire

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBadChecksum is returned by [Conn.ReadPacket] in no-ack mode when a packet
// arrives damaged: nobody will retransmit it, so the caller has to know. In
// ack mode damaged packets are NAKed and never surface.
var ErrBadChecksum = errors.New("gdbproto: packet with bad checksum")

// ErrClosed is returned by operations on a Conn after Close.
var ErrClosed = errors.New("gdbproto: connection closed")

// ErrQueueFull is returned by [Conn.Drain] once the packets read while a
// target runs reach maxQueued: the peer is not read any more until
// ReadPacket takes them, so its socket fills and it has to wait.
var ErrQueueFull = errors.New("gdbproto: the peer sent too many packets while the target ran")

// maxQueued bounds the bytes of packets read ahead while a target runs.
// gdb and lldb send nothing but ^C then; without a bound a client sending
// packets during a long continue grew the server without limit (180 MB
// sent, 374 MB resident).
const maxQueued = 1 << 20

// queuedOverhead is what one queued packet costs besides its payload.
const queuedOverhead = 64

// maxTransmits bounds how often one packet is sent when the peer keeps
// answering '-', so a broken peer cannot pin a writer forever.
const maxTransmits = 10

// messageTimeout bounds reading the rest of a message whose first byte
// has arrived while the caller only watches the peer (Watch, Drain): gdb
// and lldb send whole messages, and a peer that stops halfway is broken.
const messageTimeout = 10 * time.Second

// Conn is the server's end of a protocol connection (gdb, lldb). The peer
// is read by the goroutine that wants something from it, never by one of
// the connection's own: ReadPacket between requests, Watch or Drain while
// a target runs, WritePacket while it waits for an ack. A reading
// goroutine in between would hand every packet from one OS thread to
// another, a wake-up for each of the packets of a stepi.
//
// Reads from several goroutines are serialized, and so are writes.
type Conn struct {
	rw       io.ReadWriter
	rd       *Reader
	deadline interface{ SetReadDeadline(time.Time) error } // nil if rw has none

	readMu sync.Mutex // held by the goroutine reading the peer
	// Guarded by readMu: packets read by Watch, Drain or an ack wait, for
	// ReadPacket; a ^C read where nobody was watching for one.
	queued      []inbound
	queuedBytes int
	pendingIntr bool

	errMu sync.Mutex
	err   error         // why reading ended for good
	done  chan struct{} // closed when err is set

	wireMu sync.Mutex // held for each single Write, so an ack never splits a frame
	sendMu sync.Mutex // held across write, ack wait and retransmits of one packet
	wbuf   []byte     // frame being sent; guarded by sendMu
	noAck  atomic.Bool
	acks   chan bool // acks read by another goroutine while WritePacket waits

	watchMu   sync.Mutex
	stopping  bool // Watch's stop has been called
	inMessage bool // Watch is reading a message that has begun

	closing   chan struct{}
	closeOnce sync.Once
}

type inbound struct {
	payload []byte
	err     error
}

// NewConn serves rw. Packets whose decoded payload exceeds maxPacket
// bytes (DefaultMaxPacketSize if maxPacket <= 0) are answered with '+' and
// reported as ErrTooLarge. Watch needs rw to have read deadlines (an
// FDConn, a net.Conn); Drain needs an FDConn.
func NewConn(rw io.ReadWriter, maxPacket int) *Conn {
	c := &Conn{
		rw:      rw,
		rd:      NewReader(rw, maxPacket),
		done:    make(chan struct{}),
		acks:    make(chan bool, 1),
		closing: make(chan struct{}),
	}
	c.deadline, _ = rw.(interface{ SetReadDeadline(time.Time) error })
	return c
}

// Fd is the descriptor the peer is read from, or -1 when rw is not an
// FDConn.
func (c *Conn) Fd() int {
	if f, ok := c.rw.(*FDConn); ok {
		return f.Fd()
	}
	return -1
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// fail ends reading for good with err, unless it has already ended, and
// returns the error every read returns from now on.
func (c *Conn) fail(err error) error {
	switch {
	case c.isClosing():
		err = ErrClosed
	case !errors.Is(err, io.EOF):
		err = fmt.Errorf("gdbproto: read: %w", err)
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	return c.err
}

func (c *Conn) readErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// readMessage reads one message; readMu is held. It returns a packet, or
// ok false for a message that is not one: acks go to a waiting writer, a
// ^C to onInterrupt (nil: it is remembered, for whoever watches next).
func (c *Conn) readMessage(onInterrupt func()) (in inbound, ok bool, err error) {
	if err := c.readErr(); err != nil {
		return inbound{}, false, err
	}
	m, err := c.rd.Next()
	if err != nil {
		if !errors.Is(err, ErrTooLarge) {
			return inbound{}, false, c.fail(err)
		}
		if m.Kind != KindPacket {
			return inbound{}, false, nil
		}
		if !c.noAck.Load() {
			if err := c.write([]byte{'+'}); err != nil {
				return inbound{}, false, c.fail(err)
			}
		}
		return inbound{err: err}, true, nil
	}
	switch m.Kind {
	case KindAck, KindNak:
		// Only a writer waiting right now cares; anything else (such as
		// the '+' gdb sends on connecting) is stale and dropped.
		select {
		case c.acks <- m.Kind == KindAck:
		default:
		}
	case KindInterrupt:
		if onInterrupt != nil {
			onInterrupt()
		} else {
			c.pendingIntr = true
		}
	case KindPacket:
		switch {
		case m.BadChecksum && !c.noAck.Load():
			if err := c.write([]byte{'-'}); err != nil {
				return inbound{}, false, c.fail(err)
			}
		case m.BadChecksum:
			return inbound{err: ErrBadChecksum}, true, nil
		default:
			// The ack goes out before the caller can answer the packet:
			// gdb discards a reply that arrives where it expects an ack.
			// A peer that hung up after sending it misses only the ack;
			// the next read tells.
			if !c.noAck.Load() {
				c.write([]byte{'+'})
			}
			return inbound{payload: m.Payload}, true, nil
		}
	}
	// Notifications go from a server to its client; one from the client
	// means nothing here.
	return inbound{}, false, nil
}

// write sends p as one uninterrupted sequence.
func (c *Conn) write(p []byte) error {
	c.wireMu.Lock()
	defer c.wireMu.Unlock()
	_, err := c.rw.Write(p)
	return err
}

// ReadPacket returns the payload of the next packet, once acknowledged.
// Errors wrapping ErrTooLarge or ErrBadChecksum concern one packet only
// and reading can go on; any other error is final (io.EOF when the peer
// hung up cleanly, ErrClosed after Close). A ^C that came before the
// packet was sent while the target was stopped, and is dropped: it must
// not stop the run the packet may start.
func (c *Conn) ReadPacket() ([]byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if len(c.queued) > 0 {
			in := c.queued[0]
			c.queued[0] = inbound{}
			c.queued = c.queued[1:]
			c.queuedBytes -= len(in.payload) + queuedOverhead
			if len(c.queued) == 0 {
				c.queued, c.queuedBytes = nil, 0
			}
			c.pendingIntr = false
			return in.payload, in.err
		}
		in, ok, err := c.readMessage(nil)
		if err != nil {
			return nil, err
		}
		if ok {
			c.pendingIntr = false
			return in.payload, in.err
		}
	}
}

// queue keeps a packet read while a target runs for ReadPacket; readMu is
// held.
func (c *Conn) queue(in inbound) {
	c.queued = append(c.queued, in)
	c.queuedBytes += len(in.payload) + queuedOverhead
}

// takeInterrupt reports a ^C read while nobody watched for one; readMu is
// held.
func (c *Conn) takeInterrupt() bool {
	p := c.pendingIntr
	c.pendingIntr = false
	return p
}

// Watch reads the peer on a goroutine of its own while the caller is busy
// elsewhere (a target runs), calling onInterrupt for each ^C, and onGone
// once if the peer hangs up or the connection breaks. Packets read
// meanwhile are kept for ReadPacket. The returned stop ends the watch and
// returns once the goroutine is done.
func (c *Conn) Watch(onInterrupt func(), onGone func(error)) (stop func()) {
	if c.deadline == nil {
		return func() {}
	}
	c.watchMu.Lock()
	c.stopping, c.inMessage = false, false
	c.watchMu.Unlock()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		c.readMu.Lock()
		defer c.readMu.Unlock()
		if c.takeInterrupt() {
			onInterrupt()
		}
		for {
			if c.queuedBytes >= maxQueued {
				// Stop reading: the peer's socket fills and pushes back.
				// A ^C behind the packets waits for the next stop.
				slog.Warn("the client sends packets while the target runs; not reading it until the target stops",
					"queued", c.queuedBytes)
				return
			}
			if err := c.rd.wait(); err != nil {
				if !c.watchStopping() {
					onGone(c.fail(err))
				}
				return
			}
			if !c.rd.ready() {
				continue
			}
			c.watchMu.Lock()
			if c.stopping {
				c.watchMu.Unlock()
				return
			}
			c.inMessage = true
			c.watchMu.Unlock()
			c.deadline.SetReadDeadline(time.Now().Add(messageTimeout))
			in, ok, err := c.readMessage(onInterrupt)
			c.deadline.SetReadDeadline(time.Time{})
			if ok {
				c.queue(in)
			}
			c.watchMu.Lock()
			c.inMessage = false
			stopping := c.stopping
			c.watchMu.Unlock()
			if err != nil {
				onGone(err)
				return
			}
			if stopping {
				return
			}
		}
	}()
	return func() {
		c.watchMu.Lock()
		c.stopping = true
		if !c.inMessage {
			// Wakes the goroutine waiting for the peer's next byte; a
			// message that has begun is read to its end first.
			c.deadline.SetReadDeadline(time.Unix(1, 0))
		}
		c.watchMu.Unlock()
		<-finished
		c.deadline.SetReadDeadline(time.Time{})
	}
}

func (c *Conn) watchStopping() bool {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	return c.stopping
}

// Drain reads what the peer has sent, calling onInterrupt for each ^C,
// without waiting for more than the rest of a message that has begun.
// It is for a caller that polls Fd itself while a target runs: readable
// says the descriptor polled readable; otherwise only what is already
// buffered is read (a poll does not see that). An error means the peer
// is gone or the connection broke.
func (c *Conn) Drain(readable bool, onInterrupt func()) error {
	if !c.readMu.TryLock() {
		return nil // another goroutine reads: it sees what came
	}
	defer c.readMu.Unlock()
	if c.takeInterrupt() {
		onInterrupt()
	}
	if !readable && !c.rd.ready() {
		// The common case, once per resumption: no deadline set, which
		// would wake the next wait on the connection for nothing.
		return nil
	}
	if c.deadline != nil {
		c.deadline.SetReadDeadline(time.Now().Add(messageTimeout))
		defer c.deadline.SetReadDeadline(time.Time{})
	}
	for {
		if !readable && !c.rd.ready() {
			return nil
		}
		if c.queuedBytes >= maxQueued {
			return ErrQueueFull
		}
		readable = false
		if err := c.rd.wait(); err != nil {
			return c.fail(err)
		}
		if !c.rd.ready() {
			continue
		}
		in, ok, err := c.readMessage(onInterrupt)
		if err != nil {
			return err
		}
		if ok {
			c.queue(in)
		}
	}
}

// SetNoAck stops acknowledging in both directions, from now on. A server
// calls it once WritePacket("OK") in reply to QStartNoAckMode has returned,
// which is when that OK has been acknowledged. A packet arriving in
// between may still be acknowledged; gdb and lldb skip the stray '+'.
func (c *Conn) SetNoAck() { c.noAck.Store(true) }

// NoAck reports whether SetNoAck has been called.
func (c *Conn) NoAck() bool { return c.noAck.Load() }

// WritePacket frames and sends payload. In ack mode it waits for the peer's
// '+', sending the packet again on each '-', up to a bound.
func (c *Conn) WritePacket(payload []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.wbuf = AppendPacket(c.wbuf[:0], payload)
	if c.noAck.Load() {
		if err := c.write(c.wbuf); err != nil {
			return fmt.Errorf("gdbproto: write packet: %w", err)
		}
		return nil
	}
	// Drop acks that belong to nobody so the wait below sees ours.
	select {
	case <-c.acks:
	default:
	}
	for range maxTransmits {
		if err := c.write(c.wbuf); err != nil {
			return fmt.Errorf("gdbproto: write packet: %w", err)
		}
		ok, err := c.awaitAck()
		if err != nil {
			return fmt.Errorf("gdbproto: awaiting ack: %w", err)
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("gdbproto: packet rejected %d times by peer", maxTransmits)
}

// ackPoll is how often a writer awaiting an ack that another goroutine
// reads checks whether it should read the ack itself.
const ackPoll = 10 * time.Millisecond

// awaitAck waits for the peer's '+' (true) or '-' (false). It reads the
// ack itself when nobody else reads, keeping the packets that come first.
func (c *Conn) awaitAck() (bool, error) {
	for {
		if c.readMu.TryLock() {
			ok, err := c.readAck()
			c.readMu.Unlock()
			return ok, err
		}
		select {
		case ok := <-c.acks:
			return ok, nil
		case <-c.done:
			return c.ackAfterEnd()
		case <-c.closing:
			return false, ErrClosed
		case <-time.After(ackPoll):
		}
	}
}

// readAck reads until an ack arrives; readMu is held.
func (c *Conn) readAck() (bool, error) {
	for {
		select {
		case ok := <-c.acks:
			return ok, nil
		default:
		}
		if c.queuedBytes >= maxQueued {
			return false, ErrQueueFull // packets, and never the ack
		}
		in, ok, err := c.readMessage(nil)
		if err != nil {
			return c.ackAfterEnd()
		}
		if ok {
			c.queue(in)
		}
	}
}

// ackAfterEnd is the outcome of an ack wait once reading has ended: the
// peer may have acked and then hung up.
func (c *Conn) ackAfterEnd() (bool, error) {
	select {
	case ok := <-c.acks:
		return ok, nil
	default:
	}
	err := c.readErr()
	if err == nil || errors.Is(err, io.EOF) {
		return false, io.ErrUnexpectedEOF
	}
	return false, err
}

// Close stops the connection, closing rw if it is an io.Closer; a read or
// a write waiting on it returns.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		if cl, ok := c.rw.(io.Closer); ok {
			if cerr := cl.Close(); cerr != nil {
				err = fmt.Errorf("gdbproto: close: %w", cerr)
			}
		}
	})
	return err
}
