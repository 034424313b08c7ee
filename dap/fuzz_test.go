package dap

import (
	"github.com/rseqdbg/rseqdbg/eval"
	sess "github.com/rseqdbg/rseqdbg/session"
	"io"
	"log/slog"
	"testing"
)

// FuzzRequest feeds arbitrary message bodies through the server's decoding
// and dispatch (with launch and attach refused): no input may panic, and
// every request must be answered.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"seq":1,"type":"request","command":"initialize","arguments":{"adapterID":"x"}}`,
		`{"seq":2,"type":"request","command":"launch","arguments":{"program":"/bin/true"}}`,
		`{"seq":3,"type":"request","command":"setBreakpoints","arguments":{"source":{"path":"a.c"},"breakpoints":[{"line":3,"condition":"i == 2","hitCondition":">= 2","logMessage":"x {i}"}]}}`,
		`{"seq":4,"type":"request","command":"evaluate","arguments":{"expression":"a->b[3] + $rax","frameId":1}}`,
		`{"seq":5,"type":"request","command":"stepIn","arguments":{"threadId":1,"granularity":"instruction"}}`,
		`{"seq":6,"type":"request","command":"disassemble","arguments":{"memoryReference":"0x1000","instructionOffset":-10,"instructionCount":20}}`,
		`{"seq":7,"type":"request","command":"readMemory","arguments":{"memoryReference":"0x1000","count":16}}`,
		`{"seq":8,"type":"request","command":"writeMemory","arguments":{"memoryReference":"0x1000","data":"AAAA"}}`,
		`{"seq":9,"type":"request","command":"rseqRegions"}`,
		`{"seq":10,"type":"request","command":"disconnect","arguments":{"terminateDebuggee":false}}`,
		`{"seq":11,"type":"request","command":"setInstructionBreakpoints","arguments":{"breakpoints":[{"instructionReference":"0x10","offset":-4}]}}`,
		`{"seq":12,"type":"response","command":"runInTerminal","success":true}`,
		`{"seq":13,"type":"request","command":"variables","arguments":{"variablesReference":-1,"start":-5,"count":-1}}`,
		`{"seq":14,"type":"request","command":"pause","arguments":{"threadId":1}}`,
		`[]`, `{}`, `null`, `{"type":"request","command":7}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var w countingWriter
		s := NewServer(eofReader{}, &w, Options{NoTargets: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		req, fail := s.decode(body)
		if fail != nil {
			return
		}
		s.handle(incoming{req, body})
		if w.n == 0 {
			t.Errorf("request %s was not answered", req.GetRequest().Command)
		}
		// Conditions, log messages and watches are parsed from client
		// text too.
		eval.Parse(string(body))
		sess.ParseLogMessage(string(body))
		sess.ParseHitCondition(string(body))
	})
}

type countingWriter struct{ n int }

func (w *countingWriter) Write(b []byte) (int, error) { w.n++; return len(b), nil }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
