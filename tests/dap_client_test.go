package tests

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// dapConn is a DAP client over `rseqdbg dap`'s stdio.
type dapConn struct {
	t   testing.TB
	w   io.Writer
	r   *bufio.Reader
	seq int
	out strings.Builder
	// The adapter's process, its end and its log.
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *syncBuffer
}

func (c *dapConn) send(command string, args any) int {
	c.t.Helper()
	c.seq++
	b, err := json.Marshal(map[string]any{"seq": c.seq, "type": "request", "command": command, "arguments": args})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := dap.WriteBaseMessage(c.w, b); err != nil {
		c.t.Fatal(err)
	}
	return c.seq
}

// until reads messages until one satisfies ok, and returns its raw body.
func (c *dapConn) until(what string, ok func(m map[string]any) bool) []byte {
	c.t.Helper()
	for {
		raw, err := dap.ReadBaseMessage(c.r)
		if err != nil {
			c.t.Fatalf("waiting for %s: %v\noutput so far:\n%s", what, err, c.out.String())
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			c.t.Fatalf("bad message %s", raw)
		}
		if m["event"] == "output" {
			body, _ := m["body"].(map[string]any)
			s, _ := body["output"].(string)
			c.out.WriteString(s)
		}
		if ok(m) {
			return raw
		}
	}
}

func (c *dapConn) call(command string, args any) []byte {
	c.t.Helper()
	raw, ok := c.try(command, args)
	if !ok {
		c.t.Fatalf("%s failed: %s", command, raw)
	}
	return raw
}

func (c *dapConn) event(name string) []byte {
	c.t.Helper()
	return c.until(name+" event", func(m map[string]any) bool { return m["event"] == name })
}

// startDAP starts `rseqdbg dap` on stdio.
func startDAP(t testing.TB) *dapConn {
	t.Helper()
	cmd := exec.Command(binary, "dap")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	t.Cleanup(func() {
		timer.Stop()
		stdin.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if strings.Contains(stderr.String(), "panic") {
			t.Errorf("rseqdbg dap:\n%s", stderr.String())
		}
	})
	return &dapConn{t: t, w: stdin, r: bufio.NewReader(stdout), cmd: cmd, done: done, stderr: &stderr}
}

// try is call for a request that may fail.
func (c *dapConn) try(command string, args any) ([]byte, bool) {
	c.t.Helper()
	seq := c.send(command, args)
	raw := c.until(command+" response", func(m map[string]any) bool {
		rs, _ := m["request_seq"].(float64)
		return m["type"] == "response" && int(rs) == seq
	})
	var r dap.Response
	json.Unmarshal(raw, &r)
	return raw, r.Success
}
