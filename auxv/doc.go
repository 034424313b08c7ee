// Package auxv decodes a process's auxiliary vector (/proc/PID/auxv, or a
// stub's qXfer:auxv:read) and names the keys rseqdbg reads: AT_PHDR and
// AT_ENTRY for the executable's bias, AT_BASE for the dynamic linker,
// AT_SYSINFO_EHDR for the vDSO, AT_EXECFN for the program's path.
package auxv
