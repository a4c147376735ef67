package smtp_test

import (
	"strings"
	"testing"

	"smtpfs/smtp"
)

func TestALabel(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Example.ORG", "example.org"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example.", "xn--bcher-kva.example"},
		{"straße.example", "xn--strae-oqa.example"}, // IDNA2008: ß is not ss
		{"münchen.xn--bcher-kva.example", "xn--mnchen-3ya.xn--bcher-kva.example"},
	} {
		if got, err := smtp.ALabel(tt.in); err != nil || got != tt.want {
			t.Errorf("ALabel(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"a\u2215b.example",                         // DIVISION SLASH
		"a\uff0fb.example",                         // FULLWIDTH SOLIDUS maps to '/'
		"\u202eexample.com",                        // RIGHT-TO-LEFT OVERRIDE
		"ü" + strings.Repeat("a", 63) + ".example", // a label over 63 octets as an A-label
		"-ü.example",
	} {
		if got, err := smtp.ALabel(bad); err == nil {
			t.Errorf("ALabel(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNeedsSMTPUTF8(t *testing.T) {
	for _, tt := range []struct {
		head  string
		addrs []string
		want  bool
	}{
		{"Subject: hi\r\n\r\nbody", []string{"a@b.example"}, false},
		{"Subject: Grüße\r\n\r\nbody", []string{"a@b.example"}, true},
		{"Subject: Grüße\n\nbody", nil, true},
		{"Subject: hi\r\n\r\nGrüße in the body", nil, false},
		{"Subject: hi\n\nGrüße in the body", nil, false},
		{"\r\nGrüße, no header", nil, false},
		{"Subject: caf\xe9\r\n\r\n", nil, false}, // Latin-1: 8-bit data, not RFC 6532
		{"Subject: hi\r\n\r\n", []string{"a@b.example", "jörg@bücher.example"}, true},
		{"Subject: unfinished Grüße", nil, true},
	} {
		if got := smtp.NeedsSMTPUTF8([]byte(tt.head), tt.addrs...); got != tt.want {
			t.Errorf("NeedsSMTPUTF8(%q, %q) = %v, want %v", tt.head, tt.addrs, got, tt.want)
		}
	}
}
