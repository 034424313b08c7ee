package remote

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketWire is a wire over one end of a socket pair; the other end is
// returned for the test to play the stub.
func socketWire(t *testing.T) (*wire, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWire(fds[0], fds[0], true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		unix.Close(fds[1])
	})
	return w, fds[1]
}

func TestWireReadsAfterSleeping(t *testing.T) {
	w, peer := socketWire(t)
	slept := 0
	w.beforeSleep = func() { slept++ }
	go func() {
		time.Sleep(20 * time.Millisecond) // well past the polling window
		unix.Write(peer, []byte("$OK#9a"))
	}()
	buf := make([]byte, 16)
	n, err := w.Read(buf)
	if err != nil || string(buf[:n]) != "$OK#9a" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if slept != 1 {
		t.Fatalf("beforeSleep called %d times, want once", slept)
	}
	// Data already there: the read never sleeps.
	unix.Write(peer, []byte("+"))
	time.Sleep(5 * time.Millisecond)
	if n, err := w.Read(buf); err != nil || string(buf[:n]) != "+" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if slept != 1 {
		t.Fatalf("beforeSleep called for a read that did not sleep")
	}
}

func TestWireDeadline(t *testing.T) {
	w, _ := socketWire(t)
	w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, err := w.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("the deadline fired after %v", d)
	}
	w.SetReadDeadline(time.Time{})
}

func TestWireCloseWakesRead(t *testing.T) {
	w, _ := socketWire(t)
	done := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	w.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned data after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the blocked Read")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestWirePeerHangsUp(t *testing.T) {
	w, peer := socketWire(t)
	unix.Close(peer)
	if _, err := w.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read: %v, want EOF", err)
	}
}

// A stub run as a command: here cat, which echoes what it is sent and
// exits when its stdin closes.
func TestWirePipes(t *testing.T) {
	w, stdin, stdout, err := pipeWire()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cat")
	cmd.Stdin, cmd.Stdout = stdin, stdout
	err = cmd.Start()
	stdin.Close()
	stdout.Close()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("$qSupported#37")
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 64)
	for len(got) < len(msg) {
		n, err := w.Read(buf)
		if err != nil {
			t.Fatalf("Read after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q", got)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the command did not see its stdin close")
	}
}
