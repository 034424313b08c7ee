package dap

import (
	"github.com/google/go-dap"
	"github.com/rseqdbg/rseqdbg/eval"
)

// variable renders v as a DAP variable, with a handle when it expands.
func (ss *session) variable(v *eval.Value, hex bool) dap.Variable {
	dv := dap.Variable{Name: v.Name(), Value: ss.ev.Format(v, hex), Type: v.TypeName(), EvaluateName: v.EvalName()}
	named, indexed := ss.ev.Children(v)
	if named+indexed > 0 {
		dv.VariablesReference = ss.ref(&varRef{kind: refValue, val: v})
		dv.NamedVariables, dv.IndexedVariables = named, indexed
	}
	if a, ok := v.Address(); ok {
		dv.MemoryReference = hexAddr(a)
	}
	if u, ok := ss.ev.Pointee(v); ok {
		dv.MemoryReference = hexAddr(u)
	}
	return dv
}
