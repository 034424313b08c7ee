// Package regions knows every restartable region of a process — rseq critical
// sections from ELF tables and from the thread's live rseq_cs, vDSO functions,
// declared ranges — their exits, and an interval index over them. It does not
// know how to step. It decodes code with package x86; the objects a process
// has loaded come from package linkmap.
package regions
