package gdbproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ErrBadChecksum is returned by [Conn.ReadPacket] in no-ack mode when a packet
// arrives damaged: nobody will retransmit it, so the caller has to know. In
// ack mode damaged packets are NAKed and never surface.
var ErrBadChecksum = errors.New("gdbproto: packet with bad checksum")

// ErrClosed is returned by operations on a Conn after Close.
var ErrClosed = errors.New("gdbproto: connection closed")

// maxTransmits bounds how often one packet is sent when the peer keeps
// answering '-', so a broken peer cannot pin a writer forever.
const maxTransmits = 10

// Conn is one end of a protocol connection, usable as the server side (for
// gdb and lldb) or the client side (towards gdbserver). A goroutine reads the
// peer continuously, so acks, interrupts and notifications are seen while
// the caller is busy elsewhere, for instance waiting for a running target.
//
// One goroutine may read (ReadPacket, ReadPacketContext) while another
// writes; writes from several goroutines are serialized.
type Conn struct {
	rw io.ReadWriter
	rd *Reader

	wireMu sync.Mutex // held for each single Write, so acks never split a frame
	sendMu sync.Mutex // held across write, ack wait and retransmits of one packet
	wbuf   []byte     // frame being sent; guarded by sendMu

	noAck atomic.Bool

	// Acks are queued here by the read goroutine and sent by the ack
	// goroutine, or ahead of the next frame, whichever comes first. Every
	// write flushes them, so a reply never overtakes the ack of its request
	// (gdb discards a packet that arrives where it expects an ack).
	ackMu      sync.Mutex
	pendingAck []byte
	ackSignal  chan struct{}

	packets chan inbound
	notifs  chan []byte
	intr    chan struct{}
	acks    chan bool
	closing chan struct{}
	done    chan struct{} // closed when the read goroutine exits
	err     error         // why the read goroutine exited; set before done closes

	closeOnce sync.Once
}

type inbound struct {
	payload []byte
	err     error
}

// NewConn starts serving rw. Packets whose decoded payload exceeds maxPacket
// bytes (DefaultMaxPacketSize if maxPacket <= 0) are answered with '+' and
// reported by ReadPacket as an error wrapping ErrTooLarge, so the caller can
// reply with an error packet instead of inviting endless retransmission. The
// connection starts in ack mode, as the protocol requires.
func NewConn(rw io.ReadWriter, maxPacket int) *Conn {
	c := &Conn{
		rw: rw,
		rd: NewReader(rw, maxPacket),
		// The peer sends one request and waits for its reply (all-stop),
		// so a short queue never fills unless the peer misbehaves; when it
		// does, the read goroutine waits rather than buffering without
		// bound.
		packets:   make(chan inbound, 16),
		ackSignal: make(chan struct{}, 1),
		// At most one notification of each kind is outstanding until the
		// client acknowledges it with a packet, so this rarely holds more
		// than one.
		notifs:  make(chan []byte, 16),
		intr:    make(chan struct{}, 1),
		acks:    make(chan bool, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	go c.ackLoop()
	return c
}

// ackLoop sends the acks the read goroutine decides on. The read goroutine
// must never block on the wire itself: a peer that writes to us while we
// write a large frame to it would otherwise stall both directions.
func (c *Conn) ackLoop() {
	for {
		select {
		case <-c.ackSignal:
		case <-c.done:
			return
		}
		if err := c.write(nil); err != nil {
			// The read side sees the broken connection too and reports it.
			return
		}
	}
}

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		m, err := c.rd.Next()
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				if m.Kind == KindPacket {
					if !c.noAck.Load() {
						if err := c.sendAck('+'); err != nil {
							c.err = err
							return
						}
					}
					if !c.deliver(inbound{err: err}) {
						c.err = ErrClosed
						return
					}
				}
				continue
			}
			if c.isClosing() {
				err = ErrClosed
			} else if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("gdbproto: read: %w", err)
			}
			c.err = err
			return
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
			select {
			case c.intr <- struct{}{}:
			default: // already pending; interrupts do not queue up
			}
		case KindNotification:
			if m.BadChecksum {
				continue // notifications are never retransmitted
			}
			select {
			case c.notifs <- m.Payload:
			case <-c.closing:
				c.err = ErrClosed
				return
			}
		case KindPacket:
			var in inbound
			switch {
			case m.BadChecksum && !c.noAck.Load():
				if err := c.sendAck('-'); err != nil {
					c.err = err
					return
				}
				continue
			case m.BadChecksum:
				in.err = ErrBadChecksum
			default:
				if !c.noAck.Load() {
					if err := c.sendAck('+'); err != nil {
						c.err = err
						return
					}
				}
				in.payload = m.Payload
			}
			// An interrupt that arrived before this packet was sent while
			// the target was stopped; it must not stop the run this packet
			// may start. gdb and lldb send nothing but 0x03 while a target
			// runs in all-stop mode, so no live interrupt is lost here.
			select {
			case <-c.intr:
			default:
			}
			if !c.deliver(in) {
				c.err = ErrClosed
				return
			}
		}
	}
}

func (c *Conn) deliver(in inbound) bool {
	select {
	case c.packets <- in:
		return true
	case <-c.closing:
		return false
	}
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// maxPendingAcks bounds the ack queue. Each ack answers one packet and the
// peer waits for it before sending the next, so the queue only grows when
// the peer has stopped reading; acks beyond the bound are dropped then.
const maxPendingAcks = 1024

// sendAck queues an ack byte without blocking.
func (c *Conn) sendAck(b byte) error {
	if c.isClosing() {
		return ErrClosed
	}
	c.ackMu.Lock()
	if len(c.pendingAck) < maxPendingAcks {
		c.pendingAck = append(c.pendingAck, b)
	}
	c.ackMu.Unlock()
	select {
	case c.ackSignal <- struct{}{}:
	default:
	}
	return nil
}

// write sends any queued acks, then p, as one uninterrupted sequence.
func (c *Conn) write(p []byte) error {
	c.wireMu.Lock()
	defer c.wireMu.Unlock()
	c.ackMu.Lock()
	acks := c.pendingAck
	c.pendingAck = nil
	c.ackMu.Unlock()
	if len(acks) > 0 {
		if _, err := c.rw.Write(acks); err != nil {
			return err
		}
	}
	if len(p) == 0 {
		return nil
	}
	_, err := c.rw.Write(p)
	return err
}

// ReadPacket returns the payload of the next packet. Acks for it have already
// been sent. Errors wrapping ErrTooLarge or ErrBadChecksum concern one packet
// only and reading can go on; any other error is final (io.EOF when the peer
// hung up cleanly, ErrClosed after Close).
func (c *Conn) ReadPacket() ([]byte, error) {
	return c.ReadPacketContext(context.Background())
}

// ReadPacketContext is ReadPacket, giving up when ctx is done.
func (c *Conn) ReadPacketContext(ctx context.Context) ([]byte, error) {
	select {
	case in := <-c.packets:
		return in.payload, in.err
	case <-c.done:
		// Packets read before the connection ended still count.
		select {
		case in := <-c.packets:
			return in.payload, in.err
		default:
			return nil, c.err
		}
	case <-c.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("gdbproto: read packet: %w", ctx.Err())
	}
}

// PollPacket is ReadPacket without waiting: ok is false when no packet has
// arrived yet.
func (c *Conn) PollPacket() (payload []byte, err error, ok bool) {
	select {
	case in := <-c.packets:
		return in.payload, in.err, true
	default:
		return nil, nil, false
	}
}

// Notifications delivers the payloads of notifications ("Stop:T05..." in
// non-stop mode), which only a client receives. A client that may receive
// them must drain this channel, or the read goroutine eventually stalls.
func (c *Conn) Notifications() <-chan []byte { return c.notifs }

// Interrupts signals each 0x03 the peer sends. Signals coalesce: one pending
// value stands for any number of interrupts. An interrupt followed by a
// packet is discarded when the packet arrives, so a server that selects on
// this channel after a resume request only sees interrupts aimed at that run.
func (c *Conn) Interrupts() <-chan struct{} { return c.intr }

// Done is closed when the connection can no longer be read, after which
// ReadPacket drains what is queued and then returns the final error.
func (c *Conn) Done() <-chan struct{} { return c.done }

// SetNoAck stops acknowledging in both directions, from now on. A server
// calls it once WritePacket("OK") in reply to QStartNoAckMode has returned,
// which is when that OK has been acknowledged; a client calls it once it has
// read that OK. A packet arriving in between may still be acknowledged; gdb
// and lldb skip the stray '+'.
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
		select {
		case ok := <-c.acks:
			if ok {
				return nil
			}
		case <-c.done:
			// The peer may have acked and then hung up; the select above
			// picks between ready cases at random.
			select {
			case ok := <-c.acks:
				if ok {
					return nil
				}
			default:
			}
			if c.err == nil || errors.Is(c.err, io.EOF) {
				return fmt.Errorf("gdbproto: awaiting ack: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("gdbproto: awaiting ack: %w", c.err)
		case <-c.closing:
			return ErrClosed
		}
	}
	return fmt.Errorf("gdbproto: packet rejected %d times by peer", maxTransmits)
}

// WriteNotification frames and sends a notification. Notifications are not
// acknowledged, so it never waits.
func (c *Conn) WriteNotification(payload []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.wbuf = AppendNotification(c.wbuf[:0], payload)
	if err := c.write(c.wbuf); err != nil {
		return fmt.Errorf("gdbproto: write notification: %w", err)
	}
	return nil
}

// SendInterrupt sends the 0x03 byte that asks a server to stop the target.
// It does not wait behind a packet awaiting its ack.
func (c *Conn) SendInterrupt() error {
	if err := c.write([]byte{0x03}); err != nil {
		return fmt.Errorf("gdbproto: send interrupt: %w", err)
	}
	return nil
}

// Close stops the connection, closing rw if it is an io.Closer. Without a
// Closer the read goroutine lingers until rw's Read returns.
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
