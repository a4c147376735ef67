package smtpd

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"smtpfs/smtpd/conf"
	"smtpfs/test/testlib"
)

// newSubmitServer starts a test server whose dial goes to a listener of
// role r, with a certificate and the AUTH user glenda (password s3cret).
func newSubmitServer(t *testing.T, r conf.Role, text string) (*testServer, *Listener) {
	t.Helper()
	return newSubmitServerWith(t, r, text, nil)
}

// newSubmitServerWith is newSubmitServer, with set called on the Server
// before it serves.
func newSubmitServerWith(t *testing.T, r conf.Role, text string, set func(*Server)) (*testServer, *Listener) {
	t.Helper()
	cert := testlib.NewCert(t, t.TempDir())
	ts := newTestServerWith(t, "tlscert "+cert.CertFile+" "+cert.KeyFile+"\nourdomains example.com\n"+text, set)
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pol := NewListener("587", r)
	ts.addr = l.Addr().String()
	go ts.ServeListener(&fakeListener{Listener: l, ts: ts}, pol)
	return ts, pol
}

// submitted dials a submission listener, starts TLS and authenticates.
func (ts *testServer) submitted(t *testing.T) *client {
	t.Helper()
	c := ts.ehloed("192.0.2.7")
	c.starttls(t)
	c.send("EHLO client.example.net")
	c.reply()
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("235 ")
	return c
}

// TestSubmissionNeedsAuth: on a submission listener, AUTH is neither
// offered nor accepted before STARTTLS (not even CRAM-MD5, nor PLAIN
// with plaintextauth on), and MAIL needs AUTH, even from ournets.
func TestSubmissionNeedsAuth(t *testing.T) {
	ts, pol := newSubmitServer(t, conf.RoleSubmission, "plaintextauth on\nournets 192.0.2.0/24\ntarpit on")
	c := ts.greeted("192.0.2.7")
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); strings.Contains(got, "AUTH") || !strings.Contains(got, "STARTTLS") {
		t.Errorf("EHLO before TLS: %q", got)
	}
	c.check("AUTH PLAIN "+b64("\x00glenda\x00s3cret"), "530 5.7.0 Must issue a STARTTLS command first")
	c.check("AUTH CRAM-MD5", "530 5.7.0 Must issue a STARTTLS command first")
	c.check("MAIL FROM:<glenda@example.org>", "530 5.7.0 Authentication required")
	c.check("RCPT TO:<bob@example.org>", "503 ")
	c.starttls(t)
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); !strings.HasSuffix(got, "250 AUTH CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO after TLS: %q", got)
	}
	c.check("MAIL FROM:<glenda@example.org>", "530 5.7.0 Authentication required")
	c.check("AUTH PLAIN "+b64("\x00glenda\x00wrong"), "535 ")
	if pol.Stats.NoAuth.Load() != 2 || pol.Stats.AuthFailed.Load() != 1 || pol.Stats.Connections.Load() != 1 {
		t.Errorf("listener stats %v", pol.Stats.Values())
	}
	if len(boxFiles(t, ts.Root, "bob")) != 0 {
		t.Errorf("mail delivered without AUTH")
	}
}

// TestSubmissionSendAs: the envelope sender and the From: and Sender:
// addresses must be the user's; the default is user@each of our domains.
func TestSubmissionSendAs(t *testing.T) {
	ts, pol := newSubmitServer(t, conf.RoleSubmission, "")
	c := ts.submitted(t)
	for _, tc := range []struct{ from, want string }{
		{"boss@example.org", "550 5.7.1 glenda may not send as <boss@example.org>"},
		{"glenda@elsewhere.net", "550 5.7.1 "},
		{"Glenda@example.org", "550 5.7.1 "},
		{"", "550 5.7.1 "},
		{"glenda", "550 5.7.1 "}, // the HELO name's domain is not ours
		{"glenda@example.com", "250 "},
	} {
		c.check("MAIL FROM:<"+tc.from+">", tc.want)
		c.check("RSET", "250 ")
	}
	for _, tc := range []struct{ header, want string }{
		{"From: Boss <boss@example.org>\r\n", "550 5.7.1 glenda may not send as <boss@example.org> (From: or Sender:)"},
		{"From: glenda@example.org, boss@example.org\r\n", "550 5.7.1 "},
		{"From: glenda@example.org\r\nSender: eve@example.net\r\n", "550 5.7.1 "},
		{"From: <<<\r\n", "550 5.6.0 "},
		{"From: Glenda <glenda@EXAMPLE.org>\r\n", "250 2.5.0 sent"},
		{"Subject: no From: the envelope's goes in\r\n", "250 2.5.0 sent"},
	} {
		if got := c.mail("glenda@example.org", []string{"bob@example.org"}, tc.header+"\r\nbody\r\n"); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("%q: %q, want %q", tc.header, got, tc.want)
		}
	}
	if n := len(boxFiles(t, ts.Root, "bob")); n != 2 {
		t.Errorf("bob has %d messages, want 2", n)
	}
	if n := pol.Stats.NotYours.Load(); n != 8 {
		t.Errorf("notyours %d, want 8", n)
	}
	if n := pol.Stats.Accepted.Load(); n != 2 || ts.Stats.Accepted.Load() != 2 {
		t.Errorf("accepted %d", n)
	}

	ts.apply("sendas glenda boss@example.org @lists.example.net")
	c = ts.submitted(t)
	c.check("MAIL FROM:<boss@example.org>", "250 ")
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<anyone@lists.example.net>", "250 ")
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<glenda@example.org>", "550 5.7.1 ") // sendas replaces the default
}

// TestSubmissionCompletes: a submitted message gets Date: and
// Message-ID: when it has none, and a Received: line without the
// client's address unless submitterip is on; port 25's keeps it.
func TestSubmissionCompletes(t *testing.T) {
	ts, _ := newSubmitServer(t, conf.RoleSubmission, "")
	c := ts.submitted(t)
	c.mail("glenda@example.org", []string{"bob@example.org"}, "From: glenda@example.org\r\nSubject: s\r\n\r\nhi\r\n")
	c.mail("glenda@example.org", []string{"bob@example.org"}, "From: glenda@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n")
	ts.apply("submitterip on")
	c = ts.submitted(t)
	c.mail("glenda@example.org", []string{"bob@example.org"}, "From: glenda@example.org\r\n\r\nhi\r\n")
	m := boxFiles(t, ts.Root, "bob")
	if len(m) != 3 {
		t.Fatalf("bob has %d messages", len(m))
	}
	var added, kept, ip int
	for _, msg := range m {
		recv := strings.Split(msg, "\n")[2]
		if !strings.HasPrefix(recv, "Received: from client.example.net by mx.example.org with ESMTPSA id ") &&
			!strings.HasPrefix(recv, "Received: from client.example.net ([192.0.2.7]) by mx.example.org with ESMTPSA id ") {
			t.Errorf("Received: %q", recv)
		}
		if strings.Contains(recv, "192.0.2.7") {
			ip++
		}
		switch {
		case strings.Contains(msg, "\nDate: Wed, 27 Mar 2024 23:47:45 +0000\n") && strings.Contains(msg, "\nMessage-ID: <"):
			added++
		case strings.Count(msg, "\nDate: ") == 1 && strings.Count(msg, "\nMessage-ID: ") == 1:
			kept++
		}
	}
	if added != 2 || kept != 1 || ip != 1 {
		t.Errorf("added %d kept %d with the client's address %d; messages %q", added, kept, ip, m)
	}

	// Port 25 adds neither, and names the client.
	ts2 := newTestServer(t, "")
	ts2.ehloed("192.0.2.7").mail("a@sender.net", []string{"bob@example.org"}, "From: a@sender.net\r\n\r\nhi\r\n")
	m = boxFiles(t, ts2.Root, "bob")
	if len(m) != 1 || strings.Contains(m[0], "Message-ID") || strings.Contains(m[0], "\nDate:") || !strings.Contains(m[0], "([192.0.2.7])") {
		t.Errorf("port 25 message %q", m)
	}
}

// TestSubmissionNoTarpit: the HELO tarpit is port 25's; an authenticated
// submission client that errs is not slowed either.
func TestSubmissionNoTarpit(t *testing.T) {
	ts, _ := newSubmitServer(t, conf.RoleSubmission, "tarpit on\ngreylist on")
	c := ts.submitted(t)
	c.check("MAIL FROM:<boss@example.org>", "550 ")
	c.check("MAIL FROM:<glenda@example.org>", "250 ")
	c.check("RCPT TO:<someone@elsewhere.net>", "451 ") // may relay, but this server has no queue
	if s := ts.slept(); len(s) != 0 {
		t.Errorf("slept %v", s)
	}
}

// TestSubmissions: a submissions listener speaks TLS from the first byte
// (RFC 8314 §3.3); STARTTLS is not offered; AUTH is.
func TestSubmissions(t *testing.T) {
	ts, pol := newSubmitServer(t, conf.RoleSubmissions, "")
	raw := ts.dial("192.0.2.7")
	tc := tls.Client(raw.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, c: tc, r: bufio.NewReader(tc)}
	c.expect("220 ")
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); strings.Contains(got, "STARTTLS") || !strings.HasSuffix(got, "250 AUTH CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO: %q", got)
	}
	c.check("MAIL FROM:<glenda@example.org>", "530 5.7.0 Authentication required")
	c.check("AUTH PLAIN "+b64("\x00glenda\x00s3cret"), "235 ")
	if got := c.mail("glenda@example.org", []string{"bob@example.org"}, "Subject: s\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Errorf("got %q", got)
	}
	if ts.Stats.TLS.Load() != 1 || pol.Stats.AuthOK.Load() != 1 || pol.Stats.Accepted.Load() != 1 {
		t.Errorf("tls %d, listener %v", ts.Stats.TLS.Load(), pol.Stats.Values())
	}

	// Plain text on it gets no greeting: the handshake fails.
	p := ts.dial("192.0.2.8")
	p.c.SetDeadline(time.Now().Add(10 * time.Second))
	p.send("EHLO client.example.net")
	if !p.closed() {
		t.Errorf("plain text session not closed")
	}
}

// TestSubmissionsNoCert: without tlscert a submissions listener closes
// each connection unanswered, and says why in the log.
func TestSubmissionsNoCert(t *testing.T) {
	ts, _ := newSubmitServer(t, conf.RoleSubmissions, "")
	ts.apply("clear tlscert")
	c := ts.dial("192.0.2.7")
	if !c.closed() {
		t.Fatal("not closed")
	}
	testlib.WaitFor(t, 10*time.Second, "the log line", func() bool {
		return strings.Contains(ts.logbuf.String(), "submissions listener without tlscert")
	})
}

// TestListenerRoleChanges: a listener's new role applies to the sessions
// that start after it.
func TestListenerRoleChanges(t *testing.T) {
	ts, pol := newSubmitServer(t, conf.RoleSMTP, "")
	c := ts.ehloed("192.0.2.7")
	c.check("MAIL FROM:<a@sender.net>", "250 ")
	pol.SetRole(conf.RoleSubmission)
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<a@sender.net>", "250 ") // this session began as smtp
	c = ts.ehloed("192.0.2.7")
	c.check("MAIL FROM:<a@sender.net>", "530 ")
}
