package test

import (
	"net/smtp"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// startMail starts smtpfs on a fresh mail root whose lib/smtpd.conf holds
// conf, with the extra arguments args.
func startMail(t *testing.T, conf string, args ...string) *Daemon {
	t.Helper()
	root := filepath.Join(t.TempDir(), "mail")
	if err := os.MkdirAll(filepath.Join(root, "lib"), 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, root, args...)
}

// boxMessages returns the messages in box/<user>/new, oldest first.
func boxMessages(t *testing.T, root, user string) []string {
	t.Helper()
	dir := filepath.Join(root, "box", user, "new")
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var msgs []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs
}

// logText returns the daemon's smtpd log.
func logText(t *testing.T, d *Daemon) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(d.Root, "log", "smtpd"))
	return string(b)
}

// waitLog waits for the smtpd log to hold s.
func waitLog(t *testing.T, d *Daemon, s string) {
	t.Helper()
	testlib.WaitFor(t, 10*time.Second, "log line "+s, func() bool { return strings.Contains(logText(t, d), s) })
}

// ehlo dials the daemon from the loopback address from and says EHLO.
func ehlo(t *testing.T, d *Daemon, from string) *Raw {
	t.Helper()
	r := dialRaw(t, d.SMTP[0], from)
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	return r
}

// open sends MAIL, RCPT for each recipient and DATA, which must be
// answered 250, 250... and 354.
func (r *Raw) open(from string, rcpts ...string) {
	r.t.Helper()
	r.Send("MAIL FROM:<" + from + ">")
	r.Expect("250 ")
	for _, rc := range rcpts {
		r.Send("RCPT TO:<" + rc + ">")
		r.Expect("250 ")
	}
	r.Send("DATA")
	r.Expect("354 ")
}

// transaction runs MAIL, RCPT... and DATA with msg, and returns the final
// reply's last line.
func (r *Raw) transaction(from string, rcpts []string, msg string) string {
	r.t.Helper()
	r.open(from, rcpts...)
	r.Write(msg + ".\r\n")
	l := r.Reply()
	return l[len(l)-1]
}

// sendMail sends a message with net/smtp's SendMail, which uses
// PIPELINING-free plain SMTP with EHLO.
func sendMail(t *testing.T, d *Daemon, from string, to []string, msg string) error {
	t.Helper()
	return smtp.SendMail(d.SMTP[0], nil, from, to, []byte(msg))
}
