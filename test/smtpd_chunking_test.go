package test

import (
	"fmt"
	"strings"
	"testing"
)

// TestSmtpdChunking drives smtpfs's BDAT (RFC 3030) over a raw socket:
// CHUNKING is offered; pipelined chunks deliver the same bytes as DATA;
// what hides inside a chunk, or follows a refused one, never runs as a
// command; BDAT 0 LAST alone is an empty message.
func TestSmtpdChunking(t *testing.T) {
	d := startMail(t, "")
	r := dialRaw(t, d.SMTP[0], "")
	r.Expect("220 ")
	r.Send("EHLO client.example")
	if l := r.Expect("250 "); !strings.Contains(strings.Join(l, "|"), "250-CHUNKING") {
		t.Fatalf("EHLO: %q", l)
	}
	msg := "Subject: same\r\n\r\n.dot\r\nbody\r\n"
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<bob@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write(strings.ReplaceAll(msg, "\r\n.", "\r\n..") + ".\r\n")
	r.Expect("250 2.5.0 sent")

	// After DATA the transaction is over: a BDAT is refused, and its
	// octets, a MAIL command, are read as octets.
	smuggled := "MAIL FROM:<eve@evil.example>\r\n"
	r.Write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(smuggled), smuggled))
	r.Expect("503 5.5.1 BDAT without RCPT TO:")
	r.Send("RCPT TO:<carol@localhost>")
	r.Expect("503 5.5.1 Need MAIL before RCPT")

	// The same message in three pipelined chunks, cut inside a CRLF.
	r.Write("MAIL FROM:<a@sender.example>\r\nRCPT TO:<carol@localhost>\r\n" +
		fmt.Sprintf("BDAT 16\r\n%sBDAT 1\r\n%sBDAT %d LAST\r\n%s", msg[:16], msg[16:17], len(msg)-17, msg[17:]))
	for _, want := range []string{"250 ", "250 ", "250 2.0.0 16 octets received", "250 2.0.0 1 octets received", "250 2.5.0 sent"} {
		r.Expect(want)
	}

	// A chunk that says less than it sends: the rest is a command line.
	r.Write("MAIL FROM:<a@sender.example>\r\nRCPT TO:<dave@localhost>\r\nBDAT 0 LAST\r\nBDAT 2 LAST\r\nxyNOOP\r\n")
	for _, want := range []string{"250 ", "250 ", "250 2.5.0 sent", "503 5.5.1 BDAT without RCPT TO:", "250 "} {
		r.Expect(want)
	}
	b, c := boxMessages(t, d.Root, "bob"), boxMessages(t, d.Root, "carol")
	if len(b) != 1 || len(c) != 1 {
		t.Fatalf("bob %q carol %q", b, c)
	}
	strip := func(m string) string {
		var keep []string
		for _, l := range strings.Split(m, "\n") {
			if !strings.HasPrefix(l, "Received: ") {
				keep = append(keep, strings.ReplaceAll(l, "bob@", "carol@"))
			}
		}
		return strings.Join(keep, "\n")
	}
	if strip(b[0]) != strip(c[0]) || !strings.Contains(c[0], "\n.dot\n") {
		t.Errorf("DATA delivered\n%q\nBDAT\n%q", b[0], c[0])
	}
	if m := boxMessages(t, d.Root, "dave"); len(m) != 1 {
		t.Errorf("dave %q", m)
	}
	r.Send("QUIT")
	r.Expect("221 ")
}
