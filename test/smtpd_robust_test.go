package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// TestSmtpdSpoolFailure: with the spool unusable (<root>/tmp a plain file,
// as for a full disk), a message over the 1 MiB kept in memory gets 451
// once its real end has been read; the lines after the 1 MiB point are
// not run as commands (the reviewer's probe).
func TestSmtpdSpoolFailure(t *testing.T) {
	d := startMail(t, "")
	tmp := filepath.Join(d.Root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0600); err != nil {
		t.Fatal(err)
	}
	r := ehlo(t, d, "127.0.0.5")
	line := strings.Repeat("x", 998) + "\r\n"
	body := "Subject: big\r\n\r\n" + strings.Repeat(line, 1100) + "NOOP smuggled\r\nRCPT TO:<carol@localhost>\r\n"
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, body); !strings.HasPrefix(got, "451 4.3.0 ") {
		t.Errorf("got %q, want 451 4.3.0", got)
	}
	r.Send("RSET")
	r.Expect("250 2.0.0 ok")
	if m := boxMessages(t, d.Root, "bob"); len(m) != 0 {
		t.Errorf("bob got %d messages", len(m))
	}
}

// TestSmtpdOneCopy: a message for many local users is one file on disk,
// linked into each box, and one message makes at most 10 new boxes: the
// next unknown users get a temporary 452 and come in the next message.
func TestSmtpdOneCopy(t *testing.T) {
	d := startMail(t, "")
	r := ehlo(t, d, "127.0.0.5")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	for i := range 10 {
		r.Send(fmt.Sprintf("RCPT TO:<user%d@localhost>", i))
		r.Expect("250 ")
	}
	r.Send("RCPT TO:<user10@localhost>")
	r.Expect("452 4.5.3 ")
	r.Send("RCPT TO:<user0+again@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write("Subject: to many\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 4096) + ".\r\n")
	r.Expect("250 2.5.0 sent")
	var first os.FileInfo
	for i := range 10 {
		box := fmt.Sprintf("user%d", i)
		files, _ := filepath.Glob(filepath.Join(d.Root, "box", box, "new", "*"))
		if len(files) != 1 {
			t.Fatalf("%s has %d messages", box, len(files))
		}
		fi, err := os.Stat(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = fi
		} else if !os.SameFile(first, fi) {
			t.Errorf("%s has a copy of its own", box)
		}
	}
	if _, err := os.Stat(filepath.Join(d.Root, "box", "user10")); err == nil {
		t.Errorf("box/user10 was made")
	}
	if got := r.transaction("a@sender.example", []string{"user10@localhost"}, "Subject: later\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("user10 in a message of its own: %q", got)
	}
}

// TestSmtpdJunkCommands: an untrusted client may send 100 commands that
// move no mail; the next gets 421 and the session is closed, so a NOOP
// every few minutes does not hold a slot for ever. A trusted one may go on.
func TestSmtpdJunkCommands(t *testing.T) {
	d := startMail(t, "ournets 127.0.0.1\n")
	r := ehlo(t, d, "127.0.0.5")
	for i := range 99 {
		r.Send([]string{"NOOP", "RSET", "VRFY bob", "HELP"}[i%4])
		r.Expect("2")
	}
	r.Send("NOOP")
	r.Expect("421 4.7.0 ")
	if !r.Closed(10 * time.Second) {
		t.Errorf("still open after 101 junk commands")
	}
	r = ehlo(t, d, "127.0.0.1")
	for range 150 {
		r.Send("NOOP")
		r.Expect("250 ")
	}
}

// TestSmtpdFileLimit: the daemon keeps sessions short of its file
// descriptor limit: with RLIMIT_NOFILE lowered to 256 (prlimit, on the
// running daemon), 128 sessions are served and the 129th gets 421, whatever
// maxconns says, instead of accepts and spools failing for everyone.
func TestSmtpdFileLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("no prlimit (util-linux) to lower the daemon's file limit")
	}
	d := startMail(t, "maxperip 1000\n")
	pid := strconv.Itoa(d.Cmd.Process.Pid)
	if out, err := exec.Command(prlimit, "--pid", pid, "--nofile=256:256").CombinedOutput(); err != nil {
		t.Skipf("prlimit: %v: %s", err, out)
	}
	for i := range 128 {
		r := dialRaw(t, d.SMTP[0], fmt.Sprintf("127.0.1.%d", i+1))
		r.Expect("220 ")
	}
	r := dialRaw(t, d.SMTP[0], "127.0.2.1")
	r.Expect("421 4.7.0 ")
	if !r.Closed(10 * time.Second) {
		t.Errorf("the 129th session is open")
	}
	waitLog(t, d, "as many as the file descriptor limit (RLIMIT_NOFILE 256) allows")
}

// TestSmtpdLocalPartHeaders: the reviewer's probe: a quoted local part
// whose +tag holds a forged address is refused (550 5.1.3), not delivered
// with "Delivered-To: bob+x>, Big Boss <ceo> (x@localhost"; a safe tag is
// delivered and written as it came.
func TestSmtpdLocalPartHeaders(t *testing.T) {
	d := startMail(t, "")
	r := ehlo(t, d, "127.0.0.5")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send(`RCPT TO:<"bob+x>, Big Boss <ceo> (x"@localhost>`)
	r.Expect("550 5.1.3 ")
	r.Send("RSET")
	r.Expect("250 ")
	if got := r.transaction("a@sender.example", []string{"bob+news.2024@localhost"}, "Subject: s\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	m := boxMessages(t, d.Root, "bob")
	if len(m) != 1 || !strings.Contains(m[0], "\nDelivered-To: bob+news.2024@localhost\n") || !strings.Contains(m[0], "\nTo: bob+news.2024@localhost\n") {
		t.Errorf("bob has %q", m)
	}
}

// TestSmtpdZonedLiteral: an IPv6 literal with a zone is a syntax error at
// once (the queue could only bounce it later), in RCPT, MAIL and HELO.
func TestSmtpdZonedLiteral(t *testing.T) {
	d := startMail(t, "ournets 127.0.0.1\n")
	r := ehlo(t, d, "127.0.0.1")
	r.Send("MAIL FROM:<a@[IPv6:fe80::1%eth0]>")
	r.Expect("501 5.1.3 ")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<v@[IPv6:fe80::1%eth0]>")
	r.Expect("501 5.1.3 ")
	r.Send("RCPT TO:<v@[IPv6:fe80::1]>")
	r.Expect("250 ")
	r.Send("EHLO [IPv6:fe80::1%lo]")
	r.Expect("501 5.5.4 ")
}

// TestSmtpdAuthLimit: failed AUTH is counted per address across sessions:
// after 10 failures, AUTH from that address is refused with 454 even with
// the right password, while other addresses may go on.
func TestSmtpdAuthLimit(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n", "-p")
	for _, n := range []int{3, 3, 3, 1} {
		r := ehlo(t, d, "127.0.0.9")
		for range n {
			r.Send("AUTH PLAIN " + b64("\x00glenda\x00guess"))
			r.Expect("535 ")
		}
	}
	r := ehlo(t, d, "127.0.0.9")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("454 4.7.0 too many authentication failures, try later")
	r = ehlo(t, d, "127.0.0.10")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")
	waitLog(t, d, "AUTH from 127.0.0.9 refused for 15m0s after 10 failures")
}

// TestSmtpdLoopbackNullSender: upas's user@[] sends a message back to
// the client's own address. From an untrusted client it is queued from
// <>, so when that address refuses it, no bounce carries the client's text
// to the sender it forged (backscatter).
func TestSmtpdLoopbackNullSender(t *testing.T) {
	back := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.7:0"})
	victim := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.8:" + back.Port()})
	back.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(550, "5.1.1", "no such user here")
		}
		return nil
	})
	dns := testlib.NewDNS(t, "elsewhere.example. MX 10 mx.elsewhere.example.\nmx.elsewhere.example. A 127.0.0.8\n")
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	t.Setenv("SMTPFS_SMTP_PORT", back.Port())
	w := &queueWorld{t: t, d: startMail(t, ""), sink: back}
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	r := ehlo(t, w.d, "127.0.0.7")
	if got := r.transaction("victim@elsewhere.example", []string{"x@[]"}, "Subject: reflect me\r\n\r\nattacker text\r\n"); got != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	testlib.WaitFor(t, 15*time.Second, "the delivery back to 127.0.0.7", func() bool {
		for _, s := range back.Sessions() {
			for _, c := range s {
				if strings.HasPrefix(c, "MAIL FROM:") {
					return true
				}
			}
		}
		return false
	})
	if s := back.Sessions(); !slices.ContainsFunc(s[0], func(c string) bool { return strings.HasPrefix(c, "MAIL FROM:<> ") }) {
		t.Errorf("delivered back with %q, want MAIL FROM:<>", s[0])
	}
	w.waitEmpty()
	if m := victim.Messages(); len(m) != 0 {
		t.Errorf("the forged sender got %d messages: %q", len(m), m[0].Data)
	}
	waitLog(t, w.d, "queued from <> for an untrusted client: sender elsewhere.example!victim")
}

// TestSmtpdMinFree: with less free space on the mail root than minfree,
// MAIL gets 452 4.3.1 (nothing is accepted that could not be stored);
// lowering minfree through ctl lets mail in again.
func TestSmtpdMinFree(t *testing.T) {
	d := startMail(t, "minfree 1024g\n") // the most the verb takes
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Root, &st); err != nil || int64(st.Bavail)*int64(st.Bsize) >= 1<<40 {
		t.Skipf("cannot make the mail root short of space: statfs %v, %d blocks free", err, st.Bavail)
	}
	r := ehlo(t, d, "127.0.0.5")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("452 4.3.1 insufficient system storage")
	w := &queueWorld{t: t, d: d, fsys: fstest.Dial(t, d.NineP[0])}
	w.mustCtl("minfree 1m")
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: s\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("after minfree 1m: %q", got)
	}
	waitLog(t, d, "refusing mail: ")
}

// TestSmtpdSlowMailerLongReply: a mailer slower than cmdtimeout that
// fails with a long story: the reply (over the 512-byte write buffer)
// still reaches the client, each write with a deadline of its own.
func TestSmtpdSlowMailerLongReply(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mailer")
	os.WriteFile(script, []byte(`#!/bin/sh
cat >/dev/null
sleep 1.5
for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i of a long story $(printf '%0100d' 0)" >&2; done
exit 1
`), 0755)
	d := startMail(t, "cmdtimeout 1s\n", "-m", script)
	r := ehlo(t, d, "127.0.0.5")
	r.open("a@sender.example", "bob@localhost")
	r.Send(".")
	if l := r.Reply(); len(l) != 11 || l[10] != "450 4.0.0 mail process terminated abnormally" {
		t.Errorf("got %q", l)
	}
}

// TestSmtpdBlockedOneError: a message refused by lib/blocked (block,
// delay) is one error of the session, not two: with maxerrors 2 the
// session goes on after it.
func TestSmtpdBlockedOneError(t *testing.T) {
	d := startMail(t, "maxerrors 2\n")
	if err := os.WriteFile(filepath.Join(d.Root, "lib", "blocked"), []byte("block 127.0.0.10\ndelay 127.0.0.13\n"), 0644); err != nil {
		t.Fatal(err)
	}
	w := &queueWorld{t: t, d: d, fsys: fstest.Dial(t, d.NineP[0])}
	w.mustCtl("reload")
	for _, tc := range []struct{ ip, want string }{{"127.0.0.10", "554 5.7.1 "}, {"127.0.0.13", "450 4.3.0 "}} {
		r := ehlo(t, d, tc.ip)
		if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: s\r\n\r\n"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.ip, got, tc.want)
		}
		r.Send("NOOP")
		r.Expect("250 ")
	}
}

// TestSmtpdNoUsersNoAuth: without lib/secrets, EHLO offers no AUTH and
// AUTH is refused at once: nobody could authenticate, so the offer would
// only invite guessing.
func TestSmtpdNoUsersNoAuth(t *testing.T) {
	d := startMail(t, "")
	r := dialRaw(t, d.SMTP[0], "127.0.0.5")
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	if l := r.Expect("250 "); l[len(l)-1] != "250 ENHANCEDSTATUSCODES" {
		t.Errorf("EHLO %q", l)
	}
	r.Send("AUTH CRAM-MD5")
	r.Expect("502 5.5.1 AUTH not available")
}
