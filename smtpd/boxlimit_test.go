package smtpd

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestBoxLimiter: a client makes at most limit boxes in its hour, then
// again in the next; what it gives back of its hour it may take again,
// and nothing it gives back of an hour that is over counts.
func TestBoxLimiter(t *testing.T) {
	var l boxLimiter
	now := time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)
	c := clientNet(netip.MustParseAddr("192.0.2.7"))
	var since time.Time
	for i := range 3 {
		s, ok := l.take(c, now.Add(time.Duration(i)*time.Minute), 3)
		if !ok || !s.Equal(now) {
			t.Fatalf("box %d refused (%v, %v)", i, ok, s)
		}
		since = s
	}
	if _, ok := l.take(c, now.Add(59*time.Minute), 3); ok {
		t.Errorf("a fourth box in the hour")
	}
	if _, ok := l.take(clientNet(netip.MustParseAddr("192.0.2.8")), now, 3); !ok {
		t.Errorf("another client refused")
	}
	l.give(c, since, 2)
	for range 2 {
		if _, ok := l.take(c, now.Add(59*time.Minute), 3); !ok {
			t.Errorf("a box given back cannot be taken again")
		}
	}
	if _, ok := l.take(c, now.Add(59*time.Minute), 3); ok {
		t.Errorf("more boxes than given back")
	}
	next := now.Add(time.Hour)
	if s, ok := l.take(c, next, 3); !ok || !s.Equal(next) {
		t.Errorf("refused in the next hour (%v)", ok)
	}
	l.give(c, since, 3) // of the hour before: nothing
	for range 2 {
		l.take(c, next, 3)
	}
	if _, ok := l.take(c, next, 3); ok {
		t.Errorf("boxes of an hour that is over given back into the next")
	}
	// An IPv6 client is its /64.
	a, b := clientNet(netip.MustParseAddr("2001:db8::1")), clientNet(netip.MustParseAddr("2001:db8::ffff"))
	l.take(a, now, 1)
	if _, ok := l.take(b, now, 1); ok {
		t.Errorf("another address of the same /64 has a box of its own")
	}
}

// TestBoxLimiterBounded: the limiter remembers at most boxClients; when
// they are all within their hour, a newcomer may make no box (the limit
// holds, and its memory), without sweeping the table each time; once
// hours end, their clients make room.
func TestBoxLimiterBounded(t *testing.T) {
	var l boxLimiter
	now := time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)
	ip := func(i int) netip.Prefix {
		return clientNet(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := range boxClients {
		if _, ok := l.take(ip(i), now.Add(time.Duration(i)*time.Millisecond), 5); !ok {
			t.Fatalf("client %d refused", i)
		}
	}
	for i := boxClients; i < 2*boxClients; i++ {
		if _, ok := l.take(ip(i), now.Add(30*time.Minute), 5); ok {
			t.Fatalf("client %d made a box with the table full", i)
		}
	}
	if len(l.m) != boxClients || !l.swept.Equal(now.Add(time.Hour)) {
		t.Errorf("%d clients, no room before %v", len(l.m), l.swept)
	}
	if _, ok := l.take(ip(0), now.Add(30*time.Minute), 5); !ok {
		t.Errorf("a client in the table refused")
	}
	// The first client's hour is over: its place is free.
	if _, ok := l.take(ip(2*boxClients), now.Add(time.Hour), 5); !ok || len(l.m) != boxClients {
		t.Errorf("no room once an hour ended (%v, %d clients)", ok, len(l.m))
	}
}

// TestNewBoxHourLimit: with mkbox on, an untrusted client makes at most
// mkboxperhour boxes an hour across its sessions and messages; past it a
// new user gets 450 4.7.1, while existing boxes, postmaster, other
// clients and trusted ones are not held back. Boxes counted for a
// transaction that delivered nothing (RSET, a session that ends) are
// given back; an hour on, the client may make boxes again.
func TestNewBoxHourLimit(t *testing.T) {
	var clock atomic.Int64
	start := time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)
	clock.Store(start.UnixNano())
	ts := newTestServerWith(t, "mkboxperhour 3\nournets 10.0.0.0/8", func(s *Server) {
		s.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	})
	c := ts.ehloed("192.0.2.7")
	if got := c.mail("a@elsewhere.net", []string{"a@example.org", "b@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Fatalf("two new boxes: %q", got)
	}
	c.send("QUIT")
	c.expect("221 ")

	c = ts.ehloed("192.0.2.7")
	c.begin("a@elsewhere.net", "c@example.org")
	c.check("RCPT TO:<d@example.org>", "450 4.7.1 <d@example.org> ... too many new mailboxes from 192.0.2.7 this hour; try again later")
	for _, r := range []string{"a@example.org", "postmaster@example.org", "c+x@example.org"} {
		c.check("RCPT TO:<"+r+">", "250 ")
	}
	c.send("RSET") // c was counted, and is given back
	c.expect("250 ")
	c.begin("a@elsewhere.net", "e@example.org")
	c.send("QUIT") // so is e
	c.expect("221 ")

	c = ts.ehloed("192.0.2.7")
	if got := c.mail("a@elsewhere.net", []string{"f@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Fatalf("the box given back: %q", got)
	}
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	c.check("RCPT TO:<g@example.org>", "450 4.7.1 ")
	c.send("RSET")
	c.expect("250 ")

	other := ts.ehloed("192.0.2.8")
	trusted := ts.ehloed("10.0.0.1")
	for i, cl := range []*client{other, trusted, trusted} {
		var rcpts []string
		for j := range 3 {
			rcpts = append(rcpts, fmt.Sprintf("u%d-%d@example.org", i, j))
		}
		if got := cl.mail("a@elsewhere.net", rcpts, ""); got[0] != "250 2.5.0 sent" {
			t.Errorf("client %d: %q", i, got)
		}
	}
	for _, box := range []string{"a", "b", "f", "u0-0", "u2-2"} {
		if !ts.Maildir.HasBox(box) {
			t.Errorf("no box %s", box)
		}
	}
	for _, box := range []string{"c", "d", "e", "g", "postmaster"} {
		if ts.Maildir.HasBox(box) {
			t.Errorf("a box %s was made", box)
		}
	}

	clock.Store(start.Add(time.Hour).UnixNano())
	if got := c.mail("a@elsewhere.net", []string{"g@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("an hour on: %q", got)
	}
}
