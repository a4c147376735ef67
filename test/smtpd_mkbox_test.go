package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/fs/fstest"
)

// TestSmtpdMkBoxPerHour: with mkbox on, an untrusted client makes at most
// mkboxperhour new boxes an hour, across its messages and sessions: past
// it a new user gets 450 4.7.1 (try again later), while users with a box
// still get its mail; another client makes boxes of its own; raising the
// limit through ctl lets the first go on.
func TestSmtpdMkBoxPerHour(t *testing.T) {
	d := startMail(t, "mkboxperhour 3\n")
	const msg = "Subject: hello\r\n\r\nhello\r\n"
	r := ehlo(t, d, "127.0.0.5")
	if got := r.transaction("a@sender.example", []string{"u1@localhost", "u2@localhost"}, msg); got != "250 2.5.0 sent" {
		t.Fatalf("two new users: %q", got)
	}
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<u3@localhost>")
	r.Expect("250 ")
	r.Send("RCPT TO:<u4@localhost>")
	r.Expect("450 4.7.1 <u4@localhost> ... too many new mailboxes from 127.0.0.5 this hour; try again later")
	r.Send("RCPT TO:<u1@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Write(msg + ".\r\n")
	r.Expect("250 2.5.0 sent")
	r.Send("QUIT")
	r.Expect("221 ")

	r = ehlo(t, d, "127.0.0.5")
	r.Send("MAIL FROM:<a@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<u5@localhost>")
	r.Expect("450 4.7.1 ")
	r.Send("QUIT")
	r.Expect("221 ")

	r2 := ehlo(t, d, "127.0.0.6")
	if got := r2.transaction("b@sender.example", []string{"u5@localhost", "u6@localhost", "u7@localhost"}, msg); got != "250 2.5.0 sent" {
		t.Errorf("another client, three new users: %q", got)
	}
	for user, want := range map[string]int{"u1": 2, "u2": 1, "u3": 1, "u5": 1, "u6": 1, "u7": 1} {
		if m := boxMessages(t, d.Root, user); len(m) != want {
			t.Errorf("%s has %d messages, want %d", user, len(m), want)
		}
	}
	if _, err := os.Stat(filepath.Join(d.Root, "box", "u4")); !os.IsNotExist(err) {
		t.Errorf("a box was made for u4: %v", err)
	}

	if !strings.Contains(fstest.Read(t, fstest.Dial(t, d.NineP[0]), "ctl"), "mkboxperhour 3\n") {
		t.Errorf("cat ctl lacks mkboxperhour 3")
	}
	if err := ctl(t, d, "mkboxperhour 10\n"); err != nil {
		t.Fatal(err)
	}
	r = ehlo(t, d, "127.0.0.5")
	if got := r.transaction("a@sender.example", []string{"u4@localhost"}, msg); got != "250 2.5.0 sent" {
		t.Errorf("u4 with mkboxperhour 10: %q", got)
	}
}
