package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmtpdDeliver: a message to a local user lands in box/<user>/new as
// a Maildir file, with our header lines, in LF form, mode 0600.
func TestSmtpdDeliver(t *testing.T) {
	d := startMail(t, "defaultdomain example.org\n")
	msg := "From: you@sender.example\r\nTo: glenda@localhost\r\nSubject: hello\r\n\r\nfirst line\r\n.leading dot\r\n"
	if err := sendMail(t, d, "you@sender.example", []string{"glenda@localhost", "Glenda+tag@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	msgs := boxMessages(t, d.Root, "glenda")
	if len(msgs) != 1 {
		t.Fatalf("glenda has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{"Return-Path: <you@sender.example>\nDelivered-To: glenda@localhost\nReceived: from localhost ([127.0.0.1]) by ",
		" with ESMTP id ", "\nSubject: hello\n\nfirst line\n.leading dot\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("message lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "\r") {
		t.Errorf("message has CR:\n%q", m)
	}
	ents, _ := os.ReadDir(filepath.Join(d.Root, "box", "glenda", "new"))
	fi, _ := ents[0].Info()
	if fi.Mode().Perm() != 0600 {
		t.Errorf("mode %v", fi.Mode())
	}
	for _, sub := range []string{"cur", "tmp"} {
		if fi, err := os.Stat(filepath.Join(d.Root, "box", "glenda", sub)); err != nil || !fi.IsDir() {
			t.Errorf("box/glenda/%s: %v", sub, err)
		}
	}
	waitLog(t, d, "sender.example!you sent ")
}

// TestSmtpdSecondMessage: the header handling applies to every message of
// a session (upas.md §9.7).
func TestSmtpdSecondMessage(t *testing.T) {
	d := startMail(t, "")
	r := ehlo(t, d, "")
	for i := range 2 {
		if got := r.transaction("a@sender.example", []string{"bob@localhost"}, fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i)); got != "250 2.5.0 sent" {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	for i, m := range boxMessages(t, d.Root, "bob") {
		if !strings.Contains(m, "\nReceived: from client.example.net ([127.0.0.1])") || !strings.Contains(m, "\nFrom: a@sender.example\nTo: bob@localhost\n") {
			t.Errorf("message %d:\n%s", i, m)
		}
	}
}

// TestSmtpdPipelining: a whole transaction in one write.
func TestSmtpdPipelining(t *testing.T) {
	d := startMail(t, "")
	r := dialRaw(t, d.SMTP[0], "")
	r.Expect("220 ")
	r.Write("EHLO p.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@localhost>\r\nRCPT TO:<v@elsewhere.example>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\n")
	if l := r.Expect("250 "); !strings.Contains(strings.Join(l, "\n"), "250-PIPELINING") {
		t.Errorf("EHLO %q", l)
	}
	for _, want := range []string{"250 2.0.0 sender is", "250 2.0.0 receiver is localhost!bob", "550 5.7.1 we don't relay", "250 2.0.0 receiver is localhost!carol", "354 "} {
		r.Expect(want)
	}
	r.Write("Subject: piped\r\n\r\nx\r\n.\r\nRSET\r\nQUIT\r\n")
	r.Expect("250 2.5.0 sent")
	r.Expect("250 2.0.0 ok")
	r.Expect("221 ")
	if len(boxMessages(t, d.Root, "bob")) != 1 || len(boxMessages(t, d.Root, "carol")) != 1 {
		t.Errorf("not delivered to both")
	}
}

// TestSmtpdSize: SIZE is offered with the limit, and enforced at MAIL and
// at DATA with 552.
func TestSmtpdSize(t *testing.T) {
	d := startMail(t, "maxsize 10k\n")
	r := dialRaw(t, d.SMTP[0], "")
	r.Expect("220 ")
	r.Send("EHLO s.example")
	if l := r.Expect("250 "); !strings.Contains(strings.Join(l, "\n"), "250-SIZE 10240") {
		t.Errorf("EHLO %q", l)
	}
	r.Send("MAIL FROM:<a@sender.example> SIZE=10241")
	r.Expect("552 5.3.4 ")
	big := strings.Repeat("0123456789012345678901234567890123456789\r\n", 300)
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: big\r\n\r\n"+big); !strings.HasPrefix(got, "552 5.3.4 ") {
		t.Errorf("over the limit: %q", got)
	}
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: small\r\n\r\nok\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("after a 552: %q", got)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "Subject: small") {
		t.Errorf("bob has %q", m)
	}
}

// TestSmtpd8BitMIME: 8-bit text passes unchanged.
func TestSmtpd8BitMIME(t *testing.T) {
	d := startMail(t, "")
	r := ehlo(t, d, "")
	r.Send("MAIL FROM:<a@sender.example> BODY=8BITMIME")
	r.Expect("250 ")
	r.Send("RCPT TO:<bob@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write("Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCafé, naïve, 日本語\r\n.\r\n")
	r.Expect("250 2.5.0 sent")
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "\nCafé, naïve, 日本語\n") {
		t.Errorf("bob has %q", m)
	}
}

// TestSmtpdSwaks drives the server with swaks, when it is installed.
func TestSmtpdSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed")
	}
	d := startMail(t, "")
	out, err := exec.Command(swaks, "--server", d.SMTP[0], "--to", "glenda@localhost", "--from", "you@example.org",
		"--header", "Subject: from swaks", "--pipeline").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if m := boxMessages(t, d.Root, "glenda"); len(m) != 1 || !strings.Contains(m[0], "Subject: from swaks") {
		t.Errorf("glenda has %q\nswaks said:\n%s", m, out)
	}
}

// TestSmtpdPython drives the server with Python's smtplib, when there is
// a python3.
func TestSmtpdPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	d := startMail(t, "")
	host, port, _ := strings.Cut(d.SMTP[0], ":")
	script := fmt.Sprintf(`
import smtplib
s = smtplib.SMTP(%q, %s)
s.ehlo()
assert s.has_extn("pipelining") and s.has_extn("8bitmime") and s.has_extn("size")
refused = s.sendmail("a@example.org", ["bob@localhost", "v@elsewhere.example"], b"Subject: python\r\n\r\nhello\r\n")
assert list(refused) == ["v@elsewhere.example"], refused
s.quit()
`, host, port)
	if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "Subject: python\n\nhello\n") {
		t.Errorf("bob has %q", m)
	}
}

// TestSmtpdMkBoxOff: unknown users are refused at RCPT; postmaster never.
func TestSmtpdMkBoxOff(t *testing.T) {
	d := startMail(t, "mkbox off\n")
	os.MkdirAll(filepath.Join(d.Root, "box", "glenda", "new"), 0700)
	r := ehlo(t, d, "")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<nobody@localhost>")
	r.Expect("550 5.1.1 <nobody@localhost> ... user unknown")
	r.Send("RCPT TO:<postmaster@localhost>")
	r.Expect("250 ")
	r.Send("RCPT TO:<glenda@localhost>")
	r.Expect("250 ")
}
