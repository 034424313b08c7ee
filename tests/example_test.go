package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// exampleKeyLines are the lines of `make example` that show what it is
// for: the breakpoint stop, the atomic crossing with its commit, the step
// after it, and the program's own count of commits.
var exampleKeyLines = regexp.MustCompile(`^(Thread \S+ stopped \((breakpoint|step)\)|  rseq |RESULT )`)

var (
	exampleThread = regexp.MustCompile(`Thread \d+`)
	examplePath   = regexp.MustCompile(`/\S*/tests/fixtures/`)
	exampleAddr   = regexp.MustCompile(`0x[0-9a-f]+`)
)

// normalizeExample leaves out what changes from run to run or with any
// edit of the fixture (thread ids, paths, addresses); functions, offsets,
// lines and counts are compared.
func normalizeExample(line string) string {
	line = exampleThread.ReplaceAllString(line, "Thread N")
	line = exampleAddr.ReplaceAllString(line, "0x…")
	return examplePath.ReplaceAllString(line, "tests/fixtures/")
}

func exampleLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if exampleKeyLines.MatchString(l) {
			out = append(out, normalizeExample(l))
		}
	}
	return out
}

// TestMakeExample runs `make example` as a new user would and checks that
// it shows a crossing ended by a commit, and that the README's sample is
// this output: the same key lines, thread ids, paths and addresses aside.
func TestMakeExample(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	cmd := exec.Command("make", "--no-print-directory", "-s", "example")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make example: %v\n%s", err, out)
	}
	got := exampleLines(string(out))
	var crossing, commit bool
	for _, l := range got {
		if strings.HasPrefix(l, "  rseq inc_full") && strings.Contains(l, "): commit at 0x") {
			crossing = true
		}
		if strings.HasPrefix(l, "RESULT ") && strings.Contains(l, "commits=1000 aborts=0") {
			commit = true
		}
	}
	if !crossing || !commit {
		t.Fatalf("make example shows no crossing of inc_full's section ended by its commit (crossing %v, count %v):\n%s", crossing, commit, out)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sample, ok := strings.Cut(string(readme), "```\n$ make example\n")
	if !ok {
		t.Fatal("README has no `$ make example` sample")
	}
	sample, _, _ = strings.Cut(sample, "```")
	want := exampleLines(sample)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's sample drifted from `make example`:\nREADME:\n%s\nmake example:\n%s",
			strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
}
