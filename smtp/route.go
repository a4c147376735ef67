package smtp

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
)

// Caps on the hosts one delivery attempt may try (RFC 5321 §5.1 asks for a
// configurable limit): a domain cannot make us dial a hundred addresses at
// thirty seconds each.
const (
	maxMXHosts = 10
	maxAddrs   = 20
)

// A hop is a host to try: one MX, the destination itself (an implicit MX,
// an address literal, a dial string with a port), or the gateway.
type hop struct {
	name  string       // host name, for TLS verification and messages; the address for a literal
	addrs []netip.Addr // nil until looked up
	port  string
	pol   *hostPolicy // its TLS policy (policy.go); nil: the Client's settings
}

// route turns a destination into the hosts to try, in order (RFC 5321 §5.1):
//   - an address literal, "[192.0.2.1]" or "[IPv6:2001:db8::1]", or a dial
//     string with a port: that host alone, no MX lookup;
//   - a domain with MX records: those, by preference, in random order among
//     equals, without the -b ones, at most maxMXHosts;
//   - a domain that exists without MX records: the domain itself (implicit MX);
//   - a null MX (RFC 7505): a permanent failure, nothing is tried;
//   - a domain that does not exist: a permanent failure.
//
// The gateway, when set, comes after all of them, and alone when the lookup
// found nothing to try (except after a null MX: that domain asked for no
// mail at all).
func (c *Client) route(ctx context.Context, d DialString) ([]hop, error) {
	hops, err := c.lookupRoute(ctx, d)
	if c.Gateway == "" || errors.Is(err, errNullMX) {
		return hops, err
	}
	g, gerr := ParseDialString(c.Gateway)
	if gerr != nil {
		return nil, permanent(gerr)
	}
	return append(hops, c.hopFor(g)), nil
}

func (c *Client) lookupRoute(ctx context.Context, d DialString) ([]hop, error) {
	if d.Port != "" || literal(d.Host).IsValid() {
		return []hop{c.hopFor(d)}, nil
	}
	mxs, err := c.dns().LookupMX(ctx, d.Host)
	if err != nil {
		return nil, err
	}
	if len(mxs) == 0 {
		return []hop{{name: d.Host, port: c.port()}}, nil
	}
	if isNullMX(mxs) {
		return nil, errNullMX
	}
	var hops []hop
	for _, mx := range orderMX(mxs, c.shuffler()) {
		if mx.Host == "." || slices.ContainsFunc(c.Busted, func(b string) bool { return strings.EqualFold(b, mx.Host) }) {
			continue
		}
		if len(hops) == maxMXHosts {
			break
		}
		hops = append(hops, hop{name: mx.Host, port: c.port()})
	}
	if len(hops) == 0 {
		return nil, permanent(errors.New("every MX host is busted (-b)"))
	}
	return hops, nil
}

// hopFor is the hop of a dial string: its host, its port or ours.
func (c *Client) hopFor(d DialString) hop {
	h := hop{name: d.Host, port: d.Port}
	if h.port == "" {
		h.port = c.port()
	}
	if a := literal(d.Host); a.IsValid() {
		h.name, h.addrs = a.String(), []netip.Addr{a}
	}
	return h
}

// AddressLiteral returns host as the domain of an address (RFC 5321
// §4.1.3: "[192.0.2.1]", "[IPv6:2001:db8::1]") if it is an IP address,
// bare or bracketed, else "". Such a destination is dialled as it is,
// without MX.
func AddressLiteral(host string) string {
	a := literal(host)
	if !a.IsValid() {
		return ""
	}
	return FormatLiteral(a)
}

// FormatLiteral writes a as an address literal in its RFC 5321 §4.1.3
// form: [192.0.2.1], [IPv6:2001:db8::1]; "[]" for the zero Addr.
func FormatLiteral(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "[]"
	case a.Is4():
		return "[" + a.String() + "]"
	}
	return "[IPv6:" + a.String() + "]"
}

// literal parses an address literal (RFC 5321 §4.1.3) or a bare address:
// 192.0.2.1, [192.0.2.1], [IPv6:2001:db8::1], 2001:db8::1. A bracket must
// have its mate: "[192.0.2.1" is no address.
func literal(host string) netip.Addr {
	h, open := strings.CutPrefix(host, "[")
	h, closed := strings.CutSuffix(h, "]")
	if open != closed {
		return netip.Addr{}
	}
	if len(h) > 5 && strings.EqualFold(h[:5], "IPv6:") {
		h = h[5:]
	}
	a, err := netip.ParseAddr(h)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}
	}
	return a.Unmap()
}

// errNullMX is the answer of a domain that takes no mail (RFC 7505 §3:
// 5.1.10, "recipient address has null MX").
var errNullMX = &Reply{Code: 556, Enh: "5.1.10", Lines: []string{"domain does not accept mail (null MX)"}}

// isNullMX reports whether mxs is a null MX: every record names "." (RFC
// 7505 §3 allows exactly one; a "." among real hosts is ignored).
func isNullMX(mxs []MX) bool {
	for _, mx := range mxs {
		if mx.Host != "." {
			return false
		}
	}
	return len(mxs) > 0
}

// orderMX sorts MX records by preference, equal preferences in random order
// (RFC 5321 §5.1): shuffle first, then a stable sort.
func orderMX(mxs []MX, shuffle func(n int, swap func(i, j int))) []MX {
	mxs = slices.Clone(mxs)
	shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return cmp.Compare(a.Pref, b.Pref) })
	return mxs
}

// addrs returns the addresses of h to dial, IPv6 and IPv4 in turn (so that
// a broken IPv6 route costs one try, not all of them).
func (c *Client) addrs(ctx context.Context, h hop) ([]netip.Addr, error) {
	if h.addrs != nil {
		return h.addrs, nil
	}
	all, err := c.dns().LookupIP(ctx, h.name)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, &DNSError{Name: h.name, Type: "A", NotFound: true, Err: "no A or AAAA records"}
	}
	var v6, v4 []netip.Addr
	for _, a := range all {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	for i := 0; i < len(v6) || i < len(v4); i++ {
		if i < len(v6) {
			out = append(out, v6[i])
		}
		if i < len(v4) {
			out = append(out, v4[i])
		}
	}
	return out, nil
}
