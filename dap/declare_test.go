package dap

import (
	"strconv"
	"testing"
)

// TestDeclaredRegion: the launch option "regions" declares the seqlock
// fixture's reader a region, so instruction steps run it whole; without
// it, 100 instruction steps are still in its retry loop.
func TestDeclaredRegion(t *testing.T) {
	addr := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("address %q: %v", s, err)
		}
		return v
	}
	steps := func(declared bool, n int) (pc, start, end uint64) {
		c := newClient(t, Options{})
		args := map[string]any{"program": fixture("seqlock"), "args": []string{"20"}}
		if declared {
			args["regions"] = []map[string]any{{"start": "seq_read_begin", "end": "seq_read_end", "name": "seqlock"}}
		}
		c.launch(args)
		c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "seq_read"}}})
		c.call("configurationDone", nil)
		tid := c.stopped().Body.ThreadId
		c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
		for i := 0; i < n; i++ {
			c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction"})
			c.stopped()
		}
		pc = addr(c.frames(tid)[0].InstructionPointerReference)
		for _, r := range c.call("rseqRegions", nil).(*RseqRegionsResponse).Body.Regions {
			if r.Kind == "declared" && r.Name == "seqlock" {
				start, end = addr(r.Start), addr(r.End)
			}
		}
		c.call("continue", map[string]any{"threadId": tid})
		if code := c.waitExit(); code != 0 {
			t.Fatalf("seqlock exited %d", code)
		}
		return pc, start, end
	}
	pc, start, end := steps(true, 5)
	if start == 0 || pc < end {
		t.Fatalf("declared: 5 instruction steps at %#x, region [%#x, %#x)", pc, start, end)
	}
	if pc, _, _ := steps(false, 100); pc < start || pc >= end {
		t.Fatalf("undeclared: 100 instruction steps left the reader (%#x, reader [%#x, %#x)): the fixture proves nothing", pc, start, end)
	}
}
