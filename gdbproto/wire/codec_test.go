package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// frameOf builds a frame around raw (already escaped or run-length encoded)
// content with a correct checksum, independently of AppendPacket.
func frameOf(start byte, raw string) string {
	var sum byte
	for i := 0; i < len(raw); i++ {
		sum += raw[i]
	}
	return fmt.Sprintf("%c%s#%02x", start, raw, sum)
}

func TestAppendPacket(t *testing.T) {
	tests := []struct {
		payload string
		want    string
	}{
		// Checksums taken from gdb 13's own remote log.
		{"", "$#00"},
		{"OK", "$OK#9a"},
		{"g", "$g#67"},
		{"vMustReplyEmpty", "$vMustReplyEmpty#3a"},
		{"QStartNoAckMode", "$QStartNoAckMode#b0"},
		{"Hgp0.0", "$Hgp0.0#ad"},
		// Each special byte escaped as 0x7d, byte^0x20.
		{"#", frameOf('$', "}\x03")},
		{"$", frameOf('$', "}\x04")},
		{"}", frameOf('$', "}]")},
		{"*", frameOf('$', "}\n")},
		{"a*b#c", frameOf('$', "a}\nb}\x03c")},
		// Bytes that need no escaping pass through, binary included.
		{"\x00\x03+-%\xff", frameOf('$', "\x00\x03+-%\xff")},
	}
	for _, tt := range tests {
		got := string(AppendPacket(nil, []byte(tt.payload)))
		if got != tt.want {
			t.Errorf("AppendPacket(%q) = %q, want %q", tt.payload, got, tt.want)
		}
	}
	if got := string(AppendPacket([]byte("+"), []byte("OK"))); got != "+$OK#9a" {
		t.Errorf("AppendPacket keeps dst prefix: got %q", got)
	}
}

type readResult struct {
	kind Kind
	data string
	bad  bool
	err  error // compared with errors.Is
}

func readAll(t *testing.T, in string, maxSize int) []readResult {
	t.Helper()
	r := NewReader(strings.NewReader(in), maxSize)
	var out []readResult
	for i := 0; i <= len(in)+1; i++ {
		m, err := r.Next()
		if err != nil {
			out = append(out, readResult{kind: m.Kind, err: err})
			if errors.Is(err, ErrTooLarge) {
				continue
			}
			return out
		}
		out = append(out, readResult{kind: m.Kind, data: string(m.Payload), bad: m.BadChecksum})
	}
	t.Fatalf("Reader did not terminate on %q", in)
	return nil
}

func TestReader(t *testing.T) {
	pkt := func(s string) readResult { return readResult{kind: KindPacket, data: s} }
	bad := func(s string) readResult { return readResult{kind: KindPacket, data: s, bad: true} }
	eof := readResult{err: io.EOF}
	uneof := readResult{err: io.ErrUnexpectedEOF}
	tests := []struct {
		name string
		in   string
		max  int
		want []readResult
	}{
		{"empty stream", "", 0, []readResult{eof}},
		{"acks and interrupt", "+-\x03", 0, []readResult{
			{kind: KindAck}, {kind: KindNak}, {kind: KindInterrupt}, eof}},
		{"packet", "$OK#9a", 0, []readResult{pkt("OK"), eof}},
		{"empty packet", "$#00", 0, []readResult{pkt(""), eof}},
		{"upper-case checksum", frameOf('$', "\xff\xff")[:3] + "#FE", 0, []readResult{pkt("\xff\xff"), eof}},
		{"bad checksum", "$OK#00", 0, []readResult{bad("OK"), eof}},
		{"non-hex checksum", "$OK#zz", 0, []readResult{bad("OK"), eof}},
		{"notification", frameOf('%', "Stop:T05thread:p1.1;"), 0, []readResult{
			{kind: KindNotification, data: "Stop:T05thread:p1.1;"}, eof}},
		{"garbage skipped", "\r\nnoise" + "$OK#9a" + "zz", 0, []readResult{pkt("OK"), eof}},
		{"ack then packet", "+$OK#9a", 0, []readResult{{kind: KindAck}, pkt("OK"), eof}},
		{"interrupt and plus inside packet are data", frameOf('$', "a\x03+-%b"), 0, []readResult{pkt("a\x03+-%b"), eof}},
		{"escapes", frameOf('$', "}\x03}\x04}]}\n"), 0, []readResult{pkt("#$}*"), eof}},
		{"any escaped byte", frameOf('$', "}a"), 0, []readResult{pkt("A"), eof}},
		{"dangling escape", frameOf('$', "a}"), 0, []readResult{bad("a"), eof}},
		// ' ' is 32: 32-29 = 3 further copies.
		{"run length", frameOf('$', "0* "), 0, []readResult{pkt("0000"), eof}},
		{"run length mid payload", frameOf('$', "ab*\"c"), 0, []readResult{pkt("abbbbbbc"), eof}},
		{"run length largest count", frameOf('$', "x*\xff"), 0, []readResult{pkt(strings.Repeat("x", 227)), eof}},
		// The run repeats the raw byte before '*', and unescaping follows:
		// "}]" is '}' and the run repeats ']'.
		{"run after escape repeats raw byte", frameOf('$', "}]*\""), 0, []readResult{pkt("}]]]]]"), eof}},
		{"run of escape byte", frameOf('$', "}*\""), 0, []readResult{pkt("]]]"), eof}},
		{"run leaving escape open", frameOf('$', "}*!"), 0, []readResult{bad("]]"), eof}},
		{"run with nothing before", frameOf('$', "* "), 0, []readResult{bad(""), eof}},
		{"run count too small", frameOf('$', "a*\x1d"), 0, []readResult{bad("a"), eof}},
		{"run count is terminator", "$a*#00", 0, []readResult{bad("a"), eof}},
		{"run count is packet start", "$a*" + "$OK#9a", 0, []readResult{pkt("OK"), eof}},
		{"restart on new packet", "$abc$OK#9a", 0, []readResult{pkt("OK"), eof}},
		{"restart turns notification into packet", "%abc$OK#9a", 0, []readResult{pkt("OK"), eof}},
		{"checksum cut by next packet", "$OK#9$OK#9a", 0, []readResult{bad("OK"), pkt("OK"), eof}},
		{"checksum cut at once", "$OK#$OK#9a", 0, []readResult{bad("OK"), pkt("OK"), eof}},
		{"eof in payload", "$OK", 0, []readResult{uneof}},
		{"eof in checksum", "$OK#9", 0, []readResult{uneof}},
		{"eof after star", "$a*", 0, []readResult{uneof}},
		{"at limit", "$1234#ca", 4, []readResult{pkt("1234"), eof}},
		{"over limit", "$12345#00$OK#9a", 4, []readResult{
			{kind: KindPacket, err: ErrTooLarge}, pkt("OK"), eof}},
		{"run over limit", frameOf('$', "a*~*~*~") + "$OK#9a", 100, []readResult{
			{kind: KindPacket, err: ErrTooLarge}, pkt("OK"), eof}},
		{"notification over limit", "%12345#00", 4, []readResult{
			{kind: KindNotification, err: ErrTooLarge}, eof}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, tt.in, tt.max)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d results %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if w.err != nil {
					if !errors.Is(g.err, w.err) || g.kind != w.kind {
						t.Errorf("result %d: got kind %v err %v, want kind %v err %v", i, g.kind, g.err, w.kind, w.err)
					}
					continue
				}
				if g.err != nil || g.kind != w.kind || g.data != w.data || g.bad != w.bad {
					t.Errorf("result %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestReaderPayloadIsFresh(t *testing.T) {
	r := NewReader(strings.NewReader("$aa#c2$bb#c4"), 0)
	m1, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if string(m1.Payload) != "aa" {
		t.Errorf("first payload overwritten by second read: %q", m1.Payload)
	}
}

func TestReaderBoundedMemory(t *testing.T) {
	const limit = 1000
	// Every 3 raw bytes expand to 227 decoded ones.
	bomb := "$a" + strings.Repeat("a*\xff", 100000) + "#00"
	r := NewReader(strings.NewReader(bomb+"$OK#9a"), limit)
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if cap(r.buf) > limit {
		t.Errorf("scratch buffer grew to %d bytes, limit %d", cap(r.buf), limit)
	}
	m, err := r.Next()
	if err != nil || string(m.Payload) != "OK" {
		t.Errorf("after oversized packet got %q, %v; want OK", m.Payload, err)
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want [][]byte
	for i := range 500 {
		p := make([]byte, rng.IntN(300))
		for j := range p {
			if i%2 == 0 {
				p[j] = byte(rng.Uint32())
			} else {
				p[j] = "#$}*+-%\x03a"[rng.IntN(9)]
			}
		}
		want = append(want, p)
		if i%3 == 0 {
			stream = append(stream, '+') // interleaved acks must not disturb packets
		}
		stream = AppendPacket(stream, p)
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for i := 0; i < len(want); {
		m, err := r.Next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if m.Kind == KindAck {
			continue
		}
		if m.Kind != KindPacket || m.BadChecksum || !bytes.Equal(m.Payload, want[i]) {
			t.Fatalf("packet %d: got %+v, want %q", i, m, want[i])
		}
		i++
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("trailing read: got %v, want io.EOF", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindPacket: "packet", KindNotification: "notification", KindInterrupt: "interrupt",
		KindAck: "ack", KindNak: "nak", 0: "Kind(0)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"", "+-\x03", "$OK#9a", "$#00", "%Stop:T05#00", "$0* #00", "$}]*\"#00",
		"$a}#00", "$abc$OK#9a", "$OK#9$OK#9a", "$a*~*~*~#00", "$a*", "garbage$g#67",
	} {
		f.Add([]byte(s))
	}
	const limit = 64
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), limit)
		// Every message consumes at least one byte, so a reader that
		// makes no progress shows up as too many iterations.
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("no progress after %d messages", i)
			}
			m, err := r.Next()
			if len(m.Payload) > limit || cap(r.buf) > limit {
				t.Fatalf("payload %d bytes, scratch %d bytes; limit %d", len(m.Payload), cap(r.buf), limit)
			}
			if errors.Is(err, ErrTooLarge) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if (m.Kind == KindPacket || m.Kind == KindNotification) == (m.Payload == nil) {
				t.Fatalf("kind %v with payload %v", m.Kind, m.Payload)
			}
		}

		// Whatever the bytes, framing them and reading them back must give
		// them back unchanged.
		frame := AppendPacket(nil, data)
		m, err := NewReader(bytes.NewReader(frame), len(data)+1).Next()
		if err != nil || m.Kind != KindPacket || m.BadChecksum || !bytes.Equal(m.Payload, data) {
			t.Fatalf("round trip of %q via %q: got %+v, %v", data, frame, m, err)
		}
	})
}
