package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenSpec is where a server listens: a TCP address, or a Unix socket
// path when the flag says unix:PATH.
type listenSpec struct {
	network, addr string
	loopback      bool
}

// parseListen reads [HOST:]PORT or unix:PATH. A bare port listens on
// loopback only, because the protocols have no authentication and give
// full control of the machine as the debugged user.
func parseListen(flag, spec string) (listenSpec, error) {
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		if path == "" {
			return listenSpec{}, fmt.Errorf("%s %q: want unix:PATH", flag, spec)
		}
		return listenSpec{network: "unix", addr: path, loopback: true}, nil
	}
	addr, loopback, err := listenAddress(spec)
	if err != nil {
		return listenSpec{}, fmt.Errorf("%s %q: %w", flag, spec, err)
	}
	return listenSpec{network: "tcp", addr: addr, loopback: loopback}, nil
}

// listenAddress turns [HOST:]PORT into a TCP listen address, and says
// whether it is loopback only.
func listenAddress(spec string) (string, bool, error) {
	host, port, err := net.SplitHostPort(spec)
	if err != nil {
		if _, perr := strconv.Atoi(spec); perr != nil {
			return "", false, errors.New("want [HOST:]PORT or unix:PATH")
		}
		host, port = "", spec
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false, errors.New("bad port")
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), true, nil
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	return net.JoinHostPort(host, port), loopback, nil
}

// listen opens the listener of what (for messages), warns about a
// non-loopback address, and with onlySameUser refuses connections from
// other users.
func listen(what string, ls listenSpec, onlySameUser bool) (net.Listener, error) {
	if !ls.loopback {
		fmt.Fprintf(os.Stderr, "rseqdbg: warning: listening on %s: the %s has no authentication; "+
			"whoever connects has full control of the debugged process and of this machine as its user\n", ls.addr, what)
	}
	var l net.Listener
	var err error
	if ls.network == "unix" {
		l, err = listenUnix(ls.addr)
	} else {
		l, err = net.Listen("tcp", ls.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", ls.addr, err)
	}
	if onlySameUser {
		l = sameUserListener{l}
	}
	return l, nil
}

// listenUnix creates a Unix socket only its owner can connect to: the
// umask makes it 0600 from its creation, so there is no moment when
// another user could connect. A socket left by a dead server is replaced;
// anything else at the path is not touched.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server listens there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// sameUserListener accepts only connections from processes of this
// process's user, as delve's --only-same-user: otherwise any local user
// could drive a server run by root on loopback.
type sameUserListener struct{ net.Listener }

func (l sameUserListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == os.Geteuid() {
			return c, nil
		}
		if err != nil {
			slog.Warn("refusing a connection whose user cannot be found", "remote", c.RemoteAddr(), "err", err)
		} else {
			fmt.Fprintf(os.Stderr, "rseqdbg: refused a connection from uid %d: only uid %d may connect (--only-same-user=false allows everyone)\n",
				uid, os.Geteuid())
		}
		c.Close()
	}
}

// peerUID finds the user of the process at the other end of c: the
// kernel's peer credentials for a Unix socket; for TCP the owner of the
// peer's socket in /proc/net/tcp or tcp6, which only a local peer has (a
// remote one is let through: the loopback check warned about it).
func peerUID(c net.Conn) (int, error) {
	switch c := c.(type) {
	case *net.UnixConn:
		raw, err := c.SyscallConn()
		if err != nil {
			return 0, err
		}
		var cred *unix.Ucred
		var credErr error
		if err := raw.Control(func(fd uintptr) {
			cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		}); err != nil {
			return 0, err
		}
		if credErr != nil {
			return 0, fmt.Errorf("SO_PEERCRED: %w", credErr)
		}
		return int(cred.Uid), nil
	case *net.TCPConn:
		local, remote := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
		if !remote.IP.IsLoopback() {
			return os.Geteuid(), nil
		}
		return tcpPeerUID(local, remote)
	}
	return 0, fmt.Errorf("%T: unknown peer", c)
}

// tcpPeerUID looks for the peer's end of the connection: its local address
// is our remote one and the other way round.
func tcpPeerUID(local, remote *net.TCPAddr) (int, error) {
	if remote.IP.To4() != nil {
		uid, err := procNetUID("/proc/net/tcp", hexAddr4(remote), hexAddr4(local))
		if err == nil {
			return uid, nil
		}
		// An IPv4 connection on a dual-stack socket is listed in tcp6,
		// with IPv4-mapped addresses.
	}
	return procNetUID("/proc/net/tcp6", hexAddr6(remote), hexAddr6(local))
}

// procNetUID reads the uid of the socket whose local and remote addresses
// are the given ones, in the kernel's hex form.
func procNetUID(file, localHex, remoteHex string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid ...
		if len(f) < 8 || f[1] != localHex || f[2] != remoteHex {
			continue
		}
		uid, err := strconv.Atoi(f[7])
		if err != nil {
			return 0, fmt.Errorf("%s: bad uid %q", file, f[7])
		}
		return uid, nil
	}
	return 0, fmt.Errorf("%s: no socket %s -> %s", file, localHex, remoteHex)
}

// hexAddr4 is an IPv4 address as /proc/net/tcp prints it: the 32-bit
// address in host (little-endian) order, then the port.
func hexAddr4(a *net.TCPAddr) string {
	b := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", b[3], b[2], b[1], b[0], a.Port)
}

// hexAddr6 is an address as /proc/net/tcp6 prints it: four 32-bit words
// in host order.
func hexAddr6(a *net.TCPAddr) string {
	var w [4]uint32
	binary.Read(bytes.NewReader(a.IP.To16()), binary.LittleEndian, &w)
	return fmt.Sprintf("%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3], a.Port)
}

// writePortFile writes the port without following a link someone left at
// the path: a temporary file in the same directory, renamed over it.
func writePortFile(path string, port int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing the port file: %w", err)
	}
	_, werr := f.WriteString(strconv.Itoa(port) + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing the port file: %w", err)
	}
	// CreateTemp made it 0600; the port is no secret.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing the port file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing the port file: %w", err)
	}
	return nil
}

// handleSignals calls first at the first SIGINT, SIGTERM or SIGHUP, and
// forced at the second: the first asks for an orderly end, which waits
// for the tracer thread; if that thread is stuck, the second must still
// end rseqdbg.
func handleSignals(first, forced func()) (stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		go first()
		select {
		case <-sigs:
			forced()
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}
