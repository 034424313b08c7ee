package dap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-dap"
)

var fixtures string // tests/fixtures/build

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "tests", "fixtures")
	fixtures = filepath.Join(dir, "build")
	if out, err := exec.Command("make", "-C", dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building fixtures: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func fixture(name string) string { return filepath.Join(fixtures, name) }

// markerLine finds the line of a marker comment in a fixture source.
func markerLine(t *testing.T, src, marker string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "..", src))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "/* "+marker+" */") {
			return i + 1
		}
	}
	t.Fatalf("no marker %s in %s", marker, src)
	return 0
}

// lineWith finds the first line of a fixture source that contains text.
func lineWith(t *testing.T, src, text string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, "..", src))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, text) {
			return i + 1
		}
	}
	t.Fatalf("no line with %q in %s", text, src)
	return 0
}

// timeout bounds every wait: ptrace is slow here (35 µs a step), and a
// hang must fail the test rather than the whole run.
const timeout = 60 * time.Second

// client is a DAP client over a net.Pipe to an in-process server.
type client struct {
	t      *testing.T
	conn   net.Conn
	seq    int
	codec  *dap.Codec
	in     chan dap.Message
	events []dap.Message
	mu     sync.Mutex
	output strings.Builder
	done   chan error
}

func newClient(t *testing.T, opts Options) *client {
	t.Helper()
	a, b := net.Pipe()
	return newClientOver(t, opts, a, b)
}

// newClientOver serves on b and talks through a.
func newClientOver(t *testing.T, opts Options, a, b net.Conn) *client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := NewServer(b, b, opts)
	c := &client{t: t, conn: a, codec: NewCodec(), in: make(chan dap.Message, 1024), done: make(chan error, 1)}
	go func() {
		err := srv.Serve()
		b.Close()
		c.done <- err
	}()
	go c.readLoop()
	t.Cleanup(func() {
		a.Close()
		select {
		case <-c.done:
		case <-time.After(timeout):
			t.Errorf("server did not end")
		}
	})
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func (c *client) readLoop() {
	r := bufio.NewReader(c.conn)
	defer close(c.in)
	for {
		raw, err := dap.ReadBaseMessage(r)
		if err != nil {
			return
		}
		m, err := c.codec.DecodeMessage(raw)
		if err != nil {
			c.t.Errorf("undecodable message from the server: %v: %s", err, raw)
			continue
		}
		if o, ok := m.(*dap.OutputEvent); ok {
			c.mu.Lock()
			c.output.WriteString(o.Body.Output)
			c.mu.Unlock()
		}
		c.in <- m
	}
}

func (c *client) out() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.output.String()
}

// sendRaw writes a message body as is.
func (c *client) sendRaw(body []byte) {
	c.t.Helper()
	if err := dap.WriteBaseMessage(c.conn, body); err != nil {
		c.t.Fatalf("writing: %v", err)
	}
}

func (c *client) send(command string, args any) int {
	c.t.Helper()
	c.seq++
	m := map[string]any{"seq": c.seq, "type": "request", "command": command}
	if args != nil {
		m["arguments"] = args
	}
	b, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
	return c.seq
}

func (c *client) next(deadline time.Time) dap.Message {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection closed")
		}
		return m
	case <-time.After(time.Until(deadline)):
		c.t.Fatalf("timed out waiting for the server")
	}
	return nil
}

// response waits for the response to request seq, keeping events.
func (c *client) response(seq int) dap.ResponseMessage {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := c.next(deadline)
		if r, ok := m.(dap.ResponseMessage); ok && r.GetResponse().RequestSeq == seq {
			return r
		}
		c.events = append(c.events, m)
	}
}

// call sends a request and fails the test unless it succeeds.
func (c *client) call(command string, args any) dap.ResponseMessage {
	c.t.Helper()
	r := c.response(c.send(command, args))
	if !r.GetResponse().Success {
		c.t.Fatalf("%s failed: %s (%+v)", command, r.GetResponse().Message, r)
	}
	return r
}

// fail sends a request that must fail.
func (c *client) fail(command string, args any) *dap.ErrorResponse {
	c.t.Helper()
	r := c.response(c.send(command, args))
	if r.GetResponse().Success {
		c.t.Fatalf("%s succeeded, want an error: %+v", command, r)
	}
	e, ok := r.(*dap.ErrorResponse)
	if !ok {
		c.t.Fatalf("%s: failure is a %T, not an ErrorResponse", command, r)
	}
	return e
}

// event waits for the next event named name, skipping others (kept).
func (c *client) event(name string) dap.EventMessage {
	c.t.Helper()
	for i, m := range c.events {
		if e, ok := m.(dap.EventMessage); ok && e.GetEvent().Event == name {
			c.events = append(c.events[:i], c.events[i+1:]...)
			return e
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		m := c.next(deadline)
		if e, ok := m.(dap.EventMessage); ok && e.GetEvent().Event == name {
			return e
		}
		c.events = append(c.events, m)
	}
}

func (c *client) stopped() *dap.StoppedEvent {
	c.t.Helper()
	return c.event("stopped").(*dap.StoppedEvent)
}

// launch runs initialize and launch and waits for initialized.
func (c *client) launch(args map[string]any) *dap.ProcessEvent {
	c.t.Helper()
	init := c.call("initialize", map[string]any{"adapterID": "rseqdbg", "linesStartAt1": true, "columnsStartAt1": true}).(*dap.InitializeResponse)
	if !init.Body.SupportsInstructionBreakpoints || !init.Body.SupportsSteppingGranularity || !init.Body.SupportsDisassembleRequest {
		c.t.Fatalf("capabilities missing: %+v", init.Body)
	}
	c.call("launch", args)
	pe := c.event("process").(*dap.ProcessEvent)
	c.event("initialized")
	return pe
}

func (c *client) frames(tid int) []dap.StackFrame {
	c.t.Helper()
	return c.call("stackTrace", map[string]any{"threadId": tid}).(*dap.StackTraceResponse).Body.StackFrames
}

func (c *client) variables(ref int) []dap.Variable {
	c.t.Helper()
	return c.call("variables", map[string]any{"variablesReference": ref}).(*dap.VariablesResponse).Body.Variables
}

func (c *client) scope(frameID int, name string) int {
	c.t.Helper()
	for _, s := range c.call("scopes", map[string]any{"frameId": frameID}).(*dap.ScopesResponse).Body.Scopes {
		if s.Name == name {
			return s.VariablesReference
		}
	}
	c.t.Fatalf("no scope %q", name)
	return 0
}

func (c *client) evaluate(frameID int, expr string) dap.EvaluateResponseBody {
	c.t.Helper()
	return c.call("evaluate", map[string]any{"expression": expr, "frameId": frameID, "context": "watch"}).(*dap.EvaluateResponse).Body
}

func find(vars []dap.Variable, name string) (dap.Variable, bool) {
	for _, v := range vars {
		if v.Name == name {
			return v, true
		}
	}
	return dap.Variable{}, false
}

// waitExit waits for exited then terminated, and returns the exit code.
func (c *client) waitExit() int {
	c.t.Helper()
	code := c.event("exited").(*dap.ExitedEvent).Body.ExitCode
	c.event("terminated")
	return code
}

var _ io.Writer = testWriter{}
