package smtp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

const zone = `
example.org.        MX 10 mx1.example.org.
example.org.        MX 20 mx2.example.org.
mx1.example.org.    A 127.0.0.3
mx1.example.org.    AAAA ::1
mx2.example.org.    A 127.0.0.1
implicit.example.   A 127.0.0.1
v6only.example.     AAAA ::1
nullmx.example.     MX 0 .
nodata.example.     TXT "nothing for mail"
equal.example.      MX 10 a.equal.example.
equal.example.      MX 10 b.equal.example.
equal.example.      MX 5 first.equal.example.
equal.example.      MX 10 c.equal.example.
lost.example.       MX 10 nowhere.example.
broken.example      SERVFAIL
gone.example        NXDOMAIN
`

func newResolver(t *testing.T) *smtp.Resolver {
	d := testlib.NewDNS(t, zone)
	return smtp.NewResolver(d.Addr)
}

func TestLookupMX(t *testing.T) {
	r := newResolver(t)
	ctx := context.Background()
	tests := []struct {
		domain string
		want   string
		err    string // "" none, "notfound", "temporary"
	}{
		{"example.org", "mx1.example.org/10 mx2.example.org/20", ""},
		{"EXAMPLE.org.", "mx1.example.org/10 mx2.example.org/20", ""},
		{"nullmx.example", "./0", ""},
		{"implicit.example", "", ""},
		{"nodata.example", "", ""},
		{"gone.example", "", "notfound"},
		{"broken.example", "", "temporary"},
		{"bad..name", "", "notfound"},
	}
	for _, tt := range tests {
		mxs, err := r.LookupMX(ctx, tt.domain)
		var got []string
		for _, mx := range mxs {
			got = append(got, fmt.Sprintf("%s/%d", mx.Host, mx.Pref))
		}
		if strings.Join(got, " ") != tt.want || errClass(err) != tt.err {
			t.Errorf("LookupMX(%q) = %q, %v (%s); want %q, %s", tt.domain, got, err, errClass(err), tt.want, tt.err)
		}
	}
}

// errClass names the kind of a DNS error.
func errClass(err error) string {
	var de *smtp.DNSError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de) && de.NotFound:
		return "notfound"
	case smtp.IsTemporary(err):
		return "temporary"
	}
	return "permanent"
}

func TestLookupIP(t *testing.T) {
	r := newResolver(t)
	tests := []struct {
		host, want, err string
	}{
		{"mx1.example.org", "::1 127.0.0.3", ""},
		{"mx2.example.org", "127.0.0.1", ""},
		{"localhost", "::1 127.0.0.1", ""},
		{"nodata.example", "", ""},
		{"gone.example", "", "notfound"},
		{"broken.example", "", "temporary"},
	}
	for _, tt := range tests {
		addrs, err := r.LookupIP(context.Background(), tt.host)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != tt.want || errClass(err) != tt.err {
			t.Errorf("LookupIP(%q) = %q, %v; want %q, %s", tt.host, got, err, tt.want, tt.err)
		}
	}
}

func TestDomainExists(t *testing.T) {
	r := newResolver(t)
	tests := []struct {
		domain string
		exists bool
		err    string
	}{
		{"example.org", true, ""},
		{"implicit.example", true, ""},
		{"v6only.example", true, ""},
		{"nullmx.example", false, ""},
		{"nodata.example", false, ""},
		{"gone.example", false, ""},
		{"broken.example", false, "temporary"},
	}
	for _, tt := range tests {
		ok, err := r.DomainExists(context.Background(), tt.domain)
		if ok != tt.exists || errClass(err) != tt.err {
			t.Errorf("DomainExists(%q) = %v, %v; want %v, %s", tt.domain, ok, err, tt.exists, tt.err)
		}
	}
}

// TestResolverDown: no DNS server is a temporary failure, quickly.
func TestResolverDown(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	r := smtp.NewResolver(addr)
	r.Timeout = 200 * time.Millisecond
	_, err = r.LookupMX(context.Background(), "example.org")
	if errClass(err) != "temporary" {
		t.Errorf("LookupMX with no server: %v, want a temporary error", err)
	}
	if ok, err := r.DomainExists(context.Background(), "example.org"); ok || errClass(err) != "temporary" {
		t.Errorf("DomainExists with no server: %v, %v; want false and a temporary error", ok, err)
	}
}

func TestNewResolver(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:5353": "127.0.0.1:5353", "192.0.2.1": "192.0.2.1:53", "::1": "[::1]:53", "[::1]:54": "[::1]:54"} {
		if got := smtp.NewResolver(in).Server; got != want {
			t.Errorf("NewResolver(%q).Server = %q, want %q", in, got, want)
		}
	}
	if smtp.NewResolver("").Server == "" {
		t.Error("NewResolver(\"\") has no server")
	}
}

func identity(n int, swap func(i, j int)) {}

func reverse(n int, swap func(i, j int)) {
	for i := 0; i < n/2; i++ {
		swap(i, n-1-i)
	}
}

func TestRoute(t *testing.T) {
	r := newResolver(t)
	tests := []struct {
		name    string
		dest    string
		busted  []string
		gateway string
		want    string // hosts joined by "; ", or the error's class
	}{
		{"mx by preference, v6 and v4 in turn", "example.org", nil, "",
			"mx1.example.org:25 ::1 127.0.0.3; mx2.example.org:25 127.0.0.1"},
		{"implicit mx", "implicit.example", nil, "", "implicit.example:25 127.0.0.1"},
		{"busted mx skipped", "example.org", []string{"MX1.example.org"}, "", "mx2.example.org:25 127.0.0.1"},
		{"every mx busted", "example.org", []string{"mx1.example.org", "mx2.example.org"}, "", "permanent"},
		{"null mx", "nullmx.example", nil, "", "permanent"},
		{"null mx ignores the gateway", "nullmx.example", nil, "tcp!127.0.0.9!2525", "permanent"},
		{"nxdomain", "gone.example", nil, "", "notfound"},
		{"servfail", "broken.example", nil, "", "temporary"},
		{"gateway after nxdomain", "gone.example", nil, "tcp!127.0.0.9!2525", "127.0.0.9:2525 127.0.0.9"},
		{"gateway after servfail", "broken.example", nil, "127.0.0.9", "127.0.0.9:25 127.0.0.9"},
		{"gateway last", "implicit.example", nil, "tcp!127.0.0.9!2525", "implicit.example:25 127.0.0.1; 127.0.0.9:2525 127.0.0.9"},
		{"no address for the mx", "lost.example", nil, "", "nowhere.example:25 dns: nowhere.example: domain not found"},
		{"address literal", "[127.0.0.5]", nil, "", "127.0.0.5:25 127.0.0.5"},
		{"ipv6 literal", "[IPv6:::1]", nil, "", "::1:25 ::1"},
		{"dial string with port: no mx", "tcp!example.org!587", nil, "", "example.org:587 dns: example.org A: no A or AAAA records"},
		{"host:port", "mx2.example.org:2525", nil, "", "mx2.example.org:2525 127.0.0.1"},
	}
	for _, tt := range tests {
		c := &smtp.Client{DNS: r, Busted: tt.busted, Gateway: tt.gateway}
		c.SetShuffle(identity)
		hosts, err := c.RouteHosts(context.Background(), tt.dest)
		got := strings.Join(hosts, "; ")
		if err != nil {
			got = errClass(err)
		}
		if got != tt.want {
			t.Errorf("%s: route(%q) = %q (%v), want %q", tt.name, tt.dest, got, err, tt.want)
		}
	}
}

// TestRouteEqualPreference: MX hosts of equal preference come in random
// order, after the better ones.
func TestRouteEqualPreference(t *testing.T) {
	r := newResolver(t)
	order := func(shuffle func(int, func(int, int))) string {
		c := &smtp.Client{DNS: r}
		if shuffle != nil {
			c.SetShuffle(shuffle)
		}
		hosts, _ := c.RouteHosts(context.Background(), "equal.example")
		var names []string
		for _, h := range hosts {
			names = append(names, strings.SplitN(h, ".", 2)[0])
		}
		return strings.Join(names, " ")
	}
	if got, want := order(identity), "first a b c"; got != want {
		t.Errorf("unshuffled order %q, want %q", got, want)
	}
	if got, want := order(reverse), "first c b a"; got != want {
		t.Errorf("reversed order %q, want %q", got, want)
	}
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 6; i++ {
		o := order(nil)
		if !strings.HasPrefix(o, "first ") {
			t.Fatalf("order %q: the preference 5 host is not first", o)
		}
		seen[o] = true
	}
	if len(seen) != 6 {
		t.Errorf("saw %d orders of three equal hosts in 200 tries, want all 6: %v", len(seen), seen)
	}
}
