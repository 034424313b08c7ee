package wire

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// RegInfo describes one amd64 register as gdb and lldb see it.
type RegInfo struct {
	Name string
	// Regnum is gdb's remote register number: the index used by p and P
	// packets and as the key of an expedited register in a T reply.
	Regnum  int
	Bitsize int
	// Size is the size in bytes (10 for the x87 st registers).
	Size int
	// Offset is the byte offset of the register in the g packet, which is
	// all registers in Regnum order with no padding. A server can use the
	// same layout for a flat register file.
	Offset int
	// Type is the target-description type name.
	Type string
	// Group is the register group named in target.xml and the register set
	// lldb shows; gdb's amd64 support assigns its own groups regardless.
	Group string
	// Feature is the target-description feature the register belongs to.
	Feature string
	// Generic is lldb's role for the register ("pc", "sp", "fp", "flags",
	// "arg1".."arg6"), or "".
	Generic string
	// DWARF is the DWARF (and eh_frame) register number, or -1.
	DWARF int
	// Encoding and Format are lldb's qRegisterInfo encoding and format.
	Encoding string
	Format   string
}

const (
	featCore     = "org.gnu.gdb.i386.core"
	featSSE      = "org.gnu.gdb.i386.sse"
	featLinux    = "org.gnu.gdb.i386.linux"
	featSegments = "org.gnu.gdb.i386.segments"
	featAVX      = "org.gnu.gdb.i386.avx"
)

// buildRegisters lays out gdb's amd64-linux register numbering, the one
// gdbserver uses: core 0-39, sse 40-56, orig_rax 57, fs_base/gs_base 58-59,
// then ymm0h-ymm15h 60-75 when AVX is described.
func buildRegisters(avx bool) []RegInfo {
	var regs []RegInfo
	add := func(name string, bits int, typ, group, feature, generic string, dwarf int) {
		enc, format := "uint", "hex"
		if typ == "i387_ext" || typ == "vec128" || typ == "uint128" {
			enc, format = "vector", "vector-uint8"
		}
		off := 0
		if n := len(regs); n > 0 {
			off = regs[n-1].Offset + regs[n-1].Size
		}
		regs = append(regs, RegInfo{
			Name: name, Regnum: len(regs), Bitsize: bits, Size: bits / 8,
			Offset: off, Type: typ, Group: group, Feature: feature,
			Generic: generic, DWARF: dwarf, Encoding: enc, Format: format,
		})
	}
	gprs := []struct {
		name, typ, generic string
		dwarf              int
	}{
		{"rax", "int64", "", 0}, {"rbx", "int64", "", 3},
		{"rcx", "int64", "arg4", 2}, {"rdx", "int64", "arg3", 1},
		{"rsi", "int64", "arg2", 4}, {"rdi", "int64", "arg1", 5},
		{"rbp", "data_ptr", "fp", 6}, {"rsp", "data_ptr", "sp", 7},
		{"r8", "int64", "arg5", 8}, {"r9", "int64", "arg6", 9},
		{"r10", "int64", "", 10}, {"r11", "int64", "", 11},
		{"r12", "int64", "", 12}, {"r13", "int64", "", 13},
		{"r14", "int64", "", 14}, {"r15", "int64", "", 15},
		{"rip", "code_ptr", "pc", 16},
	}
	for _, g := range gprs {
		add(g.name, 64, g.typ, "general", featCore, g.generic, g.dwarf)
	}
	add("eflags", 32, "i386_eflags", "general", featCore, "flags", 49)
	for i, seg := range []string{"cs", "ss", "ds", "es", "fs", "gs"} {
		add(seg, 32, "int32", "general", featCore, "", []int{51, 52, 53, 50, 54, 55}[i])
	}
	for i := range 8 {
		add("st"+strconv.Itoa(i), 80, "i387_ext", "float", featCore, "", 33+i)
	}
	for i, name := range []string{"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"} {
		dwarf := -1
		if i < 2 {
			dwarf = 65 + i
		}
		add(name, 32, "int", "float", featCore, "", dwarf)
	}
	for i := range 16 {
		add("xmm"+strconv.Itoa(i), 128, "vec128", "vector", featSSE, "", 17+i)
	}
	add("mxcsr", 32, "i386_mxcsr", "vector", featSSE, "", 64)
	add("orig_rax", 64, "int", "system", featLinux, "", -1)
	add("fs_base", 64, "int", "general", featSegments, "", 58)
	add("gs_base", 64, "int", "general", featSegments, "", 59)
	if avx {
		for i := range 16 {
			add("ymm"+strconv.Itoa(i)+"h", 128, "uint128", "vector", featAVX, "", -1)
		}
	}
	return regs
}

var (
	regsPlain = sync.OnceValue(func() []RegInfo { return buildRegisters(false) })
	regsAVX   = sync.OnceValue(func() []RegInfo { return buildRegisters(true) })
)

func registers(avx bool) []RegInfo {
	if avx {
		return regsAVX()
	}
	return regsPlain()
}

// Registers returns the registers in g-packet order, which is Regnum order:
// 60 registers (560 bytes) without AVX, 76 (816 bytes) with it. The slice is
// the caller's to modify.
func Registers(avx bool) []RegInfo {
	return slices.Clone(registers(avx))
}

// RegisterFileSize returns the size in bytes of a full g packet's data.
func RegisterFileSize(avx bool) int {
	regs := registers(avx)
	last := regs[len(regs)-1]
	return last.Offset + last.Size
}

// Fixed type definitions, as in gdb's own feature files, so that the
// description is self-contained: gdb would otherwise reject the registers
// whose types it cannot resolve. lldb 14 ignores these elements.
const (
	eflagsType = `    <flags id="i386_eflags" size="4">
      <field name="CF" start="0" end="0"/>
      <field name="" start="1" end="1"/>
      <field name="PF" start="2" end="2"/>
      <field name="AF" start="4" end="4"/>
      <field name="ZF" start="6" end="6"/>
      <field name="SF" start="7" end="7"/>
      <field name="TF" start="8" end="8"/>
      <field name="IF" start="9" end="9"/>
      <field name="DF" start="10" end="10"/>
      <field name="OF" start="11" end="11"/>
      <field name="NT" start="14" end="14"/>
      <field name="RF" start="16" end="16"/>
      <field name="VM" start="17" end="17"/>
      <field name="AC" start="18" end="18"/>
      <field name="VIF" start="19" end="19"/>
      <field name="VIP" start="20" end="20"/>
      <field name="ID" start="21" end="21"/>
    </flags>
`
	sseTypes = `    <vector id="v8bf16" type="bfloat16" count="8"/>
    <vector id="v8h" type="ieee_half" count="8"/>
    <vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v2d" type="ieee_double" count="2"/>
    <vector id="v16i8" type="int8" count="16"/>
    <vector id="v8i16" type="int16" count="8"/>
    <vector id="v4i32" type="int32" count="4"/>
    <vector id="v2i64" type="int64" count="2"/>
    <union id="vec128">
      <field name="v8_bfloat16" type="v8bf16"/>
      <field name="v8_half" type="v8h"/>
      <field name="v4_float" type="v4f"/>
      <field name="v2_double" type="v2d"/>
      <field name="v16_int8" type="v16i8"/>
      <field name="v8_int16" type="v8i16"/>
      <field name="v4_int32" type="v4i32"/>
      <field name="v2_int64" type="v2i64"/>
      <field name="uint128" type="uint128"/>
    </union>
    <flags id="i386_mxcsr" size="4">
      <field name="IE" start="0" end="0"/>
      <field name="DE" start="1" end="1"/>
      <field name="ZE" start="2" end="2"/>
      <field name="OE" start="3" end="3"/>
      <field name="UE" start="4" end="4"/>
      <field name="PE" start="5" end="5"/>
      <field name="DAZ" start="6" end="6"/>
      <field name="IM" start="7" end="7"/>
      <field name="DM" start="8" end="8"/>
      <field name="ZM" start="9" end="9"/>
      <field name="OM" start="10" end="10"/>
      <field name="UM" start="11" end="11"/>
      <field name="PM" start="12" end="12"/>
      <field name="FZ" start="15" end="15"/>
    </flags>
`
)

func buildTargetXML(avx bool) []byte {
	var b strings.Builder
	// lldb needs <architecture> and <osabi> to pick its x86-64 Linux ABI;
	// gdb uses them to choose amd64-linux.
	b.WriteString(`<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>i386:x86-64</architecture>
  <osabi>GNU/Linux</osabi>
`)
	feature := ""
	for _, r := range registers(avx) {
		if r.Feature != feature {
			if feature != "" {
				b.WriteString("  </feature>\n")
			}
			feature = r.Feature
			fmt.Fprintf(&b, "  <feature name=%q>\n", feature)
			switch feature {
			case featCore:
				b.WriteString(eflagsType)
			case featSSE:
				b.WriteString(sseTypes)
			}
		}
		fmt.Fprintf(&b, `    <reg name=%q bitsize="%d" type=%q regnum="%d"`, r.Name, r.Bitsize, r.Type, r.Regnum)
		if r.Group != "" {
			fmt.Fprintf(&b, " group=%q", r.Group)
		}
		// lldb reads generic to find pc, sp and friends; gdb skips
		// attributes it does not know.
		if r.Generic != "" {
			fmt.Fprintf(&b, " generic=%q", r.Generic)
		}
		b.WriteString("/>\n")
	}
	b.WriteString("  </feature>\n</target>\n")
	return []byte(b.String())
}

var (
	xmlPlain = sync.OnceValue(func() []byte { return buildTargetXML(false) })
	xmlAVX   = sync.OnceValue(func() []byte { return buildTargetXML(true) })
)

// TargetXML returns the target description documents to serve through
// qXfer:features:read, keyed by annex. The description is self-contained, so
// the map holds only "target.xml". Advertise "qXfer:features:read+" in
// qSupported and answer reads with [XferChunk]. The map and its contents are
// the caller's to modify.
func TargetXML(avx bool) map[string][]byte {
	doc := xmlPlain()
	if avx {
		doc = xmlAVX()
	}
	return map[string][]byte{"target.xml": slices.Clone(doc)}
}

// RegisterInfoReply answers lldb's "qRegisterInfo<i>" (i in hex on the wire)
// for the register with Regnum i, in lldb's key:value; format, or "E45" past
// the last register, which is how lldb learns the count. lldb only falls back
// to it when target.xml is unavailable.
func RegisterInfoReply(i int, avx bool) string {
	regs := registers(avx)
	if i < 0 || i >= len(regs) {
		return "E45"
	}
	r := regs[i]
	var b strings.Builder
	fmt.Fprintf(&b, "name:%s;bitsize:%d;offset:%d;encoding:%s;format:%s;set:%s;",
		r.Name, r.Bitsize, r.Offset, r.Encoding, r.Format, r.Group)
	if r.DWARF >= 0 {
		fmt.Fprintf(&b, "ehframe:%d;dwarf:%d;", r.DWARF, r.DWARF)
	}
	if r.Generic != "" {
		fmt.Fprintf(&b, "generic:%s;", r.Generic)
	}
	return b.String()
}
