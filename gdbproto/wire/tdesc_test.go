package wire

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
)

func TestRegistersNumbering(t *testing.T) {
	// gdb's amd64-linux numbering, which gdbserver also uses.
	want := []string{
		"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
		"rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
		"st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7",
		"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop",
		"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		"xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
		"mxcsr", "orig_rax", "fs_base", "gs_base",
	}
	for i := range 16 {
		want = append(want, fmt.Sprintf("ymm%dh", i))
	}
	for _, avx := range []bool{false, true} {
		regs := Registers(avx)
		n := 60
		size := 560
		if avx {
			n, size = 76, 816
		}
		if len(regs) != n {
			t.Fatalf("avx=%v: %d registers, want %d", avx, len(regs), n)
		}
		off := 0
		for i, r := range regs {
			if r.Name != want[i] || r.Regnum != i {
				t.Errorf("avx=%v: register %d is %s (regnum %d), want %s", avx, i, r.Name, r.Regnum, want[i])
			}
			if r.Offset != off {
				t.Errorf("avx=%v: %s at offset %d, want %d", avx, r.Name, r.Offset, off)
			}
			if r.Size*8 != r.Bitsize || r.Size == 0 {
				t.Errorf("avx=%v: %s size %d bytes, bitsize %d", avx, r.Name, r.Size, r.Bitsize)
			}
			off += r.Size
		}
		if off != size || RegisterFileSize(avx) != size {
			t.Errorf("avx=%v: register file %d bytes (RegisterFileSize %d), want %d", avx, off, RegisterFileSize(avx), size)
		}
	}
	spot := map[string]RegInfo{}
	for _, r := range Registers(true) {
		spot[r.Name] = r
	}
	checks := []struct {
		name          string
		size, offset  int
		generic, typ  string
		dwarf, regnum int
	}{
		{"rip", 8, 128, "pc", "code_ptr", 16, 16},
		{"rsp", 8, 56, "sp", "data_ptr", 7, 7},
		{"rbp", 8, 48, "fp", "data_ptr", 6, 6},
		{"eflags", 4, 136, "flags", "i386_eflags", 49, 17},
		{"st0", 10, 164, "", "i387_ext", 33, 24},
		{"xmm0", 16, 276, "", "vec128", 17, 40},
		{"mxcsr", 4, 532, "", "i386_mxcsr", 64, 56},
		{"orig_rax", 8, 536, "", "int", -1, 57},
		{"fs_base", 8, 544, "", "int", 58, 58},
		{"ymm0h", 16, 560, "", "uint128", -1, 60},
	}
	for _, c := range checks {
		r := spot[c.name]
		if r.Size != c.size || r.Offset != c.offset || r.Generic != c.generic || r.Type != c.typ || r.DWARF != c.dwarf || r.Regnum != c.regnum {
			t.Errorf("%s = %+v, want size %d offset %d generic %q type %q dwarf %d regnum %d",
				c.name, r, c.size, c.offset, c.generic, c.typ, c.dwarf, c.regnum)
		}
	}
	// Callers get their own copy.
	Registers(false)[0].Name = "clobbered"
	if Registers(false)[0].Name != "rax" {
		t.Error("Registers returned shared state")
	}
}

type xmlTarget struct {
	Architecture string `xml:"architecture"`
	OSABI        string `xml:"osabi"`
	Features     []struct {
		Name string `xml:"name,attr"`
		Regs []struct {
			Name    string `xml:"name,attr"`
			Bitsize int    `xml:"bitsize,attr"`
			Type    string `xml:"type,attr"`
			Regnum  int    `xml:"regnum,attr"`
			Generic string `xml:"generic,attr"`
		} `xml:"reg"`
	} `xml:"feature"`
}

func TestTargetXML(t *testing.T) {
	for _, avx := range []bool{false, true} {
		files := TargetXML(avx)
		if len(files) != 1 || files["target.xml"] == nil {
			t.Fatalf("avx=%v: documents %v, want only target.xml", avx, files)
		}
		var doc xmlTarget
		dec := xml.NewDecoder(bytes.NewReader(files["target.xml"]))
		dec.Strict = true
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("avx=%v: target.xml is not well-formed: %v", avx, err)
		}
		if doc.Architecture != "i386:x86-64" || doc.OSABI != "GNU/Linux" {
			t.Errorf("avx=%v: architecture %q osabi %q", avx, doc.Architecture, doc.OSABI)
		}
		wantFeatures := []string{featCore, featSSE, featLinux, featSegments}
		if avx {
			wantFeatures = append(wantFeatures, featAVX)
		}
		var gotFeatures []string
		regs := Registers(avx)
		i := 0
		for _, f := range doc.Features {
			gotFeatures = append(gotFeatures, f.Name)
			for _, r := range f.Regs {
				if i >= len(regs) {
					t.Fatalf("avx=%v: more registers in XML than in table", avx)
				}
				w := regs[i]
				if r.Name != w.Name || r.Bitsize != w.Bitsize || r.Type != w.Type || r.Regnum != w.Regnum || r.Generic != w.Generic || f.Name != w.Feature {
					t.Errorf("avx=%v: XML register %+v in %s, table has %+v", avx, r, f.Name, w)
				}
				i++
			}
		}
		if i != len(regs) {
			t.Errorf("avx=%v: %d registers in XML, %d in table", avx, i, len(regs))
		}
		if strings.Join(gotFeatures, ",") != strings.Join(wantFeatures, ",") {
			t.Errorf("avx=%v: features %v, want %v", avx, gotFeatures, wantFeatures)
		}
		// Every type referenced is built in or defined in the document.
		body := string(files["target.xml"])
		for _, typ := range []string{"i386_eflags", "i386_mxcsr", "vec128"} {
			if !strings.Contains(body, `id="`+typ+`"`) {
				t.Errorf("avx=%v: type %s used but not defined", avx, typ)
			}
		}
	}
	TargetXML(false)["target.xml"][0] = 'X'
	if TargetXML(false)["target.xml"][0] != '<' {
		t.Error("TargetXML returned shared state")
	}
}

func TestRegisterInfoReply(t *testing.T) {
	tests := []struct {
		i    int
		avx  bool
		want string
	}{
		{0, false, "name:rax;bitsize:64;offset:0;encoding:uint;format:hex;set:general;ehframe:0;dwarf:0;"},
		{16, false, "name:rip;bitsize:64;offset:128;encoding:uint;format:hex;set:general;ehframe:16;dwarf:16;generic:pc;"},
		{5, false, "name:rdi;bitsize:64;offset:40;encoding:uint;format:hex;set:general;ehframe:5;dwarf:5;generic:arg1;"},
		{24, false, "name:st0;bitsize:80;offset:164;encoding:vector;format:vector-uint8;set:float;ehframe:33;dwarf:33;"},
		{34, false, "name:ftag;bitsize:32;offset:252;encoding:uint;format:hex;set:float;"},
		{57, false, "name:orig_rax;bitsize:64;offset:536;encoding:uint;format:hex;set:system;"},
		{59, false, "name:gs_base;bitsize:64;offset:552;encoding:uint;format:hex;set:general;ehframe:59;dwarf:59;"},
		{60, false, "E45"},
		{-1, false, "E45"},
		{75, true, "name:ymm15h;bitsize:128;offset:800;encoding:vector;format:vector-uint8;set:vector;"},
		{76, true, "E45"},
	}
	for _, tt := range tests {
		if got := RegisterInfoReply(tt.i, tt.avx); got != tt.want {
			t.Errorf("RegisterInfoReply(%d, %v) = %q, want %q", tt.i, tt.avx, got, tt.want)
		}
	}
}
