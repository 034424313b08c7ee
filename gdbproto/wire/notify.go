package wire

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// WriteNotification sends payload as a notification. It is not
// acknowledged, so it never waits for the peer.
func (c *Conn) WriteNotification(payload []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.wbuf = AppendNotification(c.wbuf[:0], payload)
	if err := c.write(c.wbuf); err != nil {
		return fmt.Errorf("gdbproto: write notification: %w", err)
	}
	return nil
}

// Await waits up to d for a packet from the peer without taking it: true
// means ReadPacket returns at once. A caller that must also watch
// something else (a target in non-stop mode) alternates the two. It needs
// an FDConn; on other connections it reports true, so ReadPacket blocks.
func (c *Conn) Await(d time.Duration) (bool, error) {
	fd := c.Fd()
	if fd < 0 {
		return true, nil
	}
	if c.hasQueued() {
		return true, nil
	}
	readable := false
	if !c.bufferedInput() {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(d/time.Millisecond))
		if err != nil && err != unix.EINTR {
			return false, fmt.Errorf("gdbproto: polling the peer: %w", err)
		}
		if n <= 0 {
			return false, nil
		}
		readable = true
	}
	if err := c.Drain(readable, nil); err != nil {
		return false, err
	}
	return c.hasQueued(), nil
}

func (c *Conn) hasQueued() bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return len(c.queued) > 0
}

func (c *Conn) bufferedInput() bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.rd.ready()
}
