package session

import (
	"testing"

	"github.com/rseqdbg/rseqdbg/regions"
	"github.com/rseqdbg/rseqdbg/stepper"
)

// The texts every front end shows for inspect mode and forced aborts.
func TestInspectTexts(t *testing.T) {
	r := &regions.Region{Name: "inc_full+34", Start: 0x1000, End: 0x101a}
	if got, want := InspectText(&stepper.Inspection{Region: r, Offset: 3, Length: 26}), "inspecting critical section inc_full+34 at +3 of 26"; got != want {
		t.Errorf("InspectText = %q, want %q", got, want)
	}
	if got, want := InspectText(&stepper.Inspection{Region: r, Length: 26, InCallee: true}), "inspecting critical section inc_full+34 in a function it called (26 bytes)"; got != want {
		t.Errorf("InspectText in a callee = %q, want %q", got, want)
	}
	if InspectText(nil) != "" {
		t.Error("InspectText(nil) is not empty")
	}
	if got, want := AbortText("inc_full+34", 9), "forced abort of inc_full+34 at +9: in the abort handler"; got != want {
		t.Errorf("AbortText = %q, want %q", got, want)
	}
}
