// Package gdbproto speaks the GDB remote serial protocol: framing, the server gdb and lldb talk to, and the client used by target/remote.
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
package gdbproto
