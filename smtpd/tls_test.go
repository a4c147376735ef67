package smtpd

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"

	"smtpfs/test/testlib"
)

// starttls upgrades the client's connection after the 220.
func (c *client) starttls(t *testing.T) {
	t.Helper()
	c.send("STARTTLS")
	c.expect("220 2.0.0 Go ahead make my day")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

func TestStartTLS(t *testing.T) {
	cert := testlib.NewCert(t, t.TempDir())
	ts := newTestServer(t, "tlscert "+cert.CertFile+" "+cert.KeyFile)
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	c := ts.greeted("192.0.2.7")
	c.send("EHLO a.example")
	if got := strings.Join(c.reply(), "|"); !strings.Contains(got, "|250-STARTTLS|250 AUTH CRAM-MD5") {
		t.Errorf("EHLO before TLS: %q", got)
	}
	c.starttls(t)
	// A new session: EHLO again, no STARTTLS, PLAIN and LOGIN offered.
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("503 5.5.1 Start by saying HELO, please.")
	c.send("EHLO a.example")
	if got := strings.Join(c.reply(), "|"); strings.Contains(got, "STARTTLS") || !strings.HasSuffix(got, "250 AUTH CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO after TLS: %q", got)
	}
	c.send("STARTTLS")
	c.expect("503 5.5.1 Bad sequence of commands")
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("235 ")
	if got := c.mail("glenda@example.org", []string{"b@example.org"}, "Subject: tls\r\n\r\n"); got[0] != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	m := boxFiles(t, ts.Root, "b")
	if len(m) != 1 || !strings.Contains(m[0], "with ESMTPSA id ") {
		t.Errorf("message %q", m)
	}
	if ts.Stats.TLS.Load() != 1 {
		t.Errorf("tls = %d", ts.Stats.TLS.Load())
	}
}

// TestStartTLSInjection: commands sent with STARTTLS, before the
// handshake, must never run inside TLS (CVE-2011-0411).
func TestStartTLSInjection(t *testing.T) {
	cert := testlib.NewCert(t, t.TempDir())
	ts := newTestServer(t, "tlscert "+cert.Both)
	c := ts.ehloed("192.0.2.7")
	c.write("STARTTLS\r\nMAIL FROM:<evil@sender.net>\r\nRCPT TO:<b@example.org>\r\n")
	c.expect("554 5.5.1 commands pipelined after STARTTLS; goodbye")
	if !c.closed() {
		t.Errorf("still open")
	}
	if !strings.Contains(ts.logbuf.String(), "commands pipelined after STARTTLS") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

func TestStartTLSUnavailable(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.send("STARTTLS")
	c.expect("454 4.7.5 TLS not available")
	c.send("NOOP")
	c.expect("250 ")
}

// TestStartTLSAuthForgotten: what was proved before TLS is forgotten.
func TestStartTLSAuthForgotten(t *testing.T) {
	cert := testlib.NewCert(t, t.TempDir())
	ts := newTestServer(t, "tlscert "+cert.Both)
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	c := ts.ehloed("192.0.2.7")
	c.send("AUTH CRAM-MD5")
	ch := c.expect("334 ")[0][4:]
	c.send(b64("glenda " + cramDigest("s3cret", unb64(t, ch))))
	c.expect("235 ")
	c.starttls(t)
	c.send("EHLO a.example")
	c.reply()
	c.send("MAIL FROM:<glenda@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<v@elsewhere.com>")
	c.expect("550 5.7.1 we don't relay")
}
