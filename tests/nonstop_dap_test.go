package tests

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// nsStopped waits for the next stopped event, which must be tid's (any
// thread when tid is 0) and leave the others running.
func nsStopped(t *testing.T, c *dapConn, tid int) dap.StoppedEvent {
	t.Helper()
	var st dap.StoppedEvent
	json.Unmarshal(c.event("stopped"), &st)
	if st.Body.AllThreadsStopped {
		t.Fatalf("stopped event with allThreadsStopped true in non-stop mode: %+v", st.Body)
	}
	if tid != 0 && st.Body.ThreadId != tid {
		t.Fatalf("stop of thread %d (%s: %s), want thread %d", st.Body.ThreadId, st.Body.Reason, st.Body.Text, tid)
	}
	return st
}

// dapCounts reads ns_counts[0..3] twice, 300 ms apart, in tid's top frame.
func dapCounts(t *testing.T, c *dapConn, tid int) [2][4]int64 {
	t.Helper()
	var trace dap.StackTraceResponse
	json.Unmarshal(c.call("stackTrace", map[string]any{"threadId": tid, "levels": 1}), &trace)
	if len(trace.Body.StackFrames) == 0 {
		t.Fatalf("no frame for thread %d", tid)
	}
	frame := trace.Body.StackFrames[0].Id
	var out [2][4]int64
	for i := range 2 {
		if i == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		for j := range 4 {
			var ev dap.EvaluateResponse
			json.Unmarshal(c.call("evaluate", map[string]any{"expression": "ns_counts[" + strconv.Itoa(j) + "]",
				"frameId": frame, "context": "watch"}), &ev)
			v, err := strconv.ParseInt(ev.Body.Result, 10, 64)
			if err != nil {
				t.Fatalf("ns_counts[%d] = %q", j, ev.Body.Result)
			}
			out[i][j] = v
		}
	}
	return out
}

// Issue 14, point 4, through DAP with "nonStop": true: the thread at the
// breakpoint stops alone (allThreadsStopped false) and steps instruction
// by instruction through the section several times while the other three
// keep committing; pause stops one other thread alone; continue resumes
// one thread; the sums are exact.
func TestDAPNonStop(t *testing.T) {
	c := startDAP(t)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("launch", map[string]any{"program": fixture("nonstop"), "args": []string{"4", "3000000"}, "nonStop": true})
	c.event("initialized")
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "ns_stepped"}}})
	c.call("configurationDone", nil)
	st := nsStopped(t, c, 0)
	if st.Body.Reason != "function breakpoint" && st.Body.Reason != "breakpoint" {
		t.Fatalf("first stop: %+v", st.Body)
	}
	tid := st.Body.ThreadId
	var th dap.ThreadsResponse
	json.Unmarshal(c.call("threads", nil), &th)
	// The main thread first, then the workers as they were created (not
	// by id: thread ids wrap at pid_max).
	var ids []int
	for _, x := range th.Body.Threads {
		ids = append(ids, x.Id)
	}
	if len(ids) != 5 || ids[1] != tid {
		t.Fatalf("threads %v, stopped %d: want main and 4 workers, worker 0 stopped", ids, tid)
	}
	othersAdvanced(t, "at the breakpoint", dapCounts(t, c, tid))

	for i := 0; i < 80; i++ {
		c.call("stepIn", map[string]any{"threadId": tid, "granularity": "instruction", "singleThread": true})
		if st := nsStopped(t, c, tid); st.Body.Reason != "step" {
			t.Fatalf("step %d: %+v", i, st.Body)
		}
	}
	// Line steps (range steps run natively between exits) over the
	// worker's loop, which calls the section each time round.
	for i := 0; i < 8; i++ {
		c.call("next", map[string]any{"threadId": tid})
		if st := nsStopped(t, c, tid); st.Body.Reason != "step" {
			t.Fatalf("next %d: %+v", i, st.Body)
		}
	}
	othersAdvanced(t, "after 80 instruction steps and 8 lines", dapCounts(t, c, tid))
	var stats struct {
		Body map[string]int `json:"body"`
	}
	json.Unmarshal(c.call("rseqStats", nil), &stats)
	t.Logf("stats: %v", stats.Body)
	if stats.Body["regionRuns"] < 2 || stats.Body["commits"] < 2 || stats.Body["stepsInside"] != 0 {
		t.Errorf("stats: %v", stats.Body)
	}

	// Pause worker 1 alone: its count holds while worker 0 and the others
	// go on.
	w1 := ids[2]
	c.call("pause", map[string]any{"threadId": w1})
	if st := nsStopped(t, c, w1); st.Body.Reason != "pause" {
		t.Fatalf("pause: %+v", st.Body)
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	var cont dap.ContinueResponse
	json.Unmarshal(c.call("continue", map[string]any{"threadId": tid}), &cont)
	if cont.Body.AllThreadsContinued {
		t.Errorf("continue of one thread says all threads continued")
	}
	if n := dapCounts(t, c, w1); n[0][1] != n[1][1] || n[1][0] <= n[0][0] || n[1][2] <= n[0][2] {
		t.Errorf("with worker 1 paused and worker 0 continued: counts %v", n)
	}
	c.call("continue", map[string]any{"threadId": w1})
	var ex dap.ExitedEvent
	json.Unmarshal(c.event("exited"), &ex)
	c.event("terminated")
	if ex.Body.ExitCode != 0 {
		t.Errorf("exit code %d", ex.Body.ExitCode)
	}
	t.Logf("%v", exactSums(t, c.out.String()))
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
}

// A step in non-stop mode that waits for a stopped thread (the main
// thread stepping out of pthread_join while the worker it joins is held at
// a breakpoint) holds until paused: pause interrupts it, and the step ends
// with the pause.
func TestDAPNonStopPauseStep(t *testing.T) {
	c := startDAP(t)
	c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
	c.call("launch", map[string]any{"program": fixture("nonstop"), "args": []string{"4", "1000000"}, "nonStop": true})
	c.event("initialized")
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": "ns_stepped"}}})
	c.call("configurationDone", nil)
	w0 := nsStopped(t, c, 0).Body.ThreadId
	var th dap.ThreadsResponse
	json.Unmarshal(c.call("threads", nil), &th)
	// The main thread comes first (ids wrap at pid_max: not the lowest).
	main := th.Body.Threads[0].Id
	if main == w0 {
		t.Fatalf("threads %+v: the main thread is not first", th.Body.Threads)
	}
	c.call("pause", map[string]any{"threadId": main})
	if st := nsStopped(t, c, main); st.Body.Reason != "pause" {
		t.Fatalf("pause of the main thread: %+v", st.Body)
	}
	c.call("stepOut", map[string]any{"threadId": main})
	time.Sleep(300 * time.Millisecond) // it waits in pthread_join for worker 0
	c.call("pause", map[string]any{"threadId": main})
	if st := nsStopped(t, c, main); st.Body.Reason != "pause" {
		t.Fatalf("the step ended with %+v, want the pause", st.Body)
	}
	c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
	c.call("continue", map[string]any{"threadId": w0})
	c.call("continue", map[string]any{"threadId": main})
	var ex dap.ExitedEvent
	json.Unmarshal(c.event("exited"), &ex)
	if ex.Body.ExitCode != 0 {
		t.Errorf("exit code %d", ex.Body.ExitCode)
	}
	exactSums(t, c.out.String())
	c.call("disconnect", map[string]any{"terminateDebuggee": true})
}
