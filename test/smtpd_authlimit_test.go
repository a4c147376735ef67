package test

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// authFailMax is the number of failed AUTH after which a client is locked
// out (smtpd(8)'s 10 within 10 minutes).
const authFailMax = 10

// cramAnswer answers the CRAM-MD5 challenge of a 334 line (RFC 2195).
func cramAnswer(t *testing.T, line, user, secret string) string {
	t.Helper()
	ch, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "334 "))
	if err != nil {
		t.Fatalf("challenge %q: %v", line, err)
	}
	m := hmac.New(md5.New, []byte(secret))
	m.Write(ch)
	return b64(user + " " + hex.EncodeToString(m.Sum(nil)))
}

// TestSmtpdAuthLockoutAtVerdict: a guesser opens sessions, starts AUTH
// CRAM-MD5 in each, and answers them all once it has the challenges. The
// answers judged after the lockout began get 454, the right one too.
func TestSmtpdAuthLockoutAtVerdict(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n")
	var rs []*Raw
	var challenges []string
	for range authFailMax + 1 {
		r := ehlo(t, d, "127.0.0.9")
		r.Send("AUTH CRAM-MD5")
		challenges = append(challenges, r.Expect("334 ")[0])
		rs = append(rs, r)
	}
	for i, r := range rs[:authFailMax] {
		r.Send(cramAnswer(t, challenges[i], "glenda", "wrong"))
		r.Expect("535 5.7.1 Authentication failed")
	}
	last := rs[authFailMax]
	last.Send(cramAnswer(t, challenges[authFailMax], "glenda", "s3cret"))
	last.Expect("454 4.7.0 too many authentication failures, try later")
	waitLog(t, d, "AUTH from 127.0.0.9 refused")
	// Another address is not locked out.
	r := ehlo(t, d, "127.0.0.10")
	r.Send("AUTH CRAM-MD5")
	r.Send(cramAnswer(t, r.Expect("334 ")[0], "glenda", "s3cret"))
	r.Expect("235 ")
}

// TestSmtpdAuthLockoutShared: the smtpd program, run once per session as
// inetd runs it, counts AUTH failures across its processes in the mail
// root, and smtpfs on the same root counts with it, both ways.
func TestSmtpdAuthLockoutShared(t *testing.T) {
	d, _ := startTLSMail(t, "", "glenda s3cret\n")
	session := func(ip string) *smtpdProgram {
		t.Helper()
		netdir := t.TempDir()
		os.WriteFile(filepath.Join(netdir, "remote"), []byte(ip+"!4321\n"), 0644)
		os.WriteFile(filepath.Join(netdir, "local"), []byte("127.0.0.1!25\n"), 0644)
		p := startSmtpdPipe(t, "-R", d.Root, "-n", netdir, "-p")
		p.Expect("220 ")
		p.Send("EHLO client.example.net")
		p.Expect("250 ")
		return p
	}
	quit := func(p *smtpdProgram) {
		t.Helper()
		p.Send("QUIT")
		p.Expect("221 ")
		p.wait(t)
	}
	plain := func(pw string) string { return "AUTH PLAIN " + b64("\x00glenda\x00"+pw) }
	// Failures in separate smtpd processes add up: three sessions of three,
	// one of one.
	for _, n := range []int{3, 3, 3, 1} {
		p := session("127.0.0.11")
		for range n {
			p.Send(plain("wrong"))
			p.Expect("535 ")
		}
		quit(p)
	}
	p := session("127.0.0.11")
	p.Send(plain("s3cret"))
	p.Expect("454 4.7.0 too many authentication failures, try later")
	quit(p)
	// smtpfs on the root sees the lockout.
	r := ehlo(t, d, "127.0.0.11")
	r.Send("AUTH CRAM-MD5")
	r.Expect("454 4.7.0 ")
	// And smtpd sees smtpfs's failures.
	for range authFailMax {
		r := ehlo(t, d, "127.0.0.12")
		r.Send("AUTH CRAM-MD5")
		r.Send(cramAnswer(t, r.Expect("334 ")[0], "glenda", "wrong"))
		r.Expect("535 ")
	}
	p = session("127.0.0.12")
	p.Send(plain("s3cret"))
	p.Expect("454 4.7.0 ")
	quit(p)
	// Another client is not locked out.
	p = session("127.0.0.13")
	p.Send(plain("s3cret"))
	p.Expect("235 ")
	quit(p)
	fi, err := os.Stat(filepath.Join(d.Root, "grey", "authfail"))
	if err != nil || fi.Mode().Perm() != 0600 {
		t.Errorf("grey/authfail: %v, %v", fi, err)
	}
}
