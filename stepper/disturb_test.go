package stepper

import (
	"path/filepath"
	"testing"
	"time"
)

// Stops of the world while workers loop over a critical section catch some
// of them inside it, and each such thread is counted.
func TestCaughtInsideCounted(t *testing.T) {
	prog := filepath.Join(fixtures(t), "full_tables")
	p, e := launch(t, prog, "4", "2000000000")
	e.Do(func() {
		tid := p.Pid()
		for i := 0; i < 100; i++ {
			// Repeated until the stop, as front ends do: one that comes
			// before the command starts is not its.
			done := make(chan struct{})
			go func() {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						e.Interrupt()
					}
				}
			}()
			st, err := e.Continue(tid, nil)
			close(done)
			if err != nil || st.Kind != StopInterrupt {
				t.Errorf("continue %d: %v %+v", i, err, st)
				return
			}
			tid = st.Tid
		}
		if e.Stats().CaughtInside == 0 {
			t.Errorf("100 stops of 4 threads looping over a section caught none inside it")
		}
		t.Logf("%d threads caught inside a section in 100 stops", e.Stats().CaughtInside)
	})
}
