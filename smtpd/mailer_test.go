package smtpd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dashedPaths are addresses with a part that begins with '-', in each
// form an address can hide one.
var dashedPaths = []string{
	"<-X/tmp/log!host!user>",
	"<-oQ/tmp@example.org>",
	"<--@example.org>",
	"<a!-x>",
	"<example.net!-x@example.org>",
	"<a%-x@example.org>",
	"<a%b%-x@example.org>",
	`<"-x"@example.org>`,
	`<" -x y"@example.org>`,
	`<"\-x"@example.org>`,
	`<"a@-x"@example.org>`,
	`<"a:-x"@example.org>`,
	`<"a,-x"@example.org>`,
	`<"a!\"-x"@example.org>`,
	"<@a.example,@b.example:-x@example.org>",
	`<"a -b"@example.org>`,
	"<-x@[]>",
}

// TestPathDash: no part of an address may begin with '-', as sender or
// recipient; '-' elsewhere is fine.
func TestPathDash(t *testing.T) {
	for _, p := range dashedPaths {
		for _, prefix := range []string{"FROM:", "TO:"} {
			if _, _, err := parsePathArg(prefix+p, prefix); err != errPathDash {
				t.Errorf("%s%s: %v, want %v", prefix, p, err, errPathDash)
			}
		}
	}
	for _, p := range []string{"<a-b@example.org>", "<a.-b@example.org>", "<a-!b->", "<a@b-c.example>", "<x-@example.org>"} {
		if _, _, err := parsePathArg("TO:"+p, "TO:"); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestMailerArgv: whatever the addresses, the mailer's arguments are
// "-r", "--" and the recipients, none of which begins with '-'.
func TestMailerArgv(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mailer")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" >> "+dir+"/args\ncat > /dev/null\n"), 0755)
	ts := newTestServer(t, "norelay off\nmaxerrors 100\nmailer "+script)
	c := ts.ehloed("192.0.2.7")
	for _, p := range dashedPaths {
		c.send("MAIL FROM:" + p)
		c.expect("501 5.1.3 bad address syntax: no part of an address may begin with '-'")
	}
	c.send("MAIL FROM:<alice@sender.net>")
	c.expect("250 ")
	for _, p := range dashedPaths {
		c.send("RCPT TO:" + p)
		c.expect("501 5.1.3 ")
	}
	c.send("RCPT TO:<bob@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<a-b!user@example.org>")
	c.expect("250 ")
	c.send("DATA")
	c.expect("354 ")
	c.send("Subject: s\r\n\r\nhi\r\n.")
	c.expect("250 ")
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"); strings.Join(got, " ") != "-r -- example.org!bob example.org!a-b!user" {
		t.Errorf("mailer argv %q", got)
	}
}
