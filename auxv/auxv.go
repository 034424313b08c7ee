package auxv

import (
	"encoding/binary"
)

// Auxiliary vector keys (include/uapi/linux/auxvec.h).
const (
	AtNull        = 0
	AtPhdr        = 3
	AtPhent       = 4
	AtPhnum       = 5
	AtPagesz      = 6
	AtBase        = 7
	AtFlags       = 8
	AtEntry       = 9
	AtUID         = 11
	AtHwcap       = 16
	AtRandom      = 25
	AtHwcap2      = 26
	AtExecfn      = 31
	AtSysinfoEhdr = 33
)

// ParseAuxv decodes an auxiliary vector (/proc/pid/auxv: pairs of 64-bit
// words) up to AT_NULL.
func ParseAuxv(b []byte) map[uint64]uint64 {
	m := map[uint64]uint64{}
	for i := 0; i+16 <= len(b); i += 16 {
		k := binary.LittleEndian.Uint64(b[i:])
		if k == AtNull {
			break
		}
		m[k] = binary.LittleEndian.Uint64(b[i+8:])
	}
	return m
}
