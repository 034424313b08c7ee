package wire

import (
	"bufio"
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

// newPair is a Conn over an FDConn on one end of a socket pair, and the
// other end for the test to play gdb.
func newPair(t *testing.T, maxPacket int) (*Conn, *peer) {
	t.Helper()
	f, pf := socketFD(t)
	b, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(f, maxPacket)
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

type readOutcome struct {
	pkt []byte
	err error
}

// readAsync reads the next packet on a goroutine: the Conn acknowledges
// a packet when it reads it, and the peer may wait for that.
func readAsync(c *Conn) <-chan readOutcome {
	ch := make(chan readOutcome, 1)
	go func() {
		pkt, err := c.ReadPacket()
		ch <- readOutcome{pkt, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan readOutcome) ([]byte, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.pkt, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("ReadPacket did not return")
		return nil, nil
	}
}

func readPacket(t *testing.T, c *Conn) ([]byte, error) {
	t.Helper()
	return await(t, readAsync(c))
}

func TestConnAckMode(t *testing.T) {
	c, p := newPair(t, 0)
	// gdb opens with a stray '+'; it must not count as the ack of our
	// first reply.
	p.send("+$qSupported:multiprocess+#c6")
	got, err := readPacket(t, c)
	p.expect("+")
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
	read := readAsync(c)
	p.send("$g#00")
	p.expect("-")
	p.send("$g#67")
	p.expect("+")
	got, err := await(t, read)
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
	if got, err := readPacket(t, c); err != nil || string(got) != "QStartNoAckMode" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	p.expect("+")
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
	if _, err := readPacket(t, c); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadPacket: %v, want ErrTooLarge", err)
	}
	p.expect("+")
	p.send("$g#67")
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket after oversized packet = %q, %v", got, err)
	}
	p.expect("+")
}

func TestConnInterrupt(t *testing.T) {
	c, p := newPair(t, 0)
	c.SetNoAck()
	// An interrupt sent while stopped is stale once the resume arrives.
	p.send("\x03\x03$vCont;c#a8")
	if got, err := readPacket(t, c); err != nil || string(got) != "vCont;c" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	intr := make(chan struct{}, 8)
	onIntr := func() { intr <- struct{}{} }
	stop := c.Watch(onIntr, func(err error) { t.Errorf("peer gone: %v", err) })
	select {
	case <-intr:
		t.Fatal("a stale interrupt reached the watch")
	case <-time.After(20 * time.Millisecond):
	}
	// While the target runs, the interrupt reaches the watch, and a packet
	// sent meanwhile is kept for ReadPacket.
	p.send("\x03$g#67")
	select {
	case <-intr:
	case <-time.After(5 * time.Second):
		t.Fatal("interrupt during run not seen")
	}
	time.Sleep(20 * time.Millisecond)
	stop()
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket after the watch = %q, %v", got, err)
	}
	// Stopping a watch that saw nothing returns at once.
	start := time.Now()
	c.Watch(onIntr, func(error) {})()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stopping an idle watch took %v", d)
	}
}

// Drain reads what a caller polling the descriptor found there, and what
// was buffered before, without waiting for more.
func TestConnDrain(t *testing.T) {
	c, p := newPair(t, 0)
	c.SetNoAck()
	if c.Fd() < 0 {
		t.Fatal("no descriptor for an FDConn")
	}
	n := 0
	onIntr := func() { n++ }
	p.send("$g#67\x03")
	if got, err := readPacket(t, c); err != nil || string(got) != "g" {
		t.Fatalf("ReadPacket = %q, %v", got, err)
	}
	// The ^C came with the packet and sits in the buffer: a poll of the
	// descriptor would not see it.
	if err := c.Drain(false, onIntr); err != nil || n != 1 {
		t.Fatalf("Drain of the buffer: %v, %d interrupts", err, n)
	}
	if err := c.Drain(false, onIntr); err != nil || n != 1 {
		t.Fatalf("Drain with nothing buffered: %v, %d interrupts", err, n)
	}
	p.send("\x03\x03")
	time.Sleep(20 * time.Millisecond)
	if err := c.Drain(true, onIntr); err != nil || n != 3 {
		t.Fatalf("Drain when readable: %v, %d interrupts", err, n)
	}
	p.nc.Close()
	time.Sleep(20 * time.Millisecond)
	if err := c.Drain(true, onIntr); !errors.Is(err, io.EOF) {
		t.Fatalf("Drain after the peer hung up: %v, want EOF", err)
	}
}

func TestConnWatchPeerGone(t *testing.T) {
	c, p := newPair(t, 0)
	gone := make(chan error, 1)
	stop := c.Watch(func() {}, func(err error) { gone <- err })
	p.nc.Close()
	select {
	case err := <-gone:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("gone with %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not see the peer hang up")
	}
	stop()
	if _, err := readPacket(t, c); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadPacket after the watch saw the hang-up: %v, want EOF", err)
	}
}

func TestConnPeerHangsUp(t *testing.T) {
	c, p := newPair(t, 0)
	p.send("$g#67")
	p.nc.Close()
	// The packet sent before the hang-up is still delivered.
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

// TestConnConcurrentWriters checks that frames from several writers and the
// acks sent by the reader never interleave on the wire.
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
