package test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// startTLSMail starts smtpfs with a throwaway certificate (-c) and the
// AUTH users of secrets.
func startTLSMail(t *testing.T, conf, secrets string, args ...string) (*Daemon, *testlib.Cert) {
	t.Helper()
	cert := testlib.NewCert(t, t.TempDir())
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644)
	os.WriteFile(filepath.Join(root, "lib", "secrets"), []byte(secrets), 0600)
	return startDaemon(t, root, append([]string{"-c", cert.Both}, args...)...), cert
}

func clientTLS(cert *testlib.Cert) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert.X509)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSmtpdStartTLS(t *testing.T) {
	d, cert := startTLSMail(t, "", "glenda s3cret\n")
	c, err := smtp.Dial(d.SMTP[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("no STARTTLS offered")
	}
	if _, mechs := c.Extension("AUTH"); mechs != "CRAM-MD5" {
		t.Errorf("AUTH before TLS: %q", mechs)
	}
	if err := c.StartTLS(clientTLS(cert)); err != nil {
		t.Fatal(err)
	}
	if _, mechs := c.Extension("AUTH"); mechs != "CRAM-MD5 PLAIN LOGIN" {
		t.Errorf("AUTH after TLS: %q", mechs)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS offered inside TLS")
	}
	if err := c.Auth(smtp.PlainAuth("", "glenda", "s3cret", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH PLAIN over TLS: %v", err)
	}
	send(t, c, "glenda@example.org", "v@elsewhere.example", "Subject: tls\r\n\r\n", "") // authenticated: may relay
	send(t, c, "glenda@example.org", "bob@localhost", "Subject: tls\r\n\r\n", "")
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], " with ESMTPSA id ") {
		t.Errorf("bob has %q", m)
	}
}

// send runs one transaction with net/smtp; wantErr is the prefix of the
// expected refusal of the recipient, "" for success.
func send(t *testing.T, c *smtp.Client, from, to, msg, wantErr string) {
	t.Helper()
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt(to)
	if wantErr != "" {
		if err == nil || !strings.HasPrefix(err.Error(), wantErr) {
			t.Errorf("RCPT %s: %v, want %q", to, err, wantErr)
		}
		c.Reset()
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSmtpdStartTLSInjection: commands sent after STARTTLS in the same
// packet are never run (CVE-2011-0411): the session is closed.
func TestSmtpdStartTLSInjection(t *testing.T) {
	d, _ := startTLSMail(t, "", "")
	r := ehlo(t, d, "")
	r.Write("STARTTLS\r\nMAIL FROM:<evil@sender.example>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
	r.Expect("554 5.5.1 commands pipelined after STARTTLS")
	if !r.Closed(10 * time.Second) {
		t.Errorf("still open")
	}
	waitLog(t, d, "commands pipelined after STARTTLS; hanging up")
}

func TestSmtpdAuth(t *testing.T) {
	d, cert := startTLSMail(t, "", "glenda s3cret\n")
	// CRAM-MD5 in the clear.
	c, err := smtp.Dial(d.SMTP[0])
	if err != nil {
		t.Fatal(err)
	}
	c.Hello("client.example.net")
	if err := c.Auth(smtp.CRAMMD5Auth("glenda", "s3cret")); err != nil {
		t.Errorf("CRAM-MD5: %v", err)
	}
	c.Close()
	// PLAIN and LOGIN need TLS (or -p).
	r := ehlo(t, d, "")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("538 5.7.1 Encryption required for requested authentication mechanism")
	r.Send("AUTH LOGIN")
	r.Expect("538 5.7.1")
	r.Send("AUTH CRAM-MD5")
	r.Expect("334 ")
	r.Send(b64("glenda 00000000000000000000000000000000"))
	r.Expect("535 5.7.1 Authentication failed")
	// LOGIN over TLS.
	r.Send("STARTTLS")
	r.Expect("220 ")
	tc := tls.Client(r.C, clientTLS(cert))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.C, r.R = tc, bufio.NewReader(tc)
	r.Send("EHLO client.example.net")
	r.Expect("250 AUTH CRAM-MD5 PLAIN LOGIN")
	r.Send("AUTH LOGIN")
	r.Expect("334 VXNlcm5hbWU6")
	r.Send(b64("glenda"))
	r.Expect("334 UGFzc3dvcmQ6")
	r.Send(b64("s3cret"))
	r.Expect("235 2.0.0 Authentication successful")
	waitLog(t, d, `authenticated "glenda" (LOGIN) from client.example.net/127.0.0.1`)
	if strings.Contains(logText(t, d), "s3cret") {
		t.Errorf("the log shows the password")
	}
}

// TestSmtpdPlaintextAuth: with -p, PLAIN and LOGIN work without TLS.
func TestSmtpdPlaintextAuth(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n", "-p")
	r := ehlo(t, d, "")
	r.Send("EHLO again.example")
	if l := r.Expect("250 "); l[len(l)-1] != "250 AUTH CRAM-MD5 PLAIN LOGIN" {
		t.Errorf("EHLO %q", l)
	}
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")
}

// TestSmtpdRequireAuth: with -a, MAIL needs AUTH first.
func TestSmtpdRequireAuth(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n", "-ap")
	r := ehlo(t, d, "")
	r.Send("MAIL FROM:<glenda@example.org>")
	r.Expect("530 5.7.0 Authentication required")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")
	r.Send("MAIL FROM:<glenda@example.org>")
	r.Expect("250 ")
}

// TestSmtpdSecretsPermission: smtpfs and smtpd refuse to start when
// lib/secrets is readable by group or others.
func TestSmtpdSecretsPermission(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "secrets"), []byte("glenda s3cret\n"), 0644)
	for _, prog := range []string{"smtpfs", "smtpd"} {
		cmd := exec.Command(bin(t, prog), "-R", root, "-n", t.TempDir())
		if prog == "smtpfs" {
			cmd = exec.Command(bin(t, prog), "-R", root, "-l", "tcp!127.0.0.1!0")
		}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "permission denied") || !strings.Contains(string(out), "secrets") {
			t.Errorf("%s with a 0644 lib/secrets: %v\n%s", prog, err, out)
		}
	}
}
