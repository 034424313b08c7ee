package tests

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// A thread that exits while non-stop mode steps it (a raw exit system
// call a stepi lands on) or while it runs on its own (a continue out of
// its start routine, through glibc's thread exit) is reported as gdb's
// 'w' stop reply, "w00;pPID.TID", as a %Stop notification: the client
// waits for that thread's stop, which would never come. The process's
// own exit (main outlives the worker by 1.5 s) is still W00 after it, and
// '?' no longer lists the thread. A thread no vCont named since its last
// stop (resumed by "vCont;c") is waited for by no one: its exit is not
// reported, as gdbserver does, unless QThreadEvents:1 asked for every
// thread's.
func TestRSPNonStopThreadExit(t *testing.T) {
	for _, tc := range []struct {
		name, mode, fn, act string
		// wildcard: the worker is resumed by "vCont;c", which names no
		// thread: no client waits for it, and its exit is reported only
		// with QThreadEvents:1 (events).
		wildcard, events bool
	}{
		{name: "stepi", mode: "0", fn: "nsx_exit_now", act: "s"},
		{name: "continue", mode: "1", fn: "nsx_last", act: "c"},
		{name: "wildcard", mode: "1", fn: "nsx_last", act: "c", wildcard: true},
		{name: "threadevents", mode: "1", fn: "nsx_last", act: "c", wildcard: true, events: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startRseqdbg(t, nil, fixture("nsexit"), tc.mode, "1500")
			p := dialRSP(t, srv.port)
			p.call("qSupported:multiprocess+;swbreak+")
			if r := p.call("QStartNoAckMode"); r != "OK" {
				t.Fatal(r)
			}
			p.noAck = true
			if r := p.call("QNonStop:1"); r != "OK" {
				t.Fatalf("QNonStop:1: %s", r)
			}
			if tc.events {
				if r := p.call("QThreadEvents:1"); r != "OK" {
					t.Fatalf("QThreadEvents:1: %s", r)
				}
			}
			p.drain(p.call("?"))
			bp := 0x555555554000 + symbolValue(t, "nsexit", tc.fn)
			if r := p.call(fmt.Sprintf("Z0,%x,1", bp)); r != "OK" {
				t.Fatalf("Z0: %s", r)
			}
			if r := p.call("vCont;c"); r != "OK" {
				t.Fatalf("vCont;c: %s", r)
			}
			n := p.notification()
			m := threadRE.FindStringSubmatch(n)
			if !strings.HasPrefix(n, "Stop:T05") || m == nil {
				t.Fatalf("breakpoint notification %q", n)
			}
			pid, tid := m[1], m[2]
			p.drain(strings.TrimPrefix(n, "Stop:"))
			if r := p.call(fmt.Sprintf("z0,%x,1", bp)); r != "OK" {
				t.Fatalf("z0: %s", r)
			}
			want := fmt.Sprintf("Stop:w00;p%s.%s", pid, tid)
			if tc.wildcard {
				if r := p.call("vCont;c"); r != "OK" {
					t.Fatalf("vCont;c: %s", r)
				}
				if !tc.events {
					want = "Stop:W00"
				}
				if n = p.notification(); !strings.HasPrefix(n, want) {
					t.Fatalf("notification %q, want %q", n, want)
				}
				if r := p.call("vStopped"); r != "OK" {
					t.Fatalf("vStopped: %q", r)
				}
				if !tc.events {
					return
				}
			}
			for i := 0; !tc.wildcard; i++ {
				if i == 10 {
					t.Fatalf("the worker did not exit in 10 steps")
				}
				if r := p.call(fmt.Sprintf("vCont;%s:p%s.%s", tc.act, pid, tid)); r != "OK" {
					t.Fatalf("vCont;%s: %s", tc.act, r)
				}
				n = p.notification()
				if n == want {
					break
				}
				if tc.act != "s" || !strings.HasPrefix(n, "Stop:T05") || !strings.Contains(n, "thread:p"+pid+"."+tid+";") {
					t.Fatalf("notification %q, want the worker's exit %q", n, want)
				}
				p.drain(strings.TrimPrefix(n, "Stop:"))
			}
			if r := p.call("vStopped"); r != "OK" {
				t.Fatalf("vStopped after the thread's exit: %q", r)
			}
			// Only the main thread is left, and it runs.
			if r := p.call("?"); r != "OK" {
				t.Errorf("? after the worker's exit: %q, want OK", r)
			}
			p.exited()
			p.c.Close()
			srv.wait(t, 30*time.Second)
			if !strings.Contains(srv.stdout.String(), "RESULT joined") {
				t.Errorf("program output: %s", srv.stdout.String())
			}
		})
	}
}

// DAP: a worker that exits during an instruction step in non-stop mode
// ends the step with a thread event (reason exited) for it, before the
// process exits and with no stopped event: the step request does not
// wait for a thread that is gone, and no stopped event names the gone
// thread. A continue out of the start routine (mode 1) ends the same
// way.
func TestDAPNonStopThreadExit(t *testing.T) {
	for _, tc := range []struct{ name, mode, fn, req string }{
		{"stepIn", "0", "nsx_exit_now", "stepIn"},
		{"continue", "1", "nsx_last", "continue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startDAP(t)
			c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true})
			c.call("launch", map[string]any{"program": fixture("nsexit"), "args": []string{tc.mode, "1500"}, "nonStop": true})
			c.event("initialized")
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{{"name": tc.fn}}})
			c.call("configurationDone", nil)
			tid := nsStopped(t, c, 0).Body.ThreadId
			c.call("setFunctionBreakpoints", map[string]any{"breakpoints": []map[string]any{}})
			for i := 0; ; i++ {
				if i == 10 {
					t.Fatalf("the worker did not exit in 10 steps")
				}
				c.call(tc.req, map[string]any{"threadId": tid, "granularity": "instruction", "singleThread": true})
				raw := c.until("the worker's step or exit", func(m map[string]any) bool {
					e, _ := m["event"].(string)
					return e == "stopped" || e == "exited" || e == "terminated" || e == "thread"
				})
				var m struct {
					Event string `json:"event"`
					Body  struct {
						Reason   string `json:"reason"`
						ThreadID int    `json:"threadId"`
					} `json:"body"`
				}
				json.Unmarshal(raw, &m)
				if m.Event == "thread" && m.Body.Reason == "exited" && m.Body.ThreadID == tid {
					break
				}
				if tc.req != "stepIn" || m.Event != "stopped" || m.Body.ThreadID != tid || m.Body.Reason != "step" {
					t.Fatalf("%s", raw)
				}
			}
			// Nothing more about the worker: no stopped event for a thread
			// that is gone, before the process ends.
			raw := c.until("the process's exit", func(m map[string]any) bool {
				if m["event"] == "stopped" {
					t.Fatalf("a stop after the worker's exit: %v", m)
				}
				return m["event"] == "exited"
			})
			var ex dap.ExitedEvent
			json.Unmarshal(raw, &ex)
			if ex.Body.ExitCode != 0 {
				t.Errorf("exit code %d", ex.Body.ExitCode)
			}
			c.call("disconnect", map[string]any{"terminateDebuggee": true})
		})
	}
}

// Real gdb 13 in non-stop mode: a stepi of a worker over its exit system
// call gets the worker's 'w' notification, which gdb 13 takes without
// complaint but does not act on (its infrun only waits again on a thread
// exit): the stepi ends with the process's exit 1.5 s later, which gdb
// reports as usual. gdb's remote debug output shows the notifications.
func TestGDBNonStopThreadExit(t *testing.T) {
	needTool(t, "gdb")
	srv := startRseqdbg(t, nil, fixture("nsexit"), "0", "1500")
	out := gdbNonStop(t, srv.port, fixture("nsexit"), []string{
		"break nsx_exit_now", "continue", "thread 2", "set debug remote 1",
		"stepi", "stepi", "stepi", "set debug remote 0", "echo @@end\\n",
	}, 60*time.Second)
	w := regexp.MustCompile(`Notification received: Stop:w00;p([0-9a-f]+)\.([0-9a-f]+)`).FindStringSubmatchIndex(out)
	if w == nil {
		t.Fatalf("gdb got no thread exit notification:\n%s", out)
	}
	exit := strings.Index(out, "Notification received: Stop:W00")
	if exit < w[0] {
		t.Fatalf("the process's exit before the worker's (or none):\n%s", out)
	}
	if !strings.Contains(out, "exited normally") || !strings.Contains(out, "@@end") {
		t.Fatalf("gdb did not see the program end:\n%s", out)
	}
	for _, bad := range []string{"Remote failure", "internal-error", "Unknown stop reply"} {
		if strings.Contains(out, bad) {
			t.Fatalf("gdb: %s:\n%s", bad, out)
		}
	}
	srv.wait(t, 30*time.Second)
}
