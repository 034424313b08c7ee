package dap

import (
	"strings"
	"testing"
)

// TestStepsUnderSignalStorm: instruction steps, next and stepOut complete
// while a 100 us SIGALRM timer keeps hitting the stepped thread, and the
// program ends with exact sums; 20 runs.
func TestStepsUnderSignalStorm(t *testing.T) {
	for run := 0; run < 20; run++ {
		c := newClient(t, Options{})
		c.launch(map[string]any{"program": fixture("full_tables"), "args": []string{"1", "300", "--signals=100"}})
		c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "inc_full"}}})
		c.call("configurationDone", nil)
		tid := c.stopped().Body.ThreadId
		c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
		for i := 0; i < 20; i++ {
			c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
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
}
