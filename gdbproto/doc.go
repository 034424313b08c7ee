// Package gdbproto is the GDB remote protocol server gdb and lldb talk to
// (rseqdbg --gdb-remote), and the proxy that serves them in front of
// another stub through target/remote. Every resumption a client asks for
// goes through session and stepper; monitor rseq commands, qXfer
// documents, vFile and the synthesized-CFI library list are served here.
//
// The bytes on the wire (framing, connection, encodings, the client) are
// package gdbproto/wire, which knows nothing of the debugger. The server
// keeps the protocol's name because it is what users reach as
// --gdb-remote; the wire is the part other packages (target/remote) need.
package gdbproto
