package eval

import (
	"strings"
	"testing"
)

// FuzzExpression checks the expression parser on arbitrary text.
func FuzzExpression(f *testing.F) {
	for _, seed := range []string{"a->b[3].c", "-(x + 0x10) * 'a' >> 2", "$rip == main", "1.5e3 < f", "!!~*&p", "((((", "'\\n'"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err == nil {
			// The rendering adds parentheses, so only depth may differ.
			if _, err := Parse(e.String()); err != nil && !strings.Contains(err.Error(), "nested too deeply") {
				t.Errorf("%q parsed, but its rendering %q does not: %v", s, e, err)
			}
		}
	})
}
