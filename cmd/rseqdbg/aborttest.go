package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rseqdbg/rseqdbg/aborttest"
	"github.com/spf13/cobra"
)

func abortTestCommand() *cobra.Command {
	var (
		jsonOut    bool
		seed       int64
		maxRuns    int
		timeout    time.Duration
		showOutput bool
	)
	cmd := &cobra.Command{
		Use:   "abort-test [--json] [--seed N] [--max-runs N] -- PROG ARGS",
		Short: "Inject the kernel's abort at every position of every critical section a program enters",
		Long: `Runs PROG once plainly, then under rseqdbg: on each entry into a critical
section it steps k instructions of the section (the other threads held) and
aborts it as the kernel would, for every k on the paths it sees, until every
position is covered. Outside that entry the program runs natively.

The exit status is 0 when every run ended as the plain run did. Otherwise it
is 1, and the section and position whose abort broke the program are named
with the seed that replays the run.`,
		Example: `  rseqdbg abort-test -- ./param_test -T s -t 4
  rseqdbg abort-test --json --seed 7 -- ./prog`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("seed") {
				seed = time.Now().UnixNano() % 1000000
			}
			opts := aborttest.Options{Path: args[0], Args: args[1:], Seed: seed, MaxRuns: maxRuns, Timeout: timeout}
			if showOutput {
				opts.Output = os.Stderr
			}
			enc := json.NewEncoder(os.Stdout)
			if jsonOut {
				opts.OnInjection = func(in aborttest.Injection) {
					enc.Encode(struct {
						Event string `json:"event"`
						aborttest.Injection
					}{"injection", in})
				}
			}
			rep, err := aborttest.Run(opts)
			if err != nil {
				return err
			}
			if jsonOut {
				if err := enc.Encode(struct {
					Event string `json:"event"`
					*aborttest.Report
					OK bool `json:"ok"`
				}{"summary", rep, rep.OK()}); err != nil {
					return err
				}
			} else {
				writeAbortReport(rep)
			}
			if !rep.OK() {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per injection, then a summary")
	cmd.Flags().Int64Var(&seed, "seed", 0, "order of the positions injected (default: chosen and printed)")
	cmd.Flags().IntVar(&maxRuns, "max-runs", 50, "most runs of the program, coverage and narrowing a failure together")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "longest run; a run past it is killed and fails")
	cmd.Flags().BoolVar(&showOutput, "show-output", false, "copy the program's output to stderr")
	return cmd
}

func writeAbortReport(rep *aborttest.Report) {
	fmt.Printf("plain run: %v; %d runs under injection, seed %d\n", rep.Plain, rep.Runs, rep.Seed)
	w := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "SECTION\tSTART\tSOURCE\tENTRIES\tCOVERED\tINJECTED\tFAILING")
	for _, s := range rep.Sections {
		src := ""
		if s.File != "" {
			src = fmt.Sprintf("%s:%d", s.File, s.Line)
		}
		failing := "-"
		if len(s.Failing) > 0 {
			failing = fmt.Sprint(s.Failing)
		}
		fmt.Fprintf(w, "%s\t%#x\t%s\t%d\t%d/%d\t%d\t%s\n", s.Name, s.Start, src, s.Entries, s.Covered, s.Total, s.Injected, failing)
	}
	w.Flush()
	switch {
	case rep.Failure != nil:
		f := rep.Failure
		fmt.Printf("FAIL: an abort at position %d of %s (%#x) made run %d end with %v instead of %v", f.K, f.Section, f.Start, f.Run, f.Ending, rep.Plain)
		if f.Reason != "" {
			fmt.Printf(" (%s)", f.Reason)
		}
		fmt.Printf("; replay with --seed %d\n", f.Seed)
	case rep.Incomplete:
		fmt.Println("INCOMPLETE: --max-runs ended the coverage before every position was injected")
	default:
		fmt.Println("PASS: every position of every section entered was aborted, and every run ended as the plain run")
	}
}
