package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestAppendStopReply(t *testing.T) {
	got, err := AppendStopReply(nil, 5,
		ThreadPair(ThreadID{0x2a, 0x2b}, true),
		StopPair{Key: "core", Value: "1"},
		RegisterPair(16, []byte{0x00, 0x10, 0x40, 0, 0, 0, 0, 0}),
		RegisterPair(6, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
		StopPair{Key: "swbreak"},
	)
	want := "T05thread:p2a.2b;core:1;10:0010400000000000;6:0102030405060708;swbreak:;"
	if err != nil || string(got) != want {
		t.Errorf("AppendStopReply = %q, %v; want %q", got, err, want)
	}
	if got, err := AppendStopReply([]byte("x"), 0x11); err != nil || string(got) != "xT11" {
		t.Errorf("AppendStopReply without pairs = %q, %v", got, err)
	}
	if got, err := AppendStopReply(nil, 5, ThreadPair(ThreadID{Tid: 7}, false)); err != nil || string(got) != "T05thread:7;" {
		t.Errorf("AppendStopReply plain thread = %q, %v", got, err)
	}
	for _, p := range []StopPair{{Key: ""}, {Key: "a:b"}, {Key: "a;b"}, {Key: "k", Value: "v;w"}} {
		got, err := AppendStopReply([]byte("x"), 5, StopPair{Key: "ok"}, p)
		if !errors.Is(err, ErrSyntax) || string(got) != "x" {
			t.Errorf("AppendStopReply with pair %+v = %q, %v; want dst unchanged and ErrSyntax", p, got, err)
		}
	}
	// A watchpoint value contains ':'-free hex; values may contain ':'.
	if got, err := AppendStopReply(nil, 5, StopPair{Key: "library", Value: "a:b"}); err != nil || string(got) != "T05library:a:b;" {
		t.Errorf("value with colon = %q, %v", got, err)
	}
}

// Stop replies as gdbserver 13 and qemu-user 7.2 send them.
func TestParseStopReply(t *testing.T) {
	st, err := ParseStopReply([]byte("T0506:b0e5ffffff7f0000;07:80e5ffffff7f0000;10:a151555555550000;thread:p3bd2.3bd2;core:1;"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != 'T' || st.Signal != 5 || st.Thread != (ThreadID{Pid: 0x3bd2, Tid: 0x3bd2}) || !st.HasThread {
		t.Errorf("got %+v", st)
	}
	if pc := st.Regs[0x10]; len(pc) != 8 || pc[0] != 0xa1 || pc[5] != 0x55 {
		t.Errorf("expedited rip %x", pc)
	}
	for in, want := range map[string]StopReply{
		"T05swbreak:;thread:p1.7c05;":    {Kind: 'T', Signal: 5, Reason: "swbreak", Thread: ThreadID{Pid: 1, Tid: 0x7c05}, HasThread: true},
		"T05watch:7ffe0010;thread:p1.2;": {Kind: 'T', Signal: 5, Reason: "watch", Addr: 0x7ffe0010, Thread: ThreadID{Pid: 1, Tid: 2}, HasThread: true},
		"S02":                            {Kind: 'T', Signal: 2},
		"W00;process:3bd2":               {Kind: 'W', Thread: ThreadID{Pid: 0x3bd2}},
		"X09":                            {Kind: 'X', Signal: 9},
		"w01;p3bd2.3bd3":                 {Kind: 'w', Code: 1, Thread: ThreadID{Pid: 0x3bd2, Tid: 0x3bd3}, HasThread: true},
		"N":                              {Kind: 'N'},
		"T05create:;thread:p10.11;":      {Kind: 'T', Signal: 5, Reason: "create", Thread: ThreadID{Pid: 0x10, Tid: 0x11}, HasThread: true},
	} {
		got, err := ParseStopReply([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if len(got.Regs) != 0 {
			t.Errorf("%s: registers %v", in, got.Regs)
		}
		got.Regs, want.Regs = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", in, got, want)
		}
	}
	for _, bad := range []string{"", "T", "Tzz", "W", "W1ff", "Q05", "w00;zz", "T05thread:pzz.1;"} {
		if _, err := ParseStopReply([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzStopReply(f *testing.F) {
	for _, s := range []string{"T0506:b0e5ffffff7f0000;thread:p1.2;swbreak:;", "W00;process:1", "w00;p1.2", "N", "X09", "T05watch:10;"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStopReply(b)
		if err == nil && !strings.ContainsRune("TWXwN", rune(st.Kind)) {
			t.Fatalf("kind %q from %q", st.Kind, b)
		}
	})
}
