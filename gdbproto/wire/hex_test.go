package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
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
