package regions

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestReports(t *testing.T) {
	g := genELF(genOpts{n: 2, exitPoints: true})
	obj := loadImage(t, g.img, 0x1000)
	obj.Regions[1].Warnings = append(obj.Regions[1].Warnings, "something odd")
	obj.Warnings = append(obj.Warnings, "object odd")
	empty := &Object{Path: "empty"}
	var text bytes.Buffer
	if err := WriteText(&text, []*Object{obj, empty}); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	r := obj.Regions[0]
	for _, want := range []string{"gen (bias 0x1000): 2 region(s)", "KIND", "bench+28", hex(r.Start), hex(r.End),
		hex(r.Abort), hex(r.End) + ":commit", ":exit-point", hex(r.Abort) + ":abort", "__rseq_cs_ptr_array",
		"warning: bench+28: something odd", "warning: object odd", "empty (bias 0x0): 0 region(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, []*Object{obj, empty}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Objects []struct {
			Path     string
			Bias     string
			Warnings []string
			Regions  []struct {
				Kind, Name, Object, Start, End, Commit, Abort, Descriptor, Source string
				AbortJump                                                         string `json:"abort_jump"`
				Exits                                                             []struct{ Addr, Kind string }
				Indirect, Calls, Warnings                                         []string
			}
		}
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Objects) != 2 || doc.Objects[0].Bias != "0x1000" || doc.Objects[1].Regions == nil || doc.Objects[1].Warnings == nil {
		t.Fatalf("%s", js.String())
	}
	jr := doc.Objects[0].Regions[0]
	if jr.Kind != "rseq" || jr.Start != hex(r.Start) || jr.End != hex(r.End) || jr.Commit != jr.End || jr.Abort != hex(r.Abort) ||
		jr.Descriptor != hex(r.Descriptor) || jr.AbortJump != hex(r.AbortJump) || len(jr.Exits) != 3 ||
		jr.Exits[1].Kind != "exit-point" || jr.Indirect == nil || jr.Calls == nil || jr.Source != "__rseq_cs_ptr_array" {
		t.Errorf("%+v", jr)
	}
	if !strings.Contains(js.String(), `"indirect": []`) {
		t.Errorf("empty lists are not []:\n%s", js.String())
	}
}

func TestKindStrings(t *testing.T) {
	for k, want := range map[Kind]string{KindCriticalSection: "rseq", KindVDSO: "vdso", KindDeclared: "declared", 0: "kind(0)"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
	for k, want := range map[ExitKind]string{ExitCommit: "commit", ExitAbort: "abort", ExitPoint: "exit-point", ExitBranch: "branch", ExitReturn: "return"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
	if !(ExitCommit < ExitAbort && ExitAbort < ExitPoint && ExitPoint < ExitBranch) {
		t.Error("exit precedence order changed")
	}
}
