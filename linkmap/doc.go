// Package linkmap finds the objects a process has loaded as the dynamic
// linker lists them: the executable's bias from the auxiliary vector, the
// r_debug structure through DT_DEBUG, the link_map list, and the address of
// _dl_debug_state where a breakpoint hears of every load. It reads target
// memory through a target.MemReader and knows nothing of regions.
package linkmap
