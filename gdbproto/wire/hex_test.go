package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestAppendHex(t *testing.T) {
	if got := string(AppendHex([]byte("m"), []byte{0x00, 0x7f, 0xab, 0xff})); got != "m007fabff" {
		t.Errorf("AppendHex = %q", got)
	}
	if got := string(AppendHex(nil, nil)); got != "" {
		t.Errorf("AppendHex(nil) = %q", got)
	}
}

func TestDecodeHex(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{"", []byte{}, false},
		{"00ff7F", []byte{0, 0xff, 0x7f}, false},
		{"DEADbeef", []byte{0xde, 0xad, 0xbe, 0xef}, false},
		{"0", nil, true},
		{"0g", nil, true},
		{"-1", nil, true},
		{" 1", nil, true},
	}
	for _, tt := range tests {
		got, err := DecodeHex(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("DecodeHex(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("DecodeHex(%q) error %v does not wrap ErrSyntax", tt.in, err)
			}
			continue
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("DecodeHex(%q) = %x, want %x", tt.in, got, tt.want)
		}
	}
	dst, err := AppendDecodeHex([]byte("ab"), "zz")
	if err == nil || string(dst) != "ab" {
		t.Errorf("AppendDecodeHex on error returned %q, %v; want dst unchanged and an error", dst, err)
	}
}

func TestParseHexUint64(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0", 0, false},
		{"1f", 0x1f, false},
		{"7FFFFFFFFFFFFFFF", 1<<63 - 1, false},
		{"ffffffffffffffff", 1<<64 - 1, false},
		{"000000000000000000001", 1, false},
		{"10000000000000000", 0, true},
		{"", 0, true},
		{"0x10", 0, true},
		{"-1", 0, true},
		{"12 ", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseHexUint64(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseHexUint64(%q) = %#x, %v; want %#x, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseHexUint64(%q) error %v does not wrap ErrSyntax", tt.in, err)
		}
	}
}

func TestAppendHexUint64(t *testing.T) {
	for v, want := range map[uint64]string{0: "0", 1: "1", 0x401000: "401000", 1<<64 - 1: "ffffffffffffffff"} {
		if got := string(AppendHexUint64(nil, v)); got != want {
			t.Errorf("AppendHexUint64(%#x) = %q, want %q", v, got, want)
		}
		back, err := ParseHexUint64(want)
		if err != nil || back != v {
			t.Errorf("ParseHexUint64(%q) = %#x, %v; want %#x", want, back, err, v)
		}
	}
}

func TestRegisterLE(t *testing.T) {
	tests := []struct {
		v    uint64
		size int
		want string
	}{
		{0x401000, 8, "0010400000000000"},
		{0x202, 4, "02020000"},
		{0x1122334455667788, 8, "8877665544332211"},
		{0x1122334455667788, 2, "8877"},
		{0xff, 1, "ff"},
		{0x8000000000000000, 10, "00000000000000800000"},
		{5, 0, ""},
	}
	for _, tt := range tests {
		got := string(AppendUint64LE(nil, tt.v, tt.size))
		if got != tt.want {
			t.Errorf("AppendUint64LE(%#x, %d) = %q, want %q", tt.v, tt.size, got, tt.want)
		}
		if tt.size < 1 || tt.size > 8 {
			continue
		}
		mask := uint64(1<<(8*tt.size) - 1)
		if tt.size == 8 {
			mask = ^uint64(0)
		}
		back, err := ParseUint64LE(got)
		if err != nil || back != tt.v&mask {
			t.Errorf("ParseUint64LE(%q) = %#x, %v; want %#x", got, back, err, tt.v&mask)
		}
	}
	for _, bad := range []string{"", "0", "001", "zz", "001122334455667788"} {
		if _, err := ParseUint64LE(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseUint64LE(%q) error = %v, want ErrSyntax", bad, err)
		}
	}
	if got := string(AppendUnavailable([]byte("ab"), 3)); got != "abxxxxxx" {
		t.Errorf("AppendUnavailable = %q", got)
	}
}

func TestBinaryEscaping(t *testing.T) {
	tests := []struct {
		plain, escaped string
	}{
		{"", ""},
		{"abc", "abc"},
		{"#", "}\x03"},
		{"$", "}\x04"},
		{"}", "}]"},
		{"*", "}\n"},
		{"\x00\x03\xff+-", "\x00\x03\xff+-"},
		{"a}b*c", "a}]b}\nc"},
	}
	for _, tt := range tests {
		if got := string(AppendEscapedBinary(nil, []byte(tt.plain))); got != tt.escaped {
			t.Errorf("AppendEscapedBinary(%q) = %q, want %q", tt.plain, got, tt.escaped)
		}
	}
}

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

func TestParseXferRead(t *testing.T) {
	tests := []struct {
		in   string
		want XferRead
	}{
		{"qXfer:features:read:target.xml:0,fff", XferRead{"features", "target.xml", 0, 0xfff}},
		{"qXfer:threads:read::1000,1000", XferRead{"threads", "", 0x1000, 0x1000}},
		{"qXfer:auxv:read::0,131072", XferRead{"auxv", "", 0, 0x131072}},
		{"qXfer:libraries-svr4:read:start=1:2;prev=3:0,fff", XferRead{"libraries-svr4", "start=1:2;prev=3", 0, 0xfff}},
	}
	for _, tt := range tests {
		got, err := ParseXferRead(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseXferRead(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "qXfer", "qXfer:", "qXfer:features", "qXfer:features:read",
		"qXfer:features:read:target.xml", "qXfer:features:read:target.xml:0",
		"qXfer:features:write:target.xml:0,1", "qXfer::read:x:0,1",
		"qXfer:features:read:target.xml:,1", "qXfer:features:read:target.xml:0,",
		"qXfer:features:read:target.xml:z,1", "qSupported",
	} {
		if got, err := ParseXferRead(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseXferRead(%q) = %+v, %v; want ErrSyntax", bad, got, err)
		}
	}
}

func TestXferChunk(t *testing.T) {
	doc := []byte("0123456789")
	tests := []struct {
		doc            []byte
		offset, length uint64
		want           string
	}{
		{doc, 0, 4, "m0123"},
		{doc, 4, 4, "m4567"},
		{doc, 8, 4, "l89"},
		{doc, 6, 4, "l6789"},
		{doc, 0, 100, "l0123456789"},
		{doc, 10, 4, "l"},
		{doc, 1 << 63, 4, "l"},
		{doc, 0, 0, "m"},
		{nil, 0, 10, "l"},
		// Escaping doubles these bytes, so fewer fit in the same length.
		{[]byte("a#b$c}d*e"), 0, 4, "ma#b"},
		{[]byte("##########"), 0, 5, "m##"},
		// One byte of progress even when it cannot fit once escaped.
		{[]byte("#x"), 0, 1, "m#"},
		{[]byte("#"), 0, 1, "l#"},
	}
	for _, tt := range tests {
		got := XferChunk(tt.doc, tt.offset, tt.length)
		if string(got) != tt.want {
			t.Errorf("XferChunk(%q, %d, %d) = %q, want %q", tt.doc, tt.offset, tt.length, got, tt.want)
		}
	}
}

// TestXferChunkReassembles reads documents the way gdb does, checking that
// the pieces reassemble and that no escaped reply exceeds the asked length.
func TestXferChunkReassembles(t *testing.T) {
	docs := [][]byte{
		TargetXML(true)["target.xml"],
		bytes.Repeat([]byte("}#*$x"), 300),
		{},
	}
	for _, doc := range docs {
		for _, length := range []uint64{1, 2, 3, 7, 100, 4095} {
			var got []byte
			for i := 0; ; i++ {
				if i > len(doc)+1 {
					t.Fatalf("no progress reading %d bytes with length %d", len(doc), length)
				}
				reply := XferChunk(doc, uint64(len(got)), length)
				if enc := len(AppendEscapedBinary(nil, reply[1:])); uint64(enc) > max(length, 2) {
					t.Fatalf("escaped reply is %d bytes for length %d", enc, length)
				}
				got = append(got, reply[1:]...)
				if reply[0] == 'l' {
					break
				}
			}
			if !bytes.Equal(got, doc) {
				t.Fatalf("reassembled document differs (length %d)", length)
			}
		}
	}
}

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

func TestErrorsClipPeerText(t *testing.T) {
	_, err := ParseHexUint64(strings.Repeat("z", 10000))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("error message not bounded: %d bytes", len(err.Error()))
	}
}

func FuzzHexDecode(f *testing.F) {
	for _, s := range []string{"", "00", "0", "zz", "DEADbeef", "0x", "ffffffffffffffff", "10000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := DecodeHex(s)
		want, stdErr := hex.DecodeString(s)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("DecodeHex(%q) error %v, encoding/hex error %v", s, err, stdErr)
		}
		if err == nil {
			if !bytes.Equal(got, want) {
				t.Fatalf("DecodeHex(%q) = %x, want %x", s, got, want)
			}
			if enc := string(AppendHex(nil, got)); enc != strings.ToLower(s) {
				t.Fatalf("AppendHex(DecodeHex(%q)) = %q", s, enc)
			}
		}
		v, err := ParseHexUint64(s)
		if err == nil {
			if back := string(AppendHexUint64(nil, v)); strings.TrimLeft(strings.ToLower(s), "0") != strings.TrimLeft(back, "0") {
				t.Fatalf("ParseHexUint64(%q) = %#x, formats back as %q", s, v, back)
			}
		}
		if v, err := ParseUint64LE(s); err == nil {
			if back := string(AppendUint64LE(nil, v, len(s)/2)); back != strings.ToLower(s) {
				t.Fatalf("ParseUint64LE(%q) = %#x, formats back as %q", s, v, back)
			}
		}
		if id, err := ParseThreadID(s); err == nil {
			if back, err := ParseThreadID(id.String()); err != nil || back != id {
				t.Fatalf("ParseThreadID(%q) = %+v, does not round trip: %+v, %v", s, id, back, err)
			}
		}
		if x, err := ParseXferRead(s); err == nil && x.Object == "" {
			t.Fatalf("ParseXferRead(%q) accepted an empty object", s)
		}
	})
}

// FuzzBinaryEscape: what AppendEscapedBinary writes holds no raw framing
// byte, and a frame of it reads back as the data (the framing layer is the
// one place that unescapes).
func FuzzBinaryEscape(f *testing.F) {
	for _, s := range []string{"", "abc", "}]", "}", "a}\x03b", "}}}}", "*#$}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		enc := AppendEscapedBinary(nil, data)
		for i := 0; i < len(enc); i++ {
			if enc[i] == '#' || enc[i] == '$' || enc[i] == '*' {
				t.Fatalf("escaped form %q contains a raw %q", enc, enc[i])
			}
			if enc[i] == '}' {
				i++
			}
		}
		m, err := NewReader(bytes.NewReader(AppendPacket(nil, data)), len(data)+1).Next()
		if err != nil || !bytes.Equal(m.Payload, data) {
			t.Fatalf("round trip of %q: got %q, %v", data, m.Payload, err)
		}
	})
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
