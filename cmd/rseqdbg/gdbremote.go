package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/rseqdbg/rseqdbg/gdbproto"
	"github.com/rseqdbg/rseqdbg/session"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"github.com/rseqdbg/rseqdbg/target/remote"
	"github.com/rseqdbg/rseqdbg/unwind"
	"github.com/spf13/cobra"
)

// ptraceLauncher gives the server native processes.
type ptraceLauncher struct{}

func (ptraceLauncher) Launch(s gdbproto.LaunchSpec) (gdbproto.Process, error) {
	return ptrace.Launch(ptrace.LaunchOptions{Path: s.Path, Args: s.Args, Env: s.Env, Dir: s.Dir, KeepASLR: s.KeepASLR})
}

func (ptraceLauncher) Attach(pid int) (gdbproto.Process, error) { return ptrace.Attach(pid) }

// addGDBRemoteFlags makes the root command a GDB remote server when
// --gdb-remote is given:
//
//	rseqdbg --gdb-remote [HOST:]PORT -- PROG ARGS
//	rseqdbg --gdb-remote [HOST:]PORT --attach PID
func addGDBRemoteFlags(root *cobra.Command) {
	var (
		addr     string
		attach   int
		once     bool
		multi    bool
		keep     bool
		portFile string
		cwd      string
		aslr     bool
		upstream string
		upCmd    string
		file     string
		sameUser bool
		declares []string
	)
	f := root.Flags()
	f.StringArrayVar(&declares, "declare", nil, "with --gdb-remote: step START:END[:NAME] as one region (addresses or SYMBOL+OFFSET; repeatable)")
	f.StringVar(&addr, "gdb-remote", "", "serve the GDB remote protocol on [HOST:]PORT (loopback unless a host is given; port 0 picks one) or on the Unix socket unix:PATH (mode 0600)")
	f.BoolVar(&sameUser, "only-same-user", true, "with --gdb-remote: refuse connections from other users (loopback and Unix sockets)")
	f.IntVar(&attach, "attach", 0, "with --gdb-remote: attach to a running process")
	f.BoolVar(&once, "once", false, "with --gdb-remote: serve the first client only, then let the process go (killed if launched, unless --keep; detached if attached)")
	f.BoolVar(&multi, "multi", false, "with --gdb-remote: go on without a process (extended-remote run/attach/kill; the program is launched again for the next client)")
	f.BoolVar(&keep, "keep", false, "with --gdb-remote: detach from a launched process instead of killing it when the server lets it go")
	f.StringVar(&portFile, "port-file", "", "with --gdb-remote: write the port listened on to this file")
	f.StringVar(&cwd, "cwd", "", "with --gdb-remote: working directory of the program")
	f.BoolVar(&aslr, "aslr", false, "with --gdb-remote: leave address-space randomization on")
	f.StringVar(&upstream, "upstream", "", "with --gdb-remote: proxy the process of another GDB stub at [HOST:]PORT (gdbserver, qemu-user -g)")
	f.StringVar(&upCmd, "upstream-cmd", "", "with --gdb-remote: proxy a stub started by this shell command, spoken to over its stdin/stdout ('gdbserver - ./prog')")
	f.StringVar(&file, "file", "", "with --upstream: the program's local path, when the stub does not say (qemu-user)")
	root.Args = cobra.ArbitraryArgs
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if addr == "" {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q (see rseqdbg --help)", args[0])
			}
			return cmd.Help()
		}
		decls, err := parseDeclarations(declares)
		if err != nil {
			return err
		}
		if upstream != "" || upCmd != "" {
			return serveProxy(addr, portFile, upstream, upCmd, file, keep, once, sameUser, attach != 0 || len(args) > 0 || multi, decls)
		}
		if file != "" {
			return errors.New("--file goes with --upstream or --upstream-cmd")
		}
		if attach != 0 && len(args) > 0 || attach == 0 && len(args) == 0 && !multi {
			return errors.New("--gdb-remote needs a program after -- or --attach PID (one of them; neither with --multi)")
		}
		cfg := gdbproto.ServerConfig{Launcher: ptraceLauncher{}, Keep: keep, Once: once, Multi: multi, Notices: os.Stderr, Declare: decls}
		if attach != 0 {
			cfg.Attach = attach
		} else if len(args) > 0 {
			cfg.Program = &gdbproto.LaunchSpec{Path: args[0], Args: args[1:], Dir: cwd, KeepASLR: aslr}
		}
		cfg.DebugRegisters = ptrace.ProbeDebugRegisters
		return serveGDB(addr, portFile, sameUser, cfg)
	}
}

func serveGDB(spec, portFile string, onlySameUser bool, cfg gdbproto.ServerConfig) error {
	ls, err := parseListen("--gdb-remote", spec)
	if err != nil {
		return err
	}
	if portFile != "" && ls.network != "tcp" {
		return errors.New("--port-file goes with a TCP port")
	}
	// Folders of synthesized CFI that a killed rseqdbg could not remove.
	unwind.RemoveStaleCFIDirs()
	srv := gdbproto.NewServer(cfg)
	if err := srv.Start(); err != nil {
		return err
	}
	l, err := listen("GDB remote protocol", ls, onlySameUser)
	if err != nil {
		srv.Close()
		return err
	}
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		// The port file first: whoever waits for the line finds the file
		// written.
		if portFile != "" {
			if err := writePortFile(portFile, a.Port); err != nil {
				l.Close()
				srv.Close()
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "Listening on port %d\n", a.Port)
	} else {
		fmt.Fprintf(os.Stderr, "Listening on unix:%s\n", ls.addr)
	}
	stop := handleSignals(srv.Shutdown, func() {
		// The tracer thread did not answer the first signal (a stuck
		// upstream, a blocking file): leave now. The kernel kills launched
		// processes with their tracer (PTRACE_O_EXITKILL) and detaches
		// attached ones.
		fmt.Fprintln(os.Stderr, "rseqdbg: second signal: exiting without waiting for the debugged process")
		unwind.RemoveOwnCFIDirs()
		if ls.network == "unix" {
			os.Remove(ls.addr)
		}
		os.Exit(1)
	})
	defer stop()
	err = srv.Serve(l)
	if err != nil && !strings.Contains(err.Error(), "use of closed") {
		return err
	}
	return nil
}

// The proxy forwards what it does not interpret to the upstream through
// this interface; the server checks for it once, when it takes the process.
var _ gdbproto.Upstream = (*remote.Target)(nil)

// serveProxy serves gdb and lldb in front of another stub: its process,
// stepped through the rseq-aware core.
func serveProxy(addr, portFile, upstream, upCmd, file string, keep, once, sameUser, other bool, decls []session.Declaration) error {
	if upstream != "" && upCmd != "" {
		return errors.New("--upstream and --upstream-cmd exclude each other")
	}
	if other {
		return errors.New("--upstream and --upstream-cmd take no program, --attach or --multi: the process is the upstream's")
	}
	opts := remote.Options{ExecPath: file, Console: func(text string) { fmt.Fprint(os.Stderr, text) }}
	var t *remote.Target
	var err error
	if upstream != "" {
		a, _, perr := listenAddress(upstream)
		if perr != nil {
			return fmt.Errorf("--upstream %q: want [HOST:]PORT", upstream)
		}
		if host, _, _ := net.SplitHostPort(upstream); host != "" {
			a = upstream
		}
		t, err = remote.Dial(a, opts)
	} else {
		t, err = remote.Start(upCmd, opts)
	}
	if err != nil {
		return err
	}
	cfg := gdbproto.ServerConfig{Proxy: t, Keep: keep, Once: once, Notices: os.Stderr, Declare: decls}
	return serveGDB(addr, portFile, sameUser, cfg)
}

// parseDeclarations reads the --declare flags (START:END[:NAME]).
func parseDeclarations(flags []string) ([]session.Declaration, error) {
	var out []session.Declaration
	for _, f := range flags {
		d, err := session.ParseDeclaration(f)
		if err != nil {
			return nil, fmt.Errorf("--declare: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}
