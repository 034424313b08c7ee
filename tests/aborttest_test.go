package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// rseqdbg abort-test as a user runs it: the planted abort-path bug fails
// with exit status 1, naming the section, the position and the seed; a
// correct program passes with every position covered. --json gives one
// object per injection and a summary.
func TestAbortTestCommand(t *testing.T) {
	out, err := exec.Command(binary, "abort-test", "--seed", "9", "--", fixture("abort_bug"), "1", "200").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("abort-test of abort_bug: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("FAIL: an abort at position 5 of inc_shadow+")) || !bytes.Contains(out, []byte("--seed 9")) {
		t.Errorf("the failure is not named:\n%s", out)
	}

	cmd := exec.Command(binary, "abort-test", "--json", "--seed", "2", "--", fixture("full_tables"), "2", "200")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("abort-test of full_tables: %v\n%s", err, out)
	}
	injections := 0
	var summary struct {
		Event    string
		OK       bool
		Seed     int64
		Sections []struct {
			Name                    string
			Entries, Total, Covered int
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		switch ev["event"] {
		case "injection":
			injections++
		case "summary":
			json.Unmarshal(sc.Bytes(), &summary)
		}
	}
	if !summary.OK || summary.Seed != 2 || len(summary.Sections) != 2 {
		t.Fatalf("summary %+v\n%s", summary, out)
	}
	total := 0
	for _, s := range summary.Sections {
		if !strings.HasPrefix(s.Name, "inc_full+") && !strings.HasPrefix(s.Name, "worker+") || s.Covered != s.Total || s.Total == 0 {
			t.Errorf("section %+v", s)
		}
		total += s.Total
	}
	if injections < total {
		t.Errorf("%d injections for %d positions", injections, total)
	}
}
