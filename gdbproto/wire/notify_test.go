package wire

import (
	"bufio"
	"testing"
	"time"
)

func TestAppendNotification(t *testing.T) {
	got := string(AppendNotification([]byte("x"), []byte("Stop:T05")))
	// The checksum is the one of the same payload framed with $.
	want := "x%Stop:T05#" + string(AppendPacket(nil, []byte("Stop:T05"))[len("$Stop:T05#"):])
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// Await waits for a packet without taking it, and lets a notification
// go out meanwhile without an ack (non-stop mode).
func TestAwaitAndWriteNotification(t *testing.T) {
	f, peer := socketFD(t)
	c := NewConn(f, 0)
	c.SetNoAck()
	start := time.Now()
	ready, err := c.Await(20 * time.Millisecond)
	if err != nil || ready {
		t.Fatalf("Await with nothing sent: %v %v", ready, err)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("Await returned after %v, want about 20 ms", d)
	}
	if err := c.WriteNotification([]byte("Stop:T05thread:1;")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(peer)
	line, err := r.ReadString('#')
	if err != nil || line != "%Stop:T05thread:1;#" {
		t.Fatalf("peer read %q %v", line, err)
	}
	if _, err := peer.Write(AppendPacket(nil, []byte("vStopped"))); err != nil {
		t.Fatal(err)
	}
	ready, err = c.Await(time.Second)
	if err != nil || !ready {
		t.Fatalf("Await with a packet sent: %v %v", ready, err)
	}
	// Still there for ReadPacket, and Await says so again without reading.
	if ready, err := c.Await(0); err != nil || !ready {
		t.Fatalf("second Await: %v %v", ready, err)
	}
	pkt, err := c.ReadPacket()
	if err != nil || string(pkt) != "vStopped" {
		t.Fatalf("ReadPacket %q %v", pkt, err)
	}
}
