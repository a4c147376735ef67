package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// TestLimits: EHLO says LIMITS with the configured maxrcpts and maxmails
// (RFC 9422), and both hold: the recipient past RCPTMAX gets 452, and the
// MAIL past MAILMAX, counting refused ones, gets 421 and the end of the
// session.
func TestLimits(t *testing.T) {
	ts := newTestServer(t, "maxrcpts 100\nmaxmails 3")
	c := ts.greeted("192.0.2.7")
	c.send("EHLO client.example.net")
	if got := c.reply(); !strings.Contains(strings.Join(got, "|"), "|250-LIMITS RCPTMAX=100 MAILMAX=3|") {
		t.Errorf("EHLO: %q", got)
	}
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("250 ")
	for i := range 100 {
		c.send(fmt.Sprintf("RCPT TO:<bob+%d@example.org>", i))
		c.reply()
	}
	c.check("RCPT TO:<one.too.many@example.org>", "452 4.5.3 Too many recipients")
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<a@sender.net> BOGUS=1", "555 ") // refused, and counted
	c.check("MAIL FROM:<a@sender.net>", "250 ")
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<a@sender.net>", "421 4.7.0 example.org too many transactions in one session (MAILMAX 3)")
	if !c.closed() {
		t.Error("session not closed after MAILMAX")
	}
	// A new session may go on.
	c = ts.ehloed("192.0.2.7")
	c.check("MAIL FROM:<a@sender.net>", "250 ")
}
