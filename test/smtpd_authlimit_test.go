package test

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// authFailMax is the number of failed AUTH after which a client is locked
// out (the README's 10 within 10 minutes).
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
