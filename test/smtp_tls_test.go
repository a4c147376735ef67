package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/test/testlib"
)

// tlsWorld is an smtpWorld whose sink offers STARTTLS (or, implicit, TLS
// from the first byte) with a throwaway certificate for mx2.example.org
// and 127.0.0.1.
func tlsWorld(t *testing.T, implicit bool, users map[string]string) (*smtpWorld, *testlib.Cert) {
	cert := testlib.NewCert(t, t.TempDir(), "mx2.example.org", "127.0.0.1")
	w := newSMTPWorld(t, testlib.SinkOptions{TLS: cert.ServerConfig(), Implicit: implicit, Users: users}, "")
	return w, cert
}

// pin writes lib/tls/smtp.
func (w *smtpWorld) pin(text string) {
	dir := filepath.Join(w.root, "lib", "tls")
	if err := os.MkdirAll(dir, 0755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "smtp"), []byte(text), 0644); err != nil {
		w.t.Fatal(err)
	}
}

// TestSMTPStartTLS: -s with a pinned certificate, with one the system's
// CAs (SSL_CERT_FILE) vouch for, with -o; an unknown certificate is a
// permanent failure; a refused STARTTLS ends the session, never plaintext.
func TestSMTPStartTLS(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		setup  func(w *smtpWorld, cert *testlib.Cert)
		code   int
		stderr string
	}{
		{"pinned", []string{"-s"}, func(w *smtpWorld, c *testlib.Cert) { w.pin("x509 sha256=" + c.SHA256 + "\n") }, 0, ""},
		{"system CAs", []string{"-s"}, func(w *smtpWorld, c *testlib.Cert) { w.env = append(w.env, "SSL_CERT_FILE="+c.CertFile) }, 0, ""},
		{"-o accepts anything", []string{"-so"}, nil, 0, ""},
		{"unknown certificate", []string{"-s"}, nil, 1, "certificate of mx2.example.org not recognized: x509 sha256="},
		{"STARTTLS refused", []string{"-so"}, func(w *smtpWorld, c *testlib.Cert) { w.sink.SetReply(on("STARTTLS", 454, "4.7.0")) }, 2, "starttls:\n454 4.7.0"},
		{"STARTTLS refused for good", []string{"-so"}, func(w *smtpWorld, c *testlib.Cert) { w.sink.SetReply(on("STARTTLS", 554, "5.7.0")) }, 1, "starttls:\n554 5.7.0"},
		{"bad thumbprint file", []string{"-s"}, func(w *smtpWorld, c *testlib.Cert) { w.pin("x509 sha256=xyz\n") }, 1, "invalid thumbprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, cert := tlsWorld(t, false, nil)
			if tt.setup != nil {
				tt.setup(w, cert)
			}
			args := append(tt.args, "single.example", "glenda@example.com", "bob@example.org")
			code, _, stderr := w.run(smtpMsg, args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("smtp %q: exit %d, want %d and %q in\n%s", args, code, tt.code, tt.stderr, stderr)
			}
			msgs := w.sink.Messages()
			if tt.code == 0 && (len(msgs) != 1 || !msgs[0].TLS) {
				t.Errorf("sink: %d messages, or not over TLS", len(msgs))
			}
			if tt.code != 0 && strings.Contains(w.commands(), "MAIL") {
				t.Errorf("MAIL went out after TLS failed:\n%s", w.commands())
			}
		})
	}
	// Without -s, STARTTLS is not used even when offered (upas).
	w, _ := tlsWorld(t, false, nil)
	if code, _, stderr := w.run(smtpMsg, "single.example", "glenda@example.com", "bob@example.org"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if msgs := w.sink.Messages(); len(msgs) != 1 || msgs[0].TLS {
		t.Errorf("without -s: %+v", msgs)
	}
}

// TestSMTPImplicitTLS: -t, TLS from the first byte.
func TestSMTPImplicitTLS(t *testing.T) {
	tests := []struct {
		name string
		args []string
		pin  bool
		code int
	}{
		{"pinned", []string{"-t"}, true, 0},
		{"-o", []string{"-to"}, false, 0},
		{"unknown certificate", []string{"-t"}, false, 1},
	}
	for _, tt := range tests {
		w, cert := tlsWorld(t, true, nil)
		if tt.pin {
			w.pin("x509 sha256=" + cert.SHA256 + "\n")
		}
		args := append(tt.args, "tcp!127.0.0.1!"+w.sink.Port(), "glenda@example.com", "bob@example.org")
		code, _, stderr := w.run(smtpMsg, args...)
		if code != tt.code {
			t.Errorf("%s: smtp %q: exit %d, want %d\n%s", tt.name, args, code, tt.code, stderr)
		}
		if msgs := w.sink.Messages(); tt.code == 0 && (len(msgs) != 1 || !msgs[0].TLS) {
			t.Errorf("%s: sink: %+v", tt.name, msgs)
		}
	}
}

// TestSMTPAuth: -a with the netrc password, over TLS; refused over
// plaintext unless -i; -u picks the login; the transcript masks it.
func TestSMTPAuth(t *testing.T) {
	users := map[string]string{"alice": "wonderland", "bob": "builder"}
	const netrc = "machine single.example login alice password wonderland\nmachine single.example login bob password builder\n"
	tests := []struct {
		name     string
		tls      bool
		netrc    string
		args     []string
		code     int
		stderr   string
		wantUser string
	}{
		{"over STARTTLS", true, netrc, []string{"-ao"}, 0, "", "alice"},
		{"-u picks the login", true, netrc, []string{"-ao", "-u", "bob"}, 0, "", "bob"},
		{"wrong password", true, "machine single.example login alice password guess\n", []string{"-ao"}, 1, "auth:\n535 5.7.8", ""},
		{"no netrc entry", true, "machine elsewhere login alice password wonderland\n", []string{"-ao"}, 1, "no password for machine single.example", ""},
		{"plaintext refused", false, netrc, []string{"-a"}, 1, "refusing to send a password without TLS", ""},
		{"plaintext with -i", false, netrc, []string{"-ai"}, 0, "", "alice"},
		{"-d masks the secret", true, netrc, []string{"-aod"}, 0, "> AUTH PLAIN ********\n", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w *smtpWorld
			if tt.tls {
				w, _ = tlsWorld(t, false, users)
			} else {
				w = newSMTPWorld(t, testlib.SinkOptions{Users: users}, "")
			}
			w.netrc(tt.netrc)
			args := append(tt.args, "single.example", "glenda@example.com", "bob@example.org")
			code, _, stderr := w.run(smtpMsg, args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("smtp %q: exit %d, want %d and %q in\n%s", args, code, tt.code, tt.stderr, stderr)
			}
			if strings.Contains(stderr, "wonderland") || strings.Contains(stderr, "d29uZGVybGFuZ") {
				t.Errorf("the password is on standard error:\n%s", stderr)
			}
			msgs := w.sink.Messages()
			if tt.code == 0 && (len(msgs) != 1 || msgs[0].User != tt.wantUser) {
				t.Errorf("sink: %+v, want one message from %s", msgs, tt.wantUser)
			}
			if tt.name == "plaintext refused" && strings.Contains(w.commands(), "AUTH") {
				t.Errorf("AUTH went out in plaintext:\n%s", w.commands())
			}
		})
	}
}
