package gdbproto

import "github.com/rseqdbg/rseqdbg/gdbproto/wire"

// wireSignal is the number a stop reply carries for a Linux signal.
func (s *session) wireSignal(sig int) uint8 {
	if s.lldb {
		return uint8(sig)
	}
	return wire.GDBSignal(sig)
}

// hostSignal converts a signal number from the client into Linux's.
func (s *session) hostSignal(sig int) int {
	if s.lldb {
		if sig < 0 || sig > 64 {
			return 0
		}
		return sig
	}
	return wire.LinuxSignal(sig)
}
