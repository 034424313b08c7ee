package wire

// gdb numbers signals its own way on the wire (gdb/signals.def, frozen
// because it is part of the protocol); Linux numbers differ from 7 on. lldb
// talks to a Linux stub in Linux numbers once qHostInfo said "ostype:linux",
// so the translation applies to gdb only.

// Signals both sides name, as gdb number by Linux number. 0 means gdb has
// no name for it and reports it as GDB_SIGNAL_UNKNOWN.
var gdbFromLinux = [...]uint8{
	0, 1, 2, 3, 4, 5, 6,
	10, // SIGBUS
	8, 9,
	30, // SIGUSR1
	11,
	31, // SIGUSR2
	13, 14, 15,
	0,  // SIGSTKFLT
	20, // SIGCHLD
	19, // SIGCONT
	17, // SIGSTOP
	18, // SIGTSTP
	21, 22,
	16, // SIGURG
	24, 25, 26, 27, 28,
	23, // SIGIO
	32, // SIGPWR
	12, // SIGSYS
}

const (
	gdbSignalRealtime32 = 77
	gdbSignalRealtime64 = 78
	gdbSignalUnknown    = 143
)

// gdbSignal converts a Linux signal number to gdb's.
func gdbSignal(sig int) uint8 {
	switch {
	case sig == 0:
		return 0
	case sig > 0 && sig < len(gdbFromLinux):
		if g := gdbFromLinux[sig]; g != 0 {
			return g
		}
	case sig == 32:
		return gdbSignalRealtime32
	case sig >= 33 && sig <= 63:
		return uint8(45 + sig - 33)
	case sig == 64:
		return gdbSignalRealtime64
	}
	return gdbSignalUnknown
}

// linuxSignal converts gdb's number back; 0 for none or unknown.
func linuxSignal(g int) int {
	switch {
	case g <= 0:
		return 0
	case g >= 45 && g <= 75:
		return 33 + g - 45
	case g == gdbSignalRealtime32:
		return 32
	case g == gdbSignalRealtime64:
		return 64
	}
	for linux, v := range gdbFromLinux {
		if int(v) == g && linux != 0 {
			return linux
		}
	}
	return 0
}
