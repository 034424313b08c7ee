package session

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Output forwards the program's stdout and stderr to the front end, which
// shows them as its protocol does (DAP output events, JSON output events,
// gdb's console).
type Output struct {
	// Sink receives each piece: whole lines when Lines is set (one event
	// per line), else what each read returned.
	Sink  func(stream, text string)
	Lines bool
	wg    sync.WaitGroup
}

// Pipes makes a pipe per stream and forwards what the program writes to
// them; the write ends are returned for the launch, to be closed once the
// program has them.
func (o *Output) Pipes() (stdout, stderr *os.File, err error) {
	var w [2]*os.File
	for i, stream := range []string{"stdout", "stderr"} {
		r, wr, err := os.Pipe()
		if err != nil {
			if i == 1 {
				w[0].Close()
			}
			return nil, nil, err
		}
		w[i] = wr
		o.wg.Add(1)
		go o.forward(r, stream)
	}
	return w[0], w[1], nil
}

func (o *Output) forward(r *os.File, stream string) {
	defer o.wg.Done()
	defer r.Close()
	if o.Lines {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			o.Sink(stream, sc.Text()+"\n")
		}
		return
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			o.Sink(stream, strings.ToValidUTF8(string(buf[:n]), "\uFFFD"))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				slog.Debug("session: reading program output", "err", err)
			}
			return
		}
	}
}

// Wait lets the forwarders drain the program's last writes, so they reach
// the front end before the exit does; a grandchild holding the pipes open
// must not hold up the session past timeout.
func (o *Output) Wait(timeout time.Duration) {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}
