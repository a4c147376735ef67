package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// startSubmission starts smtpfs with an smtp listener (-l), a submission
// one on 127.0.0.2 and a submissions one on 127.0.0.3, a certificate, and
// the AUTH user glenda (password s3cret).
func startSubmission(t *testing.T) (*Daemon, *testlib.Cert) {
	t.Helper()
	cert := testlib.NewCert(t, t.TempDir(), "localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3")
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte("ourdomains example.org\n"+
		"listen tcp!127.0.0.2!0 submission\nlisten tcp!127.0.0.3!0 submissions\n"), 0644)
	os.WriteFile(filepath.Join(root, "lib", "secrets"), []byte("glenda s3cret\n"), 0600)
	d := startDaemon(t, root, "-c", cert.Both, "-l", "tcp!127.0.0.1!0")
	if len(d.SMTP) != 1 || len(d.Submit["submission"]) != 1 || len(d.Submit["submissions"]) != 1 {
		t.Fatalf("listeners: smtp %q, others %q\n%s", d.SMTP, d.Submit, d.Stderr)
	}
	return d, cert
}

func swaksPath(t *testing.T) string {
	p, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed")
	}
	if exec.Command("perl", "-MNet::SSLeay", "-e1").Run() != nil {
		t.Skip("swaks cannot speak TLS: Net::SSLeay (libnet-ssleay-perl) is not installed")
	}
	return p
}

// TestSubmissionSwaks: swaks submits on 587 with STARTTLS and AUTH, and on
// 465 with TLS from the first byte (--protocol SSMTP); as someone else,
// or without AUTH, it gets no further than MAIL.
func TestSubmissionSwaks(t *testing.T) {
	swaks := swaksPath(t)
	d, _ := startSubmission(t)
	sub, subs := d.Submit["submission"][0], d.Submit["submissions"][0]
	auth := []string{"--auth", "PLAIN", "--auth-user", "glenda", "--auth-password", "s3cret"}
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
		want string // in swaks's transcript
	}{
		{"587 STARTTLS AUTH", append([]string{"--server", sub, "--tls", "--from", "glenda@example.org"}, auth...), true, "250 2.5.0 sent"},
		{"465 implicit TLS", append([]string{"--server", subs, "--protocol", "SSMTP", "--from", "glenda@example.org"}, auth...), true, "250 2.5.0 sent"},
		{"587 as someone else", append([]string{"--server", sub, "--tls", "--from", "boss@example.org"}, auth...), false, "550 5.7.1 glenda may not send as <boss@example.org>"},
		{"587 From: someone else", append([]string{"--server", sub, "--tls", "--from", "glenda@example.org", "--header", "From: boss@example.org"}, auth...), false, "550 5.7.1 glenda may not send as <boss@example.org> (From: or Sender:)"},
		{"587 no AUTH", []string{"--server", sub, "--tls", "--from", "glenda@example.org"}, false, "530 5.7.0 Authentication required"},
		{"587 AUTH without TLS", append([]string{"--server", sub, "--from", "glenda@example.org"}, auth...), false, "Host did not advertise authentication"},
	} {
		args := append([]string{"--to", "bob@localhost", "--header", "Subject: " + tc.name, "--timeout", "20"}, tc.args...)
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if (err == nil) != tc.ok || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: swaks %v, want ok %v and %q:\n%s", tc.name, err, tc.ok, tc.want, out)
		}
	}
	m := boxMessages(t, d.Root, "bob")
	if len(m) != 2 {
		t.Fatalf("bob has %d messages, want 2:\n%q", len(m), m)
	}
	for _, msg := range m {
		if strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, " with ESMTPSA id ") || !strings.Contains(strings.ToLower(msg), "\nmessage-id: <") {
			t.Errorf("message %q", msg)
		}
	}
	// Each listener has its counters; the smtp one saw nobody.
	stats := fstestStats(t, d)
	for name, want := range map[string]string{
		"listener." + port(sub) + ".accepted": "1", "listener." + port(subs) + ".accepted": "1",
		"listener." + port(sub) + ".notyours": "2", "listener." + port(sub) + ".noauth": "1",
		"listener." + port(sub) + ".submission": "1", "listener." + port(subs) + ".submissions": "1",
		"listener." + port(d.SMTP[0]) + ".connections": "0", "listener." + port(d.SMTP[0]) + ".smtp": "1",
	} {
		if stats[name] != want {
			t.Errorf("stats %s = %q, want %s", name, stats[name], want)
		}
	}
}

// TestSubmissionSmtplib: Python's smtplib (Debian's python3) over
// SMTP_SSL and STARTTLS: a user sending as himself gets through; as
// someone else, or unauthenticated, the sender is refused.
func TestSubmissionSmtplib(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	d, cert := startSubmission(t)
	script := `
import smtplib, ssl, sys
sub, subs, ca = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
def hp(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)
def outcome(f):
    try:
        f()
        return "ok"
    except smtplib.SMTPSenderRefused as e:
        return "sender %d" % e.smtp_code
    except smtplib.SMTPDataError as e:
        return "data %d" % e.smtp_code
msg = "From: glenda@example.org\r\nSubject: smtplib\r\n\r\nhello\r\n"
def ssl_ok():
    with smtplib.SMTP_SSL(*hp(subs), context=ctx, timeout=20) as s:
        s.login("glenda", "s3cret")
        s.sendmail("glenda@example.org", ["bob@localhost"], msg)
def ssl_other():
    with smtplib.SMTP_SSL(*hp(subs), context=ctx, timeout=20) as s:
        s.login("glenda", "s3cret")
        s.sendmail("boss@example.org", ["bob@localhost"], msg)
def ssl_noauth():
    with smtplib.SMTP_SSL(*hp(subs), context=ctx, timeout=20) as s:
        s.sendmail("glenda@example.org", ["bob@localhost"], msg)
def starttls_from():
    with smtplib.SMTP(*hp(sub), timeout=20) as s:
        s.starttls(context=ctx)
        s.login("glenda", "s3cret")
        s.sendmail("glenda@example.org", ["bob@localhost"], msg.replace("From: glenda@", "From: boss@"))
print(outcome(ssl_ok), outcome(ssl_other), outcome(ssl_noauth), outcome(starttls_from), sep=",")
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, d.Submit["submission"][0], d.Submit["submissions"][0], cert.CertFile).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "ok,sender 550,sender 530,data 550" {
		t.Errorf("python3: %v: %s", err, out)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "Subject: smtplib") {
		t.Errorf("bob has %q", m)
	}
}

// TestSubmissionCtl: cat ctl shows the listeners with their roles and
// round-trips; a role changed through ctl applies to the next session.
func TestSubmissionCtl(t *testing.T) {
	d, _ := startSubmission(t)
	text := readCtl(t, d)
	for _, want := range []string{"listen tcp!127.0.0.2!0 submission\n", "listen tcp!127.0.0.3!0 submissions\n", "listen tcp!127.0.0.1!0 smtp\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("ctl lacks %q:\n%s", want, text)
		}
	}
	if err := ctl(t, d, text); err != nil {
		t.Fatalf("writing ctl's text back: %v", err)
	}
	if err := ctl(t, d, "clear tlscert"); err == nil || !strings.Contains(err.Error(), "needs tlscert") {
		t.Errorf("clear tlscert with submission listeners: %v", err)
	}
	sub := d.Submit["submission"][0]
	r := dialRaw(t, sub, "")
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("530 ")
	if err := ctl(t, d, "listen tcp!127.0.0.2!0 smtp"); err != nil {
		t.Fatal(err)
	}
	r = dialRaw(t, sub, "")
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	if s := fstestStats(t, d)["listener."+port(sub)+".smtp"]; s != "1" {
		t.Errorf("listener.%s.smtp = %q", port(sub), s)
	}
}

func port(hostport string) string { return hostport[strings.LastIndexByte(hostport, ':')+1:] }

func readCtl(t *testing.T, d *Daemon) string {
	t.Helper()
	return fstest.Read(t, fstest.Dial(t, d.NineP[0]), "ctl")
}

func fstestStats(t *testing.T, d *Daemon) map[string]string {
	t.Helper()
	m := map[string]string{}
	for l := range strings.SplitSeq(fstest.Read(t, fstest.Dial(t, d.NineP[0]), "stats"), "\n") {
		if n, v, ok := strings.Cut(l, " "); ok {
			m[n] = v
		}
	}
	return m
}
