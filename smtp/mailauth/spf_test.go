package mailauth

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// Cases the openspf suite leaves out.

func TestSPFIdentity(t *testing.T) {
	m := newMemDNS().
		txt("example.com", "v=spf1 ip4:192.0.2.0/24 -all").
		txt("mx.example.net", "v=spf1 a -all").
		add("mx.example.net", "A", "198.51.100.7")
	c := &Checker{Resolver: m}
	ctx := context.Background()
	ip := netip.MustParseAddr("198.51.100.7")

	r := c.CheckSPF(ctx, ip, "mx.example.net", "bounce@Example.COM")
	if r.Result != Fail || r.Identity != "mailfrom" || r.Domain != "example.com" || r.Mechanism != "-all" {
		t.Errorf("MAIL FROM: %+v", r)
	}
	// The null reverse-path: postmaster@helo is checked (RFC 7208 §2.4).
	r = c.CheckSPF(ctx, ip, "mx.example.net", "")
	if r.Result != Pass || r.Identity != "helo" || r.Sender != "postmaster@mx.example.net" || r.Lookups != 1 {
		t.Errorf("null reverse-path: %+v", r)
	}
	// An IPv4-mapped client is an IPv4 client (§5).
	r = c.CheckSPF(ctx, netip.MustParseAddr("::ffff:192.0.2.9"), "x", "a@example.com")
	if r.Result != Pass || r.IP.String() != "192.0.2.9" {
		t.Errorf("IPv4-mapped client: %+v", r)
	}
	if r := c.CheckSPF(ctx, netip.Addr{}, "x", "a@example.com"); r.Result != None {
		t.Errorf("no client address: %+v", r)
	}
}

// slowDNS answers nothing until the context ends.
type slowDNS struct{ memDNS }

func (s *slowDNS) LookupTXT(ctx context.Context, name string) ([]string, Answer, error) {
	<-ctx.Done()
	return nil, Answer{}, &DNSError{Name: name, Type: "TXT", Err: ctx.Err().Error()}
}

func TestSPFTimeout(t *testing.T) {
	c := &Checker{Resolver: &slowDNS{}, SPFTimeout: 50 * time.Millisecond}
	start := time.Now()
	r := c.CheckSPF(context.Background(), netip.MustParseAddr("192.0.2.1"), "x", "a@example.com")
	if r.Result != TempError || !strings.Contains(r.Reason, "longer than 50ms") {
		t.Errorf("check that outlives its bound: %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the check took %v", d)
	}
}

func TestSPFExplanationSafe(t *testing.T) {
	// An explanation goes into an SMTP reply: a line break or a control
	// character in it, from DNS or from a macro, drops it (RFC 7208 §6.2).
	m := newMemDNS().
		txt("crlf.example", "v=spf1 exp=e.crlf.example -all").
		txt("e.crlf.example", "denied\r\n250 fake").
		txt("macro.example", "v=spf1 exp=e.macro.example -all").
		txt("e.macro.example", "denied for %{l}").
		txt("long.example", "v=spf1 exp=e.long.example -all").
		txt("e.long.example", strings.Repeat("x", 600)).
		txt("ok.example", "v=spf1 exp=e.ok.example -all").
		txt("e.ok.example", "%{i} is not one of %{d}'s; ask %{r} at %{t}")
	c := &Checker{Resolver: m, Hostname: "mx.example.org", Now: func() time.Time { return time.Unix(1700000000, 0) }}
	ip := netip.MustParseAddr("192.0.2.1")
	for from, want := range map[string]string{
		"a@crlf.example":              "",
		"x\x01y@macro.example":        "",
		"a@long.example":              "",
		"a@ok.example":                "192.0.2.1 is not one of ok.example's; ask mx.example.org at 1700000000",
		"\"quoted local\"@ok.example": "192.0.2.1 is not one of ok.example's; ask mx.example.org at 1700000000",
	} {
		r := c.CheckSPF(context.Background(), ip, "x", from)
		if r.Result != Fail || r.Explanation != want {
			t.Errorf("%q: %s %q, want fail %q", from, r.Result, r.Explanation, want)
		}
	}
}

func TestSPFOverDNS(t *testing.T) {
	// The whole way: a record on a loopback DNS server, with a macro that
	// makes a name no host has (a space in it).
	srv := testlib.NewDNS(t, `
example.org.                    TXT "v=spf1 exists:%{l}.%{d} -all"
john\ smith.example.org.        A 127.0.0.2
`)
	c := &Checker{Resolver: NewCache(NewDNS(srv.Addr), 0)}
	ip := netip.MustParseAddr("192.0.2.1")
	if r := c.CheckSPF(context.Background(), ip, "x", "john smith@example.org"); r.Result != Pass {
		t.Errorf("john smith: %s", r)
	}
	if r := c.CheckSPF(context.Background(), ip, "x", "jane@example.org"); r.Result != Fail {
		t.Errorf("jane: %s", r)
	}
}

func TestParseSPFErrors(t *testing.T) {
	for _, rec := range []string{
		"v=spf1 a:%{z}.example.com",  // unknown macro letter
		"v=spf1 a:%{d0}.example.com", // zero digits
		"v=spf1 exists:%{l",          // unclosed
		"v=spf1 a:example.com%",      // lone %
		"v=spf1 ip4:192.0.2.0/24/1",
		"v=spf1 ip6:2001:db8::/129",
		"v=spf1 ip4:2001:db8::1",
		"v=spf1 ip6:192.0.2.1",
		"v=spf1 ip6:fe80::1%eth0",
		"v=spf1 a:example.com\tmx",
	} {
		if _, err := parseSPF(rec); err == nil {
			t.Errorf("parseSPF(%q) accepted", rec)
		}
	}
	r, err := parseSPF("v=spf1 a:%{d}. mx:%{ir}.%{v}._spf.%{d2} ~include:example.com ?exists:%{l1r-}.x.example unknown=%{s} -all")
	if err != nil || len(r.terms) != 5 || r.terms[2].qual != '~' {
		t.Errorf("a valid record: %v, %v", r, err)
	}
}
