package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"smtpfs/grey"
	"smtpfs/test/testlib"
)

var (
	local  = netip.MustParseAddr("198.51.100.1")
	client = netip.MustParseAddr("192.0.2.7")
)

// logbuf collects log lines.
type logbuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logbuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logbuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A host is one MX host on the shared store: its store, its greylist and
// its log.
type host struct {
	t     *testing.T
	local netip.Addr // the host's own address, which clients talk to
	store *Store
	g     *grey.Greylist
	log   *logbuf
	clk   *clock
}

// newHost opens a store on r for a host whose clock is clk, mirrored.
func newHost(t *testing.T, r *testlib.Redis, clk *clock) *host {
	t.Helper()
	h := &host{t: t, local: local, log: &logbuf{}, clk: clk}
	s, err := Open(r.URL(0), Options{Log: log.New(h.log, "", 0), Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h.store = s
	h.g = grey.New(s, log.New(h.log, "", 0))
	h.g.Now = clk.Now
	return h
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// check runs one Check and compares its verdict, and optionally a log
// line it must have written.
func (h *host) check(remote netip.Addr, rcpts []string, want bool, logged string) {
	h.t.Helper()
	before := len(h.log.String())
	if got := h.g.Check(h.local, remote, "example.com!alice", rcpts); got != want {
		h.t.Errorf("Check(%v, %q) = %v, want %v; log:\n%s", remote, rcpts, got, want, h.log.String()[before:])
	}
	if logged != "" && !strings.Contains(h.log.String()[before:], logged) {
		h.t.Errorf("Check(%v, %q) did not log %q:\n%s", remote, rcpts, logged, h.log.String()[before:])
	}
}

// rdb is a plain client on r, for looking at what the store keeps.
func rdb(t *testing.T, r *testlib.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGreylistWindow walks upas's algorithm on the Redis store, on one
// host: refused and registered, too soon (the clock does not move), in
// the window (passes, whitelisted), whitelisted for any recipient, and
// after the window (too late, registered again).
func TestGreylistWindow(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	h := newHost(t, r, clk)
	h.check(client, []string{"example.org!bob"}, false, "no call registered for 192.0.2.7/example.org!bob; registering")
	clk.Add(2 * time.Minute)
	h.check(client, []string{"example.org!bob"}, false, "(2m0s ago: too soon)")
	clk.Add(4 * time.Minute)
	h.check(client, []string{"example.org!carol", "example.org!bob"}, true, "192.0.2.7/example.org!bob was grey; adding IP to white")
	h.check(client, []string{"example.org!dave"}, true, "192.0.2.7 whitelisted")
	if text, err := h.store.Whitelist().Bytes(); err != nil || string(text) != "192.0.2.7\n" {
		t.Errorf("whitelist %q, %v", text, err)
	}

	other := netip.MustParseAddr("192.0.2.8")
	h.check(other, []string{"example.org!bob"}, false, "no call registered")
	clk.Add(15 * time.Hour)
	h.check(other, []string{"example.org!bob"}, false, "(15h0m0s ago: too late; registering again)")
	clk.Add(10 * time.Minute)
	h.check(other, []string{"example.org!bob"}, true, "was grey")
}

// TestSharedHosts: three hosts on one Redis, each on an address of its
// own. A first try at A is refused; the retry at B after the window
// passes (a triplet is the client and the recipient: the MX host it
// retries at is not part of it); C sees the client whitelisted (by the
// Check script's lookup, before its index has it, and then in its index),
// and its whitelist reads the same.
func TestSharedHosts(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	a, b, c := newHost(t, r, clk), newHost(t, r, clk), newHost(t, r, clk)
	b.local, c.local = netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8::25")
	a.check(client, []string{"bob"}, false, "registering")
	clk.Add(6 * time.Minute)
	b.check(client, []string{"bob"}, true, "was grey")
	c.check(client, []string{"carol"}, true, "192.0.2.7 whitelisted")
	testlib.WaitFor(t, 10*time.Second, "C's index to have the client", func() bool {
		return c.store.Whitelist().Contains(client)
	})
	for _, h := range []*host{a, b, c} {
		if text, err := h.store.Whitelist().Bytes(); err != nil || string(text) != "192.0.2.7\n" {
			t.Errorf("whitelist %q, %v", text, err)
		}
	}
}

// TestBounds: greypermsg, greyperclient and greytriplets hold across
// hosts: the counts are Redis's, not a host's.
func TestBounds(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	a, b := newHost(t, r, clk), newHost(t, r, clk)
	s := grey.DefaultSettings
	s.PerMessage, s.PerClient, s.MaxTriplets = 2, 3, 5
	a.g.SetSettings(s)
	b.g.SetSettings(s)
	a.check(client, []string{"a", "b", "c"}, false, "2 new recipients of the message registered, greypermsg's limit: not registering 192.0.2.7/c")
	b.check(client, []string{"c", "d"}, false, "192.0.2.7 has 3 triplets, greyperclient's limit: not registering 192.0.2.7/d")
	a.check(netip.MustParseAddr("192.0.2.9"), []string{"x", "y"}, false, "no call registered for 192.0.2.9/y")
	b.check(netip.MustParseAddr("192.0.2.10"), []string{"z"}, false, "greylist full (5 triplets): not registering 192.0.2.10/z")
	clk.Add(6 * time.Minute)
	b.check(client, []string{"a"}, true, "was grey") // registered ones still pass

	// Past the window, the triplets go and make room again: Expire counts
	// them off; so does any Check for the clients it meets.
	clk.Add(15 * time.Hour)
	removed, kept, err := a.g.Expire(context.Background())
	if removed != 5 || kept != 0 || err != nil {
		t.Errorf("Expire = %d, %d, %v; want 5, 0", removed, kept, err)
	}
	if n, _ := rdb(t, r).Get(context.Background(), keyTotal).Int(); n != 0 {
		t.Errorf("total %d after Expire, want 0", n)
	}
	b.check(netip.MustParseAddr("192.0.2.10"), []string{"z"}, false, "no call registered for 192.0.2.10/z")
}

// TestSweepInCheck: a Check forgets clients whose triplets are all past
// the window, counting them off the total, even when Redis has already
// dropped their sets.
func TestSweepInCheck(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	h := newHost(t, r, clk)
	s := grey.DefaultSettings
	s.MaxTriplets = 2
	h.g.SetSettings(s)
	h.check(netip.MustParseAddr("192.0.2.1"), []string{"a"}, false, "registering")
	h.check(netip.MustParseAddr("192.0.2.2"), []string{"a"}, false, "registering")
	h.check(netip.MustParseAddr("192.0.2.3"), []string{"a"}, false, "greylist full")
	rdb(t, r).Del(context.Background(), keyClientPrefix+"192.0.2.1") // as its PEXPIRE would
	clk.Add(15 * time.Hour)
	h.check(netip.MustParseAddr("192.0.2.3"), []string{"a"}, false, "no call registered for 192.0.2.3/a")
	if n, _ := rdb(t, r).Get(context.Background(), keyTotal).Int(); n != 1 {
		t.Errorf("total %d, want 1", n)
	}
	if ttl := rdb(t, r).PTTL(context.Background(), keyClientPrefix+"192.0.2.3").Val(); ttl <= 14*time.Hour || ttl > 14*time.Hour+grace {
		t.Errorf("the client's triplets expire in %v, want 14h and the grace", ttl)
	}
}

// TestIPv6Client: an IPv6 client's triplets count under its /64.
func TestIPv6Client(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	h := newHost(t, r, clk)
	s := grey.DefaultSettings
	s.PerClient = 2
	h.g.SetSettings(s)
	h.check(netip.MustParseAddr("2001:db8:1:2::1"), []string{"a", "b"}, false, "registering")
	h.check(netip.MustParseAddr("2001:db8:1:2::99"), []string{"c"}, false, "2001:db8:1:2::/64 has 2 triplets, greyperclient's limit")
	clk.Add(time.Hour)
	h.check(netip.MustParseAddr("2001:db8:1:2::1"), []string{"b"}, true, "was grey")
	h.check(netip.MustParseAddr("2001:db8:1:2::1"), []string{"x"}, true, "whitelisted")
}

// TestDown: with Redis gone, a Check neither waits nor fails the session:
// greyfail open lets the message through, closed refuses it, each
// counted; the store says it is down, once, and when Redis is back, that
// it is back, and answers again. A whitelisted client still passes from
// the local index.
func TestDown(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	h := newHost(t, r, clk)
	if err := h.store.Whitelist().Add("192.0.2.50\n"); err != nil {
		t.Fatal(err)
	}
	h.check(client, []string{"bob"}, false, "registering")
	r.Kill()
	start := time.Now()
	h.check(client, []string{"bob"}, true, "letting 192.0.2.7 through")
	if d := time.Since(start); d > Timeout+100*time.Millisecond {
		t.Errorf("the Check that found Redis gone took %v", d)
	}
	start = time.Now()
	for range 100 {
		h.check(client, []string{"bob"}, true, "greystore down since")
	}
	if d := time.Since(start); d > Timeout {
		t.Errorf("100 Checks while down took %v: they should not wait", d)
	}
	s := h.g.Settings()
	s.FailClosed = true
	h.g.SetSettings(s)
	h.check(client, []string{"bob"}, false, "greyfail closed: rejecting 192.0.2.7 with temporary failure")
	h.check(netip.MustParseAddr("192.0.2.50"), []string{"bob"}, true, "192.0.2.50 whitelisted")
	if n := h.g.Unchecked(); n != 102 {
		t.Errorf("Unchecked = %d, want 102", n)
	}
	if st := h.store.State(); st.Up || st.Outages != 1 || st.Err == nil {
		t.Errorf("state while down: %+v", st)
	}
	if err := h.store.Whitelist().Add("192.0.2.51\n"); !errors.Is(err, ErrDown) {
		t.Errorf("an append while down: %v, want ErrDown", err)
	}
	if n := strings.Count(h.log.String(), ": down: "); n != 1 {
		t.Errorf("the log says down %d times:\n%s", n, h.log)
	}

	r.Restart()
	select {
	case <-h.store.Back():
	case <-time.After(20 * time.Second):
		t.Fatalf("not back 20s after Redis came back:\n%s", h.log)
	}
	if !strings.Contains(h.log.String(), "greystore redis://"+r.Addr+"/0: back after ") {
		t.Errorf("the log does not say it is back:\n%s", h.log)
	}
	// The restarted Redis is empty: the client starts again, and the
	// index follows the empty list.
	h.check(client, []string{"bob"}, false, "no call registered")
	testlib.WaitFor(t, 10*time.Second, "the index to be read again", func() bool {
		return h.store.Whitelist().Len() == 0
	})
}

// TestAuthLimiter: failures counted at one host lock the client out at
// another; another client is not locked out; the lockout ends.
func TestAuthLimiter(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	a, b := newHost(t, r, clk), newHost(t, r, clk)
	la := a.store.AuthLimiter(3, 10*time.Minute, 15*time.Minute)
	lb := b.store.AuthLimiter(3, 10*time.Minute, 15*time.Minute)
	c := netip.MustParsePrefix("192.0.2.7/32")
	now := clk.Now()
	for i, want := range []bool{false, false, true} {
		l := la
		if i == 1 {
			l = lb
		}
		if locked, err := l.Failed(c, now); locked != want || err != nil {
			t.Errorf("failure %d: %v, %v; want %v", i+1, locked, err, want)
		}
	}
	if locked, err := lb.Locked(c, now.Add(time.Minute)); !locked || err != nil {
		t.Errorf("B: locked %v, %v", locked, err)
	}
	if locked, _ := lb.Locked(netip.MustParsePrefix("192.0.2.8/32"), now); locked {
		t.Errorf("another client is locked out")
	}
	if locked, _ := la.Locked(c, now.Add(16*time.Minute)); locked {
		t.Errorf("still locked out after the lockout")
	}
	// A window that passed starts again.
	d := netip.MustParsePrefix("2001:db8::/64")
	la.Failed(d, now)
	la.Failed(d, now)
	if locked, _ := la.Failed(d, now.Add(11*time.Minute)); locked {
		t.Errorf("locked out by failures in two windows")
	}
	ttl := rdb(t, r).PTTL(context.Background(), keyAuthPrefix+"2001:db8::/64").Val()
	if ttl <= 0 || ttl > 10*time.Minute+2*time.Second {
		t.Errorf("the count expires in %v", ttl)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url, err string
		addr     string
		db       int
		user, pw string
	}{
		{url: "redis://127.0.0.1:6380/2", addr: "127.0.0.1:6380", db: 2},
		{url: "redis://redis.example", addr: "redis.example:6379"},
		{url: "rediss://u:p%40ss@[::1]:7000/0", addr: "[::1]:7000", user: "u", pw: "p@ss"},
		{url: "redis://:secret@h/1", addr: "h:6379", db: 1, pw: "secret"},
		{url: "http://h/0", err: "scheme must be redis or rediss"},
		{url: "redis:///0", err: "no host"},
		{url: "redis://h/0?dial_timeout=3s", err: "no query"},
		{url: "redis://h/zero", err: "invalid"},
		{url: "redis://u:sekrit@h/x", err: "invalid greystore URL redis://u:xxxxx@h/x"},
	} {
		o, err := ParseURL(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "sekrit") {
				t.Errorf("ParseURL(%q) = %v, want an error with %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil || o.Addr != tc.addr || o.DB != tc.db || o.Username != tc.user || o.Password != tc.pw || o.MaxRetries != -1 {
			t.Errorf("ParseURL(%q) = %+v, %v", tc.url, o, err)
		}
	}
	if got := Redact("redis://u:sekrit@h:1/0"); got != "redis://u:xxxxx@h:1/0" {
		t.Errorf("Redact = %q", got)
	}
}

// fill is n whitelist lines for the tests.
func fill(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "10.%d.%d.%d host%d.example\n", i>>16&255, i>>8&255, i&255, i)
	}
	return b.String()
}

// acl is the Redis user smtpd(8) gives smtpfs: its keys and channel,
// no dangerous commands.
var acl = []string{"ACL", "SETUSER", "smtpfs", "on", ">s3cret", "resetkeys", "~smtpfs:*", "resetchannels", "&smtpfs:*",
	"-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection", "+@transaction", "-@dangerous"}

// TestACL: everything the store does works as smtpd(8)'s Redis user,
// and Redis refused nothing (its ACL LOG is empty).
func TestACL(t *testing.T) {
	r := testlib.NewRedis(t)
	if got, err := r.Do(acl...); got != "+OK" || err != nil {
		t.Fatalf("ACL SETUSER: %q, %v", got, err)
	}
	var logs logbuf
	s, err := Open("redis://smtpfs:s3cret@"+r.Addr+"/0", Options{Mirror: true, Log: log.New(&logs, "", 0),
		Import: func() ([]byte, error) { return []byte("# mine\n10.0.0.2\n"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clk := newClock()
	g := grey.New(s, log.New(&logs, "", 0))
	g.Now = clk.Now
	g.Check(local, client, "", []string{"bob"})
	clk.Add(6 * time.Minute)
	if !g.Check(local, client, "", []string{"bob"}) {
		t.Errorf("the retry did not pass:\n%s", logs.String())
	}
	if err := s.Whitelist().Add("10.0.0.1\n"); err != nil {
		t.Error(err)
	}
	if _, err := s.Whitelist().Remove(netip.MustParsePrefix("10.0.0.1/32")); err != nil {
		t.Error(err)
	}
	if _, _, err := g.Expire(context.Background()); err != nil {
		t.Error(err)
	}
	l := s.AuthLimiter(3, time.Minute, time.Minute)
	if _, err := l.Failed(netip.MustParsePrefix("10.0.0.9/32"), clk.Now()); err != nil {
		t.Error(err)
	}
	if _, err := l.Locked(netip.MustParsePrefix("10.0.0.9/32"), clk.Now()); err != nil {
		t.Error(err)
	}
	testlib.WaitFor(t, 10*time.Second, "the import and the index", func() bool { return s.Whitelist().Len() == 2 })
	if st := s.State(); st.Outages != 0 {
		t.Errorf("the store went down: %v", st.Err)
	}
	if got, err := r.Do("ACL", "LOG"); got != "*0" || err != nil {
		t.Errorf("ACL LOG: %q, %v: Redis refused a command", got, err)
	}
}

// TestCheckSender: a sender domain that passed SPF is greylisted as the
// pair (domain, recipient) across hosts: a first try from one of its
// servers at A, the retry from another at B passes. The triplet is in the
// domain's set and counts for the client that registered it: greyperclient
// counts the real client (another of the domain's has its share), the
// total counts it once, Expire keeps the counts, and past the window the
// domain's triplet is too late and registered again.
func TestCheckSender(t *testing.T) {
	r := testlib.NewRedis(t)
	rc := rdb(t, r)
	ctx := context.Background()
	clk := newClock()
	ha, hb := newHost(t, r, clk), newHost(t, r, clk)
	hb.local = netip.MustParseAddr("198.51.100.2")
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("203.0.113.9")
	sender := func(h *host, remote netip.Addr, domain string, rcpts []string, want bool, logged string) {
		t.Helper()
		before := len(h.log.String())
		if got := h.g.CheckSender(h.local, remote, domain, "alice@"+domain, rcpts); got != want {
			t.Errorf("CheckSender(%v, %s, %q) = %v, want %v; log:\n%s", remote, domain, rcpts, got, want, h.log.String()[before:])
		}
		if logged != "" && !strings.Contains(h.log.String()[before:], logged) {
			t.Errorf("CheckSender(%v, %s) did not log %q:\n%s", remote, domain, logged, h.log.String()[before:])
		}
	}
	sender(ha, a, "Farm.Example", []string{"bob"}, false, "farm.example passed SPF for 192.0.2.1: greylisting its domain's triplets")
	if _, err := rc.ZScore(ctx, keySenderPrefix+"farm.example", "bob").Result(); err != nil {
		t.Errorf("the domain's triplet: %v", err)
	}
	if _, err := rc.ZScore(ctx, keyClientPrefix+"192.0.2.1", "@farm.example/bob").Result(); err != nil {
		t.Errorf("the triplet in its client's set: %v", err)
	}
	clk.Add(6 * time.Minute)
	hb.check(c, []string{"bob"}, false, "no call registered for 203.0.113.9/bob; registering")
	sender(hb, b, "farm.example", []string{"bob"}, true, "192.0.2.2/bob was grey; adding IP to white")

	s := grey.DefaultSettings
	s.PerClient = 3
	ha.g.SetSettings(s)
	hb.g.SetSettings(s)
	sender(ha, a, "farm.example", []string{"r1", "r2"}, false, "")
	ha.check(a, []string{"r3"}, false, "192.0.2.1 has 3 triplets, greyperclient's limit: not registering 192.0.2.1/r3")
	sender(hb, a, "other.example", []string{"r3"}, false, "192.0.2.1 has 3 triplets, greyperclient's limit")
	sender(hb, c, "farm.example", []string{"r3"}, false, "no call registered for 203.0.113.9/r3; registering")
	removed, kept, err := ha.g.Expire(ctx)
	if removed != 0 || kept != 5 || err != nil {
		t.Errorf("Expire = %d, %d, %v; want 0, 5 (a's three, c's two)", removed, kept, err)
	}
	if n, _ := rc.Get(ctx, keyTotal).Int(); n != 5 {
		t.Errorf("total %d, want 5", n)
	}
	sender(hb, c, "farm.example", []string{"r4"}, false, "no call registered for 203.0.113.9/r4")
	sender(ha, c, "farm.example", []string{"r5"}, false, "203.0.113.9 has 3 triplets, greyperclient's limit")

	clk.Add(15 * time.Hour)
	if removed, kept, err := ha.g.Expire(ctx); removed != 6 || kept != 0 || err != nil {
		t.Errorf("Expire after the window = %d, %d, %v; want 6, 0", removed, kept, err)
	}
	sender(ha, c, "farm.example", []string{"r3"}, false, "ago: too late; registering again)")
	if n, _ := rc.Get(ctx, keyTotal).Int(); n != 1 {
		t.Errorf("total %d, want 1", n)
	}
	if ttl := rc.PTTL(ctx, keySenderPrefix+"farm.example").Val(); ttl <= 14*time.Hour || ttl > 14*time.Hour+grace {
		t.Errorf("the domain's triplets expire in %v, want 14h and the grace", ttl)
	}
}
