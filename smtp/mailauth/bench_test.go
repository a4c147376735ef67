package mailauth

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkCheck is the work of one message from outside: SPF at MAIL
// (an include and an mx, 4 lookups), then DKIM (an RSA and an Ed25519
// signature) and DMARC after DATA, with an in-memory resolver, directly
// and through a Cache.
func BenchmarkCheck(b *testing.B) {
	r, e := keys(b)
	m := publish(newMemDNS(), r, e).
		txt("example.com", "v=spf1 include:_spf.example.com mx -all").
		txt("_spf.example.com", "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all").
		add("example.com", "MX", MX{Host: "mx.example.com", Pref: 10}).
		add("mx.example.com", "A", "192.0.2.25").
		txt("_dmarc.example.com", "v=DMARC1; p=reject")
	msg := []byte(signed(b, signer(b), testMsg))
	ip := netip.MustParseAddr("192.0.2.25")
	for _, bc := range []struct {
		name string
		r    Resolver
	}{{"direct", m}, {"cached", NewCache(m, 0)}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &Checker{Resolver: bc.r}
			ctx := context.Background()
			for b.Loop() {
				spf := c.CheckSPF(ctx, ip, "mx.example.com", "bounce@example.com")
				v := c.CheckMessage(ctx, &spf, msg)
				if spf.Result != Pass || v.DMARC.Result != Pass || v.DKIM[0].Result != Pass || v.DKIM[1].Result != Pass {
					b.Fatalf("spf %s, dkim %v, dmarc %s", spf, v.DKIM, v.DMARC)
				}
			}
		})
	}
}
