package smtpd

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"smtpfs/smtpd/authfail"
)

// TestAuthLockedAtVerdict: sessions that started AUTH before the lockout
// and answer after it get 454, the right password included: the lockout
// is checked when the answer is judged, not only when AUTH starts.
func TestAuthLockedAtVerdict(t *testing.T) {
	ts := newTestServer(t, "")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	var cs []*client
	var challenges []string
	for range authfail.Max + 1 {
		c := ts.ehloed("192.0.2.7")
		c.send("AUTH CRAM-MD5")
		challenges = append(challenges, unb64(t, c.expect("334 ")[0][4:]))
		cs = append(cs, c)
	}
	for _, c := range cs[:authfail.Max] {
		c.send(b64("glenda " + strings.Repeat("0", 32)))
		c.expect("535 ")
	}
	c := cs[authfail.Max]
	c.send(b64("glenda " + cramDigest("s3cret", challenges[authfail.Max])))
	c.expect("454 4.7.0 too many authentication failures, try later")
	c.send("MAIL FROM:<glenda@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<someone@elsewhere.example>")
	c.expect("550 5.7.1 we don't relay") // not authenticated
}

// brokenLimiter is an AuthLimiter whose store cannot be read or written.
type brokenLimiter struct{}

func (brokenLimiter) Locked(netip.Prefix, time.Time) (bool, error) {
	return true, errors.New("read grey/authfail: input/output error")
}

func (brokenLimiter) Failed(netip.Prefix, time.Time) (bool, error) {
	return true, errors.New("write grey/authfail: input/output error")
}

// TestAuthLimiterBroken: when the AUTH failure store fails, the error is
// logged and nobody is locked out for it; the session's limit still holds.
func TestAuthLimiterBroken(t *testing.T) {
	ts := newTestServerWith(t, "plaintextauth on", func(s *Server) { s.AuthLimiter = brokenLimiter{} })
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	c := ts.ehloed("192.0.2.7")
	for range maxAuthFails {
		c.send("AUTH PLAIN " + b64("\x00glenda\x00wrong"))
		c.expect("535 ")
	}
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("503 5.7.0 too many authentication failures")
	c = ts.ehloed("192.0.2.7")
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("235 ")
	for _, want := range []string{"AUTH failures of 192.0.2.7: read grey/authfail: input/output error", "AUTH failures of 192.0.2.7: write grey/authfail"} {
		if !strings.Contains(ts.logbuf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, ts.logbuf)
		}
	}
}
