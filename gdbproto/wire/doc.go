// Package wire is the GDB remote serial protocol on the wire: packet
// framing ([Reader], [AppendPacket]), the connection with its acks and
// interrupts ([Conn], over an [FDConn]), hex and binary encodings, thread
// ids, vCont and stop replies, gdb's signal numbering, the x86-64 target
// description rseqdbg serves and the parser of another stub's, and the
// [Client] that target/remote talks to another stub with.
//
// It is named for what it holds, as it sits under gdbproto: the protocol's
// bytes, with no debugger behind them. It imports target (register and
// XSAVE layouts) and nothing of the stepping core, regions or unwinding, so
// target/remote can depend on it alone. The server and the proxy are the
// parent package, gdbproto.
//
// Layering: escaping of the bytes '#', '$', '}' and '*' is done once, at the
// framing layer. [AppendPacket] escapes every payload and [Reader] unescapes
// (and run-length expands) every packet, so payloads handed to and returned by
// this package are always plain bytes: the data after the ':' of an X or
// vFile:pwrite packet is already binary, and [XferChunk] returns unescaped
// data. Never apply [AppendEscapedBinary] to a payload that goes through the
// framing layer; it exists for the framing layer itself.
//
// This is what lldb and lldb-server do. gdb and gdbserver unescape per binary
// field instead, which is equivalent on the wire because neither ever sends
// one of those four bytes unescaped outside a binary field.
package wire
