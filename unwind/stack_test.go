package unwind

import (
	"testing"
)

// The end of every walk: glibc's static start code, with _start marked
// outermost by an undefined return address.
func checkOutermost(t *testing.T, im *image, frames []Frame) {
	t.Helper()
	if len(frames) >= 64 {
		t.Errorf("walk did not end:\n%s", describe(im, frames))
	}
	if last := im.name(frames[len(frames)-1].LookupPC()); last != "_start" {
		t.Errorf("walk ends in %s, want _start:\n%s", last, describe(im, frames))
	}
}

func TestChain(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			u, im, s, read := setup(t, v, "chain")
			frames, err := u.Frames(s.regs(), read, 64)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"c", "b", "a", "main", "__libc_start_call_main"}
			if got := frameNames(im, frames); !hasPrefix(got, want) {
				t.Fatalf("chain %v, want prefix %v\n%s", got, want, describe(im, frames))
			}
			// Ground truth from the compiler: c's return address and frame.
			if frames[1].PC != s.RA {
				t.Errorf("frame 1 pc %#x, __builtin_return_address says %#x", frames[1].PC, s.RA)
			}
			if frames[0].CFA != s.FA+16 {
				t.Errorf("frame 0 cfa %#x, __builtin_frame_address+16 says %#x", frames[0].CFA, s.FA+16)
			}
			for i := range 4 {
				if frames[i].Synthesized != v.noCFI {
					t.Errorf("frame %d synthesized=%v, want %v\n%s", i, frames[i].Synthesized, v.noCFI, describe(im, frames))
				}
			}
			checkOutermost(t, im, frames)

			ret, cfa, ok := u.ReturnAddress(s.regs(), read)
			if !ok || ret != s.RA || cfa != s.FA+16 {
				t.Errorf("ReturnAddress = %#x, %#x, %v; want %#x, %#x", ret, cfa, ok, s.RA, s.FA+16)
			}
			// Step agrees with Frames, own CFA included.
			f := Frame{PC: s.Rip, Regs: s.regs()}
			for i := 1; i < len(frames); i++ {
				next, ok := u.Step(f, read)
				if !ok || next.PC != frames[i].PC || next.CFA != frames[i].CFA {
					t.Fatalf("Step %d = %#x cfa %#x ok=%v, Frames has %#x cfa %#x", i, next.PC, next.CFA, ok, frames[i].PC, frames[i].CFA)
				}
				f = next
			}
		})
	}
}

// TestStub unwinds from inside a stub in __rseq_failure that has no CFI and
// has moved rsp before jumping back into a function that has CFI.
func TestStub(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			u, im, s, read := setup(t, v, "stub")
			stub := im.sym(t, "host_abort_stub")
			if s.Rip != im.sym(t, "host_stub_snap") {
				t.Fatalf("snapshot at %#x, not host_stub_snap", s.Rip)
			}
			want := []string{"host_abort_stub", "c", "b", "a", "main"}
			var cfa0 uint64
			// The snapshot point, the stub's entry (rsp 32 higher, nothing
			// pushed yet) and after its sub (rsp 8 higher).
			for _, at := range []struct {
				pc    uint64
				rspUp uint64
			}{{s.Rip, 0}, {stub, 32}, {stub + 4, 8}} {
				regs := s.regs()
				regs.Rip, regs.Rsp = at.pc, s.Rsp+at.rspUp
				frames, err := u.Frames(regs, read, 64)
				if err != nil {
					t.Fatal(err)
				}
				if got := frameNames(im, frames); !hasPrefix(got, want) {
					t.Fatalf("from %#x: chain %v, want prefix %v\n%s", at.pc, got, want, describe(im, frames))
				}
				if !frames[0].Synthesized {
					t.Errorf("from %#x: frame 0 not marked synthesized", at.pc)
				}
				if cfa0 == 0 {
					cfa0 = frames[0].CFA
				} else if frames[0].CFA != cfa0 {
					t.Errorf("from %#x: cfa %#x, from the snapshot point %#x", at.pc, frames[0].CFA, cfa0)
				}
				if frames[0].Regs.Rbx != 0x1234 {
					t.Errorf("frame 0 rbx %#x, want 0x1234", frames[0].Regs.Rbx)
				}
				// host saved the caller's rbx, then clobbered it.
				if frames[1].Regs.Rbx != s.EntryRbx {
					t.Errorf("from %#x: caller's rbx %#x, want %#x (saved by host)", at.pc, frames[1].Regs.Rbx, s.EntryRbx)
				}
				checkOutermost(t, im, frames)
			}
			// host's caller's CFA: 8 above host's return address.
			if ret, cfa, ok := u.ReturnAddress(s.regs(), read); !ok || im.name(ret-1) != "c" || cfa != cfa0 {
				t.Errorf("ReturnAddress = %#x (%s), %#x, %v", ret, im.name(ret-1), cfa, ok)
			}
		})
	}
}

// TestSignal unwinds from a signal handler through the trampoline into a
// function that faulted on its first instruction: its PC is exact, and
// PC-1 would name the function before it.
func TestSignal(t *testing.T) {
	for _, v := range variants {
		for _, mode := range []string{"sig", "sigraw"} {
			t.Run(v.name+"/"+mode, func(t *testing.T) {
				u, im, s, read := setup(t, v, mode)
				frames, err := u.Frames(s.regs(), read, 64)
				if err != nil {
					t.Fatal(err)
				}
				tramp := "__restore_rt"
				if mode == "sigraw" {
					tramp = "my_restorer"
				}
				want := []string{"handler", tramp, "d", "c", "b", "a", "main"}
				if got := frameNames(im, frames); !hasPrefix(got, want) {
					t.Fatalf("chain %v, want prefix %v\n%s", got, want, describe(im, frames))
				}
				if !frames[1].Signal || frames[0].Signal || frames[2].Signal {
					t.Errorf("signal flags wrong:\n%s", describe(im, frames))
				}
				d := im.sym(t, "d")
				if frames[2].PC != d || frames[2].LookupPC() != d {
					t.Errorf("interrupted frame pc %#x lookup %#x, want d=%#x", frames[2].PC, frames[2].LookupPC(), d)
				}
				if _, _, ok := u.ReturnAddress(frames[1].Regs, read); ok {
					t.Errorf("ReturnAddress from a trampoline should fail")
				}
				if mode == "sig" {
					// On __restore_rt's syscall the code no longer matches
					// the trampoline's first bytes: glibc's 'S' FDE, with
					// its CFA expression and DW_CFA_expression rules,
					// must give the same interrupted frame.
					regs := frames[1].Regs
					regs.Rip += 7
					next, ok := u.Step(Frame{PC: regs.Rip, Regs: regs}, read)
					if !ok || next.PC != d || next.Regs != frames[2].Regs {
						t.Errorf("via the 'S' FDE: %#x %v, want %#x", next.PC, ok, d)
					}
					f := Frame{PC: regs.Rip, Regs: regs}
					if r, ok := u.rowAt(&f, read); !ok || !r.signal || r.synth {
						t.Errorf("row at __restore_rt+7: signal=%v synth=%v ok=%v", r.signal, r.synth, ok)
					}
				}
				checkOutermost(t, im, frames)
			})
		}
	}
}
