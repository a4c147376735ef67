package smtpd

import (
	"strings"
	"testing"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// The DSN parameters' syntax and bounds (RFC 3461 §4): what is taken,
// as it is kept, and what is refused, with its reason.
func TestParseDSNParams(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"NEVER", "NEVER", ""},
		{"success,Failure,DELAY", "SUCCESS,FAILURE,DELAY", ""},
		{"NEVER,SUCCESS", "", "NEVER stands alone"},
		{"SUCCESS,SUCCESS", "", "nothing twice"},
		{"", "", "bad NOTIFY"},
		{"SOMETIMES", "", "bad NOTIFY"},
	} {
		got, r := parseNotify(c.in)
		if got != c.want || (r == nil) != (c.err == "") || r != nil && !strings.Contains(r.Error(), c.err) {
			t.Errorf("NOTIFY=%s: %q, %v; want %q, %q", c.in, got, r, c.want, c.err)
		}
	}
	for _, c := range []struct{ in, want, err string }{
		{"rfc822;bob@example.org", "rfc822;bob@example.org", ""},
		{"rfc822;a+2Bb+3D@example.org", "rfc822;a+b=@example.org", ""},
		{"utf-8;b+C3+A9@example.org", "utf-8;bé@example.org", ""},
		{"rfc822;a+0Ab", "", "control character"},
		{"rfc822;a+ff", "", "upper-case hex"},
		{"rfc822;+FF", "", "not UTF-8"},
		{"bob@example.org", "", "addr-type;address"},
		{";bob@example.org", "", "addr-type;address"},
		{"rfc822;", "", "addr-type;address"},
		{"rf(c;bob", "", "bad addr-type"},
		{"rfc822;" + strings.Repeat("a", 494), "", "longer than 500"},
	} {
		got, r := parseORcpt(c.in)
		if got != c.want || (r == nil) != (c.err == "") || r != nil && !strings.Contains(r.Error(), c.err) {
			t.Errorf("ORCPT=%s: %q, %v; want %q, %q", c.in, got, r, c.want, c.err)
		}
	}
	for _, c := range []struct{ in, want, err string }{
		{"QQ314159", "QQ314159", ""},
		{"a+20b", "a b", ""},
		{strings.Repeat("x", 100), strings.Repeat("x", 100), ""},
		{strings.Repeat("x", 101), "", "longer than 100"},
		{"a+0Db", "", "printable ASCII"},
		{"a=b", "", "bad ENVID"},
	} {
		got, r := decodeEnvID(c.in)
		if got != c.want || (r == nil) != (c.err == "") || r != nil && !strings.Contains(r.Error(), c.err) {
			t.Errorf("ENVID=%s: %q, %v; want %q, %q", c.in, got, r, c.want, c.err)
		}
	}
	if _, r := parseRcptParams([]param{{"NOTIFY", "NEVER"}, {"NOTIFY", "NEVER"}}); r == nil || r.Code != 501 {
		t.Errorf("NOTIFY twice: %v", r)
	}
}

// The server offers DSN, takes its parameters at MAIL and RCPT (501 with
// the reason for a bad one), and queues them with the remote recipients.
func TestDSNToQueue(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.greeted("10.1.2.3")
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); !strings.Contains(got, "|250-DSN|") || strings.Contains(got, "REQUIRETLS") {
		t.Errorf("EHLO in plaintext: %q", got)
	}
	c.check("MAIL FROM:<alice@example.org> RET=SOME", "501 5.5.4 bad RET=SOME")
	c.check("MAIL FROM:<alice@example.org> ENVID=a=b", "501 5.5.4 bad ENVID")
	c.check("MAIL FROM:<alice@example.org> RET=HDRS RET=HDRS", "501 5.5.4")
	c.check("MAIL FROM:<alice@example.org> REQUIRETLS", "530 5.7.10 REQUIRETLS needs a TLS session")
	c.check("MAIL FROM:<alice@example.org> ret=hdrs ENVID=QQ+2B1", "250 ")
	c.check("RCPT TO:<v@elsewhere.com> NOTIFY=NEVER,DELAY", "501 5.5.4 bad NOTIFY")
	c.check("RCPT TO:<v@elsewhere.com> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 NOTIFY given twice")
	c.check("RCPT TO:<v@elsewhere.com> notify=success,failure ORCPT=rfc822;V+40elsewhere.com", "250 ")
	c.check("RCPT TO:<w@elsewhere.com>", "250 ")
	c.send("DATA")
	c.expect("354")
	c.write("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.expect("250 2.5.0 sent")
	msgs := q.all()
	if len(msgs) != 1 {
		t.Fatalf("queued %d messages", len(msgs))
	}
	want := smtp.Params{Ret: "HDRS", EnvID: "QQ+1", Rcpt: []smtp.RcptParams{
		{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;V@elsewhere.com"}, {}}}
	if got := msgs[0].params; got.Ret != want.Ret || got.EnvID != want.EnvID || got.RequireTLS ||
		len(got.Rcpt) != 2 || got.Rcpt[0] != want.Rcpt[0] || got.Rcpt[1] != want.Rcpt[1] {
		t.Errorf("queued params %+v, want %+v", got, want)
	}
	// The next transaction starts without them.
	if got := c.mail("alice@example.org", []string{"v@elsewhere.com"}, "Subject: y\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	if p := q.all()[1].params; p.Ret != "" || p.EnvID != "" || len(p.Rcpt) != 1 || p.Rcpt[0] != (smtp.RcptParams{}) {
		t.Errorf("second message's params %+v", p)
	}
}

// A local recipient delivered at DATA with NOTIFY=SUCCESS gets its
// success DSN queued (PutDelivered) for a trusted client, not for
// another.
func TestDSNLocalSuccess(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	q := &fakeQueue{}
	ts.Queue = q
	for _, ip := range []string{"10.1.2.3", "192.0.2.7"} {
		c := ts.ehloed(ip)
		c.check("MAIL FROM:<alice@sender.net> ENVID=e1", "250 ")
		c.check("RCPT TO:<bob@example.org> NOTIFY=SUCCESS", "250 ")
		c.check("RCPT TO:<carol@example.org>", "250 ")
		c.send("DATA")
		c.expect("354")
		c.write("Subject: x\r\n\r\nhi\r\n.\r\n")
		c.expect("250 2.5.0 sent")
	}
	if n := len(boxFiles(t, ts.Root, "bob")); n != 2 {
		t.Errorf("bob has %d messages", n)
	}
	msgs := q.all()
	if len(msgs) != 1 || !msgs[0].delivered || msgs[0].from != "alice@sender.net" || msgs[0].params.EnvID != "e1" ||
		strings.Join(msgs[0].rcpts, ",") != "bob@example.org,carol@example.org" || msgs[0].params.Rcpt[0].Notify != "SUCCESS" ||
		!strings.HasPrefix(msgs[0].data, "Received: from ") {
		t.Errorf("queue got %+v; want one success DSN request, for the trusted client", msgs)
	}
}

// REQUIRETLS is offered and taken over TLS only, and recorded for the
// queue; a local recipient is delivered as ever.
func TestRequireTLS(t *testing.T) {
	cert := testlib.NewCert(t, t.TempDir())
	ts := newTestServer(t, "ournets 10.0.0.0/8\ntlscert "+cert.CertFile+" "+cert.KeyFile)
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.ehloed("10.1.2.3")
	c.check("MAIL FROM:<alice@example.org> REQUIRETLS", "530 5.7.10")
	c.starttls(t)
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); !strings.Contains(got, "|250-DSN|250-REQUIRETLS|") {
		t.Errorf("EHLO over TLS: %q", got)
	}
	c.check("MAIL FROM:<alice@example.org> REQUIRETLS=yes", "501 5.5.4 REQUIRETLS takes no value")
	c.check("MAIL FROM:<alice@example.org> REQUIRETLS", "250 ")
	c.check("RCPT TO:<v@elsewhere.com>", "250 ")
	c.check("RCPT TO:<bob@example.org>", "250 ")
	c.send("DATA")
	c.expect("354")
	c.write("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.expect("250 2.5.0 sent")
	if msgs := q.all(); len(msgs) != 1 || !msgs[0].params.RequireTLS || strings.Join(msgs[0].rcpts, ",") != "v@elsewhere.com" {
		t.Errorf("queued %+v", msgs)
	}
	if n := len(boxFiles(t, ts.Root, "bob")); n != 1 {
		t.Errorf("bob has %d messages", n)
	}
	// With a mailer, what becomes of the message is not ours to promise.
	ts = newTestServer(t, "mailer /bin/true\ntlscert "+cert.CertFile+" "+cert.KeyFile)
	c = ts.ehloed("192.0.2.7")
	c.starttls(t)
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "|"); strings.Contains(got, "REQUIRETLS") {
		t.Errorf("EHLO over TLS with a mailer: %q", got)
	}
	c.check("MAIL FROM:<alice@example.org> REQUIRETLS", "555 5.5.4 REQUIRETLS not offered")
}
