package gdbproto

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rseqdbg/rseqdbg/gdbproto/wire"
	sess "github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/stepper"
	"github.com/rseqdbg/rseqdbg/target"
	"github.com/rseqdbg/rseqdbg/unwind"
	"golang.org/x/sys/unix"
)

// Process is a debugged process the server owns: a target plus the release
// of the resources behind it once it is killed or detached.
type Process interface {
	target.Target
	// Close releases the tracer; the process must be gone or detached.
	Close()
}

// LaunchSpec says how to start a program.
type LaunchSpec struct {
	Path string
	Args []string
	// Env is the program's environment; nil means the server's own.
	Env      []string
	Dir      string
	KeepASLR bool
}

// Launcher starts and attaches processes. rseqdbg passes the native ptrace
// target; keeping it behind an interface keeps ptrace out of this package,
// which also serves processes behind another stub.
type Launcher interface {
	Launch(LaunchSpec) (Process, error)
	Attach(pid int) (Process, error)
}

// File is an open file of a vFile session.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Stat() (os.FileInfo, error)
}

// FileSystem is what vFile packets reach: the host's files unless a test
// substitutes something harmless.
type FileSystem interface {
	Open(name string, flag int, perm os.FileMode) (File, error)
	Readlink(name string) (string, error)
	Unlink(name string) error
}

type hostFS struct{}

// Open opens regular files only. O_NONBLOCK keeps the open of a FIFO or a
// device from waiting (for a writer, a carrier, ...) on the tracer thread,
// which would then never serve the client, signals or the process again;
// the check after it keeps reads from doing so.
func (hostFS) Open(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NONBLOCK, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		if fi.IsDir() {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
		}
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	return f, nil
}
func (hostFS) Readlink(name string) (string, error) { return os.Readlink(name) }
func (hostFS) Unlink(name string) error             { return os.Remove(name) }

// ServerConfig configures a Server.
type ServerConfig struct {
	Launcher Launcher
	// Program is launched by Start, again for each later client of a
	// multi server that finds no process, and by vRun without a name.
	Program *LaunchSpec
	// Attach is a pid Start attaches to (0: none).
	Attach int
	// Proxy is a process behind another stub (target/remote), stopped:
	// Start adopts it, and packets the server does not interpret pass
	// through to that stub when it implements Upstream.
	Proxy Process
	// Keep leaves a launched process alive when the server lets it go
	// (after the only client of a Once server, or at Shutdown): detached
	// instead of killed.
	Keep bool
	// Once serves the first client only. Otherwise, as gdbserver does,
	// the server keeps listening when a client disconnects, and the
	// process stays traced and stopped as it was for the next one.
	Once bool
	// Multi lets the server go on without a process (gdbserver's
	// --multi): once it exited, was killed or detached, the next client
	// gets the Program launched again, or none (extended-remote run or
	// attach). Without it the server ends when its process is gone.
	Multi bool
	// Engine tunes the stepping core of each process.
	Engine stepper.Options
	// DebugRegisters probes whether hardware debug registers trigger on
	// this machine (ptrace.ProbeDebugRegisters), once, before the first
	// hardware breakpoint or watchpoint; nil: assume they do.
	DebugRegisters func(exe string) bool
	// FS serves vFile packets; nil means the host's files.
	FS FileSystem
	// Notices receives gdbserver-style lines ("Process ... created") for
	// the person who started the server; nil discards them.
	Notices io.Writer
	// Declare are regions declared in every process the server debugs
	// (--declare).
	Declare []sess.Declaration
}

// Server is a GDB remote protocol server over the stepping core, for gdb
// and lldb, in all-stop mode. One process, or, once a client that takes
// fork events lets the program fork, the fork children too: one of them
// is current (proc), the one the client's last thread selection named,
// and only it runs (gdb's schedule-multiple off).
type Server struct {
	cfg  ServerConfig
	proc *process
	// others are the processes besides proc: fork children kept, or the
	// parent of the one followed.
	others []*process
	mu     sync.Mutex // guards conn, ln and closed against Shutdown
	conn   io.Closer
	ln     net.Listener
	closed bool
	served int
	// serving is set while Serve runs: a disconnect then keeps the
	// process for the next client instead of releasing it.
	serving bool
	// hwWorks caches whether debug registers trigger here (nil: not
	// probed yet); some hypervisors accept them and never fire.
	hwWorks *bool
	// onPanic lets tests see panics the packet handlers recover from.
	onPanic func(v any)
	// withoutTargetXML makes the server a stub without target
	// descriptions, so tests can drive lldb down its qRegisterInfo path.
	withoutTargetXML bool
}

// process is the debugged process and what clients set on it.
type process struct {
	p        Process
	eng      *stepper.Engine
	launched bool
	exited   bool
	last     *stepper.Stop
	// rc holds the client's breakpoints (Z0) and runs its resumptions.
	rc  *sess.Session
	hw  hwState
	avx *bool
	// synth is the debug object of its code without CFI (unwind.SynthCFI; cfi.go serves it).
	synth *unwind.SynthCFI
	// caps are p's optional capabilities, checked once.
	caps caps
	// names caches the threads' names (their comm) for the threads
	// document gdb reads after every stop (only a system call renames).
	names map[int]threadName
}

// caps are the optional capabilities of a process's target (those of
// target/remote's Target, for the proxy), checked once when the server
// takes the process. Their implementations assert them at compile time
// (target/remote, cmd/rseqdbg for Upstream), so a renamed method fails
// the build rather than turning a feature off.
type caps struct {
	upstream  Upstream
	libraries target.LibraryLister
	prefetch  target.StackPrefetcher
	rseqNote  target.RseqNoter
	console   target.ConsoleTee
	watcher   target.ClientWatcher
	gaps      target.RegisterGaps
}

func capsOf(p Process) caps {
	var c caps
	c.upstream, _ = p.(Upstream)
	c.libraries, _ = p.(target.LibraryLister)
	c.prefetch, _ = p.(target.StackPrefetcher)
	c.rseqNote, _ = p.(target.RseqNoter)
	c.console, _ = p.(target.ConsoleTee)
	c.watcher, _ = p.(target.ClientWatcher)
	c.gaps, _ = p.(target.RegisterGaps)
	return c
}

// NewServer returns a server; call Start, then Serve or ServeConn.
func NewServer(cfg ServerConfig) *Server {
	if cfg.FS == nil {
		cfg.FS = hostFS{}
	}
	if cfg.Notices == nil {
		cfg.Notices = io.Discard
	}
	return &Server{cfg: cfg}
}

// Start launches the configured program or attaches to the configured pid.
func (srv *Server) Start() error {
	switch {
	case srv.cfg.Proxy != nil:
		launched := true
		if u, ok := srv.cfg.Proxy.(Upstream); ok {
			launched = u.Launched()
		}
		if err := srv.newProcess(srv.cfg.Proxy, launched, stepper.DefaultSignalPolicy()); err != nil {
			return err
		}
		// The upstream's threads need not include one numbered like the
		// process (qemu-user says pid 1).
		srv.cfg.Proxy.Do(func() {
			if th := srv.cfg.Proxy.Threads(); len(th) > 0 {
				srv.proc.last.Tid = th[0]
			}
		})
		fmt.Fprintf(srv.cfg.Notices, "Proxying process %s; pid = %d\n", srv.cfg.Proxy.ExecPath(), srv.cfg.Proxy.Pid())
		return nil
	case srv.cfg.Program != nil:
		return srv.launch(*srv.cfg.Program, stepper.DefaultSignalPolicy())
	case srv.cfg.Attach != 0:
		return srv.attach(srv.cfg.Attach, stepper.DefaultSignalPolicy())
	}
	return nil
}

// Pid is the pid of the current process, 0 if none.
func (srv *Server) Pid() int {
	if srv.proc == nil {
		return 0
	}
	return srv.proc.p.Pid()
}

func (srv *Server) newProcess(p Process, launched bool, pol stepper.SignalPolicy) error {
	eng, err := stepper.New(p, srv.cfg.Engine)
	if err != nil {
		p.Do(func() { p.Kill() })
		p.Close()
		return fmt.Errorf("loading regions of %d: %w", p.Pid(), err)
	}
	eng.Do(func() { eng.SetSignalPolicy(pol) })
	// The old process goes only once the new one exists: a vRun or
	// vAttach that fails leaves the client what it had.
	for srv.proc != nil {
		if err := srv.release(srv.proc.launched); err != nil {
			slog.Error("releasing the old process", "err", err)
		}
	}
	// gdbserver reports the first stop as SIGTRAP, attach included: gdb
	// would otherwise pass the attach SIGSTOP on to the program.
	srv.proc = &process{p: p, eng: eng, launched: launched, rc: sess.NewBare(eng), caps: capsOf(p),
		last: &stepper.Stop{Kind: stepper.StopSignal, Tid: p.Pid(), Sig: int(unix.SIGTRAP)}}
	for _, d := range srv.cfg.Declare {
		var err error
		eng.Do(func() { _, err = srv.proc.rc.Declare(d) })
		if err != nil {
			fmt.Fprintf(srv.cfg.Notices, "rseqdbg: %v\n", err)
		}
	}
	return nil
}

func (srv *Server) launch(spec LaunchSpec, pol stepper.SignalPolicy) error {
	p, err := srv.cfg.Launcher.Launch(spec)
	if err != nil {
		return err
	}
	if err := srv.newProcess(p, true, pol); err != nil {
		return err
	}
	fmt.Fprintf(srv.cfg.Notices, "Process %s created; pid = %d\n", spec.Path, p.Pid())
	return nil
}

func (srv *Server) attach(pid int, pol stepper.SignalPolicy) error {
	p, err := srv.cfg.Launcher.Attach(pid)
	if err != nil {
		return err
	}
	if err := srv.newProcess(p, false, pol); err != nil {
		return err
	}
	fmt.Fprintf(srv.cfg.Notices, "Attached; pid = %d\n", pid)
	return nil
}

// release ends the server's hold on the current process: every breakpoint
// and watchpoint is removed first, then the process is killed or
// detached. Another process, if any, becomes current.
func (srv *Server) release(kill bool) error {
	return srv.releaseProc(srv.proc, kill)
}

// releaseAll releases every process.
func (srv *Server) releaseAll(kill bool) error {
	var first error
	for srv.proc != nil {
		if err := srv.release(kill); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// find returns the process pid names, or nil.
func (srv *Server) find(pid int) *process {
	if srv.proc != nil && srv.proc.p.Pid() == pid {
		return srv.proc
	}
	for _, o := range srv.others {
		if o.p.Pid() == pid {
			return o
		}
	}
	return nil
}

// focus makes pr, one of the server's processes, the current one.
func (srv *Server) focus(pr *process) {
	if pr == nil || pr == srv.proc {
		return
	}
	for i, o := range srv.others {
		if o == pr {
			srv.others[i] = srv.proc
			srv.proc = pr
			if srv.others[i] == nil {
				srv.others = append(srv.others[:i], srv.others[i+1:]...)
			}
			return
		}
	}
}

// forget takes pr out of the server's processes; the next one becomes
// current if pr was.
func (srv *Server) forget(pr *process) {
	if pr == srv.proc {
		srv.proc = nil
		if len(srv.others) > 0 {
			srv.proc = srv.others[0]
			srv.others = srv.others[1:]
		}
		return
	}
	for i, o := range srv.others {
		if o == pr {
			srv.others = append(srv.others[:i], srv.others[i+1:]...)
			return
		}
	}
}

// processes lists every process, the current one first.
func (srv *Server) processes() []*process {
	if srv.proc == nil {
		return nil
	}
	return append([]*process{srv.proc}, srv.others...)
}

func (srv *Server) releaseProc(pr *process, kill bool) error {
	if pr == nil {
		return nil
	}
	srv.forget(pr)
	pr.synth.Close()
	var err error
	gone := false
	pr.p.Do(func() {
		if gone = pr.eng.Exited(); gone {
			return
		}
		pr.clearAll()
		if kill {
			err = pr.eng.Kill()
		} else {
			err = pr.eng.Detach()
		}
	})
	pr.p.Close()
	switch {
	case err != nil:
		return fmt.Errorf("releasing process %d: %w", pr.p.Pid(), err)
	case gone:
	case kill:
		fmt.Fprintf(srv.cfg.Notices, "Killed process %d\n", pr.p.Pid())
	default:
		fmt.Fprintf(srv.cfg.Notices, "Detached from process %d\n", pr.p.Pid())
	}
	return nil
}

// dropExited forgets a process that is gone.
func (srv *Server) dropExited() {
	if pr := srv.proc; pr != nil && pr.exited {
		srv.forget(pr)
		pr.synth.Close()
		pr.p.Close()
	}
}

// clearAll removes what clients inserted. Runs on the target thread.
func (pr *process) clearAll() {
	pr.rc.DeleteAll()
	pr.hw.clear(pr.p)
}

// Serve accepts clients on l one after another, as gdbserver does: until
// Shutdown, until the process is gone (unless Multi), or after the first
// with Once. It releases the process when it returns.
func (srv *Server) Serve(l net.Listener) error {
	defer srv.finish()
	srv.mu.Lock()
	srv.ln = l
	closed := srv.closed
	srv.serving = true
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		srv.serving = false
		srv.mu.Unlock()
	}()
	if closed {
		return nil
	}
	for {
		c, err := l.Accept()
		if err != nil {
			if srv.isClosed() {
				return nil
			}
			return fmt.Errorf("accepting a client: %w", err)
		}
		if srv.proc == nil && srv.cfg.Program != nil && srv.served > 0 {
			if err := srv.launch(*srv.cfg.Program, stepper.DefaultSignalPolicy()); err != nil {
				slog.Error("relaunching for a new client", "err", err)
			}
		}
		slog.Info("client connected", "remote", c.RemoteAddr())
		if err := srv.ServeConn(c); err != nil {
			slog.Info("client session ended", "err", err)
		}
		if srv.cfg.Once || srv.isClosed() || srv.proc == nil && !srv.cfg.Multi {
			srv.Shutdown()
			return nil
		}
		fmt.Fprintf(srv.cfg.Notices, "Remote side has terminated connection.  rseqdbg will reopen the connection.\n")
		if a, ok := l.Addr().(*net.TCPAddr); ok {
			fmt.Fprintf(srv.cfg.Notices, "Listening on port %d\n", a.Port)
		}
	}
}

// keepsProcess tells whether a disconnect leaves the process for a next
// client: Serve takes one after this one.
func (srv *Server) keepsProcess() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.serving && !srv.closed && !srv.cfg.Once
}

func (srv *Server) isClosed() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closed
}

// Shutdown stops serving: the current client is disconnected (which
// releases the process) and Serve returns.
func (srv *Server) Shutdown() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.closed = true
	if srv.conn != nil {
		srv.conn.Close()
	}
	if srv.ln != nil {
		srv.ln.Close()
	}
}

// Close shuts down a server whose Serve is not running and releases its
// process.
func (srv *Server) Close() {
	srv.Shutdown()
	srv.finish()
}

// finish releases a process nobody will debug any more: a launched one is
// killed unless Keep asks to let it run on.
func (srv *Server) finish() {
	for srv.proc != nil {
		if err := srv.release(srv.proc.launched && !srv.cfg.Keep); err != nil {
			slog.Error("releasing the process", "err", err)
		}
	}
}

// ServeConn talks to one client until it disconnects, then releases the
// process as the disconnect rules say.
func (srv *Server) ServeConn(rw io.ReadWriteCloser) error {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		rw.Close()
		return errors.New("server shut down")
	}
	if nc, ok := rw.(net.Conn); ok {
		// Read and written on the serving goroutine, outside the poller.
		if f, err := wire.FDConnOf(nc); err == nil {
			rw = f
		} else {
			slog.Debug("serving through the network poller", "err", err)
		}
	}
	srv.conn = rw
	srv.served++
	srv.mu.Unlock()
	conn := wire.NewConn(rw, maxIncoming)
	s := newSession(srv, conn)
	err := s.loop(conn)
	conn.Close()
	srv.mu.Lock()
	srv.conn = nil
	srv.mu.Unlock()
	s.end()
	if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrClosed) {
		err = nil
	}
	return err
}

// packetSize is what qSupported advertises: gdb sizes X, vFile:pwrite and
// memory reads by it. Big enough that reading libraries through vFile is not
// a crawl, small enough for one read of the target's memory.
const packetSize = 0x8000

// maxIncoming bounds what the server accepts; more than packetSize because
// a client may count the escaping of X data differently.
const maxIncoming = 2*packetSize + 64

// session is one client's connection state.
type session struct {
	srv *Server
	w   *wire.Conn // nil in tests that call handlers directly

	multiprocess, swbreak, hwbreak bool
	// execEvents: the client takes exec:PATH in a stop reply, reloads
	// the program and sets its breakpoints again.
	execEvents bool
	// forkEvents: the client takes fork:ID in a stop reply and decides
	// whether to keep or detach the child (gdb's detach-on-fork).
	forkEvents bool
	// vforkEvents: the client takes vfork:ID and vforkdone in stop
	// replies; it keeps its breakpoints out of the parent while a vfork
	// child it lets go shares the parent's memory, until the vforkdone.
	vforkEvents bool
	// threadEvents (QThreadEvents:1): the client takes every thread's
	// exit as 'w' in non-stop mode, not only those it waits for.
	threadEvents    bool
	lldb, extended  bool
	listThreads     bool
	noAckNext, quit bool
	lost            atomic.Bool

	gThread, cThread int
	policy           stepper.SignalPolicy
	env              []string
	cwd              string
	keepASLR         bool

	files  map[int]File
	nextFD int
	docs   map[string]xferDoc // by qXfer object

	// prefetchAfterReply is a stop whose reply is being sent; what the
	// client reads next is fetched once it is out.
	prefetchAfterReply *stepper.Stop
	// forced is a forced abort (monitor rseq abort) the client has not
	// seen as a stop: it cached the thread's registers before it, so the
	// thread's next step reports this stop instead of executing.
	forced *stepper.Stop

	// hwBreaks counts the hardware breakpoints an upstream accepted;
	// upstreamZ every Z1-Z4 it holds ("TYPE,ADDR,KIND").
	hwBreaks  map[uint64]int
	upstreamZ map[string]int

	// ns is non-stop mode (nonstop.go).
	ns nonStopState
}

func newSession(srv *Server, w *wire.Conn) *session {
	return &session{srv: srv, w: w, policy: stepper.DefaultSignalPolicy(), files: map[int]File{},
		nextFD: 3, docs: map[string]xferDoc{}}
}

// loop reads packets and answers them until the client goes away.
func (s *session) loop(c *wire.Conn) error {
	var next []byte // read on the tracer thread, to be answered here
	for {
		pkt := next
		next = nil
		if pkt == nil {
			var err error
			if pkt, err = s.read(c); err != nil {
				return err
			}
			if pkt == nil {
				continue
			}
		}
		if pr := s.srv.proc; pr != nil && !isLifecycle(string(pkt)) {
			var err error
			if next, err = s.serveOnThread(c, pr, pkt); err != nil {
				return err
			}
		} else if err := s.reply(c, s.dispatch(pkt)); err != nil {
			return err
		}
		if s.quit || s.lost.Load() {
			return nil
		}
	}
}

// read returns the next packet; nil with no error when a damaged one was
// answered with an error and reading goes on.
func (s *session) read(c *wire.Conn) ([]byte, error) {
	pkt, err := c.ReadPacket()
	return s.received(c, pkt, err)
}

func (s *session) received(c *wire.Conn, pkt []byte, err error) ([]byte, error) {
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrBadChecksum) {
			slog.Debug("bad packet", "err", err)
			return nil, c.WritePacket([]byte("E01"))
		}
		return nil, err
	}
	slog.Debug("<-", "packet", wire.Clip(string(pkt)))
	return pkt, nil
}

// reply sends the answer to one packet.
func (s *session) reply(c *wire.Conn, out [][]byte) error {
	for _, o := range out {
		slog.Debug("->", "packet", wire.Clip(string(o)))
		if err := c.WritePacket(o); err != nil {
			return err
		}
	}
	if s.noAckNext {
		s.noAckNext = false
		c.SetNoAck()
	}
	if st := s.prefetchAfterReply; st != nil {
		s.prefetchAfterReply = nil
		s.prefetch(st)
	}
	return nil
}

// serveOnThread answers pkt and the packets after it on pr's tracer
// thread, until one must be answered elsewhere (returned), the process
// exits or the session ends. One Do for a run of packets rather than one
// per packet: each Do is two hand-offs between OS threads, and gdb sends
// eight packets per stepi, which made a stepi twice as slow as gdbserver's.
func (s *session) serveOnThread(c *wire.Conn, pr *process, pkt []byte) (next []byte, err error) {
	pr.p.Do(func() {
		for {
			if err = s.reply(c, s.handleGuarded(string(pkt))); err != nil {
				return
			}
			if s.quit || s.lost.Load() || pr.exited || s.srv.proc != pr {
				return
			}
			for pkt = nil; pkt == nil; {
				if s.ns.on {
					// Threads may run: their stops go out while the
					// client is quiet.
					if err = s.awaitNonStop(c, pr); err != nil {
						return
					}
					if s.lost.Load() {
						return
					}
				}
				if pkt, err = s.read(c); err != nil {
					return
				}
			}
			if isLifecycle(string(pkt)) {
				next = pkt
				return
			}
		}
	})
	s.srv.dropExited()
	return next, err
}

// isLifecycle tells the packets lifecycle answers: they create or end
// processes and cannot run on a process's tracer thread.
func isLifecycle(pkt string) bool {
	return pkt == "!" || pkt == "k" || pkt == "D" || strings.HasPrefix(pkt, "D;") ||
		strings.HasPrefix(pkt, "vRun;") || strings.HasPrefix(pkt, "vAttach;") || strings.HasPrefix(pkt, "vKill;")
}

// end applies the disconnect rules. While the server takes further
// clients, the process stays traced and stopped where it was, with what
// this client inserted removed: the next client inserts its own, and a
// breakpoint it does not know of would be a SIGTRAP out of nowhere for it.
// Otherwise every breakpoint is removed, then a launched process is
// killed (unless Keep) and an attached one detached.
func (s *session) end() {
	for fd, f := range s.files {
		f.Close()
		delete(s.files, fd)
	}
	srv := s.srv
	pr := srv.proc
	if pr == nil {
		return
	}
	if pr.exited {
		srv.dropExited()
		return
	}
	if srv.keepsProcess() {
		for _, pr := range srv.processes() {
			pr.p.Do(func() {
				if !pr.eng.Exited() && pr.eng.NonStop() {
					// The next client starts in all-stop mode, with every
					// thread stopped.
					if err := pr.rc.SetNonStop(false); err != nil {
						slog.Error("leaving non-stop mode", "err", err)
					}
				}
				if !pr.eng.Exited() {
					// Affinity and signal masks go back as the client leaves.
					pr.rc.EndInspections()
					pr.clearAll()
					s.removeUpstreamZ(pr.caps.upstream)
					// The next client may not take fork events.
					if s.forkEvents {
						pr.rc.FollowVforks(false, false)
						pr.rc.FollowForks(false)
					}
				}
			})
		}
		return
	}
	srv.finish()
}

func one(s string) [][]byte { return [][]byte{[]byte(s)} }

var (
	replyOK    = one("OK")
	replyErr   = one("E01")
	replyEmpty = one("")
)

func (srv *Server) panicked(v any) {
	if srv.onPanic != nil {
		srv.onPanic(v)
	}
}

// dispatch answers one packet. A nil result means no reply at all (gdb's k).
// A panic in a handler becomes an error reply: input must never take the
// server down.
func (s *session) dispatch(pkt []byte) (out [][]byte) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("packet handler panicked", "packet", wire.Clip(string(pkt)), "panic", r, "stack", string(debug.Stack()))
			s.srv.panicked(r)
			out = replyErr
		}
	}()
	if len(pkt) == 0 {
		return replyEmpty
	}
	str := string(pkt)
	if out, ok := s.lifecycle(str); ok {
		return out
	}
	pr := s.srv.proc
	if pr == nil {
		return s.handle(str)
	}
	pr.p.Do(func() { out = s.handleGuarded(str) })
	s.srv.dropExited()
	return out
}

// handleGuarded is handle on the tracer thread, which must survive a bad
// packet too: a panic becomes an error reply.
func (s *session) handleGuarded(pkt string) (out [][]byte) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("packet handler panicked", "packet", wire.Clip(pkt), "panic", r, "stack", string(debug.Stack()))
			s.srv.panicked(r)
			out = replyErr
		}
	}()
	if pkt == "" {
		return replyEmpty
	}
	return s.handle(pkt)
}

// lifecycle handles the packets that create or end processes, which cannot
// run on a process's tracer thread.
func (s *session) lifecycle(pkt string) ([][]byte, bool) {
	srv := s.srv
	if out, ok := s.proxyLifecycle(pkt); ok {
		return out, true
	}
	switch {
	case pkt == "!":
		s.extended = true
		return replyOK, true
	case (strings.HasPrefix(pkt, "vRun;") || strings.HasPrefix(pkt, "vAttach;")) && !s.extended && srv.proc != nil && !srv.proc.exited:
		// Outside extended mode a process is not replaced by another: the
		// client debugs the one it connected to (gdbserver refuses too).
		fmt.Fprintf(srv.cfg.Notices, "Already debugging a process\n")
		return replyErr, true
	case strings.HasPrefix(pkt, "vRun;"):
		return s.vRun(pkt[len("vRun;"):]), true
	case strings.HasPrefix(pkt, "vAttach;"):
		pid, err := wire.ParseHexUint64(pkt[len("vAttach;"):])
		if err != nil || pid == 0 || pid > 1<<22 {
			return replyErr, true
		}
		if err := srv.attach(int(pid), s.policy); err != nil {
			slog.Error("vAttach", "pid", pid, "err", err)
			return replyErr, true
		}
		return s.initialStop(), true
	case strings.HasPrefix(pkt, "vKill;") || pkt == "k":
		if srv.proc == nil {
			if pkt == "k" {
				s.quit = !s.extended
				return nil, true
			}
			return replyErr, true
		}
		if pid, ok := strings.CutPrefix(pkt, "vKill;"); ok {
			v, err := wire.ParseHexUint64(pid)
			pr := srv.find(int(v))
			if err != nil || v > 1<<22 || pr == nil {
				return replyErr, true
			}
			if err := srv.releaseProc(pr, true); err != nil {
				slog.Error("kill", "err", err)
			}
			return replyOK, true
		}
		if err := srv.releaseAll(true); err != nil {
			slog.Error("kill", "err", err)
		}
		if pkt == "k" {
			// gdb does not wait for an answer to k; lldb wants the exit.
			s.quit = !s.extended && !s.lldb
			if s.lldb {
				return one("X09"), true
			}
			return nil, true
		}
		return replyOK, true
	case pkt == "D" || strings.HasPrefix(pkt, "D;"):
		pr := srv.proc
		if pid, ok := strings.CutPrefix(pkt, "D;"); ok {
			// gdb names the process: a fork child it lets go, or the
			// parent of the child it follows.
			v, err := wire.ParseHexUint64(pid)
			if err != nil || v > 1<<22 {
				return replyErr, true
			}
			pr = srv.find(int(v))
		}
		if pr == nil {
			return replyErr, true
		}
		if err := srv.releaseProc(pr, false); err != nil {
			slog.Error("detach", "err", err)
			return replyErr, true
		}
		s.quit = !s.extended && srv.proc == nil
		return replyOK, true
	}
	return nil, false
}

// vRun launches a program from "hexprog;hexarg;...".
func (s *session) vRun(body string) [][]byte {
	srv := s.srv
	fields := strings.Split(body, ";")
	var spec LaunchSpec
	if srv.cfg.Program != nil {
		spec = *srv.cfg.Program
	}
	prog, err := wire.DecodeHex(fields[0])
	if err != nil {
		return replyErr
	}
	args := make([]string, 0, len(fields)-1)
	for _, f := range fields[1:] {
		a, err := wire.DecodeHex(f)
		if err != nil {
			return replyErr
		}
		args = append(args, string(a))
	}
	if len(prog) > 0 {
		spec.Path, spec.Args = string(prog), args
	} else if spec.Path == "" {
		return replyErr
	} else if len(fields) > 1 {
		spec.Args = args
	}
	if s.env != nil {
		spec.Env = s.env
	}
	if s.cwd != "" {
		spec.Dir = s.cwd
	}
	spec.KeepASLR = s.keepASLR
	if err := srv.launch(spec, s.policy); err != nil {
		slog.Error("vRun", "program", spec.Path, "err", err)
		return replyErr
	}
	return s.initialStop()
}

func (s *session) initialStop() [][]byte {
	pr := s.srv.proc
	var out [][]byte
	pr.p.Do(func() {
		s.followForks(pr)
		s.gThread, s.cThread = 0, 0
		if s.ns.on {
			// QNonStop:1 came before the process existed.
			if err := pr.rc.SetNonStop(true); err != nil {
				slog.Error("non-stop mode for the new process", "err", err)
				s.ns.on = false
			}
		}
		out = one(string(s.stopPacket(pr.last)))
	})
	return out
}

// handleLocal answers packets that work on the current process (or need
// none). It runs on the process's tracer thread when there is a process.
func (s *session) handleLocal(pkt string) [][]byte {
	switch pkt[0] {
	case '?':
		return s.question()
	case 'g', 'G', 'p', 'P':
		return s.registers(pkt)
	case 'm', 'M', 'x', 'X':
		return s.memory(pkt)
	case 'Z', 'z':
		return s.breakpoint(pkt)
	case 'H':
		return s.setThread(pkt)
	case 'T':
		return s.threadAlive(pkt[1:])
	case 'c', 'C', 's', 'S':
		return s.legacyResume(pkt)
	case 'q':
		return s.query(pkt)
	case 'Q':
		return s.set(pkt)
	case 'v':
		return s.vPacket(pkt)
	}
	return replyEmpty
}

// live returns the current process if it can be worked on.
func (s *session) live() *process {
	pr := s.srv.proc
	if pr == nil || pr.exited || pr.eng.Exited() {
		return nil
	}
	return pr
}

func (s *session) question() [][]byte {
	if s.ns.on {
		return s.questionNonStop()
	}
	pr := s.srv.proc
	if pr == nil || pr.exited {
		return one("W00")
	}
	return one(string(s.stopPacket(pr.last)))
}

// threadIDString formats a thread id for the client.
func (s *session) threadIDString(pid, tid int) string {
	return string(wire.ThreadID{Pid: int64(pid), Tid: int64(tid)}.AppendTo(nil, s.multiprocess))
}

// resolveThread maps a client thread-id to a tid: 0 for "any" or "all",
// ok false when it names nothing alive. A thread of another process is
// resolved when focus is set, which makes that process current (gdb's Hg
// pPID.TID before it reads or writes the process).
func (s *session) resolveThread(id wire.ThreadID) (int, bool) {
	return s.resolveIn(id, false)
}

func (s *session) resolveIn(id wire.ThreadID, focus bool) (int, bool) {
	pr := s.live()
	if pr == nil {
		return 0, false
	}
	if id.Pid > 0 && id.Pid != int64(pr.p.Pid()) {
		other := s.srv.find(int(id.Pid))
		if other == nil || other.exited || other.eng.Exited() {
			return 0, false
		}
		if !focus {
			// Alive in another process (T): no change of focus.
			if id.Tid <= 0 {
				return 0, true
			}
			for _, t := range other.p.Threads() {
				if int64(t) == id.Tid {
					return t, true
				}
			}
			return 0, false
		}
		s.srv.focus(other)
		pr = other
	}
	if id.Tid <= 0 {
		return 0, true
	}
	for _, t := range pr.p.Threads() {
		if int64(t) == id.Tid {
			return t, true
		}
	}
	return 0, false
}

// current is the thread register and memory requests are about.
func (s *session) current() int {
	pr := s.live()
	if pr == nil {
		return 0
	}
	threads := pr.p.Threads()
	for _, want := range []int{s.gThread, pr.last.Tid} {
		for _, t := range threads {
			if want != 0 && t == want {
				return t
			}
		}
	}
	if len(threads) > 0 {
		return threads[0]
	}
	return 0
}

func (s *session) setThread(pkt string) [][]byte {
	if len(pkt) < 3 {
		return replyErr
	}
	id, err := wire.ParseThreadID(pkt[2:])
	if err != nil {
		return replyErr
	}
	tid, ok := s.resolveIn(id, true)
	if !ok {
		if s.srv.proc == nil && id.Tid <= 0 {
			// gdb selects "any thread" before anything runs.
			return replyOK
		}
		return replyErr
	}
	switch pkt[1] {
	case 'g':
		s.gThread = tid
	case 'c':
		s.cThread = tid
	default:
		return replyErr
	}
	return replyOK
}

func (s *session) threadAlive(arg string) [][]byte {
	id, err := wire.ParseThreadID(arg)
	if err != nil {
		return replyErr
	}
	if tid, ok := s.resolveThread(id); ok && tid != 0 {
		return replyOK
	}
	return replyErr
}

// splitThreadSuffix extracts lldb's ";thread:TID;" suffix from a register
// packet (lldb sends it once QThreadSuffixSupported is accepted; accepting
// it always costs nothing).
func (s *session) splitThreadSuffix(pkt string) (string, int, bool) {
	body, suffix, found := strings.Cut(pkt, ";")
	if !found {
		return body, s.current(), true
	}
	for _, item := range strings.Split(suffix, ";") {
		if v, ok := strings.CutPrefix(item, "thread:"); ok {
			id, err := wire.ParseThreadID(v)
			if err != nil {
				return body, 0, false
			}
			tid, ok := s.resolveThread(id)
			if !ok {
				return body, 0, false
			}
			if tid == 0 {
				tid = s.current()
			}
			return body, tid, true
		}
	}
	return body, s.current(), true
}

func parseHexInt(s string, limit uint64) (int, error) {
	v, err := wire.ParseHexUint64(s)
	if err != nil {
		return 0, err
	}
	if v > limit {
		return 0, fmt.Errorf("%w: %s out of range", wire.ErrSyntax, wire.Clip(s))
	}
	return int(v), nil
}
