package smtpd

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"smtpfs/smtp"
	"smtpfs/smtpd/authfail"
	"smtpfs/test/testlib"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cramDigest answers a CRAM-MD5 challenge (RFC 2195).
func cramDigest(secret, challenge string) string {
	m := hmac.New(md5.New, []byte(secret))
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

// TestHeadersEveryMessage: our Received: line, and From:/To: when missing,
// go on every message of a session, not only the first (upas.md §9.7).
func TestHeadersEveryMessage(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	for i := range 3 {
		body := fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", i, i)
		if got := c.mail("alice@sender.net", []string{"bob@example.org", "carol@example.org"}, body); got[0] != "250 2.5.0 sent" {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	msgs := boxFiles(t, ts.Root, "bob")
	if len(msgs) != 3 {
		t.Fatalf("bob has %d messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		// Two boxes: one file linked into both, so no Delivered-To:.
		lines := strings.Split(m, "\n")
		if lines[0] != "Return-Path: <alice@sender.net>" {
			t.Errorf("message starts %q", lines[:1])
		}
		if !strings.HasPrefix(lines[1], "Received: from client.example.net ([192.0.2.7]) by mx.example.org with ESMTP id ") ||
			!strings.HasSuffix(lines[1], "; Wed, 27 Mar 2024 23:47:45 +0000") || strings.Contains(lines[1], " for ") {
			t.Errorf("Received: line %q", lines[1])
		}
		if lines[2] != "From: alice@sender.net" || lines[3] != "To: bob@example.org," || lines[4] != "\tcarol@example.org" {
			t.Errorf("added header %q", lines[2:5])
		}
		if !strings.HasPrefix(lines[5], "Subject: message ") || strings.Contains(m, "\r") {
			t.Errorf("message %q", m)
		}
	}
	if n := len(boxFiles(t, ts.Root, "carol")); n != 3 {
		t.Errorf("carol has %d messages, want 3", n)
	}
}

func TestHeaderCases(t *testing.T) {
	ts := newTestServer(t, "ourdomains example.com")
	for _, tc := range []struct {
		name, from, msg string
		want            []string // lines of the delivered message after Return-Path, Delivered-To
	}{
		{"has From and To", "a@sender.net", "From: A <a@sender.net>\r\nTo: b@example.org\r\n\r\nhi\r\n",
			[]string{"Received: *", "From: A <a@sender.net>", "To: b@example.org", "", "hi"}},
		{"Cc counts", "a@sender.net", "From: a@sender.net\r\nCc: x@y.z\r\n\r\nhi\r\n",
			[]string{"Received: *", "From: a@sender.net", "Cc: x@y.z", "", "hi"}},
		{"Reply-To is no From", "a@sender.net", "Reply-To: a@sender.net\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "From: a@sender.net", "Reply-To: a@sender.net", "To: b@example.org", ""}},
		{"null sender", "", "Subject: bounce\r\n\r\n",
			[]string{"Received: *", "From: MAILER-DAEMON@client.example.net", "To: b@example.org", "Subject: bounce", ""}},
		{"no header", "a@sender.net", "just a body\r\nline two\r\n",
			[]string{"Received: *", "From: a@sender.net", "To: b@example.org", "", "just a body", "line two"}},
		{"header then junk", "a@sender.net", "Subject: s\r\nnot a field\r\nmore\r\n",
			[]string{"Received: *", "From: a@sender.net", "To: b@example.org", "Subject: s", "", "not a field", "more"}},
		{"folded", "a@sender.net", "Subject: s\r\n  folded\r\nFrom: x@y.z\r\n\r\n",
			[]string{"Received: *", "To: b@example.org", "Subject: s", "  folded", "From: x@y.z", ""}},
		{"empty", "a@sender.net", "",
			[]string{"Received: *", "From: a@sender.net", "To: b@example.org"}},
		// upas's masquerade warnings, for clients that may not relay
		{"suspect envelope", "eve@example.org", "From: eve@sender.net\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "X-warning: suspect envelope domain", "From: eve@sender.net", "To: b@example.org", ""}},
		{"suspect From", "eve@sender.net", "From: Boss <boss@example.com>\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "X-warning: suspect From: domain", "From: Boss <boss@example.com>", "To: b@example.org", ""}},
		{"domainless From is the HELO name's", "eve@sender.net", "From: boss\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "From: boss", "To: b@example.org", ""}},
		{"bang From", "eve@sender.net", "From: localhost!boss\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "X-warning: suspect From: domain", "From: localhost!boss", "To: b@example.org", ""}},
		{"list exploder", "list@sender.net", "Sender: list@sender.net\r\nFrom: boss@example.com\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "Sender: list@sender.net", "From: boss@example.com", "To: b@example.org", ""}},
		{"suspect Sender", "eve@sender.net", "Sender: x@example.com\r\nFrom: \"weird\" <y@sender.net>\r\nTo: b@example.org\r\n\r\n",
			[]string{"Received: *", "X-warning: suspect Sender: domain", "Sender: x@example.com", "From: \"weird\" <y@sender.net>", "To: b@example.org", ""}},
	} {
		c := ts.ehloed("192.0.2.7")
		if got := c.mail(tc.from, []string{"b@example.org"}, tc.msg); got[0] != "250 2.5.0 sent" {
			t.Errorf("%s: %q", tc.name, got)
			continue
		}
		msgs := boxFiles(t, ts.Root, "b")
		removeBox(t, ts.Root, "b")
		if len(msgs) != 1 {
			t.Errorf("%s: %d messages", tc.name, len(msgs))
			continue
		}
		lines := strings.Split(strings.TrimSuffix(msgs[0], "\n"), "\n")[2:]
		if len(lines) > 0 && strings.HasPrefix(lines[0], "Received: ") && strings.HasSuffix(lines[0], "+0000") {
			lines[0] = "Received: *"
		}
		if strings.Join(lines, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, lines, tc.want)
		}
	}
}

func TestReceived(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.greeted("10.0.0.1")
	c.send("HELO old.example.net")
	c.expect("250 example.org you are old.example.net")
	c.mail("a@example.org", []string{"v@elsewhere.com"}, "Subject: s\r\n\r\n")
	m := q.all()[0].data
	want := "Received: from old.example.net ([10.0.0.1]) by mx.example.org with SMTP id "
	if !strings.HasPrefix(m, want) || !strings.Contains(m, " for <v@elsewhere.com>; Wed, 27 Mar 2024 23:47:45 +0000\r\n") {
		t.Errorf("queued %q", m)
	}
}

// TestMailLoop: more than 100 Received: lines is a loop (RFC 5321 §6.3).
func TestMailLoop(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	hops := strings.Repeat("Received: from a by b; Wed, 27 Mar 2024 23:47:45 +0000\r\n", 100)
	if got := c.mail("a@sender.net", []string{"b@example.org"}, hops+"\r\n"); got[0] != "250 2.5.0 sent" {
		t.Errorf("100 hops: %q", got)
	}
	if got := c.mail("a@sender.net", []string{"b@example.org"}, hops+"Received: x\r\n\r\n"); got[0] != "554 5.4.6 message refused: more than 100 Received: lines, a mail loop" {
		t.Errorf("101 hops: %q", got)
	}
}

func TestDataErrorsKeepSession(t *testing.T) {
	ts := newTestServer(t, "maxsize 1k")
	c := ts.ehloed("192.0.2.7")
	for _, tc := range []struct{ msg, want string }{
		{"a\n.\nMAIL FROM:<x@y.z>\r\n", "554 5.6.0 message refused: bare CR or LF"},
		{"a\r\n.\nRCPT TO:<v@elsewhere.com>\r\n", "554 5.6.0 message refused: bare CR or LF"},
		{"Subject: x\r\n\r\n" + strings.Repeat("x", 1001) + "\r\n", "554 5.6.0 message refused: line longer than 1000 octets"},
		{strings.Repeat("0123456789\r\n", 100), "552 5.3.4 message size exceeds fixed maximum message size"},
	} {
		if got := c.mail("a@sender.net", []string{"b@example.org"}, tc.msg); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("got %q, want %q", got, tc.want)
		}
		// The session goes on, in step, with no transaction.
		c.send("RCPT TO:<b@example.org>")
		c.expect("503 5.5.1 Need MAIL before RCPT")
	}
	if m := boxFiles(t, ts.Root, "b"); len(m) != 0 {
		t.Errorf("delivered %q", m)
	}
	// Far over the limit, the server hangs up.
	c.open("a@sender.net", "b@example.org")
	go c.write(strings.Repeat("0123456789abcdef\r\n", 1<<16))
	c.expect("552 5.3.4")
	if !c.closed() {
		t.Errorf("still open after far too much data")
	}
}

// TestSpoolFailureKeepsStep: when the spool cannot be written (here
// <root>/tmp is a plain file, as for ENOSPC or EMFILE), the message gets
// 451 once its real end has been read; lines after the 1 MiB point are
// never run as commands.
func TestSpoolFailureKeepsStep(t *testing.T) {
	ts := newTestServer(t, "")
	if err := os.WriteFile(filepath.Join(ts.Root, "tmp"), nil, 0600); err != nil {
		t.Fatal(err)
	}
	c := ts.ehloed("192.0.2.7")
	c.open("a@sender.net", "b@example.org")
	line := strings.Repeat("x", 998) + "\r\n"
	go c.write(strings.Repeat(line, 1100) + "NOOP smuggled\r\nRCPT TO:<c@example.org>\r\n.\r\n")
	c.expect("451 4.3.0 local error spooling the message")
	c.send("RSET")
	c.expect("250 2.0.0 ok")
	if m := boxFiles(t, ts.Root, "b"); len(m) != 0 {
		t.Errorf("delivered %d messages", len(m))
	}
}

// TestSpoolNoMemory: with the memory budget of the spools spent, a
// message goes to a file from its first byte, and is delivered as well.
func TestSpoolNoMemory(t *testing.T) {
	ts := newTestServerWith(t, "", func(s *Server) { s.mem.max = 1 })
	c := ts.ehloed("192.0.2.7")
	body := strings.Repeat("line of the body\r\n", 5000)
	if got := c.mail("a@sender.net", []string{"b@example.org"}, "From: A <a@sender.net>\r\nTo: b@example.org\r\nSubject: s\r\n\r\n"+body); got[0] != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	m := boxFiles(t, ts.Root, "b")
	if len(m) != 1 {
		t.Fatalf("b has %d messages", len(m))
	}
	lines := strings.SplitN(m[0], "\n", 7)
	if lines[3] != "From: A <a@sender.net>" || lines[4] != "To: b@example.org" || lines[5] != "Subject: s" ||
		lines[6] != "\n"+strings.ReplaceAll(body, "\r\n", "\n") {
		t.Errorf("delivered %.300q", m[0])
	}
}

func TestPipelining(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.greeted("192.0.2.7")
	c.write("EHLO a.example\r\nMAIL FROM:<a@sender.net>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<v@elsewhere.com>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
	for _, want := range []string{"250 ENHANCEDSTATUSCODES", "250 2.0.0 sender", "250 2.0.0 receiver", "550 5.7.1", "250 2.0.0 receiver", "354 "} {
		c.expect(want)
	}
	c.write("Subject: p\r\n\r\nx\r\n.\r\nMAIL FROM:<a@sender.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	for _, want := range []string{"250 2.5.0 sent", "250 2.0.0 sender", "250 2.0.0 receiver", "354 "} {
		c.expect(want)
	}
	c.write(".\r\nQUIT\r\n")
	c.expect("250 2.5.0 sent")
	c.expect("221 ")
	if n := len(boxFiles(t, ts.Root, "b")); n != 2 {
		t.Errorf("b has %d messages, want 2", n)
	}
}

func TestTooManyRecipients(t *testing.T) {
	ts := newTestServer(t, "maxrcpts 100")
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("250 ")
	for i := range 100 { // one box, so that no more than maxNewBoxes are made
		c.send(fmt.Sprintf("RCPT TO:<u+%d@example.org>", i))
		c.expect("250 ")
	}
	for range 20 { // not errors: the client sends the rest later (RFC 5321 §4.5.3.1.10)
		c.send("RCPT TO:<late@example.org>")
		c.expect("452 4.5.3 Too many recipients")
	}
	c.send("DATA")
	c.expect("354 ")
	c.send(".")
	c.expect("250 2.5.0 sent")
	if n := len(boxFiles(t, ts.Root, "u")); n != 1 {
		t.Errorf("u has %d messages", n)
	}
}

// TestJunkCommands: an untrusted session may send maxJunk commands that
// move no mail (NOOP, RSET, VRFY, EXPN, HELP, HELO, EHLO, a RCPT answered
// 452); the next one is answered 421 and the session closed, so that a
// client cannot hold a slot for ever with a NOOP every few minutes
// (Postfix's smtpd_junk_command_limit). Trusted clients have no limit.
func TestJunkCommands(t *testing.T) {
	ts := newTestServer(t, "maxrcpts 100\nournets 10.0.0.0/8")
	junk := []string{"NOOP", "RSET", "VRFY bob", "EXPN list", "HELP", "HELO a.example", "EHLO a.example", "NOOP hello"}
	c := ts.greeted("192.0.2.7")
	for i := range maxJunk {
		c.send(junk[i%len(junk)])
		c.expect("2")
	}
	c.send("NOOP")
	c.expect("421 4.7.0 example.org too many commands that move no mail")
	if !c.closed() {
		t.Errorf("still open after %d junk commands", maxJunk+1)
	}
	// RCPT past maxrcpts is junk too; real mail is not.
	c = ts.ehloed("192.0.2.7") // EHLO: 1
	c.mail("a@sender.net", []string{"b@example.org"}, "")
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("250 ")
	for i := range 100 {
		c.send(fmt.Sprintf("RCPT TO:<b+%d@example.org>", i))
		c.expect("250 ")
	}
	for range maxJunk - 1 {
		c.send("RCPT TO:<late@example.org>")
		c.expect("452 4.5.3 Too many recipients")
	}
	c.send("RCPT TO:<late@example.org>")
	c.expect("421 4.7.0 ")
	if !c.closed() {
		t.Errorf("still open after too many refused RCPTs")
	}
	c = ts.greeted("10.0.0.1")
	for range 2 * maxJunk {
		c.send("NOOP")
		c.expect("250 ")
	}
}

func TestLongLines(t *testing.T) {
	ts := newTestServer(t, "maxerrors 3")
	c := ts.ehloed("192.0.2.7")
	c.send("NOOP " + strings.Repeat("x", 2000))
	c.expect("250 ")
	c.send("NOOP " + strings.Repeat("x", 3000))
	c.expect("500 5.5.2 line too long")
	c.send("NOOP")
	c.expect("250 ")
	c.write("NOOP " + strings.Repeat("y", 100000) + "\r\n")
	c.expect("500 5.5.2 line too long")
	if !c.closed() {
		t.Errorf("still open after 100 KB on one line")
	}
}

func TestMaxErrors(t *testing.T) {
	ts := newTestServer(t, "maxerrors 3")
	c := ts.ehloed("192.0.2.7")
	for range 2 {
		c.send("BOGUS")
		c.expect("500 5.5.1 illegal command or bad syntax")
	}
	c.send("BOGUS")
	c.expect("500 ")
	c.expect("554 5.5.0 too many errors.  transaction failed.")
	if !c.closed() {
		t.Errorf("still open after maxerrors")
	}
	if len(ts.slept()) != 0 {
		t.Errorf("slept %v without tarpit", ts.slept())
	}
}

func TestHTTPHangsUp(t *testing.T) {
	ts := newTestServer(t, "")
	for _, line := range []string{"GET / HTTP/1.1", "POST /form HTTP/1.0", "CONNECT example.org:443 HTTP/1.1"} {
		c := ts.greeted("192.0.2.7")
		c.send(line)
		c.send("Host: example.org")
		if !c.closed() {
			t.Errorf("%q: still open", line)
		}
	}
}

func TestTimeouts(t *testing.T) {
	ts := newTestServer(t, "cmdtimeout 200ms\ndatatimeout 300ms")
	c := ts.greeted("192.0.2.7")
	start := time.Now()
	c.expect("421 4.4.2 example.org timeout")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed out after %v", d)
	}
	if !c.closed() {
		t.Errorf("open after a timeout")
	}
	c = ts.ehloed("192.0.2.7")
	c.open("a@sender.net", "b@example.org")
	c.send("Subject: slow")
	c.expect("421 4.4.2 example.org timeout")
	if !c.closed() {
		t.Errorf("open after a DATA timeout")
	}
	if got := ts.Stats.Timeouts.Load(); got != 2 {
		t.Errorf("timeouts = %d, want 2", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := newTestServer(t, "maxperip 2\nmaxconns 4\nournets 10.0.0.0/8\nevil 198.51.100.0/24")
	a := ts.greeted("192.0.2.7")
	b := ts.greeted("192.0.2.7")
	c := ts.dial("192.0.2.7")
	c.expect("421 4.7.0 example.org too many connections from 192.0.2.7")
	if !c.closed() {
		t.Errorf("third connection from one address still open")
	}
	// Trusted clients are not limited per address, but by maxconns.
	ts.greeted("10.0.0.1")
	ts.greeted("10.0.0.1")
	d := ts.dial("10.0.0.1")
	d.expect("421 4.7.0 example.org too many connections")
	a.send("QUIT")
	a.expect("221 ")
	b.send("QUIT")
	b.expect("221 ")
	a.closed()
	b.closed()
	// evil (-k): dropped at once, not a word, not a log line.
	before := ts.logbuf.String()
	e := ts.dial("198.51.100.9")
	if !e.closed() {
		t.Errorf("evil connection still open")
	}
	if ts.logbuf.String() != before {
		t.Errorf("evil connection logged: %q", strings.TrimPrefix(ts.logbuf.String(), before))
	}
}

// TestConnectionLimitsIPv6: maxperip counts an IPv6 client by its /64, the
// least a site is given (RFC 6177): one site cannot take every slot by
// calling from as many addresses. IPv4 addresses count one by one.
func TestConnectionLimitsIPv6(t *testing.T) {
	ts := newTestServer(t, "maxperip 2")
	ts.greeted("2001:db8::1")
	ts.greeted("2001:db8::2:3")
	c := ts.dial("2001:db8::ffff:1")
	c.expect("421 4.7.0 example.org too many connections from 2001:db8::/64")
	ts.greeted("2001:db8:0:1::1")
	ts.greeted("192.0.2.1")
	ts.greeted("192.0.2.2")
	ts.greeted("192.0.2.2")
}

// TestConnectionLimitsFiles: whatever maxconns says, sessions stop short
// of the file descriptor limit (an idle one holds its socket; the rest
// of the program keeps some), with a 421 rather than
// failing accepts, Maildir files and spools for everyone.
func TestConnectionLimitsFiles(t *testing.T) {
	for _, tc := range []struct{ nofile, want int }{{0, 20000}, {8, 4}, {256, 128}, {4096, 3584}, {20000, 17500}, {1 << 20, 20000}} {
		if got := sessionCeiling(20000, tc.nofile); got != tc.want {
			t.Errorf("maxconns 20000, RLIMIT_NOFILE %d: at most %d sessions, want %d", tc.nofile, got, tc.want)
		}
	}
	ts := newTestServerWith(t, "ournets 10.0.0.0/8", func(s *Server) { s.nofile = func() int { return 8 } })
	for _, ip := range []string{"192.0.2.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		ts.greeted(ip)
	}
	c := ts.dial("10.0.0.4")
	c.expect("421 4.7.0 example.org too many connections")
	if !strings.Contains(ts.logbuf.String(), "file descriptor") {
		t.Errorf("the log does not say why:\n%s", ts.logbuf)
	}
}

// panicker is a seam that panics, as a bug in a plug-in would.
type panicker struct{}

func (panicker) Classify(ip netip.Addr, sender string) Verdict { panic("classifier bug") }

// TestPanic: a panic in a session ends that session (421, closed, counted,
// logged with its stack), not the server: the next sessions are served.
func TestPanic(t *testing.T) {
	ts := newTestServer(t, "")
	ts.Classifier = panicker{}
	c := ts.ehloed("192.0.2.7")
	c.begin("a@sender.net", "b@example.org")
	c.send("DATA")
	c.expect("421 4.3.0 example.org internal error")
	if !c.closed() {
		t.Errorf("still open after a panic")
	}
	if got := ts.Stats.Panics.Load(); got != 1 {
		t.Errorf("panics = %d, want 1", got)
	}
	if l := ts.logbuf.String(); !strings.Contains(l, "panic in session with 192.0.2.7: classifier bug") || !strings.Contains(l, "smtpd.panicker.Classify") {
		t.Errorf("log:\n%s", l)
	}
	c = ts.ehloed("10.0.0.1")
	c.send("NOOP")
	c.expect("250 ")
	c.send("QUIT")
	c.expect("221 ")
	c.closed()
	testlib.WaitFor(t, 10*time.Second, "no session left", func() bool { return ts.Stats.Sessions.Load() == 0 })
}

func TestTarpit(t *testing.T) {
	ts := newTestServer(t, "tarpit on\ntarpitdelay 15s 60s\nournets 10.0.0.0/8\nmaxerrors 20")
	c := ts.greeted("192.0.2.7")
	c.send("EHLO a.example")
	c.reply()
	c = ts.greeted("66.1.2.3")
	c.send("HELO a.example")
	c.reply()
	for range 5 {
		c.send("BOGUS")
		c.reply()
	}
	c.send("QUIT")
	c.expect("221 ")
	// HELO 15 s, HELO from a spammy class A 60 s, then 8, 16, 32, 60 s
	// before the 2nd to 5th BOGUS, and nothing before QUIT.
	want := []time.Duration{15 * time.Second, 60 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 60 * time.Second}
	if got := ts.slept(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("slept %v, want %v", got, want)
	}
	c = ts.greeted("10.0.0.1")
	c.send("HELO a.example")
	c.reply()
	c.send("BOGUS")
	c.reply()
	c.send("NOOP")
	c.reply()
	if got := ts.slept(); len(got) != len(want) {
		t.Errorf("a trusted client slept: %v", got)
	}
}

func TestAuth(t *testing.T) {
	ts := newTestServer(t, "maxerrors 50")
	h, err := bcrypt.GenerateFromPassword([]byte("hashed"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	ts.Secrets = func() *Secrets {
		return &Secrets{m: map[string]string{"glenda": "s3cret", "hashuser": hash}}
	}
	plain := func(u, p string) string { return b64("\x00" + u + "\x00" + p) }

	c := ts.ehloed("192.0.2.7")
	c.send("AUTH PLAIN " + plain("glenda", "s3cret"))
	c.expect("538 5.7.1 Encryption required for requested authentication mechanism")
	c.send("AUTH LOGIN")
	c.expect("538 5.7.1")
	c.send("AUTH X-UNKNOWN")
	c.expect("504 5.5.4 Unrecognised authentication type X-UNKNOWN")
	c.send("AUTH CRAM-MD5")
	ch := c.expect("334 ")[0][4:]
	c.send(b64("glenda " + cramDigest("s3cret", unb64(t, ch))))
	c.expect("235 2.0.0 Authentication successful")
	c.send("AUTH CRAM-MD5")
	c.expect("503 5.5.1 Bad sequence of commands")
	// authenticated: may relay (here into no queue, so 451, not 550)
	c.send("MAIL FROM:<glenda@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<v@elsewhere.com>")
	c.expect("451 4.3.0")

	ts.apply("plaintextauth on")
	for n, tc := range []struct {
		name   string
		dialog []string // client lines and expected reply prefixes, alternating
	}{
		{"plain initial", []string{"AUTH PLAIN " + plain("glenda", "s3cret"), "235 "}},
		{"plain authzid", []string{"AUTH PLAIN " + b64("glenda\x00glenda\x00s3cret"), "235 "}},
		{"plain other authzid", []string{"AUTH PLAIN " + b64("root\x00glenda\x00s3cret"), "535 5.7.1 Authentication failed"}},
		{"plain prompt", []string{"AUTH PLAIN", "334 ", plain("glenda", "s3cret"), "235 "}},
		{"plain wrong", []string{"AUTH PLAIN " + plain("glenda", "wrong"), "535 5.7.1 Authentication failed"}},
		{"plain unknown", []string{"AUTH PLAIN " + plain("nobody", "s3cret"), "535 "}},
		{"plain malformed", []string{"AUTH PLAIN " + b64("glenda s3cret"), "535 "}},
		{"plain bad base64", []string{"AUTH PLAIN !!!", "501 5.5.4 Cannot decode base64"}},
		{"plain cancel", []string{"AUTH PLAIN", "334 ", "*", "501 5.7.0 Authentication cancelled"}},
		{"plain empty", []string{"AUTH PLAIN =", "535 "}},
		{"login", []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", b64("glenda"), "334 UGFzc3dvcmQ6", b64("s3cret"), "235 "}},
		{"login initial", []string{"AUTH LOGIN " + b64("glenda"), "334 UGFzc3dvcmQ6", b64("s3cret"), "235 "}},
		{"login wrong", []string{"AUTH LOGIN", "334 ", b64("glenda"), "334 ", b64("nope"), "535 "}},
		{"login cancel", []string{"AUTH LOGIN", "334 ", "*", "501 5.7.0"}},
		{"bcrypt plain", []string{"AUTH PLAIN " + plain("hashuser", "hashed"), "235 "}},
		{"bcrypt wrong", []string{"AUTH PLAIN " + plain("hashuser", "hashe"), "535 "}},
		{"bcrypt cram", []string{"AUTH CRAM-MD5", "334 ", b64("hashuser " + strings.Repeat("0", 32)), "535 "}},
		{"cram wrong", []string{"AUTH CRAM-MD5", "334 ", b64("glenda " + strings.Repeat("0", 32)), "535 "}},
		{"cram malformed", []string{"AUTH CRAM-MD5", "334 ", b64("glenda"), "501 5.5.4 Poorly formed CRAM-MD5 response"}},
		{"cram initial", []string{"AUTH CRAM-MD5 abc", "501 5.5.4"}},
	} {
		c := ts.ehloed(fmt.Sprintf("192.0.2.%d", 100+n)) // one address would run into the AUTH failure limit
		for i := 0; i < len(tc.dialog); i += 2 {
			c.send(tc.dialog[i])
			if got := c.reply(); !strings.HasPrefix(got[0], tc.dialog[i+1]) {
				t.Errorf("%s: %q: got %q, want %q", tc.name, tc.dialog[i], got, tc.dialog[i+1])
			}
		}
		c.send("QUIT")
		c.expect("221 ")
	}
	// After three failures AUTH is refused for the session.
	c = ts.ehloed("192.0.2.7")
	for range 3 {
		c.send("AUTH PLAIN " + plain("glenda", "wrong"))
		c.expect("535 ")
	}
	c.send("AUTH PLAIN " + plain("glenda", "s3cret"))
	c.expect("503 5.7.0 too many authentication failures")
	if !strings.Contains(ts.logbuf.String(), `authentication failed: PLAIN "glenda" from client.example.net/192.0.2.7`) ||
		strings.Contains(ts.logbuf.String(), "s3cret") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// A clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestAuthLimit: failed AUTH is counted per client (an IPv4 address or an
// IPv6 /64) across sessions; after authfail.Max failures in authfail.Window
// AUTH is refused with 454 for authfail.Lockout, even with the right password,
// from that client only. Clients in ournets are not limited.
func TestAuthLimit(t *testing.T) {
	clk := &clock{now: time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)}
	ts := newTestServerWith(t, "plaintextauth on\nournets 10.0.0.0/8", func(s *Server) { s.Now = clk.Now })
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	plain := func(pw string) string { return "AUTH PLAIN " + b64("\x00glenda\x00"+pw) }
	fail := func(ip string, n int) {
		t.Helper()
		c := ts.ehloed(ip)
		for range n {
			c.send(plain("wrong"))
			c.expect("535 ")
		}
	}
	try := func(ip, want string) {
		t.Helper()
		c := ts.ehloed(ip)
		c.send(plain("s3cret"))
		if got := c.reply(); !strings.HasPrefix(got[0], want) {
			t.Errorf("%s: got %q, want %q", ip, got, want)
		}
	}
	fail("192.0.2.7", 3)
	fail("192.0.2.7", 3)
	fail("192.0.2.7", 3)
	try("192.0.2.7", "235 ") // 9 failures: not yet
	fail("192.0.2.7", 1)
	try("192.0.2.7", "454 4.7.0 too many authentication failures, try later")
	try("192.0.2.8", "235 ")
	// IPv6: a /64 is one client.
	for i := range authfail.Max {
		fail(fmt.Sprintf("2001:db8::%x", i+1), 1)
	}
	try("2001:db8::ffff", "454 4.7.0 ")
	try("2001:db8:0:1::1", "235 ")
	// Failures spread over more than the window do not add up.
	for range authfail.Max - 1 {
		fail("192.0.2.9", 1)
	}
	clk.add(authfail.Window + time.Second)
	fail("192.0.2.9", 1)
	try("192.0.2.9", "235 ")
	// The lockout ends.
	clk.add(authfail.Lockout - authfail.Window)
	try("192.0.2.7", "235 ")
	// ournets: never locked.
	for range 4 {
		fail("10.0.0.1", 3)
	}
	try("10.0.0.1", "235 ")
	if !strings.Contains(ts.logbuf.String(), "AUTH from 192.0.2.7 refused for 15m0s after 10 failures") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// TestAuthWithoutUsers: with nobody in lib/secrets (missing, or empty),
// AUTH is not offered, and refused: an offer nobody can take up only
// invites guessing.
func TestAuthWithoutUsers(t *testing.T) {
	var secrets atomic.Pointer[Secrets]
	ts := newTestServer(t, "plaintextauth on")
	ts.Secrets = secrets.Load
	for _, tc := range []struct {
		users map[string]string
		ehlo  string
		auth  string
	}{
		{nil, "250 ENHANCEDSTATUSCODES", "502 5.5.1 AUTH not available"},
		{map[string]string{}, "250 ENHANCEDSTATUSCODES", "502 5.5.1 AUTH not available"},
		{map[string]string{"glenda": "s3cret"}, "250 AUTH CRAM-MD5 PLAIN LOGIN", "235 "},
	} {
		if tc.users == nil {
			secrets.Store(nil)
		} else {
			secrets.Store(&Secrets{m: tc.users})
		}
		c := ts.greeted("192.0.2.7")
		c.send("EHLO client.example.net")
		if got := c.reply(); got[len(got)-1] != tc.ehlo {
			t.Errorf("%d users: EHLO %q, want last line %q", len(tc.users), got, tc.ehlo)
		}
		c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
		if got := c.reply(); !strings.HasPrefix(got[0], tc.auth) {
			t.Errorf("%d users: AUTH %q, want %q", len(tc.users), got, tc.auth)
		}
	}
}

func TestRequireAuth(t *testing.T) {
	ts := newTestServer(t, "requireauth on\nournets 10.0.0.0/8")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	c := ts.ehloed("10.0.0.1")
	c.send("MAIL FROM:<a@example.org>")
	c.expect("530 5.7.0 Authentication required")
	c.send("AUTH CRAM-MD5")
	ch := c.expect("334 ")[0][4:]
	c.send(b64("glenda " + cramDigest("s3cret", unb64(t, ch))))
	c.expect("235 ")
	c.send("MAIL FROM:<a@example.org>")
	c.expect("250 ")
}

func TestSenderCheck(t *testing.T) {
	ts := newTestServer(t, "verifysenderdom on\nournets 10.0.0.0/8\nmaxerrors 50")
	ts.Resolver = fakeResolver{"good.example": nil, "gone.example": errNoDomain, "broken.example": errors.New("SERVFAIL")}
	for _, tc := range []struct{ ip, from, want string }{
		{"192.0.2.7", "a@good.example", "354 "},
		{"192.0.2.7", "a@gone.example", "554 5.7.1 Sender domain must exist: gone.example!a"},
		{"192.0.2.7", "a@broken.example", "450 4.7.0 Sender domain broken.example could not be checked"},
		{"192.0.2.7", "a@[192.0.2.7]", "354 "},
		{"192.0.2.7", "", "354 "},
		{"10.0.0.1", "a@gone.example", "354 "}, // trusted: no check
	} {
		c := ts.ehloed(tc.ip)
		c.send("MAIL FROM:<" + tc.from + ">")
		c.expect("250 ")
		c.send("RCPT TO:<b@example.org>")
		c.expect("250 ")
		c.send("DATA")
		if got := c.reply(); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("<%s> from %s: got %q, want %q", tc.from, tc.ip, got, tc.want)
		}
	}
}

func TestBlockedVerdicts(t *testing.T) {
	ts := newTestServer(t, "saveblockedmsg on\nmaxerrors 50\nournets 10.0.0.0/8")
	ts.Classifier = fakeClassifier{
		"192.0.2.1":                  Block,
		"192.0.2.2":                  Delay,
		"192.0.2.3":                  Dial,
		"192.0.2.4 sender.net!spam":  Deny,
		"192.0.2.5 sender.net!fine":  Accept,
		"10.0.0.1 sender.net!banned": Deny,
	}
	msg := "Subject: buy now\r\n\r\ncheap\r\n"
	for _, tc := range []struct{ ip, from, want string }{
		{"192.0.2.1", "a@sender.net", "554 5.7.1 we believe this is spam."},
		{"192.0.2.2", "a@sender.net", "450 4.3.0 There will be a delay in delivery of this message."},
		{"192.0.2.5", "fine@sender.net", "250 2.5.0 sent"},
		{"10.0.0.1", "banned@sender.net", "250 2.5.0 sent"},
	} {
		c := ts.ehloed(tc.ip)
		if got := c.mail(tc.from, []string{"b@example.org"}, msg); got[0] != tc.want {
			t.Errorf("%s <%s>: got %q, want %q", tc.ip, tc.from, got, tc.want)
		}
	}
	dumps, _ := filepath.Glob(filepath.Join(ts.Root, "queue.dump", "Mar27", "*"))
	if len(dumps) != 2 {
		t.Errorf("dumps %q, want 2", dumps)
	}
	for _, d := range dumps {
		if b, _ := os.ReadFile(d); !strings.Contains(string(b), "\r\nSubject: buy now\r\n\r\ncheap\r\n") {
			t.Errorf("dump %s: %q", d, b)
		}
	}
	if n := len(boxFiles(t, ts.Root, "b")); n != 2 {
		t.Errorf("b got %d messages, want 2", n)
	}

	c := ts.ehloed("192.0.2.4")
	c.send("MAIL FROM:<spam@sender.net>")
	c.expect("250 ")
	c.send("RCPT TO:<b@example.org>")
	c.expect("250 ")
	c.send("DATA")
	if got := c.reply(); strings.Join(got, "|") != "554-5.7.1 We don't accept mail from sender.net!spam.|554 5.7.1 Contact postmaster@example.org for more information." {
		t.Errorf("deny: %q", got)
	}

	c = ts.ehloed("192.0.2.3")
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("250 ")
	c.send("RCPT TO:<b@example.org>")
	c.expect("250 ")
	c.send("DATA")
	c.expect("554 5.7.1 We don't accept mail from dial-up ports.")
	for _, cmd := range []string{"RSET", "NOOP", "MAIL FROM:<a@sender.net>"} {
		c.send(cmd)
		c.expect("554 5.7.1 We don't accept mail from dial-up ports.")
	}
	c.send("QUIT")
	c.expect("221 ")
	if !strings.Contains(ts.logbuf.String(), "Blocked sender.net!a (client.example.net/192.0.2.1) (example.org!b)") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// TestBlockedCountsOnce: a message refused by a Block or Delay verdict is
// one error of the session, not two.
func TestBlockedCountsOnce(t *testing.T) {
	ts := newTestServer(t, "maxerrors 2")
	ts.Classifier = fakeClassifier{"192.0.2.1": Block, "192.0.2.2": Delay}
	for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
		c := ts.ehloed(ip)
		if got := c.mail("a@sender.net", []string{"b@example.org"}, ""); got[0][0] != '4' && got[0][0] != '5' {
			t.Errorf("%s: got %q", ip, got)
		}
		c.send("NOOP")
		c.expect("250 ") // one error of two: the session goes on
	}
	if got := ts.Stats.Errors.Load(); got != 2 {
		t.Errorf("errors = %d, want 2", got)
	}
}

// TestNoSpamFiltering: a verdict is waived when every recipient has
// box/<user>/nospamfiltering (upas.md §2.9), not when one lacks it.
func TestNoSpamFiltering(t *testing.T) {
	ts := newTestServer(t, "maxerrors 50")
	ts.Classifier = fakeClassifier{"192.0.2.1": Block, "192.0.2.3": Dial, "192.0.2.4": Deny}
	for _, u := range []string{"b", "c"} {
		if err := os.MkdirAll(filepath.Join(ts.Root, "box", u), 0755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts.Root, "box", u, "nospamfiltering"), nil, 0644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ip    string
		rcpts []string
		want  string
	}{
		{"192.0.2.1", []string{"b@example.org"}, "250 2.5.0 sent"},
		{"192.0.2.3", []string{"b@example.org", "C@example.org"}, "250 2.5.0 sent"},
		{"192.0.2.4", []string{"b+tag@example.org"}, "250 2.5.0 sent"},
		{"192.0.2.1", []string{"b@example.org", "d@example.org"}, "554 5.7.1 we believe this is spam."},
	} {
		c := ts.ehloed(tc.ip)
		if got := c.mail("a@sender.net", tc.rcpts, ""); got[0] != tc.want {
			t.Errorf("%s to %q: %q, want %q", tc.ip, tc.rcpts, got, tc.want)
		}
	}
	if !strings.Contains(ts.logbuf.String(), "Not filtered sender.net!a (client.example.net/192.0.2.1) (example.org!b): every recipient has nospamfiltering") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

func TestGreylist(t *testing.T) {
	ts := newTestServer(t, "greylist on\nournets 10.0.0.0/8")
	g := &fakeGrey{}
	ts.Greylister = g
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("250 ")
	c.send("RCPT TO:<b@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<c@example.org>")
	c.expect("250 ")
	c.send("DATA")
	if got := c.reply(); got[0] != "451 4.7.1 please try again soon from the same IP." {
		t.Errorf("got %q", got)
	}
	if !c.closed() {
		t.Errorf("still open after the greylist")
	}
	g.pass = true
	c = ts.ehloed("192.0.2.7")
	if got := c.mail("a@sender.net", []string{"b@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("passed greylist: %q", got)
	}
	g.pass = false
	c = ts.ehloed("10.0.0.1") // trusted: never greylisted
	if got := c.mail("a@sender.net", []string{"b@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("trusted: %q", got)
	}
	want := []string{"127.0.0.1 192.0.2.7 a@sender.net b@example.org,c@example.org", "127.0.0.1 192.0.2.7 a@sender.net b@example.org"}
	if fmt.Sprint(g.calls) != fmt.Sprint(want) {
		t.Errorf("calls %q, want %q", g.calls, want)
	}
	if ts.Stats.Greylisted.Load() != 1 {
		t.Errorf("greylisted = %d", ts.Stats.Greylisted.Load())
	}
}

func TestQueueFailure(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	q := &fakeQueue{err: errors.New("disk full")}
	ts.Queue = q
	c := ts.ehloed("10.0.0.1")
	if got := c.mail("a@example.org", []string{"v@elsewhere.com"}, ""); got[0] != "451 4.3.0 local error delivering the message; try again later" {
		t.Errorf("got %q", got)
	}
	q.err = smtp.Replyf(452, "4.3.1", "queue full")
	if got := c.mail("a@example.org", []string{"v@elsewhere.com"}, ""); got[0] != "452 4.3.1 queue full" {
		t.Errorf("got %q", got)
	}
}

// slowQueue takes its time, then refuses with a long reply, as a queue on
// a struggling disk might.
type slowQueue struct{ d time.Duration }

func (q slowQueue) PutDelivered(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	return "", nil
}

func (q slowQueue) PutMail(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	time.Sleep(q.d) // the delivery takes longer than cmdtimeout: what is under test
	r := &smtp.Reply{Code: 452, Enh: "4.3.1"}
	for i := range 10 {
		r.Lines = append(r.Lines, fmt.Sprintf("line %d of a long refusal %s", i, strings.Repeat("x", 80)))
	}
	return "", r
}

// TestLongReplyAfterSlowDelivery: a reply longer than the write buffer,
// sent after a delivery that took longer than cmdtimeout, reaches the
// client: each write has a deadline of its own, not the one set at the
// last flush, long expired.
func TestLongReplyAfterSlowDelivery(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8\ncmdtimeout 300ms")
	ts.Queue = slowQueue{600 * time.Millisecond}
	c := ts.ehloed("10.0.0.1")
	got := c.mail("a@example.org", []string{"v@elsewhere.com"}, "Subject: s\r\n\r\n")
	if len(got) != 10 || !strings.HasPrefix(got[9], "452 4.3.1 line 9 ") {
		t.Errorf("got %q", got)
	}
}

func TestMailer(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mailer")
	os.WriteFile(script, []byte(`#!/bin/sh
out=`+dir+`/out
echo "$@" > $out.args
cat > $out.msg
case "$3" in
*refuse) echo "mail refused: no such user $3" >&2; exit 1;;
*fail) echo "first problem" >&2; echo "second problem" >&2; exit 3;;
*chatty) yes stdout | head -c 1000000; exit 0;;
esac
exit 0
`), 0755)
	ts := newTestServer(t, "mailer "+script)
	for _, tc := range []struct {
		rcpt string
		want []string
	}{
		{"bob@example.org", []string{"250 2.5.0 sent"}},
		{"refuse@example.org", []string{"554 5.7.1 mail refused: no such user example.org!refuse"}},
		{"fail@example.org", []string{"450-4.0.0 first problem", "450-4.0.0 second problem", "450 4.0.0 mail process terminated abnormally"}},
		{"chatty@example.org", []string{"250 2.5.0 sent"}},
	} {
		c := ts.ehloed("192.0.2.7")
		got := c.mail("alice@sender.net", []string{tc.rcpt}, "Subject: m\r\n\r\n..dot\r\n")
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	args, _ := os.ReadFile(filepath.Join(dir, "out.args"))
	msg, _ := os.ReadFile(filepath.Join(dir, "out.msg"))
	if string(args) != "-r -- example.org!chatty\n" {
		t.Errorf("args %q", args)
	}
	if !strings.HasPrefix(string(msg), "From sender.net!alice Wed Mar 27 23:47:45 +0000 2024 remote from \nReceived: from client.example.net ([192.0.2.7])") ||
		!strings.HasSuffix(string(msg), "\nSubject: m\n\n.dot\n") || strings.Contains(string(msg), "\r") {
		t.Errorf("mailer got %q", msg)
	}
	if m := boxFiles(t, ts.Root, "bob"); len(m) != 0 {
		t.Errorf("with a mailer, the Maildir got %q", m)
	}
}

func TestTranscript(t *testing.T) {
	ts := newTestServer(t, "debug on\nplaintextauth on")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	c := ts.ehloed("192.0.2.7")
	c.send("AUTH LOGIN " + b64("glenda"))
	c.expect("334 ")
	c.send(b64("s3cret"))
	c.expect("235 ")
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("503 ")
	c.mail("a@sender.net", []string{"b@example.org"}, "Subject: secret plans\r\n\r\nthe body text\r\n")
	c.send("QUIT")
	c.expect("221 ")
	c.closed()
	files, _ := filepath.Glob(filepath.Join(ts.Root, "log", "smtpd.db", "20240327-234745.*"))
	if len(files) != 1 {
		t.Fatalf("transcripts %q", files)
	}
	b, _ := os.ReadFile(files[0])
	tr := string(b)
	for _, want := range []string{"<- EHLO client.example.net\n", "-> 250-example.org you are client.example.net\n",
		"<- AUTH LOGIN (protected)\n", "<- (protected)\n", "<- AUTH PLAIN (protected)\n", "<- Subject: secret plans\n",
		"(bytes of body elided)", "-> 250 2.5.0 sent\n", "-> 221 2.0.0 Successful termination\n"} {
		if !strings.Contains(tr, strings.ReplaceAll(want, "(bytes", "(15 bytes")) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
	for _, secret := range []string{"s3cret", b64("s3cret"), b64("glenda"), "the body text"} {
		if strings.Contains(tr, secret) {
			t.Errorf("transcript shows %q:\n%s", secret, tr)
		}
	}
}

// TestTranscriptEscapes: what a client sends reaches the transcript, which
// people read on a terminal, with its control characters escaped: ESC
// sequences, C1 controls (U+009B is CSI) and bytes that are not UTF-8.
func TestTranscriptEscapes(t *testing.T) {
	ts := newTestServer(t, "debug on")
	c := ts.greeted("192.0.2.7")
	c.send("EHLO evil\x1b[2J\u009b31m.example")
	c.reply()
	c.send("NOOP \x1b]0;owned\x07 \x9b\u0085")
	c.reply()
	c.send("EHLO client.example.net")
	c.expect("250 ")
	c.mail("a@sender.net", []string{"b@example.org"}, "Subject: \x1b[5m\u009b2J blink\r\n\r\nbody\r\n")
	c.send("QUIT")
	c.expect("221 ")
	c.closed()
	files, _ := filepath.Glob(filepath.Join(ts.Root, "log", "smtpd.db", "*"))
	if len(files) != 1 {
		t.Fatalf("transcripts %q", files)
	}
	b, _ := os.ReadFile(files[0])
	tr := string(b)
	for _, want := range []string{`<- EHLO evil\x1b[2J\u009b31m.example` + "\n", `<- NOOP \x1b]0;owned\x07 \x9b\u0085` + "\n",
		`<- Subject: \x1b[5m\u009b2J blink` + "\n"} {
		if !strings.Contains(tr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
	if i := strings.IndexFunc(tr, func(r rune) bool {
		return r < ' ' && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError
	}); i >= 0 {
		t.Errorf("transcript has a control at byte %d: %q", i, tr)
	}
}

func TestShutdown(t *testing.T) {
	ts := newTestServer(t, "")
	idle := ts.ehloed("192.0.2.7")
	busy := ts.ehloed("192.0.2.8")
	busy.send("MAIL FROM:<a@sender.net>")
	busy.expect("250 ")
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2 example.org shutting down")
	// The session in a transaction may finish it.
	busy.send("RCPT TO:<b@example.org>")
	busy.expect("250 ")
	busy.send("DATA")
	busy.expect("354 ")
	busy.send(".")
	busy.expect("250 2.5.0 sent")
	busy.expect("421 4.3.2 example.org shutting down")
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := len(boxFiles(t, ts.Root, "b")); n != 1 {
		t.Errorf("b has %d messages", n)
	}
}

// lateListener is a listener whose Accept returns a connection only when
// the test says, even after Close: an accept that raced Shutdown.
type lateListener struct {
	waiting chan struct{} // the first Accept is waiting
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
	calls   atomic.Int32
}

// Accept returns the connection the test sends, the first time; then it
// fails as a closed listener does.
func (l *lateListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) > 1 {
		<-l.closed
		return nil, net.ErrClosed
	}
	l.waiting <- struct{}{}
	return <-l.conns, nil
}

func (l *lateListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *lateListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// TestShutdownLateAccept: a connection accepted as Shutdown runs (or
// after it returned) is closed without a session: Serve starts none once
// Shutdown has begun, so none outlives it (and the WaitGroup that Shutdown
// waits on is never added to while it waits).
func TestShutdownLateAccept(t *testing.T) {
	ts := newTestServer(t, "")
	l := &lateListener{waiting: make(chan struct{}, 1), conns: make(chan net.Conn), closed: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- ts.Serve(l) }()
	<-l.waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	<-l.closed
	client, server := net.Pipe()
	l.conns <- server
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(client); len(b) != 0 || err != nil {
		t.Errorf("a connection accepted after Shutdown got %q, %v; want nothing, closed", b, err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Errorf("Serve: %v, want ErrServerClosed", err)
	}
}

func TestShutdownGrace(t *testing.T) {
	ts := newTestServer(t, "")
	busy := ts.ehloed("192.0.2.8")
	busy.send("MAIL FROM:<a@sender.net>")
	busy.expect("250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown: %v", err)
	}
	if !busy.closed() {
		t.Errorf("still open after the grace period")
	}
}

func TestHeloCheck(t *testing.T) {
	ts := newTestServer(t, "helocheck on\nournets 10.0.0.0/8")
	ts.Resolver = fakeResolver{"mx.sender.net": nil}
	for _, tc := range []struct{ ip, name, want string }{
		{"192.0.2.7", "mx.sender.net", "250 "},
		{"192.0.2.7", "[192.0.2.7]", "250 "},
		{"192.0.2.7", "[192.0.2.8]", "554 5.7.0 Liar!"},
		{"192.0.2.7", "example.org", "554 5.7.0 Liar!"},
		{"192.0.2.7", "MX.EXAMPLE.ORG", "554 5.7.0 Liar!"},
		{"192.0.2.7", "localhost", "554 5.7.0 Liar!"},
		{"192.0.2.7", "box.localdomain", "554 5.7.0 Liar!"},
		{"192.0.2.7", "mail.example.com", "554 5.7.0 Liar!"},
		{"192.0.2.7", "1.2.3.4", "554 5.7.0 Liar!"},
		{"192.0.2.7", "unknown.sender.net", "554 5.7.0 Liar!"},
		{"10.0.0.1", "localhost", "250 "},
	} {
		c := ts.greeted(tc.ip)
		c.send("HELO " + tc.name)
		if got := c.reply(); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("HELO %s from %s: got %q, want %q", tc.name, tc.ip, got, tc.want)
		}
		if strings.HasPrefix(tc.want, "554") && !c.closed() {
			t.Errorf("HELO %s: still open", tc.name)
		}
	}
	if !strings.Contains(ts.logbuf.String(), "Hung up on 192.0.2.7; claimed to be localhost (no dot)") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// TestAbandoned: a session that ends inside a transaction, its message
// not answered (the client gone in the middle of DATA or of a BDAT chunk,
// between chunks, or after MAIL), is counted; one that ends after its
// transaction, or quits, is not. The
// smtpd program exits 1 by it.
func TestAbandoned(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	ended := func(n int64) {
		t.Helper()
		testlib.WaitFor(t, 10*time.Second, "no session left", func() bool { return ts.Stats.Sessions.Load() == 0 })
		if got := ts.Stats.Abandoned.Load(); got != n {
			t.Errorf("abandoned %d, want %d", got, n)
		}
	}
	c := ts.ehloed("10.0.0.1")
	c.mail("a@example.org", []string{"b@example.org"}, "Subject: x\r\n\r\nx\r\n")
	c.c.Close()
	ended(0)
	c = ts.ehloed("10.0.0.1")
	c.begin("a@example.org", "b@example.org")
	c.send("QUIT")
	c.expect("221 ")
	ended(0)
	c = ts.ehloed("10.0.0.1")
	c.open("a@example.org", "b@example.org")
	c.write("Subject: x\n\nended by LF, as a here-document has it\n.\n")
	c.c.Close()
	ended(1)
	c = ts.ehloed("10.0.0.1")
	c.begin("a@example.org", "b@example.org")
	c.c.Close()
	ended(2)
	// BDAT (RFC 3030): a chunk cut short, and a session that ends between
	// chunks before LAST, leave the message unanswered; BDAT LAST answered
	// does not.
	c = ts.ehloed("10.0.0.1")
	c.begin("a@example.org", "b@example.org")
	c.write("BDAT 100 LAST\r\nSubject: x\r\n\r\ncut")
	c.c.Close()
	ended(3)
	c = ts.ehloed("10.0.0.1")
	c.begin("a@example.org", "b@example.org")
	c.write("BDAT 12\r\nSubject: x\r\n")
	c.expect("250 2.0.0 12 octets received")
	c.c.Close()
	ended(4)
	c = ts.ehloed("10.0.0.1")
	c.begin("a@example.org", "b@example.org")
	c.write("BDAT 17 LAST\r\nSubject: x\r\n\r\nx\r\n")
	c.expect("250 ")
	c.c.Close()
	ended(4)
}
