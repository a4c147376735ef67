package smtpd

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// An untrusted client gets loopbackrcpts recipients at its own address
// per message (452 past them, the message going on with those it has);
// repeats, local recipients and trusted clients are not counted.
func TestLoopbackPerMessage(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8")
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	for i := range 10 {
		c.check("RCPT TO:<me"+strconv.Itoa(i)+"@[]>", "250 2.0.0 receiver is [192.0.2.7]!me")
	}
	c.check("RCPT TO:<me10@[]>", "452 4.5.3 Too many recipients at [] in one message; send the rest later")
	c.check("RCPT TO:<me0@[]>", "250 ")          // said before: no new recipient
	c.check("RCPT TO:<\"[]!me0\">", "250 ")      // the same address, written otherwise
	c.check("RCPT TO:<bob@example.org>", "250 ") // local
	c.send("DATA")
	c.expect("354 ")
	c.send(".")
	c.expect("250 2.5.0 sent")
	if m := q.all(); len(m) != 1 || len(m[0].rcpts) != 10 {
		t.Errorf("queued %v", m)
	}

	// A trusted client is not bounded.
	c = ts.ehloed("10.0.0.1")
	var rcpts []string
	for i := range 30 {
		rcpts = append(rcpts, "me"+strconv.Itoa(i)+"@[]")
	}
	if got := c.mail("a@example.org", rcpts, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("trusted: %q", got)
	}
}

// With norelay off, the client's own address written as a literal counts
// as [] does; other literals are plain relaying.
func TestLoopbackLiteral(t *testing.T) {
	ts := newTestServer(t, "norelay off\nloopbackrcpts 1")
	ts.Queue = &fakeQueue{}
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	c.check("RCPT TO:<me@[192.0.2.7]>", "250 ")
	c.check("RCPT TO:<you@[]>", "452 4.5.3 ")
	c.check("RCPT TO:<you@[192.0.2.7]>", "452 4.5.3 ")
	c.check("RCPT TO:<you@[192.0.2.8]>", "250 ")
	c.check("RCPT TO:<you@elsewhere.com>", "250 ")
}

// loopbackrcpts 0 refuses mail to [] from untrusted clients for good.
func TestLoopbackOff(t *testing.T) {
	ts := newTestServer(t, "loopbackrcpts 0")
	ts.Queue = &fakeQueue{}
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	c.check("RCPT TO:<me@[]>", "550 5.7.1 we don't take mail for [] from 192.0.2.7")
	if !strings.Contains(ts.logbuf.String(), "refused [192.0.2.7]!me: loopbackrcpts 0") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// A testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Per client and window, loopbackrate messages and recipients at its own
// address: past them, 450 4.7.1 until the window is over. Messages not
// accepted do not count; another client has its own count.
func TestLoopbackRate(t *testing.T) {
	clock := &testClock{now: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)}
	ts := newTestServerWith(t, "loopbackrate 3 15 1h\nmaxerrors 100", func(s *Server) { s.Now = clock.Now })
	q := &fakeQueue{}
	ts.Queue = q
	send := func(ip string, n int) []string {
		t.Helper()
		c := ts.ehloed(ip)
		c.send("MAIL FROM:<a@elsewhere.net>")
		c.expect("250 ")
		var replies []string
		for i := range n {
			c.send("RCPT TO:<me" + strconv.Itoa(i) + "@[]>")
			replies = append(replies, c.reply()[0][:3])
		}
		c.send("RSET")
		c.expect("250 ")
		return replies
	}
	c := ts.ehloed("192.0.2.7")
	c.mail("a@elsewhere.net", []string{"a@[]", "b@[]", "c@[]", "d@[]", "e@[]", "f@[]", "g@[]", "h@[]", "i@[]", "j@[]"}, "")
	if got := strings.Join(send("192.0.2.7", 7), " "); got != "250 250 250 250 250 450 450" {
		t.Errorf("second message, not sent: %s", got) // 10 sent, 5 in this transaction: the bound of 15
	}
	c.mail("a@elsewhere.net", []string{"a@[]", "b@[]"}, "")
	c.mail("a@elsewhere.net", []string{"c@[]"}, "")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	c.check("RCPT TO:<x@[]>", "450 4.7.1 Too much mail for [] from 192.0.2.7; try again later")
	c.send("RSET")
	c.expect("250 ")
	if n := len(q.all()); n != 3 {
		t.Errorf("%d messages queued, want 3", n)
	}
	if got := strings.Join(send("192.0.2.8", 2), " "); got != "250 250" {
		t.Errorf("another client: %s", got)
	}
	clock.advance(time.Hour)
	if got := strings.Join(send("192.0.2.7", 2), " "); got != "250 250" {
		t.Errorf("after the window: %s", got)
	}
	if !strings.Contains(ts.logbuf.String(), "refused [192.0.2.7]!x: 3 messages and 13 recipients for [] within 1h0m0s (loopbackrate)") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// The limiter forgets clients past loopClients, those whose window is
// over first.
func TestLoopLimiterBounded(t *testing.T) {
	var l loopLimiter
	now := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	client := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	n := 3 * loopClients
	for i := range n {
		l.add(client(i), now.Add(time.Duration(i)*time.Second), time.Hour, 1)
	}
	if len(l.m) > loopClients {
		t.Errorf("%d clients remembered, want at most %d", len(l.m), loopClients)
	}
	if m, r := l.count(client(n-1), now.Add(time.Duration(n)*time.Second), time.Hour); m != 1 || r != 1 {
		t.Errorf("the last client: %d %d", m, r)
	}
}
