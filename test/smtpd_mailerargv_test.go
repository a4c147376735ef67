package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmtpdMailerArgv: no address reaches the mailer's arguments as an
// option: an address with a part that begins with '-' is refused at MAIL
// and RCPT, and "--" ends the mailer's options.
func TestSmtpdMailerArgv(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "mailer")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" >> "+dir+"/args\ncat > /dev/null\n"), 0755)
	d := startMail(t, "norelay off\n", "-m", script)
	r := ehlo(t, d, "127.0.0.5")
	for _, p := range []string{"<-X/tmp/log!host!user>", "<a%-oQ/tmp@localhost>", `<"-x"@localhost>`, "<@a.example:-x@localhost>"} {
		r.Send("MAIL FROM:" + p)
		r.Expect("501 5.1.3 bad address syntax: no part of an address may begin with '-'")
		r.Send("MAIL FROM:<a@sender.example>")
		r.Expect("250 ")
		r.Send("RCPT TO:" + p)
		r.Expect("501 5.1.3 bad address syntax: no part of an address may begin with '-'")
		r.Send("RSET")
		r.Expect("250 ")
	}
	if got := r.transaction("a@sender.example", []string{"bob@localhost", "a-b!user@localhost"}, "Subject: s\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Fatalf("DATA: %q", got)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.Fields(string(args)); strings.Join(got, " ") != "-r -- localhost!bob localhost!a-b!user" {
		t.Errorf("mailer argv %q", got)
	}
}
