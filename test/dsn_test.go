package test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// DSN (RFC 3461) and REQUIRETLS (RFC 8689) through the real daemon, with
// Python's smtplib as the client: 127.0.0.1 is trusted (queueConf), and
// alice@example.org is a local sender whose reports land in box/alice.

// smtplibScript sends one message: argv is the server's host:port, the
// sender, the recipients (comma-separated), MAIL's and RCPT's options
// (space-separated), and "tls" to STARTTLS first. It prints "ok", or
// the refusal's code and text.
const smtplibScript = `
import smtplib, ssl, sys
addr, frm, rcpts, mopts, ropts, tls = sys.argv[1:7]
h, p = addr.rsplit(":", 1)
msg = "From: %s\r\nSubject: dsn test\r\n\r\nhello\r\n" % frm
try:
    with smtplib.SMTP(h, int(p), timeout=20) as s:
        if tls == "tls":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
        s.sendmail(frm, rcpts.split(","), msg, mail_options=mopts.split(), rcpt_options=ropts.split())
    print("ok")
except smtplib.SMTPSenderRefused as e:
    print("sender", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPRecipientsRefused as e:
    print("rcpt", *[c for c, _ in e.recipients.values()])
`

// smtplib runs smtplibScript against addr and returns what it printed.
func smtplib(t *testing.T, addr, from, rcpts, mailOpts, rcptOpts string, tls bool) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	how := "plain"
	if tls {
		how = "tls"
	}
	out, err := exec.Command("/usr/bin/python3", "-c", smtplibScript, addr, from, rcpts, mailOpts, rcptOpts, how).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// startQueueSink is startQueue with a sink of the options opt.
func startQueueSink(t *testing.T, opt testlib.SinkOptions, conf string) *queueWorld {
	t.Helper()
	w := &queueWorld{t: t, sink: testlib.NewSink(t, opt)}
	conf = strings.ReplaceAll(conf, "%SINK", "tcp!127.0.0.1!"+w.sink.Port())
	w.d = startMail(t, queueConf+conf)
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	return w
}

// TestDSNLocalSuccess: NOTIFY=SUCCESS to a local user, delivered at DATA,
// brings the (local) sender a success DSN quoting ENVID, with the header
// alone (RET=HDRS); the recipient without NOTIFY is not reported.
func TestDSNLocalSuccess(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "dave@example.org", "RET=HDRS ENVID=x+2By", "NOTIFY=SUCCESS ORCPT=rfc822;dave@example.org", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "carol@example.org", "", "", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	w.waitBox("dave", 1)
	w.waitBox("carol", 1)
	b := w.waitBox("alice", 1)
	d := testlib.ParseDSN(t, []byte(b[0]))
	if len(d.Recipients) != 1 {
		t.Fatalf("DSN recipients %v", d.Recipients)
	}
	r := d.Recipients[0]
	if r["Action"] != "delivered" || r["Final-Recipient"] != "rfc822; dave@example.org" || r["Status"] != "2.0.0" ||
		r["Original-Recipient"] != "rfc822;dave@example.org" || d.PerMessage["Original-Envelope-Id"] != "x+y" {
		t.Errorf("DSN fields %v %v", d.PerMessage, r)
	}
	if d.Types[2] != "text/rfc822-headers" || !strings.Contains(d.Original, "Subject: dsn test") || strings.Contains(d.Original, "hello") {
		t.Errorf("original part %s:\n%s", d.Types[2], d.Original)
	}
	w.waitEmpty()
	if b := boxMessages(t, w.d.Root, "alice"); len(b) != 1 {
		t.Errorf("alice has %d messages, want the one DSN", len(b))
	}
}

// TestDSNNeverNoBounce: a remote recipient refused with NOTIFY=NEVER is
// bounced without a DSN; the one without NOTIFY gets its bounce.
func TestDSNNeverNoBounce(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody") {
			return smtp.Replyf(550, "5.1.1", "no such user")
		}
		return nil
	})
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "nobody@remote.example", "", "NOTIFY=NEVER", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	w.waitRunq("no dsn for ")
	w.waitEmpty()
	if b := boxMessages(t, w.d.Root, "alice"); len(b) != 0 {
		t.Fatalf("alice got %d messages after NOTIFY=NEVER:\n%s", len(b), b[0])
	}
	// Without NOTIFY, the same refusal is reported.
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "nobody@remote.example", "", "", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	d := testlib.ParseDSN(t, []byte(w.waitBox("alice", 1)[0]))
	if d.Recipients[0]["Action"] != "failed" {
		t.Errorf("DSN fields %v", d.Recipients[0])
	}
}

// TestDSNRelayed: NOTIFY=SUCCESS through a next hop without DSN brings
// the sender "Action: relayed"; through one with DSN, the parameters go
// on (xtext where RFC 3461 says) and the sender gets nothing from us.
func TestDSNRelayed(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "bob@remote.example", "ENVID=e1", "NOTIFY=SUCCESS,FAILURE", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	w.sink.Wait(t, 1, 15*time.Second)
	d := testlib.ParseDSN(t, []byte(w.waitBox("alice", 1)[0]))
	if r := d.Recipients[0]; r["Action"] != "relayed" || r["Final-Recipient"] != "rfc822; bob@remote.example" || d.PerMessage["Original-Envelope-Id"] != "e1" {
		t.Errorf("DSN fields %v %v", d.PerMessage, r)
	}
	for _, l := range w.sink.Sessions()[0] {
		if strings.Contains(l, "NOTIFY") || strings.Contains(l, "ENVID") {
			t.Errorf("sent %q to a server without DSN", l)
		}
	}

	w2 := startQueueSink(t, testlib.SinkOptions{DSN: true}, "smarthost %SINK\n")
	if got := smtplib(t, w2.d.SMTP[0], "alice@example.org", "bob@remote.example", "RET=HDRS ENVID=a+2Bb", "NOTIFY=SUCCESS ORCPT=rfc822;Bob+40remote.example", false); got != "ok" {
		t.Fatalf("smtplib: %s", got)
	}
	w2.sink.Wait(t, 1, 15*time.Second)
	w2.waitEmpty()
	lines := w2.sink.Sessions()[0]
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "MAIL FROM:<alice@example.org>") && strings.HasSuffix(l, " RET=HDRS ENVID=a+2Bb")
	}) || !slices.Contains(lines, "RCPT TO:<bob@remote.example> NOTIFY=SUCCESS ORCPT=rfc822;Bob@remote.example") {
		t.Errorf("at the DSN sink: %q", lines)
	}
	if b := boxMessages(t, w2.d.Root, "alice"); len(b) != 0 {
		t.Errorf("alice got a report though the next hop offered DSN:\n%s", b[0])
	}
}

// TestRequireTLSServer: REQUIRETLS is refused over plain text (530
// 5.7.10) and, after STARTTLS, taken, kept with the message and obeyed:
// the smarthost is a host no TLS policy authenticates, so the message is
// never sent and the sender gets a failure report with 5.7.30 (RFC 8689
// §4.2.1, §5).
func TestRequireTLSServer(t *testing.T) {
	cert := testlib.NewCert(t, t.TempDir())
	w := startQueue(t, "smarthost tcp!127.0.0.1!1\nbackoff 1h\ntlscert "+cert.CertFile+" "+cert.KeyFile+"\n")
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "bob@remote.example", "REQUIRETLS", "", false); !strings.HasPrefix(got, "sender 530 5.7.10") {
		t.Errorf("REQUIRETLS in plain text: %s", got)
	}
	if got := smtplib(t, w.d.SMTP[0], "alice@example.org", "bob@remote.example", "REQUIRETLS", "", true); got != "ok" {
		t.Fatalf("REQUIRETLS over STARTTLS: %s", got)
	}
	d := testlib.ParseDSN(t, []byte(w.waitBox("alice", 1)[0]))
	if r := d.Recipients[0]; r["Action"] != "failed" || !strings.Contains(r["Diagnostic-Code"]+r["Status"], "5.7.30") {
		t.Errorf("DSN fields %v", r)
	}
}

// TestSMTPCmdDSN: smtp's -N, -E and -V reach a server that offers DSN
// (ENVID as xtext); a bad value is refused before anything is sent.
func TestSMTPCmdDSN(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{DSN: true}, "")
	msg := "Subject: dsn\n\nhello\n"
	if code, _, stderr := w.run(msg, "-N", "success,failure", "-E", "hdrs", "-V", "id 1", "single.example", "a@b.example", "x@single.example"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := w.sink.Sessions()[0]
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "MAIL FROM:<a@b.example>") && strings.HasSuffix(l, " RET=HDRS ENVID=id+201")
	}) || !slices.Contains(lines, "RCPT TO:<x@single.example> NOTIFY=SUCCESS,FAILURE") {
		t.Errorf("at the sink: %q", lines)
	}
	for _, bad := range [][]string{{"-N", "NEVER,SUCCESS"}, {"-E", "ALL"}, {"-V", strings.Repeat("x", 101)}} {
		code, _, stderr := w.run(msg, append(bad, "single.example", "a@b.example", "x@single.example")...)
		if code != 1 || !strings.Contains(stderr, bad[0]+": ") {
			t.Errorf("%q: exit %d: %s", bad, code, stderr)
		}
	}
	if n := len(w.sink.Sessions()); n != 1 {
		t.Errorf("%d sessions, want only the good one", n)
	}
	// -O: ORCPT for each recipient, the address as converted.
	if code, _, stderr := w.run(msg, "-O", "single.example", "a@b.example", "y"); code != 0 {
		t.Fatalf("-O: exit %d: %s", code, stderr)
	}
	if lines := w.sink.Sessions()[1]; !slices.Contains(lines, "RCPT TO:<y@single.example> ORCPT=rfc822;y@single.example") {
		t.Errorf("-O: at the sink: %q", lines)
	}
}
