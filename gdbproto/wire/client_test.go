package wire

import (
	"fmt"
	"testing"
)

// The description gdbserver serves (our own, which is gdbserver's layout)
// and qemu's style with xi:include and no regnum attributes.
func TestParseTargetDescription(t *testing.T) {
	docs := TargetXML(true)
	regs, err := ParseTargetDescription(func(annex string) ([]byte, error) { return docs[annex], nil })
	if err != nil {
		t.Fatal(err)
	}
	want := Registers(true)
	if len(regs) != len(want) {
		t.Fatalf("%d registers, want %d", len(regs), len(want))
	}
	for i, r := range regs {
		if r.Name != want[i].Name || r.Regnum != want[i].Regnum || r.Size() != want[i].Size {
			t.Errorf("register %d: %+v, want %s/%d/%d", i, r, want[i].Name, want[i].Regnum, want[i].Size)
		}
	}
	qemu := map[string]string{
		"target.xml":     `<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>i386:x86-64</architecture><xi:include href="i386-64bit.xml"/></target>`,
		"i386-64bit.xml": `<?xml version="1.0"?><feature name="org.gnu.gdb.i386.core"><reg name="rax" bitsize="64" type="int64"/><reg name="rbx" bitsize="64"/><reg name="st0" bitsize="80" type="i387_ext"/><reg name="fs_base" bitsize="64" regnum="40"/><reg name="gs_base" bitsize="64"/></feature>`,
	}
	regs, err = ParseTargetDescription(func(annex string) ([]byte, error) { return []byte(qemu[annex]), nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 5 || regs[2].Name != "st0" || regs[2].Size() != 10 || regs[3].Regnum != 40 || regs[4].Regnum != 41 || regs[1].Regnum != 1 {
		t.Errorf("qemu-style description: %+v", regs)
	}
	loop := map[string]string{"target.xml": `<target><xi:include href="target.xml"/></target>`}
	if _, err := ParseTargetDescription(func(a string) ([]byte, error) { return []byte(loop[a]), nil }); err == nil {
		t.Error("include loop accepted")
	}
	if _, err := ParseTargetDescription(func(a string) ([]byte, error) { return []byte(`<target><reg name="x" bitsize="-8"/></target>`), nil }); err == nil {
		t.Error("negative bitsize accepted")
	}
}

// lldb-server's description: offsets into its g packet, and pseudo
// registers that are views of others.
func TestParseTargetDescriptionLLDB(t *testing.T) {
	doc := `<target><feature><reg name="rax" bitsize="64" regnum="0" offset="80"/>` +
		`<reg name="rbx" bitsize="64" regnum="1" offset="40"/>` +
		`<reg name="eax" bitsize="32" regnum="2" offset="80" value_regnums="0"/><reg name="x" bitsize="8"/></feature></target>`
	regs, err := ParseTargetDescription(func(string) ([]byte, error) { return []byte(doc), nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []RemoteRegister{
		{Name: "rax", Regnum: 0, Bitsize: 64, Offset: 80},
		{Name: "rbx", Regnum: 1, Bitsize: 64, Offset: 40},
		{Name: "eax", Regnum: 2, Bitsize: 32, Offset: 80, Pseudo: true},
		{Name: "x", Regnum: 3, Bitsize: 8, Offset: -1},
	}
	if fmt.Sprint(regs) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", regs, want)
	}
	if _, err := ParseTargetDescription(func(string) ([]byte, error) {
		return []byte(`<target><reg name="a" bitsize="8" offset="-4"/></target>`), nil
	}); err == nil {
		t.Error("negative offset accepted")
	}
}
