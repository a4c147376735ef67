package test

import (
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// TestSMTPMX: MX hosts by preference, the next when one refuses
// connections; implicit MX; null MX; a domain that does not exist; DNS
// trouble; -b and -g.
func TestSMTPMX(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
		sent   bool
	}{
		{"first MX refuses, second takes it", []string{"example.org"}, 0, "", true},
		{"implicit MX, AAAA then A", []string{"implicit.example"}, 0, "", true},
		{"null MX", []string{"nullmx.example"}, 1, "556 5.1.10 domain does not accept mail (null MX)", false},
		{"null MX even with a gateway", []string{"-g", "tcp!127.0.0.1!%port", "nullmx.example"}, 1, "null MX", false},
		{"no such domain", []string{"gone.example"}, 1, "gone.example: domain not found", false},
		{"DNS failure", []string{"broken.example"}, 2, "SERVFAIL", false},
		{"gateway when there is no MX", []string{"-g", "tcp!127.0.0.1!%port", "gone.example"}, 0, "", true},
		{"gateway when DNS fails", []string{"-g", "127.0.0.1:%port", "broken.example"}, 0, "", true},
		{"busted MX skipped", []string{"-b", "mx2.example.org", "example.org"}, 2, "dial tcp 127.0.0.3:", false},
		{"address literal", []string{"[127.0.0.1]"}, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newSMTPWorld(t, testlib.SinkOptions{}, "")
			var args []string
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "%port", w.sink.Port()))
			}
			args = append(args, "glenda@example.com", "bob")
			code, _, stderr := w.run(smtpMsg, args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("smtp %q: exit %d, want %d and %q in\n%s", args, code, tt.code, tt.stderr, stderr)
			}
			if got := len(w.sink.Messages()) == 1; got != tt.sent {
				t.Errorf("smtp %q: delivered %v, want %v", args, got, tt.sent)
			}
		})
	}
}

// TestSMTPBusted: -b skips an MX that works, so the next one gets the
// message.
func TestSMTPBusted(t *testing.T) {
	zone := `
example.org.      MX 10 mx1.example.org.
example.org.      MX 20 mx2.example.org.
mx1.example.org.  A 127.0.0.2
mx2.example.org.  A 127.0.0.1
`
	w := newSMTPWorld(t, testlib.SinkOptions{}, zone)
	mx1 := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.2:" + w.sink.Port()})
	if code, _, stderr := w.run(smtpMsg, "example.org", "glenda@example.com", "bob"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	mx1.Wait(t, 1, 10*time.Second)
	if code, _, stderr := w.run(smtpMsg, "-b", "mx1.example.org", "example.org", "glenda@example.com", "bob"); code != 0 {
		t.Fatalf("-b: exit %d\n%s", code, stderr)
	}
	w.sink.Wait(t, 1, 10*time.Second)
	if n := len(mx1.Messages()); n != 1 {
		t.Errorf("mx1 got %d messages, want 1 (the first)", n)
	}
}
