package remote

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// upstreamSpin is how long a read polls the stub without sleeping before
// it waits in poll(2). gdbserver answers a single step in 100–200 µs; a
// thread that slept would pay a wake-up on top of it for every reply, and
// the proxy pays that on top of its own client's round trip.
const upstreamSpin = 300 * time.Microsecond

// wire is the connection to the stub over raw file descriptors, outside
// Go's network poller. A descriptor registered with the poller wakes the
// thread parked in epoll_wait on every reply even when the reader is
// already polling it: on a two-core machine that thread takes the CPU the
// stub and its inferior need, and a gdbserver step measured 220–280 µs
// through net.Conn (with read deadlines) against 170–200 µs here.
type wire struct {
	rfd, wfd int // the same socket, or the stub's stdout and stdin
	wake     int // eventfd: Close wakes a reader or writer waiting in poll
	socket   bool

	deadline atomic.Int64 // read deadline in Unix nanoseconds; 0 for none

	// beforeSleep, when set, is called by a read about to sleep in poll,
	// on the reading goroutine.
	beforeSleep func()

	// Descriptors are closed by whoever leaves last, so a read blocked in
	// poll never sees its descriptor number reused.
	mu     sync.Mutex
	users  int
	closed bool
	freed  bool
}

func newWire(rfd, wfd int, socket bool) (*wire, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{rfd, wfd} {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(wake)
			return nil, fmt.Errorf("non-blocking mode: %w", err)
		}
	}
	return &wire{rfd: rfd, wfd: wfd, wake: wake, socket: socket}, nil
}

// dialWire connects to a stub listening at addr. net dials (name lookup,
// timeout, IPv6); the wire keeps a duplicate of the socket, which the
// poller never registered, and net's own descriptor is closed.
func dialWire(addr string, timeout time.Duration) (*wire, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("%s is not a TCP connection", addr)
	}
	tc.SetNoDelay(true)
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("duplicating the socket: %w", dupErr)
	}
	w, err := newWire(fd, fd, true)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return w, nil
}

// pipeWire makes the pipes to a stub run as a command: the returned files
// are the command's stdin and stdout, to be closed once it has started.
func pipeWire() (w *wire, stdin, stdout *os.File, err error) {
	var in, out [2]int
	if err := unix.Pipe2(in[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, nil, fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		unix.Close(in[0])
		unix.Close(in[1])
		return nil, nil, nil, fmt.Errorf("pipe: %w", err)
	}
	w, err = newWire(out[0], in[1], false)
	if err != nil {
		for _, fd := range []int{in[0], in[1], out[0], out[1]} {
			unix.Close(fd)
		}
		return nil, nil, nil, err
	}
	// The command's ends stay blocking, as a program expects its stdio.
	return w, os.NewFile(uintptr(in[0]), "stub stdin"), os.NewFile(uintptr(out[1]), "stub stdout"), nil
}

func (w *wire) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.users++
	return true
}

func (w *wire) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users--
	w.free()
}

// free closes the descriptors once closed and unused; w.mu is held.
func (w *wire) free() {
	if !w.closed || w.users > 0 || w.freed {
		return
	}
	w.freed = true
	unix.Close(w.rfd)
	if w.wfd != w.rfd {
		unix.Close(w.wfd)
	}
	unix.Close(w.wake)
}

// SetReadDeadline bounds the reads that follow; the zero time removes the
// bound.
func (w *wire) SetReadDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	w.deadline.Store(ns)
	return nil
}

func (w *wire) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !w.enter() {
		return 0, net.ErrClosed
	}
	defer w.leave()
	spinUntil := time.Now().Add(upstreamSpin)
	announced := false
	for {
		n, err := unix.Read(w.rfd, p)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, fmt.Errorf("reading from the stub: %w", err)
		}
		now := time.Now()
		if now.Before(spinUntil) {
			// RawSyscall: the Go scheduler need not notice so short a
			// call, nor hand this thread's P to another thread.
			unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			continue
		}
		timeout := -1
		if d := w.deadline.Load(); d != 0 {
			left := time.Unix(0, d).Sub(now)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		if !announced && w.beforeSleep != nil {
			announced = true
			w.beforeSleep()
		}
		if err := w.wait(w.rfd, unix.POLLIN, timeout); err != nil {
			return 0, err
		}
	}
}

func (w *wire) Write(p []byte) (int, error) {
	if !w.enter() {
		return 0, net.ErrClosed
	}
	defer w.leave()
	done := 0
	for done < len(p) {
		n, err := unix.Write(w.wfd, p[done:])
		switch {
		case err == nil:
			done += n
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			if err := w.wait(w.wfd, unix.POLLOUT, -1); err != nil {
				return done, err
			}
		default:
			return done, fmt.Errorf("writing to the stub: %w", err)
		}
	}
	return done, nil
}

// wait sleeps until fd is ready for events, Close is called or timeout
// milliseconds pass (-1: no limit).
func (w *wire) wait(fd int, events int16, timeout int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeout)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("waiting for the stub: %w", err)
		case fds[1].Revents != 0:
			return net.ErrClosed
		case n == 0:
			return os.ErrDeadlineExceeded
		}
		// Readable, writable, or hung up: the read or write says which.
		return nil
	}
}

// Close ends the connection; a read or write waiting on it returns.
func (w *wire) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var one = [8]byte{1}
	unix.Write(w.wake, one[:])
	if w.socket {
		// The stub sees the end now, not when the last user leaves.
		unix.Shutdown(w.rfd, unix.SHUT_RDWR)
	}
	w.free()
	return nil
}
