package smtp

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestDataWriter(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"crlf", []string{"a\r\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{"lf", []string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},
		{"lone cr", []string{"a\rb\r"}, "a\r\nb\r\n.\r\n"},
		{"cr lf split", []string{"a\r", "\nb"}, "a\r\nb\r\n.\r\n"},
		{"cr cr lf", []string{"a\r\r\nb"}, "a\r\n\r\nb\r\n.\r\n"},
		{"lf cr", []string{"a\n\rb"}, "a\r\n\r\nb\r\n.\r\n"},
		{"no final line end", []string{"a"}, "a\r\n.\r\n"},
		{"empty", nil, ".\r\n"},
		{"dots", []string{".a\n..b\nc.\n.\n"}, "..a\r\n...b\r\nc.\r\n..\r\n.\r\n"},
		{"dot after split", []string{"a\n", ".", "b\n"}, "a\r\n..b\r\n.\r\n"},
		{"dot after cr", []string{"a\r.\r\n"}, "a\r\n..\r\n.\r\n"},
		{"smuggling", []string{"x\n.\nMAIL FROM:<e@vil>\r\n"}, "x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		d := newDataWriter(&b, nil)
		n := 0
		for _, c := range tt.chunks {
			d.Write([]byte(c))
			n += len(c)
		}
		d.Close()
		if b.String() != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, b.String(), tt.want)
		}
		if d.n != int64(n) {
			t.Errorf("%s: counted %d bytes, want %d", tt.name, d.n, n)
		}
	}
}

func TestDataWriterTranscript(t *testing.T) {
	var lines []string
	d := newDataWriter(&bytes.Buffer{}, func(l string) { lines = append(lines, l) })
	d.Write([]byte("Subject: x\r\nTo: y\r\n\r\nsecret body\r\nmore\r\n"))
	d.Close()
	got := strings.Join(lines, "|")
	if want := "Subject: x|To: y||[19 bytes of body]"; got != want {
		t.Errorf("transcript %q, want %q", got, want)
	}
}

// BenchmarkDataWriter measures the DATA encoding of a 1 MiB message.
func BenchmarkDataWriter(b *testing.B) {
	msg := []byte(strings.Repeat("a line of text, as mail has them\n.and one with a dot\r\n", 19000))
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		d := newDataWriter(io.Discard, nil)
		for p := msg; len(p) > 0; p = p[min(len(p), 32<<10):] {
			d.Write(p[:min(len(p), 32<<10)])
		}
		d.Close()
	}
}
