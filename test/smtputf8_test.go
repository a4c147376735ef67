package test

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// SMTPUTF8 end to end (issue 13 item 2): the real daemon offers it, takes
// UTF-8 addresses and headers from Python's smtplib into a UTF-8 box,
// refuses a UTF-8 address without it, and relays a UTF-8 message only to
// a server that offers SMTPUTF8, bouncing it (5.6.7) otherwise.

// offerUTF8 makes the sink offer SMTPUTF8.
func offerUTF8(s *testlib.Sink) {
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "EHLO" {
			return &smtp.Reply{Code: 250, Lines: []string{"sink", "PIPELINING", "8BITMIME", "SMTPUTF8"}}
		}
		return nil
	})
}

// mailCommands returns the MAIL commands the sink was sent.
func mailCommands(s *testlib.Sink) []string {
	var l []string
	for _, sess := range s.Sessions() {
		for _, c := range sess {
			if strings.HasPrefix(c, "MAIL ") {
				l = append(l, c)
			}
		}
	}
	return l
}

// TestSMTPUTF8Python: smtplib's send_message with SMTPUTF8 delivers to a
// UTF-8 local part, written decomposed, in its NFC box, and relays to a
// U-label domain through a smarthost that offers SMTPUTF8, which sees
// SMTPUTF8 on MAIL FROM and the address as the client wrote it.
func TestSMTPUTF8Python(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	w := startQueue(t, "smarthost %SINK\n")
	offerUTF8(w.sink)
	host, port, _ := strings.Cut(w.d.SMTP[0], ":")
	script := fmt.Sprintf(`
import smtplib
from email.message import EmailMessage
s = smtplib.SMTP(%q, %s)
s.ehlo()
assert s.has_extn("smtputf8"), s.esmtp_features
m = EmailMessage()
m["From"] = "Jörg <jörg@example.org>"
m["To"] = "Zoë <zoë@bücher.example>, 用户 <用户@example.org>"
m["Subject"] = "Grüße aus Köln"
m.set_content("Hallo Welt\n")
s.send_message(m, from_addr="jörg@example.org", to_addrs=["Zoe\u0308@example.org", "用户@example.org", "zoë@bücher.example"], mail_options=["SMTPUTF8"])
s.quit()
`, host, port)
	if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, box := range []string{"zoë", "用户"} {
		b := w.waitBox(box, 1)
		if !strings.Contains(b[0], "Subject: Grüße aus Köln\n") || !strings.Contains(b[0], "\nHallo Welt\n") ||
			!strings.Contains(b[0], " with UTF8SMTP id ") || !strings.HasPrefix(b[0], "Return-Path: <jörg@example.org>\n") {
			t.Errorf("box %s has\n%s", box, b[0])
		}
	}
	m := w.sink.Wait(t, 1, 15*time.Second)[0]
	if m.From != "jörg@example.org" || !slices.Equal(m.Rcpts, []string{"zoë@bücher.example"}) || !strings.Contains(string(m.Data), "Subject: Grüße aus Köln\r\n") {
		t.Errorf("the sink got from <%s> to %q:\n%s", m.From, m.Rcpts, m.Data)
	}
	if mc := mailCommands(w.sink); len(mc) != 1 || !strings.Contains(mc[0], " SMTPUTF8") {
		t.Errorf("MAIL commands at the sink %q, want SMTPUTF8", mc)
	}
	w.waitEmpty()
}

// TestSMTPUTF8Refused: without SMTPUTF8 on MAIL a UTF-8 address is
// refused, 553 5.6.7, as sender or recipient; SMTPUTF8 after HELO is not
// offered; hostile UTF-8 names get no box.
func TestSMTPUTF8Refused(t *testing.T) {
	d := startMail(t, "")
	r := ehlo(t, d, "")
	r.Send("MAIL FROM:<jörg@example.org>")
	r.Expect("553 5.6.7 ")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<用户@localhost>")
	r.Expect("553 5.6.7 ")
	r.Send("RCPT TO:<bob@bücher.example>")
	r.Expect("553 5.6.7 ")
	r.Send("RSET")
	r.Expect("250 ")
	r.Send("MAIL FROM:<a@sender.example> SMTPUTF8")
	r.Expect("250 ")
	for _, rcpt := range []string{"a\u2215b", "\uff42\uff4f\uff42", "bob\u202e", "\u0308bob"} {
		r.Send("RCPT TO:<" + rcpt + "@localhost>")
		r.Expect("550 5.1.3 ")
	}
	r.Write("RCPT TO:<a\xc2\x85b@localhost>\r\n") // a C1 control
	r.Expect("500 5.5.1 ")
	r.Send("HELO client.example.net")
	r.Expect("250 ")
	r.Send("MAIL FROM:<a@sender.example> SMTPUTF8")
	r.Expect("555 ")
}

// TestSMTPUTF8Bounce: a message that came with SMTPUTF8, relayed to a
// server that does not offer it, is not downgraded: it bounces with 5.6.7
// to its (local, UTF-8) sender; with ASCII addresses only, UTF-8 in the
// header alone is enough. The bounce is an RFC 6533 global DSN, the
// UTF-8 recipient named with the utf-8 address type.
func TestSMTPUTF8Bounce(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	r := ehlo(t, w.d, "")
	r.Send("MAIL FROM:<jörg@example.org> SMTPUTF8")
	r.Expect("250 ")
	r.Send("RCPT TO:<bob@remote.example>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write("From: jörg@example.org\r\nTo: bob@remote.example\r\nSubject: Grüße\r\n\r\nHallo\r\n.\r\n")
	r.Expect("250 ")
	box := w.waitBox("jörg", 1)
	d := testlib.ParseDSN(t, []byte(box[0]))
	// RFC 6533: the DSN of an SMTPUTF8 message is a global one.
	if want := []string{"text/plain", "message/global-delivery-status", "message/global-headers"}; !slices.Equal(d.Types, want) {
		t.Errorf("DSN parts %q, want %q", d.Types, want)
	}
	var final []string
	for _, rc := range d.Recipients {
		final = append(final, rc["Final-Recipient"])
		if rc["Status"] != "5.6.7" {
			t.Errorf("DSN recipient %q, want failed 5.6.7", rc)
		}
	}
	if want := []string{"rfc822; bob@remote.example"}; !slices.Equal(final, want) {
		t.Errorf("DSN Final-Recipients %q, want %q", final, want)
	}
	if !strings.Contains(d.Original, "Subject: Grüße") {
		t.Errorf("DSN original header:\n%s", d.Original)
	}

	// A UTF-8 recipient, with an ASCII header.
	r.Send("MAIL FROM:<jörg@example.org> SMTPUTF8")
	r.Expect("250 ")
	r.Send("RCPT TO:<jürgen@remote.example>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write("From: jorg@example.org\r\nSubject: hi\r\n\r\nHallo\r\n.\r\n")
	r.Expect("250 ")
	box = w.waitBox("jörg", 2)
	var found bool
	for _, m := range box {
		d := testlib.ParseDSN(t, []byte(m))
		if len(d.Recipients) == 1 && d.Recipients[0]["Final-Recipient"] == "utf-8; jürgen@remote.example" {
			found = d.Types[1] == "message/global-delivery-status" && d.Recipients[0]["Status"] == "5.6.7"
		}
	}
	if !found {
		t.Errorf("no global DSN naming utf-8; jürgen@remote.example failed 5.6.7 in %q", box)
	}
	if n := len(w.sink.Messages()); n != 0 {
		t.Errorf("%d messages reached a server without SMTPUTF8", n)
	}
	w.waitEmpty()
}

// TestSMTPUTF8Submitted: a message with a UTF-8 header written to the 9P
// queue file, and one sent with the smtp program, leave with SMTPUTF8.
func TestSMTPUTF8Submitted(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	offerUTF8(w.sink)
	msg := "From: alice@example.org\nTo: bob@remote.example\nSubject: Grüße\n\nHallo\n"
	if err := fstest.Write(w.fsys, "queue", plan9.OWRITE, msg); err != nil {
		t.Fatal(err)
	}
	w.sink.Wait(t, 1, 15*time.Second)
	if mc := mailCommands(w.sink); len(mc) != 1 || !strings.HasSuffix(mc[0], " SMTPUTF8") {
		t.Errorf("queue file: MAIL commands %q, want SMTPUTF8", mc)
	}

	sw := newSMTPWorld(t, testlib.SinkOptions{}, "")
	code, _, stderr := sw.run("Subject: Grüße\n\nHallo\n", "example.org", "glenda@example.com", "bob@example.org")
	if code != 1 || !strings.Contains(stderr, "5.6.7") {
		t.Errorf("smtp to a server without SMTPUTF8: exit %d, %q; want 1 and 5.6.7", code, stderr)
	}
	offerUTF8(sw.sink)
	if code, _, stderr := sw.run("Subject: Grüße\n\nHallo\n", "example.org", "glenda@example.com", "bob@example.org"); code != 0 {
		t.Fatalf("smtp: exit %d\n%s", code, stderr)
	}
	if mc := mailCommands(sw.sink); len(mc) != 1 || !strings.HasSuffix(mc[0], " SMTPUTF8") {
		t.Errorf("smtp program: MAIL commands %q, want one with SMTPUTF8", mc)
	}
}
