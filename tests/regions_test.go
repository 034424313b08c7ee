package tests

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

type jsonRegion struct {
	Kind, Name, Start, Commit, Abort, Source string
	Warnings                                 []string
}

type jsonObject struct {
	Path     string
	Regions  []jsonRegion
	Warnings []string
}

func regionsOf(t *testing.T, paths ...string) ([]jsonObject, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"regions", "--json"}, paths...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Fatalf("panic:\n%s", stderr.String())
	}
	var doc struct{ Objects []jsonObject }
	if len(out) > 0 {
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, out)
		}
	}
	return doc.Objects, stderr.String(), code
}

func hexval(t *testing.T, s string) uint64 {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("bad address %q", s)
	}
	return v
}

// isDescriptorStore reports whether 4 bytes are `mov %rax, 8(%reg)`, the
// store the ABI puts right before start_ip (REX.W 89 /r with disp8 8).
func isDescriptorStore(b []byte) bool {
	return len(b) == 4 && (b[0] == 0x48 || b[0] == 0x49) && b[1] == 0x89 && b[2]&0xc0 == 0x40 && b[3] == 0x08
}

// fileBytes reads bytes at a link-time address from an ELF file.
func fileBytes(t *testing.T, path string, addr uint64, n int) []byte {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr+uint64(n) <= p.Vaddr+p.Filesz {
			b := make([]byte, n)
			if _, err := p.ReadAt(b, int64(addr-p.Vaddr)); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("%#x not in a segment of %s", addr, path)
	return nil
}

// Acceptance 5 (static half): every descriptor of every fixture, at the
// right addresses, for GNU ld, lld and a shared object.
func TestRegionsCommandFixtures(t *testing.T) {
	want := map[string]int{"full_tables": 2, "legacy_table": 2, "call_helper": 2, "branch_exit": 2,
		"lld_tables": 2, "libpercpu.so": 2, "no_tables": 0}
	for prog, n := range want {
		t.Run(prog, func(t *testing.T) {
			objs, stderr, code := regionsOf(t, fixture(prog))
			if code != 0 || len(objs) != 1 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := len(objs[0].Regions); got != n {
				t.Fatalf("%d regions, want %d: %+v", got, n, objs[0].Regions)
			}
			for _, r := range objs[0].Regions {
				start := hexval(t, r.Start)
				if b := fileBytes(t, fixture(prog), start-4, 4); !isDescriptorStore(b) {
					t.Errorf("%s: bytes before start %#x are %x, not the descriptor store", r.Name, start, b)
				}
				abort := hexval(t, r.Abort)
				if sig := fileBytes(t, fixture(prog), abort-4, 4); string(sig) != "\x53\x30\x05\x53" {
					t.Errorf("%s: no signature before abort %#x: %x", r.Name, abort, sig)
				}
				if len(r.Warnings) > 0 {
					t.Errorf("%s: unexpected warnings %v", r.Name, r.Warnings)
				}
			}
		})
	}
}

// The broken table warns for each breakage and still lists the good ones.
func TestRegionsBrokenTableWarns(t *testing.T) {
	objs, stderr, code := regionsOf(t, fixture("broken_table"))
	if code != 0 {
		t.Fatalf("broken table made the command fail (%d): %s", code, stderr)
	}
	var all []string
	all = append(all, objs[0].Warnings...)
	for _, r := range objs[0].Regions {
		all = append(all, r.Warnings...)
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{"signature", "abort 0x", "inside", "overlaps", "version 1", "0x10"} {
		if !strings.Contains(text, want) {
			t.Errorf("no warning mentioning %q in:\n%s", want, text)
		}
	}
	good := 0
	for _, r := range objs[0].Regions {
		if strings.HasPrefix(r.Name, "inc_broken") || strings.HasPrefix(r.Name, "worker") {
			good++
		}
	}
	if good != 2 {
		t.Errorf("the two real sections are not listed: %+v", objs[0].Regions)
	}
}

// Bad input: truncated and garbage files give a clear error, no panic.
func TestRegionsBadInput(t *testing.T) {
	for _, f := range []string{"garbage.elf", "truncated.elf", "does-not-exist"} {
		_, stderr, code := regionsOf(t, fixture(f))
		if code == 0 || !strings.Contains(stderr, "rseqdbg:") {
			t.Errorf("%s: exit %d, stderr %q", f, code, stderr)
		}
	}
}

// Acceptance 5 (run-time half): regions of the PIE executable, the lld one
// and the dlopen'ed library appear at run-time addresses whose bytes in the
// live process are the descriptor store before start.
func TestRegionsAtRunTime(t *testing.T) {
	cases := []struct {
		prog   string
		src    string
		marker string
		object string
	}{
		{"full_tables", "full_tables.c", "RSEQ-LINE", "full_tables"},
		{"lld_tables", "full_tables.c", "RSEQ-LINE", "lld_tables"},
		{"dlopen_main", "libpercpu.c", "RSEQ-LINE", "libpercpu.so"},
	}
	for _, c := range cases {
		t.Run(c.prog, func(t *testing.T) {
			line := markerLine(t, c.src, c.marker)
			s := run(t, []string{fmt.Sprintf("break %s:%d", c.src, line), "continue", "info regions"}, nil, fixture(c.prog), "1", "10")
			if len(s.of("regions")) == 0 {
				t.Fatalf("no regions event: %v", s.events)
			}
			var starts []string
			for _, r := range s.of("regions")[0]["regions"].([]any) {
				m := event(r.(map[string]any))
				if m.str("kind") == "rseq" && strings.HasSuffix(m.str("object"), c.object) {
					starts = append(starts, m.str("start"))
				}
			}
			if len(starts) != 2 {
				t.Fatalf("want 2 sections of %s, got %v", c.object, starts)
			}
			var cmds []string
			for _, st := range starts {
				cmds = append(cmds, fmt.Sprintf("x/4xb %#x", hexval(t, st)-4))
			}
			s2 := run(t, append([]string{fmt.Sprintf("break %s:%d", c.src, line), "continue"}, cmds...), nil, fixture(c.prog), "1", "10")
			mems := s2.of("memory")
			if len(mems) != 2 {
				t.Fatalf("memory reads failed: %v", s2.events)
			}
			for i, m := range mems {
				var b []byte
				for _, v := range m["values"].([]any) {
					x, _ := strconv.ParseUint(strings.TrimPrefix(v.(string), "0x"), 16, 8)
					b = append(b, byte(x))
				}
				if !isDescriptorStore(b) {
					t.Errorf("live bytes before %s are %x, not the descriptor store", starts[i], b)
				}
			}
		})
	}
}
