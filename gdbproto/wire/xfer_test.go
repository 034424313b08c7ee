package wire

import (
	"bytes"
	"errors"
	"testing"
)

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
