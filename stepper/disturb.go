package stepper

// What a debugger does to a program that shares per-CPU data between
// threads, besides the stepped thread: a stop of the world catches other
// threads inside critical sections (each aborts when resumed), and a
// stepped thread that sleeps in ptrace between steps may be migrated
// between its CPU read and its section (which then aborts). The first is
// counted (Stats.CaughtInside); the second is avoided on request by
// pinning the stepped thread to its CPU (SetPinSteps).

// countCaught counts the threads other than tid that a stop caught inside
// a critical section: they ran until it, and abort when they resume.
func (e *Engine) countCaught(tid int) {
	if e.idx.Sections() == 0 {
		// Nothing to be caught in: every thread's registers would be read
		// at every stop, a hot breakpoint's cost growing with threads.
		return
	}
	for _, t := range e.t.Threads() {
		if t == tid {
			continue
		}
		if r, _, err := e.quickRegs(t); err == nil && e.insideCS(r.Rip) != nil {
			e.stats.CaughtInside++
		}
	}
}

// SetPinSteps turns on or off pinning a stepped thread to the CPU its
// rseq area names for as long as it is stepped (until it is continued).
// Off unpins every pinned thread. It needs a target that can pin threads.
func (e *Engine) SetPinSteps(on bool) error {
	if on && e.threadCtl == nil {
		return ErrInspectUnsupported
	}
	e.pinSteps = on
	if !on {
		e.unpinAll()
	}
	return nil
}

// PinSteps reports whether stepped threads are pinned.
func (e *Engine) PinSteps() bool { return e.pinSteps }

// pinForSteps pins tid to its CPU if pinning is on and it is not pinned
// yet; a thread that cannot be pinned steps unpinned.
func (e *Engine) pinForSteps(tid int) {
	if !e.pinSteps || e.threadCtl == nil {
		return
	}
	if _, ok := e.pinned[tid]; ok {
		return
	}
	if old, err := e.pinToAreaCPU(tid); err == nil {
		e.pinned[tid] = old
	}
}

// unpinAll gives every thread pinned for its steps its affinity back.
func (e *Engine) unpinAll() {
	for tid, old := range e.pinned {
		if !e.exited {
			e.threadCtl.SetAffinity(tid, old)
		}
		delete(e.pinned, tid)
	}
}
