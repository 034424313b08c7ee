package wire

import (
	"errors"
	"testing"
)

func TestThreadID(t *testing.T) {
	tests := []struct {
		in    string
		want  ThreadID
		multi string // AppendTo(multiprocess=true)
		plain string // AppendTo(multiprocess=false)
	}{
		{"p1.2", ThreadID{1, 2}, "p1.2", "2"},
		{"pA2f.a30", ThreadID{0xa2f, 0xa30}, "pa2f.a30", "a30"},
		{"p1", ThreadID{1, -1}, "p1.-1", "-1"},
		{"p1.-1", ThreadID{1, -1}, "p1.-1", "-1"},
		{"p-1", ThreadAll, "p-1.-1", "-1"},
		{"p-1.-1", ThreadAll, "p-1.-1", "-1"},
		{"p0.0", ThreadAny, "p0.0", "0"},
		{"p5.0", ThreadID{5, 0}, "p5.0", "0"},
		{"-1", ThreadAll, "p-1.-1", "-1"},
		{"0", ThreadAny, "p0.0", "0"},
		{"1a", ThreadID{0, 0x1a}, "p0.1a", "1a"},
		{"7fffffffffffffff", ThreadID{0, 1<<63 - 1}, "p0.7fffffffffffffff", "7fffffffffffffff"},
	}
	for _, tt := range tests {
		got, err := ParseThreadID(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseThreadID(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if s := string(got.AppendTo(nil, true)); s != tt.multi {
			t.Errorf("%+v.AppendTo(multiprocess) = %q, want %q", got, s, tt.multi)
		}
		if s := string(got.AppendTo(nil, false)); s != tt.plain {
			t.Errorf("%+v.AppendTo(plain) = %q, want %q", got, s, tt.plain)
		}
		if got.String() != tt.multi {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tt.multi)
		}
		if back, err := ParseThreadID(tt.multi); err != nil || back != got {
			t.Errorf("round trip of %q: got %+v, %v", tt.multi, back, err)
		}
	}
	for _, bad := range []string{"", "p", "p.", "p1.", "p.1", "-2", "p-2.1", "x", "8000000000000000", "p1.2.3", "p1.-", "1 "} {
		if got, err := ParseThreadID(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseThreadID(%q) = %+v, %v; want ErrSyntax", bad, got, err)
		}
	}
}
