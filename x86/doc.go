// Package x86 decodes x86-64 instructions for control flow: what an
// instruction does to the PC (FlowKind, Decode over x86asm, and a fast path
// for the encodings critical sections are made of, DecodeFlow), where it can
// go next given the registers (Successors, IndirectTarget), and which
// memory it stores to (StoreTo). regions decodes sections and stubs with
// it, stepper decides steps with it, unwind follows stubs with it. It knows
// nothing of regions or stepping.
package x86
