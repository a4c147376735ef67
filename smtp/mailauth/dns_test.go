package mailauth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

const dnsZone = `
example.org.            300 TXT "v=spf1 " "ip4:192.0.2.0/24 -all"
example.org.            300 TXT "other \"quoted\" \\ text"
example.org.            300 MX 10 MX1.example.org.
example.org.            300 MX 0 .
mx1.example.org.        60 A 192.0.2.1
mx1.example.org.        60 AAAA 2001:db8::1
macro\ space.example.  60 A 192.0.2.9
1.2.0.192.in-addr.arpa. 60 PTR mx1.example.org.
nodata.example.         60 TXT "only text"
broken.example          SERVFAIL
`

func TestDNS(t *testing.T) {
	srv := testlib.NewDNS(t, dnsZone)
	d := NewDNS(srv.Addr)
	ctx := context.Background()
	show := func(recs any, a Answer, err error) string {
		return fmt.Sprintf("%v ttl=%v notfound=%v err=%v", recs, a.TTL, a.NotFound, err != nil)
	}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"TXT, strings joined, escapes undone", show(d.LookupTXT(ctx, "example.org")),
			`[v=spf1 ip4:192.0.2.0/24 -all other "quoted" \ text] ttl=5m0s notfound=false err=false`},
		{"MX, lower case, null MX", show(d.LookupMX(ctx, "EXAMPLE.org.")),
			`[{mx1.example.org 10} {. 0}] ttl=5m0s notfound=false err=false`},
		{"A", show(d.LookupIP(ctx, "ip4", "mx1.example.org")), `[192.0.2.1] ttl=1m0s notfound=false err=false`},
		{"AAAA", show(d.LookupIP(ctx, "ip6", "mx1.example.org")), `[2001:db8::1] ttl=1m0s notfound=false err=false`},
		{"PTR", show(d.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1"))), `[mx1.example.org] ttl=1m0s notfound=false err=false`},
		{"a name with a space", show(d.LookupIP(ctx, "ip4", "macro space.example")), `[192.0.2.9] ttl=1m0s notfound=false err=false`},
		{"NODATA", show(d.LookupMX(ctx, "nodata.example")), `[] ttl=1m0s notfound=false err=false`},
		{"NXDOMAIN", show(d.LookupTXT(ctx, "gone.example")), `[] ttl=1m0s notfound=true err=false`},
		{"SERVFAIL", show(d.LookupTXT(ctx, "broken.example")), `[] ttl=0s notfound=false err=true`},
		{"a label too long", show(d.LookupTXT(ctx, strings.Repeat("a", 64)+".example")), `[] ttl=1m0s notfound=true err=false`},
		{"an empty label", show(d.LookupTXT(ctx, "a..example")), `[] ttl=1m0s notfound=true err=false`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestDNSTimeout(t *testing.T) {
	// Nothing answers on this port: the query fails, temporarily, at
	// the latest by the context's deadline.
	d := NewDNS("127.0.0.1:9")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := d.LookupTXT(ctx, "example.org")
	if err == nil {
		t.Fatal("no error from a server that is not there")
	}
	if de, ok := err.(*DNSError); !ok || !de.Temporary() {
		t.Errorf("error %v (%T), want a temporary *DNSError", err, err)
	}
}

func TestNewDNS(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.53": "192.0.2.53:53", "[2001:db8::53]": "[2001:db8::53]:53", "127.0.0.1:5353": "127.0.0.1:5353"} {
		if got := NewDNS(in).Server; got != want {
			t.Errorf("NewDNS(%q).Server = %q, want %q", in, got, want)
		}
	}
}

// countingDNS counts the questions that reach it and fails on demand.
type countingDNS struct {
	memDNS
	fail bool
}

func (c *countingDNS) LookupTXT(ctx context.Context, name string) ([]string, Answer, error) {
	if c.fail {
		c.queries.Add(1)
		return nil, Answer{}, &DNSError{Name: name, Type: "TXT", Err: "SERVFAIL"}
	}
	return c.memDNS.LookupTXT(ctx, name)
}

func TestCache(t *testing.T) {
	m := &countingDNS{memDNS: *newMemDNS()}
	m.txt("a.example", "one").txt("b.example", "two").txt("c.example", "three")
	c := NewCache(m, 2)
	now := time.Unix(1e9, 0)
	c.Now = func() time.Time { return now }
	ctx := context.Background()
	ask := func(name string) string {
		txts, a, err := c.LookupTXT(ctx, name)
		return fmt.Sprintf("%v %v %v", txts, a.TTL, err != nil)
	}
	if got := ask("a.example"); got != "[one] 1h0m0s false" {
		t.Fatalf("first answer %s", got)
	}
	now = now.Add(10 * time.Minute)
	if got := ask("A.EXAMPLE."); got != "[one] 50m0s false" {
		t.Errorf("answer from the cache %s, want the TTL counted down", got)
	}
	if q := m.queries.Load(); q != 1 {
		t.Errorf("%d questions reached the server, want 1", q)
	}
	now = now.Add(50 * time.Minute)
	ask("a.example")
	if q := m.queries.Load(); q != 2 {
		t.Errorf("%d questions after the TTL ran out, want 2", q)
	}

	// Two entries at most: b and c push a out, the least recently used.
	ask("b.example")
	ask("c.example")
	if c.Len() != 2 {
		t.Errorf("cache holds %d answers, want 2", c.Len())
	}
	before := m.queries.Load()
	ask("a.example")
	if m.queries.Load() != before+1 {
		t.Error("the least recently used answer was not dropped")
	}

	// A failure is not kept.
	m.fail = true
	c2 := NewCache(m, 10)
	before = m.queries.Load()
	c2.LookupTXT(ctx, "a.example")
	c2.LookupTXT(ctx, "a.example")
	if m.queries.Load() != before+2 {
		t.Error("a failed lookup was answered from the cache")
	}
	if hits, misses := c2.Stats(); hits != 0 || misses != 2 {
		t.Errorf("stats %d hits %d misses, want 0 and 2", hits, misses)
	}
}

func TestCacheBytes(t *testing.T) {
	// Answers of 64 KiB each: the size bound, not the count, limits them.
	m := newMemDNS()
	big := strings.Repeat("x", 64<<10)
	for i := range 20 {
		m.txt(fmt.Sprintf("n%d.example", i), big)
	}
	c := NewCache(m, 100) // 100 KiB
	for i := range 20 {
		c.LookupTXT(context.Background(), fmt.Sprintf("n%d.example", i))
	}
	if c.Len() != 1 || c.bytes > 100*avgEntry {
		t.Errorf("cache holds %d answers of %d bytes, want 1 within %d", c.Len(), c.bytes, 100*avgEntry)
	}
}
