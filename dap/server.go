// Package dap serves the Debug Adapter Protocol for VS Code over the core.
//
// One Server speaks to one client over a byte stream (stdio for VS Code's
// DebugAdapterExecutable, or a TCP connection) and debugs one process. The
// read loop only decodes; requests run in order on a worker goroutine, and a
// request that resumes the target hands the run to its own goroutine so the
// worker and the read loop stay responsive: pause interrupts the target
// directly, and requests that need a stopped target while it runs are queued
// until the next stop (a continue is interrupted for them and resumed).
package dap

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-dap"
)

// Options configure a Server.
type Options struct {
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// NoTargets refuses launch and attach: the fuzz test drives every other
	// request through the real decoding and dispatch without ever starting
	// a program.
	NoTargets bool
}

// Server is one DAP session over one client connection.
type Server struct {
	r     *bufio.Reader
	w     io.Writer
	log   *slog.Logger
	codec *dap.Codec
	opts  Options

	sendMu sync.Mutex
	seq    int

	queue chan incoming
	sess  atomic.Pointer[session]
	// quit is closed once a disconnect has been answered.
	quit     chan struct{}
	quitOnce sync.Once

	// Touched by the worker only.
	initialized bool
}

// NewServer returns a server reading requests from r and writing responses
// and events to w.
func NewServer(r io.Reader, w io.Writer, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		r: bufio.NewReaderSize(r, maxHeaderLine), w: w, log: log, codec: NewCodec(), opts: opts,
		queue: make(chan incoming, 256), quit: make(chan struct{}),
	}
}

// NewCodec returns a go-dap codec that also knows rseqdbg's custom requests
// (rseqRegions, rseqStats, ...) and events (rseqProcessExited), for
// clients written in Go.
func NewCodec() *dap.Codec {
	c := dap.NewCodec()
	c.RegisterRequest("rseqRegions", func() dap.Message { return &RseqRegionsRequest{} }, func() dap.Message { return &RseqRegionsResponse{} })
	c.RegisterRequest("rseqStats", func() dap.Message { return &RseqStatsRequest{} }, func() dap.Message { return &RseqStatsResponse{} })
	c.RegisterRequest("rseqInspect", func() dap.Message { return &RseqInspectRequest{} }, func() dap.Message { return &RseqInspectResponse{} })
	c.RegisterRequest("rseqAbort", func() dap.Message { return &RseqAbortRequest{} }, func() dap.Message { return &RseqAbortResponse{} })
	c.RegisterEvent("rseqProcessExited", func() dap.Message { return &ProcessExitedEvent{} })
	return c
}

// maxBadHeaders bounds consecutive framing errors: past that the stream is
// not DAP at all and reading on would only spin.
const maxBadHeaders = 64

// maxHeaderLine bounds the header line ("Content-Length: N"): go-dap's
// reader takes a line of any length, so a client sending megabytes without
// a '\r' grew the server without limit. It is the size of the bufio.Reader.
const maxHeaderLine = 4096

// maxContent is go-dap's bound on a message's content.
const maxContent = 4 << 20

var errHeaderTooLong = &dap.BaseProtocolError{Err: fmt.Sprintf("header line longer than %d bytes", maxHeaderLine)}

// readBaseMessage is dap.ReadBaseMessage with the header line bounded: an
// over-long one is consumed up to the bound and reported as a framing
// error, so the read loop's count of bad headers ends such a stream.
func readBaseMessage(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\r')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errHeaderTooLong
	}
	if err != nil {
		return nil, err
	}
	header := string(line[:len(line)-1])
	var delim [3]byte
	if _, err := io.ReadFull(r, delim[:]); err != nil {
		return nil, err
	}
	if string(delim[:]) != "\n\r\n" {
		return nil, dap.ErrHeaderDelimiterNotCrLfCrLf
	}
	digits, ok := strings.CutPrefix(header, "Content-Length: ")
	if !ok {
		return nil, dap.ErrHeaderNotContentLength
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return nil, dap.ErrHeaderNotContentLength
	}
	if n > maxContent {
		return nil, dap.ErrHeaderContentTooLong
	}
	content := make([]byte, n)
	if _, err := io.ReadFull(r, content); err != nil {
		return nil, err
	}
	return content, nil
}

// Serve runs the session until the client disconnects or closes the
// stream. A launched program is killed and an attached one detached if the
// client goes away without saying what to do.
func (s *Server) Serve() error {
	readErr := make(chan error, 1)
	go func() { readErr <- s.readLoop() }()
	s.worker()
	if ss := s.sess.Load(); ss != nil {
		ss.close()
	}
	select {
	case err := <-readErr:
		return err
	default:
		// Still blocked reading after a disconnect; the caller closes the
		// stream.
		return nil
	}
}

// Shutdown lets the program go when rseqdbg itself is told to end
// (SIGINT, SIGTERM, SIGHUP): a run is interrupted, then a launched program
// is killed and an attached one detached, inspected threads first getting
// their affinity and signal mask back. Serve may still be running.
func (s *Server) Shutdown() {
	if ss := s.sess.Load(); ss != nil {
		ss.close()
	}
}

// readLoop decodes messages and queues them for the worker; it is the only
// sender on the queue and closes it when the input ends.
func (s *Server) readLoop() error {
	defer close(s.queue)
	bad := 0
	for {
		raw, err := readBaseMessage(s.r)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var bpe *dap.BaseProtocolError
			var ne *strconv.NumError
			if !errors.As(err, &bpe) && !errors.As(err, &ne) {
				return fmt.Errorf("reading DAP messages: %w", err)
			}
			// The header was bad; reading resynchronizes on the next one.
			bad++
			s.log.Warn("dap: bad message framing", "err", err)
			s.sendOutput("console", fmt.Sprintf("rseqdbg: bad message framing: %v\n", err))
			if bad > maxBadHeaders {
				return fmt.Errorf("reading DAP messages: %w", err)
			}
			continue
		}
		bad = 0
		req, fail := s.decode(raw)
		if fail != nil {
			s.send(fail)
			continue
		}
		if req.GetRequest().Command == "pause" {
			// Handled here, not queued, so it never waits behind anything.
			s.handle(incoming{req, raw})
			continue
		}
		select {
		case s.queue <- incoming{req, raw}:
		case <-s.quit:
			return nil
		}
	}
}

// decode turns one message body into a request, or into the error response
// that tells the client why it is not one.
func (s *Server) decode(raw []byte) (dap.RequestMessage, dap.Message) {
	var head struct {
		Seq     int    `json:"seq"`
		Type    string `json:"type"`
		Command string `json:"command"`
	}
	headErr := json.Unmarshal(raw, &head)
	if headErr == nil && head.Type != "request" {
		// Clients answer reverse requests (runInTerminal) this way; we send
		// none, so anything else is ignored rather than answered.
		return nil, s.errorResponse(head.Seq, head.Command, fmt.Errorf("unexpected %q message: only requests are accepted", head.Type))
	}
	msg, err := s.codec.DecodeMessage(raw)
	if err == nil {
		if req, ok := msg.(dap.RequestMessage); ok {
			return req, nil
		}
		err = errors.New("not a request")
	}
	if headErr != nil {
		err = headErr
	}
	return nil, s.errorResponse(head.Seq, head.Command, fmt.Errorf("malformed request: %w", err))
}

func (s *Server) errorResponse(reqSeq int, command string, err error) *dap.ErrorResponse {
	return &dap.ErrorResponse{
		Response: dap.Response{
			ProtocolMessage: dap.ProtocolMessage{Type: "response"},
			RequestSeq:      reqSeq, Command: command, Message: err.Error(),
		},
		Body: dap.ErrorResponseBody{Error: &dap.ErrorMessage{Id: 1, Format: err.Error(), ShowUser: showUser[command]}},
	}
}

// showUser lists the requests whose failure the user must be told about.
// VS Code turns every error with showUser into a notification, whatever
// the request (rawDebugSession.handleErrorResponse), except for launch
// and attach, where showUser decides whether their failure dialog opens.
// So it is set for what the user asked for by hand: starting, stepping,
// breakpoints, changing values. It is not set for what the workbench asks
// on its own to fill its views: threads, stackTrace, scopes and variables
// (the views show the error in place), evaluate (a hover that fails shows
// nothing; watches and the Debug Console show the error inline, so a
// notification on every mouse move over a word would be noise),
// disassemble and readMemory (their views), rseqRegions and rseqStats (the
// extension handles their errors), disconnect (VS Code ignores its
// errors), and requests rseqdbg does not know.
var showUser = map[string]bool{
	"launch": true, "attach": true, "configurationDone": true,
	"setBreakpoints": true, "setFunctionBreakpoints": true, "setInstructionBreakpoints": true,
	"continue": true, "next": true, "stepIn": true, "stepOut": true, "pause": true,
	"setVariable": true, "writeMemory": true, "terminate": true, "rseqAbort": true,
}

// incoming is a decoded request with its bytes, for the few arguments
// go-dap's structs cannot represent (an explicit false).
type incoming struct {
	req dap.RequestMessage
	raw []byte
}

// worker handles requests in order until a disconnect is answered or the
// input ends and the queue is drained (a disconnect sent just before the
// client closed the stream is still honoured).
func (s *Server) worker() {
	for {
		select {
		case in, ok := <-s.queue:
			if !ok {
				return
			}
			s.handle(in)
		case <-s.quit:
			return
		}
	}
}

// errLater is returned by handlers whose response is sent when the target
// next stops.
var errLater = errors.New("response deferred")

// handle runs one request's handler and sends its response; a panic becomes
// an error response instead of taking the session down.
func (s *Server) handle(in incoming) {
	resp, err := s.safely(func() (dap.ResponseMessage, error) { return s.dispatch(in.req, in.raw) })
	if errors.Is(err, errLater) {
		return
	}
	s.reply(in.req, resp, err)
}

func (s *Server) safely(f func() (dap.ResponseMessage, error)) (resp dap.ResponseMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("dap: handler panic", "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	return f()
}

// reply fills the response header of resp (or builds an error response)
// and sends it.
func (s *Server) reply(req dap.RequestMessage, resp dap.ResponseMessage, err error) {
	r := req.GetRequest()
	if err != nil {
		s.send(s.errorResponse(r.Seq, r.Command, err))
		return
	}
	if resp == nil {
		resp = &dap.Response{}
	}
	h := resp.GetResponse()
	h.Type, h.RequestSeq, h.Command, h.Success = "response", r.Seq, r.Command, true
	s.send(resp)
}

// send writes one message; sends from the worker, the run goroutines and
// the output forwarders are serialized here, and sequence numbers assigned.
func (s *Server) send(m dap.Message) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.seq++
	switch x := m.(type) {
	case dap.ResponseMessage:
		x.GetResponse().Seq = s.seq
		x.GetResponse().Type = "response"
	case dap.EventMessage:
		x.GetEvent().Seq = s.seq
		x.GetEvent().Type = "event"
	}
	if err := dap.WriteProtocolMessage(s.w, m); err != nil {
		s.log.Debug("dap: write failed", "err", err)
	}
}

func event(name string) dap.Event {
	return dap.Event{ProtocolMessage: dap.ProtocolMessage{Type: "event"}, Event: name}
}

func (s *Server) sendOutput(category, text string) {
	s.send(&dap.OutputEvent{Event: event("output"), Body: dap.OutputEventBody{Category: category, Output: text}})
}

func (s *Server) stop() { s.quitOnce.Do(func() { close(s.quit) }) }

// capabilities advertise exactly what the handlers implement.
func capabilities() dap.Capabilities {
	return dap.Capabilities{
		SupportsConfigurationDoneRequest:      true,
		SupportsFunctionBreakpoints:           true,
		SupportsConditionalBreakpoints:        true,
		SupportsHitConditionalBreakpoints:     true,
		SupportsEvaluateForHovers:             true,
		SupportsSetVariable:                   true,
		SupportsValueFormattingOptions:        true,
		SupportTerminateDebuggee:              true,
		SupportsDelayedStackTraceLoading:      true,
		SupportsLogPoints:                     true,
		SupportsTerminateRequest:              true,
		SupportsReadMemoryRequest:             true,
		SupportsWriteMemoryRequest:            true,
		SupportsDisassembleRequest:            true,
		SupportsSteppingGranularity:           true,
		SupportsInstructionBreakpoints:        true,
		SupportsSingleThreadExecutionRequests: true,
	}
}
