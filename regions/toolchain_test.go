package regions

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// toolchainAsm exercises what real assemblers and linkers produce: a
// section with a branch exit also listed as an exit point, a call, an
// indirect jump; a descriptor in .data.rel.ro reached only through the
// pointer array; and an exit point naming no section.
const toolchainAsm = `
	.text
	.globl f
	.type f, @function
f:
.Lretry1:
	leaq cs1(%rip), %rax
	movq %rax, 8(%rdi)
.Lstart1:
	cmpl 4(%rdi), %esi
	jnz .Labort1
	testq %rdx, %rdx
	js .Lout1
	call g
	jmp *%rcx
.Lpost1:
	ret
.Lout1:
	xorl %eax, %eax
	ret
	.size f, .-f

	.type g, @function
g:
	ret
	.size g, .-g

	.globl h
	.type h, @function
h:
.Lretry2:
	leaq cs2(%rip), %rax
	movq %rax, 8(%rdi)
.Lstart2:
	movq (%rsi), %rax
	addq $1, %rax
	movq %rax, (%rsi)
.Lpost2:
	ret
	.size h, .-h

	.section __rseq_failure, "ax"
	.byte 0x0f, 0xb9, 0x3d
	.long 0x53053053
.Labort1:
	jmp .Lretry1
	.byte 0x0f, 0xb9, 0x3d
	.long 0x53053053
.Labort2:
	jmp .Lretry2

	.section __rseq_cs, "aw"
	.balign 32
cs1:
	.long 0, 0
	.quad .Lstart1, .Lpost1 - .Lstart1, .Labort1

	.section .data.rel.ro, "aw"
	.balign 32
cs2:
	.long 0, 0
	.quad .Lstart2, .Lpost2 - .Lstart2, .Labort2

	.section __rseq_cs_ptr_array, "aw"
	.quad cs1
	.quad cs2

	.section __rseq_exit_point_array, "aw"
	.quad .Lstart1, .Lout1
	.quad .Lpost2, .Lout1

	.section .note.GNU-stack, "", @progbits
`

// buildShared assembles toolchainAsm into a shared library with the given
// compiler driver and extra flags, skipping when the tools are missing.
func buildShared(t *testing.T, cc string, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("%s not installed", cc)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "t.S")
	if err := os.WriteFile(src, []byte(toolchainAsm), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "libt.so")
	args := append([]string{"-shared", "-nostdlib", "-o", out, src}, flags...)
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Skipf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, b)
	}
	return out
}

func checkToolchainObject(t *testing.T, path string) *Object {
	obj, err := LoadFile(path, 0x7f0000000000)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	sym := map[string]uint64{}
	for _, s := range syms {
		sym[s.Name] = s.Value + 0x7f0000000000
	}
	if len(obj.Regions) != 2 {
		t.Fatalf("regions %v warnings %q", obj.Regions, obj.Warnings)
	}
	r1, r2 := obj.Regions[0], obj.Regions[1]
	if r1.Name != "f+11" || r1.Start != sym["f"]+11 || r2.Name != "h+11" {
		t.Errorf("names %q %q", r1.Name, r2.Name)
	}
	// f: cmpl(3) jnz(6) testq(3) js(2) call(5) jmp*(2) -> ret, then .Lout1.
	post := r1.Start + 21
	out := post + 1
	want := []Exit{{post, ExitCommit}, {out, ExitPoint}, {r1.Abort, ExitAbort}}
	if r1.End != post || !equalExits(r1.Exits, want) {
		t.Errorf("f: end %#x exits %v, want %#x %v", r1.End, r1.Exits, post, want)
	}
	if len(r1.Calls) != 1 || r1.Calls[0] != r1.Start+14 || len(r1.Indirect) != 1 || r1.Indirect[0] != r1.Start+19 {
		t.Errorf("f: calls %#x indirect %#x", r1.Calls, r1.Indirect)
	}
	if len(r1.Warnings) != 1 || !strings.Contains(r1.Warnings[0], "indirect exit at "+hex(r1.Start+19)) {
		t.Errorf("f: warnings %q", r1.Warnings)
	}
	if r1.AbortJump != sym["f"] || r2.AbortJump != sym["h"] || r1.Source != "__rseq_cs_ptr_array" {
		t.Errorf("abort jumps %#x %#x, want %#x %#x", r1.AbortJump, r2.AbortJump, sym["f"], sym["h"])
	}
	if r2.End-r2.Start != 10 || len(r2.Warnings) != 0 || r2.Descriptor != sym["cs2"] {
		t.Errorf("h: %v warnings %q desc %#x", r2, r2.Warnings, r2.Descriptor)
	}
	for _, w := range []string{"lies outside __rseq_cs", "matches no region"} {
		if !hasWarning(obj.Warnings, w) {
			t.Errorf("no object warning %q in %q", w, obj.Warnings)
		}
	}
	return obj
}

func TestToolchainGNU(t *testing.T) {
	checkToolchainObject(t, buildShared(t, "gcc"))
}

func TestToolchainLLD(t *testing.T) {
	path := buildShared(t, "clang", "-fuse-ld=lld")
	checkToolchainObject(t, path)
}

// TestToolchainPackedRelocs: with -z pack-relative-relocs (GNU ld 2.38+)
// some values are relocated by RELR entries, whose addend is the section
// content itself.
func TestToolchainPackedRelocs(t *testing.T) {
	path := buildShared(t, "gcc", "-Wl,-z,pack-relative-relocs")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Section(".relr.dyn") == nil {
		t.Skip("the linker made no .relr.dyn")
	}
	checkToolchainObject(t, path)
}
