package smtpd

import (
	"strings"
	"testing"
)

// TestAuthLockedAtVerdict: sessions that started AUTH before the lockout
// and answer after it get 454, the right password included: the lockout
// is checked when the answer is judged, not only when AUTH starts.
func TestAuthLockedAtVerdict(t *testing.T) {
	ts := newTestServer(t, "")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	var cs []*client
	var challenges []string
	for range authFailMax + 1 {
		c := ts.ehloed("192.0.2.7")
		c.send("AUTH CRAM-MD5")
		challenges = append(challenges, unb64(t, c.expect("334 ")[0][4:]))
		cs = append(cs, c)
	}
	for _, c := range cs[:authFailMax] {
		c.send(b64("glenda " + strings.Repeat("0", 32)))
		c.expect("535 ")
	}
	c := cs[authFailMax]
	c.send(b64("glenda " + cramDigest("s3cret", challenges[authFailMax])))
	c.expect("454 4.7.0 too many authentication failures, try later")
	c.send("MAIL FROM:<glenda@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<someone@elsewhere.example>")
	c.expect("550 5.7.1 we don't relay") // not authenticated
}
