package smtp

import (
	"errors"
	"fmt"
	"testing"
)

func TestReplyWire(t *testing.T) {
	tests := []struct {
		r    *Reply
		wire string
	}{
		{Replyf(250, "2.0.0", "sender is %s", "example.com!bob"), "250 2.0.0 sender is example.com!bob\r\n"},
		{Replyf(451, "", "please try again soon from the same IP."), "451 please try again soon from the same IP.\r\n"},
		{&Reply{Code: 334, Lines: []string{""}}, "334 \r\n"},
		{&Reply{Code: 554, Enh: "5.7.1", Lines: []string{"We don't accept mail from x.", "Contact postmaster@d for more information."}},
			"554-5.7.1 We don't accept mail from x.\r\n554 5.7.1 Contact postmaster@d for more information.\r\n"},
	}
	for _, tt := range tests {
		if got := string(tt.r.Wire()); got != tt.wire {
			t.Errorf("Wire() = %q, want %q", got, tt.wire)
		}
	}
}

func TestReplyClass(t *testing.T) {
	r4, r5, r2 := Replyf(450, "4.0.0", "x"), Replyf(550, "5.1.1", "x"), Replyf(250, "", "ok")
	if !r4.Temporary() || r4.Permanent() || r5.Temporary() || !r5.Permanent() || !r2.Positive() || r4.Positive() {
		t.Error("wrong classes")
	}
	if IsTemporary(fmt.Errorf("rcpt: %w", r5)) || !IsTemporary(fmt.Errorf("rcpt: %w", r4)) || !IsTemporary(errors.New("eof")) {
		t.Error("IsTemporary wrong")
	}
	if got := r5.Error(); got != "550 5.1.1 x" {
		t.Errorf("Error() = %q", got)
	}
}

func TestParseDialString(t *testing.T) {
	tests := []struct {
		in, str, addr string
	}{
		{"mx.example.org", "tcp!mx.example.org", "mx.example.org:25"},
		{"net!mx.example.org", "tcp!mx.example.org", "mx.example.org:25"},
		{"tcp!127.0.0.1!2525", "tcp!127.0.0.1!2525", "127.0.0.1:2525"},
		{"tcp!*!smtp", "tcp!*!25", ":25"},
		{"127.0.0.1:587", "tcp!127.0.0.1!587", "127.0.0.1:587"},
		{"[::1]:25", "tcp!::1!25", "[::1]:25"},
		{"::1", "tcp!::1", "[::1]:25"},
		{"unix!/tmp/ns/smtpfs", "unix!/tmp/ns/smtpfs", "/tmp/ns/smtpfs"},
	}
	for _, tt := range tests {
		d, err := ParseDialString(tt.in)
		if err != nil || d.String() != tt.str || d.Address("25") != tt.addr {
			t.Errorf("ParseDialString(%q) = %v (%q, %q), %v; want %q, %q", tt.in, d, d.String(), d.Address("25"), err, tt.str, tt.addr)
		}
	}
	for _, bad := range []string{"", "a b", "udp!x!1", "tcp!x!", "tcp!x!y!z", "x:99999", "tcp!x!nosuch", "unix!", "host:"} {
		if d, err := ParseDialString(bad); err == nil {
			t.Errorf("ParseDialString(%q) = %v, want error", bad, d)
		}
	}
}
