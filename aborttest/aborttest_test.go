package aborttest

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func fixture(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "tests", "fixtures")
	if out, err := exec.Command("make", "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("building fixtures: %v\n%s", err, out)
	}
	return filepath.Join(dir, "build", name)
}

// Every fixture flavour: each section entered is aborted at every position
// of its path, and the program still ends as its plain run.
func TestCoversEveryFlavour(t *testing.T) {
	for _, fx := range []struct {
		prog    string
		args    []string
		entered int // sections the run must enter
	}{
		{"full_tables", []string{"2", "200"}, 2},
		{"legacy_table", []string{"2", "200"}, 2},
		{"no_tables", []string{"2", "200"}, 2}, // found by the data scan
		{"call_helper", []string{"2", "200"}, 2},
		{"branch_exit", []string{"2", "200"}, 2},
		{"lld_tables", []string{"2", "200"}, 2},
		{"dlopen_main", []string{"2", "200"}, 2}, // sections of a dlopen'ed library
		{"eight_sections", []string{"1", "400"}, 8},
	} {
		t.Run(fx.prog, func(t *testing.T) {
			rep, err := Run(Options{Path: fixture(t, fx.prog), Args: fx.args, Seed: 1, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatalf("not ok: failure %+v incomplete %v", rep.Failure, rep.Incomplete)
			}
			entered := 0
			for _, s := range rep.Sections {
				if s.Entries == 0 {
					continue
				}
				entered++
				if s.Total < 4 || s.Covered != s.Total || s.Injected < s.Total {
					t.Errorf("%s: covered %d of %d, injected %d", s.Name, s.Covered, s.Total, s.Injected)
				}
			}
			if entered != fx.entered {
				t.Errorf("%d sections entered, want %d: %+v", entered, fx.entered, rep.Sections)
			}
		})
	}
}

// The planted bug: inc_shadow updates a second per-CPU slot before its
// commit and its abort handler does not undo it. Its plain run passes; an
// abort right before the commit breaks it, and abort-test names that
// section and position, reproduced by that one injection alone.
func TestFindsPlantedBug(t *testing.T) {
	prog := fixture(t, "abort_bug")
	if out, err := exec.Command(prog, "1", "200").CombinedOutput(); err != nil {
		t.Fatalf("plain run failed: %v\n%s", err, out)
	}
	var injections []Injection
	rep, err := Run(Options{Path: prog, Args: []string{"1", "200"}, Seed: 5, Timeout: 30 * time.Second,
		OnInjection: func(in Injection) { injections = append(injections, in) }})
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Failure
	if rep.OK() || f == nil {
		t.Fatalf("the planted bug went unseen: %+v", rep)
	}
	if len(rep.Sections) != 1 {
		t.Fatalf("sections %+v", rep.Sections)
	}
	s := rep.Sections[0]
	// Positions: cmp, jnz, load, add, shadow update, commit store. Only an
	// abort between the shadow update and the commit breaks the sums.
	if !strings.HasPrefix(f.Section, "inc_shadow+") || f.K != s.Total-1 || !f.Alone || f.Ending.Code != 3 || f.Seed != 5 {
		t.Errorf("failure %+v, want inc_shadow at position %d alone, exit 3", f, s.Total-1)
	}
	if len(s.Failing) != 1 || s.Failing[0] != f.K {
		t.Errorf("section's failing positions %v", s.Failing)
	}
	if len(injections) == 0 || injections[0].Run != 1 {
		t.Errorf("injections %+v", injections)
	}
}

// BenchmarkEightSections: full coverage of a program with 8 sections of 10
// instructions, plain run included.
func BenchmarkEightSections(b *testing.B) {
	prog := fixture(b, "eight_sections")
	for i := 0; i < b.N; i++ {
		rep, err := Run(Options{Path: prog, Args: []string{"1", "400"}, Seed: int64(i)})
		if err != nil || !rep.OK() {
			b.Fatalf("%v %+v", err, rep)
		}
	}
}
