// Command rseqdbg debugs programs that use restartable sequences: a GDB
// remote server, a DAP server and headless scripted stepping over one core
// that never stops a thread inside a critical section.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/rseqdbg/rseqdbg/dap"
	"github.com/rseqdbg/rseqdbg/headless"
	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/target/ptrace"
	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := rootCommand()
	root.SetArgs(gdbStyleFlags(os.Args[1:]))
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "rseqdbg:", err)
		os.Exit(2)
	}
}

// gdbStyleFlags accepts gdb's single-dash -ex (pflag would read it as -e
// with the value "x") by rewriting it to --ex before the program's own
// arguments start.
func gdbStyleFlags(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if a == "-ex" {
			out[i] = "--ex"
		}
	}
	return out
}

func rootCommand() *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:           "rseqdbg",
		Short:         "Debug programs that use Linux restartable sequences",
		Long:          "rseqdbg steps through rseq critical sections, vDSO functions and other restartable regions atomically, so stepping reaches the commit instead of aborting forever.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debugging detail to stderr")
	addGDBRemoteFlags(root)
	root.AddCommand(runCommand(), regionsCommand(), dapCommand(), abortTestCommand())
	return root
}

func runCommand() *cobra.Command {
	var (
		jsonOut   bool
		items     []scriptItem
		attach    int
		keepGoing bool
		cwd       string
		aslr      bool
		declares  []string
	)
	cmd := &cobra.Command{
		Use:   "run [flags] (-- PROG ARGS... | --attach PID)",
		Short: "Run gdb-like commands headless against a program",
		Long: `Starts PROG stopped at its first instruction (or attaches to PID), runs the
commands given with -ex and -x in the order given, then kills a launched
program, detaches from an attached one, or with --continue lets it run to its
end.

Commands: break LOC [if COND], tbreak LOC [if COND], ignore N COUNT,
delete [N], continue [N], stepi [N], nexti [N], step [N], next [N], finish,
until [LOC], advance LOC, bt, thread N,
info regions|threads|registers [REG]|breakpoints|display|stats,
print EXPR, display [EXPR], undisplay [N], x/NFU ADDR (F: x d u i; U: b h w g),
declare START END [NAME], undeclare [NAME|START], set inspect on|off, abort,
kill, echo TEXT, quit. LOC is FUNCTION, FILE:LINE or *EXPR. EXPR is C over
the program's variables (DWARF) and registers ($rax).`,
		Example: `  rseqdbg run -ex 'break inc_full' -ex continue -ex 'stepi 50' -- ./full_tables 1 100
  rseqdbg run --json -x script.gdb --continue -- ./prog`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (attach == 0) == (len(args) == 0) {
				return errors.New("give a program after -- or --attach PID (one of them)")
			}
			opts := headless.Options{JSON: jsonOut}
			var s *headless.Session
			var err error
			if attach != 0 {
				s, err = headless.Attach(attach, opts)
			} else {
				s, err = headless.Launch(ptrace.LaunchOptions{Path: args[0], Args: args[1:], Dir: cwd, KeepASLR: aslr}, opts)
			}
			if err != nil {
				return err
			}
			// Signalled, rseqdbg lets the program go as at the end of the
			// commands (an inspected thread gets its affinity back).
			stop := handleSignals(func() {
				// A command may be running for good (a continue of a
				// program that never stops): interrupt it first.
				s.Quit()
				s.Close(false)
				os.Exit(1)
			}, func() { os.Exit(1) })
			defer stop()
			// --declare first, then -ex and -x in the order they were
			// given, as in gdb.
			decls, err := parseDeclarations(declares)
			if err != nil {
				s.Close(false)
				return err
			}
			var script []string
			for _, d := range decls {
				script = append(script, strings.TrimSpace(fmt.Sprintf("declare %s %s %s", d.Start, d.End, d.Name)))
			}
			for _, it := range items {
				if !it.file {
					script = append(script, it.text)
					continue
				}
				b, err := os.ReadFile(it.text)
				if err != nil {
					s.Close(false)
					return fmt.Errorf("reading command file: %w", err)
				}
				script = append(script, strings.Split(string(b), "\n")...)
			}
			for _, line := range script {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				if err := s.Exec(line); err != nil {
					break
				}
			}
			code := s.Close(keepGoing)
			if keepGoing && code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print one JSON object per event")
	cmd.Flags().Var(&scriptFlag{items: &items}, "ex", "run a command (repeatable; -ex works too)")
	cmd.Flags().VarP(&scriptFlag{items: &items, file: true}, "command", "x", "run commands from a file (repeatable)")
	cmd.Flags().IntVar(&attach, "attach", 0, "attach to a running process")
	cmd.Flags().BoolVar(&keepGoing, "continue", false, "after the commands, let the program run to its end and exit with its code")
	cmd.Flags().StringVar(&cwd, "cwd", "", "working directory of the program")
	cmd.Flags().BoolVar(&aslr, "aslr", false, "leave address-space randomization on")
	cmd.Flags().StringArrayVar(&declares, "declare", nil, "step START:END[:NAME] as one region (addresses or SYMBOL+OFFSET; repeatable)")
	return cmd
}

func regionsCommand() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "regions PROG|LIB...",
		Short: "List the restartable regions an ELF object publishes, with exits and warnings",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var objs []*regions.Object
			var failed error
			for _, path := range args {
				obj, err := regions.LoadFile(path, 0)
				if err != nil {
					fmt.Fprintf(os.Stderr, "rseqdbg: %v\n", err)
					failed = exitError{1}
					continue
				}
				objs = append(objs, obj)
			}
			var err error
			if jsonOut {
				err = regions.WriteJSON(os.Stdout, objs)
			} else {
				err = regions.WriteText(os.Stdout, objs)
			}
			if err != nil {
				return err
			}
			return failed
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func dapCommand() *cobra.Command {
	var (
		listenAt string
		sameUser bool
	)
	cmd := &cobra.Command{
		Use:   "dap [--listen [HOST:]PORT|unix:PATH]",
		Short: "Serve the Debug Adapter Protocol (VS Code) on stdio, TCP or a Unix socket",
		Long: `Speaks DAP on stdin/stdout, as VS Code's DebugAdapterExecutable expects, or
with --listen on one connection: TCP (a bare port listens on loopback only;
the chosen address is printed when the port is 0) or a Unix socket only its
owner can use. Connections from other users are refused unless
--only-same-user=false. One session per process: it ends when the client
disconnects. Logs go to stderr.`,
		Example: `  rseqdbg dap
  rseqdbg dap --listen :0
  rseqdbg dap --listen unix:/tmp/rseqdbg-dap.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Signalled, the server lets the program go as a disconnect
			// does (an inspected thread gets its affinity back).
			serve := func(srv *dap.Server) error {
				stop := handleSignals(func() {
					// An orderly end, as a disconnect (VS Code ends its
					// adapter with SIGTERM after the session).
					srv.Shutdown()
					os.Exit(0)
				}, func() { os.Exit(1) })
				defer stop()
				return srv.Serve()
			}
			if listenAt == "" {
				return serve(dap.NewServer(os.Stdin, os.Stdout, dap.Options{}))
			}
			ls, err := parseListen("--listen", listenAt)
			if err != nil {
				return err
			}
			ln, err := listen("Debug Adapter Protocol", ls, sameUser)
			if err != nil {
				return fmt.Errorf("listening for a DAP client: %w", err)
			}
			defer ln.Close()
			if ls.network == "unix" {
				fmt.Printf("DAP server listening at: unix:%s\n", ls.addr)
			} else {
				fmt.Printf("DAP server listening at: %s\n", ln.Addr())
			}
			conn, err := ln.Accept()
			if err != nil {
				return fmt.Errorf("accepting a DAP client: %w", err)
			}
			// One session: nobody else may connect while it runs.
			ln.Close()
			defer conn.Close()
			return serve(dap.NewServer(conn, conn, dap.Options{}))
		},
	}
	cmd.Flags().StringVar(&listenAt, "listen", "", "serve one client at [HOST:]PORT (loopback unless a host is given) or unix:PATH (mode 0600) instead of stdio")
	cmd.Flags().BoolVar(&sameUser, "only-same-user", true, "refuse connections from other users (loopback and Unix sockets)")
	return cmd
}

// scriptItem is one -ex command or -x file, kept in command-line order.
type scriptItem struct {
	text string
	file bool
}

// scriptFlag is -ex or -x: both append to one list, so commands and files
// run in the order given (pflag keeps no order across two flags).
type scriptFlag struct {
	items *[]scriptItem
	file  bool
}

func (f *scriptFlag) String() string { return "" }
func (f *scriptFlag) Type() string   { return "stringArray" }
func (f *scriptFlag) Set(v string) error {
	*f.items = append(*f.items, scriptItem{text: v, file: f.file})
	return nil
}
