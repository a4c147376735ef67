package test

import (
	"compress/gzip"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// TestSmtpdMailer: -m hands every message to the mailer, upas's way, and
// maps its exit to the reply.
func TestSmtpdMailer(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mailer")
	os.WriteFile(script, []byte(`#!/bin/sh
echo "$@" >> `+dir+`/args
cat > `+dir+`/msg
case "$3" in
*refuse) echo "mail refused: $3 is not welcome" >&2; exit 1;;
*fail) echo "disk trouble" >&2; echo "second line" >&2; exit 2;;
esac
`), 0755)
	d := startMail(t, "", "-m", script)
	r := ehlo(t, d, "127.0.0.5")
	for _, tc := range []struct{ rcpt, want string }{
		{"bob@localhost", "250 2.5.0 sent"},
		{"refuse@localhost", "554 5.7.1 mail refused: localhost!refuse is not welcome"},
		{"fail@localhost", "450 4.0.0 mail process terminated abnormally"},
	} {
		if got := r.transaction("a@sender.example", []string{tc.rcpt}, "Subject: m\r\n\r\nhi\r\n"); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<fail@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Send(".")
	if l := r.Reply(); strings.Join(l, "|") != "450-4.0.0 disk trouble|450-4.0.0 second line|450 4.0.0 mail process terminated abnormally" {
		t.Errorf("failure reply %q", l)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if !strings.HasPrefix(string(args), "-r -- localhost!bob\n-r -- localhost!refuse\n") {
		t.Errorf("mailer args %q", args)
	}
	msg, _ := os.ReadFile(filepath.Join(dir, "msg"))
	if !strings.HasPrefix(string(msg), "From sender.example!a ") || !strings.Contains(string(msg), " remote from \nReceived: from client.example.net ([127.0.0.5])") {
		t.Errorf("mailer input %q", msg)
	}
	if len(boxMessages(t, d.Root, "bob")) != 0 {
		t.Errorf("with -m, the Maildir got mail")
	}
}

// TestSmtpdTranscript: -d writes a transcript per connection, AUTH
// payloads hidden, message bodies elided; and tees the log to stderr.
func TestSmtpdTranscript(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n", "-dp")
	r := ehlo(t, d, "127.0.0.5")
	r.Send("AUTH PLAIN")
	r.Expect("334 ")
	r.Send(b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")
	r.transaction("glenda@example.org", []string{"bob@localhost"}, "Subject: the plan\r\n\r\nsecret body\r\n")
	r.Send("QUIT")
	r.Expect("221 ")
	r.Closed(10 * time.Second)
	var files []string
	testlib.WaitFor(t, 10*time.Second, "a transcript", func() bool {
		files, _ = filepath.Glob(filepath.Join(d.Root, "log", "smtpd.db", "*.*"))
		if len(files) != 1 {
			return false
		}
		b, _ := os.ReadFile(files[0])
		return strings.Contains(string(b), "221 2.0.0")
	})
	b, _ := os.ReadFile(files[0])
	tr := string(b)
	for _, want := range []string{"<- EHLO client.example.net", "<- AUTH PLAIN", "<- (protected)", "-> 235 2.0.0", "<- Subject: the plan", "bytes of body elided)", "-> 221 2.0.0"} {
		if !strings.Contains(tr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
	for _, secret := range []string{"s3cret", b64("\x00glenda\x00s3cret"), "secret body"} {
		if strings.Contains(tr, secret) {
			t.Errorf("transcript shows %q", secret)
		}
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0600 {
		t.Errorf("transcript mode %v", fi.Mode())
	}
	if !strings.Contains(d.Stderr.String(), "smtpd: ehlo from 127.0.0.5 as client.example.net") {
		t.Errorf("-d: the log is not on stderr:\n%s", d.Stderr)
	}
}

// TestSmtpdReload: SIGHUP re-reads smtpd.conf and lib/secrets; a bad file
// keeps the old configuration.
func TestSmtpdReload(t *testing.T) {
	d, _ := startTLSMail(t, "maxsize 10k\n", "", "-p")
	size := func() string {
		r := ehlo(t, d, "")
		r.Send("EHLO again.example")
		for _, l := range r.Expect("250 ") {
			if strings.HasPrefix(l, "250-SIZE ") {
				return l
			}
		}
		return ""
	}
	if got := size(); got != "250-SIZE 10240" {
		t.Fatalf("before: %q", got)
	}
	os.WriteFile(filepath.Join(d.Root, "lib", "smtpd.conf"), []byte("maxsize 20k\n"), 0644)
	os.WriteFile(filepath.Join(d.Root, "lib", "secrets"), []byte("glenda s3cret\n"), 0600)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "lib/secrets (1 users)")
	if got := size(); got != "250-SIZE 20480" {
		t.Errorf("after SIGHUP: %q", got)
	}
	r := ehlo(t, d, "")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")

	os.WriteFile(filepath.Join(d.Root, "lib", "smtpd.conf"), []byte("maxsize 30k\nnosuchverb on\n"), 0644)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "keeping the old configuration")
	if !strings.Contains(logText(t, d), "unknown verb 'nosuchverb'") {
		t.Errorf("the log does not say why:\n%s", logText(t, d))
	}
	if got := size(); got != "250-SIZE 20480" {
		t.Errorf("after a bad SIGHUP: %q", got)
	}
}

// TestSmtpdStop: SIGTERM lets a transaction in progress finish, tells idle
// sessions 421, and exits 0.
func TestSmtpdStop(t *testing.T) {
	d := startMail(t, "")
	idle := ehlo(t, d, "127.0.0.5")
	busy := ehlo(t, d, "127.0.0.6")
	busy.Send("MAIL FROM:<a@sender.example>")
	busy.Expect("250 ")
	busy.Send("RCPT TO:<bob@localhost>")
	busy.Expect("250 ")
	d.Cmd.Process.Signal(syscall.SIGTERM)
	idle.Expect("421 4.3.2 ")
	busy.Send("DATA")
	busy.Expect("354 ")
	busy.Write("Subject: last one\r\n\r\n.\r\n")
	busy.Expect("250 2.5.0 sent")
	busy.Expect("421 4.3.2 ")
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("smtpfs did not exit")
	}
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 {
		t.Errorf("bob has %d messages", len(m))
	}
	if _, err := net.DialTimeout("tcp", d.SMTP[0], time.Second); err == nil {
		t.Errorf("still listening")
	}
}

// TestSmtpdStopTwice: a second SIGTERM during the grace period closes the
// sessions still in a transaction at once, as the end of the grace would;
// the unfinished message is not acknowledged, and nothing is delivered.
func TestSmtpdStopTwice(t *testing.T) {
	d := startMail(t, "")
	busy := ehlo(t, d, "127.0.0.6")
	busy.open("a@sender.example", "bob@localhost") // in DATA
	d.Cmd.Process.Signal(syscall.SIGTERM)
	testlib.WaitFor(t, 10*time.Second, "the shutdown to begin", func() bool {
		b, _ := os.ReadFile(filepath.Join(d.Root, "log", "smtpd"))
		return strings.Contains(string(b), "shutting down")
	})
	d.Cmd.Process.Signal(syscall.SIGTERM)
	if !busy.Closed(20 * time.Second) {
		t.Error("the session in a transaction was not closed")
	}
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("smtpfs did not exit")
	}
	b, _ := os.ReadFile(filepath.Join(d.Root, "log", "smtpd"))
	if !strings.Contains(string(b), "again: closing sessions now") {
		t.Errorf("log says nothing of the second signal:\n%s", b)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 0 {
		t.Errorf("bob has %d messages", len(m))
	}
}

// TestSmtpdSenderCheck: -r refuses untrusted senders whose domain has no
// MX, A or AAAA: 554 when it does not exist, 450 when DNS fails.
func TestSmtpdSenderCheck(t *testing.T) {
	dns := testlib.NewDNS(t, `
mx.example. MX 10 mail.mx.example.
a.example. A 127.0.0.2
aaaa.example. AAAA ::2
gone.example NXDOMAIN
broken.example SERVFAIL
nullmx.example. MX 0 .
`)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	d := startMail(t, "ournets 127.0.0.1\nmaxerrors 100\n", "-r")
	for _, tc := range []struct{ ip, from, want string }{
		{"127.0.0.5", "a@mx.example", "354 "},
		{"127.0.0.5", "a@a.example", "354 "},
		{"127.0.0.5", "a@aaaa.example", "354 "},
		{"127.0.0.5", "a@gone.example", "554 5.7.1 Sender domain must exist: gone.example!a"},
		{"127.0.0.5", "a@nullmx.example", "554 5.7.1 Sender domain must exist"},
		{"127.0.0.5", "a@broken.example", "450 4.7.0 "},
		{"127.0.0.5", "", "354 "},
		{"127.0.0.1", "a@gone.example", "354 "},
	} {
		r := ehlo(t, d, tc.ip)
		r.Send("MAIL FROM:<" + tc.from + ">")
		r.Expect("250 ")
		r.Send("RCPT TO:<bob@localhost>")
		r.Expect("250 ")
		r.Send("DATA")
		if l := r.Reply(); !strings.HasPrefix(l[0], tc.want) {
			t.Errorf("<%s> from %s: %q, want %q", tc.from, tc.ip, l, tc.want)
		}
	}
}

// TestSmtpdProgramNetdir runs the smtpd program on pipes, the client's
// address from -n netdir.
func TestSmtpdProgramNetdir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	netdir := t.TempDir()
	os.WriteFile(filepath.Join(netdir, "remote"), []byte("192.0.2.7!4321\n"), 0644)
	os.WriteFile(filepath.Join(netdir, "local"), []byte("127.0.0.1!25\n"), 0644)
	r := startSmtpdPipe(t, "-R", root, "-n", netdir, "-h", "example.org")
	r.Expect("220 example.org ESMTP")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	if got := r.transaction("a@sender.example", []string{"bob@example.org"}, "Subject: piped\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("got %q", got)
	}
	r.Send("RCPT TO:<v@elsewhere.example>")
	r.Expect("503 ")
	r.Send("QUIT")
	r.Expect("221 ")
	r.wait(t)
	m := boxMessages(t, root, "bob")
	if len(m) != 1 || !strings.Contains(m[0], "Received: from client.example.net ([192.0.2.7])") {
		t.Errorf("bob has %q", m)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "log", "smtpd")); !strings.Contains(string(b), "ehlo from 192.0.2.7 as client.example.net") {
		t.Errorf("log %q", b)
	}
}

// TestSmtpdProgramSocket runs the smtpd program as inetd does: the
// accepted socket on standard input and output.
func TestSmtpdProgramSocket(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	r := startSmtpd(t, "127.0.0.9", "-R", root, "-h", "example.org")
	r.Expect("220 example.org ESMTP")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	if got := r.transaction("a@sender.example", []string{"bob@example.org"}, "Subject: inetd\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("got %q", got)
	}
	r.Send("QUIT")
	r.Expect("221 ")
	r.wait(t)
	if m := boxMessages(t, root, "bob"); len(m) != 1 || !strings.Contains(m[0], "([127.0.0.9])") {
		t.Errorf("bob has %q", m)
	}
}

// TestSmtpdProgramNoAddress: without any way to know the client, smtpd
// refuses to run.
func TestSmtpdProgramNoAddress(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	cmd := exec.Command(bin(t, "smtpd"), "-R", root)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "can't get remote system's address") {
		t.Errorf("got %v: %s", err, out)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "remote"), []byte("garbage\n"), 0644)
	os.WriteFile(filepath.Join(bad, "local"), []byte("127.0.0.1!25\n"), 0644)
	cmd = exec.Command(bin(t, "smtpd"), "-R", root, "-n", bad)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "can't get remote system's address") {
		t.Errorf("garbage in netdir: %v: %s", err, out)
	}
	os.WriteFile(filepath.Join(bad, "remote"), []byte("192.0.2.7!4321\n"), 0644)
	os.WriteFile(filepath.Join(bad, "local"), []byte("garbage\n"), 0644)
	cmd = exec.Command(bin(t, "smtpd"), "-R", root, "-n", bad)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "can't get our own address") {
		t.Errorf("garbage in netdir's local: %v: %s", err, out)
	}
	cmd = exec.Command(bin(t, "smtpd"), "-R", filepath.Join(root, "nonesuch"), "-n", t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not a directory") {
		t.Errorf("missing root: %v: %s", err, out)
	}
}

// TestSmtpdCPUProfile: with $SMTPFS_CPUPROFILE the daemon writes a CPU
// profile (gzipped, as runtime/pprof writes it) that is whole once it has
// stopped on SIGTERM; a file it cannot make stops it from starting.
func TestSmtpdCPUProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	t.Setenv("SMTPFS_CPUPROFILE", prof)
	d := startMail(t, "")
	r := ehlo(t, d, "")
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: profiled\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("got %q", got)
	}
	d.Stop(t)
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d\n%s", code, d.Stderr)
	}
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("the profile is not gzipped: %v", err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) == 0 {
		t.Errorf("the profile: %d bytes, %v", len(b), err)
	}

	cmd := exec.Command(bin(t, "smtpfs"), "-R", filepath.Join(t.TempDir(), "mail"), "-l", "tcp!127.0.0.1!0")
	cmd.Env = append(os.Environ(), "NAMESPACE="+t.TempDir(), "SMTPFS_CPUPROFILE="+filepath.Join(t.TempDir(), "no", "such", "dir", "cpu.prof"), quickExit)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "smtpfs: SMTPFS_CPUPROFILE: ") {
		t.Errorf("an unwritable profile: %v: %s", err, out)
	}
}
