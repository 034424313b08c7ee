package dap

import (
	"regexp"
	"strings"
	"testing"
)

var inspectingRE = regexp.MustCompile(`^inspecting critical section inc_full\+\d+ at \+(\d+) of (\d+)$`)

// Inspect mode through DAP: the launch option, instruction steps inside a
// section described as inspecting, rseqAbort into the abort handler (the
// program counts exactly one abort), rseqInspect off, and the counters.
func TestInspectAndForcedAbort(t *testing.T) {
	c := newClient(t, Options{})
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "50"}, "inspect": true})
	var start string
	for _, r := range c.call("rseqRegions", nil).(*RseqRegionsResponse).Body.Regions {
		if r.Kind == "rseq" && strings.HasPrefix(r.Name, "inc_full") {
			start = r.Start
		}
	}
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"instructionReference": start}}})
	c.call("configurationDone", nil)
	st := c.stopped()
	if m := inspectingRE.FindStringSubmatch(st.Body.Description); m == nil || m[1] != "0" {
		t.Fatalf("stop at the section start in inspect mode: %+v", st.Body)
	}
	tid := st.Body.ThreadId
	last := 0
	for i := 0; i < 2; i++ {
		c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
		st = c.stopped()
		m := inspectingRE.FindStringSubmatch(st.Body.Description)
		if m == nil {
			t.Fatalf("instruction step %d inside the section: %+v", i, st.Body)
		}
		k := atoi(m[1])
		if k <= last {
			t.Errorf("step %d: offset %d after %d", i, k, last)
		}
		last = k
	}
	c.call("rseqAbort", map[string]any{"threadId": tid})
	st = c.stopped()
	if want := "forced abort of "; !strings.HasPrefix(st.Body.Description, want) || !strings.HasSuffix(st.Body.Description, ": in the abort handler") {
		t.Errorf("stop after rseqAbort: %+v", st.Body)
	}
	if fs := c.frames(tid); !strings.Contains(fs[0].Name, "rseq_abort") {
		t.Errorf("top frame after the abort %q, want the abort handler", fs[0].Name)
	}
	// Outside a section the request is refused.
	if e := c.fail("rseqAbort", map[string]any{"threadId": tid}); !strings.Contains(e.Body.Error.Format, "not inside a critical section") {
		t.Errorf("rseqAbort outside: %+v", e.Body)
	}
	off := c.call("rseqInspect", map[string]any{"on": false}).(*RseqInspectResponse)
	if off.Body.Inspect {
		t.Errorf("rseqInspect off answered %+v", off.Body)
	}
	stats := c.call("rseqStats", nil).(*RseqStatsResponse).Body
	if stats.ForcedAborts != 1 || stats.InspectedSteps < 2 || stats.StepsInside != 0 {
		t.Errorf("counters %+v", stats)
	}
	c.call("setInstructionBreakpoints", map[string]any{"breakpoints": []any{}})
	c.call("continue", map[string]any{"threadId": tid})
	if code := c.waitExit(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(c.out(), "RESULT total=50 expected=50 commits=50 aborts=1") {
		t.Errorf("output %q", c.out())
	}
	c.call("disconnect", nil)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
