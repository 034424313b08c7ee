package wire

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketFD is an FDConn over one end of a socket pair; the other end is
// returned for the test to play the peer, and closed at the end unless
// the test closes it first.
func socketFD(t *testing.T) (*FDConn, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewFDConn(fds[0], fds[0], true)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() {
		w.Close()
		peer.Close()
	})
	return w, peer
}

// readInBackground starts a one-byte read and gives it time to wait.
func readInBackground(w *FDConn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	return done
}

func TestFDConnReadWaits(t *testing.T) {
	w, peer := socketFD(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("$OK#9a"))
	}()
	buf := make([]byte, 16)
	n, err := w.Read(buf)
	if err != nil || string(buf[:n]) != "$OK#9a" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

// A deadline set while a read waits applies to that read: it is how a
// watch for interrupts is stopped.
func TestFDConnDeadlineWakesWaitingRead(t *testing.T) {
	w, _ := socketFD(t)
	done := readInBackground(w)
	w.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the new deadline did not wake the waiting Read")
	}
}

// A read that waits serves the watched descriptor meanwhile, on its own
// goroutine, and returns only for its own data.
func TestFDConnWatchWhileWaiting(t *testing.T) {
	w, peer := socketFD(t)
	other, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other[0])
	defer unix.Close(other[1])
	var seen []byte
	w.WatchWhileWaiting(other[0], func() {
		b := make([]byte, 8)
		n, _ := unix.Read(other[0], b)
		seen = append(seen, b[:n]...)
		peer.Write([]byte("+"))
	})
	unix.Write(other[1], []byte{3})
	buf := make([]byte, 4)
	n, err := w.Read(buf)
	if err != nil || string(buf[:n]) != "+" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if string(seen) != "\x03" {
		t.Fatalf("watched descriptor gave %q", seen)
	}
	w.WatchWhileWaiting(-1, nil)
	unix.Write(other[1], []byte{3})
	w.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := w.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with the watch ended: %v", err)
	}
	if len(seen) != 1 {
		t.Fatal("the watch went on after it ended")
	}
}

func TestFDConnDeadline(t *testing.T) {
	w, _ := socketFD(t)
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

func TestFDConnCloseWakesRead(t *testing.T) {
	w, _ := socketFD(t)
	done := readInBackground(w)
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

func TestFDConnPeerHangsUp(t *testing.T) {
	w, peer := socketFD(t)
	peer.Close()
	if _, err := w.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read: %v, want EOF", err)
	}
}

// A stub run as a command: here cat, which echoes what it is sent and
// exits when its stdin closes.
func TestFDConnPipes(t *testing.T) {
	w, stdin, stdout, err := PipeFD()
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
