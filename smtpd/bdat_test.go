package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// bodyOf returns a delivered message without its Received: line, whose id
// differs from message to message.
func bodyOf(t *testing.T, msg string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(msg, "\n") {
		if !strings.HasPrefix(l, "Received: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestBdatSameAsData: a message sent in pipelined chunks, cut anywhere
// (inside a CRLF too), is delivered byte for byte as the same message
// sent with DATA; a line of BDAT that starts with a dot is not unstuffed,
// since BDAT has no stuffing.
func TestBdatSameAsData(t *testing.T) {
	ts := newTestServer(t, "")
	msg := "From: a@sender.net\r\nSubject: chunks\r\n\r\n.leading dot\r\nline\r\n\r\nend\r\n"
	stuffed := strings.ReplaceAll(msg, "\r\n.", "\r\n..")
	c := ts.ehloed("192.0.2.7")
	if got := c.mail("a@sender.net", []string{"bob@example.org"}, stuffed); got[0] != "250 2.5.0 sent" {
		t.Fatalf("DATA: %q", got)
	}
	c.begin("a@sender.net", "carol@example.org")
	cuts := []int{0, 7, 21, 22, 40, len(msg)}
	var wire strings.Builder
	for i := 1; i < len(cuts); i++ {
		last := ""
		if i == len(cuts)-1 {
			last = " LAST"
		}
		chunk := msg[cuts[i-1]:cuts[i]]
		fmt.Fprintf(&wire, "BDAT %d%s\r\n%s", len(chunk), last, chunk)
	}
	c.write(wire.String()) // all at once: pipelined
	for i := 1; i < len(cuts)-1; i++ {
		c.expect(fmt.Sprintf("250 2.0.0 %d octets received", cuts[i]-cuts[i-1]))
	}
	c.expect("250 2.5.0 sent")
	b, cl := boxFiles(t, ts.Root, "bob"), boxFiles(t, ts.Root, "carol")
	if len(b) != 1 || len(cl) != 1 {
		t.Fatalf("bob %q carol %q", b, cl)
	}
	if want, got := strings.ReplaceAll(bodyOf(t, b[0]), "bob@", "carol@"), bodyOf(t, cl[0]); got != want {
		t.Errorf("BDAT delivered\n%q\nDATA\n%q", got, want)
	}
	if !strings.Contains(cl[0], "\n.leading dot\n") {
		t.Errorf("dot line %q", cl[0])
	}
}

// TestBdatLyingSize: the octets of a chunk are its declared size, no more
// and no less: what looks like commands inside it is message, and what
// comes after it is commands.
func TestBdatLyingSize(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.begin("a@sender.net", "bob@example.org")
	// Says 5, sends more: the rest is a command line, refused as one.
	c.write("BDAT 5 LAST\r\nhello world\r\n")
	c.expect("250 2.5.0 sent")
	c.expect("500 ")
	// Says more than it sends at first: commands inside are message.
	inner := "Subject: x\r\n\r\n.\r\nQUIT\r\nMAIL FROM:<eve@evil.example>\r\n"
	c.begin("a@sender.net", "carol@example.org")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(inner)+5, inner))
	c.write("tail\n") // 5 octets: a bare LF at the end
	c.expect("554 5.6.0 ")
	c.check("NOOP", "250 ")
	c.begin("a@sender.net", "carol@example.org")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(inner), inner))
	c.expect("250 2.5.0 sent")
	b, cl := boxFiles(t, ts.Root, "bob"), boxFiles(t, ts.Root, "carol")
	if len(b) != 1 || !strings.HasSuffix(b[0], "\nhello\n") {
		t.Errorf("bob %q", b)
	}
	if len(cl) != 1 || !strings.HasSuffix(cl[0], "\n.\nQUIT\nMAIL FROM:<eve@evil.example>\n") {
		t.Errorf("carol %q", cl)
	}
}

// TestBdatSequence: BDAT's octets are read even when BDAT is refused, so
// that they never run as commands: before RCPT, after DATA, after a
// failed chunk. DATA inside a BDAT transaction is refused.
func TestBdatSequence(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.write("BDAT 6\r\nRSET\r\n")
	c.expect("503 5.5.1 BDAT without RCPT TO:")
	c.begin("a@sender.net", "bob@example.org")
	c.write("DATA\r\n")
	c.expect("354 ")
	c.write("Subject: d\r\n\r\n.\r\n")
	c.expect("250 2.5.0 sent")
	c.write("BDAT 28 LAST\r\nMAIL FROM:<eve@evil.example>")
	c.expect("503 5.5.1 BDAT without RCPT TO:")
	c.check("RCPT TO:<bob@example.org>", "503 5.5.1 Need MAIL before RCPT")

	c.begin("a@sender.net", "bob@example.org")
	c.write("BDAT 4\r\nab\r\n")
	c.expect("250 2.0.0 4 octets received")
	c.check("DATA", "503 5.5.1 Bad sequence")
	c.write("BDAT 3\r\nno\n") // bare LF: refused at once, the transaction ends
	c.expect("554 5.6.0 ")
	c.write("BDAT 4 LAST\r\nxy\r\n")
	c.expect("503 5.5.1 BDAT without RCPT TO:")
	if n := len(boxFiles(t, ts.Root, "bob")); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
	if !strings.Contains(ts.logbuf.String(), `"BDAT 28 LAST": 503`) || strings.Contains(ts.logbuf.String(), "eve@evil.example") {
		t.Errorf("log:\n%s", ts.logbuf.String())
	}
}

// TestBdatEdges: BDAT 0 LAST alone is an empty message; a final line
// without CRLF gets one; BDAT LAST without a size, or a size no session
// may send, ends the session; too big a message is refused, in step.
func TestBdatEdges(t *testing.T) {
	ts := newTestServer(t, "maxsize 1k")
	c := ts.ehloed("192.0.2.7")
	c.begin("a@sender.net", "bob@example.org")
	c.write("BDAT 0 LAST\r\n")
	c.expect("250 2.5.0 sent")
	c.begin("a@sender.net", "bob@example.org")
	c.write("BDAT 9 LAST\r\nno ending")
	c.expect("250 2.5.0 sent")
	c.begin("a@sender.net", "bob@example.org")
	c.write(fmt.Sprintf("BDAT 1100 LAST\r\n%s", strings.Repeat("0123456789\r\n", 100)[:1100]))
	c.expect("552 5.3.4 ")
	c.check("NOOP", "250 ")
	m := boxFiles(t, ts.Root, "bob")
	if len(m) != 2 || !strings.HasSuffix(m[0]+m[1], "\nno ending\n") && !strings.HasSuffix(m[1]+m[0], "\nno ending\n") {
		t.Errorf("bob %q", m)
	}
	c.write("BDAT LAST\r\n")
	c.expect("501 5.5.4 Syntax: BDAT size [LAST]")
	if !c.closed() {
		t.Error("not closed after BDAT LAST")
	}
	c = ts.ehloed("192.0.2.7")
	c.write("BDAT 99999999999999999999\r\n")
	c.expect("501 ")
	c = ts.ehloed("192.0.2.7")
	c.begin("a@sender.net", "bob@example.org")
	c.write(fmt.Sprintf("BDAT %d\r\n", 2*1024+1<<20+1))
	c.expect("552 5.3.4 ")
	if !c.closed() {
		t.Error("not closed after a chunk over the hard bound")
	}
}

// TestBdatLongLine: a line over 1000 octets is refused, as with DATA.
func TestBdatLongLine(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.begin("a@sender.net", "bob@example.org")
	long := strings.Repeat("x", 999) + "\r\n"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(long), long))
	c.expect("554 5.6.0 message refused: line longer than 1000 octets")
	c.begin("a@sender.net", "bob@example.org")
	ok := strings.Repeat("x", 998) + "\r\n"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(ok), ok))
	c.expect("250 2.5.0 sent")
}
