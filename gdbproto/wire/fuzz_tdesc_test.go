package wire

import (
	"errors"
	"testing"
)

// FuzzTargetDescription feeds an upstream's target description (target.xml
// and whatever it includes) to the parser: no input may panic, loop, or
// yield a register the layout cannot hold.
func FuzzTargetDescription(f *testing.F) {
	docs := TargetXML(true)
	f.Add(docs["target.xml"], docs["64bit-core.xml"])
	f.Add([]byte(`<target><architecture>i386:x86-64</architecture><feature name="org.gnu.gdb.i386.core">`+
		`<reg name="rax" bitsize="64" regnum="0" offset="0"/><reg name="rip" bitsize="64" regnum="16" offset="128"/>`+
		`<reg name="eax" bitsize="32" regnum="17" value_regnums="0"/></feature></target>`), []byte(nil))
	f.Add([]byte(`<target><xi:include href="a.xml"/><xi:include href="a.xml"/></target>`), []byte(`<feature><reg name="x" bitsize="8"/><xi:include href="b.xml"/></feature>`))
	f.Fuzz(func(t *testing.T, top, included []byte) {
		regs, err := ParseTargetDescription(func(annex string) ([]byte, error) {
			switch {
			case annex == "target.xml":
				return top, nil
			case len(included) > 0:
				return included, nil
			case docs[annex] != nil:
				return docs[annex], nil
			}
			return nil, errors.New("no such annex")
		})
		if err != nil {
			return
		}
		for i, r := range regs {
			if r.Name == "" || r.Bitsize <= 0 || r.Bitsize > 4096 || r.Offset < -1 || r.Offset > 1<<20 || r.Regnum < 0 {
				t.Fatalf("register %d: %+v", i, r)
			}
			if i > 0 && regs[i-1].Regnum > r.Regnum {
				t.Fatalf("registers out of number order at %d", i)
			}
		}
	})
}
