package wire

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseVCont(t *testing.T) {
	tests := []struct {
		in   string
		want []VContAction
	}{
		{"vCont;c", []VContAction{{Action: 'c', Thread: ThreadAll}}},
		{"vCont;s:p1.2;c", []VContAction{
			{Action: 's', Thread: ThreadID{1, 2}},
			{Action: 'c', Thread: ThreadAll}}},
		{"vCont;c;s:1a;r401000,401010:p1.1;C05:2;S1f:p1.-1;t", []VContAction{
			{Action: 'c', Thread: ThreadAll},
			{Action: 's', Thread: ThreadID{0, 0x1a}},
			{Action: 'r', RangeStart: 0x401000, RangeEnd: 0x401010, Thread: ThreadID{1, 1}},
			{Action: 'C', Signal: 5, Thread: ThreadID{0, 2}},
			{Action: 'S', Signal: 0x1f, Thread: ThreadID{1, -1}},
			{Action: 't', Thread: ThreadAll}}},
		{"vCont;t:p1.-1", []VContAction{{Action: 't', Thread: ThreadID{1, -1}}}},
		{"vCont;c:-1", []VContAction{{Action: 'c', Thread: ThreadAll}}},
		{"vCont;C5", []VContAction{{Action: 'C', Signal: 5, Thread: ThreadAll}}},
	}
	for _, tt := range tests {
		got, err := ParseVCont(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseVCont(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "vCont", "vCont?", "vCont;", "vCont;c;", "vCont;;c", "vCont;x", "vCont;c5",
		"vCont;C", "vCont;C100", "vCont;Cz", "vCont;s:", "vCont;s:p", "vCont;r1", "vCont;r1,",
		"vCont;r,1", "vCont;rz,1", "vCont;t1", "c", "vContc",
	} {
		if got, err := ParseVCont(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseVCont(%q) = %+v, %v; want ErrSyntax", bad, got, err)
		}
	}
}

func TestAppendVCont(t *testing.T) {
	acts := []VContAction{
		{Action: 'r', RangeStart: 0x401000, RangeEnd: 0x401010, Thread: ThreadID{1, 1}},
		{Action: 'C', Signal: 5, Thread: ThreadID{1, 2}},
		{Action: 'c', Thread: ThreadAll},
	}
	if got, want := string(AppendVCont(nil, acts, true)), "vCont;r401000,401010:p1.1;C05:p1.2;c"; got != want {
		t.Errorf("AppendVCont multiprocess = %q, want %q", got, want)
	}
	if got, want := string(AppendVCont(nil, acts, false)), "vCont;r401000,401010:1;C05:2;c"; got != want {
		t.Errorf("AppendVCont plain = %q, want %q", got, want)
	}
}

func FuzzVCont(f *testing.F) {
	for _, s := range []string{
		"vCont;c", "vCont;s:p1.2;c", "vCont;c;s:1a;r401000,401010:p1.1;C05:2;S1f:p1.-1;t",
		"vCont;C", "vCont?", "vCont;r1,2:-1", "vCont;c:p-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		acts, err := ParseVCont(s)
		if err != nil {
			if acts != nil {
				t.Fatalf("ParseVCont(%q) returned actions with error %v", s, err)
			}
			return
		}
		if len(acts) == 0 {
			t.Fatalf("ParseVCont(%q) accepted no actions", s)
		}
		// The multiprocess form loses nothing, so formatting and parsing
		// again must give the same actions.
		enc := string(AppendVCont(nil, acts, true))
		back, err := ParseVCont(enc)
		if err != nil || !reflect.DeepEqual(back, acts) {
			t.Fatalf("ParseVCont(%q) = %+v; re-encoded %q parses as %+v, %v", s, acts, enc, back, err)
		}
	})
}
