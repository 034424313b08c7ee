package gdbproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// peer is the far end of a Conn under test, driven byte by byte.
type peer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func newPair(t *testing.T, maxPacket int) (*Conn, *peer) {
	t.Helper()
	a, b := net.Pipe()
	c := NewConn(a, maxPacket)
	t.Cleanup(func() {
		c.Close()
		b.Close()
	})
	return c, &peer{t: t, nc: b, br: bufio.NewReader(b)}
}

func (p *peer) send(s string) {
	p.t.Helper()
	p.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(p.nc, s); err != nil {
		p.t.Fatalf("peer write %q: %v", s, err)
	}
}

// expect reads exactly len(want) bytes and compares them.
func (p *peer) expect(want string) {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(p.br, got); err != nil {
		p.t.Fatalf("peer waiting for %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		p.t.Fatalf("peer got %q, want %q", got, want)
	}
}

// expectQuiet checks that nothing arrives for a short while.
func (p *peer) expectQuiet() {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if b, err := p.br.ReadByte(); err == nil {
		p.t.Fatalf("peer got unexpected byte %q", b)
	}
	p.nc.SetReadDeadline(time.Time{})
}

func readPacket(t *testing.T, c *Conn) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ReadPacketContext(ctx)
}

func TestConnAckMode(t *testing.T) {
	c, p := newPair(t, 0)
	// gdb opens with a stray '+'; it must not count as the ack of our
	// first reply.
	p.send("+$qSupported:multiprocess+#c6")
	p.expect("+")
	got, err := readPacket(t, c)
	if err != nil || string(got) != "qSupported:multiprocess+" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}

	done := make(chan error, 1)
	go func() { done <- c.WritePacket([]byte("PacketSize=4000")) }()
	frame := string(AppendPacket(nil, []byte("PacketSize=4000")))
	p.expect(frame)
	select {
	case err := <-done:
		t.Fatalf("WritePacket returned %v before the ack", err)
	case <-time.After(20 * time.Millisecond):
	}
	p.send("-") // ask for it again
	p.expect(frame)
	p.send("+")
	if err := <-done; err != nil {
		t.Fatalf("WritePacket: %v", err)
	}
}

func TestConnNaksBadChecksum(t *testing.T) {
	c, p := newPair(t, 0)
	p.send("$g#00")
	p.expect("-")
	p.send("$g#67")
	p.expect("+")
	got, err := readPacket(t, c)
	if err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket = %q, %v; want only the good copy", got, err)
	}
}

func TestConnGivesUpAfterRepeatedNaks(t *testing.T) {
	c, p := newPair(t, 0)
	done := make(chan error, 1)
	go func() { done <- c.WritePacket([]byte("OK")) }()
	for range maxTransmits {
		p.expect("$OK#9a")
		p.send("-")
	}
	if err := <-done; err == nil {
		t.Fatal("WritePacket succeeded although every copy was rejected")
	}
}

func TestConnNoAck(t *testing.T) {
	c, p := newPair(t, 0)
	p.send("$QStartNoAckMode#b0")
	p.expect("+")
	if got, err := readPacket(t, c); err != nil || string(got) != "QStartNoAckMode" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.WritePacket([]byte("OK")) }()
	p.expect("$OK#9a")
	p.send("+") // the OK is still acknowledged
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.SetNoAck()
	if !c.NoAck() {
		t.Fatal("NoAck() = false after SetNoAck")
	}

	p.send("$g#67")
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	// No '+' for the packet: the next bytes are our reply, sent without
	// waiting for an ack.
	go func() { done <- c.WritePacket([]byte("0011")) }()
	p.expect("$0011#c2")
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A damaged packet cannot be retransmitted now, so it is reported.
	p.send("$g#00")
	if _, err := readPacket(t, c); !errors.Is(err, ErrBadChecksum) {
		t.Fatalf("ReadPacket of damaged packet: %v, want ErrBadChecksum", err)
	}
	p.send("$m0,1#fa")
	if got, err := readPacket(t, c); err != nil || string(got) != "m0,1" {
		t.Fatalf("ReadPacket after damaged packet = %q, %v", got, err)
	}
	p.expectQuiet()
}

func TestConnTooLarge(t *testing.T) {
	c, p := newPair(t, 8)
	p.send(string(AppendPacket(nil, []byte("X0,20:0123456789abcdef"))))
	p.expect("+")
	if _, err := readPacket(t, c); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadPacket: %v, want ErrTooLarge", err)
	}
	p.send("$g#67")
	p.expect("+")
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket after oversized packet = %q, %v", got, err)
	}
}

func TestConnInterrupt(t *testing.T) {
	c, p := newPair(t, 0)
	// An interrupt sent while stopped is stale once the resume arrives.
	p.send("\x03")
	select {
	case <-c.Interrupts():
	case <-time.After(5 * time.Second):
		t.Fatal("interrupt not signalled")
	}
	p.send("\x03\x03$vCont;c#a8")
	p.expect("+")
	if got, err := readPacket(t, c); err != nil || string(got) != "vCont;c" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	select {
	case <-c.Interrupts():
		t.Fatal("interrupt sent before the resume was delivered after it")
	default:
	}
	// While the target runs, the server is not reading packets; the
	// interrupt must reach it anyway, and repeated ones coalesce.
	p.send("\x03\x03")
	select {
	case <-c.Interrupts():
	case <-time.After(5 * time.Second):
		t.Fatal("interrupt during run not signalled")
	}
}

func TestConnNotifications(t *testing.T) {
	c, p := newPair(t, 0)
	p.send(string(AppendNotification(nil, []byte("Stop:T05thread:p1.1;"))))
	p.send("%Stop:T05#00") // damaged: dropped, never acked
	p.send("$OK#9a")
	p.expect("+") // only the packet is acknowledged
	select {
	case n := <-c.Notifications():
		if string(n) != "Stop:T05thread:p1.1;" {
			t.Fatalf("notification = %q", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("notification not delivered")
	}
	if got, err := readPacket(t, c); err != nil || string(got) != "OK" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	select {
	case n := <-c.Notifications():
		t.Fatalf("damaged notification delivered: %q", n)
	default:
	}

	go func() { c.WriteNotification([]byte("Stop:W00")) }()
	p.expect(string(AppendNotification(nil, []byte("Stop:W00"))))
	p.expectQuiet()
}

func TestConnSendInterrupt(t *testing.T) {
	c, p := newPair(t, 0)
	go func() { c.SendInterrupt() }()
	p.expect("\x03")
}

func TestConnPeerHangsUp(t *testing.T) {
	c, p := newPair(t, 0)
	p.send("$g#67")
	p.expect("+")
	p.nc.Close()
	<-c.Done()
	// The packet read before the hang-up is still delivered.
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	if _, err := readPacket(t, c); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadPacket after hang-up: %v, want io.EOF", err)
	}
	if err := c.WritePacket([]byte("OK")); err == nil {
		t.Fatal("WritePacket to a closed peer succeeded")
	}
}

func TestConnClose(t *testing.T) {
	c, p := newPair(t, 0)
	done := make(chan error, 1)
	go func() { done <- c.WritePacket([]byte("OK")) }()
	p.expect("$OK#9a")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("WritePacket awaiting an ack survived Close")
	}
	if _, err := readPacket(t, c); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadPacket after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConnReadContext(t *testing.T) {
	c, _ := newPair(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.ReadPacketContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadPacketContext: %v, want DeadlineExceeded", err)
	}
}

// TestConnConcurrentWriters checks that frames from several writers and the
// acks sent by the read goroutine never interleave on the wire.
func TestConnConcurrentWriters(t *testing.T) {
	c, p := newPair(t, 0)
	const writers, each = 4, 25

	// The peer acks every packet it gets and sends packets of its own, so
	// our acks go out while our frames do.
	peerErr := make(chan error, 1)
	go func() {
		r := NewReader(p.nc, 0)
		got := 0
		for got < writers*each {
			m, err := r.Next()
			if err != nil {
				peerErr <- err
				return
			}
			switch m.Kind {
			case KindAck:
				continue
			case KindPacket:
				if m.BadChecksum {
					peerErr <- fmt.Errorf("frame damaged on the wire: %q", m.Payload)
					return
				}
				got++
				if _, err := io.WriteString(p.nc, "+$g#67"); err != nil {
					peerErr <- err
					return
				}
			default:
				peerErr <- fmt.Errorf("unexpected %v", m.Kind)
				return
			}
		}
		peerErr <- nil
	}()
	go func() {
		for {
			if _, err := c.ReadPacket(); err != nil {
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := c.WritePacket(fmt.Appendf(nil, "writer %d packet %d *#$}", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := <-peerErr; err != nil {
		t.Fatal(err)
	}
}

// TestConnAckPrecedesReply checks that a reply written at once never reaches
// the wire before the ack of the request it answers.
func TestConnAckPrecedesReply(t *testing.T) {
	for range 50 {
		c, p := newPair(t, 0)
		p.send("$g#67")
		got, err := readPacket(t, c)
		if err != nil || string(got) != "g" {
			t.Fatalf("ReadPacket = %q, %v", got, err)
		}
		done := make(chan error, 1)
		go func() { done <- c.WritePacket([]byte("00")) }()
		p.expect("+$00#60")
		p.send("+")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
