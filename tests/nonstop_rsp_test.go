package tests

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rsp is a bare client of the GDB remote protocol for the non-stop
// packets, with notifications kept apart from replies.
type rsp struct {
	t      *testing.T
	c      net.Conn
	r      *bufio.Reader
	noAck  bool
	notifs []string
}

func dialRSP(t *testing.T, port int) *rsp {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rsp{t: t, c: c, r: bufio.NewReader(c)}
}

// read returns the next packet or notification ('$' or '%' first).
func (p *rsp) read() (kind byte, payload string) {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		b, err := p.r.ReadByte()
		if err != nil {
			p.t.Fatalf("reading from the server: %v (notifications so far %q)", err, p.notifs)
		}
		if b != '$' && b != '%' {
			continue // acks
		}
		body, err := p.r.ReadString('#')
		if err != nil {
			p.t.Fatal(err)
		}
		if _, err := p.r.Discard(2); err != nil {
			p.t.Fatal(err)
		}
		if b == '$' && !p.noAck {
			p.c.Write([]byte("+"))
		}
		return b, strings.TrimSuffix(body, "#")
	}
}

// call sends pkt and returns its reply; notifications that come first are
// kept.
func (p *rsp) call(pkt string) string {
	p.t.Helper()
	var sum byte
	for i := 0; i < len(pkt); i++ {
		sum += pkt[i]
	}
	if _, err := fmt.Fprintf(p.c, "$%s#%02x", pkt, sum); err != nil {
		p.t.Fatal(err)
	}
	for {
		kind, body := p.read()
		if kind == '%' {
			p.notifs = append(p.notifs, body)
			continue
		}
		return body
	}
}

// notification waits for the next notification.
func (p *rsp) notification() string {
	p.t.Helper()
	if len(p.notifs) > 0 {
		n := p.notifs[0]
		p.notifs = p.notifs[1:]
		return n
	}
	for {
		kind, body := p.read()
		if kind == '%' {
			return body
		}
		p.t.Fatalf("a reply %q where a notification was awaited", body)
	}
}

// exited waits for the process's exit notification (W00) and
// acknowledges it.
func (p *rsp) exited() {
	p.t.Helper()
	if n := p.notification(); !strings.HasPrefix(n, "Stop:W00") {
		p.t.Fatalf("want the process's exit, got %q", n)
	}
	if r := p.call("vStopped"); r != "OK" {
		p.t.Fatalf("vStopped after the exit: %q", r)
	}
}

// drain acknowledges the notified stop with vStopped until OK and returns
// every stop reply received.
func (p *rsp) drain(first string) []string {
	p.t.Helper()
	out := []string{first}
	for {
		r := p.call("vStopped")
		if r == "OK" {
			return out
		}
		out = append(out, r)
	}
}

var threadRE = regexp.MustCompile(`thread:p([0-9a-f]+)\.([0-9a-f]+);`)

// The non-stop packets as gdb's remote protocol documents them, checked on
// the wire: QNonStop, vCont answered OK with the stops as %Stop
// notifications, vStopped draining several stops, '?' listing the
// stopped threads, vCont;t stopping one thread with T00, actions for
// running threads ignored, the exit as a notification.
func TestRSPNonStopPackets(t *testing.T) {
	srv := startRseqdbg(t, nil, fixture("nonstop"), "4", "2000000")
	p := dialRSP(t, srv.port)
	if r := p.call("qSupported:multiprocess+;swbreak+"); !strings.Contains(r, "QNonStop+") {
		t.Fatalf("qSupported: %s", r)
	}
	if r := p.call("QStartNoAckMode"); r != "OK" {
		t.Fatal(r)
	}
	p.noAck = true
	if r := p.call("QNonStop:1"); r != "OK" {
		t.Fatalf("QNonStop:1: %s", r)
	}
	first := p.call("?")
	if stops := p.drain(first); len(stops) != 1 || !strings.HasPrefix(stops[0], "T05") {
		t.Fatalf("? at the start: %q", stops)
	}
	// gdb displaced-steps its breakpoints in non-stop mode, which would
	// run an instruction of the section out of place: refused inside.
	secs := sections(t, "nonstop")
	if len(secs) == 0 {
		t.Fatal("no section in the nonstop fixture")
	}
	if r := p.call(fmt.Sprintf("Z0,%x,1", 0x555555554000+secs[0].start)); r != "E01" {
		t.Fatalf("Z0 inside the section in non-stop mode: %q, want E01", r)
	}
	// A breakpoint every worker hits, at a run-time address (no ASLR).
	bp := 0x555555554000 + symbolValue(t, "nonstop", "inc_ns")
	if r := p.call(fmt.Sprintf("Z0,%x,1", bp)); r != "OK" {
		t.Fatalf("Z0: %s", r)
	}
	if r := p.call("vCont;c"); r != "OK" {
		t.Fatalf("vCont;c answered %q, want OK at once", r)
	}
	n := p.notification()
	if !strings.HasPrefix(n, "Stop:T05") {
		t.Fatalf("notification %q", n)
	}
	// Give the other workers time to hit it too: their stops queue
	// behind the one notified, and vStopped hands them out.
	time.Sleep(300 * time.Millisecond)
	stops := p.drain(strings.TrimPrefix(n, "Stop:"))
	stopped := map[string]bool{}
	pid := ""
	for _, s := range stops {
		m := threadRE.FindStringSubmatch(s)
		if m == nil || !strings.HasPrefix(s, "T05") || !strings.Contains(s, "swbreak") {
			t.Fatalf("stop %q", s)
		}
		pid = m[1]
		stopped[m[2]] = true
	}
	if len(stopped) != 4 {
		// Every worker runs inc_ns all the time.
		t.Fatalf("%d worker(s) stopped at the breakpoint in 300 ms, want 4: %q", len(stopped), stops)
	}
	// No other notification while the stops were drained.
	if len(p.notifs) != 0 {
		t.Fatalf("notifications while draining: %q", p.notifs)
	}
	// '?' lists exactly the stopped threads.
	q := p.drain(p.call("?"))
	if len(q) != len(stopped) {
		t.Errorf("? lists %d stops, %d threads are stopped: %q", len(q), len(stopped), q)
	}
	// Stop the main thread, which runs (in pthread_join): T00.
	if r := p.call(fmt.Sprintf("vCont;t:p%s.%s", pid, pid)); r != "OK" {
		t.Fatalf("vCont;t: %s", r)
	}
	n = p.notification()
	if !strings.HasPrefix(n, "Stop:T00") || !strings.Contains(n, fmt.Sprintf("thread:p%s.%s;", pid, pid)) {
		t.Fatalf("stop of the main thread: %q", n)
	}
	p.drain(strings.TrimPrefix(n, "Stop:"))
	// Resume everything without the breakpoint: a step for one stopped
	// worker (its stop is notified), a continue for the rest.
	if r := p.call(fmt.Sprintf("z0,%x,1", bp)); r != "OK" {
		t.Fatalf("z0: %s", r)
	}
	var one string
	for tid := range stopped {
		one = tid
		break
	}
	if r := p.call(fmt.Sprintf("vCont;s:p%s.%s", pid, one)); r != "OK" {
		t.Fatalf("vCont;s: %s", r)
	}
	n = p.notification()
	if !strings.HasPrefix(n, "Stop:T05") || !strings.Contains(n, "thread:p"+pid+"."+one+";") {
		t.Fatalf("step stop: %q", n)
	}
	p.drain(strings.TrimPrefix(n, "Stop:"))
	if r := p.call("vCont;c"); r != "OK" {
		t.Fatalf("vCont;c: %s", r)
	}
	p.exited()
	p.c.Close()
	srv.wait(t, 30*time.Second)
	exactSums(t, srv.stdout.String())
}
