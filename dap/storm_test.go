package dap

import (
	"fmt"
	"strings"
	"testing"
)

// TestStepsUnderSignalStorm: instruction steps, next, stepIn, stepOut and
// continue complete while a 100 us or a 20 us SIGALRM timer keeps hitting
// the stepped thread, and the program ends with exact sums; 20 runs each.
func TestStepsUnderSignalStorm(t *testing.T) {
	for _, us := range []int{100, 20} {
		t.Run(fmt.Sprintf("%dus", us), func(t *testing.T) {
			for run := 0; run < 20; run++ {
				stormRun(t, run, us)
			}
		})
	}
}

func stormRun(t *testing.T, run, us int) {
	c := newClient(t, Options{})
	c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "300", fmt.Sprintf("--signals=%d", us)}})
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "inc_full"}}})
	c.call("configurationDone", nil)
	tid := c.stopped().Body.ThreadId
	for _, req := range []string{"next", "stepIn", "stepOut", "continue"} {
		c.call(req, map[string]any{"threadId": tid})
		if st := c.stopped(); st.Body.Reason != "step" && st.Body.Reason != "breakpoint" && st.Body.Reason != "function breakpoint" {
			t.Fatalf("run %d: %s stopped for %q", run, req, st.Body.Reason)
		}
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	for i := 0; i < 20; i++ {
		// stepi and nexti.
		req := "stepIn"
		if i%2 == 1 {
			req = "next"
		}
		c.call(req, map[string]any{"threadId": tid, "granularity": "instruction"})
		if st := c.stopped(); st.Body.Reason != "step" {
			t.Fatalf("run %d: instruction step %d stopped for %q", run, i, st.Body.Reason)
		}
	}
	for _, req := range []string{"next", "stepOut", "next"} {
		c.call(req, map[string]any{"threadId": tid})
		if st := c.stopped(); st.Body.Reason != "step" {
			t.Fatalf("run %d: %s stopped for %q", run, req, st.Body.Reason)
		}
	}
	c.call("continue", map[string]any{"threadId": tid})
	if code := c.waitExit(); code != 0 || !strings.Contains(c.out(), "total=300 expected=300") {
		t.Fatalf("run %d: exit %d, output:\n%s", run, code, c.out())
	}
}
